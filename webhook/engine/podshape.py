"""Checks that a pod has the shape the mutation reads, before it reads it.

kube-apiserver only ever sends well-typed pods, but the webhook's port is
reachable by anything in the cluster and `review` reads any file, so every
field the mutation touches is checked here first. The mutation can then index
freely without a crash, and a bad object gets a one-line reason naming the
field (`spec.containers[1].volumeMounts[0].mountPath: expected a string`).
Only the fields the mutation reads are checked; the rest of the pod is passed
through untouched and unseen, as kube-apiserver will validate it anyway.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from webhook.engine.errors import InvalidObject

_CONTAINER_SC_INTS = ("runAsUser", "runAsGroup")
_POD_SC_INTS = ("runAsUser", "runAsGroup", "fsGroup")
_MAX_ID = 2_147_483_647  # kube-apiserver's bound on UIDs and GIDs (int32)
CONTAINER_KINDS = ("containers", "initContainers", "ephemeralContainers")
"""Every kind of container a pod has; kube-apiserver wants names unique across all."""


def check_pod(pod: Any) -> None:
    """Raise `InvalidObject` unless `pod` can be read by the mutation.

    NB: each check takes the path of the mapping it looks into and builds the
    field's path only for its message: a pod is read on every admission, and
    almost every pod is well formed.
    """
    if not isinstance(pod, dict):
        raise InvalidObject(f"object: expected a mapping, got {_kind(pod)}")
    metadata = _optional(pod, "metadata", dict, "")
    if metadata is not None:
        for field in ("name", "generateName", "namespace"):
            _optional(metadata, field, str, "metadata")
        for field in ("labels", "annotations"):
            _string_map(metadata, field, "metadata")
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        raise InvalidObject(f"spec: expected a mapping, got {_kind(spec)}")
    os_ = _optional(spec, "os", dict, "spec")
    if os_ is not None:
        _optional(os_, "name", str, "spec.os")
    _string_map(spec, "nodeSelector", "spec")
    _node_affinity(spec)
    security = _optional(spec, "securityContext", dict, "spec")
    if security is not None:
        _ints(security, _POD_SC_INTS, "spec.securityContext")
        _optional(security, "runAsNonRoot", bool, "spec.securityContext")
        _optional(security, "fsGroupChangePolicy", str, "spec.securityContext")
    for field in CONTAINER_KINDS:
        for container, where in _mappings(spec, field, "spec"):
            _container(container, where)
    for volume, where in _mappings(spec, "volumes", "spec"):
        _required(volume, "name", str, where)
        host_path = _optional(volume, "hostPath", dict, where)
        if host_path is not None:
            _required(host_path, "path", str, f"{where}.hostPath")
        for source, value in volume.items():
            if source == "name" or value is None:
                continue
            if not isinstance(value, dict):
                raise InvalidObject(f"{where}.{source}: expected a mapping, got {_kind(value)}")
            _optional(value, "readOnly", bool, f"{where}.{source}")


def required_node_terms(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """`spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms`."""
    affinity = (spec.get("affinity") or {}).get("nodeAffinity") or {}
    required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    terms: list[dict[str, Any]] = required.get("nodeSelectorTerms") or []
    return terms


def _node_affinity(spec: dict[str, Any]) -> None:
    affinity = _optional(spec, "affinity", dict, "spec")
    if affinity is None:
        return
    node = _optional(affinity, "nodeAffinity", dict, "spec.affinity")
    where = "spec.affinity.nodeAffinity"
    key = "requiredDuringSchedulingIgnoredDuringExecution"
    required = _optional(node or {}, key, dict, where)
    for term, at in _mappings(required or {}, "nodeSelectorTerms", f"{where}.{key}"):
        for expression, ex in _mappings(term, "matchExpressions", at):
            _optional(expression, "key", str, ex)
            _optional(expression, "operator", str, ex)
            values = _optional(expression, "values", list, ex)
            for k, value in enumerate(values or ()):
                if not isinstance(value, str):
                    raise InvalidObject(f"{ex}.values[{k}]: expected a string, got {_kind(value)}")


def _container(container: dict[str, Any], where: str) -> None:
    _optional(container, "name", str, where)
    _optional(container, "image", str, where)
    for mount, at in _mappings(container, "volumeMounts", where):
        _required(mount, "name", str, at)
        _required(mount, "mountPath", str, at)
        _optional(mount, "subPath", str, at)
        _optional(mount, "subPathExpr", str, at)
        _optional(mount, "readOnly", bool, at)
    security = _optional(container, "securityContext", dict, where)
    if security is not None:
        _ints(security, _CONTAINER_SC_INTS, f"{where}.securityContext")
        _optional(security, "runAsNonRoot", bool, f"{where}.securityContext")


def check_env(container: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """A container's `env`, checked; read only when a `subPathExpr` needs it.

    NB: not part of `check_pod`: Dify pods carry about seventy variables, and
    checking them on every admission would cost more than the admission.
    """
    for var, at in _mappings(container, "env", where):
        _optional(var, "name", str, at)
        _optional(var, "value", str, at)
        _optional(var, "valueFrom", dict, at)
    env: list[dict[str, Any]] = container.get("env") or []
    return env


def _mappings(parent: dict[str, Any], key: str, where: str) -> Iterator[tuple[dict[str, Any], str]]:
    """Each entry of the list `parent[key]` (absent: none), which must be a mapping,
    with its path for messages; `where` is the path of `parent`."""
    for i, item in enumerate(_optional(parent, key, list, where) or ()):
        at = f"{_field(where, key)}[{i}]"
        if not isinstance(item, dict):
            raise InvalidObject(f"{at}: expected a mapping, got {_kind(item)}")
        yield item, at


def _field(where: str, key: str) -> str:
    """The path of member `key` of the mapping at `where` (`""`: the object)."""
    return f"{where}.{key}" if where else key


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a non-integer number",
    }.get(type(value), type(value).__name__)


def _optional(parent: dict[str, Any], key: str, expected: type, where: str) -> Any:
    """`parent[key]`, None when absent or null; `where` is the path of `parent`."""
    value = parent.get(key)
    if value is None:
        return None
    if type(value) is not expected:
        raise InvalidObject(
            f"{_field(where, key)}: expected {_kind(expected())}, got {_kind(value)}"
        )
    return value


def _required(parent: dict[str, Any], key: str, expected: type, where: str) -> Any:
    value = _optional(parent, key, expected, where)
    if value is None:
        raise InvalidObject(f"{_field(where, key)}: required field is missing")
    return value


def _string_map(parent: dict[str, Any], key: str, where: str) -> None:
    mapping = _optional(parent, key, dict, where)
    for name, value in (mapping or {}).items():
        if not isinstance(value, str):
            raise InvalidObject(
                f"{_field(where, key)}[{name!r}]: expected a string, got {_kind(value)}"
            )


def _ints(parent: dict[str, Any], keys: tuple[str, ...], where: str) -> None:
    for key in keys:
        value = _optional(parent, key, int, where)
        if value is not None and not 0 <= value <= _MAX_ID:
            raise InvalidObject(f"{_field(where, key)}: expected an integer from 0 to {_MAX_ID}")
