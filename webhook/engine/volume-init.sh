# volume-init: give each volume directory named as an argument to @USER@:@GROUP@.
# Rendered by webhook/engine/initscript.py (@USER@, @GROUP@, @FLAG@; the comment
# lines are dropped); run by busybox sh as root with only CAP_CHOWN and
# CAP_DAC_OVERRIDE, on a read-only root filesystem.
#
# Outcomes, per directory:
# - flag file holds @USER@:@GROUP@ and the root is owned so: nothing to do (one stat);
# - otherwise every entry not owned so is changed, except: other mounts below the
#   root (their mount points are pruned, whatever their filesystem), `.snapshot`
#   directories, the root's `lost+found`, and files with a hard link outside the
#   volume; entries that vanish meanwhile are ignored; then the flag is written;
# - read-only is not failure: a read-only root is left as it is, and said;
# - any entry that could not be changed fails the run (exit 1), naming the first
#   such path and the cause the system gave; root_squash is named only when root
#   cannot change ownership on the volume at all;
# - a flag that cannot be written is a warning: the flag is a cache.
# Paths are arguments, never script text; messages print them escaped and whole.
set -u
export VI_USER=@USER@ VI_GROUP=@GROUP@
want=$VI_USER:$VI_GROUP
# The flag records the owner, and the full-pass token when the pod has one
# (annotation volume-init.dify.ai/full-pass): a new token forces one full walk.
flagged=$want${VOLUME_INIT_FULL_PASS:+ $VOLUME_INIT_FULL_PASS}
status=0
# Worker records start with this byte, so that no file name passes for one.
VI_TAG=$(printf '\001')
# A path for a message: control characters as \ooo, `\` doubled, newlines as \n.
VI_ESC='BEGIN {
  for (i = 1; i < 32; i++) code[sprintf("%c", i)] = sprintf("\\%03o", i)
  code["\\"] = "\\\\"; code[sprintf("%c", 127)] = "\\177"
}
{
  out = out (NR > 1 ? "\\n" : "")
  n = length($0)
  for (i = 1; i <= n; i++) { c = substr($0, i, 1); out = out ((c in code) ? code[c] : c) }
}
END { printf "%s", out }'
# A batch of paths from find: change them all; when that fails, find out which
# failed and why, one record each. ok N: N changed. part E: E of the batch still
# exist. Then per entry still wrong: fixed (a retry worked), gone (vanished),
# ro (read-only), bad CAUSE<TAB>PATH (the first real failure; the batch stops
# there and says how many it did not try: skip N).
VI_FIX='
if chown -h "$VI_USER:$VI_GROUP" -- "$@" 2>/dev/null; then
  echo "${VI_TAG}ok $#"
  exit 0
fi
echo "${VI_TAG}part $(find "$@" -maxdepth 0 -print0 2>/dev/null | tr -cd "\0" | wc -c)"
find "$@" -maxdepth 0 ! \( -user "$VI_USER" -group "$VI_GROUP" \) -print0 2>/dev/null |
  xargs -0 -r sh -c "$VI_PROBE" -
'
VI_PROBE='
left=$#
for f; do
  left=$((left - 1))
  if err=$(chown -h "$VI_USER:$VI_GROUP" -- "$f" 2>&1); then
    echo "${VI_TAG}fixed"
    continue
  fi
  cause=${err##*: }
  shown=$(printf "%s" "$f" | awk "$VI_ESC")
  case $cause in
    "No such file or directory") echo "${VI_TAG}gone" ;;
    "Read-only file system") printf "%sro\\t%s\\n" "$VI_TAG" "$shown" ;;
    *)
      printf "%sbad %s\\t%s\\n" "$VI_TAG" "$cause" "$shown"
      echo "${VI_TAG}skip $left"
      exit 0
      ;;
  esac
done
'
# Sums the records and classifies what find said on the way (a name with
# newlines spans lines; a vanished directory is not an error). Prints, joined by
# the tag byte: changed, ro count, first ro path, bad count, cause, first bad path,
# walk error count, first walk error.
VI_SUM='BEGIN { tag = sprintf("%c", 1) }
function flush(  cause) {
  if (msg == "") return
  cause = msg; sub(/.*: /, "", cause)
  if (cause != "No such file or directory") { walk++; if (walk == 1) walkfirst = msg }
  msg = ""
}
function rest(s) { return substr(s, index(s, "\t") + 1) }
substr($0, 1, 1) == tag {
  flush()
  split(substr($0, 2), f, " ")
  if (f[1] == "ok" || f[1] == "part") changed += f[2]
  else if (f[1] == "gone") changed--
  else if (f[1] == "skip") { changed -= f[2]; bad += f[2] }
  else if (f[1] == "ro") { changed--; ro++; if (ro == 1) rofirst = rest($0) }
  else if (f[1] == "bad") {
    changed--; bad++
    if (badcause == "") { badcause = substr($0, 6, index($0, "\t") - 6); badfirst = rest($0) }
  }
  else if (f[1] == "find" && f[2] > 1) { walk++; if (walk == 1) walkfirst = "find ended with status " f[2] }
  else if (f[1] == "xargs" && f[2] != 0) { walk++; if (walk == 1) walkfirst = "xargs ended with status " f[2] }
  next
}
{ line = $0; gsub(/\\/, "\\\\", line); if (line ~ /^find: /) { flush(); msg = line } else msg = msg (msg == "" ? "" : "\\n") line }
END {
  flush()
  printf "%d%s%d%s%s%s%d%s%s%s%s%s%d%s%s\n", changed, tag, ro, tag, rofirst, tag, bad, tag, badcause, tag, badfirst, tag, walk, tag, walkfirst
}'
export VI_TAG VI_ESC VI_FIX VI_PROBE

esc() { printf '%s' "$1" | awk "$VI_ESC"; }

# What /proc/self/mountinfo says of the directory $1: `ro 0|1` for the mount it
# is on, and `prune PATTERN` for each mount below it (a find -path pattern; a
# newline in a mount point matches as `?`).
mounts() {
  VI_DIR=$1 awk '
    function decode(s,  out, i) {
      out = ""
      while ((i = index(s, "\\")) > 0) {
        out = out substr(s, 1, i - 1) sprintf("%c", substr(s, i + 1, 1) * 64 + substr(s, i + 2, 1) * 8 + substr(s, i + 3, 1))
        s = substr(s, i + 4)
      }
      return out s
    }
    function glob(s) { gsub(/[][*?\\]/, "\\\\&", s); gsub(/\n/, "?", s); return s }
    BEGIN { dir = ENVIRON["VI_DIR"]; best = -1 }
    {
      mp = decode($5)
      ro = ($6 ~ /(^|,)ro(,|$)/)
      for (i = 7; i < NF && $i != "-"; i++) {}
      if ($(i + 3) ~ /(^|,)ro(,|$)/) ro = 1
      if (mp == dir || mp == "/" || index(dir, mp "/") == 1) {
        if (length(mp) >= best) { best = length(mp); rootro = ro; fs = $(i + 1); sb = $(i + 3) }
      } else if (index(mp, dir "/") == 1) print "prune " glob(mp)
    }
    END {
      print "ro " (rootro + 0)
      print "fs " fs
      n = split(sb, opt, ",")
      for (k = 1; k <= n; k++)
        if (opt[k] ~ /^(no)?(force)?(uid|gid)(=|$)|^(user|group)_id=|^(file|dir)_mode=/)
          ids = ids (ids == "" ? "" : ",") opt[k]
      print "ids " ids
    }' /proc/self/mountinfo
}

# Why root may not change owners on the volume and what to do, by its file system type
# (from mountinfo: $fstype, and $idopts, its uid/gid options). FUSE, SMB/CIFS and object
# stores take owners from mount options, not chown; NFS squashes root.
owners_hint() {
  given="${idopts:-none}"
  case $fstype in
    fuse.s3fs | fuse.goofys | fuse.mountpoint-s3 | fuse.geesefs | fuse.gcsfuse | fuse.blobfuse | \
      fuse.blobfuse2 | fuse.ossfs | fuse.cosfs | fuse.obsfs | fuse.rclone | fuse.s3backer)
      echo "The volume is $fstype, an object store mounted through FUSE: it keeps no owners" \
        "and shows those its mount options give (uid/gid options: $given). Mount it with" \
        "uid=$VI_USER,gid=$VI_GROUP (CSI: mountOptions), or let Dify write to the store" \
        "itself (STORAGE_TYPE) and drop the mount."
      ;;
    fuse | fuse.* | fuseblk)
      echo "The volume is $fstype, a FUSE file system: owners are what its daemon reports" \
        "(uid/gid options: $given); mount it with the daemon's uid/gid options for $want."
      ;;
    cifs | smb3 | smbfs)
      echo "The volume is $fstype, an SMB/CIFS share: owners come from its mount options" \
        "(uid/gid options: $given), not from chown; mount it with" \
        "uid=$VI_USER,gid=$VI_GROUP,forceuid,forcegid (CSI: mountOptions)."
      ;;
    nfs | nfs4)
      echo "The NFS export is likely squashing root (root_squash); export it with" \
        "no_root_squash or chown it to $want on the server."
      ;;
    *)
      echo "The volume does not let root change ownership: on NFS the export is likely" \
        "squashing root (root_squash); export it with no_root_squash or chown it to $want" \
        "on the server. SMB/CIFS and some CSI drivers need uid/gid mount options instead." \
        "(On a local file system, the directory may be immutable: lsattr -d.)"
      ;;
  esac
}

# find's pattern for the directory itself, for `-path`.
pattern() { printf '%s/' "$1" | sed 's/[][*?\\]/\\&/g'; }

# fix_tree DIR [-o -path PATTERN]...: the walk, its records to stdout. Files with
# more than one link are held back for the census; their count goes to fd 3.
# NB: batches of 128 KiB of paths (busybox's default is 32 KiB: four times the
# processes). Neither busybox xargs nor find counts the environment against
# ARG_MAX (2 MiB at the usual 8 MiB stack); a batch that does not fit fails the
# run with xargs' own message, never silently.
fix_tree() {
  dir=$1
  shift
  {
    find "$dir" -xdev \( -name .snapshot -o -path "$(pattern "$dir")lost+found" "$@" \) -prune \
      -o -user "$VI_USER" -group "$VI_GROUP" \
      -o ! -type d -links +1 -exec sh -c 'echo "$#" >&3' - {} + \
      -o -print0 2>&4
    echo "${VI_TAG}find $?" >&4
  } | xargs -0 -r -s 131072 sh -c "$VI_FIX" - >&4
  echo "${VI_TAG}xargs $?" >&4
}

# fix_links DIR [-o -path PATTERN]...: files with more than one name are given
# away when every name is inside the volume; an inode with a name elsewhere (its
# link count above the names found here) is left alone. Records to stdout, one
# summary line to stderr.
fix_links() {
  dir=$1
  shift
  unsafe=$(find "$dir" -xdev \( -name .snapshot -o -path "$(pattern "$dir")lost+found" "$@" \) -prune \
      -o ! -type d -links +1 -print0 2>/dev/null |
    xargs -0 -r stat -c '%i %h' -- 2>/dev/null |
    awk '{ n[$1]++; h[$1] = $2 } END { for (i in n) if (n[i] < h[i]) { print i; kept += n[i] } print "kept " kept + 0 }')
  kept=${unsafe##*kept }
  set -- "$dir" -xdev \( -name .snapshot -o -path "$(pattern "$dir")lost+found" "$@" \) -prune \
    -o -user "$VI_USER" -group "$VI_GROUP" -o -type d -o -links 1
  for inode in ${unsafe%kept*}; do
    set -- "$@" -o -inum "$inode"
  done
  find "$@" -o -print0 2>/dev/null | xargs -0 -r -s 131072 sh -c "$VI_FIX" -
  echo "${VI_TAG}xargs $?"
  if [ "$kept" -gt 0 ]; then
    first=$(find "$dir" -xdev -inum "${unsafe%%[!0-9]*}" -exec printf '%s/' {} \; -quit 2>/dev/null)
    echo "volume-init: $(esc "$dir"): $kept files have a hard link outside the volume" \
      "(changing them would change the other names too), left alone, e.g. $(esc "${first%/}")" >&2
  fi
}

for dir in "$@"; do
  case $dir in
    *[![:print:]]* | *\\*) shown=$(esc "$dir") ;;
    *) shown=$dir ;; # nothing to escape: no process on the restart path
  esac
  flag=$dir/@FLAG@
  if [ ! -d "$dir" ] || [ -h "$dir" ]; then
    echo "volume-init: $shown: not a mounted directory; check the volumeMount" >&2
    status=1
    continue
  fi
  owner=$(stat -c %u:%g -- "$dir")
  if [ "$owner" = "$want" ] && [ -f "$flag" ] && [ ! -h "$flag" ] &&
    [ "$(cat -- "$flag" 2>/dev/null)" = "$flagged" ]; then
    echo "volume-init: $shown: already owned by $want, nothing to do"
    continue
  fi
  fstype= idopts=
  if info=$(mounts "$dir" 2>/dev/null); then
    set --
    while IFS= read -r line; do
      case $line in
        "prune "*) set -- "$@" -o -path "${line#prune }" ;;
        "ro 1") read_only=1 ;;
        "ro 0") read_only=0 ;;
        "fs "*) fstype=${line#fs } ;;
        "ids "*) idopts=${line#ids } ;;
      esac
    done <<EOF
$info
EOF
  else
    echo "volume-init: $shown: /proc/self/mountinfo is unreadable: only other filesystems are left out" >&2
    set --
    read_only=0
  fi
  if [ "$read_only" = 1 ]; then
    if [ "$owner" = "$want" ]; then
      echo "volume-init: $shown: a read-only file system, already owned by $want"
    else
      echo "volume-init: $shown: a read-only file system owned by $owner, not $want: left as it is" \
        "(the app cannot write here either)" >&2
    fi
    continue
  fi
  # The root first: when root may not change its owner, nothing else is tried.
  root_changed=0
  if [ "$owner" != "$want" ] && ! err=$(chown -h "$want" -- "$dir" 2>&1); then
    cause=${err##*: }
    case $cause in
      "Operation not permitted")
        echo "volume-init: $shown: cannot change the owner of the volume root to $want:" \
          "$cause. $(owners_hint)" >&2
        ;;
      *) echo "volume-init: $shown: cannot change the owner of the volume root to $want: $cause" >&2 ;;
    esac
    status=1
    continue
  fi
  [ "$owner" = "$want" ] || root_changed=1
  start=$(date +%s)
  if ! summary=$(
    {
      links=$({ fix_tree "$dir" "$@"; } 3>&1)
      if [ -n "$links" ]; then
        fix_links "$dir" "$@" >&4
      fi
    } 4>&1 | awk "$VI_SUM"
  ) || [ -z "$summary" ]; then
    echo "volume-init: $shown: the walk's records could not be summed; nothing is known" >&2
    status=1
    continue
  fi
  set -f
  IFS=$VI_TAG
  # shellcheck disable=SC2086
  set -- $summary
  unset IFS
  set +f
  changed=$((${1:-0} + root_changed)) ro=${2:-0} ro_first=${3:-} bad=${4:-0} cause=${5:-} bad_first=${6:-}
  walk=${7:-0} walk_first=${8:-}
  if [ "$ro" -gt 0 ]; then
    echo "volume-init: $shown: $ro entries on a read-only file system left as they are," \
      "e.g. $ro_first" >&2
  fi
  if [ "$walk" -gt 0 ]; then
    case $walk_first in
      *": File name too long") why="a path longer than PATH_MAX, which busybox find cannot walk" ;;
      *) why="the walk failed" ;;
    esac
    echo "volume-init: $shown: $why ($walk errors), first: $walk_first" >&2
    status=1
    continue
  fi
  if [ "$bad" -gt 0 ]; then
    why=$cause
    if [ "$cause" = "Operation not permitted" ]; then
      # Evidence: can root change ownership on this volume at all?
      if chown -h "$(stat -c %u:%g -- "$dir")" -- "$dir" 2>/dev/null; then
        why="$cause (root can change owners elsewhere on this volume: the entry refuses, e.g. an immutable or append-only attribute; see lsattr)"
      else
        why="$cause (root may not change ownership on this volume. $(owners_hint))"
      fi
    fi
    echo "volume-init: $shown: could not change the owner of $bad entries to $want;" \
      "first: $bad_first: $why" >&2
    status=1
    continue
  fi
  # The flag is a cache: write it whole and owned, or not at all.
  # NB: a unique name (mktemp, O_EXCL, mode 0600): `$$` is 1 in every container, so
  # api and worker starting together on one ReadWriteMany volume would share it. No
  # chmod: another pod's walk may give the file to the app user first, and root
  # without CAP_FOWNER may not chmod what it does not own.
  if [ -d "$flag" ] && [ ! -h "$flag" ]; then
    reason="the flag path $(esc "$flag") is a directory"
  elif ! err=$({
    temp=$(mktemp "$dir/@FLAG@.tmp.XXXXXX") || exit 1
    printf '%s\n' "$flagged" > "$temp" && chown -h "$want" -- "$temp" &&
      mv -f -- "$temp" "$flag" && exit 0
    rm -f -- "$temp" 2>/dev/null
    exit 1
  } 2>&1); then
    reason="the flag file could not be written: ${err##*: }"
  else
    reason=
  fi
  took=$(($(date +%s) - start))
  echo "volume-init: $shown: changed the owner of $changed entries to $want in ${took}s"
  if [ -n "$reason" ]; then
    echo "volume-init: $shown: warning: $reason; the next start walks the volume again" >&2
  fi
done
exit $status
