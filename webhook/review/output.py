"""How `review` prints what it found: diff, patch, yaml or json, and --explain.

Rendering is text in, text out; the command line decides where it goes.
Diffs are unified diffs of the YAML of each changed object, headed by
`Kind namespace/name`, coloured only when asked (on a terminal).
"""

from __future__ import annotations

import difflib
import json
from typing import Any

from webhook.k8s import emit
from webhook.review.documents import ReviewedObject

_RESET = "\033[0m"
_COLOURS = {"+": "\033[32m", "-": "\033[31m", "@": "\033[36m", "h": "\033[1m"}


def diff(items: list[ReviewedObject], *, colour: bool) -> str:
    """Unified diffs of every changed object (the object inside an AdmissionReview)."""
    out: list[str] = []
    for item in items:
        if not item.patch or item.decision is None:
            continue
        before = emit.emit(item.original).splitlines(keepends=True)
        after_doc = item.result if item.patched is None else item.patched
        after = emit.emit(after_doc).splitlines(keepends=True)
        lines = list(
            difflib.unified_diff(
                before, after, fromfile=f"{item.label}", tofile=f"{item.label} (patched)", n=3
            )
        )
        out.append(_paint(lines, colour=colour))
    return "".join(out)


def _paint(lines: list[str], *, colour: bool) -> str:
    if not colour:
        return "".join(lines)
    painted = []
    for line in lines:
        key = "h" if line.startswith(("---", "+++")) else line[:1]
        code = _COLOURS.get(key)
        body = line.rstrip("\n")
        painted.append(f"{code}{body}{_RESET}\n" if code else line)
    return "".join(painted)


def patches(items: list[ReviewedObject]) -> str:
    """`# Kind namespace/name` then the object's JSON Patch on one line, per changed object."""
    out = []
    for item in items:
        if item.patch:
            out.append(f"# {item.label}\n")
            out.append(
                json.dumps(item.patch, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
                + "\n"
            )
    return "".join(out)


def documents_yaml(results: list[tuple[Any, str]]) -> str:
    """Every document, in order, as one YAML stream.

    Each entry is `(value, text)`: a document with its original YAML `text` is
    printed verbatim (comments and formatting kept: nothing changed it), the
    others are dumped from their value.
    """
    out: list[str] = []
    for value, text in results:
        piece = _line_ended(text) if text else emit.emit(value)
        if out:
            # NB: a document's directives may follow only an explicit document end.
            out.append("...\n" if piece.startswith("%") else "---\n")
        out.append(piece)
    return "".join(out)


def _line_ended(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"


def documents_json(results: list[Any]) -> str:
    """Every document as one JSON document, as `kubectl get -o json` prints: the object
    itself when there is one, else a `List` of them (the items of a List read are its
    items), so the output parses with one `json.load` and applies with `kubectl apply`."""
    items: list[Any] = []
    for value in results:
        if isinstance(value, dict) and value.get("kind") == "List":
            items.extend(value.get("items") or ())
        elif value is not None:
            items.append(value)
    single = len(results) == 1 and results[0] is not None
    document = (
        results[0]
        if single
        else {
            "apiVersion": "v1",
            "kind": "List",
            "items": items,
            "metadata": {"resourceVersion": ""},
        }
    )
    return json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def explain(item: ReviewedObject) -> str:
    """One line: why this object is or is not patched."""
    where = f"{item.source}:{item.line}: " if item.line else f"{item.source}: "
    if item.decision is None:
        verdict = "error" if item.error else "unchanged"
        return f"{where}{item.label}: {verdict}: {item.note}"
    decision = item.decision
    if decision.outcome == "injected":
        return f"{where}{item.label}: patched: {decision.message}"
    if decision.outcome == "denied":
        return f"{where}{item.label}: denied: {decision.message}"
    return f"{where}{item.label}: skipped ({decision.reason}): {decision.message}"
