"""What a running webhook holds that can change while it serves.

The policy and the serving certificate can be replaced while the process
runs; the app reads them from one `ServingState` per process instead of globals,
so tests build as many as they like.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from webhook.engine.policy import Policy
from webhook.serving.metrics import Metrics


@dataclass
class ServingState:
    """The live state of one webhook process."""

    policy: Policy | None
    protected_namespaces: frozenset[str] = frozenset()
    certificate_loaded: bool = False
    shutting_down: bool = False
    require_client_certificate: bool = False
    metrics: Metrics = field(default_factory=Metrics)
    verified_peers: dict[tuple[str, int], bool] = field(default_factory=dict)
    """Open connections by client address: did the client present a verified certificate."""

    @property
    def ready(self) -> bool:
        """Readiness: a certificate and a valid policy are loaded, and no shutdown began."""
        return self.certificate_loaded and self.policy is not None and not self.shutting_down
