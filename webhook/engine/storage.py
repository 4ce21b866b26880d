"""Where a rule's storage is in a pod: the mounts at or below its storage paths.

`scan()` walks the pod's containers once: a container's mount at one of the
rule's `mountPaths` is a root, and its mounts below a root (an NFS share at
`/app/api/storage/upload_files`) go with it. Only containers running one of
the rule's `images` count, when it lists any. Linear in the pod's size, and
the walk stops at the first mount past a limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from webhook.engine import hostpaths, limits
from webhook.engine.policy import Rule


class Mount(NamedTuple):
    """One mount at or below a storage path, by a container that counts."""

    container: str
    kind: str  # "containers" or "initContainers"
    position: int  # in its list of containers
    path: str  # normalized mountPath
    mount_path: str  # as written
    volume: str
    sub_path: str | None
    sub_path_expr: str | None
    read_only: bool
    root: str  # the storage path it is at or below

    @property
    def key(self) -> tuple[str, str | None, str | None]:
        """What the mount shows of its volume."""
        return (self.volume, self.sub_path, self.sub_path_expr)


@dataclass
class Scan:
    """What one rule finds in a pod's containers."""

    mounts: list[Mount] = field(default_factory=list)
    unlisted: list[str] = field(default_factory=list)
    """Containers mounting a storage path but running none of the rule's images."""
    root_images: list[tuple[str, str, str]] = field(default_factory=list)
    """(container, image, nonRootSince) of counted containers whose image runs as root."""
    unknown_versions: list[tuple[str, str]] = field(default_factory=list)
    """(container, image) of counted containers pinned by digest alone, under a policy
    that does not take that as current."""
    too_large: str | None = None
    """Why the scan stopped early: more storage mounts, or a longer path, than handled."""


def _counted(scan: Scan, rule: Rule, name: str, image: str) -> bool:
    """Whether the container counts (it runs one of the rule's images); notes in `scan`
    an image not listed, one older than non-root, one whose version cannot be told."""
    entry = rule.image_rule(image)
    if entry is None:
        scan.unlisted.append(name)
        return False
    if entry.runs_as_root(image):
        scan.root_images.append((name, image, str(entry.non_root_since)))
    elif entry.version_unknown(image):
        scan.unknown_versions.append((name, image))
    return True


def scan(spec: dict[str, Any], rule: Rule) -> Scan:
    """The mounts at or below the rule's storage paths, by containers that count.

    A container's mount at a storage path is a root; its mounts below a root
    (an NFS share at `/app/api/storage/upload_files`) are fixed with it.
    Linear: each mount is normalized once and compared with at most the
    rule's few storage paths; the scan stops at the first mount past a limit.
    """
    scan = Scan()
    storage = rule.mount_path_set
    for kind in ("containers", "initContainers"):
        for index, container in enumerate(spec.get(kind) or ()):
            entries = container.get("volumeMounts") or ()
            paths = [hostpaths.normalize(m["mountPath"]) for m in entries]
            roots = {p for p in paths if p in storage}
            if not roots:
                continue
            name = container.get("name") or f"{kind}[{index}]"
            if rule.images and not _counted(scan, rule, name, container.get("image") or ""):
                continue
            # A storage path below another one of the same container is nested in it.
            top = [r for r in roots if not any(r != o and hostpaths.within(r, o) for o in roots)]
            for mount, path in zip(entries, paths, strict=True):
                root = next((r for r in top if hostpaths.within(path, r)), None)
                if root is None:
                    continue
                if len(scan.mounts) == limits.MAX_STORAGE_MOUNTS:
                    scan.too_large = (
                        f"more than {limits.MAX_STORAGE_MOUNTS} mounts at or below"
                        f" {', '.join(rule.mount_paths)}, the most the webhook handles"
                    )
                    return scan
                if len(path) > limits.MAX_PATH_BYTES:
                    scan.too_large = (
                        f"container {name} mounts a path of {len(path)} bytes below the storage,"
                        f" longer than PATH_MAX ({limits.MAX_PATH_BYTES})"
                    )
                    return scan
                scan.mounts.append(
                    Mount(
                        container=name,
                        kind=kind,
                        position=index,
                        path=path,
                        mount_path=mount["mountPath"],
                        volume=mount["name"],
                        sub_path=mount.get("subPath") or None,
                        sub_path_expr=mount.get("subPathExpr") or None,
                        read_only=mount.get("readOnly") is True,
                        root=root,
                    )
                )
    return scan
