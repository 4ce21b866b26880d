"""Prometheus metrics of one webhook process (docs/design.md#endpoints).

Each `Metrics` owns its registry, so an app built in a test does not share
counters with another.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# From 0.5 ms: an admission is usually well under a millisecond of work, and
# kube-apiserver's own webhook histogram starts at 5 ms.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)


class Metrics:
    """The counters, histogram and gauges the webhook exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # NB: labels() costs a lookup and a lock per call; children are cached.
        self._admission_children: dict[tuple[str, str], Any] = {}
        self._latency_children: dict[str, Any] = {}
        self.admissions = Counter(
            "volume_init_admissions",
            "Admission requests answered, by outcome (injected, skipped, denied, error)"
            " and reason.",
            ["outcome", "reason"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "volume_init_admission_duration_seconds",
            "Time from request received to response encoded.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.policy_reloads = Counter(
            "volume_init_policy_reloads",
            "Policy loads, by result (loaded, rejected).",
            ["result"],
            registry=self.registry,
        )
        self.certificate_reloads = Counter(
            "volume_init_certificate_reloads",
            "Serving certificate loads, by result (loaded, rejected).",
            ["result"],
            registry=self.registry,
        )
        self.selection_drift = Gauge(
            "dify_volume_init_policy_selection_drift",
            "1 when the loaded policy selects pods differently from the webhook"
            " configuration it was deployed with (re-apply `manifests`), else 0.",
            registry=self.registry,
        )
        self.certificate_expiry = Gauge(
            "volume_init_certificate_expiry_timestamp_seconds",
            "Expiry time (Unix seconds) of the serving certificate in use.",
            registry=self.registry,
        )

    def count(self, outcome: str, reason: str) -> None:
        """One more admission with this outcome and reason."""
        child = self._admission_children.get((outcome, reason))
        if child is None:
            child = self._admission_children[(outcome, reason)] = self.admissions.labels(
                outcome, reason
            )
        child.inc()

    def observe(self, endpoint: str, seconds: float) -> None:
        """An admission's latency."""
        child = self._latency_children.get(endpoint)
        if child is None:
            child = self._latency_children[endpoint] = self.latency.labels(endpoint)
        child.observe(seconds)

    def exposition(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
