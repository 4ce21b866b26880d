"""The injected init container's resources keep the pod admissible and its QoS class.

In-process, beside tests/test_cluster.py's runs through the real apiserver (quota
admission and the QoS class it stores): the engine's rule for each pod shape.
"""

from __future__ import annotations

from typing import Any

import pytest

from webhook.engine import resources

POLICY = {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}}


def spec(*containers: dict[str, Any], init: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {"containers": list(containers)}
    if init:
        out["initContainers"] = list(init)
    return out


def sized(
    requests: dict[str, str] | None = None, limits: dict[str, str] | None = None
) -> dict[str, Any]:
    return {"name": "c", "resources": {"requests": requests or {}, "limits": limits or {}}}


GUARANTEED = sized({"cpu": "500m", "memory": "1Gi"}, {"cpu": "500m", "memory": "1Gi"})


@pytest.mark.parametrize(
    ("pod", "expected", "said"),
    [
        # no limits anywhere: the policy's resources as they are
        (spec({"name": "c"}), POLICY, None),
        # limits on memory only: memory has one already, cpu is left alone
        (spec(sized(limits={"memory": "1Gi"})), POLICY, None),
        # every app container limits cpu: a quota on limits.cpu needs one here too
        (
            spec(sized(limits={"cpu": "1", "memory": "1Gi"}), sized(limits={"cpu": "2"})),
            {"requests": POLICY["requests"], "limits": {"memory": "64Mi", "cpu": "10m"}},
            "init container resources limits.cpu 10m as every app container sets limits",
        ),
        # one app container without a cpu limit: no quota on limits.cpu can admit the pod
        (spec(sized(limits={"cpu": "1"}), {"name": "d"}), POLICY, None),
        # Guaranteed: requests equal limits for cpu and memory, raised, never lowered
        (
            spec(GUARANTEED),
            {
                "requests": {"cpu": "10m", "memory": "64Mi"},
                "limits": {"memory": "64Mi", "cpu": "10m"},
            },
            "init container resources limits.cpu 10m, requests.memory 64Mi to keep the pod"
            " Guaranteed",
        ),
        # an init container of the pod's own that is not Guaranteed: the pod is not
        (
            spec(GUARANTEED, init=({"name": "i"},)),
            {"requests": POLICY["requests"], "limits": {"memory": "64Mi", "cpu": "10m"}},
            "init container resources limits.cpu 10m as every app container sets limits",
        ),
        # limits only (requests default to them): Guaranteed too
        (
            spec(sized(limits={"cpu": "1", "memory": "1Gi"})),
            {
                "requests": {"cpu": "10m", "memory": "64Mi"},
                "limits": {"memory": "64Mi", "cpu": "10m"},
            },
            "init container resources limits.cpu 10m, requests.memory 64Mi to keep the pod"
            " Guaranteed",
        ),
        # a quantity written differently is still equal (Guaranteed)
        (
            spec(sized({"cpu": "0.5", "memory": "1024Mi"}, {"cpu": "500m", "memory": "1Gi"})),
            {
                "requests": {"cpu": "10m", "memory": "64Mi"},
                "limits": {"memory": "64Mi", "cpu": "10m"},
            },
            "init container resources limits.cpu 10m, requests.memory 64Mi to keep the pod"
            " Guaranteed",
        ),
    ],
    ids=[
        "no-limits",
        "memory-limit-only",
        "every-cpu-limit",
        "one-without-cpu-limit",
        "guaranteed",
        "own-init-not-guaranteed",
        "limits-only",
        "equal-in-other-units",
    ],
)
def test_resources_follow_the_pod(
    pod: dict[str, Any], expected: dict[str, Any], said: str | None
) -> None:
    """Guards `resources.adapt`: the policy's resources, with a limit added where every
    app container has one and requests raised to limits in a Guaranteed pod."""
    assert resources.adapt(pod, POLICY) == (expected, said)


def test_a_bad_quantity_in_the_pod_is_not_guaranteed() -> None:
    """Guards the reading of the pod's own quantities: one the engine cannot read makes
    the pod not Guaranteed (the apiserver refuses it anyway), never a crash."""
    pod = spec(sized({"cpu": "lots", "memory": "1Gi"}, {"cpu": "1", "memory": "1Gi"}))
    out, _ = resources.adapt(pod, POLICY)
    assert out["requests"] == POLICY["requests"]
