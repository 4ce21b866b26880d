"""The certificate directory `certs` keeps, and its day-two steps.

kube-apiserver trusts the webhook through the `caBundle` of the webhook
configuration, so the one thing a renewal must not do is change the CA. The
directory keeps the CA's key for that reason, and every step says which file
the `caBundle` must hold afterwards:

    ca.crt, ca.key          the CA the caBundle trusts (no ca.key when an
                            organisation's CA signs: --ca-cert/--ca-key)
    tls.crt, tls.key        the serving certificate (the Secret's two keys)
    ca-next.crt, ca-next.key   during a CA rotation: the CA rotated to
    ca-bundle.crt           during a CA rotation: old and new CA, trusted both

`issue` creates the set, or renews the serving certificate from the CA that
signed the one in place (names kept). A CA rotation overlaps, as Linkerd's
and kubeadm's do: `start` (new CA; the caBundle becomes old+new), `switch`
(the serving certificate from the new CA), `finish` (the old CA dropped;
the caBundle becomes the new CA). Each step checks from the files that the
previous one was done, and writes its files as one set (`replace_files`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import functools
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from webhook import certs
from webhook.engine import PRODUCT
from webhook.engine.errors import CertificateError, UsageError

CA_CERT, CA_KEY = "ca.crt", "ca.key"
NEXT_CERT, NEXT_KEY = "ca-next.crt", "ca-next.key"
BUNDLE = "ca-bundle.crt"
TLS_CERT, TLS_KEY = "tls.crt", "tls.key"
ROTATION_STEPS = ("start", "switch", "finish")
SECRET = f"{PRODUCT}-tls"
FILES = (CA_CERT, CA_KEY, NEXT_CERT, NEXT_KEY, BUNDLE, TLS_CERT, TLS_KEY)
LOCK_TIMEOUT = 30.0
"""Seconds a second `certs` on the same directory waits for the first."""


@contextlib.contextmanager
def locked(d: Path, *, timeout: float = LOCK_TIMEOUT, recover: bool = True) -> Iterator[list[str]]:
    """Hold the directory's lock (an flock on the directory itself: no lock file to
    leave behind), then make the directory whole (`certs.recover`); yields what the
    recovery did. A second holder waits up to `timeout` seconds, then a one-line
    `CertificateError` names the process holding it."""
    if recover:
        certs.make_directory(d)
    try:
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise CertificateError(f"{d}: cannot open the directory: {exc.strerror}") from None
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise CertificateError(f"{d}: cannot lock: {exc.strerror}") from None
                if time.monotonic() >= deadline:
                    raise CertificateError(
                        f"{d}: locked by another process ({_holder(fd)}) for more than"
                        f" {timeout:g} s (--lock-timeout); wait for it, or stop it and run"
                        " again: an interrupted run is finished or undone by the next"
                    ) from None
                time.sleep(0.05)
        if recover:
            yield certs.recover(d, FILES)
        elif (d / certs.JOURNAL).exists():
            raise CertificateError(
                f"{d / certs.JOURNAL}: a write was interrupted here; any `certs` step"
                " (e.g. --renew) finishes it first"
            )
        else:
            yield []
    finally:
        os.close(fd)  # releases the lock


def _holder(fd: int) -> str:
    """`pid N: its command line` of the process holding the flock on `fd`'s inode,
    read from /proc/locks; `an unknown process` when it cannot be told."""
    info = os.fstat(fd)
    inode = f":{info.st_ino} "
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as handle:
            for line in handle:
                fields = line.split()
                if "FLOCK" in fields and inode in line and "->" not in fields:
                    pid = fields[4]
                    command = Path(f"/proc/{pid}/cmdline").read_bytes()
                    text = command.replace(b"\0", b" ").decode(errors="replace")
                    # NB: a command line can hold newlines; one line is printed
                    shown = "".join(c if c.isprintable() else " " for c in text).strip()
                    return f"pid {pid}: {' '.join(shown.split())[:120]}"
    except OSError:
        pass
    return "an unknown process"


@dataclass(frozen=True)
class Request:
    """What `certs` was asked for."""

    directory: Path
    dns_names: list[str] | None = None
    """None: keep the names of the serving certificate in place (or the default Service's)."""
    ip_addresses: list[str] = field(default_factory=list)
    days: int = certs.LEAF_MAX_DAYS
    given: certs.Authority | None = None
    """An organisation's CA to sign with (--ca-cert/--ca-key)."""
    given_pem: bytes = b""
    """Its certificate file as given: what the caBundle trusts."""


@dataclass(frozen=True)
class Outcome:
    """What a step wrote and removed, the file the caBundle must now hold, and what to do next."""

    written: list[Path]
    removed: list[Path]
    ca_bundle: Path
    lines: list[str]


@dataclass(frozen=True)
class _CA:
    """A CA certificate file in the directory, with its key if it is there."""

    cert_path: Path
    key_path: Path

    @functools.cached_property
    def cert(self) -> x509.Certificate:
        return certs.read_ca_certificates(self.cert_path)[0]

    def authority(self, request: Request) -> certs.Authority:
        if request.given is not None and request.given.cert == self.cert:
            return request.given
        if not self.key_path.exists():
            raise CertificateError(
                f"{self.key_path}: not found, so {self.cert_path} cannot sign: give its key with"
                " --ca-cert/--ca-key, or move to a new CA with `certs --rotate-ca start`"
            )
        return certs.load_authority(self.cert_path, self.key_path)


def _serving(d: Path) -> bytes | None:
    """The serving certificate in `d` (PEM, checked), or None when there is none."""
    tls = d / TLS_CERT
    return certs.read_certificate(tls) if tls.exists() else None


def bundle_in_force(d: Path) -> Path:
    """The file the caBundle must hold now: `ca-bundle.crt` during a rotation, else
    `ca.crt`; a one-line `CertificateError` when there is no CA."""
    path = d / (BUNDLE if (d / NEXT_CERT).exists() else CA_CERT)
    if not path.exists():
        raise CertificateError(f"{path}: not found: no CA in {d}; run `certs` first")
    return path


def _ca(directory: Path, cert_name: str, key_name: str) -> _CA | None:
    path = directory / cert_name
    return _CA(path, directory / key_name) if path.exists() else None


def issue(request: Request, *, renew_only: bool = False) -> Outcome:
    """`certs` and `certs --renew`: the first set, or a serving certificate renewed from
    the CA that signed the one in place, for the same names. The caBundle does not change."""
    d = request.directory
    cas = [c for c in (_ca(d, CA_CERT, CA_KEY), _ca(d, NEXT_CERT, NEXT_KEY)) if c is not None]
    if not cas:
        if renew_only:
            raise CertificateError(
                f"{d / CA_CERT}: no CA to renew from: run `certs` without --renew to make one,"
                " or give --ca-cert/--ca-key"
            )
        if (d / TLS_CERT).exists():
            raise CertificateError(
                f"{d / TLS_CERT}: exists with no CA beside it ({CA_CERT}): --force starts over"
                " with a new CA (the caBundle must then be replaced)"
            )
        return _first_set(request)
    if request.given is not None and all(request.given.cert != c.cert for c in cas):
        raise CertificateError(
            f"{cas[0].cert_path}: holds another CA than --ca-cert; changing the CA breaks the"
            " webhook configuration's caBundle: move to it with `certs --rotate-ca start"
            " --ca-cert FILE --ca-key FILE`, or start over with --force"
        )
    signer = _signer_of_serving(d, cas) or cas[0]
    authority = signer.authority(request)
    written = _write_serving(request, authority)
    in_rotation = (d / NEXT_CERT).exists()
    bundle = d / (BUNDLE if in_rotation else CA_CERT)
    lines = [
        f"renewed {d / TLS_CERT} from the CA in {signer.cert_path}, {_until(written)};"
        f" the caBundle ({bundle}) is unchanged",
        f"next: {_update_secret(d)}",
    ]
    return Outcome(written, [], bundle, lines)


def start_over(request: Request) -> Outcome:
    """`certs --force`: a new CA (or the given one) and serving certificate, any rotation
    under way abandoned. Whatever trusted the old CA must be given the new one."""
    outcome = _first_set(request, remove=(NEXT_CERT, NEXT_KEY, BUNDLE))
    warning = (
        "a new CA: the apiserver cannot call the webhook until the caBundle and the Secret"
        " both hold the new files; `certs --rotate-ca` changes the CA with no such gap"
    )
    return Outcome(outcome.written, outcome.removed, outcome.ca_bundle, [warning, *outcome.lines])


def _first_set(request: Request, *, remove: tuple[str, ...] = ()) -> Outcome:
    d = request.directory
    names = _subject(request)[0]
    authority = request.given or certs.new_authority(certs.authority_name(names))
    certs.check_signer(authority, names, request.ip_addresses, days=request.days)
    files, remove = _ca_files(
        request.given_pem or authority.cert_pem,
        None if request.given else authority.key_pem,
        remove,
    )
    cert, key = certs.issue(
        authority, dns_names=names, ip_addresses=request.ip_addresses, days=request.days
    )
    files[TLS_CERT] = (cert, certs.PUBLIC)
    files[TLS_KEY] = (key, certs.PRIVATE)
    certs.make_directory(d)
    written, gone = _replace(d, files, remove)
    lines = [
        f"made {d / TLS_CERT}, {_until(written)}, signed by the CA in {d / CA_CERT}",
        f"next: {_apply_bundle(d / CA_CERT)}; then {_update_secret(d)}",
    ]
    return Outcome(written, gone, d / CA_CERT, lines)


def rotate(request: Request, step: str) -> Outcome:
    """One step of a CA rotation with overlap (`ROTATION_STEPS`, in that order)."""
    if step not in ROTATION_STEPS:
        raise UsageError(f"--rotate-ca: {step!r} is not one of {', '.join(ROTATION_STEPS)}")
    d = request.directory
    current = _ca(d, CA_CERT, CA_KEY)
    following = _ca(d, NEXT_CERT, NEXT_KEY)
    if current is None:
        raise CertificateError(f"{d / CA_CERT}: no CA to rotate from: run `certs` first")
    if step == "start":
        if following is not None:
            raise CertificateError(
                f"{following.cert_path}: a rotation is already under way; its next step is"
                f" `certs --rotate-ca {_next_step(d, following)}`"
            )
        return _start(request, current)
    if following is None:
        raise CertificateError(
            f"{d / NEXT_CERT}: no rotation under way: begin one with `certs --rotate-ca start`"
        )
    if request.given is not None and request.given.cert != following.cert:
        raise CertificateError(
            f"{following.cert_path}: --ca-cert is not the CA this rotation moves to; give"
            f" that CA's files, or none (`certs --rotate-ca {step}`)"
        )
    if step == "switch":
        return _switch(request, following)
    if _next_step(d, following) != "finish":
        raise CertificateError(
            f"{d / TLS_CERT}: still signed by the old CA: run `certs --rotate-ca switch` first"
        )
    return _finish(request, following)


def _start(request: Request, current: _CA) -> Outcome:
    d = request.directory
    if request.given is not None and request.given.cert == current.cert:
        raise CertificateError(f"{current.cert_path}: --ca-cert is already the CA in force")
    authority = request.given or certs.new_authority(certs.authority_name(_subject(request)[0]))
    new_pem = request.given_pem or authority.cert_pem
    old_pem = certs.read_ca_bundle(current.cert_path)
    files = {
        NEXT_CERT: (new_pem, certs.PUBLIC),
        BUNDLE: (old_pem.rstrip(b"\n") + b"\n" + new_pem, certs.PUBLIC),
    }
    if request.given is None:
        files[NEXT_KEY] = (authority.key_pem, certs.PRIVATE)
    written = certs.replace_files(d, files)
    lines = [
        f"rotation step 1 of 3: a new CA in {d / NEXT_CERT}; {d / BUNDLE} holds the old"
        " and the new; the serving certificate is unchanged",
        f"next: {_apply_bundle(d / BUNDLE)}; then `certs --rotate-ca switch`",
    ]
    return Outcome(written, [], d / BUNDLE, lines)


def _switch(request: Request, following: _CA) -> Outcome:
    d = request.directory
    written = _write_serving(request, following.authority(request))
    lines = [
        f"rotation step 2 of 3: {d / TLS_CERT} is now signed by the new CA, {_until(written)};"
        f" the caBundle stays {d / BUNDLE}",
        f"next: {_update_secret(d)}; once every replica has logged"
        ' "loaded the new serving certificate", `certs --rotate-ca finish`',
    ]
    return Outcome(written, [], d / BUNDLE, lines)


def _finish(request: Request, following: _CA) -> Outcome:
    d = request.directory
    key = certs.read_pem(following.key_path, "CA key") if following.key_path.exists() else None
    files, remove = _ca_files(
        certs.read_ca_bundle(following.cert_path), key, (NEXT_CERT, NEXT_KEY, BUNDLE)
    )
    written, gone = _replace(d, files, remove)
    lines = [
        f"rotation step 3 of 3: the old CA is dropped; {d / CA_CERT} is the new CA",
        f"next: {_apply_bundle(d / CA_CERT)}",
    ]
    return Outcome(written, gone, d / CA_CERT, lines)


def _ca_files(
    cert_pem: bytes, key_pem: bytes | None, remove: tuple[str, ...]
) -> tuple[dict[str, tuple[bytes, int]], tuple[str, ...]]:
    """`ca.crt`, with `ca.key` when the key is ours to keep; an organisation's key is
    never copied here, so a `ca.key` left from before is removed instead."""
    files = {CA_CERT: (cert_pem, certs.PUBLIC)}
    if key_pem is None:
        return files, (*remove, CA_KEY)
    files[CA_KEY] = (key_pem, certs.PRIVATE)
    return files, remove


def _replace(
    d: Path, files: dict[str, tuple[bytes, int]], remove: tuple[str, ...]
) -> tuple[list[Path], list[Path]]:
    """Write the set and remove the rest; what was written and what was removed."""
    gone = [d / name for name in remove if name not in files and (d / name).exists()]
    return certs.replace_files(d, files, remove=remove), gone


def _next_step(d: Path, following: _CA) -> str:
    serving = _serving(d)
    if serving is not None and certs.issued_by(serving, following.cert):
        return "finish"
    return "switch"


def _signer_of_serving(d: Path, cas: list[_CA]) -> _CA | None:
    serving = _serving(d)
    if serving is None:
        return None
    for ca in cas:
        if certs.issued_by(serving, ca.cert):
            return ca
    raise CertificateError(
        f"{d / TLS_CERT}: not signed by the CA in {cas[0].cert_path}: renewing it from that"
        " CA would change what the apiserver must trust; --force starts over with a new CA"
    )


def _write_serving(request: Request, authority: certs.Authority) -> list[Path]:
    d = request.directory
    names, ips = _subject(request)
    certs.check_signer(authority, names, ips, days=request.days)
    cert, key = certs.issue(authority, dns_names=names, ip_addresses=ips, days=request.days)
    return certs.replace_files(d, {TLS_CERT: (cert, certs.PUBLIC), TLS_KEY: (key, certs.PRIVATE)})


def _subject(request: Request) -> tuple[list[str], list[str]]:
    """The DNS names and IP addresses to issue for: the requested ones, else those of
    the serving certificate in place (else the default Service's names)."""
    if request.dns_names is not None:
        return request.dns_names, request.ip_addresses
    names, ips = _in_place(request.directory)
    return names or certs.service_names(PRODUCT, PRODUCT), request.ip_addresses or ips


def _in_place(d: Path) -> tuple[list[str], list[str]]:
    """The DNS names and IP addresses of the serving certificate in `d` (none: empty)."""
    serving = _serving(d)
    return certs.certificate_names(serving) if serving is not None else ([], [])


def _until(written: list[Path]) -> str:
    (tls,) = [p for p in written if p.name == TLS_CERT]
    expires: dt.datetime = certs.expiry(certs.read_certificate(tls))
    return f"valid until {expires:%Y-%m-%d}"


def service_in_place(d: Path) -> tuple[str, str]:
    """The Service name and namespace the serving certificate in `d` is for (its
    `<service>.<namespace>.svc` name), else the default Service's."""
    for name in _in_place(d)[0]:
        parts = name.split(".")
        if len(parts) == 3 and parts[2] == "svc":
            return parts[0], parts[1]
    return PRODUCT, PRODUCT


def _namespace(d: Path) -> str:
    return service_in_place(d)[1]


def _update_secret(d: Path) -> str:
    return (
        f"kubectl -n {_namespace(d)} create secret tls {SECRET} --cert={d / TLS_CERT}"
        f" --key={d / TLS_KEY} --dry-run=client -o yaml | kubectl apply -f -"
    )


def _apply_bundle(bundle: Path) -> str:
    return (
        f"dify-volume-init manifests --namespace {_namespace(bundle.parent)} --ca-bundle {bundle}"
        " [--policy FILE --image IMAGE] | kubectl apply -f -"
    )
