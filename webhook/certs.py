"""Certificates for the webhook's HTTPS endpoint.

Building a certificate is a pure function that returns PEM bytes; writing
them is a separate step (`write_files`, and `certdir` for renewal and CA
rotation), atomic, with private keys at mode 0600. kube-apiserver verifies
the serving certificate against the `caBundle` of the webhook configuration
and the Service's DNS name, so the serving certificate carries every name a
client may use for the Service.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import re
import secrets
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from webhook import files
from webhook.engine import limits
from webhook.engine.errors import CertificateError

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


PUBLIC, PRIVATE = 0o644, 0o600


def write_files(out_dir: Path, bundle: Bundle, *, force: bool = False) -> list[Path]:
    """Write `ca.crt`, `ca.key`, `tls.crt` and `tls.key` into `out_dir` as one set.

    Refuses to overwrite an existing file unless `force`; the keys are 0600.
    """
    files = {
        "ca.crt": (bundle.ca_cert, PUBLIC),
        "ca.key": (bundle.ca_key, PRIVATE),
        "tls.crt": (bundle.cert, PUBLIC),
        "tls.key": (bundle.key, PRIVATE),
    }
    make_directory(out_dir)
    existing = [out_dir / name for name in files if (out_dir / name).exists()]
    if existing and not force:
        raise CertificateError(f"{existing[0]}: already exists (use --force to replace it)")
    return replace_files(out_dir, files)


def make_directory(directory: Path) -> None:
    """`mkdir -p`, or a one-line `CertificateError`."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CertificateError(f"{directory}: cannot create directory: {exc.strerror}") from None


JOURNAL = ".journal"
"""In a certificate directory while a set of files is being switched in: the staged
files and their targets. Its presence means "roll forward": `recover` finishes it."""


def replace_files(
    directory: Path, files: dict[str, tuple[bytes, int]], *, remove: tuple[str, ...] = ()
) -> list[Path]:
    """Write `files` (name: data, mode) into `directory`, then remove `remove`, as one set.

    Every file is first written in full to a temporary file beside its target (and
    synced); then a journal naming them is written in one rename, and only then are
    they renamed into place. Interrupted anywhere (a signal, a full disk, a crash), the
    directory holds either the old set or, with the journal, a set `recover` finishes:
    never a certificate beside another certificate's key.
    """
    staged: list[tuple[str, Path]] = []
    try:
        for name, (data, mode) in files.items():
            staged.append((_stage(directory / name, data, mode=mode), directory / name))
        journal: dict[str, list[Any]] = {
            "replace": [[Path(tmp).name, target.name] for tmp, target in staged],
            "remove": [name for name in remove if name not in files],
        }
        journal_tmp = _stage(directory / JOURNAL, json.dumps(journal).encode(), mode=PRIVATE)
        os.replace(journal_tmp, directory / JOURNAL)
        _sync_directory(directory)
        _roll_forward(directory, journal)
    except OSError as exc:
        failed = exc.filename or directory
        raise CertificateError(f"{failed}: cannot write: {exc.strerror}") from None
    finally:
        if not (directory / JOURNAL).exists():
            for tmp, _ in staged:
                Path(tmp).unlink(missing_ok=True)
    return [target for _, target in staged]


def _roll_forward(directory: Path, journal: dict[str, list[Any]]) -> None:
    """Rename each staged file still there into place, remove what goes, drop the journal.
    Done again after an interruption, it finishes the same set."""
    for tmp_name, target in journal["replace"]:
        tmp = directory / tmp_name
        if tmp.exists():
            os.replace(tmp, directory / target)
    for name in journal["remove"]:
        (directory / name).unlink(missing_ok=True)
    _sync_directory(directory)
    (directory / JOURNAL).unlink()
    _sync_directory(directory)


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def recover(directory: Path, names: tuple[str, ...]) -> list[str]:
    """Make `directory` whole after an interrupted write: finish a journalled set,
    remove staged files left behind (`names` are the files the directory may hold)
    and make a private key anyone else can read private again. What it did, one line
    each."""
    lines: list[str] = []
    journal_path = directory / JOURNAL
    staged = re.compile(rf"^\.({'|'.join(map(re.escape, (*names, JOURNAL)))})\.[a-z0-9_]{{8}}$")
    if journal_path.exists():
        try:
            journal = json.loads(journal_path.read_text())
            # NB: only our own names: a journal cannot move or remove anything else
            for tmp_name, target in journal["replace"]:
                if not staged.match(tmp_name) or target not in names:
                    raise ValueError(f"unexpected entry {tmp_name!r} -> {target!r}")
            if any(name not in names for name in journal["remove"]):
                raise ValueError("unexpected removal")
            _roll_forward(directory, journal)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CertificateError(
                f"{journal_path}: an interrupted write cannot be finished ({exc}); move the"
                " directory aside and start over with `certs --force`"
            ) from None
        lines.append(f"finished the interrupted write recorded in {journal_path}")
    for leftover in sorted(directory.glob(".*")):
        if staged.match(leftover.name) and leftover.is_file():
            leftover.unlink()
            lines.append(f"removed {leftover}, left by an interrupted run")
    for name in names:
        path = directory / name
        if name.endswith(".key") and path.is_file():
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode & 0o077:
                path.chmod(PRIVATE)
                lines.append(
                    f"warning: {path} was readable by others (mode {mode:04o}); it is 0600"
                    " now: whoever read it can sign certificates the webhook trusts"
                )
    return lines


def _stage(target: Path, data: bytes, *, mode: int) -> str:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


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
    return files.read_regular(path, limit=limits.MAX_PEM_BYTES, what=f"{what} file")
