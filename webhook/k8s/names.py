"""Kubernetes names, label keys and values, quantities and image references: the
API server's own rules (apimachinery's validation, distribution/reference), as
plain functions that return the value or raise `ValueError` saying why.

The policy model (engine), the command line's flags and the server's settings
check their values with these; each message names the value, cut short.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from webhook.k8s import images

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")


_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$")


_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)


_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


_QUANTITY = re.compile(r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+))([eE][+-]?\d+|[KMGTPE]i|[numkMGTPE])?$")


_SUFFIXES = {
    **{s: Decimal(1024) ** (i + 1) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
    **{
        s: Decimal(10) ** e
        for s, e in zip("numkMGTPE", (-9, -6, -3, 3, 6, 9, 12, 15, 18), strict=True)
    },
    "": Decimal(1),
}


# The container resources Kubernetes knows by a bare name; any other must be an
# extended resource, `domain/name` outside kubernetes.io (validateResourceName).
_STANDARD_RESOURCES = ("cpu", "memory", "ephemeral-storage")


def shown(value: object, limit: int = 64) -> str:
    """`value` quoted for a message, cut to `limit` characters: a 100 KB label value
    is named, not echoed."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def label_key(key: str) -> str:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)):
        raise ValueError(f"label key {shown(key)}: prefix must be a DNS subdomain")
    if not _LABEL_NAME.match(name):
        raise ValueError(
            f"label key {shown(key)}: name must be 1-63 alphanumerics, '-', '_' or '.',"
            " starting and ending with an alphanumeric"
        )
    return key


def label_value(value: str) -> str:
    if len(value) > 63 or not _LABEL_VALUE.match(value):
        raise ValueError(
            f"label value {shown(value)} must be at most 63 alphanumerics, '-', '_' or '.',"
            " starting and ending with an alphanumeric"
        )
    return value


def dns_label(value: str) -> str:
    """A DNS-1123 label (a namespace, a container name), or `ValueError` saying why not."""
    if not _DNS1123_LABEL.match(value):
        raise ValueError(
            f"{shown(value)} must be a DNS-1123 label (at most 63 lower-case alphanumerics or '-')"
        )
    return value


def dns_subdomain(value: str) -> str:
    """A DNS-1123 subdomain (most object names: pods, workloads), or `ValueError`."""
    if len(value) > 253 or not _DNS1123_SUBDOMAIN.match(value):
        raise ValueError(f"{shown(value)} must be a DNS-1123 subdomain (at most 253 characters)")
    return value


def service_name(value: str) -> str:
    """A DNS-1035 label (a Service's name), or `ValueError` saying why not."""
    if not _DNS1035_LABEL.match(value):
        raise ValueError(
            f"{shown(value)} must be a DNS-1035 label (at most 63 lower-case alphanumerics"
            " or '-', starting with a letter)"
        )
    return value


def image_reference(value: str) -> str:
    """An image reference by distribution/reference's grammar, pinned by tag or digest."""
    named = shown(value, 80)
    name, at, digest = value.partition("@")
    reference = images.parse(name)
    if at and not images.DIGEST.match(digest):
        raise ValueError(f"image {named}: the digest after '@' is malformed")
    if (
        not images.REPOSITORY.match(reference.repository)
        or len(reference.repository) > images.NAME_MAX
        or (reference.tag is not None and not images.TAG.match(reference.tag))
    ):
        raise ValueError(
            f"image {named} is not an image reference (registry/repository:tag or @digest;"
            " lower-case, no spaces or shell characters)"
        )
    if not at and reference.tag is None:
        raise ValueError(f"image {named} has no tag: pin it, e.g. busybox:1.36.1")
    if not at and reference.tag == "latest":
        raise ValueError(f"image {named} uses ':latest': pin a version, e.g. busybox:1.36.1")
    return value


def quantity(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a resource quantity must be a number or a string such as 10m or 16Mi")
    if isinstance(value, int | float):
        value = str(value)
    if not isinstance(value, str) or len(value) > 64 or not _QUANTITY.match(value):
        raise ValueError(f"{shown(value)} is not a Kubernetes quantity (e.g. 10m, 16Mi, 1)")
    if quantity_value(value) < 0:
        raise ValueError(f"{shown(value)} is negative: a resource quantity must not be")
    return value


def quantity_value(text: str) -> Decimal:
    """The number a valid quantity stands for (`16Mi` -> 16777216, `10m` -> 0.01)."""
    match = _QUANTITY.match(text)
    assert match is not None, text  # validated before
    number, suffix = match.groups()
    if suffix and suffix[0] in "eE":
        return Decimal(number) * Decimal(10) ** int(suffix[1:])
    return Decimal(number) * _SUFFIXES[suffix or ""]


def resource_name(name: str) -> str:
    if name in _STANDARD_RESOURCES or name.startswith("hugepages-"):
        return name
    prefix, slash, rest = name.partition("/")
    if (
        slash
        and rest
        and _DNS1123_SUBDOMAIN.match(prefix)
        and _LABEL_NAME.match(rest)
        and not (prefix == "kubernetes.io" or prefix.endswith(".kubernetes.io"))
    ):
        return name
    raise ValueError(
        f"{shown(name)} is not a container resource: cpu, memory, ephemeral-storage,"
        " hugepages-<size> or an extended resource such as example.com/device"
    )
