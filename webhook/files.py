"""The files a user gives the product, read: the one place the shells read them.

The engine is pure (text in, values out); the command line, the review and
the server read every file here and hand its bytes or text on. The files come
from ConfigMaps, Secrets and CI pipelines that other people edit, so the one
reader (`read_regular`) takes only regular files (symlinks followed, as a
ConfigMap volume's are), opens without blocking (a FIFO cannot stall it),
and stops at a stated size; standard input gets the same size cap
(`read_stream`). Every failure is a one-line `UsageError` naming the file.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from pathlib import Path
from typing import BinaryIO

from webhook.engine import policy
from webhook.engine.errors import UsageError

_KINDS = (
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)
_CHUNK = 1024 * 1024
# A policy is a ConfigMap key, and a ConfigMap holds at most 1 MiB.
MAX_POLICY_BYTES = 1024 * 1024
# A manifest file or `kubectl get pods -A -o json` for `review` and `audit`:
# about 5,000 pods of 20 KiB each.
MAX_MANIFEST_BYTES = 128 * 1024 * 1024


class InputError(UsageError):
    """A file or stream that cannot be read as given: `source[:line]: reason`."""

    def __init__(self, source: str, reason: str, line: int = 0) -> None:
        super().__init__(f"{source}:{line}: {reason}" if line else f"{source}: {reason}")
        self.source = source
        self.reason = reason
        self.line = line


STDIN = "<stdin>"
"""How standard input is named in messages."""


def read_regular(path: str | Path, *, limit: int, what: str) -> bytes:
    """The bytes of the regular file at `path`, at most `limit` of them.

    Refused in one line (`InputError`): a missing file, a symlink loop, a
    directory, a pipe, device or socket, an unreadable file, or one larger than
    `limit` (checked before reading and again while reading, as the file may
    grow).
    """
    source = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        raise InputError(source, _why(exc, what)) from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise InputError(source, f"is a directory, not a {what}")
        if not stat.S_ISREG(info.st_mode):
            kind = next((name for test, name in _KINDS if test(info.st_mode)), "not a file")
            raise InputError(source, f"is {kind}, not a regular file; a {what} must be one")
        if info.st_size > limit:
            raise InputError(source, _too_large(what, limit))
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise InputError(source, _why(exc, what)) from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise InputError(source, _too_large(what, limit))
    return data


def read_stream(stream: BinaryIO, *, name: str, limit: int, what: str) -> bytes:
    """At most `limit` bytes of `stream` (standard input), or a one-line `InputError`."""
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = stream.read(min(_CHUNK, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise InputError(name, _too_large(what, limit))
    return b"".join(chunks)


def _too_large(what: str, limit: int) -> str:
    return f"larger than {_size(limit)}, the most a {what} may be"


def _size(count: int) -> str:
    for unit, scale in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if count >= scale and count % scale == 0:
            return f"{count // scale} {unit}"
    return f"{count} bytes"


def _why(exc: OSError, what: str) -> str:
    if exc.errno == errno.ENOENT:
        return f"{what} not found"
    if exc.errno == errno.ELOOP:
        return "symlink loop"
    if exc.errno == errno.EISDIR:
        return f"is a directory, not a {what}"
    return f"cannot read: {exc.strerror}"


def load_policy(path: str | Path | None) -> policy.Policy:
    """The policy in the file at `path`, or the built-in one when `path` is None."""
    if path is None:
        return policy.default_policy()
    return policy.parse_policy(read_policy_text(path), source=str(path))


def read_policy_text(path: str | Path) -> str:
    """The text of a policy file (`-`: standard input); unreadable input raises a
    one-line `InputError`."""
    limit, what = MAX_POLICY_BYTES, "policy file"
    if str(path) == "-":
        return decode_text(read_stream(sys.stdin.buffer, name=STDIN, limit=limit, what=what), STDIN)
    return decode_text(read_regular(path, limit=limit, what=what), str(path))


def decode_text(raw: bytes, source: str) -> str:
    """`raw` as UTF-8 (a byte-order mark dropped), or an `InputError` naming line and byte."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(source, f"not UTF-8 text (byte {exc.start})", line) from None
