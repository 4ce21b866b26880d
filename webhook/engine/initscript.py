"""The shell script the injected init container runs, and the capabilities it needs.

The script (`volume-init.sh` beside this module; its header lists every
outcome) is Dify's docker-compose `init_permissions` service made safe to run
on every pod start: idempotent, it changes only the entries that differ,
never follows a symbolic link, never leaves the volume (other mounts below it
are pruned by their mount points, whatever their filesystem), leaves
read-only parts alone, ignores entries that vanish while it runs, and fails
when any entry could not be changed, naming the path and the cause the
system gave. It runs under busybox `sh` with only the applets of the busybox
image and no writable place but the volume.

Paths flow NUL-separated from `find -print0` to `xargs -0` batches, whose
records (on a tag byte no file name can fake at a line start) are summed by
one awk program: so every batch's failure counts, the count of changed
entries is exact, and names with newlines are whole. A file with other hard
links is changed only when all its names are inside the volume. NB: busybox
`find` never runs an `-exec ... {} +` placed inside parentheses, so the
expressions keep them at the top level.

Volume paths reach the script as positional arguments (`"$@"`), never spliced
into its text, so no mount path can inject shell code; the only values in the
text are the two integers of the policy.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

FLAG_FILE = ".init_permissions"
# `$0` of the script: how an init container of ours is recognised.
NAME = "volume-init"

# Root needs CHOWN to give entries away and DAC_OVERRIDE to walk into
# directories that only their (non-root) owner may read and to write the flag
# into a directory now owned by the app user. Both are within Pod Security
# "baseline"; nothing else is kept (tests run the script under setpriv with
# exactly this set).
CAPABILITIES: tuple[str, ...] = ("CHOWN", "DAC_OVERRIDE")


def _without_comments(text: str) -> str:
    """The script without its comment lines: they are for readers of the file, and
    every injected pod would carry them. NB: no line of a quoted string in the
    script starts with `#`."""
    return "".join(
        line for line in text.splitlines(keepends=True) if not line.lstrip().startswith("#")
    )


_TEMPLATE = _without_comments(
    resources.files("webhook.engine").joinpath("volume-init.sh").read_text("utf-8")
)


@functools.lru_cache(maxsize=64)
def script_text(*, user: int, group: int) -> str:
    """The script for one owner; volume directories are passed as arguments."""
    if not (isinstance(user, int) and isinstance(group, int)) or user < 0 or group < 0:
        raise ValueError("user and group must be non-negative integers")
    return (
        _TEMPLATE.replace("@USER@", str(user))
        .replace("@GROUP@", str(group))
        .replace("@FLAG@", FLAG_FILE)
    )


def command(*, user: int, group: int, directories: list[str]) -> list[str]:
    """The init container's `command`: `sh -c SCRIPT volume-init DIR...`."""
    return ["sh", "-c", script_text(user=user, group=group), NAME, *directories]


def runs_script(command: Any) -> bool:
    """`command` is one that `command()` made (whatever owner and directories)."""
    return isinstance(command, list) and command[:2] == ["sh", "-c"] and command[3:4] == [NAME]
