"""One real server over real TLS, as kube-apiserver talks to it.

`dify-volume-init serve` runs in its own process on an ephemeral port with a
certificate made by `webhook.certs` for the Service; the client trusts only
that CA and verifies the name `<service>.<namespace>.svc`, as kube-apiserver
does for a webhook Service reference.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonpatch
import pytest

from tests import helpers, servers
from webhook.certs import pki, store

SERVICE_DNS = servers.SERVICE_DNS


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    directory = tmp_path_factory.mktemp("tls")
    bundle = pki.build(dns_names=pki.service_names(servers.SERVICE, servers.NAMESPACE))
    store.write_files(directory, bundle)
    args = ["--tls-cert", str(directory / "tls.crt"), "--tls-key", str(directory / "tls.key")]
    with servers.running(args, ca_file=directory / "ca.crt", workdir=directory) as running:
        yield running.port, directory


def test_admission_over_verified_tls(server: tuple[int, Path]) -> None:
    """Guards real TLS: the CA verified and the Service DNS name served."""
    port, directory = server
    context = ssl.create_default_context(cafile=str(directory / "ca.crt"))
    pod = helpers.load_pod(helpers.PODS / "helm-worker-with-init.yaml")
    body = helpers.review(pod, uid="tls-uid-1")
    with httpx.Client(verify=context) as client:
        response = client.post(
            f"https://127.0.0.1:{port}/mutate",
            json=body,
            extensions={"sni_hostname": SERVICE_DNS},
        )
    assert response.status_code == 200
    answer = response.json()
    assert answer["apiVersion"] == "admission.k8s.io/v1"
    assert answer["response"]["uid"] == "tls-uid-1"
    assert answer["response"]["patchType"] == "JSONPatch"
    patch = helpers.decoded_patch(answer)
    assert patch is not None
    patched = jsonpatch.apply_patch(pod, patch)
    assert [c["name"] for c in patched["spec"]["initContainers"]] == [
        "volume-permissions",
        "wait-for-db",
    ]


def test_a_name_outside_the_certificate_is_refused(server: tuple[int, Path]) -> None:
    """Guards hostname verification: a name outside the certificate fails."""
    port, directory = server
    context = ssl.create_default_context(cafile=str(directory / "ca.crt"))
    with (
        httpx.Client(verify=context) as client,
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        client.get(
            f"https://127.0.0.1:{port}/healthz",
            extensions={"sni_hostname": "other.example.com"},
        )


def test_an_untrusted_ca_is_refused(server: tuple[int, Path]) -> None:
    """Guards trust: a client with another CA fails the handshake."""
    port, _ = server
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"https://127.0.0.1:{port}/healthz", verify=ssl.create_default_context())
