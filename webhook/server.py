"""The `serve` shell: settings in, a TLS uvicorn server out.

Follows uvicorn's own `main -> run -> Config -> Server`: `serve()` checks the
policy and the certificate first (a bad file fails fast with one line naming
it), then builds a `uvicorn.Config` and runs a `Server`, or uvicorn's
`Multiprocess` supervisor when `--workers` is above one. The TLS context is
the webhook's own: TLS 1.2 at least, built from the configured files.
"""

from __future__ import annotations

import os
import ssl
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors import Multiprocess

from webhook import certs, logs, policy
from webhook.app import create_app
from webhook.errors import CertificateError
from webhook.runtime import Runtime
from webhook.settings import Settings

_log = logs.get("server")
GRACEFUL_SHUTDOWN_SECONDS = 20


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """A server context for the configured certificate and key (TLS 1.2 minimum)."""
    cert = settings.tls_cert
    key = settings.tls_key
    for path, what in ((cert, "certificate"), (key, "private key")):
        if not path.exists():
            raise CertificateError(f"{path}: {what} file not found")
        if not os.access(path, os.R_OK):
            raise CertificateError(f"{path}: {what} file is not readable")
    certs.read_certificate(cert)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(cert), str(key))
    except ssl.SSLError as exc:
        raise CertificateError(
            f"{key}: private key does not match {cert} or is not PEM ({exc.reason})"
        ) from None
    except OSError as exc:
        raise CertificateError(f"{key}: cannot read: {exc.strerror}") from None
    return context


def build_runtime(settings: Settings) -> Runtime:
    """Load the policy and the certificate's expiry into a fresh `Runtime`."""
    runtime = Runtime(
        policy=policy.load_policy(settings.policy),
        protected_namespaces=frozenset({settings.own_namespace()}),
    )
    runtime.metrics.policy_reloads.labels("loaded").inc()
    return runtime


def build_app(settings: Settings) -> FastAPI:
    """The app for one server process, with its policy and certificate loaded."""
    runtime = build_runtime(settings)
    ssl_context(settings)  # proves the pair loads before the process reports ready
    expires = certs.expiry(settings.tls_cert.read_bytes())
    runtime.metrics.certificate_expiry.set(expires.timestamp())
    runtime.metrics.certificate_reloads.labels("loaded").inc()
    runtime.certificate_loaded = True
    return create_app(settings, runtime)


def app_from_environment() -> FastAPI:
    """Factory for worker processes: settings come from `VOLUME_INIT_*` variables."""
    settings = Settings()
    logs.configure(log_format=settings.log_format, level=settings.log_level)
    return build_app(settings)


class WebhookConfig(uvicorn.Config):
    """uvicorn's Config with the webhook's own TLS context.

    NB: uvicorn builds its SSLContext in `load()`, in every worker process;
    overriding `load()` keeps ours there too (TLS 1.2 minimum, checked files).
    """

    def __init__(self, app: Any, *, settings: Settings, **kwargs: Any) -> None:
        super().__init__(
            app,
            ssl_certfile=str(settings.tls_cert),
            ssl_keyfile=str(settings.tls_key),
            **kwargs,
        )
        self.webhook_settings = settings

    def load(self) -> None:
        super().load()
        self.ssl = ssl_context(self.webhook_settings)


def prepare(settings: Settings) -> None:
    """Everything `serve` checks or creates before it listens; raises one-line errors."""
    if settings.uses_default_certificate() and certs.ensure_development_certificates(
        settings.tls_cert.parent, service=settings.service, namespace=settings.own_namespace()
    ):
        _log.info(
            "generated a development CA and serving certificate",
            extra={"fields": {"dir": str(settings.tls_cert.parent)}},
        )
    policy.load_policy(settings.policy)
    ssl_context(settings)


def serve(settings: Settings) -> None:
    """Run the HTTPS admission server until SIGINT/SIGTERM."""
    logs.configure(log_format=settings.log_format, level=settings.log_level)
    prepare(settings)
    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "access_log": False,
        "server_header": False,
        "lifespan": "off",
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
        "timeout_keep_alive": 65,
    }
    if settings.workers == 1:
        config = WebhookConfig(build_app(settings), settings=settings, **common)
        uvicorn.Server(config).run()
        return
    # Worker processes rebuild the settings from the environment.
    for name, value in settings.model_dump(exclude_none=True).items():
        os.environ[f"VOLUME_INIT_{name.upper()}"] = str(value)
    config = WebhookConfig(
        "webhook.server:app_from_environment",
        settings=settings,
        factory=True,
        workers=settings.workers,
        **common,
    )
    sock = config.bind_socket()
    Multiprocess(config, sockets=[sock]).run()
