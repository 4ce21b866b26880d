"""Where Dify really keeps its files: the container's own STORAGE_TYPE.

Dify writes uploads and keys through its storage layer, chosen by `STORAGE_TYPE`
(langgenius/dify `api/configs/middleware/__init__.py`, `_VALID_STORAGE_TYPE`:
opendal, s3, aliyun-oss, azure-blob, baidu-obs, clickzetta-volume, google-storage,
huawei-obs, oci-storage, tencent-cos, volcengine-tos, supabase, local) and, for
`opendal` (the default), `OPENDAL_SCHEME` (`fs` by default, the local directory
`OPENDAL_FS_ROOT`). With an object store, `/app/api/storage` is not where Dify writes:
a volume still mounted there (an S3 bucket through a FUSE CSI driver, as some charts
leave it) is not the webhook's to fix, and chown on it is refused: the init container
would keep the pod from starting. Only literal `env` values are read; a value from
`valueFrom` or `envFrom` cannot be, and is said so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

OBJECT_STORES = frozenset(
    {
        "s3",
        "aliyun-oss",
        "azure-blob",
        "baidu-obs",
        "clickzetta-volume",
        "google-storage",
        "huawei-obs",
        "oci-storage",
        "tencent-cos",
        "volcengine-tos",
        "supabase",
    }
)
"""Dify's STORAGE_TYPE values that write to an object store, not the local storage."""


@dataclass(frozen=True)
class Storage:
    """What a container's env says of its storage."""

    remote: str | None
    """`STORAGE_TYPE=s3` (or `OPENDAL_SCHEME=...`) when files go to an object store."""
    unreadable: str | None
    """Why the env could not be read (a valueFrom or envFrom), when it could not."""


def of(container: dict[str, Any]) -> Storage:
    """Where `container`'s Dify stores files, from its literal env (the last entry of a
    name wins, as the kubelet does)."""
    values: dict[str, Any] = {}
    unreadable: dict[str, str] = {}
    env = container.get("env")
    for entry in env if isinstance(env, list) else ():
        if not isinstance(entry, dict):
            continue
        name = entry.get("name")
        if name not in ("STORAGE_TYPE", "OPENDAL_SCHEME"):
            continue
        if entry.get("valueFrom") is not None:
            unreadable[name] = "valueFrom"
            values.pop(name, None)
        else:
            unreadable.pop(name, None)
            values[name] = entry.get("value")
    env_from = container.get("envFrom")
    from_env = isinstance(env_from, list) and bool(env_from)
    kind = values.get("STORAGE_TYPE")
    scheme = values.get("OPENDAL_SCHEME")
    if "STORAGE_TYPE" in unreadable or (kind is None and from_env):
        how = unreadable.get("STORAGE_TYPE", "envFrom")
        return Storage(None, f"STORAGE_TYPE comes from {how}, which the webhook cannot read")
    if isinstance(kind, str) and kind in OBJECT_STORES:
        return Storage(f"STORAGE_TYPE={kind}", None)
    if kind in (None, "", "opendal"):
        if "OPENDAL_SCHEME" in unreadable or (scheme is None and from_env):
            how = unreadable.get("OPENDAL_SCHEME", "envFrom")
            return Storage(None, f"OPENDAL_SCHEME comes from {how}, which the webhook cannot read")
        if isinstance(scheme, str) and scheme not in ("", "fs"):
            return Storage(f"STORAGE_TYPE=opendal with OPENDAL_SCHEME={scheme}", None)
    return Storage(None, None)
