"""ServingState settings of `serve`: where to listen, which files to load, how to log.

Settings are not policy: they say how the process runs, never what it
mutates. Each has a command-line flag and an environment variable
`VOLUME_INIT_<FLAG>` (flags win), read by pydantic-settings when the command
line builds a `Settings`; nothing is read at import time. The model is the one
source of the flags: cli.py makes them from its fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from webhook.certs import layout
from webhook.engine import DEFAULT_IMAGE, PRODUCT
from webhook.k8s.names import image_reference

DEFAULT_CERT_DIR = Path("certs")
DEFAULT_TLS_CERT = DEFAULT_CERT_DIR / layout.TLS_CERT
DEFAULT_TLS_KEY = DEFAULT_CERT_DIR / layout.TLS_KEY
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class Settings(BaseSettings):
    """How `dify-volume-init serve` runs."""

    model_config = SettingsConfigDict(env_prefix="VOLUME_INIT_", extra="forbid", frozen=True)

    # NB: the order, names, defaults and descriptions here are the `serve` flags
    # and their --help (cli.py generates them): one edit adds a setting.
    host: str = Field(default="0.0.0.0", description="address to listen on")  # noqa: S104
    port: int = Field(default=8443, ge=1, le=65535, description="port to listen on")
    tls_cert: Path = Field(
        default=DEFAULT_TLS_CERT,
        description="serving certificate, PEM (a development CA and certificate are"
        " generated in certs/ when both defaults are absent)",
    )
    tls_key: Path = Field(default=DEFAULT_TLS_KEY, description="serving key, PEM")
    policy: Path | None = Field(default=None, description="policy file (default: the built-in)")
    workers: int = Field(default=1, ge=1, le=64, description="server processes")
    log_format: Literal["json", "text"] = Field(default="json", description="log line format")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="least severe level logged"
    )
    namespace: str = Field(
        default="",
        description=f"the webhook's own namespace, never mutated (default: the service"
        f" account's, else {PRODUCT})",
    )
    service: str = Field(default=PRODUCT, description="Service name in development certificates")
    client_ca: Path | None = Field(
        default=None,
        description="require admission callers to present a client certificate signed by"
        " this CA (PEM), as kube-apiserver does when its admission config gives it one",
    )
    shutdown_delay: float = Field(
        default=5.0,
        ge=0,
        le=120,
        description="seconds between SIGTERM (readiness turns false) and closing the listener",
    )
    selection: str = Field(
        default="",
        description="fingerprint of the policy selection the webhook configuration was"
        " rendered for (manifests sets it); a loaded policy that differs is reported as drift",
    )
    image: Annotated[str, AfterValidator(image_reference)] = Field(
        default=DEFAULT_IMAGE,
        description="the image this webhook runs (manifests sets it): the injected init"
        " container's in program mode, where the policy names none",
    )
    reload_interval: float = Field(
        default=2.0, gt=0, le=300, description="seconds between checks of the cert and policy"
    )

    def own_namespace(self) -> str:
        """The webhook's namespace: the setting, else the service account's, else the default."""
        if self.namespace:
            return self.namespace
        try:
            return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or PRODUCT
        except OSError:
            return PRODUCT

    def uses_default_certificate(self) -> bool:
        """True when the certificate paths are the built-in ones (dev certs may be made)."""
        return self.tls_cert == DEFAULT_TLS_CERT and self.tls_key == DEFAULT_TLS_KEY
