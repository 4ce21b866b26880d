"""Hot reload: certificate rotation under load and policy edits, with no restart.

Files are laid out the way the kubelet projects a Secret or ConfigMap volume
(`..data` a symlink to a timestamped directory, each file a symlink through
it) and rotated the way it does: a new directory, then an atomic swap of
`..data`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from tests import helpers, servers
from webhook import certs, files
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


def wait_for(condition: Callable[[], bool], *, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_certificate_rotation_under_load_fails_no_request(tmp_path: Path) -> None:
    """Guards certificate hot reload under load: no failed request, every serial seen."""
    authority = certs.new_authority("test CA")
    names = certs.service_names(servers.SERVICE, servers.NAMESPACE)
    (tmp_path / "ca.crt").write_bytes(authority.cert_pem)
    tls_dir = tmp_path / "tls"

    def rotate() -> int:
        cert, key = certs.issue(authority, dns_names=names)
        project(tls_dir, {"tls.crt": cert, "tls.key": key})
        return int(x509.load_pem_x509_certificate(cert).serial_number)

    serials = [rotate()]
    args = [
        "--tls-cert", str(tls_dir / "tls.crt"),
        "--tls-key", str(tls_dir / "tls.key"),
        "--reload-interval", "0.2",
    ]  # fmt: skip
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
                        with client.stream(
                            "POST",
                            "/mutate",
                            json=helpers.review(POD),
                            extensions={"sni_hostname": servers.SERVICE_DNS},
                        ) as response:
                            serial = serial_of(response)  # while the connection is open
                            response.read()
                        ok = response.status_code == 200 and response.json()["response"]["allowed"]
                    except Exception as exc:  # every failure counts
                        with lock:
                            failures.append(repr(exc))
                        continue
                    with lock:
                        counts[0] += 1
                        seen.add(serial)
                        if not ok:
                            failures.append(f"HTTP {response.status_code}")

        threads = [threading.Thread(target=load) for _ in range(6)]
        for thread in threads:
            thread.start()
        try:
            for _ in range(3):
                time.sleep(0.5)
                serials.append(rotate())
                wait_for(lambda: serials[-1] in seen or bool(failures))
            time.sleep(0.3)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
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


def test_policy_edits_apply_and_bad_ones_are_refused(tmp_path: Path) -> None:
    """Guards policy hot reload: edits apply, invalid ones are refused, the last good stays."""
    bundle = certs.build(dns_names=certs.service_names(servers.SERVICE, servers.NAMESPACE))
    certs.write_files(tmp_path, bundle)
    config = tmp_path / "policy"
    text = policy.default_policy_text()
    project(config, {"policy.yaml": text.encode()})
    args = [
        "--tls-cert", str(tmp_path / "tls.crt"),
        "--tls-key", str(tmp_path / "tls.key"),
        "--policy", str(config / "policy.yaml"),
        "--reload-interval", "0.2",
    ]  # fmt: skip
    with servers.running(args, ca_file=tmp_path / "ca.crt", workdir=tmp_path) as server:

        def run_as_user() -> int:
            with server.client() as client:
                answer = client.post(
                    "/mutate",
                    json=helpers.review(POD),
                    extensions={"sni_hostname": servers.SERVICE_DNS},
                ).json()
            patch = helpers.decoded_patch(answer) or []
            (op,) = [o for o in patch if o["path"] == "/spec/containers/0/securityContext"]
            return int(op["value"]["runAsUser"])

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
