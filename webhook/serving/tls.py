"""The serving TLS context: the configured certificate and key, TLS 1.2 at
least, and optionally the CA that client certificates must chain to."""

from __future__ import annotations

import ssl

from webhook import files
from webhook.certs import pki
from webhook.certs.pki import CertificateError
from webhook.serving.settings import Settings


def server_context(settings: Settings) -> ssl.SSLContext:
    """A server context for the configured certificate and key (TLS 1.2 minimum)."""
    cert = settings.tls_cert
    key = settings.tls_key
    # NB: OpenSSL reads the files itself; reading them first refuses what
    # would stall or flood it (a pipe, a device, a huge file) in one line.
    pki.read_certificate(cert)
    files.read_regular(key, limit=pki.MAX_PEM_BYTES, what="private key file")
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
    if settings.client_ca is not None:
        files.read_regular(settings.client_ca, limit=pki.MAX_PEM_BYTES, what="client CA file")
        # NB: OPTIONAL, not REQUIRED: the kubelet's HTTPS probes present no
        # client certificate. A presented certificate must still verify
        # against the CA (or the handshake fails), and the admission routes
        # refuse connections that presented none (`peer_verified`).
        context.verify_mode = ssl.CERT_OPTIONAL
        try:
            context.load_verify_locations(cafile=str(settings.client_ca))
        except FileNotFoundError:
            raise CertificateError(f"{settings.client_ca}: client CA file not found") from None
        except (ssl.SSLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or "not PEM"
            raise CertificateError(
                f"{settings.client_ca}: cannot load client CA ({reason})"
            ) from None
    return context


def peer_verified(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> bool:
    """True when the connection's client presented a certificate that verified."""
    return ssl_object is not None and bool(ssl_object.getpeercert())
