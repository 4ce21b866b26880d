"""Reading manifests for `review`: files, directories and standard input.

Each input yields `Document`s (value, file, first line) in order. YAML files
may hold many documents; JSON files one value or a stream of them. A syntax
error ends that file with an `InputProblem` naming `file:line`; the files and
documents before it are still reviewed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from webhook import files
from webhook.engine import limits, yamlfile
from webhook.engine.errors import InputError, UsageError

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class Document:
    """One parsed document and where it came from."""

    value: Any
    source: str
    line: int
    text: str = ""
    """The document's YAML text, to print it verbatim when nothing changes it."""


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


def expand(paths: list[str]) -> list[str]:
    """The files to read for `-f` arguments: a directory means its manifests, sorted.

    Raises `UsageError` for a path that does not exist or a directory with no
    manifests.
    """
    selected: list[str] = []
    for raw in paths:
        if raw == "-":
            selected.append(raw)
            continue
        path = Path(raw)
        if path.is_dir():
            found = sorted(
                str(p) for p in path.iterdir() if p.is_file() and p.suffix in MANIFEST_SUFFIXES
            )
            if not found:
                raise UsageError(f"{raw}: no *.yaml, *.yml or *.json files in this directory")
            selected.extend(found)
        elif path.exists() or path.is_symlink():  # a broken link or a loop: the reader says which
            selected.append(raw)
        else:
            raise UsageError(f"{raw}: no such file or directory")
    return selected


def read(source: str) -> Iterator[Document | InputProblem]:
    """The documents of one file (or `-`), then an `InputProblem` if it goes bad."""
    name = "<stdin>" if source == "-" else source
    limit, what = limits.MAX_MANIFEST_BYTES, "manifest input"
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
        for doc in yamlfile.load_all(text, track_lines=False):
            if doc.value is not None:
                yield Document(doc.value, name, doc.start_line, doc.text)
    except yamlfile.YAMLFileError as exc:
        yield InputProblem(name, exc.line, f"invalid YAML: {exc.message}")


def _json_documents(text: str, name: str) -> Iterator[Document | InputProblem]:
    decoder = json.JSONDecoder()
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
            yield InputProblem(name, line, "invalid JSON: nested too deeply")
            return
        except ValueError as exc:
            yield InputProblem(name, line, f"invalid JSON: {exc}")
            return
        yield Document(value, name, line)
