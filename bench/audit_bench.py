"""Benchmark `dify-volume-init audit` on a large cluster's pod list.

Run from the repository root:  .venv/bin/python bench/audit_bench.py [--pods 100000] [--runs 3]

Writes what `kubectl get pods -A -o json` prints for a cluster of `--pods` pods
(one in ten a Dify api/worker pod, unpatched; the rest other apps), then runs
`audit -f FILE` as a user does, a fresh process each run, and prints its median
wall time and peak memory beside a baseline measured in the same script: a
process that only reads the same file with the standard library's `json.load`,
the floor of any tool that takes the whole list.
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

PODS = Path(__file__).resolve().parent.parent / "tests" / "testdata" / "pods"


def listing(count: int) -> dict[str, object]:
    dify = yaml.safe_load((PODS / "helm-api.yaml").read_text())
    other = yaml.safe_load((PODS / "helm-web.yaml").read_text())
    items = []
    for index in range(count):
        pod = copy.deepcopy(dify if index % 10 == 0 else other)
        metadata = pod.setdefault("metadata", {})
        metadata.update(name=f"pod-{index}", namespace=f"ns-{index % 500}", uid=f"uid-{index}")
        metadata["ownerReferences"] = [
            {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": f"app-{index % 2000}",
             "controller": True}
        ]  # fmt: skip
        pod["status"] = {"phase": "Running"}
        items.append(pod)
    return {"apiVersion": "v1", "kind": "List", "items": items}


def measure(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak resident MiB of one run of `command` (a child process)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    assert done.returncode in (0, 1), done.stderr.decode()[-500:]
    # NB: RUSAGE_CHILDREN's maxrss is the largest child so far: run the larger last
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return elapsed, max(peak, before) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pods", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pods.json"
        path.write_text(json.dumps(listing(args.pods)))
        size = path.stat().st_size / 2**20
        baseline = [sys.executable, "-c", f"import json; json.load(open({str(path)!r}))"]
        audit = [sys.executable, "-m", "webhook", "audit", "-f", str(path)]
        floor = [measure(baseline) for _ in range(args.runs)]
        ours = [measure(audit) for _ in range(args.runs)]
    floor_s = statistics.median(t for t, _ in floor)
    ours_s = statistics.median(t for t, _ in ours)
    print(f"{args.pods:,} pods, {size:.0f} MiB of JSON, {args.runs} runs, medians:")
    print(f"  json.load only (floor)  {floor_s:6.2f} s  peak {max(m for _, m in floor):6.0f} MiB")
    print(
        f"  audit -f FILE           {ours_s:6.2f} s  peak {max(m for _, m in ours):6.0f} MiB"
        f"  ({ours_s / floor_s:.1f}x the floor's time)"
    )


if __name__ == "__main__":
    main()
