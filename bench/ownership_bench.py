"""The init container's ownership fix on 100,000 files, against Dify compose's `chown -R`.

Run from the repository root, as root (by hand; needs busybox):

    .venv/bin/python bench/ownership_bench.py [--files 100000] [--runs 3] [--previous FILE]

The script is taken from a real patch (the dify-helm api golden pod) and run
by busybox `sh` with a PATH of busybox applets only, as in the busybox image,
on a real tree; the baseline is Dify docker-compose's `chown -R 1001:1001` by
the same busybox on the same tree. Four cases: (a) everything root-owned, no
flag; (b) 1% of the files root-owned, the rest already 1001, no flag;
(c) the flag present and the volume root already 1001:1001; (d) a second
tree of 20,000 root-owned files with two names each, both inside the volume.
Medians of the runs; the tree is reset (untimed) before each. In (a) it also
times the floor of the script's design, `find -xdev -print0 | xargs -0 chown
-h` with no filter, prune or record (what the walk-then-change design costs
before any of its safety). `--previous`
times another version of the script in the same runs, interleaved (e.g. the
file `git show REV:webhook/volume-init.sh` prints), for a before/after.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import helpers  # noqa: E402
from webhook.engine import mutation, policy  # noqa: E402


def script_command() -> list[str]:
    pod = helpers.load_pod(helpers.PODS / "helm-api.yaml")
    decision = mutation.mutate(pod, policy.default_policy(), namespace="dify")
    command: list[str] = decision.pod["spec"]["initContainers"][0]["command"]
    return command[:-1]  # without the mount path: the tree's path goes there


def build(root: Path, files: int) -> list[Path]:
    per_dir = 1000
    paths = []
    for d in range(max(1, files // per_dir)):
        directory = root / f"upload_files/tenant-{d % 10}/dir-{d:04d}"
        directory.mkdir(parents=True)
        for f in range(per_dir):
            path = directory / f"file-{f:04d}.bin"
            path.write_bytes(b"x")
            paths.append(path)
    return paths


def chown_tree(root: Path, uid: int) -> None:
    subprocess.run(["chown", "-R", "-h", f"{uid}:{uid}", str(root)], check=True)


def timed(command: list[str], env: dict[str, str], *, check: bool = True) -> float:
    start = time.perf_counter()
    subprocess.run(
        command, check=check, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--previous", type=Path, help="another script to time in the same runs")
    args = parser.parse_args()
    if os.geteuid() != 0 or shutil.which("busybox") is None:
        raise SystemExit("run as root with busybox installed (apt-get install busybox)")
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        work = Path(tmp)
        applets = work / "bin"
        applets.mkdir()
        subprocess.run(["busybox", "--install", "-s", str(applets)], check=True)
        env = {"PATH": str(applets)}
        tree = work / "storage"
        tree.mkdir()
        started = time.perf_counter()
        files = build(tree, args.files)
        entries = sum(1 for _ in tree.rglob("*")) + 1
        took = time.perf_counter() - started
        print(f"tree: {entries} entries ({len(files)} files), built in {took:.1f} s")
        ours = [*script_command(), str(tree)]
        previous: list[str] = []
        if args.previous:
            text = args.previous.read_text()
            for key, value in (("@USER@", "1001"), ("@GROUP@", "1001")):
                text = text.replace(key, value)
            previous = ["sh", "-c", text.replace("@FLAG@", ".init_permissions"), "volume-init"]
        compose = [str(applets / "chown"), "-R", "1001:1001", str(tree)]
        flag = tree / ".init_permissions"

        def reset_all_root() -> None:
            flag.unlink(missing_ok=True)
            chown_tree(tree, 0)

        def reset_one_percent() -> None:
            flag.unlink(missing_ok=True)
            chown_tree(tree, 1001)
            for path in files[::100]:
                os.chown(path, 0, 0)

        def reset_flagged() -> None:
            chown_tree(tree, 1001)
            subprocess.run([*ours], check=True, env=env, stdout=subprocess.DEVNULL)
            assert flag.exists()

        linked = work / "linked"
        linked_files = build(linked, 20_000)
        (linked / "links").mkdir()
        for i, path in enumerate(linked_files):
            os.link(path, linked / "links" / f"{i:06d}")
        ours_linked = [*script_command(), str(linked)]
        compose_linked = [str(applets / "chown"), "-R", "1001:1001", str(linked)]

        def reset_linked() -> None:
            (linked / ".init_permissions").unlink(missing_ok=True)
            chown_tree(linked, 0)

        floor_command = [
            str(applets / "sh"),
            "-c",
            'find "$1" -xdev -print0 | xargs -0 -r -s 131072 chown -h 1001:1001 --',
            "-",
            str(tree),
        ]
        floor: list[float] = []
        results = {}
        earlier: dict[str, float] = {}
        unfixed: set[str] = set()
        for case, reset in (
            ("(a) all root-owned", reset_all_root),
            ("(b) 1% mismatched", reset_one_percent),
            ("(c) flag present", reset_flagged),
            ("(d) 20,000 hard-linked", reset_linked),
        ):
            mine, base, before = [], [], []
            command, baseline = (
                (ours_linked, compose_linked) if case.startswith("(d)") else (ours, compose)
            )
            checked = linked_files if case.startswith("(d)") else files
            for _ in range(args.runs):
                if previous:
                    reset()
                    target = command[-1]
                    before.append(timed([*previous, target], env, check=False))
                    owners = {(p.lstat().st_uid, p.lstat().st_gid) for p in checked[::97]}
                    if owners != {(1001, 1001)}:
                        unfixed.add(case)
                reset()
                mine.append(timed(command, env))
                owners = {(p.lstat().st_uid, p.lstat().st_gid) for p in checked[::97]}
                assert owners == {(1001, 1001)}, f"{case}: the script left {owners}"
                if case.startswith("(a)"):
                    reset()
                    floor.append(timed(floor_command, env))
                if case.startswith("(c)"):
                    # compose skips the chown when its flag file exists: a test and an exit
                    base.append(timed([str(applets / "sh"), "-c", f"test -f {flag}"], env))
                else:
                    reset()
                    base.append(timed(baseline, env))
            results[case] = (statistics.median(mine), statistics.median(base))
            if before:
                earlier[case] = statistics.median(before)
        print(f"{'case':22} {'init script':>12} {'chown -R':>10} {'ratio':>7}  previous script")
        for case, (mine_s, base_s) in results.items():
            ratio = mine_s / base_s
            line = f"{case:22} {mine_s * 1000:>9.0f} ms {base_s * 1000:>7.0f} ms {ratio:>6.2f}x"
            if case in earlier:
                line += f"  {earlier[case] * 1000:>7.0f} ms ({earlier[case] / base_s:.2f}x)"
                line += " leaving files unfixed" if case in unfixed else ""
            print(line)
        a, b, c, _ = results.values()
        low = statistics.median(floor)
        print(
            f"(a) the design's floor, find | xargs chown with no filter: {low * 1000:.0f} ms"
            f" ({low / a[1]:.2f}x chown -R; the script is {a[0] / low:.2f}x the floor)"
        )
        verdict = {True: "met", False: "NOT met"}
        print(
            f"target (a) at most 1.2x chown -R: {verdict[a[0] <= 1.2 * a[1]]} ({a[0] / a[1]:.2f}x)"
        )
        print(f"target (b) at least 2x faster: {verdict[b[1] >= 2 * b[0]]} ({b[1] / b[0]:.1f}x)")
        print(f"target (c) under 20 ms: {verdict[c[0] < 0.020]} ({c[0] * 1000:.1f} ms)")


if __name__ == "__main__":
    main()
