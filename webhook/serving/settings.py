"""Runtime settings of `serve`: where to listen, which files to load, how to log.

Settings are not policy: they say how the process runs, never what it
mutates. Each has a command-line flag and an environment variable
`VOLUME_INIT_<FLAG>` (flags win), read by pydantic-settings when the command
line builds a `Settings`; nothing is read at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_CERT_DIR = Path("certs")
DEFAULT_TLS_CERT = DEFAULT_CERT_DIR / "tls.crt"
DEFAULT_TLS_KEY = DEFAULT_CERT_DIR / "tls.key"
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class Settings(BaseSettings):
    """How `dify-volume-init serve` runs."""

    model_config = SettingsConfigDict(env_prefix="VOLUME_INIT_", extra="forbid", frozen=True)

    host: str = "0.0.0.0"  # noqa: S104 - a webhook serves the cluster network
    port: int = Field(default=8443, ge=1, le=65535)
    tls_cert: Path = DEFAULT_TLS_CERT
    tls_key: Path = DEFAULT_TLS_KEY
    policy: Path | None = None
    client_ca: Path | None = None
    workers: int = Field(default=1, ge=1, le=64)
    log_format: Literal["json", "text"] = "json"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    namespace: str = Field(default="", description="the webhook's own namespace, never mutated")
    service: str = "dify-volume-init"
    shutdown_delay: float = Field(
        default=5.0,
        ge=0,
        le=120,
        description="seconds between SIGTERM (readiness turns false) and closing the listener",
    )
    reload_interval: float = Field(
        default=2.0, gt=0, le=300, description="seconds between checks of the cert and policy"
    )

    def own_namespace(self) -> str:
        """The webhook's namespace: the setting, else the service account's, else the default."""
        if self.namespace:
            return self.namespace
        try:
            return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "dify-volume-init"
        except OSError:
            return "dify-volume-init"

    def uses_default_certificate(self) -> bool:
        """True when the certificate paths are the built-in ones (dev certs may be made)."""
        return self.tls_cert == DEFAULT_TLS_CERT and self.tls_key == DEFAULT_TLS_KEY
