"""The `serve` shell: settings in, a TLS uvicorn server out.

Follows uvicorn's own `main -> run -> Config -> Server`: `serve()` checks the
policy and the certificate first (a bad file fails fast with one line naming
it), then builds a `uvicorn.Config` and runs a `Server`, or uvicorn's
`Multiprocess` supervisor when `--workers` is above one. The TLS context is
the webhook's own: TLS 1.2 at least, built from the configured files.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import os
import socket
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from webhook import files
from webhook.certs import store
from webhook.engine import policy
from webhook.engine.errors import UsageError
from webhook.serving import logs, reload, tls
from webhook.serving.app import AdmissionRoutes, create_app
from webhook.serving.settings import Settings
from webhook.serving.state import ServingState

_log = logs.get("server")
GRACEFUL_SHUTDOWN_SECONDS = 20


def build_runtime(settings: Settings, *, fallback_policy: str | None = None) -> ServingState:
    """Load the policy into a fresh `ServingState`.

    With `fallback_policy` (a worker process: the policy text the supervisor
    validated at start), a policy file that has gone bad since is one warning
    and the worker serves the fallback, rather than dying with a traceback for
    the supervisor to respawn in a loop; its watcher picks up the next good edit.
    """
    try:
        loaded = files.load_policy(settings.policy)
    except UsageError as exc:
        if fallback_policy is None:
            raise
        _log.warning(
            "the policy file cannot be used; this worker starts from the policy"
            " validated when the server started",
            extra={"fields": {"reason": str(exc)}},
        )
        loaded = policy.parse_policy(fallback_policy, source=f"{settings.policy} (at start)")
    runtime = ServingState(
        policy=loaded.with_program_image(settings.image),
        protected_namespaces=frozenset({settings.own_namespace()}),
    )
    runtime.metrics.policy_reloads.labels("loaded").inc()
    reload.check_selection(runtime, settings)
    return runtime


def build_app(
    settings: Settings, *, fallback_policy: str | None = None
) -> tuple[AdmissionRoutes, reload.CertificateStore]:
    """The app for one server process, with its policy and certificate loaded."""
    runtime = build_runtime(settings, fallback_policy=fallback_policy)
    store = reload.CertificateStore(settings, runtime)
    runtime.metrics.certificate_reloads.labels("loaded").inc()
    runtime.certificate_loaded = True
    runtime.require_client_certificate = settings.client_ca is not None
    watched = reload.watchers(settings, runtime, store)
    app = create_app(settings, runtime, watched=watched)
    tune_garbage_collector()
    return app, store


def tune_garbage_collector() -> None:
    """Keep the cyclic garbage collector off the admission path.

    NB: decoding a pod allocates thousands of dicts (a 100 KB pod with
    managedFields, about 5,000), and each 700 allocations start a collection
    that, every hundredth time, walks every object of the process, FastAPI's
    and pydantic's included. Freezing what start-up built takes those out of
    every later collection, and a higher first threshold makes collections
    rarer; decoded pods hold no cycles. Measured in bench/: the 100 KB pod's
    CPU per admission falls about threefold.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


@dataclass
class _Handoff:
    """What `WebhookConfig.load()` and the app factory pass each other in a worker.

    NB: with --workers, uvicorn builds the app inside each worker process from an
    import string, in `load()`: `load()` leaves here the policy text the
    supervisor validated (the worker's fallback), and the factory leaves the
    process's certificate store for `load()` to serve.
    """

    store: reload.CertificateStore | None = None
    policy: str | None = None


_worker = _Handoff()


def app_from_environment() -> AdmissionRoutes:
    """Factory for worker processes: settings come from `VOLUME_INIT_*` variables."""
    settings = Settings()
    logs.configure(log_format=settings.log_format, level=settings.log_level)
    app, _worker.store = build_app(settings, fallback_policy=_worker.policy)
    return app


class WebhookConfig(uvicorn.Config):
    """uvicorn's Config serving the webhook's own, reloadable TLS context.

    NB: uvicorn builds its SSLContext in `load()`, in every worker process;
    overriding `load()` puts the certificate store's context there instead
    (TLS 1.2 minimum, files checked, swapped on rotation).
    """

    def __init__(
        self,
        app: Any,
        *,
        settings: Settings,
        store: reload.CertificateStore | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            app,
            ssl_certfile=str(settings.tls_cert),
            ssl_keyfile=str(settings.tls_key),
            **kwargs,
        )
        self.webhook_settings = settings
        self.webhook_store = store
        self.webhook_policy: str | None = None
        """The policy text validated at start, for worker processes to fall back on."""

    def load(self) -> None:
        _worker.policy = self.webhook_policy
        super().load()
        store = self.webhook_store or _worker.store
        if store is None:  # pragma: no cover - build_app always made one
            self.ssl = tls.server_context(self.webhook_settings)
            return
        self.ssl = store.listening
        self.http_protocol_class = _recording_peers(self.http_protocol_class, store.runtime)


def _recording_peers(base: type[asyncio.Protocol], runtime: ServingState) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol, noting per connection whether the client's certificate verified.

    NB: uvicorn puts no TLS details in the ASGI scope; the client address it
    does put there is the key (a connection is called after its handshake).
    """

    class RecordingPeers(base):  # type: ignore[valid-type,misc]
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            peer = transport.get_extra_info("peername")
            self._webhook_peer = tuple(peer[:2]) if isinstance(peer, tuple) else None
            if self._webhook_peer is not None:
                ssl_object = transport.get_extra_info("ssl_object")
                runtime.verified_peers[self._webhook_peer] = tls.peer_verified(ssl_object)
            super().connection_made(transport)

        def connection_lost(self, exc: Exception | None) -> None:
            if self._webhook_peer is not None:
                runtime.verified_peers.pop(self._webhook_peer, None)
            super().connection_lost(exc)

    return RecordingPeers


def make_development_certificates(settings: Settings) -> None:
    """With the default certificate paths and no files there, generate a dev CA and cert."""
    if settings.uses_default_certificate() and store.ensure_development_certificates(
        settings.tls_cert.parent, service=settings.service, namespace=settings.own_namespace()
    ):
        _log.info(
            "generated a development CA and serving certificate",
            extra={"fields": {"dir": str(settings.tls_cert.parent)}},
        )


def serve(settings: Settings) -> None:
    """Run the HTTPS admission server until SIGINT/SIGTERM."""
    logs.configure(log_format=settings.log_format, level=settings.log_level)
    make_development_certificates(settings)
    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "access_log": False,
        "server_header": False,
        "lifespan": "on",
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
        "timeout_keep_alive": 65,
        "proxy_headers": False,  # kube-apiserver connects directly: no proxy to trust
    }
    if settings.workers == 1:
        app, store = build_app(settings)  # a bad policy or certificate fails here, in one line
        config = WebhookConfig(app, settings=settings, store=store, **common)
        uvicorn.Server(config).run(sockets=[listening_socket(settings)])
        return
    # Fail fast in the supervisor; each worker builds its own app afterwards.
    startup_policy = None if settings.policy is None else files.read_policy_text(settings.policy)
    if startup_policy is not None:
        policy.parse_policy(startup_policy, source=str(settings.policy))
    tls.server_context(settings)
    # Worker processes rebuild the settings from the environment.
    for name, value in settings.model_dump(exclude_none=True).items():
        os.environ[f"VOLUME_INIT_{name.upper()}"] = str(value)
    config = WebhookConfig(
        "webhook.serving.server:app_from_environment",
        settings=settings,
        factory=True,
        workers=settings.workers,
        **common,
    )
    config.webhook_policy = startup_policy
    Multiprocess(config, sockets=[listening_socket(settings)]).run()


def listening_socket(settings: Settings) -> socket.socket:
    """The listening address bound before uvicorn starts, so that a port in use is one
    line and exit 2 (uvicorn logs it among its start-up lines and exits 3)."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as exc:
        sock.close()
        reason = "the port is already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise UsageError(
            f"cannot listen on {settings.host}:{settings.port}: {reason}"
            " (--host/--port, VOLUME_INIT_HOST/VOLUME_INIT_PORT)"
        ) from None
    sock.set_inheritable(True)
    return sock
