"""Run an injected init container the way a container runtime would, without one.

A private mount namespace (`unshare -m`) holds a read-only root filesystem whose
`/bin` has only busybox applets (`busybox --install -s`), as in the busybox
image; each of the container's volumeMounts is a bind mount of a directory on
this machine (with its `subPath`) at the container's mount path; `setpriv`
leaves root exactly the capabilities the container's securityContext adds.
Nothing is mounted or changed outside the test's own directories.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parent.parent / "webhook"

_SETUP = r"""
set -eu
root=$1; caps=$2; shift 2
envs=()
while [ "$1" != "--env-end" ]; do envs+=("$1"); shift; done
shift
binds=()
while [ "$1" != "--" ]; do binds+=("$1" "$2" "$3"); shift 3; done
shift
mount --bind "$root" "$root"
mount -o remount,bind,ro "$root"
mount --bind /usr "$root/usr"
mount -o remount,bind,ro "$root/usr"
mount --bind /dev/null "$root/dev/null"  # a runtime gives every container /dev/null
mount -t proc proc "$root/proc"  # and /proc
for ((i = 0; i < ${#binds[@]}; i += 3)); do
  # A mount below another lands inside that volume: create its mount point
  # there, as the runtime does (a no-op for the rest, made in the rootfs).
  [ -e "$root${binds[i+1]}" ] || mkdir -p "$root${binds[i+1]}"
  mount --rbind "${binds[i]}" "$root${binds[i+1]}"  # runc binds recursively
  if [ "${binds[i+2]}" = ro ]; then
    mount -o remount,bind,ro "$root${binds[i+1]}"
  fi
done
exec chroot "$root" /usr/bin/env -i PATH=/bin "${envs[@]}" \
  /usr/bin/setpriv --bounding-set="$caps" --inh-caps=-all --no-new-privs -- "$@"
"""


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def available() -> str | None:
    """Why the sandbox cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "needs root for unshare -m, bind mounts and chown"
    for tool in ("busybox", "setpriv", "unshare", "chroot"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (make test installs it)"
    return None


def capability_set(container: dict[str, Any]) -> str:
    """setpriv's --bounding-set for a container's securityContext.capabilities."""
    caps = (container.get("securityContext") or {}).get("capabilities") or {}
    assert caps.get("drop") == ["ALL"], "the init container must drop ALL capabilities"
    return ",".join(["-all", *(f"+{c.lower()}" for c in caps.get("add") or ())])


def run_container(
    container: dict[str, Any],
    volumes: dict[str, Path],
    workdir: Path,
    *,
    caps: str | None = None,
    read_only: frozenset[str] = frozenset(),
    mounts: tuple[tuple[Path, str, bool], ...] = (),
    timeout: float = 120,
    pid_namespace: bool = False,
    termination_log: Path | None = None,
) -> Result:
    """Run `container` (as found in a patch) with each named volume backed by a directory.

    `read_only` names volumes mounted read-only; `mounts` are further
    (source, container path, read-only) bind mounts made after the volumes, so
    they can land inside one (a same-filesystem bind, a snapshot share). The
    container's plain `env` values are set; others are not resolved here.
    `pid_namespace` runs it in its own PID namespace, as a runtime does: its
    command is PID 1 (`$$` is 1 in every container). A program-mode command
    (`dify-volume-init fix-ownership ...`) runs this checkout's `webhook` package on
    the machine's own Python with nothing but its standard library, as the image
    does; `termination_log` is the file the kubelet would give it at
    /dev/termination-log.
    """
    rootfs = workdir / "rootfs"
    if rootfs.exists():
        shutil.rmtree(rootfs)
    for sub in ("usr", "bin", "dev", "proc"):
        (rootfs / sub).mkdir(parents=True)
    (rootfs / "dev" / "null").touch()
    (rootfs / "lib").symlink_to("usr/lib")
    (rootfs / "lib64").symlink_to("usr/lib64")
    subprocess.run(["busybox", "--install", "-s", str(rootfs / "bin")], check=True)
    binds: list[str] = []
    for mount in container["volumeMounts"]:
        source = volumes[mount["name"]]
        if mount.get("subPath"):
            source = source / mount["subPath"]
            source.mkdir(parents=True, exist_ok=True)
        target = rootfs / mount["mountPath"].lstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        binds += [str(source), mount["mountPath"], "ro" if mount["name"] in read_only else "rw"]
    for source, target, ro in mounts:
        binds += [str(source), target, "ro" if ro else "rw"]
    envs = [f"{e['name']}={e['value']}" for e in container.get("env") or () if "value" in e]
    command = [*container["command"], *(container.get("args") or ())]
    if command[:1] == ["dify-volume-init"]:
        (rootfs / "opt" / "dify-volume-init" / "webhook").mkdir(parents=True)
        binds += [str(PACKAGE), "/opt/dify-volume-init/webhook", "ro"]
        envs += ["PYTHONPATH=/opt/dify-volume-init", "PYTHONDONTWRITEBYTECODE=1"]
        command = ["/usr/bin/python3", "-m", "webhook", *command[1:]]
    if termination_log is not None:
        termination_log.touch()
        (rootfs / "dev" / "termination-log").touch()
        binds += [str(termination_log), "/dev/termination-log", "rw"]
    bounding = caps if caps is not None else capability_set(container)
    argv = [
        "unshare",
        "-m",
        *(("--pid", "--fork", "--kill-child") if pid_namespace else ()),
        "--propagation",
        "private",
        "--",
        "bash",
        "-c",
        _SETUP,
        "setup",
        str(rootfs),
        bounding,
        *envs,
        "--env-end",
        *binds,
        "--",
        *command,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    return Result(done.returncode, done.stdout, done.stderr)
