"""Untrusted configuration: a policy, a reload and a manifest can never stop, stall
or subvert the webhook (docs/design.md#reading-untrusted-files).

One test per class of hostile input. Each docstring says what the code did
with that input before the guard existed; each was run against that code and
seen failing (or hanging past its subprocess timeout), except the cases a
docstring names as guards of what already held.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import jsonpatch
import pytest
import yaml
from cryptography import x509
from fastapi.testclient import TestClient

from tests import helpers, servers
from tests.test_reload import POD, project, serial_of, wait_for
from webhook import files
from webhook.certs import pki, store
from webhook.engine import limits, policy, yamlfile
from webhook.files import InputError
from webhook.k8s import names
from webhook.review import documents
from webhook.serving import reload
from webhook.serving.settings import Settings
from webhook.serving.state import ServingState

DEFAULT = policy.default_policy_text()
FIRST_RULE = helpers.first_rule_policy_text()  # edited by line number below


def laughs(levels: int = 9, width: int = 9) -> list[str]:
    """The lines of a "billion laughs": each anchor a list of `width` aliases of the last."""
    lines = [f"x0: &a0 [{', '.join(['lol'] * width)}]"]
    for level in range(1, levels):
        lines.append(f"x{level}: &a{level} [{', '.join([f'*a{level - 1}'] * width)}]")
    return lines


BOMB_POD = "\n".join(
    [
        "apiVersion: v1",
        "kind: Pod",
        "metadata: {name: bomb, labels: {app: x}}",
        *laughs(),
        "spec: {containers: [{name: c, image: i}], x: *a8}",
    ]
)
BOMB_POLICY = "\n".join([*laughs(), "bomb: *a8", DEFAULT])
SELF_ALIAS = "apiVersion: v1\nkind: Pod\nmetadata: &m {self: *m}\n"


def nested_block(depth: int) -> str:
    return "".join("  " * i + "a:\n" for i in range(depth)) + "  " * depth + "x\n"


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The command line in a fresh process; `serve` runs where `certs/` already exists."""
    return subprocess.run(
        [sys.executable, "-m", "webhook", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=cwd,
    )


def serve(policy_file: Path, workdir: Path) -> subprocess.CompletedProcess[str]:
    if not (workdir / "certs").exists():
        store.write_files(workdir / "certs", pki.build(dns_names=["localhost"]))
    port = str(servers.free_port())
    return cli("serve", "--port", port, "--policy", str(policy_file), cwd=workdir)


def one_line(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode == 2, result.stderr[-500:]
    assert expected in result.stderr, result.stderr[-500:]
    assert result.stderr.count("\n") == 1, result.stderr[-500:]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BOMB_POD, "aliases expand to more than 10,000 values"),
        (SELF_ALIAS, "an alias refers to the node that contains it"),
        (nested_block(150), f"nested deeper than {limits.MAX_NESTING} levels"),
        ("[" * 150 + "]" * 150, f"nested deeper than {limits.MAX_NESTING} levels"),
    ],
    ids=["billion-laughs", "self-alias", "deep-block", "deep-flow"],
)
def test_hostile_yaml_is_one_error_with_a_line(text: str, message: str) -> None:
    """Guards the YAML reader's bounds. Before: the 603-byte bomb ran past 20 s and
    950 MB in `review` (and 1.7 GB in `policy check`) building 9^9 values; the
    self-alias and 990-deep nesting raised RecursionError (a traceback, exit 1)."""
    with pytest.raises(yamlfile.YAMLFileError, match=message) as raised:
        list(yamlfile.load_all(text))
    assert raised.value.line >= 1


def test_ordinary_anchors_still_load() -> None:
    """Guards the budget's other side: anchors as Helm values files use them (a block
    reused fifty times, merge keys) and nesting to the limit still load."""
    block = "\n".join(f"  k{i}: v{i}" for i in range(100))
    text = "base: &base\n" + block + "\n" + "\n".join(f"u{i}: *base" for i in range(50))
    value = yamlfile.load_one(text).value
    assert value["u49"]["k99"] == "v99" and len(value) == 51
    merged = yamlfile.load_one("a: &a {x: 1, w: 2}\nb:\n  <<: *a\n  z: 3\n").value
    assert merged["b"] == {"x": 1, "w": 2, "z": 3}
    deep = yamlfile.load_one("[" * (limits.MAX_NESTING - 1) + "]" * (limits.MAX_NESTING - 1))
    assert deep.value is not None


@pytest.mark.parametrize("reader", ["review", "audit", "policy check", "serve"])
def test_every_reader_refuses_a_bomb_in_one_line(reader: str, tmp_path: Path) -> None:
    """Guards each command that reads YAML. Before: `review` and `audit` built the
    bomb until killed (past 20 s, about 1 GB), `policy check` past 20 s and 1.7 GB,
    and `serve --policy` never reached its first request."""
    bomb = tmp_path / "bomb.yaml"
    if reader == "policy check":
        bomb.write_text(BOMB_POLICY)
        result = cli("policy", "check", str(bomb))
    elif reader == "serve":
        bomb.write_text(BOMB_POLICY)
        result = serve(bomb, tmp_path)
    else:
        bomb.write_text(BOMB_POD)
        result = cli(reader, "-f", str(bomb))
    one_line(result, "aliases expand to more than 10,000 values")


def test_the_reloader_refuses_a_bomb_once_and_keeps_the_policy(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Guards the reloader against a bomb. Before: `serve` blocked /healthz for
    about 23 s while the reload built it."""
    path = tmp_path / "policy.yaml"
    path.write_text(DEFAULT)
    runtime = ServingState(policy=files.load_policy(path))
    (watched,) = reload.watchers(Settings(policy=path), runtime, None)
    path.write_text(BOMB_POLICY)
    with caplog.at_level(logging.INFO, logger="webhook"):
        assert watched.check() is False
        assert watched.check() is False
    refusals = [r for r in caplog.records if "refused the new policy" in r.getMessage()]
    assert len(refusals) == 1
    assert "aliases expand" in refusals[0].fields["reason"]  # type: ignore[attr-defined]
    assert runtime.policy == policy.default_policy()


def special_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Paths that are not regular files, each with the refusal it must get."""
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    loop = tmp_path / "loop.yaml"
    loop.symlink_to(loop)
    return {
        "fifo": (fifo, "is a named pipe, not a regular file"),
        "device": (Path("/dev/zero"), "is a character device, not a regular file"),
        "symlink-loop": (loop, "symlink loop"),
        "directory": (tmp_path, "is a directory"),
    }


@pytest.mark.parametrize("kind", ["fifo", "device", "symlink-loop", "directory"])
def test_only_regular_files_are_read(tmp_path: Path, kind: str) -> None:
    """Guards the one reader for every file. Before: a FIFO blocked `review -f`,
    `policy check` and `serve --policy` forever (SIGTERM ignored by the blocked
    read); /dev/zero grew without bound; a symlink loop was "Too many levels of
    symbolic links" from Python. (A directory was already refused; that case
    guards it.)"""
    path, message = special_files(tmp_path)[kind]
    workdir = tmp_path / "work"
    workdir.mkdir()
    results = [cli("policy", "check", str(path)), serve(path, workdir)]
    if kind != "directory":  # a directory is a set of manifests to `review`
        results.append(cli("review", "-f", str(path)))
    for result in results:
        one_line(result, f"{path}: {message}")


def test_a_file_over_its_size_cap_is_refused_before_it_is_read(tmp_path: Path) -> None:
    """Guards the size caps: a policy over 1 MiB (a ConfigMap's limit) is refused from
    its size, and standard input is cut at the cap. Before: any size was read whole."""
    big = tmp_path / "policy.yaml"
    big.write_text(DEFAULT + "#" * files.MAX_POLICY_BYTES)
    one_line(cli("policy", "check", str(big)), "larger than 1 MiB, the most a policy file may be")
    import io

    with pytest.raises(InputError, match="<stdin>: larger than 16 bytes"):
        files.read_stream(io.BytesIO(b"x" * 17), name="<stdin>", limit=16, what="manifest input")
    assert files.read_stream(io.BytesIO(b"x" * 16), name="-", limit=16, what="m") == b"x" * 16


def test_a_symlinked_policy_as_a_configmap_mounts_it_is_read(tmp_path: Path) -> None:
    """Guards the other side of "regular files only": the kubelet's symlinks are followed
    (this held before; it guards the new reader)."""
    project(tmp_path / "config", {"policy.yaml": DEFAULT.encode()})
    assert files.load_policy(tmp_path / "config" / "policy.yaml") == policy.default_policy()


def test_a_load_that_raises_anything_is_refused_and_polling_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Guards the watcher against loads that fail in unexpected ways. Before: only
    `UsageError` was caught; a `MemoryError` or `RecursionError` ended the watch task
    with no log line, no metric, and readiness still 200."""
    path = tmp_path / "policy.yaml"
    path.write_text("one")
    results: list[str] = []
    failures = [MemoryError(), RecursionError("maximum recursion depth exceeded")]

    def load() -> None:
        if failures:
            raise failures.pop(0)

    watched = reload.Watched("policy", [path], load, results.append)
    with caplog.at_level(logging.INFO, logger="webhook"):
        path.write_text("two")
        assert watched.check() is False
        path.write_text("three")
        assert watched.check() is False
        path.write_text("four")
        assert watched.check() is True
    reasons = [r.fields["reason"] for r in caplog.records if "refused" in r.getMessage()]  # type: ignore[attr-defined]
    assert reasons == [
        f"{path}: cannot be loaded (out of memory)",
        f"{path}: cannot be loaded (nested too deeply)",
    ]
    assert results == ["rejected", "rejected", "loaded"]


def test_after_hostile_and_missing_files_a_good_policy_and_a_rotated_certificate_load(
    tmp_path: Path,
) -> None:
    """Guards hot reload end to end through every way a watched file goes bad: a
    self-referencing alias, nesting past the limit, the file deleted, replaced by a
    directory, by a FIFO; each is refused once in the log and counted, readiness
    stays 200 on the last good policy, and then a valid policy and a rotated
    certificate are both picked up. Before: the self-alias's RecursionError ended
    the watch task, so neither the policy nor the certificate was ever reloaded."""
    authority = pki.new_authority("test CA")
    (tmp_path / "ca.crt").write_bytes(authority.cert_pem)
    names = pki.service_names(servers.SERVICE, servers.NAMESPACE)
    tls_dir, config = tmp_path / "tls", tmp_path / "config"

    def rotate() -> int:
        cert, key = pki.issue(authority, dns_names=names)
        project(tls_dir, {"tls.crt": cert, "tls.key": key})
        return int(x509.load_pem_x509_certificate(cert).serial_number)

    rotate()
    project(config, {"policy.yaml": DEFAULT.encode()})
    policy_file = config / "policy.yaml"
    args = [*servers.tls_args(tls_dir), "--policy", str(policy_file), "--reload-interval", "0.1"]
    with servers.running(args, ca_file=tmp_path / "ca.crt", workdir=tmp_path) as server:

        def get(path: str) -> httpx.Response:
            with server.client() as client:
                return client.get(path, extensions={"sni_hostname": servers.SERVICE_DNS})

        def refusals() -> int:
            return server.log().count("refused the new policy")

        def go_bad(make_bad: object) -> None:
            before = refusals()
            assert callable(make_bad)
            make_bad()
            wait_for(lambda: refusals() == before + 1)
            time.sleep(0.4)  # several more polls: still one line for this state
            assert refusals() == before + 1
            assert get("/readyz").status_code == 200

        go_bad(lambda: project(config, {"policy.yaml": SELF_ALIAS.encode()}))
        go_bad(lambda: project(config, {"policy.yaml": nested_block(150).encode()}))
        go_bad(policy_file.unlink)
        go_bad(policy_file.mkdir)
        os.rmdir(policy_file)
        go_bad(lambda: os.mkfifo(policy_file))
        os.unlink(policy_file)
        policy_file.symlink_to(Path("..data") / "policy.yaml")
        project(config, {"policy.yaml": DEFAULT.replace("user: 1001", "user: 2000").encode()})
        serial = rotate()

        def patched_user() -> int:
            return servers.run_as_user(server, POD)

        def served_serial() -> int:
            with (
                server.client() as client,
                client.stream(
                    "GET", "/readyz", extensions={"sni_hostname": servers.SERVICE_DNS}
                ) as response,
            ):
                return serial_of(response)

        wait_for(lambda: patched_user() == 2000 and served_serial() == serial)
        metrics = get("/metrics").text
        assert 'volume_init_policy_reloads_total{result="rejected"} 5.0' in metrics
        assert get("/healthz").status_code == 200
        log = server.log()
        assert "Traceback" not in log
        for reason in (
            "an alias refers to the node that contains it",
            f"nested deeper than {limits.MAX_NESTING} levels",
            "watched file not found",
            "is a directory",
            "is a named pipe",
        ):
            assert reason in log, reason


DIGEST = "sha256:" + "a" * 64
POLICY_REFUSALS = [
    ("user: 1001", "user: 0", 24, "spec.rules[0].user", "0 is root"),
    ("group: 1001", "group: 0", 25, "spec.rules[0].group", "0 is root"),
    (
        "mountPaths: [/app/api/storage]",
        "mountPaths: [/app/api/storage/../../../etc]",
        23,
        "spec.rules[0].mountPaths[0]",
        "'/app/api/storage/../../../etc' is /etc, which is a system path (under /etc)",
    ),
    ("mountPaths: [/app/api/storage]", "mountPaths: [/]", 23, "spec.rules[0].mountPaths[0]",
     "'/' is the root directory"),
    ("mountPaths: [/app/api/storage]", "mountPaths: [/bin]", 23, "spec.rules[0].mountPaths[0]",
     "'/bin' is a system path (under /bin)"),
    ("mountPaths: [/app/api/storage]", "mountPaths: [/var/lib]", 23, "spec.rules[0].mountPaths[0]",
     "a directory that contains the system path /var/lib/kubelet"),
    ("image: busybox:1.36.1", "image: 'busybox:1.36.1; rm -rf /'", 28,
     "spec.rules[0].initContainer.image", "is not an image reference"),
    ("image: busybox:1.36.1", "image: 'busybox:1.36.1 '", 28,
     "spec.rules[0].initContainer.image", "is not an image reference"),
    ("image: busybox:1.36.1", "image: Busybox:1.36.1", 28,
     "spec.rules[0].initContainer.image", "is not an image reference"),
    ("image: busybox:1.36.1", "image: busybox:latest", 28,
     "spec.rules[0].initContainer.image", "uses ':latest'"),
    ("image: busybox:1.36.1", "image: registry.example.com:5000/busybox", 28,
     "spec.rules[0].initContainer.image", "has no tag"),
    ("image: busybox:1.36.1", "image: busybox@sha256:abc", 28,
     "spec.rules[0].initContainer.image", "the digest after '@' is malformed"),
    ("requests: {cpu: 10m,", "requests: {cpu: -10m,", 29,
     "spec.rules[0].initContainer.resources.requests.cpu", "'-10m' is negative"),
    ("requests: {cpu: 10m,", "requests: {cpu: 1.5.5,", 29,
     "spec.rules[0].initContainer.resources.requests.cpu", "is not a Kubernetes quantity"),
    ("requests: {cpu: 10m,", "requests: {cpus: 10m,", 29,
     "spec.rules[0].initContainer.resources.requests.cpus", "is not a container resource"),
    ("requests: {cpu: 10m,", "requests: {kubernetes.io/x: 1,", 29,
     "spec.rules[0].initContainer.resources.requests.kubernetes.io/x",
     "is not a container resource"),
    ("memory: 16Mi}", "memory: 128Mi}", 29, "spec.rules[0].initContainer.resources",
     "requests.memory 128Mi is more than limits.memory 64Mi"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("old", "new", "line", "field", "reason"),
    POLICY_REFUSALS,
    ids=[f"{case[3].rsplit('.', 1)[-1]}-{case[2]}-{i}" for i, case in enumerate(POLICY_REFUSALS)],
)
def test_the_policy_refuses_what_would_break_or_subvert_pods(
    old: str, new: str, line: int, field: str, reason: str
) -> None:
    """Guards part 4: each refusal is `file:line: field: reason`. Before: `user: 0`,
    `group: 0`, mount paths `/`, `/bin`, `/var/lib` and `../../../etc`, negative and
    over-limit quantities, unknown resource names and an upper-case image were all
    accepted (the init container then hid its own /bin, or made Dify run as root);
    `busybox:1.36.1; rm -rf /` was refused for the wrong reason ("has no tag").
    (`:latest`, a missing tag, a malformed digest and a malformed quantity were
    already refused; those cases guard it.)"""
    assert FIRST_RULE.count(old) == 1, old
    errors = policy.policy_errors(FIRST_RULE.replace(old, new), source="p.yaml")
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"p.yaml:{line}: {field}: "), errors[0]
    assert reason in errors[0], errors[0]


def test_the_policy_accepts_what_kubernetes_accepts() -> None:
    """Guards the other side: pinned references with registry, port and digest,
    extended and hugepages resources, quantities with every suffix, a nested path."""
    text = (
        DEFAULT.replace(
            "image: busybox:1.36.1",
            f"image: registry.example.com:5000/mirror/busybox:1.36.1-musl@{DIGEST}",
        )
        .replace(
            "requests: {cpu: 10m, memory: 16Mi}",
            "requests: {cpu: 0.01, memory: 16e6, hugepages-2Mi: 2Mi, example.com/dev: 1}",
        )
        .replace("mountPaths: [/app/api/storage]", "mountPaths: [/app/api/storage/, /data/x]")
    )
    assert policy.policy_errors(text, source="p.yaml") == []
    rule = policy.parse_policy(text, source="p.yaml").spec.rules[0]
    assert rule.mount_paths == ("/app/api/storage", "/data/x")
    assert names.quantity_value("16Mi") == 16 * 1024 * 1024
    assert names.quantity_value("10m") == names.quantity_value("0.01")
    assert names.quantity_value("1e3") == names.quantity_value("1k")


def test_an_expired_or_future_certificate_is_not_swapped_in(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Guards part 8: on reload an expired or not-yet-valid certificate is refused with
    one line and the valid one keeps serving; at start-up one is served with a warning
    naming its dates. Before: both were swapped in, and every handshake failed."""
    now = dt.datetime.now(dt.UTC)
    authority = pki.new_authority("test CA", now=now - dt.timedelta(days=30))

    def install(start: dt.datetime, days: int) -> bytes:
        cert, key = pki.issue(authority, dns_names=["svc"], days=days, now=start)
        (tmp_path / "tls.crt").write_bytes(cert)
        (tmp_path / "tls.key").write_bytes(key)
        return cert

    install(now - dt.timedelta(days=20), 10)  # expired ten days ago
    settings = Settings(tls_cert=tmp_path / "tls.crt", tls_key=tmp_path / "tls.key")
    runtime = ServingState(policy=None)
    with caplog.at_level(logging.INFO, logger="webhook"):
        store = reload.CertificateStore(settings, runtime)
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "the serving certificate has expired (valid from " in warning
    good = install(now - dt.timedelta(days=1), 90)
    store.reload()
    in_force = store.current
    (watched,) = [
        w for w in reload.watchers(settings, runtime, store) if w.name.endswith("certificate")
    ]
    for start, days, problem in (
        (now - dt.timedelta(days=20), 10, "has expired"),
        (now + dt.timedelta(days=2), 90, "is not valid yet"),
    ):
        install(start, days)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="webhook"):
            assert watched.check() is False
        (refusal,) = [r for r in caplog.records if "refused" in r.getMessage()]
        assert f"the new certificate {problem} (valid from" in refusal.fields["reason"]  # type: ignore[attr-defined]
        assert store.current is in_force
    gauge = runtime.metrics.certificate_expiry.collect()[0].samples[0].value
    assert gauge == pki.expiry(good).timestamp()


HELM_API = (helpers.PODS / "helm-api.yaml").read_text()
JSON_POD = '{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "x": %s}'
NUL_LINE = HELM_API.count("\n") + 2
ONE_LINE_CASES = {
    "5000-digit-int-yaml": (HELM_API + "extra: " + "9" * 5000 + "\n", "yaml", "past 64 bits"),
    "5000-digit-int-json": (JSON_POD % ("9" * 5000), "json", "past 64 bits"),
    "nan-yaml": (HELM_API + "extra: .nan\n", "yaml", "has no JSON form"),
    "nan-json": (JSON_POD % "NaN", "json", "NaN has no place in JSON"),
    "1e400-json": (JSON_POD % "1e400", "json", "beyond the range of a number"),
    "surrogate-json": (JSON_POD % '"\\ud800"', "json", "lone UTF-16 surrogate"),
    "deep-json": (JSON_POD % ("[" * 500 + "]" * 500), "json", "nested deeper than 100 levels"),
    "nul-yaml": (HELM_API + "extra: a\n\x00\n", "yaml", f"{NUL_LINE}: invalid YAML: a control"),
    "binary-not-text": (HELM_API + "extra: !!binary /w==\n", "yaml", "!!binary that is not UTF-8"),
}  # fmt: skip


@pytest.mark.parametrize("output", ["diff", "yaml", "json", "patch"])
@pytest.mark.parametrize("case", sorted(ONE_LINE_CASES))
def test_no_input_reaches_a_traceback(tmp_path: Path, case: str, output: str) -> None:
    """Guards part 6 for `review` in every output: one line naming file and line, exit
    2. Before: a 5,000-digit integer, a lone surrogate (-o json) and `!!binary` were
    tracebacks with exit 1 (which `--exit-code` reserves for "would change"); `NaN`,
    `.nan` and `1e400` were written as `NaN`/`Infinity` into `-o json`; a NUL byte had
    no line."""
    text, suffix, message = ONE_LINE_CASES[case]
    path = tmp_path / f"input.{suffix}"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    result = cli("review", "-f", str(path), "-o", output)
    one_line(result, message)
    assert str(path) in result.stderr


def test_dates_and_binary_are_text_as_kubernetes_reads_them(tmp_path: Path) -> None:
    """Guards dates and `!!binary` in every output: the text (as sigs.k8s.io/yaml turns
    YAML into JSON), never a crash. Before: `-o yaml`/`-o diff` raised "cannot write a
    date as YAML" and `-o json` "date is not JSON serializable", exit 1."""
    path = tmp_path / "pod.yaml"
    path.write_text(
        HELM_API + "extra: {when: 2024-01-01, at: 2024-01-01T10:00:00Z, b: !!binary aGk=}\n"
    )
    import json

    for output in ("diff", "yaml", "json", "patch"):
        result = cli("review", "-f", str(path), "-o", output)
        assert result.returncode == 0, result.stderr
    result = cli("review", "-f", str(path), "-o", "json")
    (reviewed,) = json.loads(f"[{result.stdout}]") if result.stdout.startswith("{") else [None]
    assert reviewed is not None and reviewed["extra"] == {
        "when": "2024-01-01",
        "at": "2024-01-01T10:00:00Z",
        "b": "hi",
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["certs", "--service", ""], "--service: '' must be a DNS-1035 label"),
        (["certs", "--service", "a" * 64], "must be a DNS-1035 label"),
        (["certs", "--namespace", "Ops"], "--namespace: 'Ops' must be a DNS-1123 label"),
        (["manifests", "--namespace", ""], "--namespace: '' must be a DNS-1123 label"),
        (["manifests", "--image", "bad image"], "--image: image 'bad image' is not an image"),
        (["manifests", "--image", "busybox:latest"], "uses ':latest'"),
    ],
)
def test_bad_names_and_images_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    """Guards part 6 for `certs` and `manifests`. Before: an empty service name
    silently became the default, a 64-character one was a traceback ("label length
    must be <= 63"), and `manifests` rendered any namespace or image into objects
    the apiserver refuses."""
    if args[0] == "certs":
        args = [*args, "--out-dir", str(tmp_path / "c")]
    result = cli(*args)
    one_line(result, message)
    assert not (tmp_path / "c").exists()


def test_a_long_value_is_named_not_echoed(tmp_path: Path) -> None:
    """Guards short messages: a 100 KB label value in a policy is cut to a few dozen
    characters. Before: the whole value was in the message."""
    text = DEFAULT.replace(
        "app.kubernetes.io/name: dify", "app.kubernetes.io/name: " + "A_" * 50_000
    )
    errors = policy.policy_errors(text, source="p.yaml")
    assert errors
    for error in errors:
        assert len(error) < 300, len(error)
        assert "...'" in error


def worker_pids(supervisor: int) -> list[int]:
    """uvicorn's spawned worker processes under `supervisor` (not multiprocessing's helpers)."""
    found = []
    for child in Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split():
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        if b"spawn_main" in cmdline:
            found.append(int(child))
    return found


def test_a_respawned_worker_starts_from_the_policy_validated_at_start(tmp_path: Path) -> None:
    """Guards part 5 with --workers: the policy file goes bad, a worker dies and is
    respawned; it logs one warning and serves the policy validated at start. Before:
    the new worker died on the bad file with a traceback, and the supervisor respawned
    it into the same death."""
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(DEFAULT.replace("user: 1001", "user: 2000"))
    args = [*servers.with_certificates(tmp_path), "--policy", str(policy_file), "--workers", "2"]
    with servers.running(args, ca_file=tmp_path / "ca.crt", workdir=tmp_path) as server:
        # Both workers have built their app (read the policy) before it goes bad.
        wait_for(lambda: server.log().count("Application startup complete") == 2)
        assert len(worker_pids(server.process.pid)) == 2
        policy_file.write_text("apiVersion: [not a policy")
        victim = worker_pids(server.process.pid)[0]
        os.kill(victim, 9)
        wait_for(
            lambda: (
                victim not in worker_pids(server.process.pid)
                and len(worker_pids(server.process.pid)) == 2
            ),
            timeout=30,
        )
        wait_for(lambda: "starts from the policy validated" in server.log(), timeout=30)
        for _ in range(20):  # both workers, whichever takes the connection
            assert servers.run_as_user(server, POD) == 2000
        time.sleep(1)
        log = server.log()
        assert log.count("starts from the policy validated") == 1, log[-3000:]
        assert "Traceback" not in log


def test_sighup_reloads_now_and_never_kills_the_server(tmp_path: Path) -> None:
    """Guards part 5's SIGHUP: it re-reads the policy at once (the poll here is a
    minute) and the server keeps serving. Before: Python's default for SIGHUP ended
    the process on the spot, with no drain."""
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(DEFAULT)
    tls = servers.with_certificates(tmp_path)
    args = [*tls, "--policy", str(policy_file), "--reload-interval", "60"]
    with servers.running(args, ca_file=tmp_path / "ca.crt", workdir=tmp_path) as server:
        assert servers.run_as_user(server, POD) == 1001
        policy_file.write_text(DEFAULT.replace("user: 1001", "user: 3000"))
        server.process.send_signal(signal.SIGHUP)
        wait_for(lambda: servers.run_as_user(server, POD) == 3000, timeout=10)
        assert server.process.poll() is None
        assert "SIGHUP: re-reading the policy and the certificate now" in server.log()


def statefulset_from(pod: dict[str, Any]) -> dict[str, Any]:
    """A StatefulSet whose storage comes from a volumeClaimTemplate, with `pod`'s template."""
    template = copy.deepcopy(pod)
    del template["spec"]["volumes"]
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "dify-api", "namespace": "dify"},
        "spec": {
            "serviceName": "dify-api",
            "selector": {"matchLabels": template["metadata"]["labels"]},
            "template": {"metadata": template["metadata"], "spec": template["spec"]},
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "app-data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "10Gi"}},
                    },
                }
            ],
        },
    }


def test_review_sees_the_pod_the_statefulset_controller_creates(client: TestClient) -> None:
    """Guards part 7: `review` of a StatefulSet whose storage is a volumeClaimTemplate
    injects the same init container `/mutate` gives the pod the controller creates
    (its claim volume `app-data-dify-api-0` added), and leaves the template's volumes
    alone. Before: the review said the storage mount's volume did not exist and
    skipped it, while the live webhook patched the pod."""
    statefulset = statefulset_from(POD)
    options = documents.Options(policy=policy.default_policy(), namespace="dify")
    reviewed = documents.review(copy.deepcopy(statefulset), options)
    assert reviewed.decision is not None and reviewed.decision.reason == "injected", (
        reviewed.decision
    )
    template = reviewed.result["spec"]["template"]
    assert "volumes" not in template["spec"]
    created = copy.deepcopy(POD)
    created["metadata"]["name"] = "dify-api-0"
    created["metadata"]["namespace"] = "dify"
    created["spec"]["volumes"] = [
        {"name": "app-data", "persistentVolumeClaim": {"claimName": "app-data-dify-api-0"}}
    ]
    answer = client.post("/mutate", json=helpers.review(created)).json()
    patched = jsonpatch.apply_patch(created, helpers.decoded_patch(answer) or [])
    assert patched["spec"]["initContainers"] == template["spec"]["initContainers"]
    assert patched["spec"]["securityContext"] == template["spec"]["securityContext"]


def test_yaml_output_always_parses_again(tmp_path: Path) -> None:
    """Guards part 7's output: keys over 1,024 characters are written as explicit keys,
    and a passed-through document keeps its `%TAG` directive (after an explicit `...`).
    Before: `-o yaml` wrote a 2,000-character key as an implicit key, which no YAML
    reader accepts, and dropped `%TAG`, so `!k!str` no longer parsed."""
    from webhook.k8s import emit

    value = {"k" * 2000: "v", "a": [{"b" * 1100: {"c": 1}, "d": 2}], "e" * 1000: 1}
    assert yaml.safe_load(emit.emit(value)) == value
    tagged = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n...\n"
        "%TAG !k! tag:yaml.org,2002:\n---\n"
        'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: !k!str b}\ndata: {x: !k!str "1"}\n'
    )
    path = tmp_path / "stream.yaml"
    path.write_text(tagged + "---\n" + HELM_API)
    result = cli("review", "-f", str(path), "-o", "yaml")
    assert result.returncode == 0, result.stderr
    assert "%TAG !k! tag:yaml.org,2002:\n---\n" in result.stdout
    docs = list(yaml.safe_load_all(result.stdout))
    assert [d["metadata"].get("name") for d in docs[:2]] == ["a", "b"]
    assert docs[1]["data"] == {"x": "1"}
    assert docs[2]["spec"]["initContainers"][0]["name"] == "volume-permissions"


BAD_ENVELOPES = {
    "nan": b'"x": NaN',
    "5000-digits": b'"x": ' + b"9" * 5000,
    "surrogate": b'"x": "\\ud800"',
    "deep": b'"x": ' + b"[" * 2000 + b"]" * 2000,
}


@pytest.mark.parametrize("case", sorted(BAD_ENVELOPES))
def test_review_refuses_what_mutate_refuses(client: TestClient, tmp_path: Path, case: str) -> None:
    """Guards part 6's agreement: an AdmissionReview `/mutate` answers 400 is refused by
    `review` too (exit 2, one line), never reviewed as if it were fine. (The other way
    round need not hold: `review` stops at 100 levels of nesting, which no object an
    apiserver sends comes near, and orjson at `/mutate` at 1,024.) Before: `review`
    accepted `NaN` and lone surrogates, and crashed on 5,000 digits and 2,000 levels."""
    body = json.dumps(helpers.review(POD)).encode()
    body = body[:-2] + b", " + BAD_ENVELOPES[case] + b"}}"
    assert client.post("/mutate", content=body).status_code == 400
    path = tmp_path / "review.json"
    path.write_bytes(body)
    one_line(cli("review", "-f", str(path)), str(path))


@pytest.mark.parametrize("kind", ["fifo", "not-pem"])
def test_certs_reads_its_own_directory_through_the_guarded_reader(
    tmp_path: Path, kind: str
) -> None:
    """Guards `certs` on a directory someone else touched: a serving certificate that is
    a FIFO or not PEM is one line and exit 2. Before: the FIFO blocked `certs --renew`
    forever and the junk file was a message about an unexpected value."""
    out = tmp_path / "certs"
    assert cli("certs", "--out-dir", str(out)).returncode == 0
    tls = out / "tls.crt"
    tls.unlink()
    if kind == "fifo":
        os.mkfifo(tls)
        one_line(cli("certs", "--renew", "--out-dir", str(out)), f"{tls}: is a named pipe")
    else:
        tls.write_text("junk")
        one_line(cli("certs", "--out-dir", str(out)), f"{tls}: not a PEM certificate")


def test_policy_check_of_standard_input_is_read_like_a_file() -> None:
    """Guards `policy check -`: standard input goes through the same reader as a file,
    so non-UTF-8 bytes are `<stdin>:line: not UTF-8 text (byte N)`. Before: stdin was
    read as text whole, and the decoding error fell through to the last resort."""
    result = subprocess.run(
        [sys.executable, "-m", "webhook", "policy", "check", "-"],
        input=b"apiVersion: \xff\n",
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr == b"dify-volume-init: <stdin>:1: not UTF-8 text (byte 12)\n"
