"""What an init container needs to expand a `subPathExpr` exactly as the app container does.

The kubelet expands `$(VAR)` in a `subPathExpr` from the container's own
environment: its `envFrom` sources first, then its `env` entries in order,
each entry's `value` itself expanded from the entries before it (and the
service variables every container gets). So the injected init container must
carry the container's whole `envFrom` and every `env` entry the expression
depends on, directly or through other entries, in their original order. An
entry whose value the init container would resolve differently (a
`resourceFieldRef` without `containerName` names the container it is in; a
`fileKeyRef` reads a file an init container may not have written yet; any
source this module does not know) makes the expression unreproducible.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from webhook.engine import limits

# Kubernetes' expansion syntax (third_party/forked/golang/expansion): `$(NAME)`.
# `$$(NAME)` is an escaped literal; counting it as a reference only copies an
# entry more, which changes no value.
_REFERENCE = re.compile(r"\$\(([^)]*)\)")
# valueFrom sources that resolve to the same value in every container of a pod.
_POD_WIDE_SOURCES = frozenset({"fieldRef", "configMapKeyRef", "secretKeyRef"})


@dataclass(frozen=True)
class Requirement:
    """The environment an init container needs for one container's expressions."""

    container: str
    env_from: tuple[Any, ...]
    env: tuple[dict[str, Any], ...]


class Unreproducible(Exception):
    """The expression cannot be expanded the same way in another container."""


def references(text: str) -> set[str]:
    """The variable names `$(NAME)` in `text`."""
    return set(_REFERENCE.findall(text))


def requirement(
    container: dict[str, Any], env: list[dict[str, Any]], expressions: list[str], *, name: str
) -> Requirement:
    """The `envFrom` and `env` entries that expanding `expressions` depends on.

    Linear in the size of `env`: each name is followed once. Raises
    `Unreproducible` naming the variable whose value another container would
    see differently.
    """
    by_name: dict[str, list[dict[str, Any]]] = {}
    for var in env:
        by_name.setdefault(var.get("name") or "", []).append(var)
    needed: set[str] = set()
    pending = [n for text in expressions for n in references(text)]
    while pending:
        var_name = pending.pop()
        if var_name in needed:
            continue
        needed.add(var_name)
        if len(needed) > limits.MAX_COPIED_ENV:
            raise _too_many(name)
        for var in by_name.get(var_name, ()):
            _check_source(var, name)
            value = var.get("value")
            if isinstance(value, str):
                pending.extend(references(value) - needed)
    env_from = container.get("envFrom") or []
    if not isinstance(env_from, list):
        raise Unreproducible(f"container {name}: envFrom is not a list")
    for source in env_from:
        if not isinstance(source, dict) or set(source) - {"prefix", "configMapRef", "secretRef"}:
            raise Unreproducible(f"container {name}: an envFrom source of an unknown kind")
    copied = tuple(var for var in env if (var.get("name") or "") in needed)
    if len(copied) > limits.MAX_COPIED_ENV:
        raise _too_many(name)
    return Requirement(name, tuple(env_from), copied)


def _too_many(container: str) -> Unreproducible:
    return Unreproducible(
        f"container {container}: the subPathExpr depends on more than"
        f" {limits.MAX_COPIED_ENV} env entries, the most the webhook copies"
    )


def _check_source(var: dict[str, Any], container: str) -> None:
    value_from = var.get("valueFrom")
    if value_from is None:
        return
    if not isinstance(value_from, dict):
        raise Unreproducible(f"container {container}: env {var.get('name')}: valueFrom is odd")
    for source, spec in value_from.items():
        if spec is None or source in _POD_WIDE_SOURCES:
            continue
        if source == "resourceFieldRef" and isinstance(spec, dict) and spec.get("containerName"):
            continue
        raise Unreproducible(
            f"container {container}: env {var.get('name')} comes from {source}, which the"
            " init container would resolve differently"
        )


def merge(requirements: list[Requirement]) -> tuple[list[Any], list[dict[str, Any]]]:
    """One init container's `envFrom` and `env` serving every requirement.

    Raises `Unreproducible` when two containers' expressions need different
    values under one name, or different `envFrom` lists.
    """
    if not requirements:
        return [], []
    first = requirements[0]
    env = list(first.env)
    defined: dict[str, tuple[str, list[dict[str, Any]]]] = {}
    for var in first.env:
        defined.setdefault(var.get("name") or "", (first.container, []))[1].append(var)
    for other in requirements[1:]:
        if other.env_from != first.env_from:
            raise Unreproducible(
                f"containers {first.container} and {other.container} have different envFrom"
            )
        mine: dict[str, list[dict[str, Any]]] = {}
        for var in other.env:
            mine.setdefault(var.get("name") or "", []).append(var)
        for var_name, entries in mine.items():
            owner = defined.get(var_name)
            if owner is not None and owner[1] != entries:
                raise Unreproducible(
                    f"containers {owner[0]} and {other.container} define {var_name} differently"
                )
        # NB: in the container's own order: an entry may refer to one before it.
        env.extend(var for var in other.env if (var.get("name") or "") not in defined)
        for var_name, entries in mine.items():
            defined.setdefault(var_name, (other.container, entries))
    return list(first.env_from), env
