"""The injected init container's resources: the policy's, or, for cpu and memory, those
of the app container whose storage it fixes.

In-process, beside tests/test_cluster.py's runs through the real apiserver (LimitRange,
ResourceQuota and the QoS class it stores): the engine's rule for each pod shape.
"""

from __future__ import annotations

from typing import Any

import pytest

from webhook.engine import resources

POLICY = {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}}


def app(
    requests: dict[str, Any] | None = None, limits: dict[str, Any] | None = None
) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if requests is not None:
        found["requests"] = requests
    if limits is not None:
        found["limits"] = limits
    return {"name": "api", "resources": found} if found else {"name": "api"}


@pytest.mark.parametrize(
    ("container", "expected"),
    [
        # the app sets nothing: the policy's resources as they are
        (app(), POLICY),
        # Guaranteed: exactly the app's, so the pod stays Guaranteed
        (
            app({"cpu": "500m", "memory": "1Gi"}, {"cpu": "500m", "memory": "1Gi"}),
            {
                "requests": {"cpu": "500m", "memory": "1Gi"},
                "limits": {"cpu": "500m", "memory": "1Gi"},
            },
        ),
        # requests only: the policy's memory limit goes (it was below the request)
        (
            app({"cpu": "100m", "memory": "512Mi"}),
            {"requests": {"cpu": "100m", "memory": "512Mi"}},
        ),
        # cpu only: memory stays the policy's
        (
            app({"cpu": "250m"}, {"cpu": "1"}),
            {
                "requests": {"cpu": "250m", "memory": "16Mi"},
                "limits": {"memory": "64Mi", "cpu": "1"},
            },
        ),
        # a GPU or other extended resource is never copied onto the init container
        (
            app({"nvidia.com/gpu": "1"}, {"nvidia.com/gpu": "1"}),
            POLICY,
        ),
        # quantities written as numbers are kept as written
        (
            app({"cpu": 1}, {"cpu": 2}),
            {"requests": {"cpu": 1, "memory": "16Mi"}, "limits": {"memory": "64Mi", "cpu": 2}},
        ),
        # a boolean is no quantity: left to the apiserver to refuse, the policy's kept
        (app({"cpu": True}), POLICY),
    ],
    ids=["none", "guaranteed", "requests-only", "cpu-only", "extended", "numbers", "bool"],
)
def test_the_init_container_takes_the_apps_cpu_and_memory(
    container: dict[str, Any], expected: dict[str, Any]
) -> None:
    """Guards `resources.adapt`: for each of cpu and memory the app container sets, the
    init container takes exactly its requests and limits (LimitRange min, max and ratio,
    quota and QoS then judge it as the app); otherwise the policy's values stand."""
    assert resources.adapt(POLICY, container) == expected
