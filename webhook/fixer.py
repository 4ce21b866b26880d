"""`dify-volume-init fix-ownership`: give volume directories to the app's user, as the
injected init container does (docs/design.md#the-ownership-fix).

The contract is the busybox script's (`engine/volume-init.sh`), kept outcome for
outcome: the flag file `.init_permissions` (`user:group`, and the full-pass token
when the pod has one) with the root owned right means nothing to do; otherwise
every entry whose owner differs is changed (never following a symbolic link,
never leaving the file system, leaving other mounts below the root, `.snapshot`
and the root's `lost+found` alone, and files with a hard link outside the volume),
entries that vanish or sit on a read-only file system are not failures, every
other failure is counted and fails the run naming the first path and its cause,
and the flag is written whole or not at all. One line per volume says what was
done; in a pod, the same line goes to `/dev/termination-log`, where `kubectl
describe pod` shows it.

It walks with `os.scandir` (one `lstat` per entry, `lchown` only where the owner
differs) and runs on a pool of threads when the storage is slow: every metadata
call on NFS, CephFS, SMB or FUSE is a network round trip, and the GIL is released
during each. The first directory is walked alone and timed; when an entry costs
more than `SLOW_ENTRY` the rest is walked by `PARALLEL_SLOW` threads (or by
`--parallel N`). It imports the standard library only (a test holds it): it runs
at every start of every Dify pod.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import threading
import time

FLAG = ".init_permissions"
FULL_PASS_ENV = "VOLUME_INIT_FULL_PASS"  # noqa: S105 (a walk, not a password)
TERMINATION_LOG = "/dev/termination-log"
TERMINATION_LOG_MAX = 4096  # the kubelet keeps this much of it
SLOW_ENTRY = 100e-6
"""Seconds per entry (lstat, and lchown where needed) above which the storage is a
network round trip away: local disk costs a few microseconds per entry."""
PARALLEL_SLOW = 32
PARALLEL_MAX = 256
PROBE_ENTRIES = 64
"""Entries of the first directory walked alone to time the storage."""
OBJECT_STORES = frozenset(
    {
        "fuse.s3fs",
        "fuse.goofys",
        "fuse.mountpoint-s3",
        "fuse.geesefs",
        "fuse.gcsfuse",
        "fuse.blobfuse",
        "fuse.blobfuse2",
        "fuse.ossfs",
        "fuse.cosfs",
        "fuse.obsfs",
        "fuse.rclone",
        "fuse.s3backer",
    }
)
PREFIX = "volume-init"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A command line the fix cannot run with: one line, exit 2."""


class Owner:
    """A UID and GID."""

    __slots__ = ("group", "user")

    def __init__(self, user: int, group: int) -> None:
        self.user = user
        self.group = group

    def __str__(self) -> str:
        return f"{self.user}:{self.group}"


def shown(path: str) -> str:
    """`path` for a message: control characters as `\\ooo`, `\\` doubled, newline `\\n`
    (as the script prints it): a name cannot start a line of the log."""
    if path.isprintable() and "\\" not in path:
        return path
    out = []
    for c in path:
        if c == "\\":
            out.append("\\\\")
        elif c == "\n":
            out.append("\\n")
        elif ord(c) < 32 or ord(c) == 127:
            out.append(f"\\{ord(c):03o}")
        else:
            out.append(c)
    return "".join(out)


# -- what mountinfo says ---------------------------------------------------------------


class MountInfo:
    """The mount a volume root is on, and the mounts below it."""

    def __init__(self) -> None:
        self.below: set[str] = set()
        self.read_only = False
        self.fstype = ""
        self.id_options = ""
        self.readable = True


def _decode(text: str) -> str:
    """mountinfo's octal escapes (`\\040` for a space) decoded."""
    if "\\" not in text:
        return text
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and text[i + 1 : i + 4].isdigit() and len(text[i + 1 : i + 4]) == 3:
            out.append(chr(int(text[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


_ID_OPTION_KEYS = ("uid", "gid", "forceuid", "forcegid", "noforceuid", "noforcegid")


def _id_options(options: str) -> str:
    keep = []
    for option in options.split(","):
        key = option.split("=", 1)[0]
        if key in _ID_OPTION_KEYS or key in ("user_id", "group_id", "file_mode", "dir_mode"):
            keep.append(option)
    return ",".join(keep)


def mount_info(root: str, source: str = "/proc/self/mountinfo") -> MountInfo:
    """The mount `root` is on (the longest mount point at or above it) and every mount
    point strictly below it."""
    info = MountInfo()
    try:
        with open(source, encoding="utf-8", errors="surrogateescape") as lines:
            text = lines.read()
    except OSError:
        info.readable = False
        return info
    best = -1
    for line in text.splitlines():
        fields = line.split(" ")
        if len(fields) < 10 or "-" not in fields[6:]:
            continue
        point = _decode(fields[4])
        sep = fields.index("-", 6)
        fstype, super_options = fields[sep + 1], fields[sep + 3] if len(fields) > sep + 3 else ""
        read_only = "ro" in fields[5].split(",") or "ro" in super_options.split(",")
        if point in (root, "/") or root.startswith(point.rstrip("/") + "/"):
            if len(point) >= best:
                best = len(point)
                info.read_only, info.fstype = read_only, fstype
                info.id_options = _id_options(super_options)
        elif point.startswith(root.rstrip("/") + "/"):
            info.below.add(point)
    return info


def owners_hint(info: MountInfo, owner: Owner) -> str:
    """Why root may not change owners on the volume and what to do, by its file system
    type (the script's `owners_hint`, word for word)."""
    given = info.id_options or "none"
    if info.fstype in OBJECT_STORES:
        return (
            f"The volume is {info.fstype}, an object store mounted through FUSE: it keeps no"
            f" owners and shows those its mount options give (uid/gid options: {given})."
            f" Mount it with uid={owner.user},gid={owner.group} (CSI: mountOptions), or let"
            " Dify write to the store itself (STORAGE_TYPE) and drop the mount."
        )
    if info.fstype in ("fuse", "fuseblk") or info.fstype.startswith("fuse."):
        return (
            f"The volume is {info.fstype}, a FUSE file system: owners are what its daemon"
            f" reports (uid/gid options: {given}); mount it with the daemon's uid/gid options"
            f" for {owner}."
        )
    if info.fstype in ("cifs", "smb3", "smbfs"):
        return (
            f"The volume is {info.fstype}, an SMB/CIFS share: owners come from its mount"
            f" options (uid/gid options: {given}), not from chown; mount it with"
            f" uid={owner.user},gid={owner.group},forceuid,forcegid (CSI: mountOptions)."
        )
    if info.fstype in ("nfs", "nfs4"):
        return (
            "The NFS export is likely squashing root (root_squash); export it with"
            f" no_root_squash or chown it to {owner} on the server."
        )
    return (
        "The volume does not let root change ownership: on NFS the export is likely"
        f" squashing root (root_squash); export it with no_root_squash or chown it to {owner}"
        " on the server. SMB/CIFS and some CSI drivers need uid/gid mount options instead."
        " (On a local file system, the directory may be immutable: lsattr -d.)"
    )


# -- the walk ----------------------------------------------------------------------------


class Tally:
    """What a walk did and met; shared by its threads under `lock`."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.read_only = 0
        self.read_only_first = ""
        self.bad = 0
        self.bad_cause = ""
        self.bad_first = ""
        self.walk = 0
        self.walk_first = ""
        self.links: dict[tuple[int, int], list[str]] = {}
        """Files with more than one name, by (device, inode): the names seen inside."""
        self.link_counts: dict[tuple[int, int], int] = {}

    def failed(self, path: str, error: OSError) -> None:
        """Record a chown that did not happen."""
        code = error.errno
        if code == errno.ENOENT:
            return  # vanished meanwhile: not a failure
        with self.lock:
            if code == errno.EROFS:
                self.read_only += 1
                self.read_only_first = self.read_only_first or shown(path)
            else:
                self.bad += 1
                if not self.bad_cause:
                    self.bad_cause, self.bad_first = os.strerror(code or 0), shown(path)

    def walk_error(self, path: str, error: OSError) -> None:
        if error.errno == errno.ENOENT:
            return
        with self.lock:
            self.walk += 1
            if not self.walk_first:
                self.walk_first = f"{shown(path)}: {os.strerror(error.errno or 0)}"


class _Open:
    """A directory being fixed by batches of its entries: its descriptor stays open
    until the last batch is done."""

    __slots__ = ("fd", "path", "remaining")

    def __init__(self, fd: int, path: str, remaining: int) -> None:
        self.fd = fd
        self.path = path
        self.remaining = remaining


class Walk:
    """One volume's walk: what to leave alone, whom to give the rest to.

    Every directory is opened once and its entries are reached through its
    descriptor (`os.scandir(fd)`, `os.stat(name, dir_fd=)`, `os.chown(name,
    dir_fd=, follow_symlinks=False)`): no path is resolved again per entry, which on
    network storage is a lookup round trip per component.
    """

    def __init__(self, root: str, owner: Owner, device: int, below: set[str]) -> None:
        self.root = root
        self.owner = owner
        self.device = device
        self.below = below
        self.tally = Tally()
        self.changed: list[None] = []
        """One item per entry changed (an append is atomic: the threads need no lock)."""

    def open_directory(self, path: str) -> int | None:
        try:
            return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as error:
            self.tally.walk_error(path, error)
            return None

    def list_names(self, fd: int, path: str) -> list[str]:
        try:
            with os.scandir(fd) as entries:
                return [entry.name for entry in entries]
        except OSError as error:
            self.tally.walk_error(path, error)
            return []

    def entry(self, fd: int, parent: str, name: str) -> str | None:
        """Fix one entry of the directory open as `fd`; its path when it is a directory
        to walk."""
        if name == ".snapshot" or (name == "lost+found" and parent == self.root):
            return None
        path = f"{parent}/{name}" if parent != "/" else f"/{name}"
        if path in self.below:
            return None  # another mount: neither it nor its root directory is ours
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except OSError as error:
            self.tally.walk_error(path, error)
            return None
        is_directory = stat.S_ISDIR(st.st_mode)
        if is_directory and st.st_dev != self.device:
            return None  # a file system the mount table does not show: not crossed
        owner = self.owner
        if st.st_uid != owner.user or st.st_gid != owner.group:
            if not is_directory and st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                with self.tally.lock:
                    self.tally.links.setdefault(key, []).append(path)
                    self.tally.link_counts[key] = st.st_nlink
            else:
                try:
                    os.chown(name, owner.user, owner.group, dir_fd=fd, follow_symlinks=False)
                except OSError as error:
                    self.tally.failed(path, error)
                else:
                    self.changed.append(None)  # NB: list.append is atomic: no lock per entry
        return path if is_directory else None

    def directory(self, path: str) -> tuple[list[str], int]:
        """Fix the entries of one directory; its subdirectories, and how many entries."""
        fd = self.open_directory(path)
        if fd is None:
            return [], 0
        try:
            names = self.list_names(fd, path)
            found = [self.entry(fd, path, name) for name in names]
        finally:
            os.close(fd)
        return [p for p in found if p is not None], len(names)

    def chown(self, path: str) -> None:
        try:
            os.lchown(path, self.owner.user, self.owner.group)
        except OSError as error:
            self.tally.failed(path, error)
        else:
            self.changed.append(None)

    def run(self, parallel: int | None) -> int:
        """Walk the tree; the number of threads it used. Unless told, the first
        `PROBE_ENTRIES` entries are walked alone and timed (a cold lstat each, and a
        chown where needed): slow storage gets `PARALLEL_SLOW` threads for the rest."""
        pending = [self.root]
        if parallel is None:
            started, seen = time.perf_counter(), 0
            while pending and seen < PROBE_ENTRIES:
                seen += self._step(pending)
            spent = time.perf_counter() - started
            parallel = PARALLEL_SLOW if seen and spent / seen > SLOW_ENTRY else 1
        if parallel > 1 and pending:
            _Pool(self, parallel).run(pending)
            return parallel
        while pending:
            self._step(pending)
        return 1

    def _step(self, pending: list[str]) -> int:
        """Fix the next directory of `pending`, adding its subdirectories; its entries."""
        subdirectories, count = self.directory(pending.pop())
        pending.extend(subdirectories)
        return count

    def fix_links(self) -> tuple[int, str]:
        """Give away the files whose every name is inside the volume; the number of
        names left alone (a name elsewhere), and one of them."""
        kept, example = 0, ""
        for key, names in self.tally.links.items():
            if len(names) >= self.tally.link_counts[key]:
                for name in names:
                    self.chown(name)
            else:
                kept += len(names)
                example = example or names[0]
        return kept, example


BATCH = 32
"""Entries of one directory per task of the pool."""
OPEN_DIRECTORIES = 256
"""Directories open at once in the pool (each holds a descriptor until its last batch)."""


class _Pool:
    """Threads fixing batches of entries: a directory is listed once, its entries are
    handed out `BATCH` at a time (so one big directory is spread over the threads too),
    batches before directories, at most `OPEN_DIRECTORIES` open."""

    def __init__(self, walk: Walk, threads: int) -> None:
        self.walk = walk
        self.threads = threads
        self.cond = threading.Condition()
        self.batches: list[tuple[_Open, list[str]]] = []
        self.directories: list[str] = []
        self.open = 0
        self.active = 0

    def run(self, directories: list[str]) -> None:
        self.directories.extend(directories)
        pool = [threading.Thread(target=self._work, daemon=True) for _ in range(self.threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()

    def _next(self) -> tuple[_Open, list[str]] | str | None:
        with self.cond:
            while True:
                if self.batches:
                    task: tuple[_Open, list[str]] | str = self.batches.pop()
                    break
                if self.directories and self.open < OPEN_DIRECTORIES:
                    task = self.directories.pop()
                    self.open += 1
                    break
                if not self.directories and self.active == 0:
                    self.cond.notify_all()
                    return None
                self.cond.wait()
            self.active += 1
            return task

    def _work(self) -> None:
        while True:
            task = self._next()
            if task is None:
                return
            try:
                if isinstance(task, str):
                    self._list(task)
                else:
                    self._batch(*task)
            finally:
                with self.cond:
                    self.active -= 1
                    self.cond.notify_all()

    def _list(self, path: str) -> None:
        walk = self.walk
        fd = walk.open_directory(path)
        names = [] if fd is None else walk.list_names(fd, path)
        if fd is None or not names:
            if fd is not None:
                os.close(fd)
            with self.cond:
                self.open -= 1
            return
        chunks = [names[i : i + BATCH] for i in range(0, len(names), BATCH)]
        handle = _Open(fd, path, len(chunks))
        with self.cond:
            self.batches.extend((handle, chunk) for chunk in chunks)

    def _batch(self, handle: _Open, names: list[str]) -> None:
        found = [self.walk.entry(handle.fd, handle.path, name) for name in names]
        with self.cond:
            self.directories.extend(p for p in found if p is not None)
            handle.remaining -= 1
            if handle.remaining == 0:
                os.close(handle.fd)
                self.open -= 1


# -- one volume --------------------------------------------------------------------------


class Volume:
    """The fix of one volume directory: messages to the log, a summary line back."""

    def __init__(self, root: str, owner: Owner, flag: str, flagged: str, out: Log) -> None:
        self.root = os.path.abspath(root)
        self.owner = owner
        self.flag = os.path.join(root, flag)
        self.flag_name = flag
        self.flagged = flagged
        self.log = out
        self.name = shown(root.rstrip("/") or "/")

    def say(self, text: str, *, error: bool = False) -> None:
        self.log.line(f"{PREFIX}: {self.name}: {text}", error=error)

    def fix(self, parallel: int | None) -> bool:
        """True when the volume ends owned right (its flag may still be missing)."""
        try:
            st = os.lstat(self.root)
        except OSError:
            st = None
        if st is None or not stat.S_ISDIR(st.st_mode):
            self.say("not a mounted directory; check the volumeMount", error=True)
            return False
        if (st.st_uid, st.st_gid) == (self.owner.user, self.owner.group) and self._flagged():
            self.say(f"already owned by {self.owner}, nothing to do")
            self.log.summary(f"{self.name}: already owned by {self.owner}")
            return True
        info = mount_info(self.root)
        if not info.readable:
            self.say(
                "/proc/self/mountinfo is unreadable: only other filesystems are left out",
                error=True,
            )
        if info.read_only:
            return self._read_only(st)
        return self._walk(st, info, parallel)

    def _flagged(self) -> bool:
        try:
            fd = os.open(self.flag, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return False
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return False
            return os.read(fd, 4096).decode("utf-8", "replace").rstrip("\n") == self.flagged
        finally:
            os.close(fd)

    def _read_only(self, st: os.stat_result) -> bool:
        owner = f"{st.st_uid}:{st.st_gid}"
        if owner == str(self.owner):
            self.say(f"a read-only file system, already owned by {self.owner}")
            return True
        self.say(
            f"a read-only file system owned by {owner}, not {self.owner}: left as it is"
            " (the app cannot write here either)",
            error=True,
        )
        return True

    def _walk(self, st: os.stat_result, info: MountInfo, parallel: int | None) -> bool:
        root_changed = 0
        if (st.st_uid, st.st_gid) != (self.owner.user, self.owner.group):
            try:
                os.lchown(self.root, self.owner.user, self.owner.group)
            except OSError as error:
                cause = os.strerror(error.errno or 0)
                hint = f" {owners_hint(info, self.owner)}" if error.errno == errno.EPERM else ""
                self.say(
                    f"cannot change the owner of the volume root to {self.owner}: {cause}.{hint}"
                    if hint
                    else f"cannot change the owner of the volume root to {self.owner}: {cause}",
                    error=True,
                )
                return False
            root_changed = 1
        started = time.monotonic()
        walk = Walk(self.root, self.owner, st.st_dev, info.below)
        threads = walk.run(parallel)
        kept, example = walk.fix_links()
        tally = walk.tally
        if kept:
            self.say(
                f"{kept} files have a hard link outside the volume (changing them would change"
                f" the other names too), left alone, e.g. {shown(example)}",
                error=True,
            )
        if tally.read_only:
            self.say(
                f"{tally.read_only} entries on a read-only file system left as they are,"
                f" e.g. {tally.read_only_first}",
                error=True,
            )
        if tally.walk:
            why = "the walk failed"
            if tally.walk_first.endswith(os.strerror(errno.ENAMETOOLONG)):
                why = "a path longer than PATH_MAX, which the walk cannot pass"
            self.say(f"{why} ({tally.walk} errors), first: {tally.walk_first}", error=True)
            return False
        if tally.bad:
            why = tally.bad_cause
            if why == os.strerror(errno.EPERM):
                why = f"{why} ({self._eperm_cause(info)})"
            self.say(
                f"could not change the owner of {tally.bad} entries to {self.owner};"
                f" first: {tally.bad_first}: {why}",
                error=True,
            )
            return False
        reason = self._write_flag()
        took = time.monotonic() - started
        changed = len(walk.changed) + root_changed
        line = f"changed the owner of {changed} entries to {self.owner} in {took:.2f}s"
        self.say(line + (f" ({threads} threads)" if threads > 1 else ""))
        self.log.summary(f"{self.name}: {line}")
        if reason:
            self.say(f"warning: {reason}; the next start walks the volume again", error=True)
        return True

    def _eperm_cause(self, info: MountInfo) -> str:
        """Can root change owners on this volume at all? (A chown to the root's own
        owner is a no-op that still needs the permission.)"""
        try:
            st = os.lstat(self.root)
            os.lchown(self.root, st.st_uid, st.st_gid)
        except OSError:
            return f"root may not change ownership on this volume. {owners_hint(info, self.owner)}"
        return (
            "root can change owners elsewhere on this volume: the entry refuses, e.g. an"
            " immutable or append-only attribute; see lsattr"
        )

    def _write_flag(self) -> str:
        """Write the flag whole and owned, or not at all; why not, or ''."""
        try:
            if stat.S_ISDIR(os.lstat(self.flag).st_mode):
                return f"the flag path {shown(self.flag)} is a directory"
        except OSError:
            pass
        temp = f"{self.flag}.tmp.{os.getpid()}.{os.urandom(6).hex()}"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        except OSError as error:
            return f"the flag file could not be written: {os.strerror(error.errno or 0)}"
        try:
            try:
                os.write(fd, f"{self.flagged}\n".encode())
                os.fchown(fd, self.owner.user, self.owner.group)
            finally:
                os.close(fd)
            os.rename(temp, self.flag)
        except OSError as error:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            return f"the flag file could not be written: {os.strerror(error.errno or 0)}"
        return ""


class Log:
    """Lines for people (stdout, stderr) and the summary for the termination log."""

    def __init__(self) -> None:
        self.summaries: list[str] = []

    def line(self, text: str, *, error: bool = False) -> None:
        stream = sys.stderr if error else sys.stdout
        stream.write(text + "\n")
        stream.flush()

    def summary(self, text: str) -> None:
        self.summaries.append(text)

    def write_termination_log(self, path: str = TERMINATION_LOG) -> None:
        """One line for `kubectl describe pod` (the kubelet reads this file when the
        container ends); nothing when it does not exist, as outside a pod."""
        if not self.summaries or not os.path.exists(path):
            return
        text = "fix-ownership: " + "; ".join(self.summaries)
        data = text.encode("utf-8", "replace")[:TERMINATION_LOG_MAX]
        try:
            with open(path, "wb") as out:
                out.write(data)
        except OSError:
            pass


# -- the command -------------------------------------------------------------------------


def parse_owner(text: str) -> Owner:
    user, colon, group = text.partition(":")
    if not colon or not user.isdigit() or not group.isdigit():
        raise UsageError(f"--owner {text!r}: expected UID:GID, e.g. 1001:1001")
    owner = Owner(int(user), int(group))
    if max(owner.user, owner.group) > 2_147_483_647:
        raise UsageError(f"--owner {text!r}: a UID or GID is at most 2147483647")
    return owner


def parse_args(argv: list[str]) -> tuple[Owner, str, int | None, list[str]]:
    """`--owner U:G [--flag NAME] [--parallel N] [--] PATH...`, by hand: argparse
    alone costs more than the whole restart path."""
    owner: Owner | None = None
    flag: str = FLAG
    parallel: int | None = None
    paths: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg == "--":
            paths.extend(args)
            break
        if arg in ("-h", "--help"):
            raise UsageError(USAGE)
        if arg in ("--owner", "--flag", "--parallel"):
            option, value = arg, next(args, None)
            if value is None:
                raise UsageError(f"{arg} needs a value")
        elif arg.startswith(("--owner=", "--flag=", "--parallel=")):
            option, value = arg.split("=", 1)
        elif arg.startswith("-") and arg != "-":
            raise UsageError(f"unknown option {arg}")
        else:
            paths.append(arg)
            continue
        if option == "--owner":
            owner = parse_owner(value)
        elif option == "--flag":
            if not value or "/" in value or value in (".", ".."):
                raise UsageError(f"--flag {value!r}: a file name in the volume, e.g. {FLAG}")
            flag = value
        else:
            if not value.isdigit() or not 1 <= int(value) <= PARALLEL_MAX:
                raise UsageError(f"--parallel {value!r}: a number of threads, 1-{PARALLEL_MAX}")
            parallel = int(value)
    if owner is None:
        raise UsageError("--owner UID:GID is required")
    if not paths:
        raise UsageError("no volume directory given")
    return owner, flag, parallel, paths


USAGE = (
    "usage: dify-volume-init fix-ownership --owner UID:GID [--flag NAME] [--parallel N]"
    " [--] PATH..."
)


def main(argv: list[str] | None = None) -> int:
    """Fix every PATH; 0 when all end owned right, 1 when any could not be, 2 on a bad
    command line."""
    try:
        owner, flag, parallel, paths = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        print(f"dify-volume-init fix-ownership: {exc}", file=sys.stderr)
        return EXIT_USAGE
    token = os.environ.get(FULL_PASS_ENV, "")
    flagged = f"{owner} {token}" if token else str(owner)
    log = Log()
    status = EXIT_OK
    for path in paths:
        if not Volume(path, owner, flag, flagged, log).fix(parallel):
            status = EXIT_FAILED
    log.write_termination_log()
    return status
