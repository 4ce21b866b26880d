"""dify-volume-init: a mutating admission webhook that makes Dify's storage volumes
writable by Dify's non-root (UID/GID 1001) api, worker and beat containers."""

__version__ = "0.1.0"
