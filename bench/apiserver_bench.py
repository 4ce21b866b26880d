"""What a user sees: pod creation through a real kube-apiserver, with and without the webhook.

Run from the repository root:  .venv/bin/python bench/apiserver_bench.py [--pods 300]

Starts the test control plane (tests/controlplane.py: etcd, kube-apiserver and
kube-controller-manager built from the Go module proxy) and `dify-volume-init serve`
registered as `manifests` renders it (by URL). Dify api pods are created with
`POST /api/v1/namespaces/NS/pods` over one kept-alive HTTPS connection, alternating
between a namespace the webhook is called for and one labelled
`volume-init.dify.ai/inject=disabled` (the apiserver skips the webhook there): the
same apiserver, the same pod, interleaved. Prints creations per second and the
p50/p99 latency of each, and the difference.
"""

from __future__ import annotations

import argparse
import copy
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import controlplane, servers
from tests.test_cluster import DIFY, Cluster, bare_pod
from webhook.certs import pki, store


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pods", type=int, default=300, help="pods per namespace")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        bundle = pki.build(
            dns_names=pki.service_names(servers.SERVICE, servers.NAMESPACE),
            ip_addresses=["127.0.0.1"],
        )
        store.write_files(directory / "webhook-tls", bundle)
        with (
            controlplane.running(directory / "plane") as plane,
            servers.running(
                servers.tls_args(directory / "webhook-tls"),
                ca_file=directory / "webhook-tls" / "ca.crt",
                workdir=directory,
                env={"VOLUME_INIT_LOG_FORMAT": "json"},
            ) as server,
        ):
            cluster = Cluster(plane, server, bundle.ca_cert)
            cluster.register()
            cluster.namespace("with-webhook")
            cluster.namespace("without", {"volume-init.dify.ai/inject": "disabled"})
            context = ssl.create_default_context(
                cafile=str(directory / "plane" / "apiserver-ca.crt")
            )
            context.load_cert_chain(
                str(directory / "plane" / "admin.crt"), str(directory / "plane" / "admin.key")
            )
            timings: dict[str, list[float]] = {"with-webhook": [], "without": []}
            template = bare_pod("x", "x", DIFY)
            with httpx.Client(base_url=plane.url, verify=context, timeout=30) as client:
                for index in range(args.pods + 20):
                    for namespace, values in timings.items():
                        pod = copy.deepcopy(template)
                        pod["metadata"] = {
                            "name": f"p{index}",
                            "namespace": namespace,
                            "labels": DIFY,
                        }
                        start = time.perf_counter()
                        answer = client.post(f"/api/v1/namespaces/{namespace}/pods", json=pod)
                        elapsed = time.perf_counter() - start
                        assert answer.status_code == 201, answer.text
                        if index >= 20:  # warm-up
                            values.append(elapsed)
            stored = plane.get("pod", "-n", "with-webhook", "p0")
            assert stored["spec"]["initContainers"][0]["name"] == "volume-permissions"
    print(f"{args.pods} pods per namespace, interleaved, one connection, after 20 warm-up:")
    medians = {}
    for namespace, values in timings.items():
        medians[namespace] = statistics.median(values)
        print(
            f"  {namespace:13} p50 {medians[namespace] * 1000:6.2f} ms"
            f"  p99 {percentile(values, 0.99) * 1000:6.2f} ms"
            f"  {1 / statistics.mean(values):6.0f} creations/s"
        )
    added = medians["with-webhook"] - medians["without"]
    print(
        f"  the webhook adds {added * 1000:.2f} ms to the median creation"
        f" ({medians['with-webhook'] / medians['without']:.2f}x)"
    )


if __name__ == "__main__":
    main()
