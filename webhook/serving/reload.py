"""Hot reload of the serving certificate and the policy, with no restart.

cert-manager renews a certificate by rewriting its Secret; the kubelet then
swaps the Secret volume's `..data` symlink, so `tls.crt` and `tls.key` change
together from the reader's point of view, a little after the fact. A
ConfigMap volume changes the same way. Each `Watched` file set is polled
(cheap: two small files read and compared every couple of seconds) and, when
its content changes, loaded and checked *before* it replaces what is in
force: a new certificate must load with its key, a new policy must validate.
A bad new version is refused with one log line, and the last good one stays.

The TLS side needs no restart: the listening socket's `SSLContext` has an SNI
callback (called on every handshake, with or without SNI) that hands the
connection the current context, so new handshakes use the new pair while
connections already open finish on the old one.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from webhook import files
from webhook.certs import pki
from webhook.certs.pki import CertificateError
from webhook.engine import policy
from webhook.engine.errors import UsageError
from webhook.files import InputError
from webhook.serving import logs, tls
from webhook.serving.settings import Settings
from webhook.serving.state import ServingState

_log = logs.get("reload")
POLL_SECONDS = 2.0
EXPIRY_WARNING = dt.timedelta(days=30)
"""A serving certificate with less left than this is warned about (as cert-manager
renews at two thirds of a 90-day life, a healthy one never gets here)."""
WARNING_REPEAT = dt.timedelta(hours=24)


def _fingerprint(paths: list[Path], limit: int) -> str:
    """A digest of the files' content; raises `InputError` for one that cannot be read
    (gone, a directory, a pipe, unreadable, over `limit`): never blocks."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(files.read_regular(path, limit=limit, what="watched file"))
        digest.update(b"\0")
    return digest.hexdigest()


@dataclass
class Watched:
    """A set of files and what to do when their content changes."""

    name: str
    paths: list[Path]
    load: Callable[[], None]
    """Load and apply the new version; any exception refuses it."""
    on_result: Callable[[str], None] = lambda result: None
    tick: Callable[[], object] = lambda: None
    """Called on every poll, changed or not (the certificate's expiry check)."""
    limit: int = files.MAX_POLICY_BYTES
    seen: str | None = field(default=None)

    def prime(self) -> None:
        """Remember the current content as already loaded."""
        try:
            self.seen = _fingerprint(self.paths, self.limit)
        except InputError as exc:
            self.seen = f"unreadable: {exc}"

    def check(self) -> bool:
        """Reload if the content changed since last seen; True when a new version took effect.

        Never raises: a file that cannot be read, and a new version that fails
        to load for any reason (a `UsageError`, or a `RecursionError` or
        `MemoryError` from a hostile file), is logged once as a refusal,
        counted, and polling goes on with the last good version in force.
        """
        try:
            current = _fingerprint(self.paths, self.limit)
        except InputError as exc:
            problem = f"unreadable: {exc}"
            if problem != self.seen:
                self.seen = problem
                self._refused(str(exc))
            return False
        if current == self.seen:
            return False
        self.seen = current
        try:
            self.load()
        except UsageError as exc:
            self._refused(str(exc))
            return False
        except Exception as exc:  # NB: the watcher must outlive any one file
            self._refused(f"{self.paths[0]}: cannot be loaded ({_plain(exc)})")
            return False
        self.on_result("loaded")
        _log.info(
            f"loaded the new {self.name}", extra={"fields": {"files": [str(p) for p in self.paths]}}
        )
        return True

    def _refused(self, reason: str) -> None:
        self.on_result("rejected")
        _log.error(
            f"refused the new {self.name}; the previous one stays in force",
            extra={"fields": {"reason": reason}},
        )


def _plain(exc: Exception) -> str:
    """What went wrong, in an operator's words rather than Python's."""
    if isinstance(exc, MemoryError):
        return "out of memory"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return "unexpected error"


class CertificateStore:
    """The serving context in force, swapped on handshakes by an SNI callback."""

    def __init__(self, settings: Settings, runtime: ServingState) -> None:
        self._settings = settings
        self.runtime = runtime
        self.expires = dt.datetime.min.replace(tzinfo=dt.UTC)
        self._warned_at: dt.datetime | None = None
        pem = pki.read_certificate(settings.tls_cert)
        self.listening = self._build()
        self.listening.sni_callback = self._select
        self.current = self.listening
        problem = pki.validity_problem(pem)
        if problem is not None:
            # NB: at start there is no other certificate to serve; say so and serve it.
            _log.warning(
                f"the serving certificate {problem}: clients will refuse it until it is replaced",
                extra={"fields": {"file": str(settings.tls_cert)}},
            )
            self._warned_at = dt.datetime.now(dt.UTC)
        self._record_expiry(pem, warn=problem is None)

    def _build(self) -> ssl.SSLContext:
        return tls.server_context(self._settings)

    def _select(
        self, connection: ssl.SSLObject | ssl.SSLSocket, name: str | None, _: ssl.SSLContext
    ) -> None:
        connection.context = self.current

    def reload(self) -> None:
        """Build a context from the files now on disk; raises `UsageError` if they are bad,
        or if the new certificate is expired or not valid yet (the one in force stays)."""
        pem = pki.read_certificate(self._settings.tls_cert)
        problem = pki.validity_problem(pem)
        if problem is not None:
            raise CertificateError(f"{self._settings.tls_cert}: the new certificate {problem}")
        self.current = self._build()
        self._record_expiry(pem)

    def _record_expiry(self, pem: bytes, *, warn: bool = True) -> None:
        self.expires = pki.expiry(pem)
        self.runtime.metrics.certificate_expiry.set(self.expires.timestamp())
        if warn:
            self._warned_at = None
            self.warn_if_expiring()

    def warn_if_expiring(self, now: dt.datetime | None = None) -> bool:
        """One warning when the certificate in force has less than `EXPIRY_WARNING` left:
        at load, then once a day while it lasts. True when it warned."""
        now = now or dt.datetime.now(dt.UTC)
        left = self.expires - now
        if left >= EXPIRY_WARNING:
            return False
        if self._warned_at is not None and now - self._warned_at < WARNING_REPEAT:
            return False
        self._warned_at = now
        when = f"{self.expires:%Y-%m-%d %H:%M} UTC"
        state = (
            f"expired on {when}"
            if left <= dt.timedelta(0)
            else f"expires on {when}, in {left.days} days"
        )
        _log.warning(
            f"the serving certificate {state}: renew it with"
            " `dify-volume-init certs --renew` and update the Secret (cert-manager renews"
            " its own; check its Certificate)",
            extra={"fields": {"file": str(self._settings.tls_cert), "not_after": when}},
        )
        return True


def watchers(
    settings: Settings, runtime: ServingState, store: CertificateStore | None
) -> list[Watched]:
    """What to watch in a server process: the certificate pair and the policy file."""
    found: list[Watched] = []
    metrics = runtime.metrics
    if store is not None:
        found.append(
            Watched(
                "serving certificate",
                [settings.tls_cert, settings.tls_key]
                + ([settings.client_ca] if settings.client_ca is not None else []),
                store.reload,
                lambda result: metrics.certificate_reloads.labels(result).inc(),
                tick=store.warn_if_expiring,
                limit=pki.MAX_PEM_BYTES,
            )
        )
    if settings.policy is not None:
        policy_path = settings.policy

        def load_policy() -> None:
            runtime.policy = files.load_policy(policy_path).with_program_image(settings.image)
            check_selection(runtime, settings)

        found.append(
            Watched(
                "policy",
                [policy_path],
                load_policy,
                lambda result: metrics.policy_reloads.labels(result).inc(),
            )
        )
    for watched in found:
        watched.prime()
    return found


def check_selection(runtime: ServingState, settings: Settings) -> None:
    """Compare the loaded policy's selection with the one the webhook configuration
    was rendered for (`--selection`): the drift gauge, and one warning on a difference."""
    if not settings.selection or runtime.policy is None:
        runtime.metrics.selection_drift.set(0)
        return
    loaded = policy.selection_fingerprint(runtime.policy)
    drift = loaded != settings.selection
    runtime.metrics.selection_drift.set(1 if drift else 0)
    if drift:
        _log.warning(
            "the policy selects pods differently from the webhook configuration:"
            " re-apply `dify-volume-init manifests --policy FILE` so the apiserver sends them",
            extra={"fields": {"configured": settings.selection, "policy": loaded}},
        )


async def watch(
    found: list[Watched], *, interval: float = POLL_SECONDS, wake: asyncio.Event | None = None
) -> None:
    """Poll every `interval` seconds until cancelled, and at once when `wake` is set
    (SIGHUP); nothing one poll meets ends it."""
    wake = wake or asyncio.Event()
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), interval)
        wake.clear()
        for watched in found:
            try:
                watched.check()
                watched.tick()
            except Exception:  # NB: a bug here must not end hot reload
                _log.exception(f"checking the {watched.name} failed; polling goes on")
