"""Admission latency, throughput and server CPU per admission, against a baseline and a peer.

Run from the repository root (by hand; needs `wrk` (`apt-get install wrk`)
and, for the peer, kopf (`.venv/bin/pip install kopf`)):

    .venv/bin/python bench/admission_bench.py [--seconds 5] [--rounds 3] [--previous DIR]

Starts, with the same certificate: `dify-volume-init serve` with its
production settings over TLS (JSON logs to a pipe that is drained); the
baseline of `bench/baseline_app.py` under uvicorn with the same settings
(the least a correct webhook can do: decode, make the same injection with
the standard library, answer; checked first to give the same patch as the
webhook for both pods); the same server answering a fixed 300-byte patch
("bare, fixed": the transport alone); and kopf's `WebhookServer`
(`bench/kopf_app.py`) with the baseline's handler; with `--previous DIR`,
the webhook of another checkout too (a before/after in the same rounds). `wrk`, a separate
process, drives each over keep-alive connections (as kube-apiserver does)
at concurrency 1, 16 and 64 with two realistic Dify pods: a ~10 KB dify-helm
api pod (about 70 env vars) and a ~100 KB pod with managedFields. Server CPU
time per admission comes from /proc/PID/stat of the server process (and its
workers). Each round starts every server in turn, so rounds interleave; the
table gives the median of the rounds. It also measures start-up (process
start to a 200 from /readyz) and idle RSS. The machine is shared, so compare
the ratios.
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import json
import os
import re
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import baseline_app  # noqa: E402
from tests import helpers, servers  # noqa: E402
from webhook.certs import pki, store  # noqa: E402
from webhook.engine import admission, policy  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PADDING = "0123456789abcdef" * 3
WRK_SCRIPT = """
local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
"""


def pod_10kb() -> dict[str, Any]:
    pod = helpers.load_pod(helpers.PODS / "helm-api.yaml")
    env = pod["spec"]["containers"][0]["env"]
    names = [
        "CONSOLE_API_URL",
        "CONSOLE_WEB_URL",
        "SERVICE_API_URL",
        "APP_API_URL",
        "APP_WEB_URL",
        "FILES_URL",
        "LOG_LEVEL",
        "LOG_FILE",
        "DEBUG",
        "FLASK_DEBUG",
        "DEPLOY_ENV",
        "MIGRATION_ENABLED",
        "CHECK_UPDATE_URL",
        "DB_USERNAME",
        "DB_DATABASE",
        "DB_PORT",
        "SQLALCHEMY_POOL_SIZE",
        "SQLALCHEMY_POOL_RECYCLE",
        "REDIS_PORT",
        "REDIS_DB",
        "REDIS_USE_SSL",
        "CELERY_BROKER_URL",
        "BROKER_USE_SSL",
        "WEB_API_CORS_ALLOW_ORIGINS",
        "CONSOLE_CORS_ALLOW_ORIGINS",
        "STORAGE_TYPE",
        "VECTOR_STORE",
        "WEAVIATE_ENDPOINT",
        "CODE_EXECUTION_ENDPOINT",
        "CODE_MAX_NUMBER",
        "CODE_MIN_NUMBER",
        "CODE_MAX_STRING_LENGTH",
        "TEMPLATE_TRANSFORM_MAX_LENGTH",
        "CODE_MAX_STRING_ARRAY_LENGTH",
        "SSRF_PROXY_HTTP_URL",
        "SSRF_PROXY_HTTPS_URL",
        "PLUGIN_DAEMON_URL",
        "PLUGIN_MAX_PACKAGE_SIZE",
        "MARKETPLACE_URL",
        "UPLOAD_FILE_SIZE_LIMIT",
        "UPLOAD_FILE_BATCH_LIMIT",
        "ETL_TYPE",
        "MAIL_TYPE",
        "INDEXING_MAX_SEGMENTATION_TOKENS_LENGTH",
        "APP_MAX_EXECUTION_TIME",
        "APP_MAX_ACTIVE_REQUESTS",
        "WORKFLOW_MAX_EXECUTION_STEPS",
        "WORKFLOW_MAX_EXECUTION_TIME",
        "WORKFLOW_CALL_MAX_DEPTH",
        "MAX_VARIABLE_SIZE",
        "HTTP_REQUEST_NODE_MAX_BINARY_SIZE",
        "HTTP_REQUEST_NODE_MAX_TEXT_SIZE",
        "SENTRY_DSN",
        "SENTRY_TRACES_SAMPLE_RATE",
        "SENTRY_PROFILES_SAMPLE_RATE",
        "NOTION_INTEGRATION_TYPE",
        "OPENAI_API_BASE",
        "INNER_API",
        "INNER_API_KEY_FOR_PLUGIN",
        "PLUGIN_DIFY_INNER_API_URL",
        "ENDPOINT_URL_TEMPLATE",
        "GUNICORN_TIMEOUT",
        "SERVER_WORKER_AMOUNT",
        "CELERY_WORKER_AMOUNT",
    ]
    for name in names:
        env.append(
            {
                "name": name,
                "value": f"value-for-{name.lower().replace('_', '-')}-{PADDING}",
            }
        )
    return pod


def pod_100kb() -> dict[str, Any]:
    return helpers.with_managed_fields(pod_10kb(), entries=40, fields=60)


def cpu_seconds(pid: int) -> float:
    """User and system CPU of a process and all its live descendants, in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    total = (utime + stime + cutime + cstime) / CLOCK_TICKS
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        total += sum(cpu_seconds(int(child)) for child in children)
    return total


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@contextmanager
def serving(
    command: list[str], port: int, ca: Path
) -> Iterator[tuple[subprocess.Popen[bytes], float]]:
    """Start a server; yield it and the seconds it took to answer /readyz."""
    started = time.monotonic()
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT
    )
    context = ssl.create_default_context(cafile=str(ca))
    url = f"https://127.0.0.1:{port}/readyz"
    try:
        while True:
            try:
                with httpx.Client(verify=context) as client:
                    status = client.get(url, extensions={"sni_hostname": servers.SERVICE_DNS})
                if status.status_code < 500:  # the baseline and kopf have no /readyz
                    break
            except httpx.TransportError:
                time.sleep(0.005)
            if time.monotonic() - started > 30:
                raise SystemExit(f"server did not start: {command}")
        yield process, time.monotonic() - started
    finally:
        process.terminate()
        process.wait(timeout=30)


def wrk(
    port: int, body_file: Path, script: Path, connections: int, seconds: float
) -> dict[str, float]:
    """One wrk run; latencies in ms."""
    threads = 1 if connections == 1 else 2
    command = [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{max(1, round(seconds))}s",
    ]
    command += ["--latency", "-s", str(script), f"https://127.0.0.1:{port}/mutate"]
    out = subprocess.run(
        command,
        env={**os.environ, "BODY_FILE": str(body_file)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def latency(pct: str) -> float:
        found = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert found, out
        value, unit = found.groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    def number(pattern: str) -> float:
        found = re.search(pattern, out)
        return float(found.group(1)) if found else 0.0

    return {
        "p50": latency("50"),
        "p90": latency("90"),
        "p99": latency("99"),
        "rps": number(r"Requests/sec:\s+([\d.]+)"),
        "requests": number(r"(\d+) requests in"),
        "errors": number(r"Non-2xx or 3xx responses: (\d+)"),
    }


def same_injection(review: dict[str, Any]) -> None:
    """Stop unless the baseline's patch for `review` is the webhook's: the ratios
    compare servers making the same answer."""
    ours = admission.answer(review, policy.default_policy()).review["response"]
    theirs = baseline_app.inject(review)
    if json.loads(base64.b64decode(ours["patch"])) != json.loads(base64.b64decode(theirs["patch"])):
        raise SystemExit("bench/baseline_app.py no longer makes the webhook's patch: update it")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--pods", nargs="+", choices=["10KB", "100KB"], default=["10KB", "100KB"])
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[1],
        help="webhook --workers values to measure (the baseline and kopf run one process)",
    )
    parser.add_argument(
        "--previous",
        type=Path,
        help="also run the webhook of another checkout (`git worktree add DIR REV`), interleaved",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run(Path(tmp), args)


def run(work: Path, args: argparse.Namespace) -> None:
    names = [*pki.service_names("dify-volume-init", "dify-volume-init"), "localhost"]
    store.write_files(work, pki.build(dns_names=names, ip_addresses=["127.0.0.1"]))
    script = work / "post.lua"
    script.write_text(WRK_SCRIPT)
    bodies = {}
    for label, pod in (("10KB", pod_10kb()), ("100KB", pod_100kb())):
        if label not in args.pods:
            continue
        path = work / f"{label}.json"
        review = helpers.review(pod, namespace="dify")
        path.write_text(json.dumps(review))
        bodies[label] = path
        print(f"{label} pod: an AdmissionReview of {path.stat().st_size / 1024:.1f} KiB")
        same_injection(review)
    cert, key = str(work / "tls.crt"), str(work / "tls.key")

    def ours(port: int, workers: int = 1, checkout: Path = ROOT) -> list[str]:
        # NB: `python -m` imports the package of the working directory first.
        command = ["env", "-C", str(checkout), sys.executable, "-m", "webhook", "serve"]
        command += ["--host", "127.0.0.1"]
        command += ["--workers", str(workers)]
        return [*command, "--port", str(port), "--tls-cert", cert, "--tls-key", key]

    def baseline(port: int, app: str = "app") -> list[str]:
        command = [sys.executable, "-m", "uvicorn", f"bench.baseline_app:{app}"]
        command += ["--host", "127.0.0.1", "--port", str(port)]
        command += ["--ssl-certfile", cert, "--ssl-keyfile", key]
        return [*command, "--no-access-log", "--log-level", "warning", "--no-server-header",
                "--timeout-keep-alive", "65", "--no-proxy-headers"]  # fmt: skip

    starts, rss = [], []
    for _ in range(5):
        port = servers.free_port()
        with serving(ours(port), port, work / "ca.crt") as (process, ready):
            starts.append(ready * 1000)
            time.sleep(0.5)
            rss.append(rss_mib(process.pid))
    print(
        f"start-up to a ready /readyz: median {statistics.median(starts):.0f} ms"
        f" (min {min(starts):.0f}, max {max(starts):.0f});"
        f" idle RSS {statistics.median(rss):.1f} MiB"
    )

    def kopf(port: int) -> list[str]:
        return [sys.executable, str(ROOT / "bench" / "kopf_app.py"), str(port), cert, key]

    commands: dict[str, Callable[[int], list[str]]] = {
        "bare uvicorn": baseline,
        "bare, fixed": lambda port: baseline(port, "fixed_app"),
        "minimal webhook": lambda port: baseline(port, "minimal_app"),
    }
    if importlib.util.find_spec("kopf") is not None:
        commands["kopf"] = kopf
    else:
        print("kopf is not installed (.venv/bin/pip install kopf): its rows are left out")
    for workers in args.workers:
        name = "dify-volume-init" if workers == 1 else f"dify-volume-init w{workers}"
        commands[name] = lambda port, w=workers: ours(port, w)
    if args.previous:
        commands["previous checkout"] = lambda port: ours(port, 1, args.previous.resolve())
    rounds: dict[tuple[str, str, int], list[dict[str, float]]] = {}
    for _ in range(args.rounds):
        for name, command in commands.items():
            port = servers.free_port()
            with serving(command(port), port, work / "ca.crt") as (process, _ready):
                for label, body in bodies.items():
                    wrk(port, body, script, 4, 2)  # warm-up
                    for connections in args.concurrency:
                        before = cpu_seconds(process.pid)
                        result = wrk(port, body, script, connections, args.seconds)
                        used = cpu_seconds(process.pid) - before
                        result["cpu_us"] = used / result["requests"] * 1e6
                        rounds.setdefault((name, label, connections), []).append(result)
    index = {
        key: {field: statistics.median([r[field] for r in results]) for field in results[0]}
        for key, results in rounds.items()
    }
    print()
    print(f"medians of {args.rounds} interleaved rounds, {args.seconds:g} s each")
    print("server             pod    conc  CPU us/adm  vs bare   p50 ms   p99 ms  p99 vs bare"
          "   adm/s  non-2xx")  # fmt: skip
    for label in bodies:
        for connections in args.concurrency:
            bare = index[("bare uvicorn", label, connections)]
            for name in commands:
                r = index[(name, label, connections)]
                print(
                    f"{name:18} {label:6} {connections:>4} {r['cpu_us']:>11.0f}"
                    f" {r['cpu_us'] / bare['cpu_us']:>8.2f}x {r['p50']:>8.2f} {r['p99']:>8.2f}"
                    f" {r['p99'] / bare['p99']:>11.2f}x {r['rps']:>7.0f} {r['errors']:>8.0f}"
                )
    print()
    for label in bodies:
        for connections in args.concurrency:
            least = index[("minimal webhook", label, connections)]["cpu_us"]
            mine = index[("dify-volume-init", label, connections)]["cpu_us"]
            peer = index.get(("kopf", label, connections), {}).get("cpu_us")
            met = "met" if mine <= 1.3 * least and (peer is None or mine < peer) else "NOT met"
            said = f", kopf {peer / least:.2f}x" if peer else ""
            print(
                f"{label} c={connections}: CPU vs the minimal webhook {mine / least:.2f}x{said};"
                f" target at most 1.3x and below kopf: {met}"
            )
    print()
    for connections in args.concurrency if len(bodies) == 2 else ():
        large = index[("dify-volume-init", "100KB", connections)]["cpu_us"]
        small = index[("dify-volume-init", "10KB", connections)]["cpu_us"]
        print(f"c={connections}: dify-volume-init CPU, 100KB pod / 10KB pod = {large / small:.2f}x")


if __name__ == "__main__":
    main()
