"""Benchmark `dify-volume-init review` on a 5,000-document manifest.

Run from the repository root:  .venv/bin/python bench/review_bench.py [--docs 5000] [--runs 5]

Prints the median wall time of the whole command (`review -o yaml`, a fresh
process each run, as a user or a CI job runs it) and documents per second,
beside a baseline measured in the same script: reading and writing the same
manifest with PyYAML's libyaml loader and dumper and nothing else, the floor
of any YAML-to-YAML tool in Python.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "dify-helm-nfs.yaml"


def manifest(docs: int) -> str:
    """`docs` documents cycling through the dify-helm example (3 of 7 are patched)."""
    source = list(yaml.safe_load_all(EXAMPLE.read_text()))
    out = []
    for i in range(docs):
        doc = source[i % len(source)]
        doc = {**doc, "metadata": {**doc["metadata"], "name": f"{doc['metadata']['name']}-{i}"}}
        out.append(doc)
    return yaml.dump_all(out, Dumper=yaml.CSafeDumper, sort_keys=False)


def timed(func: object, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        func()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "manifest.yaml"
        text = manifest(args.docs)
        path.write_text(text)
        size = len(text.encode())

        def baseline() -> None:
            docs = list(yaml.load_all(path.read_text(), Loader=yaml.CSafeLoader))
            yaml.dump_all(docs, Dumper=yaml.CSafeDumper, sort_keys=False)

        def command(output: str) -> None:
            subprocess.run(
                [sys.executable, "-m", "webhook", "review", "-f", str(path), "-o", output],
                check=True,
                stdout=subprocess.DEVNULL,
            )

        def startup() -> None:
            subprocess.run(
                [sys.executable, "-m", "webhook", "--version"],
                check=True,
                stdout=subprocess.DEVNULL,
            )

        base = statistics.median(timed(baseline, args.runs))
        results = {
            output: statistics.median(timed(lambda o=output: command(o), args.runs))
            for output in ("diff", "yaml", "patch")
        }
        start = statistics.median(timed(startup, args.runs))

    print(f"manifest: {args.docs} documents, {size / 1e6:.1f} MB; median of {args.runs} runs")
    rate = args.docs / base
    print(f"baseline: PyYAML libyaml load + dump, in process {base:6.2f} s {rate:7.0f} docs/s")
    for output, seconds in results.items():
        print(
            f"review -o {output:5} (whole command, new process)  {seconds:6.2f} s"
            f" {args.docs / seconds:7.0f} docs/s  {seconds / base:.2f}x baseline"
        )
    print(f"  process start-up alone (--version)              {start:6.2f} s")
    worst = max(results.values())
    verdict = "met" if worst < 5 else "NOT met"
    print(f"target: {args.docs} documents under 5 s in every output: {verdict} ({worst:.2f} s)")


if __name__ == "__main__":
    main()
