"""The command line: exit codes and one-line errors (README: commands)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from webhook.engine import policy


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "webhook", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=60,
        check=False,
    )


def test_policy_check_accepts_the_default(tmp_path: Path) -> None:
    """Guards `policy check` on a valid policy: exit 0 and a summary."""
    path = tmp_path / "policy.yaml"
    path.write_text(policy.default_policy_text())
    result = run("policy", "check", str(path))
    assert result.returncode == 0
    assert result.stdout.startswith(f"{path}: valid (1 rule(s): dify-storage)\nselection ")


def test_policy_check_lists_every_error_with_line_and_field(tmp_path: Path) -> None:
    """Guards `policy check`: every error with its line and field, exit 2."""
    path = tmp_path / "policy.yaml"
    text = (
        policy.default_policy_text()
        .replace("user: 1001", "user: -1")
        .replace("busybox:1.36.1 ", "busybox ")
    )
    path.write_text(text)
    result = run("policy", "check", str(path))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    numbers = text.splitlines()
    user_line = numbers.index("      user: -1") + 1
    image_line = next(i for i, line in enumerate(numbers, 1) if "image: busybox " in line)
    assert lines[0].startswith(f"{path}:{user_line}: spec.rules[0].user:")
    assert lines[1].startswith(f"{path}:{image_line}: spec.rules[0].initContainer.image:")
    assert "Traceback" not in result.stderr


def test_policy_check_missing_file() -> None:
    """Guards a missing policy file: one line, exit 2."""
    result = run("policy", "check", "/nonexistent.yaml")
    assert result.returncode == 2
    assert result.stderr == "dify-volume-init: /nonexistent.yaml: policy file not found\n"


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (
            ["--port", "70000"],
            {},
            "--port / VOLUME_INIT_PORT: Input should be less than or equal to 65535",
        ),
        (
            [],
            {"VOLUME_INIT_PORT": "https"},
            "--port / VOLUME_INIT_PORT: Input should be a valid integer",
        ),
        (
            ["--tls-cert", "missing.crt", "--tls-key", "missing.key"],
            {},
            "missing.crt: certificate file not found",
        ),
        (["--policy", "nope.yaml"], {}, "nope.yaml: policy file not found"),
        (["--log-format", "xml"], {}, "invalid choice: 'xml'"),
    ],
)
def test_serve_fails_fast_with_one_line(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    """Guards serve's bad flags and environment: one line naming the flag, exit 2."""
    result = run("serve", *args, env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2  # at most a usage line and the error


def test_serve_refuses_a_key_that_does_not_match(tmp_path: Path) -> None:
    """Guards serve's certificate check: a mismatched key is refused at start."""
    from webhook import certs

    one = certs.build(dns_names=["a"])
    two = certs.build(dns_names=["b"])
    (tmp_path / "tls.crt").write_bytes(one.cert)
    (tmp_path / "tls.key").write_bytes(two.key)
    result = run("serve", "--tls-cert", "tls.crt", "--tls-key", "tls.key", cwd=tmp_path)
    assert result.returncode == 2
    assert "tls.key: private key does not match tls.crt" in result.stderr


def test_certs_then_manifests_with_the_ca_bundle(tmp_path: Path) -> None:
    """Guards `certs` then `manifests --ca-bundle`: the bundle reaches the webhook
    configuration; a re-run renews and prints the same caBundle; the rotation's
    two-CA bundle is accepted too."""
    import base64

    import yaml

    def bundle_in_manifests(path: Path) -> set[bytes]:
        manifests = run("manifests", "--namespace", "ops", "--ca-bundle", str(path))
        assert manifests.returncode == 0, manifests.stderr
        docs = list(yaml.safe_load_all(manifests.stdout))
        (config,) = [d for d in docs if d["kind"] == "MutatingWebhookConfiguration"]
        assert {w["clientConfig"]["service"]["namespace"] for w in config["webhooks"]} == {"ops"}
        return {base64.b64decode(w["clientConfig"]["caBundle"]) for w in config["webhooks"]}

    result = run(
        "certs", "--service", "dvi", "--namespace", "ops", "--out-dir", str(tmp_path),
        "--print-ca-bundle",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    ca = (tmp_path / "ca.crt").read_bytes()
    assert base64.b64decode(result.stdout.strip()) == ca
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.crt", "ca.key", "tls.crt", "tls.key"]
    assert f"--ca-bundle {tmp_path}/ca.crt" in result.stderr
    assert "kubectl -n ops create secret tls dify-volume-init-tls" in result.stderr
    served = (tmp_path / "tls.crt").read_bytes()
    again = run("certs", "--out-dir", str(tmp_path), "--print-ca-bundle")
    assert again.returncode == 0, again.stderr
    assert again.stdout == result.stdout, "a renewal prints the same caBundle"
    assert (tmp_path / "tls.crt").read_bytes() != served
    assert "the caBundle" in again.stderr and "is unchanged" in again.stderr
    assert bundle_in_manifests(tmp_path / "ca.crt") == {ca}
    start = run("certs", "--rotate-ca", "--out-dir", str(tmp_path), "--print-ca-bundle")
    assert start.returncode == 0, start.stderr
    pair = (tmp_path / "ca-bundle.crt").read_bytes()
    assert base64.b64decode(start.stdout.strip()) == pair
    assert pair.count(b"BEGIN CERTIFICATE") == 2
    assert bundle_in_manifests(tmp_path / "ca-bundle.crt") == {pair}
    switch = run("certs", "--rotate-ca", "switch", "--out-dir", str(tmp_path))
    assert switch.returncode == 0 and switch.stdout == "", "the caBundle only when asked"


def test_certs_bad_inputs_are_one_line(tmp_path: Path) -> None:
    """Guards `certs` usage errors: one line each, exit 2, nothing written."""
    out = tmp_path / "out"
    cases = [
        (["--ca-cert", str(tmp_path / "x.pem")], "--ca-cert and --ca-key go together"),
        (["--days", "0"], "--days must be between 1 and 365"),
        (["--renew"], "no CA to renew from"),
        (["--rotate-ca"], "no CA to rotate from: run `certs` first"),
        (["--rotate-ca", "later"], "'later' is not one of start, switch, finish"),
        (
            ["--ca-cert", str(tmp_path / "x.pem"), "--ca-key", str(tmp_path / "x.key")],
            "x.pem: certificate file not found",
        ),
    ]
    for args, message in cases:
        result = run("certs", "--out-dir", str(out), *args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert result.stderr.count("\n") == 1, result.stderr
        assert not out.exists() or not any(out.iterdir())
    both = run("certs", "--out-dir", str(out), "--renew", "--force")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr


def test_manifests_bad_inputs(tmp_path: Path) -> None:
    """Guards `manifests` bad inputs: one line each, exit 2."""
    not_pem = tmp_path / "ca.crt"
    not_pem.write_text("hello")
    result = run("manifests", "--ca-bundle", str(not_pem))
    assert result.returncode == 2
    assert result.stderr == f"dify-volume-init: {not_pem}: not a PEM certificate\n"
    assert run("manifests", "--policy", str(tmp_path / "none.yaml")).returncode == 2
    both = run("manifests", "--cert-manager", "--ca-bundle", str(not_pem))
    assert both.returncode == 2
    assert "not allowed with" in both.stderr


def test_every_setting_is_a_documented_serve_flag() -> None:
    """Guards the one source of the serve flags: a field of the settings model is a
    flag with help (generated) and a row of the README's table (written)."""
    from webhook.serving.settings import Settings

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    serve_help = run("serve", "--help").stdout
    for name, field in Settings.model_fields.items():
        flag, env = "--" + name.replace("_", "-"), f"VOLUME_INIT_{name.upper()}"
        assert field.description, f"{name} has no description"
        assert flag in serve_help
        assert f"| `{flag}` | `{env}` |" in readme, f"README's serve table misses {flag}"
