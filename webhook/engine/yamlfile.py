"""YAML reading that remembers where things are.

PyYAML's safe loader forgets line numbers once it has built Python objects, and
silently keeps the last of two duplicate keys. Users of a policy or a manifest
deserve `file:line: what is wrong`, so this module builds plain Python values
from the node graph itself and returns, beside them, the line of every path
(`("spec", "rules", 0, "user") -> 14`). Duplicate keys are refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

Path = tuple[str | int, ...]


class YAMLFileError(ValueError):
    """A document that is not valid YAML; `line` is 1-based (0 when unknown)."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


@dataclass
class DocumentWithLines:
    """One YAML document: its value and the 1-based line of each path in it."""

    value: Any
    lines: dict[Path, int] = field(default_factory=dict)
    start_line: int = 1
    text: str = ""
    """The document's own text: its leading comments and content, no `---` marker."""

    def line_of(self, path: Path) -> int:
        """The line of `path`, or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return self.start_line


# libyaml's parser when PyYAML was built with it (the wheels are): the same
# nodes and marks, several times faster on large manifests.
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_all(text: str, *, track_lines: bool = True) -> Iterator[DocumentWithLines]:
    """Yield each document of `text` with its line map.

    With `track_lines=False` only each document's first line is recorded,
    which is cheaper for large manifests. Raises `YAMLFileError` on a syntax
    error or a duplicate key; the documents before the bad one have been
    yielded already. An empty document has the value None.
    """
    loader = _Loader(text)
    previous_end = 0
    try:
        while True:
            try:
                if not loader.check_node():
                    return
                node = loader.get_node()
            except yaml.MarkedYAMLError as exc:
                mark = exc.problem_mark or exc.context_mark
                line = mark.line + 1 if mark is not None else 0
                raise YAMLFileError(_reason(exc), line) from None
            except yaml.YAMLError as exc:
                raise YAMLFileError(str(exc).splitlines()[0], 0) from None
            if node is None:  # pragma: no cover - check_node() said there is one
                return
            doc = DocumentWithLines(None, start_line=node.start_mark.line + 1)
            doc.value = _build(loader, node, (), doc.lines if track_lines else None)
            start, end = node.start_mark.index, node.end_mark.index
            doc.text = _leading_comments(text[previous_end:start]) + text[start:end]
            previous_end = end
            yield doc
    finally:
        loader.dispose()


def _leading_comments(between: str) -> str:
    """What stands between two documents, less the markers and directives."""
    kept = [
        line
        for line in between.splitlines(keepends=True)
        if not line.startswith(("---", "...", "%"))
    ]
    return "".join(kept).lstrip("\n")


def load_one(text: str) -> DocumentWithLines:
    """The single document of `text` (an empty text is a document whose value is None)."""
    docs = list(load_all(text))
    if len(docs) > 1:
        raise YAMLFileError("expected one YAML document, found several", docs[1].start_line)
    return docs[0] if docs else DocumentWithLines(None)


def _reason(exc: yaml.MarkedYAMLError) -> str:
    parts = [p for p in (exc.context, exc.problem) if p]
    return ", ".join(parts) if parts else "invalid YAML"


def _build(
    loader: yaml.SafeLoader, node: yaml.Node, path: Path, lines: dict[Path, int] | None
) -> Any:
    if lines is not None:
        lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        try:
            loader.flatten_mapping(node)  # resolves `<<` merge keys
        except yaml.MarkedYAMLError as exc:
            raise YAMLFileError(_reason(exc), node.start_mark.line + 1) from None
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(loader, key_node)
            if key in out:
                raise YAMLFileError(f"duplicate key {key!r}", key_node.start_mark.line + 1)
            child = (*path, str(key)) if lines is not None else path
            out[key] = _build(loader, value_node, child, lines)
        return out
    if isinstance(node, yaml.SequenceNode):
        if lines is None:
            return [_build(loader, item, path, None) for item in node.value]
        return [_build(loader, item, (*path, i), lines) for i, item in enumerate(node.value)]
    return _scalar(loader, node)


_STR_TAG = "tag:yaml.org,2002:str"


def _scalar(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        raise YAMLFileError("a mapping key must be a plain value", node.start_mark.line + 1)
    if node.tag == _STR_TAG:  # most scalars of a manifest; skip the generic machinery
        return node.value
    try:
        construct = loader.yaml_constructors.get(node.tag)
        if construct is not None:
            return construct(loader, node)
        return loader.construct_object(node, deep=True)
    except yaml.MarkedYAMLError as exc:
        raise YAMLFileError(_reason(exc), node.start_mark.line + 1) from None
