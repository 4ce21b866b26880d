"""Reliability and security under bad input, faults and load, against real servers.

The bad-input corpus goes over TLS to a running `dify-volume-init serve`; each
case has the answer docs/design.md#endpoints documents, no case gets a 5xx, and the server is
healthy afterwards. No value from a pod's spec may reach the logs.
"""

from __future__ import annotations

import copy
import json
import signal
import socket
import ssl
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonpatch
import pytest

from tests import helpers, servers
from webhook.certs import pki, store

MARKER = "sk-MARKER-5ecret-7f3a"
POD = helpers.load_pod(helpers.PODS / "helm-api.yaml")
POD["spec"]["containers"][0]["env"].append({"name": "SECRET_KEY", "value": MARKER})
SNI = {"sni_hostname": servers.SERVICE_DNS}


def valid() -> dict[str, Any]:
    return helpers.review(copy.deepcopy(POD), uid="corpus-uid")


def changed(edit: Callable[[dict[str, Any]], object]) -> bytes:
    body = valid()
    edit(body)
    return json.dumps(body).encode()


def obj(body: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = body["request"]["object"]
    return result


def big_pod() -> dict[str, Any]:
    return helpers.with_managed_fields(POD, entries=66, fields=400)


def nested(depth: int) -> bytes:
    return (
        b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":'
        + (b"[" * depth + b"]" * depth)
        + b"}"
    )


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(body: dict[str, Any]) -> None:
        node: Any = body
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value

    return edit


def _del(path: tuple[Any, ...]) -> Callable[[dict[str, Any]], None]:
    def edit(body: dict[str, Any]) -> None:
        node: Any = body
        for part in path[:-1]:
            node = node[part]
        del node[path[-1]]

    return edit


R = ("request",)
OBJ = ("request", "object")
C0 = ("request", "object", "spec", "containers", 0)
VALID = json.dumps(valid()).encode()

# (name, body, expected status, what the answer must say)
CORPUS: list[tuple[str, bytes, int, str]] = [
    ("not-json", b"hello", 400, "not JSON"),
    ("empty", b"", 400, "empty request body"),
    ("whitespace", b" \n\t ", 400, "empty request body"),
    ("json-number", b"42", 400, "not a JSON object"),
    ("json-string", b'"review"', 400, "not a JSON object"),
    ("json-array", b"[]", 400, "not a JSON object"),
    ("json-null", b"null", 400, "not a JSON object"),
    ("truncated-end", VALID[:-7], 400, "not JSON"),
    ("truncated-half", VALID[: len(VALID) // 2], 400, "not JSON"),
    ("nan", VALID.replace(b'"operation": "CREATE"', b'"operation": NaN'), 400, "not JSON"),
    ("wrong-api-version", changed(_set(("apiVersion",), "admission.k8s.io/v2")), 400, "apiVersion"),
    ("no-api-version", changed(_del(("apiVersion",))), 400, "apiVersion"),
    ("api-version-number", changed(_set(("apiVersion",), 1)), 400, "apiVersion"),
    ("wrong-kind", changed(_set(("kind",), "Pod")), 400, "kind"),
    ("no-kind", changed(_del(("kind",))), 400, "kind"),
    ("no-request", changed(_del(R)), 400, "request"),
    ("request-null", changed(_set(R, None)), 400, "request"),
    ("request-list", changed(_set(R, [])), 400, "request"),
    ("request-string", changed(_set(R, "x")), 400, "request"),
    ("no-uid", changed(_del((*R, "uid"))), 400, "request.uid"),
    ("uid-empty", changed(_set((*R, "uid"), "")), 400, "request.uid"),
    ("uid-number", changed(_set((*R, "uid"), 7)), 400, "request.uid"),
    ("uid-null", changed(_set((*R, "uid"), None)), 400, "request.uid"),
    ("uid-list", changed(_set((*R, "uid"), ["a"])), 400, "request.uid"),
    ("no-operation", changed(_del((*R, "operation"))), 400, "request.operation"),
    ("operation-number", changed(_set((*R, "operation"), 1)), 400, "request.operation"),
    ("object-null", changed(_set(OBJ, None)), 400, "request.object"),
    ("object-list", changed(_set(OBJ, [POD])), 400, "request.object"),
    ("object-string", changed(_set(OBJ, "pod")), 400, "request.object"),
    ("labels-list", changed(_set((*OBJ, "metadata", "labels"), ["app"])), 400, "metadata.labels"),
    ("labels-string", changed(_set((*OBJ, "metadata", "labels"), "a=b")), 400, "metadata.labels"),
    (
        "label-value-number",
        changed(_set((*OBJ, "metadata", "labels", "component"), 1)),
        400,
        "labels",
    ),
    ("annotations-list", changed(_set((*OBJ, "metadata", "annotations"), [])), 400, "annotations"),
    (
        "annotation-null",
        changed(_set((*OBJ, "metadata", "annotations", "a"), None)),
        400,
        "annotations",
    ),
    ("metadata-string", changed(_set((*OBJ, "metadata"), "m")), 400, "metadata"),
    ("spec-missing", changed(_del((*OBJ, "spec"))), 400, "spec"),
    ("spec-null", changed(_set((*OBJ, "spec"), None)), 400, "spec"),
    ("containers-map", changed(_set((*OBJ, "spec", "containers"), {"api": {}})), 400, "containers"),
    ("containers-string", changed(_set((*OBJ, "spec", "containers"), "api")), 400, "containers"),
    ("container-string", changed(_set(C0, "api")), 400, "containers[0]"),
    ("mounts-map", changed(_set((*C0, "volumeMounts"), {})), 400, "volumeMounts"),
    ("mount-no-name", changed(_del((*C0, "volumeMounts", 0, "name"))), 400, "volumeMounts[0].name"),
    ("mount-no-path", changed(_del((*C0, "volumeMounts", 0, "mountPath"))), 400, "mountPath"),
    (
        "mount-path-number",
        changed(_set((*C0, "volumeMounts", 0, "mountPath"), 5)),
        400,
        "mountPath",
    ),
    ("volumes-map", changed(_set((*OBJ, "spec", "volumes"), {})), 400, "spec.volumes"),
    ("volume-string", changed(_set((*OBJ, "spec", "volumes", 0), "app-data")), 400, "volumes[0]"),
    (
        "volume-no-type",
        changed(_set((*OBJ, "spec", "volumes", 0), {"name": "app-data"})),
        200,
        "injected",
    ),
    ("sc-list", changed(_set((*OBJ, "spec", "securityContext"), [])), 400, "securityContext"),
    (
        "run-as-string",
        changed(_set((*C0, "securityContext"), {"runAsUser": "0"})),
        400,
        "runAsUser",
    ),
    (
        "run-as-huge",
        changed(_set((*C0, "securityContext"), {"runAsUser": 10**30})),
        400,
        "runAsUser: expected an integer",
    ),
    ("run-as-float", changed(_set((*C0, "securityContext"), {"runAsUser": 1.5})), 400, "runAsUser"),
    ("number-1e400", VALID.replace(b'"dryRun": false', b'"dryRun": 1e400'), 400, "infinity"),
    (
        "number-5000-digits",
        VALID.replace(b'"dryRun": false', b'"dryRun": ' + b"9" * 5000),
        400,
        "JSON",
    ),
    ("non-utf8", b'{"apiVersion": "\xff\xfe"}', 400, "not UTF-8"),
    ("utf16", VALID.decode().encode("utf-16"), 400, "not UTF-8"),
    ("nesting-10000", nested(10_000), 400, "nested too deeply"),
    ("body-4mib", b" " * (4 * 1024 * 1024), 413, "over"),
    (
        "duplicate-keys",
        VALID.replace(b'"uid": "corpus-uid"', b'"uid": "first", "uid": "corpus-uid"'),
        200,
        "injected",
    ),
    ("update-with-junk", changed(_set((*R, "operation"), "UPDATE")), 200, "allowed"),
    ("subresource", changed(_set((*R, "subResource"), "binding")), 200, "allowed"),
    ("kind-string", changed(_set((*R, "kind"), "Pod")), 200, "injected"),
    ("dry-run", changed(_set((*R, "dryRun"), True)), 200, "injected"),
    ("managed-fields-1mib", changed(_set(OBJ, big_pod())), 200, "injected"),
]


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tls")
    store.write_files(
        directory, pki.build(dns_names=pki.service_names(servers.SERVICE, servers.NAMESPACE))
    )
    return directory


@pytest.fixture(scope="module")
def server(tls_dir: Path) -> Iterator[servers.Server]:
    args = [*servers.tls_args(tls_dir), "--log-level", "debug", "--log-format", "text"]
    with servers.running(args, ca_file=tls_dir / "ca.crt", workdir=tls_dir) as running:
        yield running


def test_the_corpus_is_large_enough() -> None:
    """Guards the corpus itself: size, unique names, a body over 1 MiB."""
    assert len(CORPUS) >= 50
    assert len({name for name, *_ in CORPUS}) == len(CORPUS)
    assert len(json.dumps(big_pod())) > 1024 * 1024


@pytest.mark.parametrize(("name", "body", "status", "says"), CORPUS, ids=[c[0] for c in CORPUS])
def test_bad_input_gets_its_documented_answer(
    server: servers.Server, name: str, body: bytes, status: int, says: str
) -> None:
    """Guards each bad input's documented answer over real TLS."""
    with server.client(timeout=30) as client:
        response = client.post("/mutate", content=body, extensions=SNI)
    assert response.status_code == status, response.text[:300]
    if status == 200:
        answer = response.json()
        assert answer["kind"] == "AdmissionReview"
        if says == "injected":
            assert answer["response"]["auditAnnotations"]["outcome"] == "injected"
            request = json.loads(body)["request"]
            patched = jsonpatch.apply_patch(request["object"], helpers.decoded_patch(answer))
            assert patched["spec"]["initContainers"][0]["name"] == "volume-permissions"
            assert patched["metadata"].get("managedFields") == request["object"]["metadata"].get(
                "managedFields"
            )
        else:
            assert answer["response"]["allowed"] is True
            assert "patch" not in answer["response"]
    else:
        assert says in response.text
        assert response.text.count("\n") == 1, "one line"


def test_server_is_healthy_after_the_corpus(server: servers.Server) -> None:
    """Guards the server's health after the whole corpus."""
    with server.client() as client:
        for _, body, _, _ in CORPUS:
            client.post("/mutate", content=body, extensions=SNI)
        assert client.get("/healthz", extensions=SNI).status_code == 200
        assert client.get("/readyz", extensions=SNI).status_code == 200
        response = client.post("/mutate", json=valid(), extensions=SNI)
        assert response.status_code == 200
        assert helpers.decoded_patch(response.json())
        assert client.get("/mutate", extensions=SNI).status_code == 405
        assert client.post("/nowhere", content=VALID, extensions=SNI).status_code == 404
    assert server.process.poll() is None


def test_duplicate_keys_keep_the_last_like_go(server: servers.Server) -> None:
    """Guards duplicate JSON keys: the last wins, as in Go."""
    body = VALID.replace(b'"uid": "corpus-uid"', b'"uid": "first", "uid": "last"')
    with server.client() as client:
        answer = client.post("/mutate", content=body, extensions=SNI).json()
    assert answer["response"]["uid"] == "last"


def test_no_pod_value_reaches_the_logs(server: servers.Server) -> None:
    """At debug level, after every corpus case and valid requests carrying a secret."""
    with server.client() as client:
        for body in (VALID, changed(_set((*OBJ, "spec", "containers"), {"x": MARKER}))):
            client.post("/mutate", content=body, extensions=SNI)
        client.post("/mutate", content=changed(_set(("apiVersion",), MARKER)), extensions=SNI)
    log = server.log()
    assert "admission" in log
    assert MARKER not in log


def test_tls_1_1_is_refused(server: servers.Server, tls_dir: Path) -> None:
    """Guards the TLS 1.2 minimum (against a control server that speaks 1.1)."""

    def handshake(port: int) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(str(tls_dir / "ca.crt"))
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.1 is, on purpose
            context.minimum_version = ssl.TLSVersion.TLSv1_1
            context.maximum_version = ssl.TLSVersion.TLSv1_1
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as sock,
            context.wrap_socket(sock, server_hostname=servers.SERVICE_DNS),
        ):
            pass

    # Control: this client does speak TLS 1.1 to a server that allows it,
    # so a failure against the webhook is the webhook's refusal.
    control = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    control.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        control.minimum_version = ssl.TLSVersion.TLSv1_1
    control.load_cert_chain(str(tls_dir / "tls.crt"), str(tls_dir / "tls.key"))
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def accept() -> None:
            conn, _ = listener.accept()
            try:
                with control.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                pass

        thread = threading.Thread(target=accept)
        thread.start()
        try:
            handshake(listener.getsockname()[1])
            control_works = True
        except ssl.SSLError:
            control_works = False
        thread.join()
    if not control_works:
        pytest.skip("this machine's OpenSSL cannot speak TLS 1.1 at all")
    with pytest.raises(ssl.SSLError):
        handshake(server.port)
    # and TLS 1.2 works
    context = ssl.create_default_context(cafile=str(tls_dir / "ca.crt"))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname=servers.SERVICE_DNS) as tls,
    ):
        assert tls.version() == "TLSv1.2"


def test_no_plain_http_answer_on_the_serving_port(server: servers.Server) -> None:
    """Guards that plain HTTP gets no answer on the TLS port."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        try:
            while chunk := sock.recv(4096):
                received += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    assert not received.startswith(b"HTTP/")
    assert b"ok" not in received


def test_a_slow_client_does_not_hold_up_others(server: servers.Server, tls_dir: Path) -> None:
    """Guards against slow clients holding up others."""
    context = ssl.create_default_context(cafile=str(tls_dir / "ca.crt"))
    stop = threading.Event()

    def trickle() -> None:
        with (
            socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock,
            context.wrap_socket(sock, server_hostname=servers.SERVICE_DNS) as tls,
        ):
            request = b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
            for byte in request:
                if stop.is_set():
                    return
                tls.sendall(bytes([byte]))
                time.sleep(1)

    slow = [threading.Thread(target=trickle) for _ in range(3)]
    for thread in slow:
        thread.start()
    time.sleep(1.5)
    try:
        with server.client() as client:
            for _ in range(20):
                start = time.monotonic()
                response = client.post("/mutate", json=valid(), extensions=SNI)
                assert response.status_code == 200
                assert time.monotonic() - start < 1.0, "held up behind a slow client"
    finally:
        stop.set()
        for thread in slow:
            thread.join()


def test_client_certificates_when_a_client_ca_is_set(tmp_path: Path, tls_dir: Path) -> None:
    """Guards --client-ca: 403 without a certificate, handshake failure with a foreign
    one, probes free."""
    authority = pki.new_authority("apiserver client CA")
    (tmp_path / "client-ca.crt").write_bytes(authority.cert_pem)
    cert, key = pki.issue(authority, dns_names=["kube-apiserver"], client=True)
    (tmp_path / "client.crt").write_bytes(cert)
    (tmp_path / "client.key").write_bytes(key)
    stranger = pki.new_authority("someone else")
    other_cert, other_key = pki.issue(stranger, dns_names=["kube-apiserver"], client=True)
    (tmp_path / "other.crt").write_bytes(other_cert)
    (tmp_path / "other.key").write_bytes(other_key)
    args = [*servers.tls_args(tls_dir), "--client-ca", str(tmp_path / "client-ca.crt")]
    with servers.running(args, ca_file=tls_dir / "ca.crt", workdir=tmp_path) as server:

        def client(cert_name: str | None) -> httpx.Client:
            context = server.context()
            if cert_name:
                context.load_cert_chain(
                    tmp_path / f"{cert_name}.crt", tmp_path / f"{cert_name}.key"
                )
            return httpx.Client(verify=context, base_url=server.url)

        with client("client") as good:
            assert good.post("/mutate", json=valid(), extensions=SNI).status_code == 200
        with client(None) as anonymous:
            response = anonymous.post("/mutate", json=valid(), extensions=SNI)
            assert response.status_code == 403
            assert "client certificate" in response.text
            # the kubelet's probes present no certificate
            assert anonymous.get("/readyz", extensions=SNI).status_code == 200
        with client("other") as wrong, pytest.raises(httpx.TransportError):
            wrong.post("/mutate", json=valid(), extensions=SNI)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda d: ["--tls-cert", str(d / "missing.crt"), "--tls-key", str(d / "tls.key")],
            "missing.crt: certificate file not found",
        ),
        (
            lambda d: ["--tls-cert", str(d), "--tls-key", str(d / "tls.key")],
            "is a directory, not a certificate file",
        ),
        (
            lambda d: [*servers.tls_args(d), "--policy", str(d / "nope.yaml")],
            "nope.yaml: policy file not found",
        ),
        (lambda d: [*servers.tls_args(d), "--policy", str(d)], "is a directory"),
        (
            lambda d: [*servers.tls_args(d), "--client-ca", str(d / "none.crt")],
            "none.crt: client CA file not found",
        ),
    ],
)
def test_bad_files_at_start_fail_fast_with_one_line(
    tls_dir: Path, make: Callable[[Path], list[str]], message: str
) -> None:
    """Guards bad files at start: exit 2 and one line, quickly."""
    import sys

    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "webhook",
            "serve",
            "--port",
            str(servers.free_port()),
            *make(tls_dir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert time.monotonic() - started < 10


def test_sigterm_drains_without_failing_a_request(tls_dir: Path, tmp_path: Path) -> None:
    """Readiness turns false first, in-flight and new requests during the drain
    succeed, then the process exits well within the grace period."""
    args = [*servers.tls_args(tls_dir), "--shutdown-delay", "1.5"]
    with servers.running(args, ca_file=tls_dir / "ca.crt", workdir=tmp_path) as server:
        results: list[str] = []
        not_ready_at: list[float] = []
        stop = threading.Event()

        def load() -> None:
            with server.client(timeout=30) as client:
                while not stop.is_set():
                    try:
                        response = client.post("/mutate", json=valid(), extensions=SNI)
                        results.append(str(response.status_code))
                    except httpx.TransportError as exc:
                        results.append(repr(exc))

        def watch_readiness() -> None:
            with server.client() as client:
                while not stop.is_set():
                    try:
                        if client.get("/readyz", extensions=SNI).status_code == 503:
                            not_ready_at.append(time.monotonic())
                            return
                    except httpx.TransportError:
                        return
                    time.sleep(0.02)

        threads = [threading.Thread(target=load) for _ in range(4)]
        watcher = threading.Thread(target=watch_readiness)
        for thread in (*threads, watcher):
            thread.start()
        time.sleep(0.5)
        sent_at = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        watcher.join(timeout=10)
        # Like the apiserver once the endpoint is gone: stop sending soon after not-ready.
        time.sleep(0.3)
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        server.process.wait(timeout=25)
        exited_at = time.monotonic()
        assert not_ready_at, "readiness never turned false"
        assert not_ready_at[0] - sent_at < 1.0
        assert results and set(results) == {"200"}, [r for r in results if r != "200"][:3]
        assert exited_at - sent_at < 20
        assert "readiness is false" in server.log()
