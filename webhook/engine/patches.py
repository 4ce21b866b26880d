"""JSON Patch (RFC 6902) operations recorded while a pod is changed.

The webhook never diffs documents. The mutation works on a `PatchBuilder`,
which changes a copy-on-write view of the request's pod and records, for each
change, the one `add` operation that makes it on the original: a mapping or
array that is absent is added whole, an array that exists is inserted into,
and keys are escaped per RFC 6901 (`~` -> `~0`, `/` -> `~1`). Nothing is ever
replaced or removed, so the patch applies cleanly with kube-apiserver's
evanphx/json-patch and touches nothing outside the injected parts. The original
pod is never modified; only the containers on the path of a change are
copied, so a pod with a large `managedFields` costs no more than a small one.
"""

from __future__ import annotations

import functools
from typing import Any

Operation = dict[str, Any]
Key = str | int


@functools.lru_cache(maxsize=1024)
def escape(key: Key) -> str:
    """One JSON Pointer reference token (RFC 6901 §3)."""
    return str(key).replace("~", "~0").replace("/", "~1")


@functools.lru_cache(maxsize=1024)
def pointer(path: tuple[Key, ...]) -> str:
    """The JSON Pointer of `path` (`()` is the whole document, `""`).

    NB: cached because the webhook's paths repeat from pod to pod
    (`/spec/containers/0/securityContext`)."""
    return "".join("/" + escape(part) for part in path)


class PatchBuilder:
    """Apply `add`-only changes to a copy of `document` and record them as a patch."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.result: dict[str, Any] = dict(document)
        self._copied: set[int] = {id(self.result)}
        self.operations: list[Operation] = []

    def get(self, path: tuple[Key, ...]) -> Any:
        """The value at `path` in the result, or None where any part is absent."""
        node: Any = self.result
        for part in path:
            node = _child(node, part)
            if node is None:
                return None
        return node

    def _walk(self, path: tuple[Key, ...]) -> tuple[Any, int]:
        """The deepest mapping or array along `path` in the result, and how many parts
        of `path` lead to it."""
        node: Any = self.result
        depth = 0
        for part in path:
            child = _child(node, part)
            if type(child) is not dict and type(child) is not list:
                break
            node = child
            depth += 1
        return node, depth

    def set_default(
        self, path: tuple[Key, ...], key: str, value: Any, *, overwrite: bool = False
    ) -> bool:
        """Make `path[key]` equal `value` unless it is already set (not null).

        Mappings missing along `path` are created, and the whole missing
        subtree is added by a single operation. With `overwrite`, an existing
        value is replaced too (still an `add`: RFC 6902 §4.1 defines `add` on
        an existing member as replacing it). Returns True when it changed
        something.
        """
        node, depth = self._walk(path)
        if depth == len(path):
            if not overwrite and type(node) is dict and node.get(key) is not None:
                return False
        elif any(type(part) is int for part in path[depth:]):
            raise ValueError(f"cannot create array entries along {pointer(path)}")
        first_key, *rest = (*path[depth:], key)
        subtree: Any = value
        for part in reversed(rest):
            subtree = {part: subtree}
        assert isinstance(first_key, str)
        self._record(path[:depth], first_key, subtree)
        return True

    def set_defaults(self, path: tuple[Key, ...], values: dict[str, Any]) -> None:
        """`set_default` for each item; one operation when the mapping is absent."""
        mapping = self.get(path)
        if not isinstance(mapping, dict):
            missing = {k: v for k, v in values.items() if v is not None}
            if missing and path:
                *parent, key = path
                assert isinstance(key, str)
                self.set_default(tuple(parent), key, missing)
            return
        missing = {k: v for k, v in values.items() if mapping.get(k) is None}
        if not missing:
            return
        for key, value in missing.items():
            self._record(path, key, value)

    def insert(self, path: tuple[Key, ...], index: int, value: Any) -> None:
        """Insert `value` at `index` of the array at `path`; add the array when absent."""
        current = self.get(path)
        if isinstance(current, list):
            array = self._writable(path)
            assert isinstance(array, list)
            position = min(index, len(array))
            array.insert(position, value)
            self.operations.append(
                {"op": "add", "path": pointer((*path, position)), "value": value}
            )
            return
        *parent_path, key = path
        assert isinstance(key, str)
        self.set_default(tuple(parent_path), key, [value])

    def _writable(self, path: tuple[Key, ...]) -> Any:
        """The container at `path` in the result, copied first if still shared."""
        node: Any = self.result
        for part in path:
            child = node[part]
            if id(child) not in self._copied:
                child = dict(child) if isinstance(child, dict) else list(child)
                self._copied.add(id(child))
                node[part] = child
            node = child
        return node

    def _record(self, path: tuple[Key, ...], key: str, value: Any) -> None:
        """Set member `key` of the existing mapping at `path` and record the `add`."""
        self._writable(path)[key] = value
        self.operations.append({"op": "add", "path": pointer((*path, key)), "value": value})


def _child(node: Any, part: Key) -> Any:
    """`node[part]` when `node` is a mapping (and `part` a key) or an array (and `part`
    an index in range), else None."""
    if type(node) is dict and type(part) is str:
        return node.get(part)
    if type(node) is list and type(part) is int and 0 <= part < len(node):
        return node[part]
    return None
