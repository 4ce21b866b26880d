"""Bounded, linear work: no pod can stall the server, and the limits say so plainly.

The largest body the server accepts, built to be the worst case of each kind
(tests/worstcase.py), is answered within a second by a real server over TLS
while `/healthz` keeps answering. (The old free-mount-path search took 16.8 s
on a 278 KB pod.) Each limit skips the pod with `pod-too-large` and says which.
"""

from __future__ import annotations

import copy
import functools
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import helpers, servers, worstcase
from webhook.certs import pki, store
from webhook.engine import limits, mutation, podshape
from webhook.engine.policy import Policy

SNI = {"sni_hostname": servers.SERVICE_DNS}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Server]:
    directory = tmp_path_factory.mktemp("tls")
    store.write_files(
        directory, pki.build(dns_names=pki.service_names(servers.SERVICE, servers.NAMESPACE))
    )
    args = ["--tls-cert", str(directory / "tls.crt"), "--tls-key", str(directory / "tls.key")]
    with servers.running(args, ca_file=directory / "ca.crt", workdir=directory) as running:
        yield running


@functools.cache
def worst_body(name: str) -> bytes:
    return worstcase.body(worstcase.BUILDERS[name])


@pytest.mark.parametrize("name", list(worstcase.BUILDERS))
def test_the_largest_worst_case_body_is_answered_within_a_second(
    server: servers.Server, name: str
) -> None:
    """Guards bounded, linear work end to end (seen failing with the old directory search)."""
    body = worst_body(name)
    assert limits.MAX_BODY_BYTES - 32 * 1024 < len(body) <= limits.MAX_BODY_BYTES
    stop = threading.Event()
    probes: list[tuple[int, float]] = []

    def poll_healthz() -> None:
        with server.client(timeout=10) as client:
            while not stop.is_set():
                started = time.perf_counter()
                status = client.get("/healthz", extensions=SNI).status_code
                probes.append((status, time.perf_counter() - started))
                time.sleep(0.005)

    poller = threading.Thread(target=poll_healthz)
    poller.start()
    try:
        time.sleep(0.05)
        with server.client(timeout=30) as client:
            started = time.perf_counter()
            response = client.post("/mutate", content=body, extensions=SNI)
            elapsed = time.perf_counter() - started
        time.sleep(0.05)
    finally:
        stop.set()
        poller.join()
    assert response.status_code == 200, response.text[:300]
    answer = response.json()["response"]
    assert answer["auditAnnotations"]["outcome"] != "error", answer
    assert elapsed < 1.0, f"{name}: answered in {elapsed:.2f} s"
    assert len(probes) >= 5
    assert all(status == 200 for status, _ in probes)
    assert max(seconds for _, seconds in probes) < 1.0


def test_an_oversized_body_is_refused_unread(server: servers.Server) -> None:
    """Guards the 3 MiB body limit: 413, one line."""
    body = worstcase.body(worstcase.labels_and_annotations, limits.MAX_BODY_BYTES + 64 * 1024)
    assert len(body) > limits.MAX_BODY_BYTES
    with server.client(timeout=30) as client:
        response = client.post("/mutate", content=body, extensions=SNI)
    assert response.status_code == 413
    assert response.text.count("\n") == 1


def api_pod() -> dict[str, object]:
    return copy.deepcopy(helpers.load_pod(helpers.PODS / "helm-api.yaml"))


def assert_left_alone(
    pod: dict[str, object], policy: Policy, says: str, *, reason: str = "pod-too-large"
) -> mutation.Decision:
    """One past a limit: the pod is skipped with `reason`, and the message says which."""
    over = mutation.mutate(pod, policy, namespace="dify")
    assert (over.outcome, over.reason) == ("skipped", reason)
    assert says in over.message
    return over


@pytest.mark.parametrize(
    ("kind", "count", "says"),
    [
        ("containers", limits.MAX_CONTAINERS, "containers, more than the 100"),
        ("initContainers", limits.MAX_CONTAINERS, "containers, more than the 100"),
        ("ephemeralContainers", limits.MAX_CONTAINERS, "containers, more than the 100"),
        ("volumes", limits.MAX_VOLUMES, "volumes, more than the 256"),
    ],
)
def test_container_and_volume_limits(policy: Policy, kind: str, count: int, says: str) -> None:
    """Guards the container and volume limits, at the limit and one past it."""
    pod = api_pod()
    spec = pod["spec"]
    assert isinstance(spec, dict)
    counted = ("volumes",) if kind == "volumes" else podshape.CONTAINER_KINDS
    existing = sum(len(spec.get(k) or ()) for k in counted)
    filler = (
        [{"name": f"v{i}", "emptyDir": {}} for i in range(count - existing)]
        if kind == "volumes"
        else [{"name": f"x{i}", "image": "i:1"} for i in range(count - existing)]
    )
    spec[kind] = [*(spec.get(kind) or ()), *filler]
    at_limit = mutation.mutate(pod, policy, namespace="dify")
    assert at_limit.reason == "injected"
    spec[kind].append(
        {"name": "one-more", "emptyDir": {}} if kind == "volumes" else {"name": "one-more"}
    )
    over = assert_left_alone(pod, policy, says)
    assert over.warnings == [f"not injected: {over.message}"]


def test_storage_mount_limit(policy: Policy) -> None:
    """Guards the storage-mount limit, at the limit and one past it."""
    pod = api_pod()
    mounts = pod["spec"]["containers"][0]["volumeMounts"]  # type: ignore[index]
    mounts += [
        {"name": "app-data", "mountPath": f"/app/api/storage/t{i}", "subPath": f"t{i}"}
        for i in range(limits.MAX_STORAGE_MOUNTS - 1)
    ]
    at_limit = mutation.mutate(pod, policy, namespace="dify")
    assert at_limit.reason == "injected"
    init = at_limit.pod["spec"]["initContainers"][0]
    assert len(init["volumeMounts"]) == limits.MAX_STORAGE_MOUNTS
    mounts.append({"name": "app-data", "mountPath": "/app/api/storage/one-more"})
    assert_left_alone(pod, policy, "more than 32 mounts at or below /app/api/storage")


def test_mount_path_longer_than_path_max(policy: Policy) -> None:
    """Guards the PATH_MAX limit on mounts at or below the storage."""
    pod = api_pod()
    mounts = pod["spec"]["containers"][0]["volumeMounts"]  # type: ignore[index]
    fits = "/app/api/storage/" + "d" * (limits.MAX_PATH_BYTES - len("/app/api/storage/"))
    mounts.append({"name": "app-data", "mountPath": fits, "subPath": "x"})
    assert mutation.mutate(pod, policy, namespace="dify").reason == "injected"
    mounts[-1]["mountPath"] = fits + "d"
    assert_left_alone(pod, policy, "longer than PATH_MAX (4096)")


def test_copied_env_limit(policy: Policy) -> None:
    """Guards the limit on env entries copied for a subPathExpr."""
    pod = api_pod()
    container = pod["spec"]["containers"][0]  # type: ignore[index]
    chain = limits.MAX_COPIED_ENV - 1
    container["env"] = [{"name": f"V{i}", "value": f"$(V{i + 1})"} for i in range(chain)]
    container["env"].append({"name": f"V{chain}", "value": "end"})
    container["volumeMounts"][0]["subPathExpr"] = "$(V0)"
    decision = mutation.mutate(pod, policy, namespace="dify")
    assert decision.reason == "injected"
    assert len(decision.pod["spec"]["initContainers"][0]["env"]) == limits.MAX_COPIED_ENV
    container["env"][-1]["value"] = f"$(V{chain + 1})"
    container["env"].append({"name": f"V{chain + 1}", "value": "end"})
    assert_left_alone(pod, policy, "more than 64 env entries", reason="subpath-expr-unresolvable")


def test_warnings_are_capped_for_the_apiserver(policy: Policy) -> None:
    """Guards the cap on warnings (kube-apiserver keeps 4 KiB)."""
    pod = api_pod()
    mounts = pod["spec"]["containers"][0]["volumeMounts"]  # type: ignore[index]
    mounts += [{"name": f"ghost-{i}", "mountPath": f"/app/api/storage/g{i}"} for i in range(20)]
    decision = mutation.mutate(pod, policy, namespace="dify")
    assert decision.reason == "injected"
    assert len(decision.warnings) == limits.MAX_WARNINGS
    assert decision.warnings[-1] == "... and 11 more warnings like these"
    assert len(json.dumps(decision.warnings)) < 4096


def test_limits_cite_their_source() -> None:
    """Guards that every limit says in a comment where it comes from."""
    source = Path(limits.__file__).read_text()
    for name in ("MAX_BODY_BYTES", "MAX_CONTAINERS", "MAX_VOLUMES", "MAX_STORAGE_MOUNTS"):
        before = source[: source.index(f"\n{name} = ")]
        assert before.rstrip().splitlines()[-1].startswith("#"), f"{name} has no comment"
