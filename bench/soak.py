"""Soak: continuous admissions for minutes; does memory or file-descriptor use grow?

Run from the repository root (by hand, not in CI):

    .venv/bin/python bench/soak.py [--seconds 300] [--clients 4]

Starts `dify-volume-init serve` over TLS with its production settings (JSON
logs, one worker), warms it up for 15 s, then drives it from this process
with keep-alive clients sending real Dify pods (a dify-helm api pod, a pod
with managedFields, a denied hostPath pod and a malformed request, in
rotation) and a new connection every 50th request. It prints RSS and open
file descriptors of the server process at the start and the end of the
measured period; target: growth under 10%.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import helpers, servers  # noqa: E402
from webhook.certs import pki, store  # noqa: E402


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def bodies() -> list[bytes]:
    api = helpers.load_pod(helpers.PODS / "helm-api.yaml")
    managed = helpers.load_pod(helpers.PODS / "managed-fields.yaml")
    denied = helpers.load_pod(helpers.PODS / "plain-worker-hostpath-etc.yaml")
    reviews = [helpers.review(p, namespace="dify") for p in (api, managed, denied)]
    return [json.dumps(r).encode() for r in reviews] + [b'{"apiVersion": "nope"}']


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--warmup", type=float, default=15)
    args = parser.parse_args()
    payloads = bodies()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        store.write_files(
            directory,
            pki.build(dns_names=pki.service_names("dify-volume-init", "dify-volume-init")),
        )
        tls = ["--tls-cert", str(directory / "tls.crt"), "--tls-key", str(directory / "tls.key")]
        with servers.running(tls, ca_file=directory / "ca.crt", workdir=directory) as server:
            print(soak(server, payloads, args))


def soak(server: servers.Server, payloads: list[bytes], args: argparse.Namespace) -> str:
    """Drive the server and return the report."""
    process = server.process
    context = server.context()
    url = server.url
    sni = {"sni_hostname": servers.SERVICE_DNS}
    stop = threading.Event()
    counts = {"ok": 0, "failed": 0}
    lock = threading.Lock()

    def drive() -> None:
        n = 0
        client = httpx.Client(verify=context, base_url=url)
        while not stop.is_set():
            n += 1
            if n % 50 == 0:
                client.close()
                client = httpx.Client(verify=context, base_url=url)
            try:
                response = client.post(
                    "/mutate", content=payloads[n % len(payloads)], extensions=sni
                )
                good = response.status_code in (200, 400)
            except httpx.TransportError:
                good = False
            with lock:
                counts["ok" if good else "failed"] += 1
        client.close()

    threads = [threading.Thread(target=drive) for _ in range(args.clients)]
    for thread in threads:
        thread.start()
    time.sleep(args.warmup)
    start_rss, start_fds, start_count = (
        rss_kib(process.pid),
        open_fds(process.pid),
        counts["ok"],
    )
    started = time.monotonic()
    time.sleep(args.seconds)
    end_rss, end_fds = rss_kib(process.pid), open_fds(process.pid)
    elapsed = time.monotonic() - started
    done = counts["ok"] - start_count
    stop.set()
    for thread in threads:
        thread.join()
    growth = (end_rss - start_rss) / start_rss * 100
    rate = done / elapsed
    return "\n".join(
        [
            f"soak: {elapsed:.0f} s measured after {args.warmup:.0f} s warm-up,"
            f" {args.clients} clients",
            f"requests: {done} answered while measured ({rate:.0f}/s), {counts['failed']} failed",
            f"RSS: {start_rss / 1024:.1f} MiB -> {end_rss / 1024:.1f} MiB ({growth:+.1f}%)",
            f"open file descriptors: {start_fds} -> {end_fds}",
            f"target: RSS growth under 10%: {'met' if growth < 10 else 'NOT met'}",
        ]
    )


if __name__ == "__main__":
    main()
