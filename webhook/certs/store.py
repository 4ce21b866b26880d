"""The certificate directory on disk: written as one set, locked, made whole.

Every write of certificates and keys goes through `replace_files`: each file
staged in full beside its target and synced, a journal naming the set, then
the renames (`make_whole` finishes a journalled set after a crash). Private
keys are 0600. One `certs` at a time holds a directory (`locked`, an flock on
the directory itself). Which files the directory holds is `layout`'s.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from webhook.certs import layout, pki
from webhook.certs.pki import CertificateError

PUBLIC, PRIVATE = 0o644, 0o600


def write_files(out_dir: Path, bundle: pki.Bundle, *, force: bool = False) -> list[Path]:
    """Write the CA and serving certificate and keys (`layout`) into `out_dir` as one set.

    Refuses to overwrite an existing file unless `force`; the keys are 0600.
    """
    files = {
        layout.CA_CERT: (bundle.ca_cert, PUBLIC),
        layout.CA_KEY: (bundle.ca_key, PRIVATE),
        layout.TLS_CERT: (bundle.cert, PUBLIC),
        layout.TLS_KEY: (bundle.key, PRIVATE),
    }
    make_directory(out_dir)
    existing = [out_dir / name for name in files if (out_dir / name).exists()]
    if existing and not force:
        raise CertificateError(f"{existing[0]}: already exists (use --force to replace it)")
    return replace_files(out_dir, files)


def make_directory(directory: Path) -> None:
    """`mkdir -p`, or a one-line `CertificateError`."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CertificateError(f"{directory}: cannot create directory: {exc.strerror}") from None


JOURNAL = ".journal"
"""In a certificate directory while a set of files is being switched in: the staged
files and their targets. Its presence means "roll forward": `recover` finishes it."""


def replace_files(
    directory: Path, files: dict[str, tuple[bytes, int]], *, remove: tuple[str, ...] = ()
) -> list[Path]:
    """Write `files` (name: data, mode) into `directory`, then remove `remove`, as one set.

    Every file is first written in full to a temporary file beside its target (and
    synced); then a journal naming them is written in one rename, and only then are
    they renamed into place. Interrupted anywhere (a signal, a full disk, a crash), the
    directory holds either the old set or, with the journal, a set `recover` finishes:
    never a certificate beside another certificate's key.
    """
    staged: list[tuple[str, Path]] = []
    try:
        for name, (data, mode) in files.items():
            staged.append((_stage(directory / name, data, mode=mode), directory / name))
        journal: dict[str, list[Any]] = {
            "replace": [[Path(tmp).name, target.name] for tmp, target in staged],
            "remove": [name for name in remove if name not in files],
        }
        journal_tmp = _stage(directory / JOURNAL, json.dumps(journal).encode(), mode=PRIVATE)
        os.replace(journal_tmp, directory / JOURNAL)
        _sync_directory(directory)
        _roll_forward(directory, journal)
    except OSError as exc:
        failed = exc.filename or directory
        raise CertificateError(f"{failed}: cannot write: {exc.strerror}") from None
    finally:
        if not (directory / JOURNAL).exists():
            for tmp, _ in staged:
                Path(tmp).unlink(missing_ok=True)
    return [target for _, target in staged]


def _roll_forward(directory: Path, journal: dict[str, list[Any]]) -> None:
    """Rename each staged file still there into place, remove what goes, drop the journal.
    Done again after an interruption, it finishes the same set."""
    for tmp_name, target in journal["replace"]:
        tmp = directory / tmp_name
        if tmp.exists():
            os.replace(tmp, directory / target)
    for name in journal["remove"]:
        (directory / name).unlink(missing_ok=True)
    _sync_directory(directory)
    (directory / JOURNAL).unlink()
    _sync_directory(directory)


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_whole(directory: Path, names: tuple[str, ...]) -> list[str]:
    """Make `directory` whole after an interrupted write: finish a journalled set,
    remove staged files left behind (`names` are the files the directory may hold)
    and make a private key anyone else can read private again. What it did, one line
    each."""
    lines: list[str] = []
    journal_path = directory / JOURNAL
    staged = re.compile(rf"^\.({'|'.join(map(re.escape, (*names, JOURNAL)))})\.[a-z0-9_]{{8}}$")
    if journal_path.exists():
        try:
            journal = json.loads(journal_path.read_text())
            # NB: only our own names: a journal cannot move or remove anything else
            for tmp_name, target in journal["replace"]:
                if not staged.match(tmp_name) or target not in names:
                    raise ValueError(f"unexpected entry {tmp_name!r} -> {target!r}")
            if any(name not in names for name in journal["remove"]):
                raise ValueError("unexpected removal")
            _roll_forward(directory, journal)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CertificateError(
                f"{journal_path}: an interrupted write cannot be finished ({exc}); move the"
                " directory aside and start over with `certs --force`"
            ) from None
        lines.append(f"finished the interrupted write recorded in {journal_path}")
    for leftover in sorted(directory.glob(".*")):
        if staged.match(leftover.name) and leftover.is_file():
            leftover.unlink()
            lines.append(f"removed {leftover}, left by an interrupted run")
    for name in names:
        path = directory / name
        if name.endswith(".key") and path.is_file():
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode & 0o077:
                path.chmod(PRIVATE)
                lines.append(
                    f"warning: {path} was readable by others (mode {mode:04o}); it is 0600"
                    " now: whoever read it can sign certificates the webhook trusts"
                )
    return lines


def _stage(target: Path, data: bytes, *, mode: int) -> str:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def ensure_development_certificates(cert_dir: Path, *, service: str, namespace: str) -> bool:
    """Create a development CA and serving certificate in `cert_dir` if there are none.

    The serving certificate is valid for localhost, 127.0.0.1, ::1 and the
    Service's DNS names. Returns True when it wrote new files.
    """
    if (cert_dir / layout.TLS_CERT).exists() or (cert_dir / layout.TLS_KEY).exists():
        return False
    bundle = pki.build(
        dns_names=["localhost", *pki.service_names(service, namespace)],
        ip_addresses=["127.0.0.1", "::1"],
    )
    write_files(cert_dir, bundle)
    return True


LOCK_TIMEOUT = 30.0
"""Seconds a second `certs` on the same directory waits for the first."""


@contextlib.contextmanager
def locked(d: Path, *, timeout: float = LOCK_TIMEOUT, recover: bool = True) -> Iterator[list[str]]:
    """Hold the directory's lock (an flock on the directory itself: no lock file to
    leave behind), then make the directory whole (`make_whole`); yields what the
    recovery did. A second holder waits up to `timeout` seconds, then a one-line
    `CertificateError` names the process holding it."""
    if recover:
        make_directory(d)
    try:
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise CertificateError(f"{d}: cannot open the directory: {exc.strerror}") from None
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise CertificateError(f"{d}: cannot lock: {exc.strerror}") from None
                if time.monotonic() >= deadline:
                    raise CertificateError(
                        f"{d}: locked by another process ({_holder(fd)}) for more than"
                        f" {timeout:g} s (--lock-timeout); wait for it, or stop it and run"
                        " again: an interrupted run is finished or undone by the next"
                    ) from None
                time.sleep(0.05)
        if recover:
            yield make_whole(d, layout.FILES)
        elif (d / JOURNAL).exists():
            raise CertificateError(
                f"{d / JOURNAL}: a write was interrupted here; any `certs` step"
                " (e.g. --renew) finishes it first"
            )
        else:
            yield []
    finally:
        os.close(fd)  # releases the lock


def _holder(fd: int) -> str:
    """`pid N: its command line` of the process holding the flock on `fd`'s inode,
    read from /proc/locks; `an unknown process` when it cannot be told."""
    info = os.fstat(fd)
    inode = f":{info.st_ino} "
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as handle:
            for line in handle:
                fields = line.split()
                if "FLOCK" in fields and inode in line and "->" not in fields:
                    pid = fields[4]
                    command = Path(f"/proc/{pid}/cmdline").read_bytes()
                    text = command.replace(b"\0", b" ").decode(errors="replace")
                    # NB: a command line can hold newlines; one line is printed
                    shown = "".join(c if c.isprintable() else " " for c in text).strip()
                    return f"pid {pid}: {' '.join(shown.split())[:120]}"
    except OSError:
        pass
    return "an unknown process"
