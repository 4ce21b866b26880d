"""The host paths whose ownership a pod must never get changed, and the check.

A webhook that chowns whatever a pod mounts would hand the node to anyone who
may create a pod: a hostPath of `/etc` or of the kubelet's state would be
given to UID 1001. A storage volume that is a hostPath of a system directory,
of a node agent's state, of anything below one, or of a directory above one
(a recursive walk from `/var` reaches `/var/lib/kubelet`) is refused. A policy
may add prefixes (`forbiddenHostPathPrefixes`) but never remove these.
"""

from __future__ import annotations

import posixpath

# The host's system directories, then the state of the node's agents: the
# kubelet, the container runtimes (Docker, containerd, CRI-O/Podman), etcd on
# control-plane nodes, k3s/RKE2, CNI plugins and their state, kube-proxy,
# Calico and Cilium. `/lib*` is matched by prefix in `refusal()`.
FORBIDDEN: tuple[str, ...] = (
    "/etc",
    "/usr",
    "/bin",
    "/sbin",
    "/boot",
    "/dev",
    "/proc",
    "/sys",
    "/run",
    "/var/run",
    "/var/log",
    "/var/lib/kubelet",
    "/var/lib/docker",
    "/var/lib/containerd",
    "/var/lib/containers",
    "/var/lib/etcd",
    "/var/lib/rancher",
    "/var/lib/cni",
    "/opt/cni",
    "/var/lib/kube-proxy",
    "/var/lib/calico",
    "/var/lib/cilium",
)


def normalize(path: str) -> str:
    """`/a//b/../c/` -> `/a/c`: what the kernel would reach, textually."""
    normalized = posixpath.normpath(path)
    # NB: POSIX keeps a leading '//' as implementation-defined; Linux does not.
    return "/" + normalized.lstrip("/")


def within(path: str, ancestor: str) -> bool:
    """`path` is `ancestor` or below it (both normalized)."""
    return ancestor in ("/", path) or path.startswith(ancestor + "/")


def refusal(
    path: str, *, forbidden: tuple[str, ...] = (), allowed: tuple[str, ...] = ()
) -> str | None:
    """Why the hostPath `path` must not be chowned, or None when it may be.

    `forbidden` adds prefixes to `FORBIDDEN`; a non-empty `allowed` refuses
    everything outside it.
    """
    if not path.startswith("/"):
        return "not an absolute path"
    normalized = normalize(path)
    if normalized == "/":
        return "the host's root directory"
    first = normalized.split("/")[1]
    if first.startswith("lib"):
        return f"a system path (under /{first})"
    for prefix in (*FORBIDDEN, *forbidden):
        if within(normalized, prefix):
            return f"a system path (under {prefix})"
        if within(prefix, normalized):
            return f"a directory that contains the system path {prefix}"
    if allowed and not any(within(normalized, prefix) for prefix in allowed):
        return f"outside the policy's allowedHostPathPrefixes ({', '.join(allowed)})"
    return None


def shown(path: str) -> str:
    """`path` for a message, with its normalized form when that differs."""
    normalized = normalize(path) if path.startswith("/") else path
    return path if normalized == path else f"{path} (= {normalized})"
