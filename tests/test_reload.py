"""Hot reload: certificate rotation under load and policy edits, with no restart.

Files are laid out the way the kubelet projects a Secret or ConfigMap volume
(`..data` a symlink to a timestamped directory, each file a symlink through
it) and rotated the way it does: a new directory, then an atomic swap of
`..data`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from tests import helpers, servers
from webhook import files
from webhook.certs import pki
from webhook.engine import policy
from webhook.serving import reload
from webhook.serving.settings import Settings
from webhook.serving.state import ServingState

POD = helpers.load_pod(helpers.PODS / "helm-api.yaml")


def project(volume: Path, files: dict[str, bytes]) -> None:
    """Write `files` into `volume` as the kubelet does, swapping `..data` atomically."""
    volume.mkdir(parents=True, exist_ok=True)
    stamp = volume / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{time.monotonic_ns()}"
    stamp.mkdir()
    for name, data in files.items():
        (stamp / name).write_bytes(data)
    tmp = volume / "..data_tmp"
    tmp.symlink_to(stamp.name)
    os.replace(tmp, volume / "..data")
    for name in files:
        link = volume / name
        if not link.is_symlink():
            link.symlink_to(Path("..data") / name)


def serial_of(response: httpx.Response) -> int:
    stream = response.extensions["network_stream"]
    der = stream.get_extra_info("ssl_object").getpeercert(True)
    return int(x509.load_der_x509_certificate(der).serial_number)


def admit(client: httpx.Client) -> tuple[int, str | None]:
    """One admission on a new connection: the serial of the certificate it was served,
    and what went wrong with the answer (None when it was a 200 that allowed the pod)."""
    with client.stream(
        "POST",
        "/mutate",
        json=helpers.review(POD),
        extensions={"sni_hostname": servers.SERVICE_DNS},
    ) as response:
        serial = serial_of(response)  # while the connection is open
        response.read()
    ok = response.status_code == 200 and response.json()["response"]["allowed"]
    return serial, None if ok else f"HTTP {response.status_code}"


@contextmanager
def under_load(load: Callable[[], None], stop: threading.Event) -> Iterator[None]:
    """Six threads running `load` until the block ends (then `stop` is set)."""
    threads = [threading.Thread(target=load) for _ in range(6)]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)


def wait_for(condition: Callable[[], bool], *, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_certificate_rotation_under_load_fails_no_request(tmp_path: Path) -> None:
    """Guards certificate hot reload under load: no failed request, every serial seen."""
    authority = pki.new_authority("test CA")
    names = pki.service_names(servers.SERVICE, servers.NAMESPACE)
    (tmp_path / "ca.crt").write_bytes(authority.cert_pem)
    tls_dir = tmp_path / "tls"

    def rotate() -> int:
        cert, key = pki.issue(authority, dns_names=names)
        project(tls_dir, {"tls.crt": cert, "tls.key": key})
        return int(x509.load_pem_x509_certificate(cert).serial_number)

    serials = [rotate()]
    args = [*servers.tls_args(tls_dir), "--reload-interval", "0.2"]
    with servers.running(args, ca_file=tmp_path / "ca.crt", workdir=tmp_path) as server:
        stop = threading.Event()
        failures: list[str] = []
        seen: set[int] = set()
        counts = [0]
        lock = threading.Lock()

        def load() -> None:
            # A new connection per request, so every request is a new handshake.
            limits = httpx.Limits(max_keepalive_connections=0)
            with server.client(limits=limits) as client:
                while not stop.is_set():
                    try:
                        serial, problem = admit(client)
                    except Exception as exc:  # every failure counts
                        with lock:
                            failures.append(repr(exc))
                        continue
                    with lock:
                        counts[0] += 1
                        seen.add(serial)
                        if problem:
                            failures.append(problem)

        with under_load(load, stop):
            for _ in range(3):
                time.sleep(0.5)
                serials.append(rotate())
                wait_for(lambda: serials[-1] in seen or bool(failures))
            time.sleep(0.3)
        assert failures == [], failures[:5]
        assert set(serials) <= seen, "clients must see every new certificate"
        assert counts[0] > 50
        with server.client() as client:
            metrics = client.get("/metrics", extensions={"sni_hostname": servers.SERVICE_DNS}).text
        assert 'volume_init_certificate_reloads_total{result="loaded"} 4.0' in metrics
        expiry = x509.load_pem_x509_certificate((tls_dir / "tls.crt").read_bytes())
        (line,) = [
            line
            for line in metrics.splitlines()
            if line.startswith("volume_init_certificate_expiry_timestamp_seconds ")
        ]
        assert float(line.split()[1]) == expiry.not_valid_after_utc.timestamp()


def test_renewal_and_every_ca_rotation_step_fail_no_request(tmp_path: Path) -> None:
    """Guards issue 12's renewal and CA rotation end to end: the `certs` command's files,
    published kubelet-style and hot-reloaded, under load from clients that trust what
    kube-apiserver may hold at each moment (before a caBundle edit lands, the previous
    bundle; after, the new one): no request fails, and every new certificate is served.
    A client that kept only the first CA fails after the switch, as every client did
    after `certs --force` before renewal kept the CA."""
    out = tmp_path / "certs"
    tls_dir = tmp_path / "secret"

    def certs_command(*args: str) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "webhook", "certs", "--out-dir", str(out), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr

    def publish() -> int:
        """The Secret update (`kubectl create secret tls ... | kubectl apply -f -`)."""
        cert = (out / "tls.crt").read_bytes()
        project(tls_dir, {"tls.crt": cert, "tls.key": (out / "tls.key").read_bytes()})
        return int(x509.load_pem_x509_certificate(cert).serial_number)

    certs_command("--service", servers.SERVICE, "--namespace", servers.NAMESPACE)
    first_ca = (out / "ca.crt").read_bytes()
    (tmp_path / "first-ca.crt").write_bytes(first_ca)
    serials = [publish()]
    trusted = [first_ca]  # the caBundles kube-apiserver may hold now
    args = [*servers.tls_args(tls_dir), "--reload-interval", "0.2"]
    with servers.running(args, ca_file=tmp_path / "first-ca.crt", workdir=tmp_path) as server:
        stop = threading.Event()
        lock = threading.Lock()
        failures: list[str] = []
        seen: set[int] = set()
        answered: dict[bytes, int] = {}

        def load() -> None:
            clients: dict[bytes, httpx.Client] = {}
            turn = 0
            while not stop.is_set():
                with lock:
                    bundle = trusted[turn % len(trusted)]
                turn += 1
                if bundle not in clients:
                    context = ssl.create_default_context(cadata=bundle.decode())
                    clients[bundle] = httpx.Client(
                        verify=context,
                        base_url=server.url,
                        limits=httpx.Limits(max_keepalive_connections=0),
                    )
                try:
                    serial, problem = admit(clients[bundle])
                except Exception as exc:  # every failure counts
                    with lock:
                        failures.append(repr(exc))
                    continue
                with lock:
                    seen.add(serial)
                    answered[bundle] = answered.get(bundle, 0) + 1
                    if problem:
                        failures.append(problem)
            for client in clients.values():
                client.close()

        def served(serial: int) -> None:
            serials.append(serial)
            wait_for(lambda: serial in seen or bool(failures))

        def apply_bundle(bundle: bytes) -> None:
            """A caBundle edit: for a while the apiserver may hold either."""
            with lock:
                trusted.append(bundle)
            time.sleep(0.5)
            with lock:
                trusted[:] = [bundle]

        with under_load(load, stop):
            time.sleep(0.3)
            certs_command()  # a re-run renews from the same CA
            assert (out / "ca.crt").read_bytes() == first_ca
            served(publish())
            certs_command("--rotate-ca")  # start: old and new CA
            both = (out / "ca-bundle.crt").read_bytes()
            apply_bundle(both)
            certs_command("--rotate-ca", "switch")
            served(publish())
            stale = server.client()  # trusts only the first CA
            with stale, pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                stale.get("/readyz", extensions={"sni_hostname": servers.SERVICE_DNS})
            certs_command("--rotate-ca", "finish")
            new_ca = (out / "ca.crt").read_bytes()
            assert new_ca != first_ca
            apply_bundle(new_ca)
            certs_command("--renew")
            served(publish())
            time.sleep(0.3)
        assert failures == [], failures[:5]
        assert set(serials) <= seen, "clients must see every new certificate"
        assert set(answered) == {first_ca, both, new_ca}, "each caBundle was exercised"
        assert min(answered.values()) > 5, answered
        loaded = server.log().count("loaded the new serving certificate")
        assert loaded == 3, server.log()


def test_policy_edits_apply_and_bad_ones_are_refused(tmp_path: Path) -> None:
    """Guards policy hot reload: edits apply, invalid ones are refused, the last good stays."""
    tls = servers.with_certificates(tmp_path)
    config = tmp_path / "policy"
    text = policy.default_policy_text()
    project(config, {"policy.yaml": text.encode()})
    args = [*tls, "--policy", str(config / "policy.yaml"), "--reload-interval", "0.2"]
    with servers.running(args, ca_file=tmp_path / "ca.crt", workdir=tmp_path) as server:

        def run_as_user() -> int:
            return servers.run_as_user(server, POD)

        assert run_as_user() == 1001
        project(config, {"policy.yaml": text.replace("user: 1001", "user: 2000").encode()})
        wait_for(lambda: run_as_user() == 2000)
        project(config, {"policy.yaml": text.replace("user: 1001", "user: -1").encode()})
        wait_for(lambda: "refused the new policy" in server.log())
        time.sleep(0.5)
        assert run_as_user() == 2000
        with server.client() as client:
            assert (
                client.get("/readyz", extensions={"sni_hostname": servers.SERVICE_DNS}).status_code
                == 200
            )
            metrics = client.get("/metrics", extensions={"sni_hostname": servers.SERVICE_DNS}).text
        assert 'volume_init_policy_reloads_total{result="rejected"} 1.0' in metrics
        assert 'volume_init_policy_reloads_total{result="loaded"} 2.0' in metrics
        refusals = [line for line in server.log().splitlines() if "refused the new policy" in line]
        assert len(refusals) == 1
        assert "spec.rules[0].user" in refusals[0]


def test_watched_keeps_the_last_good_version(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Guards the watcher: a failed load keeps the last good version and retries."""
    path = tmp_path / "policy.yaml"
    path.write_text(policy.default_policy_text())
    runtime = ServingState(policy=files.load_policy(path))
    (watched,) = reload.watchers(Settings(policy=path), runtime, None)
    assert watched.check() is False  # primed: nothing new
    path.write_text(policy.default_policy_text().replace("group: 1001", "group: 3000"))
    assert watched.check() is True
    assert runtime.policy is not None and runtime.policy.spec.rules[0].group == 3000
    path.write_text("not: [valid")
    with caplog.at_level(logging.INFO, logger="webhook"):
        assert watched.check() is False
        assert watched.check() is False  # the same bad content is refused once
    assert runtime.policy.spec.rules[0].group == 3000
    assert len([r for r in caplog.records if "refused" in r.getMessage()]) == 1
    path.unlink()
    assert watched.check() is False
    assert runtime.policy.spec.rules[0].group == 3000


def test_a_certificate_near_its_end_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Guards the expiry warning: with under 30 days left, one warning when the certificate
    is loaded, naming its end, then once a day rather than on every poll; none for a
    certificate with more left; the gauge holds its notAfter either way."""
    authority = pki.new_authority("test CA")

    def install(days: int) -> None:
        cert, key = pki.issue(authority, dns_names=["svc"], days=days)
        (tmp_path / "tls.crt").write_bytes(cert)
        (tmp_path / "tls.key").write_bytes(key)

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]

    install(10)
    runtime = ServingState(policy=None)
    settings = Settings(tls_cert=tmp_path / "tls.crt", tls_key=tmp_path / "tls.key")
    with caplog.at_level(logging.INFO, logger="webhook"):
        store = reload.CertificateStore(settings, runtime)
        (warning,) = warnings()
        expires = pki.expiry((tmp_path / "tls.crt").read_bytes())
        assert f"expires on {expires:%Y-%m-%d %H:%M} UTC, in 9 days" in warning
        assert "dify-volume-init certs --renew" in warning
        now = dt.datetime.now(dt.UTC)
        assert not store.warn_if_expiring(now + dt.timedelta(hours=1))
        assert store.warn_if_expiring(now + dt.timedelta(hours=25))
        assert store.warn_if_expiring(now + dt.timedelta(days=11))
        assert "expired on" in warnings()[-1]
        install(90)
        store.reload()
        assert len(warnings()) == 3
        assert not store.warn_if_expiring(now + dt.timedelta(days=59))
        assert store.warn_if_expiring(now + dt.timedelta(days=61))
    gauge = runtime.metrics.certificate_expiry.collect()[0].samples[0].value
    assert gauge == pki.expiry((tmp_path / "tls.crt").read_bytes()).timestamp()


def test_a_server_started_on_a_certificate_near_its_end_says_so(tmp_path: Path) -> None:
    """Guards the warning where an operator sees it: the server's log at start-up."""
    authority = pki.new_authority("test CA")
    (tmp_path / "ca.crt").write_bytes(authority.cert_pem)
    names = pki.service_names(servers.SERVICE, servers.NAMESPACE)
    cert, key = pki.issue(authority, dns_names=names, days=20)
    (tmp_path / "tls.crt").write_bytes(cert)
    (tmp_path / "tls.key").write_bytes(key)
    args = servers.tls_args(tmp_path)
    with servers.running(args, ca_file=tmp_path / "ca.crt", workdir=tmp_path) as server:
        lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    (warning,) = [line for line in lines if "serving certificate expires" in line["msg"]]
    assert warning["level"] == "warning", warning
    assert warning["file"] == str(tmp_path / "tls.crt")


def test_the_poll_checks_the_expiry_even_when_nothing_changed(tmp_path: Path) -> None:
    """Guards the daily warning's clock: every poll calls each watched set's tick, so a
    certificate that ages into its last 30 days is warned about with no reload."""
    ticks: list[int] = []
    path = tmp_path / "file"
    path.write_text("same")
    watched = reload.Watched("file", [path], lambda: None, tick=lambda: ticks.append(1))
    watched.prime()

    async def poll_a_while() -> None:
        task = asyncio.create_task(reload.watch([watched], interval=0.01))
        await asyncio.sleep(0.2)
        task.cancel()

    asyncio.run(poll_a_while())
    assert len(ticks) >= 5
