"""A block-style YAML emitter for JSON-shaped data, built for speed.

PyYAML's representer spends about a millisecond per Kubernetes object in
Python before libyaml sees it, which made `review` of a 5,000-document
manifest miss its budget. Manifests are JSON-shaped (mappings, lists,
strings, numbers, booleans, null), so this module writes exactly that, in the
layout `kubectl get -o yaml` uses, and nothing else. Strings are written
plain only when a conservative rule proves that YAML 1.1 and 1.2 readers both
read them back as the same string; otherwise JSON-quoted (a JSON string is a
valid YAML double-quoted scalar) or, for multi-line text, as a literal block.
A property test checks `yaml.safe_load(emit(x)) == x` for generated values.
"""

from __future__ import annotations

import functools
import json
import math
import re
from typing import Any

# Plain scalars: start with a letter, digit or one of `/._`, continue with
# characters that are never YAML indicators (a `:` only inside a word, as in
# an image reference); then exclude words and numbers that resolve to other
# types in YAML 1.1 or 1.2 (anything starting with a digit is quoted).
_PLAIN = re.compile(r"^[A-Za-z0-9_./][A-Za-z0-9_./@+:-]*(?: [A-Za-z0-9_./@+()-]+)*$")
_RESERVED = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~", "="})
_NUMBERISH = re.compile(r"^[-+]?(?:[0-9][0-9_:]*|\.[0-9]|\.inf|\.nan)", re.IGNORECASE)
_NON_PRINTABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd"
    "\U00010000-\U0010ffff]"
)


@functools.lru_cache(maxsize=8192)  # keys and values repeat across a manifest
def _string(value: str) -> str:
    if (
        value
        and _PLAIN.fullmatch(value)
        and value.lower() not in _RESERVED
        and not _NUMBERISH.match(value)
        and not value.startswith(".")
        and not value.endswith(":")
        and ": " not in value
    ):
        return value
    quoted = json.dumps(value, ensure_ascii=False)
    if _NON_PRINTABLE.search(quoted):
        # NB: YAML forbids these raw or reads them as line breaks (NEL, LS, PS) or a
        # byte-order mark, even inside quotes; JSON's \u escapes are YAML's too.
        quoted = _NON_PRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", quoted)
    return quoted


def _literal(value: str, indent: str) -> str | None:
    """A literal block for multi-line text, or None when quoting is safer."""
    if "\r" in value or _NON_PRINTABLE.search(value):
        return None
    lines = value.split("\n")
    trailing = len(value) - len(value.rstrip("\n"))
    body = lines[: len(lines) - trailing] if trailing else lines
    if not body or body[0].startswith(" ") or body[0] == "":
        return None
    if any(line != line.rstrip(" \t") for line in body):
        return None
    chomp = "-" if trailing == 0 else "" if trailing == 1 else None
    if chomp is None:
        return None
    rendered = "".join(f"{indent}{line}\n" if line else "\n" for line in body)
    return f"|{chomp}\n{rendered}"


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if value in (float("inf"), float("-inf")):
            return ".inf" if value > 0 else "-.inf"
        text = repr(value)
        mantissa, e, exponent = text.partition("e")
        if "." not in mantissa:
            mantissa += ".0"  # NB: YAML 1.1 reads `1e+20` as a string, `1.0e+20` as a float
        return mantissa + e + exponent
    if isinstance(value, str):
        return _string(value)
    raise TypeError(f"cannot write a {type(value).__name__} as YAML")


# YAML reads an implicit key (`key: value`) of at most 1024 characters; a longer
# one is written as an explicit key (`? key` then `: value` on the next line).
IMPLICIT_KEY_MAX = 1024


def _head(prefix: str, key: Any, indent: str, out: list[str]) -> str:
    """The text before a mapping entry's value: `prefix` + `key:`, or an explicit key."""
    text = _string(key) if isinstance(key, str) else _scalar(key)
    if len(text) < IMPLICIT_KEY_MAX:
        return f"{prefix}{text}:"
    out.append(f"{prefix}? {text}\n")
    return f"{indent}:"


def _lines(value: Any, indent: str, out: list[str]) -> None:
    """Append the block lines of a non-empty mapping or list at `indent`."""
    if isinstance(value, dict):
        for key, item in value.items():
            _entry(_head(indent, key, indent, out), item, indent, out, nested=indent + "  ")
    else:
        for item in value:
            if isinstance(item, dict) and item:
                first = True
                for key, sub in item.items():
                    prefix = f"{indent}- " if first else f"{indent}  "
                    first = False
                    head = _head(prefix, key, indent + "  ", out)
                    _entry(head, sub, indent + "  ", out, nested=indent + "    ")
            else:
                _entry(f"{indent}-", item, indent, out, nested=indent + "  ", in_list=True)


def _entry(
    head: str, item: Any, indent: str, out: list[str], *, nested: str, in_list: bool = False
) -> None:
    if isinstance(item, dict):
        if item:
            out.append(head + "\n")
            _lines(item, nested, out)
        else:
            out.append(head + " {}\n")
    elif isinstance(item, list):
        if item:
            out.append(head + "\n")
            # NB: kubectl's layout: a list under a key is not indented further.
            _lines(item, nested if in_list else indent, out)
        else:
            out.append(head + " []\n")
    elif isinstance(item, str) and "\n" in item:
        block = _literal(item, nested)
        out.append(f"{head} {block}" if block is not None else f"{head} {_string(item)}\n")
    else:
        out.append(f"{head} {_scalar(item)}\n")


def emit(value: Any) -> str:
    """One YAML document for a JSON-shaped value."""
    if isinstance(value, dict | list) and value:
        out: list[str] = []
        _lines(value, "", out)
        return "".join(out)
    if isinstance(value, dict):
        return "{}\n"
    if isinstance(value, list):
        return "[]\n"
    if isinstance(value, str) and "\n" in value:
        block = _literal(value, "  ")
        if block is not None:
            return block
    return _scalar(value) + "\n"
