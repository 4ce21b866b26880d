"""The command line: exit codes and one-line errors (README: commands)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from webhook import cli
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
    rules = "2 rule(s): dify-storage, dify-generic-labels"
    assert result.stdout.startswith(f"{path}: valid ({rules})\nselection ")


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
    from webhook.certs import pki

    one = pki.build(dns_names=["a"])
    two = pki.build(dns_names=["b"])
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

    made = run("certs", "--service", "dvi", "--namespace", "ops", "--out-dir", str(tmp_path))
    assert made.returncode == 0 and made.stdout == "", made.stderr
    result = run("certs", "--out-dir", str(tmp_path), "--print-ca-bundle")
    assert result.returncode == 0, result.stderr
    ca = (tmp_path / "ca.crt").read_bytes()
    assert base64.b64decode(result.stdout.strip()) == ca
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.crt", "ca.key", "tls.crt", "tls.key"]
    assert f"--ca-bundle {tmp_path}/ca.crt" in made.stderr
    assert "kubectl -n ops create secret tls dify-volume-init-tls" in made.stderr
    served = (tmp_path / "tls.crt").read_bytes()
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in tmp_path.iterdir()}
    again = run("certs", "--out-dir", str(tmp_path), "--print-ca-bundle")
    assert (again.returncode, again.stderr) == (0, "")
    assert again.stdout == result.stdout
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in tmp_path.iterdir()}
    assert after == before, "--print-ca-bundle writes nothing"
    renewed = run("certs", "--out-dir", str(tmp_path))
    assert (tmp_path / "tls.crt").read_bytes() != served
    assert "the caBundle" in renewed.stderr and "is unchanged" in renewed.stderr
    assert run("certs", "--out-dir", str(tmp_path), "--print-ca-bundle").stdout == result.stdout
    assert bundle_in_manifests(tmp_path / "ca.crt") == {ca}
    mixed = run("certs", "--rotate-ca", "--out-dir", str(tmp_path), "--print-ca-bundle")
    assert mixed.returncode == 2 and "--print-ca-bundle only prints" in mixed.stderr
    assert not (tmp_path / "ca-next.crt").exists()
    assert run("certs", "--rotate-ca", "--out-dir", str(tmp_path)).returncode == 0
    start = run("certs", "--out-dir", str(tmp_path), "--print-ca-bundle")
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


def every_option() -> list[tuple[str, argparse.Action]]:
    """Every option of every command, with the command's name."""
    from webhook import cli

    found = []

    def walk(parser: argparse.ArgumentParser, name: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub, subparser in action.choices.items():
                    walk(subparser, f"{name} {sub}".strip())
            elif action.option_strings and not isinstance(
                action, argparse._HelpAction | argparse._VersionAction
            ):
                found.append((name, action))

    walk(cli.build_parser(), "")
    return found


def test_every_flag_says_its_default_and_serve_flags_their_variable() -> None:
    """Guards the help as a kubectl user reads it: every option that takes a value says
    its default (or that it is required); every `serve` option names its variable."""
    missing = [
        f"{name} {action.option_strings[0]}"
        for name, action in every_option()
        if action.nargs != 0
        and "default" not in (action.help or "")
        and "required" not in (action.help or "")
    ]
    assert missing == []
    serve = [a for name, a in every_option() if name == "serve"]
    assert serve and all("env VOLUME_INIT_" in (a.help or "") for a in serve)


def test_usage_errors_name_no_internals() -> None:
    """Guards usage errors: `policy` with no subcommand names the choices, not
    argparse's `policy_command`."""
    result = run("policy")
    assert result.returncode == 2
    assert "policy_command" not in result.stderr
    assert "required: {check,default}" in result.stderr


def test_review_reads_subdirectories_with_r_and_says_when_it_does_not(tmp_path: Path) -> None:
    """Guards -R: without it, one note that subdirectories were not read; with it,
    every manifest below, in order."""
    pod = (Path(__file__).parent / "testdata" / "pods" / "helm-api.yaml").read_text()
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    for name in ("a.yaml", "sub/b.yaml", "sub/deeper/c.yml", "sub/notes.txt"):
        (tmp_path / name).write_text(pod)
    flat = run("review", "-f", str(tmp_path), "--explain", "-o", "patch")
    assert flat.returncode == 0, flat.stderr
    assert f"note: {tmp_path}: 1 subdirectory not read (-R reads them)" in flat.stderr
    assert flat.stderr.count("patched") == 1
    deep = run("review", "-R", "-f", str(tmp_path), "--explain", "-o", "patch")
    assert deep.returncode == 0, deep.stderr
    assert "note:" not in deep.stderr
    explained = [line.split(":")[0] for line in deep.stderr.splitlines() if "patched" in line]
    assert explained == [str(tmp_path / n) for n in ("a.yaml", "sub/b.yaml", "sub/deeper/c.yml")]


def test_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    """Guards `serve` on a port in use: one line and exit 2 (uvicorn alone logged it
    among its start-up lines and exited 3)."""
    import socket

    from webhook.certs import pki, store

    store.write_files(tmp_path / "certs", pki.build(dns_names=["localhost"]))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = run("serve", "--host", "127.0.0.1", "--port", port, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"dify-volume-init: cannot listen on 127.0.0.1:{port}: the port is already in use"
        " (--host/--port, VOLUME_INIT_HOST/VOLUME_INIT_PORT)\n"
    )


def test_files_the_walk_through_creates_are_ignored_by_git() -> None:
    """Guards the walk-through: what it writes (keys above all) is ignored by git."""
    root = Path(__file__).parent.parent
    paths = [
        "webhook-certs/ca.key", "webhook-certs/tls.key", "webhook-certs/tls.crt",
        "certs/ca.key", "certs/tls.key", "dify-volume-init.yaml", "my-policy.yaml",
        "response.json", "somewhere/else.key",
    ]  # fmt: skip
    result = subprocess.run(
        ["git", "check-ignore", "--no-index", *paths],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert sorted(result.stdout.split()) == sorted(paths)
    tracked = subprocess.run(
        ["git", "check-ignore", "--no-index", "deploy/base/dify-volume-init.yaml"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert tracked.stdout == "", "the generated deploy/ files stay tracked"


@pytest.mark.parametrize(
    ("error", "code", "says"),
    [
        (KeyError("x"), 70, "internal error (a bug, not your input): KeyError"),
        (IndexError("x"), 70, "internal error (a bug, not your input): IndexError"),
        (AttributeError("x"), 70, "internal error (a bug, not your input): AttributeError"),
        (TypeError("x"), 70, "internal error (a bug, not your input): TypeError"),
        (AssertionError("x"), 70, "internal error (a bug, not your input): AssertionError"),
        (RecursionError(), 2, "the input is nested too deeply"),
        (ValueError("x"), 2, "the input has a value this command cannot handle"),
    ],
)
def test_a_bug_is_exit_70_bad_input_exit_2_and_debug_shows_the_traceback(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    error: Exception,
    code: int,
    says: str,
) -> None:
    """Guards cli.main's two last resorts: a programming error (TypeError, LookupError,
    AttributeError, a failed assertion) is one line saying it is a bug, exit 70; what
    only the input causes (nesting, an odd value) is one line, exit 2; neither is a
    traceback, which `--debug` (or VOLUME_INIT_DEBUG=1) lets through for a report.
    The handler comes from the subcommand's own `set_defaults`."""
    from webhook.cli import policy as policy_command

    def crash(_: argparse.Namespace) -> int:
        raise error

    monkeypatch.setattr(policy_command, "print_default", crash)
    monkeypatch.delenv("VOLUME_INIT_DEBUG", raising=False)
    assert cli.main(["policy", "default"]) == code
    err = capsys.readouterr().err
    assert err.startswith(f"dify-volume-init: {says}") and err.count("\n") == 1, err
    with pytest.raises(type(error)):
        cli.main(["--debug", "policy", "default"])
    monkeypatch.setenv("VOLUME_INIT_DEBUG", "1")
    with pytest.raises(type(error)):
        cli.main(["policy", "default"])


def test_every_subcommand_names_its_own_handler() -> None:
    """Guards the dispatch: each subcommand's parser sets its handler (no if-chain in
    main), so a new subcommand cannot be parsed and then fall through."""
    parser = cli.build_parser()
    for argv in (
        ["serve"],
        ["review", "-f", "x"],
        ["certs"],
        ["manifests"],
        ["policy", "check", "x"],
        ["policy", "default"],
        ["audit", "-f", "x"],
    ):
        handler = parser.parse_args(argv).handler
        assert handler.__module__.startswith("webhook.cli."), (argv, handler)
        assert handler.__module__.rsplit(".", 1)[1] == argv[0], (argv, handler)


def test_manifests_says_when_the_ca_bundle_is_missing(tmp_path: Path) -> None:
    """Guards the README's trap: `manifests` with neither --ca-bundle nor --cert-manager
    says on stderr that the webhook configuration has no caBundle and what follows."""
    bare = run("manifests")
    assert bare.returncode == 0 and bare.stderr == f"note: {cli.NO_CA_BUNDLE}\n"
    assert run("manifests", "--cert-manager").stderr == ""
    assert run("certs", "--out-dir", str(tmp_path), "--webhook-namespace", "ops").returncode == 0
    given = run("manifests", "--webhook-namespace", "ops", "--ca-bundle", str(tmp_path / "ca.crt"))
    assert given.returncode == 0 and given.stderr == ""
    assert "namespace: ops" in given.stdout


def test_review_json_is_one_document(tmp_path: Path) -> None:
    """Guards `review -o json`: one JSON document, a List when there are several objects
    (it was a stream of documents, which `json.load` and jq -s disagree on)."""
    import json

    two = tmp_path / "two.yaml"
    two.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n"
                   "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n")  # fmt: skip
    both = json.loads(run("review", "-f", str(two), "-o", "json").stdout)
    assert both["kind"] == "List" and [i["metadata"]["name"] for i in both["items"]] == ["a", "b"]
    one = tmp_path / "one.yaml"
    one.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
    assert json.loads(run("review", "-f", str(one), "-o", "json").stdout)["kind"] == "ConfigMap"


def test_the_readme_points_manifests_at_the_clusters_certificates() -> None:
    """Guards the README's trap: `--ca-bundle certs/ca.crt` is the development CA that
    `make run` made, not the one that signed the cluster's Secret."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert "--ca-bundle certs/" not in readme
