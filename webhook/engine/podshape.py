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
    """Raise `InvalidObject` unless `pod` can be read by the mutation."""
    if not isinstance(pod, dict):
        raise InvalidObject(f"object: expected a mapping, got {_kind(pod)}")
    metadata = _optional(pod, "metadata", dict, "metadata")
    if metadata is not None:
        for field in ("name", "generateName", "namespace"):
            _optional(metadata, field, str, f"metadata.{field}")
        for field in ("labels", "annotations"):
            _string_map(metadata, field, f"metadata.{field}")
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        raise InvalidObject(f"spec: expected a mapping, got {_kind(spec)}")
    os_ = _optional(spec, "os", dict, "spec.os")
    if os_ is not None:
        _optional(os_, "name", str, "spec.os.name")
    _string_map(spec, "nodeSelector", "spec.nodeSelector")
    _node_affinity(spec)
    security = _optional(spec, "securityContext", dict, "spec.securityContext")
    if security is not None:
        _ints(security, _POD_SC_INTS, "spec.securityContext")
        _optional(security, "runAsNonRoot", bool, "spec.securityContext.runAsNonRoot")
        _optional(security, "fsGroupChangePolicy", str, "spec.securityContext.fsGroupChangePolicy")
    for field in CONTAINER_KINDS:
        for container, where in _mappings(spec, field, f"spec.{field}"):
            _container(container, where)
    for volume, where in _mappings(spec, "volumes", "spec.volumes"):
        _required(volume, "name", str, f"{where}.name")
        host_path = _optional(volume, "hostPath", dict, f"{where}.hostPath")
        if host_path is not None:
            _required(host_path, "path", str, f"{where}.hostPath.path")
        for source, value in volume.items():
            if source == "name" or value is None:
                continue
            if not isinstance(value, dict):
                raise InvalidObject(f"{where}.{source}: expected a mapping, got {_kind(value)}")
            _optional(value, "readOnly", bool, f"{where}.{source}.readOnly")


def required_node_terms(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """`spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms`."""
    affinity = (spec.get("affinity") or {}).get("nodeAffinity") or {}
    required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    terms: list[dict[str, Any]] = required.get("nodeSelectorTerms") or []
    return terms


def _node_affinity(spec: dict[str, Any]) -> None:
    where = "spec.affinity"
    affinity = _optional(spec, "affinity", dict, where)
    if affinity is None:
        return
    node = _optional(affinity, "nodeAffinity", dict, f"{where}.nodeAffinity")
    where += ".nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
    required = _optional(node or {}, "requiredDuringSchedulingIgnoredDuringExecution", dict, where)
    for term, at in _mappings(required or {}, "nodeSelectorTerms", f"{where}.nodeSelectorTerms"):
        for expression, ex in _mappings(term, "matchExpressions", f"{at}.matchExpressions"):
            _optional(expression, "key", str, f"{ex}.key")
            _optional(expression, "operator", str, f"{ex}.operator")
            values = _optional(expression, "values", list, f"{ex}.values")
            for k, value in enumerate(values or ()):
                if not isinstance(value, str):
                    raise InvalidObject(f"{ex}.values[{k}]: expected a string, got {_kind(value)}")


def _container(container: dict[str, Any], where: str) -> None:
    _optional(container, "name", str, f"{where}.name")
    _optional(container, "image", str, f"{where}.image")
    for mount, at in _mappings(container, "volumeMounts", f"{where}.volumeMounts"):
        _required(mount, "name", str, f"{at}.name")
        _required(mount, "mountPath", str, f"{at}.mountPath")
        _optional(mount, "subPath", str, f"{at}.subPath")
        _optional(mount, "subPathExpr", str, f"{at}.subPathExpr")
        _optional(mount, "readOnly", bool, f"{at}.readOnly")
    security = _optional(container, "securityContext", dict, f"{where}.securityContext")
    if security is not None:
        _ints(security, _CONTAINER_SC_INTS, f"{where}.securityContext")
        _optional(security, "runAsNonRoot", bool, f"{where}.securityContext.runAsNonRoot")


def check_env(container: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """A container's `env`, checked; read only when a `subPathExpr` needs it.

    NB: not part of `check_pod`: Dify pods carry about seventy variables, and
    checking them on every admission would cost more than the admission.
    """
    for var, at in _mappings(container, "env", f"{where}.env"):
        _optional(var, "name", str, f"{at}.name")
        _optional(var, "value", str, f"{at}.value")
        _optional(var, "valueFrom", dict, f"{at}.valueFrom")
    env: list[dict[str, Any]] = container.get("env") or []
    return env


def _mappings(parent: dict[str, Any], key: str, where: str) -> Iterator[tuple[dict[str, Any], str]]:
    """Each entry of the list `parent[key]` (absent: none), which must be a mapping,
    with its path for messages."""
    for i, item in enumerate(_optional(parent, key, list, where) or ()):
        at = f"{where}[{i}]"
        if not isinstance(item, dict):
            raise InvalidObject(f"{at}: expected a mapping, got {_kind(item)}")
        yield item, at


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
    value = parent.get(key)
    if value is None:
        return None
    if type(value) is not expected:
        raise InvalidObject(f"{where}: expected {_kind(expected())}, got {_kind(value)}")
    return value


def _required(parent: dict[str, Any], key: str, expected: type, where: str) -> Any:
    value = _optional(parent, key, expected, where)
    if value is None:
        raise InvalidObject(f"{where}: required field is missing")
    return value


def _string_map(parent: dict[str, Any], key: str, where: str) -> None:
    mapping = _optional(parent, key, dict, where)
    for name, value in (mapping or {}).items():
        if not isinstance(value, str):
            raise InvalidObject(f"{where}[{name!r}]: expected a string, got {_kind(value)}")


def _ints(parent: dict[str, Any], keys: tuple[str, ...], where: str) -> None:
    for key in keys:
        value = _optional(parent, key, int, f"{where}.{key}")
        if value is not None and not 0 <= value <= _MAX_ID:
            raise InvalidObject(f"{where}.{key}: expected an integer from 0 to {_MAX_ID}")
