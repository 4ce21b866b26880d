"""Certificates: verified as a client would (chain, names, usages), not byte by byte."""

from __future__ import annotations

import datetime as dt
import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import PolicyBuilder, Store

from webhook import certs
from webhook.engine.errors import CertificateError


def test_serving_certificate_chains_to_its_ca_for_every_service_name() -> None:
    """Guards the serving certificate: chain, SANs, usages."""
    names = certs.service_names("dify-volume-init", "ops")
    assert names == [
        "dify-volume-init",
        "dify-volume-init.ops",
        "dify-volume-init.ops.svc",
        "dify-volume-init.ops.svc.cluster.local",
    ]
    bundle = certs.build(dns_names=names, ip_addresses=["127.0.0.1"])
    ca = x509.load_pem_x509_certificate(bundle.ca_cert)
    leaf = x509.load_pem_x509_certificate(bundle.cert)
    store = Store([ca])
    for name in names:
        verifier = PolicyBuilder().store(store).build_server_verifier(x509.DNSName(name))
        chain = verifier.verify(leaf, [])
        assert chain[-1] == ca
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    lifetime = leaf.not_valid_after_utc - dt.datetime.now(dt.UTC)
    assert lifetime <= dt.timedelta(days=365)
    assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey)
    assert leaf.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]


def test_files_are_written_atomically_with_a_private_key(tmp_path: Path) -> None:
    """Guards the written files: names, a 0600 key."""
    bundle = certs.build(dns_names=["svc"])
    written = certs.write_files(tmp_path, bundle)
    assert sorted(p.name for p in written) == ["ca.crt", "tls.crt", "tls.key"]
    assert stat.S_IMODE((tmp_path / "tls.key").stat().st_mode) == 0o600
    assert (tmp_path / "tls.crt").read_bytes() == bundle.cert
    with pytest.raises(CertificateError, match="already exists"):
        certs.write_files(tmp_path, certs.build(dns_names=["svc"]))
    assert (tmp_path / "tls.crt").read_bytes() == bundle.cert
    certs.write_files(tmp_path, certs.build(dns_names=["svc"]), force=True)
    assert (tmp_path / "tls.crt").read_bytes() != bundle.cert
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_development_certificates_are_made_once(tmp_path: Path) -> None:
    """Guards development certificates: made when absent, kept after."""
    assert certs.ensure_development_certificates(tmp_path, service="s", namespace="n")
    first = (tmp_path / "tls.crt").read_bytes()
    assert not certs.ensure_development_certificates(tmp_path, service="s", namespace="n")
    assert (tmp_path / "tls.crt").read_bytes() == first
    leaf = x509.load_pem_x509_certificate(first)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert "s.n.svc" in san.get_values_for_type(x509.DNSName)
