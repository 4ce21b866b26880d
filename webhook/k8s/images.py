"""Container image references: which repository an image is, and which version its tag says.

A rule's `images` guard (`repository` + `nonRootSince`) keeps the webhook off
containers that are not Dify's api image, and off Dify releases older than
1.10.1, which run as root: forcing UID 1001 onto them would change an app that
had no problem. References are matched the way a platform engineer writes
them: after any registry or mirror prefix (`registry.example.com/mirror/
langgenius/dify-api` is `langgenius/dify-api`).
"""

from __future__ import annotations

import functools
import re
from typing import NamedTuple

Version = tuple[int, int, int]

# Docker's reference grammar for one path component (distribution/reference).
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST = r"[A-Za-z0-9](?:[-A-Za-z0-9.]*[A-Za-z0-9])?(?::[0-9]+)?"
_IPV6 = r"\[[a-fA-F0-9:]+\]"
REPOSITORY = re.compile(rf"^(?:(?:{_HOST}|{_IPV6}(?::[0-9]+)?)/)?{_COMPONENT}(?:/{_COMPONENT})*$")
TAG = re.compile(r"^[\w][\w.-]{0,127}$")
DIGEST = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$")
NAME_MAX = 255  # distribution/reference's NameTotalLengthMax
# `1.10.1`, `v1.11.0`, `1.10.1-fix.1`, `1.10`: the numbers, whatever follows them.
_VERSION = re.compile(r"^[vV]?(\d{1,9})\.(\d{1,9})(?:\.(\d{1,9}))?(?!\d)")


class Reference(NamedTuple):
    """An image reference split into repository (with any registry), tag and digest."""

    repository: str
    tag: str | None
    digest: str | None


@functools.lru_cache(maxsize=1024)
def parse(reference: str) -> Reference:
    """Split `reference`; no validation: the kubelet is the judge of what pulls."""
    name, _, digest = reference.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return Reference(name[:colon], name[colon + 1 :], digest or None)
    return Reference(name, None, digest or None)


@functools.lru_cache(maxsize=256)
def parse_version(text: str) -> Version | None:
    """The version a tag names (`v1.11.0` -> (1, 11, 0)), or None when it names none.

    NB: what follows the numbers is ignored: Dify's `1.10.1-fix.1` is a fix
    release of 1.10.1, not a pre-release before it.
    """
    match = _VERSION.match(text)
    if match is None:
        return None
    major, minor, patch = match.groups()
    return (int(major), int(minor), int(patch or 0))


def repository_matches(repository: str, wanted: str) -> bool:
    """`repository` is `wanted`, or `wanted` behind a registry or mirror prefix."""
    return repository == wanted or repository.endswith("/" + wanted)


def version_of(reference: str) -> Version | None:
    """The version an image's tag says, or None (`latest`, digest only, unparsable tag)."""
    tag = parse(reference).tag
    return None if tag is None else parse_version(tag)
