"""Certificates for the webhook's HTTPS endpoint.

Building a certificate is a pure function that returns PEM bytes; writing
them is a separate step (`write_files`), atomic, with the private key at mode
0600. kube-apiserver verifies the serving certificate against the
`caBundle` of the webhook configuration and the Service's DNS name, so the
serving certificate carries every name a client may use for the Service.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from webhook.engine.errors import CertificateError

LEAF_MAX_DAYS = 365
CA_DAYS = 3650


@dataclass(frozen=True)
class Bundle:
    """A CA certificate and a serving certificate with its key, all PEM."""

    ca_cert: bytes
    cert: bytes
    key: bytes


def service_names(service: str, namespace: str) -> list[str]:
    """Every DNS name of a Service that a client inside the cluster may use."""
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
    ]


@dataclass(frozen=True)
class Authority:
    """A CA that can issue serving certificates (its key stays in memory)."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def new_authority(common_name: str, *, now: dt.datetime | None = None) -> Authority:
    """A new self-signed ECDSA P-256 CA, valid ten years."""
    now = now or dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return Authority(cert, key)


def issue(
    authority: Authority,
    *,
    dns_names: list[str],
    ip_addresses: list[str] | tuple[str, ...] = (),
    days: int = LEAF_MAX_DAYS,
    now: dt.datetime | None = None,
    client: bool = False,
) -> tuple[bytes, bytes]:
    """A serving certificate and its key (PEM) for `dns_names`, signed by `authority`.

    With `client=True` the certificate is for TLS client authentication instead
    (as kube-apiserver presents to a webhook that asks for one).
    """
    if not dns_names:
        raise ValueError("a serving certificate needs at least one DNS name")
    if not 1 <= days <= LEAF_MAX_DAYS:
        raise CertificateError(f"--days must be between 1 and {LEAF_MAX_DAYS}")
    now = now or dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])]))
        .issuer_name(authority.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))  # tolerate small clock skew
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.key.public_key()), False
        )
        .sign(authority.key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def build(
    *,
    dns_names: list[str],
    ip_addresses: list[str] | tuple[str, ...] = (),
    days: int = LEAF_MAX_DAYS,
    now: dt.datetime | None = None,
) -> Bundle:
    """A new CA and a serving certificate it signs for the given names."""
    if not dns_names:
        raise ValueError("a serving certificate needs at least one DNS name")
    authority = new_authority(f"{dns_names[0]} CA", now=now)
    cert, key = issue(authority, dns_names=dns_names, ip_addresses=ip_addresses, days=days, now=now)
    return Bundle(ca_cert=authority.cert_pem, cert=cert, key=key)


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def write_files(out_dir: Path, bundle: Bundle, *, force: bool = False) -> list[Path]:
    """Write `ca.crt`, `tls.crt` and `tls.key` into `out_dir`, each atomically.

    Refuses to overwrite an existing file unless `force`; the key is 0600.
    """
    files = {"ca.crt": (bundle.ca_cert, 0o644), "tls.crt": (bundle.cert, 0o644)}
    files["tls.key"] = (bundle.key, 0o600)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CertificateError(f"{out_dir}: cannot create directory: {exc.strerror}") from None
    existing = [out_dir / name for name in files if (out_dir / name).exists()]
    if existing and not force:
        raise CertificateError(f"{existing[0]}: already exists (use --force to replace it)")
    written = []
    for name, (data, mode) in files.items():
        target = out_dir / name
        atomic_write(target, data, mode=mode)
        written.append(target)
    return written


def atomic_write(target: Path, data: bytes, *, mode: int) -> None:
    """Write `data` to `target` via a temporary file and a rename: never half-written."""
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    except OSError as exc:
        raise CertificateError(f"{target}: cannot write: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise CertificateError(f"{target}: cannot write: {exc.strerror}") from None


def ensure_development_certificates(cert_dir: Path, *, service: str, namespace: str) -> bool:
    """Create a development CA and serving certificate in `cert_dir` if there are none.

    The serving certificate is valid for localhost, 127.0.0.1, ::1 and the
    Service's DNS names. Returns True when it wrote new files.
    """
    if (cert_dir / "tls.crt").exists() or (cert_dir / "tls.key").exists():
        return False
    bundle = build(
        dns_names=["localhost", *service_names(service, namespace)],
        ip_addresses=["127.0.0.1", "::1"],
    )
    write_files(cert_dir, bundle)
    return True


def expiry(cert_pem: bytes) -> dt.datetime:
    """The notAfter of the first certificate in `cert_pem`."""
    return x509.load_pem_x509_certificate(cert_pem).not_valid_after_utc


def read_certificate(path: Path) -> bytes:
    """The bytes of a PEM certificate file, or a one-line `CertificateError`."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CertificateError(f"{path}: certificate file not found") from None
    except OSError as exc:
        raise CertificateError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        x509.load_pem_x509_certificate(data)
    except ValueError:
        raise CertificateError(f"{path}: not a PEM certificate") from None
    return data
