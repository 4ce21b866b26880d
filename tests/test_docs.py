"""The documents hold together: every link from the README to a document, and to a
heading in it, resolves, and nothing the README says it has moved is missing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
LINK = re.compile(r"\]\(((?:docs/)?[\w./-]*?)(?:#([\w-]+))?\)")


def anchors(path: Path) -> set[str]:
    """The heading anchors GitHub makes for a Markdown file (outside code fences)."""
    found, fenced = set(), False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found


@pytest.mark.parametrize("source", [README, *sorted((ROOT / "docs").glob("*.md"))])
def test_every_link_to_a_document_and_heading_resolves(source: Path) -> None:
    """Guards the README's table of contents and its links into docs/: a heading
    renamed or a section moved without its links fails here."""
    broken = []
    for target, anchor in LINK.findall(source.read_text()):
        if target.startswith(("http", "mailto")) or (target and not target.endswith(".md")):
            continue
        path = (source.parent / target) if target else source
        if not path.exists():
            broken.append(f"{target}: no such file")
        elif anchor and anchor not in anchors(path):
            broken.append(f"{target}#{anchor}: no such heading")
    assert broken == []


def test_the_readme_stays_short() -> None:
    """Guards the README's purpose (a user's path, under about 500 lines); detail
    belongs in docs/."""
    assert len(README.read_text().splitlines()) <= 510
