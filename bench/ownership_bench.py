"""The ownership fix in both modes against Dify compose's `chown -R`, on local disk and on
storage where every metadata call is a round trip.

Run from the repository root, as root (by hand; needs busybox and libfuse2, which
`make test` installs):

    .venv/bin/python bench/ownership_bench.py [--files 100000] [--fuse-files 20000]
        [--latencies 0.5,2] [--runs 3]

Implementations, each on the same tree, reset (untimed, on the tree's own directory,
never through FUSE) before every timed run, interleaved run by run:

- `chown -R`: Dify docker-compose's `chown -R 1001:1001` by busybox (the baseline);
- script: the injected busybox script (`initContainer.mode: script`), from a real
  patch, with a PATH of busybox applets only;
- program: `dify-volume-init fix-ownership --owner 1001:1001` (the default mode), on
  this interpreter, as the image runs it;
- floor (local disk only): `find -xdev -print0 | xargs -0 chown -h`, the script's
  design before any of its safety.

Storage: a local directory (`--files` entries), and `tests/fusefs.py` passthrough
mounts adding each `--latencies` millisecond figure to every metadata call, with the
kernel's attribute cache off (`--fuse-files` entries). Cases: fresh (every entry
root's, no flag) and 1% (1% of the files root's, the rest 1001's, no flag). And the
restart: the program on a flagged volume against a bare `python -c pass` of the same
interpreter. Medians; targets printed as met or not.
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

from tests import fusefs, helpers  # noqa: E402
from webhook.engine import mutation, policy  # noqa: E402

FLAG = ".init_permissions"


def script_command() -> list[str]:
    """The script mode's command from a real patch, without its mount path."""
    text = policy.default_policy_text().replace(
        "        name: volume-permissions\n",
        "        name: volume-permissions\n        mode: script\n",
    )
    script = policy.parse_policy(text, source="bench")
    pod = helpers.load_pod(helpers.PODS / "helm-api.yaml")
    decision = mutation.mutate(pod, script, namespace="dify")
    command: list[str] = decision.pod["spec"]["initContainers"][0]["command"]
    assert command[:2] == ["sh", "-c"]
    return command[:-1]


def build(root: Path, files: int, per_dir: int = 1000) -> list[Path]:
    paths = []
    for d in range(max(1, files // per_dir)):
        directory = root / f"upload_files/tenant-{d % 10}/dir-{d:04d}"
        directory.mkdir(parents=True)
        for f in range(per_dir):
            path = directory / f"file-{f:04d}.bin"
            path.write_bytes(b"x")
            paths.append(path)
    return paths


def chown_all(root: Path, uid: int) -> None:
    for directory, dirs, names in os.walk(root):
        for name in dirs + names:
            os.lchown(os.path.join(directory, name), uid, uid)
    os.lchown(root, uid, uid)


def timed(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        command, check=False, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return time.perf_counter() - start


class Storage:
    """A tree to fix: its own directory (reset there) and the path the fix is given."""

    def __init__(self, name: str, source: Path, target: Path, files: list[Path]) -> None:
        self.name = name
        self.source = source
        self.target = target
        self.files = files

    def reset(self, case: str) -> None:
        (self.source / FLAG).unlink(missing_ok=True)
        if case == "fresh":
            chown_all(self.source, 0)
        else:
            chown_all(self.source, 1001)
            for path in self.files[::100]:
                os.lchown(path, 0, 0)

    def check(self) -> None:
        owners = {(p.lstat().st_uid, p.lstat().st_gid) for p in self.files[::97]}
        assert owners == {(1001, 1001)}, f"{self.name}: left {owners}"


def run_cases(
    storage: Storage, commands: dict[str, list[str]], env: dict[str, str], runs: int
) -> dict[tuple[str, str], float]:
    """Median seconds per (case, implementation), runs interleaved."""
    times: dict[tuple[str, str], list[float]] = {}
    for case in ("fresh", "1%"):
        for _ in range(runs):
            for name, command in commands.items():
                storage.reset(case)
                times.setdefault((case, name), []).append(timed(command, env))
                storage.check()
    return {key: statistics.median(values) for key, values in times.items()}


def restart(storage: Storage, program: list[str], runs: int) -> tuple[float, float]:
    """The program on a flagged volume, against a bare interpreter start (medians)."""
    chown_all(storage.source, 1001)
    subprocess.run(program, check=True, stdout=subprocess.DEVNULL)
    assert (storage.source / FLAG).exists()
    bare, flagged = [], []
    for _ in range(max(runs * 7, 21)):
        bare.append(timed([sys.executable, "-c", "pass"], dict(os.environ)))
        flagged.append(timed(program, dict(os.environ)))
    return statistics.median(flagged), statistics.median(bare)


def report(name: str, results: dict[tuple[str, str], float], entries: int) -> None:
    print(f"\n{name} ({entries} entries)")
    implementations = list(dict.fromkeys(impl for _, impl in results))
    print(
        f"{'case':8}"
        + "".join(f"{impl:>14}" for impl in implementations)
        + "   program vs chown -R"
    )
    for case in ("fresh", "1%"):
        base = results[(case, "chown -R")]
        cells = "".join(f"{results[(case, impl)] * 1000:>11.0f} ms" for impl in implementations)
        ratio = results[(case, "program")] / base
        said = f"{ratio:.2f}x" if ratio >= 1 else f"{1 / ratio:.1f}x faster"
        print(f"{case:8}{cells}   {said}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--fuse-files", type=int, default=20_000)
    parser.add_argument("--latencies", default="0.5,2")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0 or shutil.which("busybox") is None:
        raise SystemExit("run as root with busybox installed (apt-get install busybox)")
    verdict = {True: "met", False: "NOT met"}
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        work = Path(tmp)
        applets = work / "bin"
        applets.mkdir()
        subprocess.run(["busybox", "--install", "-s", str(applets)], check=True)
        env = {"PATH": str(applets)}

        def commands(target: Path, *, floor: bool) -> dict[str, list[str]]:
            found = {
                "chown -R": [str(applets / "chown"), "-R", "1001:1001", str(target)],
                "script": [*script_command(), str(target)],
                "program": [
                    sys.executable, "-m", "webhook", "fix-ownership", "--owner", "1001:1001",
                    "--", str(target),
                ],
            }  # fmt: skip
            if floor:
                found["floor"] = [
                    str(applets / "sh"), "-c",
                    'find "$1" -xdev -print0 | xargs -0 -r -s 131072 chown -h 1001:1001 --',
                    "-", str(target),
                ]  # fmt: skip
            return found

        local_dir = work / "local"
        local = Storage("local disk", local_dir, local_dir, build(local_dir, args.files))
        entries = sum(1 for _ in local_dir.rglob("*")) + 1
        local_results = run_cases(local, commands(local_dir, floor=True), env, args.runs)
        report("local disk", local_results, entries)
        program = commands(local_dir, floor=False)["program"]
        flagged, bare = restart(local, program, args.runs)
        fresh = local_results[("fresh", "program")] / local_results[("fresh", "chown -R")]
        print(
            f"\nrestart on a flagged volume: {flagged * 1000:.1f} ms, a bare `python -c pass`"
            f" {bare * 1000:.1f} ms ({flagged / bare:.2f}x)"
        )
        met = verdict[fresh <= 1.1]
        print(f"target: fresh fix on local disk at most 1.1x chown -R: {met} ({fresh:.2f}x)")
        met = verdict[flagged <= 1.5 * bare]
        print(f"target: restart within 1.5x a bare start: {met} ({flagged / bare:.2f}x)")
        shutil.rmtree(local_dir)

        source = work / "fuse-source"
        files = build(source, args.fuse_files, per_dir=500)
        entries = sum(1 for _ in source.rglob("*")) + 1
        for latency in (float(x) for x in args.latencies.split(",")):
            mount = work / f"fuse-{latency}"
            with fusefs.mounted(source, mount, latency_ms=latency, cache=False) as target:
                storage = Storage(f"FUSE +{latency} ms", source, target, files)
                results = run_cases(storage, commands(target, floor=False), env, args.runs)
            report(
                f"FUSE passthrough, +{latency} ms per call, no attribute cache", results, entries
            )
            if latency == 0.5:
                speedup = results[("fresh", "chown -R")] / results[("fresh", "program")]
                print(
                    f"target: on the 0.5 ms FUSE at least 8x faster than chown -R:"
                    f" {verdict[speedup >= 8]} ({speedup:.1f}x)"
                )


if __name__ == "__main__":
    main()
