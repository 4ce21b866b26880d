"""Reading manifests for `review`: files, directories and standard input.

Each input yields `Document`s (value, file, first line) in order. YAML files
may hold many documents; JSON files one value or a stream of them. A syntax
error ends that file with an `InputProblem` naming `file:line`; the files and
documents before it are still reviewed.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from webhook import files
from webhook.engine import limits, yamlfile
from webhook.engine.errors import UsageError
from webhook.files import InputError

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class Document:
    """One parsed document and where it came from."""

    value: Any
    source: str
    line: int
    text: str = ""
    """The document's YAML text, to print it verbatim when nothing changes it."""
    warnings: tuple[str, ...] = ()
    """What was read but is worth a word (`file:line: warning: ...`): keys written twice."""


@dataclass(frozen=True)
class InputProblem:
    """A part of an input that could not be read: `source:line: message`."""

    source: str
    line: int
    message: str

    def __str__(self) -> str:
        return (
            f"{self.source}:{self.line}: {self.message}"
            if self.line
            else (f"{self.source}: {self.message}")
        )


def expand(paths: list[str], *, recursive: bool = False) -> tuple[list[str], list[str]]:
    """The files to read for `-f` arguments, and notes on what was left out.

    A directory means its manifests, sorted; with `recursive`, those of its
    subdirectories too, walked in order (as `kubectl -R`, without following
    symlinked directories); without it, a directory that has subdirectories
    gets one note saying they were not read. Raises `UsageError` for a path
    that does not exist or a directory with no manifests.
    """
    selected: list[str] = []
    notes: list[str] = []
    for raw in paths:
        if raw == "-":
            selected.append(raw)
            continue
        path = Path(raw)
        if path.is_dir():
            found, skipped = _manifests_in(path, recursive=recursive)
            if not found:
                where = "this directory" + (" or below it" if recursive else "")
                raise UsageError(f"{raw}: no *.yaml, *.yml or *.json files in {where}")
            if skipped:
                notes.append(
                    f"{raw}: {skipped} subdirector{'y' if skipped == 1 else 'ies'} not read"
                    " (-R reads them)"
                )
            selected.extend(found)
        elif path.exists() or path.is_symlink():  # a broken link or a loop: the reader says which
            selected.append(raw)
        else:
            raise UsageError(f"{raw}: no such file or directory")
    return selected, notes


def _manifests_in(directory: Path, *, recursive: bool) -> tuple[list[str], int]:
    """The manifest files in `directory` (and below, if `recursive`), and how many
    subdirectories were left unread."""
    found: list[str] = []
    for root, dirnames, filenames in os.walk(directory):
        dirnames.sort()
        found += [
            os.path.join(root, name)
            for name in sorted(filenames)
            if Path(name).suffix in MANIFEST_SUFFIXES and os.path.isfile(os.path.join(root, name))
        ]
        if not recursive:
            return found, len(dirnames)
    return found, 0


def read(source: str) -> Iterator[Document | InputProblem]:
    """The documents of one file (or `-`), then an `InputProblem` if it goes bad."""
    name = files.STDIN if source == "-" else source
    limit, what = files.MAX_MANIFEST_BYTES, "manifest input"
    try:
        if source == "-":
            raw = files.read_stream(sys.stdin.buffer, name=name, limit=limit, what=what)
        else:
            raw = files.read_regular(source, limit=limit, what=what)
        text = files.decode_text(raw, name)
    except InputError as exc:
        yield InputProblem(exc.source, exc.line, exc.reason)
        return
    if name.endswith(".json") or text.lstrip().startswith(("{", "[")):
        yield from _json_documents(text, name)
    else:
        yield from _yaml_documents(text, name)


def _yaml_documents(text: str, name: str) -> Iterator[Document | InputProblem]:
    try:
        for doc in yamlfile.load_all(text, track_lines=False, duplicates="last"):
            if doc.value is not None:
                warnings = tuple(
                    f"{name}:{d.line}: warning: duplicate key {d.key!r} (also on line"
                    f" {d.first_line}): the last value is used, as kubectl reads it"
                    for d in doc.duplicates
                )
                yield Document(doc.value, name, doc.start_line, doc.text, warnings)
    except yamlfile.YAMLFileError as exc:
        yield InputProblem(name, exc.line, f"invalid YAML: {exc.message}")


def _json_documents(text: str, name: str) -> Iterator[Document | InputProblem]:
    """JSON values one after another, read as kube-apiserver's decoder (and `/mutate`)
    would: no `NaN`/`Infinity`, no integer past 64 bits, no lone UTF-16 surrogate,
    nesting within `MAX_NESTING`."""
    decoder = json.JSONDecoder(
        parse_constant=_no_constant, parse_int=_int64, parse_float=_finite_float
    )
    position = 0
    while True:
        while position < len(text) and text[position] in " \t\r\n":
            position += 1
        if position >= len(text):
            return
        line = text.count("\n", 0, position) + 1
        try:
            value, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            yield InputProblem(name, exc.lineno, f"invalid JSON: {exc.msg}")
            return
        except RecursionError:
            yield InputProblem(name, line, f"nested deeper than {limits.MAX_NESTING} levels")
            return
        except ValueError as exc:
            yield InputProblem(name, line, f"invalid JSON: {exc}")
            return
        problem = _json_problem(value)
        if problem is not None:
            yield InputProblem(name, line, problem)
            return
        yield Document(value, name, line)


def _no_constant(word: str) -> Any:
    raise ValueError(f"{word} has no place in JSON (kube-apiserver refuses it)")


def _int64(digits: str) -> int:
    # NB: only the length is looked at before int(): Python refuses to convert more
    # than 4,300 digits, and no Kubernetes field holds more than 20.
    value = int(digits) if len(digits) <= 21 else None
    if value is None or not yamlfile.INT64[0] <= value <= yamlfile.INT64[1]:
        raise ValueError(yamlfile.PAST_INT64)
    return value


def _finite_float(digits: str) -> float:
    value = float(digits)
    if not math.isfinite(value):
        raise ValueError(f"{digits[:20]}... is beyond the range of a number")
    return value


def _json_problem(value: Any) -> str | None:
    """Nesting past the limit or a string that is not Unicode, walked without recursion."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = [*item.keys(), *item.values()]
        elif isinstance(item, list):
            children = item
        else:
            if isinstance(item, str) and not _is_unicode(item):
                return "a string holds a lone UTF-16 surrogate (such as \\ud800): not Unicode"
            continue
        if depth >= limits.MAX_NESTING:
            return f"nested deeper than {limits.MAX_NESTING} levels"
        stack.extend((child, depth + 1) for child in children)
    return None


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
