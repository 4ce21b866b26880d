"""A passthrough FUSE file system for tests: a directory on this machine served through
the kernel's FUSE, with the behaviours of network and object storage a test asks for.

`--subtype s3fs` makes mountinfo say `fuse.s3fs`, as an S3 bucket mounted by s3fs (or
a CSI driver built on it) does; `--deny-chown` answers every chown with EPERM, as an
object store, which keeps no owners, does; `--latency-ms` adds a round trip to every
metadata call, as NFS or a network FUSE does. Run as a process of its own (libfuse
wants the main thread): `python -m tests.fusefs SOURCE MOUNTPOINT [options]`;
`mounted()` starts it and waits until the kernel shows the mount.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}


def serve(
    source: str,
    mountpoint: str,
    *,
    subtype: str,
    deny_chown: bool,
    latency: float,
    cache: bool = True,
) -> None:
    """Serve `source` at `mountpoint` until unmounted."""
    import fuse  # libfuse is needed only in this process

    class Passthrough(fuse.Operations):  # type: ignore[misc]
        def _path(self, path: str) -> str:
            if latency:
                time.sleep(latency)
            return os.path.join(source, path.lstrip("/"))

        def getattr(self, path: str, fh: Any = None) -> dict[str, Any]:
            st = os.lstat(self._path(path))
            keys = ("st_mode", "st_uid", "st_gid", "st_size", "st_nlink", "st_ino")
            times = ("st_atime", "st_mtime", "st_ctime")
            return {key: getattr(st, key) for key in (*keys, *times)}

        def readdir(self, path: str, fh: Any) -> list[str]:
            return [".", "..", *os.listdir(self._path(path))]

        def chown(self, path: str, uid: int, gid: int) -> None:
            if deny_chown:
                raise fuse.FuseOSError(errno.EPERM)
            os.lchown(self._path(path), uid, gid)

        def chmod(self, path: str, mode: int) -> None:
            os.chmod(self._path(path), mode)

        def mkdir(self, path: str, mode: int) -> None:
            os.mkdir(self._path(path), mode)

        def rmdir(self, path: str) -> None:
            os.rmdir(self._path(path))

        def unlink(self, path: str) -> None:
            os.unlink(self._path(path))

        def rename(self, old: str, new: str) -> None:
            os.rename(self._path(old), self._path(new))

        def readlink(self, path: str) -> str:
            return os.readlink(self._path(path))

        def create(self, path: str, mode: int, fi: Any = None) -> int:
            return os.open(self._path(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)

        def open(self, path: str, flags: int) -> int:
            return os.open(self._path(path), flags)

        def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
            return os.pread(fh, size, offset)

        def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
            return os.pwrite(fh, data, offset)

        def truncate(self, path: str, length: int, fh: Any = None) -> None:
            os.truncate(self._path(path), length)

        def release(self, path: str, fh: int) -> None:
            os.close(fh)

        def utimens(self, path: str, times: Any = None) -> None:
            os.utime(self._path(path), times, follow_symlinks=False)

    # NB: without the cache every lookup and getattr reaches the daemon, as on a network
    # file system whose attribute cache has expired (the slow case, for benchmarks).
    timeouts = {} if cache else {"attr_timeout": 0, "entry_timeout": 0, "negative_timeout": 0}
    fuse.FUSE(
        Passthrough(),
        mountpoint,
        foreground=True,
        allow_other=True,
        fsname=f"{subtype}-test",
        subtype=subtype,
        **timeouts,
    )


def _shown(mountpoint: Path) -> bool:
    wanted = f" {mountpoint} "
    return any(wanted in line for line in Path("/proc/self/mountinfo").read_text().splitlines())


@contextlib.contextmanager
def mounted(
    source: Path,
    mountpoint: Path,
    *,
    subtype: str = "passthrough",
    deny_chown: bool = False,
    latency_ms: float = 0,
    cache: bool = True,
) -> Iterator[Path]:
    """`source` served through FUSE at `mountpoint` for the block's length."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "tests.fusefs", str(source), str(mountpoint)]
    argv += ["--subtype", subtype, "--latency-ms", str(latency_ms)]
    if not cache:
        argv.append("--no-cache")
    if deny_chown:
        argv.append("--deny-chown")
    process = subprocess.Popen(argv, env=ENV, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not _shown(mountpoint):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"FUSE did not mount: {process.stderr.read() if process.stderr else ''}"
                )
            time.sleep(0.05)
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False, capture_output=True)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="tests.fusefs")
    parser.add_argument("source")
    parser.add_argument("mountpoint")
    parser.add_argument("--subtype", default="passthrough")
    parser.add_argument("--deny-chown", action="store_true")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--no-cache", action="store_true")
    args = parser.parse_args()
    serve(
        args.source,
        args.mountpoint,
        subtype=args.subtype,
        deny_chown=args.deny_chown,
        latency=args.latency_ms / 1000,
        cache=not args.no_cache,
    )


if __name__ == "__main__":
    main()
