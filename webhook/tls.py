"""The serving TLS context: the configured certificate and key, TLS 1.2 at least."""

from __future__ import annotations

import os
import ssl

from webhook import certs
from webhook.errors import CertificateError
from webhook.settings import Settings


def server_context(settings: Settings) -> ssl.SSLContext:
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
