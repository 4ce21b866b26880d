"""Worst-case pods: how long the largest body of each kind takes, and what /healthz sees meanwhile.

Run from the repository root (by hand, not in CI):

    .venv/bin/python bench/worst_case_bench.py [--rounds 5]

Starts `dify-volume-init serve` over TLS, then for each builder of
tests/worstcase.py (bodies just under kube-apiserver's 3 MiB limit, each the
worst case of one step of the decision) and for the baseline (a body of the
same size the decision never reads: an injected chart pod whose bulk is
managedFields), posts the body once per round, the kinds interleaved, while
a thread polls /healthz every 5 ms. Prints the median latency, its ratio to
the baseline's, and the slowest /healthz answer seen.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import servers, worstcase  # noqa: E402
from webhook.certs import pki, store  # noqa: E402

SNI = {"sni_hostname": servers.SERVICE_DNS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    bodies = {"baseline (managedFields)": worstcase.baseline_body()}
    bodies.update({name: worstcase.body(build) for name, build in worstcase.BUILDERS.items()})
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        names = pki.service_names(servers.SERVICE, servers.NAMESPACE)
        store.write_files(directory, pki.build(dns_names=names))
        tls = ["--tls-cert", str(directory / "tls.crt"), "--tls-key", str(directory / "tls.key")]
        with servers.running(tls, ca_file=directory / "ca.crt", workdir=directory) as server:
            latency: dict[str, list[float]] = {name: [] for name in bodies}
            health: dict[str, float] = dict.fromkeys(bodies, 0.0)
            outcome: dict[str, str] = {}
            with server.client(timeout=60) as client:
                for _ in range(args.rounds):
                    for name, body in bodies.items():
                        slowest = _with_health_probe(server)
                        started = time.perf_counter()
                        response = client.post("/mutate", content=body, extensions=SNI)
                        latency[name].append(time.perf_counter() - started)
                        health[name] = max(health[name], slowest())
                        audit = response.json()["response"]["auditAnnotations"]
                        outcome[name] = f"{audit['outcome']} ({audit['reason']})"
    base = statistics.median(latency["baseline (managedFields)"])
    print(f"{'body':32} {'bytes':>9} {'median':>9} {'vs base':>8} {'/healthz max':>13}  answer")
    for name, body in bodies.items():
        median = statistics.median(latency[name])
        print(
            f"{name:32} {len(body):>9,} {median * 1000:>7.0f}ms {median / base:>7.2f}x"
            f" {health[name] * 1000:>11.0f}ms  {outcome[name]}"
        )


def _with_health_probe(server: servers.Server) -> Callable[[], float]:
    """Start polling /healthz; the returned function stops it and gives the slowest answer."""
    stop = threading.Event()
    seen: list[float] = [0.0]

    def poll() -> None:
        with server.client(timeout=30) as client:
            while not stop.is_set():
                started = time.perf_counter()
                client.get("/healthz", extensions=SNI)
                seen.append(time.perf_counter() - started)
                time.sleep(0.005)

    thread = threading.Thread(target=poll)
    thread.start()
    time.sleep(0.02)

    def finish() -> float:
        time.sleep(0.02)
        stop.set()
        thread.join()
        return max(seen)

    return finish


if __name__ == "__main__":
    main()
