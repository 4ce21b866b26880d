"""Certificates: verified as a client would (chain, names, usages), not byte by byte.

The certificate directory's day-two steps (renew, rotate the CA, sign with an
organisation's CA) are checked here file by file; tests/test_reload.py runs
them against a serving process under load.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from webhook.certs import pki, rotation, store
from webhook.certs.pki import CertificateError
from webhook.engine.errors import UsageError


def test_serving_certificate_chains_to_its_ca_for_every_service_name() -> None:
    """Guards the serving certificate: chain, SANs, usages."""
    names = pki.service_names("dify-volume-init", "ops")
    assert names == [
        "dify-volume-init",
        "dify-volume-init.ops",
        "dify-volume-init.ops.svc",
        "dify-volume-init.ops.svc.cluster.local",
    ]
    bundle = pki.build(dns_names=names, ip_addresses=["127.0.0.1"])
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
    bundle = pki.build(dns_names=["svc"])
    written = store.write_files(tmp_path, bundle)
    assert sorted(p.name for p in written) == ["ca.crt", "ca.key", "tls.crt", "tls.key"]
    assert stat.S_IMODE((tmp_path / "tls.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "ca.key").stat().st_mode) == 0o600
    assert (tmp_path / "tls.crt").read_bytes() == bundle.cert
    with pytest.raises(CertificateError, match="already exists"):
        store.write_files(tmp_path, pki.build(dns_names=["svc"]))
    assert (tmp_path / "tls.crt").read_bytes() == bundle.cert
    store.write_files(tmp_path, pki.build(dns_names=["svc"]), force=True)
    assert (tmp_path / "tls.crt").read_bytes() != bundle.cert
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_development_certificates_are_made_once(tmp_path: Path) -> None:
    """Guards development certificates: made when absent, kept after."""
    assert store.ensure_development_certificates(tmp_path, service="s", namespace="n")
    first = (tmp_path / "tls.crt").read_bytes()
    assert not store.ensure_development_certificates(tmp_path, service="s", namespace="n")
    assert (tmp_path / "tls.crt").read_bytes() == first
    leaf = x509.load_pem_x509_certificate(first)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert "s.n.svc" in san.get_values_for_type(x509.DNSName)


def verifies(leaf_pem: bytes, trusted_pem: bytes, name: str = "dify-volume-init.ops.svc") -> bool:
    """True when `leaf_pem` verifies for `name` against the CA bundle `trusted_pem`,
    as kube-apiserver checks it against the webhook configuration's caBundle."""
    store = Store(x509.load_pem_x509_certificates(trusted_pem))
    verifier = PolicyBuilder().store(store).build_server_verifier(x509.DNSName(name))
    try:
        verifier.verify(x509.load_pem_x509_certificate(leaf_pem), [])
    except VerificationError:
        return False
    return True


def read(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def request(directory: Path, **kwargs: Any) -> rotation.Request:
    return rotation.Request(directory, **kwargs)


def test_a_rerun_renews_from_the_same_ca_for_the_same_names(tmp_path: Path) -> None:
    """Guards renewal: a re-run (or --renew) keeps ca.crt and ca.key, issues a new serving
    certificate that the old caBundle verifies, for the names (and IPs) of the old one."""
    assert store.ensure_development_certificates(
        tmp_path, service="dify-volume-init", namespace="ops"
    )
    before = read(tmp_path)
    assert stat.S_IMODE((tmp_path / "ca.key").stat().st_mode) == 0o600
    outcome = rotation.issue(request(tmp_path))
    after = read(tmp_path)
    assert [p.name for p in outcome.written] == ["tls.crt", "tls.key"]
    assert outcome.ca_bundle == tmp_path / "ca.crt"
    assert after["ca.crt"] == before["ca.crt"] and after["ca.key"] == before["ca.key"]
    assert after["tls.crt"] != before["tls.crt"] and after["tls.key"] != before["tls.key"]
    assert verifies(after["tls.crt"], before["ca.crt"])
    assert pki.certificate_names(after["tls.crt"]) == pki.certificate_names(before["tls.crt"])
    assert "localhost" in pki.certificate_names(after["tls.crt"])[0]
    renewed = rotation.issue(request(tmp_path), renew_only=True)
    assert renewed.written and read(tmp_path)["ca.crt"] == before["ca.crt"]
    named = rotation.issue(request(tmp_path, dns_names=pki.service_names("other", "ns")))
    assert pki.certificate_names((tmp_path / "tls.crt").read_bytes()) == (
        pki.service_names("other", "ns"),
        [],
    )
    assert named.ca_bundle == tmp_path / "ca.crt"
    with pytest.raises(CertificateError, match="no CA to renew from"):
        rotation.issue(request(tmp_path / "empty"), renew_only=True)


def test_a_serving_certificate_with_no_ca_beside_it_is_not_replaced(tmp_path: Path) -> None:
    """Guards the old layout (no ca.key) and foreign files: never a silent change of CA."""
    store.write_files(tmp_path, pki.build(dns_names=["svc"]))
    (tmp_path / "ca.key").unlink()
    before = read(tmp_path)
    with pytest.raises(CertificateError, match=r"ca.key: not found, so .*ca.crt cannot sign"):
        rotation.issue(request(tmp_path))
    (tmp_path / "ca.crt").unlink()
    with pytest.raises(CertificateError, match="exists with no CA beside it"):
        rotation.issue(request(tmp_path))
    assert read(tmp_path) == {k: v for k, v in before.items() if k != "ca.crt"}
    forced = rotation.start_over(request(tmp_path))
    assert "a new CA" in forced.lines[0]
    assert sorted(read(tmp_path)) == ["ca.crt", "ca.key", "tls.crt", "tls.key"]


def test_a_ca_rotation_overlaps_step_by_step(tmp_path: Path) -> None:
    """Guards --rotate-ca: start (bundle old+new, serving unchanged), switch (serving from
    the new CA, verified by the bundle and not by the old CA alone), finish (the new CA
    in ca.crt with its key, the old one gone); steps out of order are refused."""
    rotation.issue(request(tmp_path, dns_names=pki.service_names("dify-volume-init", "ops")))
    old = read(tmp_path)
    with pytest.raises(CertificateError, match="no rotation under way"):
        rotation.rotate(request(tmp_path), "switch")
    start = rotation.rotate(request(tmp_path), "start")
    mid = read(tmp_path)
    assert start.ca_bundle == tmp_path / "ca-bundle.crt"
    assert sorted(mid) == sorted([*old, "ca-bundle.crt", "ca-next.crt", "ca-next.key"])
    assert stat.S_IMODE((tmp_path / "ca-next.key").stat().st_mode) == 0o600
    assert {k: mid[k] for k in old} == old, "start changes nothing in force"
    bundle = x509.load_pem_x509_certificates(mid["ca-bundle.crt"])
    assert [c.subject for c in bundle] == [
        x509.load_pem_x509_certificate(mid["ca.crt"]).subject,
        x509.load_pem_x509_certificate(mid["ca-next.crt"]).subject,
    ]
    assert bundle[0].subject != bundle[1].subject, "the two CAs read apart"
    with pytest.raises(CertificateError, match=r"already under way; its next step is .*switch"):
        rotation.rotate(request(tmp_path), "start")
    with pytest.raises(CertificateError, match="still signed by the old CA"):
        rotation.rotate(request(tmp_path), "finish")
    switch = rotation.rotate(request(tmp_path), "switch")
    served = (tmp_path / "tls.crt").read_bytes()
    assert switch.ca_bundle == tmp_path / "ca-bundle.crt"
    assert verifies(served, mid["ca-bundle.crt"])
    assert verifies(served, mid["ca-next.crt"])
    assert not verifies(served, old["ca.crt"]), "the old caBundle alone must not be enough"
    assert pki.certificate_names(served) == pki.certificate_names(old["tls.crt"])
    finish = rotation.rotate(request(tmp_path), "finish")
    done = read(tmp_path)
    assert finish.ca_bundle == tmp_path / "ca.crt"
    assert sorted(done) == ["ca.crt", "ca.key", "tls.crt", "tls.key"]
    assert done["ca.crt"] == mid["ca-next.crt"] and done["ca.key"] == mid["ca-next.key"]
    assert done["tls.crt"] == served
    assert [p.name for p in finish.removed] == ["ca-next.crt", "ca-next.key", "ca-bundle.crt"]
    rotation.issue(request(tmp_path), renew_only=True)
    assert verifies((tmp_path / "tls.crt").read_bytes(), done["ca.crt"])
    with pytest.raises(UsageError, match="'later' is not one of start, switch, finish"):
        rotation.rotate(request(tmp_path), "later")


def test_a_renewal_during_a_rotation_uses_the_ca_that_signed_the_serving_certificate(
    tmp_path: Path,
) -> None:
    """Guards renew mid-rotation: before switch from the old CA, after it from the new."""
    rotation.issue(request(tmp_path))
    rotation.rotate(request(tmp_path), "start")
    old_ca = (tmp_path / "ca.crt").read_bytes()
    new_ca = (tmp_path / "ca-next.crt").read_bytes()
    assert rotation.issue(request(tmp_path)).ca_bundle == tmp_path / "ca-bundle.crt"
    assert verifies((tmp_path / "tls.crt").read_bytes(), old_ca, "dify-volume-init")
    rotation.rotate(request(tmp_path), "switch")
    rotation.issue(request(tmp_path), renew_only=True)
    assert verifies((tmp_path / "tls.crt").read_bytes(), new_ca, "dify-volume-init")
    assert not verifies((tmp_path / "tls.crt").read_bytes(), old_ca, "dify-volume-init")


def organisation(tmp_path: Path, *, days: int = 3650) -> tuple[Path, Path, x509.Certificate]:
    """An organisation's RSA root and an ECDSA intermediate that signs, as PEM files:
    the certificate file holds the intermediate then the root, the key the intermediate's."""
    now = dt.datetime.now(dt.UTC)
    root_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Example Corp Root")])
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=7300))
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(pki._key_usage(cert_sign=True), critical=True)
        .sign(root_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP384R1())
    inter = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Example Corp Issuing")]))
        .issuer_name(root_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(pki._key_usage(cert_sign=True), critical=True)
        .sign(root_key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "org-ca.pem", tmp_path / "org-ca-key.pem"
    pem = serialization.Encoding.PEM
    cert_file.write_bytes(inter.public_bytes(pem) + root.public_bytes(pem))
    key_file.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file, root


def test_an_organisations_ca_signs_and_its_key_is_never_copied(tmp_path: Path) -> None:
    """Guards --ca-cert/--ca-key: the serving certificate chains to the organisation's root
    through its intermediate, ca.crt is the file given, no key of it lands in the directory,
    renewals need it again, and another CA is refused rather than silently swapped in."""
    cert_file, key_file, _ = organisation(tmp_path)
    given = pki.load_authority(cert_file, key_file)
    out = tmp_path / "certs"
    with_org = request(out, given=given, given_pem=cert_file.read_bytes())
    outcome = rotation.issue(with_org)
    files = read(out)
    assert sorted(files) == ["ca.crt", "tls.crt", "tls.key"]
    assert files["ca.crt"] == cert_file.read_bytes()
    assert verifies(files["tls.crt"], files["ca.crt"], "dify-volume-init.dify-volume-init.svc")
    assert outcome.ca_bundle == out / "ca.crt"
    with pytest.raises(CertificateError, match=r"ca.key: not found, so .* cannot sign"):
        rotation.issue(request(out))
    rotation.issue(with_org, renew_only=True)
    assert read(out)["tls.crt"] != files["tls.crt"]
    (tmp_path / "other").mkdir()
    other_cert, other_key, _ = organisation(tmp_path / "other")
    other = pki.load_authority(other_cert, other_key)
    with pytest.raises(CertificateError, match="holds another CA than --ca-cert"):
        rotation.issue(request(out, given=other, given_pem=other_cert.read_bytes()))
    start = rotation.rotate(request(out, given=other, given_pem=other_cert.read_bytes()), "start")
    assert sorted(read(out)) == ["ca-bundle.crt", "ca-next.crt", "ca.crt", "tls.crt", "tls.key"]
    assert start.ca_bundle == out / "ca-bundle.crt"
    with pytest.raises(CertificateError, match=r"ca-next.key: not found"):
        rotation.rotate(request(out), "switch")
    rotation.rotate(request(out, given=other, given_pem=other_cert.read_bytes()), "switch")
    rotation.rotate(request(out), "finish")
    assert read(out)["ca.crt"] == other_cert.read_bytes()
    assert sorted(read(out)) == ["ca.crt", "tls.crt", "tls.key"]


def test_a_serving_certificate_never_outlives_its_ca(tmp_path: Path) -> None:
    """Guards a CA that ends before the serving certificate would: refused in one line
    naming its end (it was silently cut short to the CA's end); fewer --days pass."""
    cert_file, key_file, _ = organisation(tmp_path, days=10)
    given = pki.load_authority(cert_file, key_file)
    asked = request(tmp_path / "out", given=given, given_pem=cert_file.read_bytes())
    with pytest.raises(CertificateError, match=r"ends on .* before the 365 days asked"):
        rotation.issue(asked)
    assert not (tmp_path / "out" / "tls.crt").exists()
    rotation.issue(request(tmp_path / "out", given=given, given_pem=b"", days=5))
    served = pki.expiry((tmp_path / "out" / "tls.crt").read_bytes())
    assert served <= given.cert.not_valid_after_utc


@pytest.mark.parametrize(
    ("make", "message"),
    [
        ("leaf", "not a CA certificate"),
        ("other-key", "not the key of the CA certificate"),
        ("encrypted", "the key is encrypted"),
        ("not-pem", "not a PEM private key"),
        ("expired", "the CA is not valid now"),
    ],
)
def test_an_unusable_organisation_ca_is_one_line(tmp_path: Path, make: str, message: str) -> None:
    """Guards --ca-cert/--ca-key checks: each unusable pair is refused in one line."""
    cert_file, key_file, _ = organisation(tmp_path)
    if make == "leaf":
        authority = pki.load_authority(cert_file, key_file)
        leaf, leaf_key = pki.issue(authority, dns_names=["x"])
        cert_file.write_bytes(leaf)
        key_file.write_bytes(leaf_key)
    elif make == "other-key":
        key_file.write_bytes(pki.new_authority("x").key_pem)
    elif make == "encrypted":
        key = serialization.load_pem_private_key(key_file.read_bytes(), None)
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"secret"),
            )
        )
    elif make == "not-pem":
        key_file.write_text("hello")
    elif make == "expired":
        authority = pki.load_authority(cert_file, key_file)
        later = dt.datetime.now(dt.UTC) + dt.timedelta(days=4000)
        with pytest.raises(CertificateError, match=message):
            pki.load_authority(cert_file, key_file, now=later)
        assert authority.cert.not_valid_after_utc < later
        return
    with pytest.raises(CertificateError, match=message) as raised:
        pki.load_authority(cert_file, key_file)
    assert "\n" not in str(raised.value)


def test_a_failed_write_changes_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards the one-set write: when staging the second file fails, nothing was replaced
    and no temporary file is left."""
    rotation.issue(request(tmp_path))
    before = read(tmp_path)
    real = store._stage
    calls = []

    def failing(target: Path, data: bytes, *, mode: int) -> str:
        calls.append(target)
        if len(calls) == 2:
            raise OSError(28, "No space left on device", str(target))
        return real(target, data, mode=mode)

    monkeypatch.setattr(store, "_stage", failing)
    with pytest.raises(CertificateError, match=r"tls.key: cannot write: No space left on device"):
        rotation.issue(request(tmp_path))
    assert read(tmp_path) == before
