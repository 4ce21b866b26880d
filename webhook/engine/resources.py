"""The injected init container's resources: the policy's, or, for cpu and memory, those
of the app container whose storage it fixes.

Admission after the webhook judges every container, the injected one too, and the
webhook cannot read what it is judged by: LimitRanger validates each container against
its namespace's LimitRange (min, max, `maxLimitRequestRatio`), ResourceQuota refuses a
pod any of whose containers lacks a limit it tracks (`limits.cpu`), and the apiserver
computes the QoS class over init and app containers alike (Guaranteed needs requests
equal to limits everywhere). The app container passes all of these, or the pod is
refused without the webhook; so for each of cpu and memory the container sets, the
init container takes exactly its requests and limits, and passes them too. This
costs the pod nothing: its effective request is the larger of its largest init
container and the sum of its app containers, and init containers run before the app
does. For a resource the app container leaves unset, the policy's values stand.
"""

from __future__ import annotations

from typing import Any

_FOLLOWED = ("cpu", "memory")
_KINDS = ("requests", "limits")


def adapt(resources: dict[str, dict[str, Any]], app: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The init container's resources from the policy's `resources` and the app
    container `app` whose storage it fixes (documented, not warned: most Dify pods
    set resources, and a warning on each would be noise)."""
    own = {kind: _quantities(app, kind) for kind in _KINDS}
    out = {kind: dict(resources.get(kind) or {}) for kind in _KINDS}
    for name in _FOLLOWED:
        if not any(name in own[kind] for kind in _KINDS):
            continue
        for kind in _KINDS:
            value = own[kind].get(name)
            if value is None:
                out[kind].pop(name, None)
            else:
                out[kind][name] = value
    return {kind: values for kind, values in out.items() if values}


def _quantities(container: dict[str, Any], kind: str) -> dict[str, Any]:
    resources = container.get("resources")
    found = resources.get(kind) if isinstance(resources, dict) else None
    if not isinstance(found, dict):
        return {}
    return {
        name: value
        for name, value in found.items()
        if name in _FOLLOWED
        and isinstance(value, str | int | float)
        and not isinstance(value, bool)
    }
