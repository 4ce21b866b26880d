"""The day-two steps of the certificate directory: issue, renew, rotate the CA.

kube-apiserver trusts the webhook through the `caBundle` of the webhook
configuration, so the one thing a renewal must not do is change the CA. The
directory keeps the CA's key for that reason, and every step says which file
the `caBundle` must hold afterwards (the files are `layout`'s).

`issue` creates the set, or renews the serving certificate from the CA that
signed the one in place (names kept). A CA rotation overlaps, as Linkerd's
and kubeadm's do: `start` (new CA; the caBundle becomes old+new), `switch`
(the serving certificate from the new CA), `finish` (the old CA dropped;
the caBundle becomes the new CA). Each step checks from the files that the
previous one was done, and writes its files as one set (`store.replace_files`).
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from webhook.certs import layout, pki, store
from webhook.certs.pki import CertificateError
from webhook.engine import PRODUCT
from webhook.engine.errors import UsageError

ROTATION_STEPS = ("start", "switch", "finish")


@dataclass(frozen=True)
class Request:
    """What `certs` was asked for."""

    directory: Path
    dns_names: list[str] | None = None
    """None: keep the names of the serving certificate in place (or the default Service's)."""
    ip_addresses: list[str] = field(default_factory=list)
    days: int = pki.LEAF_MAX_DAYS
    given: pki.Authority | None = None
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
        return pki.read_ca_certificates(self.cert_path)[0]

    def authority(self, request: Request) -> pki.Authority:
        if request.given is not None and request.given.cert == self.cert:
            return request.given
        if not self.key_path.exists():
            raise CertificateError(
                f"{self.key_path}: not found, so {self.cert_path} cannot sign: give its key with"
                " --ca-cert/--ca-key, or move to a new CA with `certs --rotate-ca start`"
            )
        return pki.load_authority(self.cert_path, self.key_path)


def _serving(d: Path) -> bytes | None:
    """The serving certificate in `d` (PEM, checked), or None when there is none."""
    tls = d / layout.TLS_CERT
    return pki.read_certificate(tls) if tls.exists() else None


def bundle_in_force(d: Path) -> Path:
    """The file the caBundle must hold now: `ca-bundle.crt` during a rotation, else
    `ca.crt`; a one-line `CertificateError` when there is no CA."""
    path = d / (layout.BUNDLE if (d / layout.NEXT_CERT).exists() else layout.CA_CERT)
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
    cas = [
        c
        for c in (_ca(d, layout.CA_CERT, layout.CA_KEY), _ca(d, layout.NEXT_CERT, layout.NEXT_KEY))
        if c is not None
    ]
    if not cas:
        if renew_only:
            raise CertificateError(
                f"{d / layout.CA_CERT}: no CA to renew from: run `certs` without --renew to make"
                " one, or give --ca-cert/--ca-key"
            )
        if (d / layout.TLS_CERT).exists():
            raise CertificateError(
                f"{d / layout.TLS_CERT}: exists with no CA beside it ({layout.CA_CERT}): --force"
                " starts over with a new CA (the caBundle must then be replaced)"
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
    in_rotation = (d / layout.NEXT_CERT).exists()
    bundle = d / (layout.BUNDLE if in_rotation else layout.CA_CERT)
    lines = [
        f"renewed {d / layout.TLS_CERT} from the CA in {signer.cert_path}, {_until(written)};"
        f" the caBundle ({bundle}) is unchanged",
        f"next: {_update_secret(d)}",
    ]
    return Outcome(written, [], bundle, lines)


def start_over(request: Request) -> Outcome:
    """`certs --force`: a new CA (or the given one) and serving certificate, any rotation
    under way abandoned. Whatever trusted the old CA must be given the new one."""
    outcome = _first_set(request, remove=(layout.NEXT_CERT, layout.NEXT_KEY, layout.BUNDLE))
    warning = (
        "a new CA: the apiserver cannot call the webhook until the caBundle and the Secret"
        " both hold the new files; `certs --rotate-ca` changes the CA with no such gap"
    )
    return Outcome(outcome.written, outcome.removed, outcome.ca_bundle, [warning, *outcome.lines])


def _first_set(request: Request, *, remove: tuple[str, ...] = ()) -> Outcome:
    d = request.directory
    names = _subject(request)[0]
    authority = request.given or pki.new_authority(pki.authority_name(names))
    pki.check_signer(authority, names, request.ip_addresses, days=request.days)
    files, remove = _ca_files(
        request.given_pem or authority.cert_pem,
        None if request.given else authority.key_pem,
        remove,
    )
    cert, key = pki.issue(
        authority, dns_names=names, ip_addresses=request.ip_addresses, days=request.days
    )
    files[layout.TLS_CERT] = (cert, store.PUBLIC)
    files[layout.TLS_KEY] = (key, store.PRIVATE)
    store.make_directory(d)
    written, gone = _replace(d, files, remove)
    lines = [
        f"made {d / layout.TLS_CERT}, {_until(written)}, signed by the CA in {d / layout.CA_CERT}",
        f"next: {_apply_bundle(d / layout.CA_CERT)}; then {_update_secret(d)}",
    ]
    return Outcome(written, gone, d / layout.CA_CERT, lines)


def rotate(request: Request, step: str) -> Outcome:
    """One step of a CA rotation with overlap (`ROTATION_STEPS`, in that order)."""
    if step not in ROTATION_STEPS:
        raise UsageError(f"--rotate-ca: {step!r} is not one of {', '.join(ROTATION_STEPS)}")
    d = request.directory
    current = _ca(d, layout.CA_CERT, layout.CA_KEY)
    following = _ca(d, layout.NEXT_CERT, layout.NEXT_KEY)
    if current is None:
        raise CertificateError(f"{d / layout.CA_CERT}: no CA to rotate from: run `certs` first")
    if step == "start":
        if following is not None:
            raise CertificateError(
                f"{following.cert_path}: a rotation is already under way; its next step is"
                f" `certs --rotate-ca {_next_step(d, following)}`"
            )
        return _start(request, current)
    if following is None:
        raise CertificateError(
            f"{d / layout.NEXT_CERT}: no rotation under way:"
            " begin one with `certs --rotate-ca start`"
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
            f"{d / layout.TLS_CERT}: still signed by the old CA:"
            " run `certs --rotate-ca switch` first"
        )
    return _finish(request, following)


def _start(request: Request, current: _CA) -> Outcome:
    d = request.directory
    if request.given is not None and request.given.cert == current.cert:
        raise CertificateError(f"{current.cert_path}: --ca-cert is already the CA in force")
    authority = request.given or pki.new_authority(pki.authority_name(_subject(request)[0]))
    new_pem = request.given_pem or authority.cert_pem
    old_pem = pki.read_ca_bundle(current.cert_path)
    files = {
        layout.NEXT_CERT: (new_pem, store.PUBLIC),
        layout.BUNDLE: (old_pem.rstrip(b"\n") + b"\n" + new_pem, store.PUBLIC),
    }
    if request.given is None:
        files[layout.NEXT_KEY] = (authority.key_pem, store.PRIVATE)
    written = store.replace_files(d, files)
    lines = [
        f"rotation step 1 of 3: a new CA in {d / layout.NEXT_CERT};"
        f" {d / layout.BUNDLE} holds the old and the new; the serving certificate is unchanged",
        f"next: {_apply_bundle(d / layout.BUNDLE)}; then `certs --rotate-ca switch`",
    ]
    return Outcome(written, [], d / layout.BUNDLE, lines)


def _switch(request: Request, following: _CA) -> Outcome:
    d = request.directory
    written = _write_serving(request, following.authority(request))
    lines = [
        f"rotation step 2 of 3: {d / layout.TLS_CERT} is now signed by the new CA,"
        f" {_until(written)};"
        f" the caBundle stays {d / layout.BUNDLE}",
        f"next: {_update_secret(d)}; once every replica has logged"
        ' "loaded the new serving certificate", `certs --rotate-ca finish`',
    ]
    return Outcome(written, [], d / layout.BUNDLE, lines)


def _finish(request: Request, following: _CA) -> Outcome:
    d = request.directory
    key = pki.read_pem(following.key_path, "CA key") if following.key_path.exists() else None
    files, remove = _ca_files(
        pki.read_ca_bundle(following.cert_path),
        key,
        (layout.NEXT_CERT, layout.NEXT_KEY, layout.BUNDLE),
    )
    written, gone = _replace(d, files, remove)
    lines = [
        f"rotation step 3 of 3: the old CA is dropped; {d / layout.CA_CERT} is the new CA",
        f"next: {_apply_bundle(d / layout.CA_CERT)}",
    ]
    return Outcome(written, gone, d / layout.CA_CERT, lines)


def _ca_files(
    cert_pem: bytes, key_pem: bytes | None, remove: tuple[str, ...]
) -> tuple[dict[str, tuple[bytes, int]], tuple[str, ...]]:
    """`ca.crt`, with `ca.key` when the key is ours to keep; an organisation's key is
    never copied here, so a `ca.key` left from before is removed instead."""
    files = {layout.CA_CERT: (cert_pem, store.PUBLIC)}
    if key_pem is None:
        return files, (*remove, layout.CA_KEY)
    files[layout.CA_KEY] = (key_pem, store.PRIVATE)
    return files, remove


def _replace(
    d: Path, files: dict[str, tuple[bytes, int]], remove: tuple[str, ...]
) -> tuple[list[Path], list[Path]]:
    """Write the set and remove the rest; what was written and what was removed."""
    gone = [d / name for name in remove if name not in files and (d / name).exists()]
    return store.replace_files(d, files, remove=remove), gone


def _next_step(d: Path, following: _CA) -> str:
    serving = _serving(d)
    if serving is not None and pki.issued_by(serving, following.cert):
        return "finish"
    return "switch"


def _signer_of_serving(d: Path, cas: list[_CA]) -> _CA | None:
    serving = _serving(d)
    if serving is None:
        return None
    for ca in cas:
        if pki.issued_by(serving, ca.cert):
            return ca
    raise CertificateError(
        f"{d / layout.TLS_CERT}: not signed by the CA in {cas[0].cert_path}: renewing it from that"
        " CA would change what the apiserver must trust; --force starts over with a new CA"
    )


def _write_serving(request: Request, authority: pki.Authority) -> list[Path]:
    d = request.directory
    names, ips = _subject(request)
    pki.check_signer(authority, names, ips, days=request.days)
    cert, key = pki.issue(authority, dns_names=names, ip_addresses=ips, days=request.days)
    return store.replace_files(
        d, {layout.TLS_CERT: (cert, store.PUBLIC), layout.TLS_KEY: (key, store.PRIVATE)}
    )


def _subject(request: Request) -> tuple[list[str], list[str]]:
    """The DNS names and IP addresses to issue for: the requested ones, else those of
    the serving certificate in place (else the default Service's names)."""
    if request.dns_names is not None:
        return request.dns_names, request.ip_addresses
    names, ips = _in_place(request.directory)
    return names or pki.service_names(PRODUCT, PRODUCT), request.ip_addresses or ips


def _in_place(d: Path) -> tuple[list[str], list[str]]:
    """The DNS names and IP addresses of the serving certificate in `d` (none: empty)."""
    serving = _serving(d)
    return pki.certificate_names(serving) if serving is not None else ([], [])


def _until(written: list[Path]) -> str:
    (tls,) = [p for p in written if p.name == layout.TLS_CERT]
    expires: dt.datetime = pki.expiry(pki.read_certificate(tls))
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
        f"kubectl -n {_namespace(d)} create secret tls {layout.SECRET} --cert={d / layout.TLS_CERT}"
        f" --key={d / layout.TLS_KEY} --dry-run=client -o yaml | kubectl apply -f -"
    )


def _apply_bundle(bundle: Path) -> str:
    return (
        f"dify-volume-init manifests --namespace {_namespace(bundle.parent)} --ca-bundle {bundle}"
        " [--policy FILE --image IMAGE] | kubectl apply -f -"
    )
