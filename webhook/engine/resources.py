"""The injected init container's resources: the policy's, adapted to keep the pod
admissible and its QoS class.

Admission plugins after the webhook judge every container, the injected one too: a
ResourceQuota on `limits.cpu` or `limits.memory` refuses a pod any of whose
containers sets no such limit, and the apiserver computes the pod's QoS class over
init and app containers alike (a Guaranteed pod needs requests equal to limits for
cpu and memory in every container). So:

- when every app container sets a limit for cpu (or memory), the init container sets
  one too: the policy's limit, else its request, else the smallest the script needs;
- when the pod is Guaranteed, the init container's requests equal its limits for cpu
  and memory (a request raised to the limit, never a limit lowered).
"""

from __future__ import annotations

from typing import Any

from webhook.engine import policy

_COMPUTE = ("cpu", "memory")
_FLOOR = {"cpu": "10m", "memory": "64Mi"}
"""What the init container takes for a resource the policy does not size."""


def adapt(
    spec: dict[str, Any], resources: dict[str, dict[str, str]]
) -> tuple[dict[str, dict[str, str]], str | None]:
    """The init container's `resources` for a pod whose spec is `spec`, from the
    policy's `resources`, and what was changed (for a warning), or None."""
    containers = [c for c in spec.get("containers") or () if isinstance(c, dict)]
    if not containers:
        return resources, None
    requests = dict(resources.get("requests") or {})
    limits = dict(resources.get("limits") or {})
    changed: list[str] = []
    guaranteed = _guaranteed(spec)
    for name in _COMPUTE:
        if name not in limits and (guaranteed or all(_limit(c, name) for c in containers)):
            limits[name] = requests.get(name) or _FLOOR[name]
            changed.append(f"limits.{name} {limits[name]}")
        if guaranteed and requests.get(name) != limits[name]:
            requests[name] = limits[name]
            changed.append(f"requests.{name} {requests[name]}")
        elif name in requests and name in limits:
            request, limit = _value(requests[name]), _value(limits[name])
            if request is not None and limit is not None and request > limit:
                requests[name] = limits[name]
    out: dict[str, dict[str, str]] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    if not changed:
        return out, None
    why = "to keep the pod Guaranteed" if guaranteed else "as every app container sets limits"
    return out, f"init container resources {', '.join(changed)} {why}"


def _resources(container: dict[str, Any], kind: str) -> dict[str, Any]:
    resources = container.get("resources")
    found = resources.get(kind) if isinstance(resources, dict) else None
    return found if isinstance(found, dict) else {}


def _limit(container: dict[str, Any], name: str) -> bool:
    return _resources(container, "limits").get(name) is not None


def _value(quantity: Any) -> Any:
    try:
        return policy.quantity_value(str(quantity))
    except (AssertionError, ArithmeticError, ValueError, KeyError):
        return None


def _guaranteed(spec: dict[str, Any]) -> bool:
    """Kubernetes' Guaranteed QoS over the pod's init and app containers: each sets cpu
    and memory limits, and any request it sets equals the limit (an unset request
    defaults to the limit)."""
    every = [
        c
        for key in ("initContainers", "containers")
        for c in spec.get(key) or ()
        if isinstance(c, dict)
    ]
    for container in every:
        limits, requests = _resources(container, "limits"), _resources(container, "requests")
        for name in _COMPUTE:
            limit = limits.get(name)
            if limit is None:
                return False
            request = requests.get(name)
            if request is not None and _value(request) != _value(limit):
                return False
    return bool(every)
