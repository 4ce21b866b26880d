"""The engine's exceptions, and the two base classes every room's errors derive from.

Two channels, kept apart on purpose: a malformed *request* is the webhook's
problem to report (HTTP 400, `BadRequest`); a *pod* that the policy refuses is
not an error at all but a decision (HTTP 200, `allowed: false`) and never
raises. Everything a user can get wrong in a file or a flag is a `UsageError`
subclass whose `str()` is the one line the command line prints: the rooms
that read files and certificates add their own (`files.InputError`,
`certs.pki.CertificateError`).
"""


class VolumeInitError(Exception):
    """Base class of every error this package raises on purpose."""


class UsageError(VolumeInitError):
    """Bad input from a user: a file, a flag or an environment variable (exit code 2)."""


class PolicyError(UsageError):
    """A policy file that cannot be read, parsed or validated."""


class BadRequest(VolumeInitError):
    """An admission request the webhook cannot answer: HTTP 400 with this one-line reason."""


class PayloadTooLarge(BadRequest):
    """An admission request body over the size limit: HTTP 413."""


class InvalidObject(VolumeInitError):
    """A pod whose fields have the wrong shape; the message names the field."""
