"""Keys and certificates for the webhook's HTTPS endpoint: built, issued, read, checked.

Building a certificate is a pure function that returns PEM bytes; writing
them is `store`'s (atomic, keys 0600), renewal and CA rotation `rotation`'s.
kube-apiserver verifies the serving certificate against the `caBundle` of the
webhook configuration and the Service's DNS name, so the serving certificate
carries every name a client may use for the Service.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from webhook import files
from webhook.engine.errors import UsageError

MAX_PEM_BYTES = 1024 * 1024
"""A PEM certificate, key or CA bundle: a few KiB; 1 MiB holds hundreds of CAs."""


class CertificateError(UsageError):
    """A serving certificate or key that is missing, unreadable or unusable."""


LEAF_MAX_DAYS = 365


CA_DAYS = 3650


PRIVATE_KEY_MARK = b"PRIVATE KEY-----"
"""In every PEM private key's armour (PRIVATE KEY, RSA/EC/ENCRYPTED PRIVATE KEY)."""


IssuerKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


@dataclass(frozen=True)
class Bundle:
    """A CA certificate and key, and a serving certificate with its key, all PEM."""

    ca_cert: bytes
    ca_key: bytes
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
    key: IssuerKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return _key_pem(self.key)


def issued_by(cert_pem: bytes, ca: x509.Certificate) -> bool:
    """True when the first certificate of `cert_pem` was signed by `ca`'s key."""
    try:
        x509.load_pem_x509_certificate(cert_pem).verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _key_pem(key: IssuerKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _signature_hash(key: IssuerKey) -> hashes.SHA256 | None:
    # NB: Ed25519 signs the message itself; cryptography wants no hash for it.
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def load_authority(cert_path: Path, key_path: Path, *, now: dt.datetime | None = None) -> Authority:
    """The CA in `cert_path` (its first certificate) with its key, checked as a signer.

    Refused in one line: a file that is not PEM, an encrypted or unsupported
    key, a key that is not the certificate's, a certificate that is not a CA
    (basicConstraints, keyUsage) or is not valid now.
    """
    cert = _certificates(_without_key(read_pem(cert_path, "certificate"), cert_path), cert_path)[0]
    key_data = read_pem(key_path, "CA key")
    try:
        key = serialization.load_pem_private_key(key_data, password=None)
    except TypeError:
        raise CertificateError(f"{key_path}: the key is encrypted; give it unencrypted") from None
    except (ValueError, UnsupportedAlgorithm):
        raise CertificateError(f"{key_path}: not a PEM private key") from None
    if not isinstance(
        key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    ):
        raise CertificateError(f"{key_path}: not an ECDSA, RSA or Ed25519 key")
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(
        serialization.Encoding.DER, spki
    ) != cert.public_key().public_bytes(serialization.Encoding.DER, spki):
        raise CertificateError(f"{key_path}: not the key of the CA certificate {cert_path}")
    if not _is_ca(cert):
        raise CertificateError(f"{cert_path}: not a CA certificate (no basicConstraints CA:TRUE)")
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and not usage.key_cert_sign:
        raise CertificateError(f"{cert_path}: its keyUsage does not allow signing certificates")
    now = now or dt.datetime.now(dt.UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise CertificateError(
            f"{cert_path}: the CA is not valid now (valid from {_day(cert.not_valid_before_utc)}"
            f" to {_day(cert.not_valid_after_utc)})"
        )
    return Authority(cert, key)


def check_signer(
    authority: Authority,
    dns_names: list[str],
    ip_addresses: list[str],
    *,
    days: int,
    now: dt.datetime | None = None,
) -> None:
    """Refuse, in one line, a CA that cannot give what is asked: one whose name
    constraints exclude a name of the Service (the apiserver would refuse the chain),
    or one that ends before the serving certificate would (it would end with the CA,
    sooner than asked, and the webhook stop with it)."""
    now = now or dt.datetime.now(dt.UTC)
    try:
        constraints = authority.cert.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is not None:
        for name in dns_names:
            permitted = [
                t.value for t in constraints.permitted_subtrees or () if isinstance(t, x509.DNSName)
            ]
            excluded = [
                t.value for t in constraints.excluded_subtrees or () if isinstance(t, x509.DNSName)
            ]
            if any(_dns_within(name, tree) for tree in excluded) or (
                permitted and not any(_dns_within(name, tree) for tree in permitted)
            ):
                raise CertificateError(
                    f"the CA {authority.cert.subject.rfc4514_string()} may not sign {name}: its"
                    f" name constraints permit {permitted or 'any'} and exclude"
                    f" {excluded or 'none'}"
                )
        if ip_addresses and any(
            isinstance(t, x509.IPAddress) for t in constraints.permitted_subtrees or ()
        ):
            raise CertificateError(
                f"the CA {authority.cert.subject.rfc4514_string()} constrains IP"
                " addresses; issue without them (--service/--namespace names only)"
            )
    wanted = now + dt.timedelta(days=days)
    if authority.cert.not_valid_after_utc < wanted:
        raise CertificateError(
            f"the CA {authority.cert.subject.rfc4514_string()} ends on"
            f" {_day(authority.cert.not_valid_after_utc)}, before the {days} days asked"
            f" ({_day(wanted)}): ask fewer --days, or move to a new CA first"
            " (`certs --rotate-ca`)"
        )


def _dns_within(name: str, tree: str) -> bool:
    tree = tree.lstrip(".").lower()
    name = name.lower()
    return name == tree or name.endswith("." + tree)


def _day(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M UTC")


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
    (as kube-apiserver presents to a webhook that asks for one). It never
    outlives its CA: its notAfter is the CA's when `days` would reach past it.
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
        .not_valid_after(min(now + dt.timedelta(days=days), authority.cert.not_valid_after_utc))
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
        .sign(authority.key, _signature_hash(authority.key))
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


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
    authority = new_authority(authority_name(dns_names, now=now), now=now)
    cert, key = issue(authority, dns_names=dns_names, ip_addresses=ip_addresses, days=days, now=now)
    return Bundle(ca_cert=authority.cert_pem, ca_key=authority.key_pem, cert=cert, key=key)


def authority_name(dns_names: list[str], *, now: dt.datetime | None = None) -> str:
    """The common name of a CA made here: the first name, the day and a random tag, so
    that the old and the new CA of a rotation read apart (`openssl x509 -subject`)."""
    now = now or dt.datetime.now(dt.UTC)
    return f"{dns_names[0]} CA {now:%Y-%m-%d} {secrets.token_hex(4)}"


def certificate_names(cert_pem: bytes) -> tuple[list[str], list[str]]:
    """The DNS names and IP addresses of the first certificate of `cert_pem`."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    return (
        list(san.get_values_for_type(x509.DNSName)),
        [str(a) for a in san.get_values_for_type(x509.IPAddress)],
    )


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


def validity_problem(cert_pem: bytes, now: dt.datetime | None = None) -> str | None:
    """Why the first certificate of `cert_pem` is not valid at `now`, naming its dates."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    now = now or dt.datetime.now(dt.UTC)
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now < start:
        return f"is not valid yet (valid from {_day(start)} to {_day(end)})"
    if now > end:
        return f"has expired (valid from {_day(start)} to {_day(end)})"
    return None


def expiry(cert_pem: bytes) -> dt.datetime:
    """The notAfter of the first certificate in `cert_pem`."""
    return x509.load_pem_x509_certificate(cert_pem).not_valid_after_utc


def read_certificate(path: Path) -> bytes:
    """The certificates of a PEM file (a CA bundle during a rotation holds two), as PEM
    of their CERTIFICATE blocks only, or a one-line `CertificateError`. Anything else
    the file holds (text, parameters, a key) is left behind: what is returned may be
    written, printed or rendered."""
    return pem_of(read_certificates(path))


def read_ca_bundle(path: Path, *, now: dt.datetime | None = None) -> bytes:
    """The CA certificates of a file read as a CA or a caBundle, as PEM of their
    CERTIFICATE blocks only (see `read_ca_certificates`)."""
    return pem_of(read_ca_certificates(path, now=now))


def read_ca_certificates(path: Path, *, now: dt.datetime | None = None) -> list[x509.Certificate]:
    """The CA certificates of a file read as a CA or a caBundle, first to last.

    Refused in one line (`CertificateError`): a file that holds a private key (it is
    never copied anywhere), one with no certificate, a certificate that is not a CA
    (a serving certificate given by mistake), and a CA that has expired or is not
    valid yet: the apiserver would trust nothing it signs.
    """
    found = _certificates(_without_key(read_pem(path, "certificate"), path), path)
    now = now or dt.datetime.now(dt.UTC)
    for index, cert in enumerate(found):
        where = f"{path}: certificate {index + 1} ({cert.subject.rfc4514_string()})"
        if not _is_ca(cert):
            raise CertificateError(
                f"{where} is not a CA (no basicConstraints CA:TRUE): the caBundle must hold"
                " the CA that signed the serving certificate, not the certificate itself"
            )
        problem = validity_problem(cert.public_bytes(serialization.Encoding.PEM), now)
        if problem is not None:
            raise CertificateError(f"{where} {problem}")
    return found


def _without_key(data: bytes, path: Path) -> bytes:
    """`data`, refused in one line when it holds a private key."""
    if PRIVATE_KEY_MARK in data:
        raise CertificateError(
            f"{path}: holds a private key; a CA certificate or caBundle file must hold only"
            " CERTIFICATE blocks (give the key alone with --ca-key, and keep it out of"
            " anything you publish)"
        )
    return data


def pem_of(found: list[x509.Certificate]) -> bytes:
    """PEM of `found`, CERTIFICATE blocks only."""
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in found)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def read_certificates(path: Path) -> list[x509.Certificate]:
    """The certificates of a PEM file, first to last, or a one-line `CertificateError`."""
    return _certificates(read_pem(path, "certificate"), path)


def _certificates(data: bytes, path: Path) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        raise CertificateError(f"{path}: not a PEM certificate") from None


def read_pem(path: Path, what: str) -> bytes:
    """The bytes of a PEM file (`what` names it in errors), through the guarded reader."""
    return files.read_regular(path, limit=MAX_PEM_BYTES, what=f"{what} file")
