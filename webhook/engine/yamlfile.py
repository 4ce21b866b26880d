"""YAML reading that remembers where things are, and cannot be made to stall.

PyYAML's safe loader forgets line numbers once it has built Python objects, and
silently keeps the last of two duplicate keys. Users of a policy or a manifest
deserve `file:line: what is wrong`, so this module builds plain Python values
from the node graph itself and returns, beside them, the line of every path
(`("spec", "rules", 0, "user") -> 14`). A key written twice in one mapping is
refused, or (for manifests, as kubectl reads them) kept with its last value and
recorded in `duplicates`; a key a merge (`<<: *anchor`) brings in and the
mapping writes again is an override, as YAML means it, never a duplicate.

The files it reads come from other people, so building is bounded (limits.py):
nesting past `MAX_NESTING`, an alias that refers to the node containing it,
and aliases that expand to more than `MAX_ALIAS_VALUES` values beyond what the
document writes out (a "billion laughs") are each one `YAMLFileError` with a
line, raised after a bounded amount of work.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import yaml

from webhook.engine import limits

Path = tuple[str | int, ...]


class YAMLFileError(ValueError):
    """A document that is not valid YAML; `line` is 1-based (0 when unknown)."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


class Duplicate(NamedTuple):
    """A key written twice in one mapping: the last value is kept."""

    key: str
    first_line: int
    line: int


@dataclass
class DocumentWithLines:
    """One YAML document: its value and the 1-based line of each path in it."""

    value: Any
    lines: dict[Path, int] = field(default_factory=dict)
    start_line: int = 1
    text: str = ""
    """The document's own text: its leading comments and content, no `---` marker
    (unless it has directives, which end with one)."""
    duplicates: list[Duplicate] = field(default_factory=list)
    """Keys written twice in one mapping, when read with `duplicates="last"`."""

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


def load_all(
    text: str, *, track_lines: bool = True, duplicates: Literal["refuse", "last"] = "refuse"
) -> Iterator[DocumentWithLines]:
    """Yield each document of `text` with its line map.

    With `track_lines=False` only each document's first line is recorded,
    which is cheaper for large manifests. Raises `YAMLFileError` on a syntax
    error or (with `duplicates="refuse"`) a duplicate key; the documents before
    the bad one have been yielded already. With `duplicates="last"` a key
    written twice keeps its last value, as sigs.k8s.io/yaml (kubectl) reads it,
    and is listed in the document's `duplicates`. An empty document has the
    value None.
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
            except yaml.reader.ReaderError as exc:
                line = text.count("\n", 0, exc.position) + 1
                raise YAMLFileError(
                    f"a control character (#x{exc.character:04x}) is not allowed in YAML", line
                ) from None
            except yaml.YAMLError as exc:
                raise YAMLFileError(str(exc).splitlines()[0], 0) from None
            if node is None:  # pragma: no cover - check_node() said there is one
                return
            doc = DocumentWithLines(None, start_line=node.start_mark.line + 1)
            walk = _Walk(loader, doc.lines if track_lines else None)
            if duplicates == "last":
                walk.duplicates = doc.duplicates
            doc.value = walk.build(node, (), 0)
            start, end = node.start_mark.index, node.end_mark.index
            doc.text = _leading_comments(text[previous_end:start]) + text[start:end]
            previous_end = end
            yield doc
    finally:
        loader.dispose()


def _leading_comments(between: str) -> str:
    """What stands between two documents, less the markers; a document's directives
    (`%TAG`, `%YAML`) are kept, followed by the `---` they need, so the text read
    alone reads the same."""
    lines = between.splitlines(keepends=True)
    directives = [
        line if line.endswith("\n") else line + "\n" for line in lines if line.startswith("%")
    ]
    kept = [line for line in lines if not line.startswith(("---", "...", "%"))]
    body = "".join(kept).lstrip("\n")
    return "".join(directives) + "---\n" + body if directives else body


def load_one(text: str) -> DocumentWithLines:
    """The single document of `text` (an empty text is a document whose value is None)."""
    docs = list(load_all(text))
    if len(docs) > 1:
        raise YAMLFileError("expected one YAML document, found several", docs[1].start_line)
    return docs[0] if docs else DocumentWithLines(None)


def _reason(exc: yaml.MarkedYAMLError) -> str:
    parts = [p for p in (exc.context, exc.problem) if p]
    return ", ".join(parts) if parts else "invalid YAML"


class _Walk:
    """Builds one document's values from its nodes, within the limits.

    NB: PyYAML's composer hands back the anchored node itself for an alias, so
    a collection met a second time is an alias use; everything built inside it
    is counted against the alias budget, and a collection met again while it
    is still being built is an alias to its own ancestor.
    """

    __slots__ = (
        "alias_depth",
        "aliased",
        "building",
        "duplicates",
        "lines",
        "loader",
        "seen",
        "written",
        "written_keys",
    )

    def __init__(self, loader: yaml.SafeLoader, lines: dict[Path, int] | None) -> None:
        self.loader = loader
        self.lines = lines
        self.seen: set[int] = set()
        self.building: set[int] = set()
        self.written = 0
        self.aliased = 0
        self.alias_depth = 0
        self.duplicates: list[Duplicate] | None = None
        self.written_keys: dict[int, set[int]] = {}
        """Where a key written twice is recorded (last value kept); None: refused."""

    def build(self, node: yaml.Node, path: Path, depth: int) -> Any:
        lines = self.lines
        if lines is not None:
            lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.ScalarNode):
            return _scalar(self.loader, node)
        key = id(node)
        if key in self.building:
            raise YAMLFileError(
                "an alias refers to the node that contains it", node.start_mark.line + 1
            )
        if depth >= limits.MAX_NESTING:
            raise YAMLFileError(
                f"nested deeper than {limits.MAX_NESTING} levels", node.start_mark.line + 1
            )
        alias = key in self.seen
        self.seen.add(key)
        self.alias_depth += alias
        if self.alias_depth:
            self.aliased += len(node.value)
            budget = max(limits.MAX_ALIAS_VALUES, self.written)
            if self.aliased > budget:
                raise YAMLFileError(
                    f"aliases expand to more than {budget:,}"
                    " values beyond those written out (an alias bomb?)",
                    node.start_mark.line + 1,
                )
        else:
            self.written += len(node.value)
        self.building.add(key)
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path, depth)
            return self._sequence(node, path, depth)
        finally:
            self.building.discard(key)
            self.alias_depth -= alias

    def _mapping(self, node: yaml.MappingNode, path: Path, depth: int) -> dict[Any, Any]:
        # NB: flattening rewrites the node in place; an alias meets it again flattened.
        written = self.written_keys.get(id(node))
        if written is None:
            written = {id(k) for k, _ in node.value if k.tag != _MERGE_TAG}
            self.written_keys[id(node)] = written
        try:
            self.loader.flatten_mapping(node)  # resolves `<<` merge keys, merged pairs first
        except yaml.MarkedYAMLError as exc:
            raise YAMLFileError(_reason(exc), node.start_mark.line + 1) from None
        out: dict[Any, Any] = {}
        lines: dict[Any, int] = {}  # the keys this mapping writes itself, and their lines
        track = self.lines is not None
        for key_node, value_node in node.value:
            key = _scalar(self.loader, key_node)
            if not isinstance(key, str):
                key = _json_key(key)
            if id(key_node) in written:
                line = key_node.start_mark.line + 1
                if key in lines:
                    if self.duplicates is None:
                        raise YAMLFileError(f"duplicate key {key!r}", line)
                    self.duplicates.append(Duplicate(str(key), lines[key], line))
                lines[key] = line
            child = (*path, str(key)) if track else path
            out[key] = self.build(value_node, child, depth + 1)
        return out

    def _sequence(self, node: yaml.Node, path: Path, depth: int) -> list[Any]:
        if self.lines is None:
            return [self.build(item, path, depth + 1) for item in node.value]
        return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]


_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_BINARY_TAG = "tag:yaml.org,2002:binary"
_TEXT_TAGS = frozenset({_STR_TAG, _TIMESTAMP_TAG})
INT64 = (-(2**63), 2**64 - 1)
"""The integers a Kubernetes object can hold (int64, and uint64 for a few fields)."""
PAST_INT64 = "an integer past 64 bits: no Kubernetes field holds one"


# Plain scalars PyYAML (YAML 1.1) reads as text that sigs.k8s.io/yaml (go-yaml v2, which
# kubectl, Helm and the apiserver use) reads as another type: `y`/`n` are booleans,
# `1e3` and `1.0e3` are numbers (PyYAML wants a dot and a signed exponent), `0o17` is 15.
_GO_FIRST = frozenset("yYnN+-.0123456789")
_GO_BOOLS = {"y": True, "Y": True, "n": False, "N": False}
_GO_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_GO_OCTAL = re.compile(r"^[-+]?0[oO]_?[0-7]+(_[0-7]+)*$")
_SEXAGESIMAL_TAGS = frozenset({"tag:yaml.org,2002:int", "tag:yaml.org,2002:float"})


def _as_go_reads(text: str) -> Any:
    """A plain scalar PyYAML resolved as text, as sigs.k8s.io/yaml resolves it."""
    if text in _GO_BOOLS:
        return _GO_BOOLS[text]
    if _GO_OCTAL.match(text):
        number = int(text.replace("_", ""), 0)
        return number if INT64[0] <= number <= INT64[1] else text
    if _GO_FLOAT.match(text):
        value = float(text)
        return _json_number(value) if math.isfinite(value) else text
    return text


def _json_key(key: Any) -> str:
    """A key that is not text, as sigs.k8s.io/yaml writes it in JSON: `y: 1` and
    `true: 1` are both `"true": 1`, `1: a` is `"1": a`, `~: a` is `"null": a`."""
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    return str(key)


def _json_number(value: float) -> float | int:
    """`value` as it comes back from JSON: Go writes 1000.0 as `1000`, an integer."""
    if value.is_integer() and INT64[0] <= value <= INT64[1]:
        return int(value)
    return value


def _scalar(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    """A scalar as Kubernetes reads YAML (sigs.k8s.io/yaml: YAML to JSON): every value
    has a JSON form. A timestamp stays its text, `!!binary` is its UTF-8 text, and what
    JSON cannot hold (an integer past 64 bits, `.nan`, `.inf`) is refused."""
    if not isinstance(node, yaml.ScalarNode):
        raise YAMLFileError("a mapping key must be a plain value", node.start_mark.line + 1)
    tag = node.tag
    if tag in _TEXT_TAGS:  # most scalars of a manifest
        value = node.value
        if tag == _STR_TAG and not node.style and value and value[0] in _GO_FIRST:
            return _as_go_reads(value)
        return value
    if not node.style and tag in _SEXAGESIMAL_TAGS and ":" in node.value:
        return node.value  # NB: `1:20` is 80 to YAML 1.1, the text itself to Kubernetes
    line = node.start_mark.line + 1
    try:
        construct = loader.yaml_constructors.get(tag)
        value = (
            construct(loader, node)
            if construct is not None
            else loader.construct_object(node, deep=True)
        )
    except yaml.MarkedYAMLError as exc:
        raise YAMLFileError(_reason(exc), line) from None
    except ValueError:  # NB: int() of more digits than Python converts
        raise YAMLFileError(PAST_INT64, line) from None
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise YAMLFileError("!!binary that is not UTF-8 text has no JSON form", line) from None
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        if not INT64[0] <= value <= INT64[1]:
            raise YAMLFileError(PAST_INT64, line)
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise YAMLFileError(f"{node.value!r} (not a finite number) has no JSON form", line)
        return _json_number(value)
    raise YAMLFileError(f"a value tagged {tag} has no JSON form", line)
