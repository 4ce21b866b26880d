"""The shell script the injected init container runs, and the capabilities it needs.

The script is Dify's docker-compose `init_permissions` service made safe to
run on every pod start: it is idempotent, touches only what differs, never
follows a symbolic link, never leaves the volume's filesystem, and fails with
a message that names the path and the likely cause. It runs under busybox
`sh` with only the applets of the busybox image.

The find/chown pass runs one `chown -h` per batch of paths (each batch
reports its size, so names with newlines count right) and reports only a
batch's first error: on a root-squashed export every entry fails, and the
container log should stay readable. A file with more than one hard link is
left alone and named: its other names may be outside the volume (a hostPath
on the node's root filesystem), and changing the owner of the inode would
change theirs. NB: busybox `find` never runs an `-exec ... {} +` placed
inside parentheses, so the expression keeps them at the top level.

Volume paths reach the script as positional arguments (`"$@"`), never spliced
into its text, so no mount path can inject shell code; the only values in the
text are the two integers of the policy.
"""

from __future__ import annotations

import functools
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

_TEMPLATE = r"""set -u
want=@USER@:@GROUP@
status=0
for dir in "$@"; do
  flag="$dir/@FLAG@"
  if [ ! -d "$dir" ] || [ -h "$dir" ]; then
    echo "volume-init: $dir: not a mounted directory; check the volumeMount" >&2
    status=1
    continue
  fi
  if [ -f "$flag" ] && [ ! -h "$flag" ] && [ "$(cat -- "$flag" 2>/dev/null)" = "$want" ] \
     && [ "$(stat -c %u:%g -- "$dir")" = "$want" ]; then
    echo "volume-init: $dir: already owned by $want, nothing to do"
    continue
  fi
  start=$(date +%s)
  batch='out=$(chown -h "$0" -- "$@" 2>&1) ||
    { printf "%s\n" "$out" | head -n 1 >&2; exit 1; }; echo $#'
  skip='echo "volume-init: $1: has other hard links, left alone" >&2'
  set -o pipefail
  if changed=$(find "$dir" -xdev \
      ! \( -user @USER@ -group @GROUP@ \) ! -type d -links +1 -exec sh -c "$skip" - {} \; \
      -o ! \( -user @USER@ -group @GROUP@ \) -exec sh -c "$batch" "$want" {} + \
      | awk '{ n += $1 } END { print n + 0 }'); then
    set +o pipefail
    rm -f -- "$flag" && printf '%s\n' "$want" > "$flag" && chown -h "$want" -- "$flag" || {
      echo "volume-init: $dir: ownership fixed but the flag file $flag could not be written" >&2
      status=1
      continue
    }
    took=$(( $(date +%s) - start ))
    echo "volume-init: $dir: changed the owner of $changed entries to $want in ${took}s"
  else
    set +o pipefail
    bad=$(find "$dir" -xdev ! \( -user @USER@ -group @GROUP@ \) -print 2>/dev/null | head -n 1)
    echo "volume-init: $dir: cannot change the owner of '${bad:-$dir}' to $want." \
      "The volume does not let root change ownership: on NFS the export is likely" \
      "squashing root (root_squash); export it with no_root_squash or chown it to $want" \
      "on the server. SMB/CIFS and some CSI drivers need uid/gid mount options instead." >&2
    status=1
  fi
done
exit $status
"""


@functools.lru_cache(maxsize=64)
def render(*, user: int, group: int) -> str:
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
    return ["sh", "-c", render(user=user, group=group), NAME, *directories]


def runs_script(command: Any) -> bool:
    """`command` is one that `command()` made (whatever owner and directories)."""
    return isinstance(command, list) and command[:2] == ["sh", "-c"] and command[3:4] == [NAME]
