"""The largest AdmissionReviews the server accepts, each built to be the worst case of one kind.

Each builder fills a body up to `limits.MAX_BODY_BYTES` (less a margin) with
what makes one step of the decision work hardest: storage mounts in every
container (the search that once grew cubically), an env chain a
`subPathExpr` must follow to its end, mount paths a megabyte long, a warning
per mount, node affinity terms to evaluate, labels to match. Used by
tests/test_limits.py (answered within a second while `/healthz` answers) and
by bench/worst_case_bench.py (the figures in the README).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tests import helpers
from webhook.engine import limits

STORAGE = "/app/api/storage"
BUDGET = limits.MAX_BODY_BYTES - 16 * 1024
LABELS = {"app.kubernetes.io/name": "dify", "component": "api"}


def _pod(containers: list[dict[str, Any]], volumes: list[dict[str, Any]], **spec: Any) -> Any:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "dify-api-", "namespace": "dify", "labels": dict(LABELS)},
        "spec": {"containers": containers, "volumes": volumes, **spec},
    }


PVC = [{"name": "app-data", "persistentVolumeClaim": {"claimName": "dify"}}]


def storage_mounts_everywhere(n: int) -> Any:
    """Every container mounts the storage n times with distinct subPaths (over the cap)."""
    per = max(1, n // limits.MAX_CONTAINERS)
    containers = [
        {
            "name": f"c{c}",
            "image": "langgenius/dify-api:1.10.1",
            "volumeMounts": [
                {"name": "app-data", "mountPath": f"{STORAGE}/t{c}-{i}", "subPath": f"t{c}-{i}"}
                for i in range(per)
            ]
            + [{"name": "app-data", "mountPath": STORAGE}],
        }
        for c in range(limits.MAX_CONTAINERS)
    ]
    return _pod(containers, PVC)


def one_storage_path_many_times(n: int) -> Any:
    """One container mounts n subPaths, all at the storage path itself: each needs a
    directory of its own in the init container (the search that grew cubically)."""
    mounts = [
        {"name": "app-data", "mountPath": STORAGE + "/" * (i % 2), "subPath": f"s{i}"}
        for i in range(n)
    ]
    containers = [{"name": "api", "image": "langgenius/dify-api:1.10.1", "volumeMounts": mounts}]
    return _pod(containers, PVC)


def subpath_expr_env_chain(n: int) -> Any:
    """Storage mounts up to the cap, each a subPathExpr at the head of an n-long env chain."""
    env = [{"name": f"V{i}", "value": f"$(V{i + 1})/x"} for i in range(n)]
    env.append({"name": f"V{n}", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})
    mounts = [{"name": "app-data", "mountPath": STORAGE, "subPathExpr": "$(V0)"}]
    mounts += [
        {"name": f"v{i}", "mountPath": f"{STORAGE}/n{i}", "subPathExpr": f"$(V{i})"}
        for i in range(1, limits.MAX_STORAGE_MOUNTS)
    ]
    volumes = PVC + [{"name": f"v{i}", "emptyDir": {}} for i in range(1, limits.MAX_STORAGE_MOUNTS)]
    containers = [
        {"name": "api", "image": "langgenius/dify-api:1.10.1", "env": env, "volumeMounts": mounts}
    ]
    containers += [{"name": f"side{i}", "image": "i:1"} for i in range(limits.MAX_CONTAINERS - 2)]
    return _pod(containers, volumes)


def long_mount_paths(n: int) -> Any:
    """Storage mounts up to the cap whose paths are n bytes long, full of `//` and `..`."""
    per = max(1, n // limits.MAX_STORAGE_MOUNTS)
    tail = "a//b/../" * (per // 8)
    mounts = [{"name": "app-data", "mountPath": STORAGE}]
    mounts += [
        {"name": "app-data", "mountPath": f"{STORAGE}/{i}/{tail}", "subPath": f"s{i}"}
        for i in range(1, limits.MAX_STORAGE_MOUNTS)
    ]
    containers = [{"name": "api", "image": "langgenius/dify-api:1.10.1", "volumeMounts": mounts}]
    return _pod(containers, PVC)


def warning_per_mount(n: int) -> Any:
    """n mounts below the storage path of volumes the pod never declares."""
    mounts = [{"name": "app-data", "mountPath": STORAGE}]
    mounts += [{"name": f"ghost-{i}", "mountPath": f"{STORAGE}/g{i}"} for i in range(n)]
    containers = [{"name": "api", "image": "langgenius/dify-api:1.10.1", "volumeMounts": mounts}]
    return _pod(containers, PVC)


def node_affinity_terms(n: int) -> Any:
    """n required node affinity terms, every one of them to be read (Windows-only)."""
    term = {
        "matchExpressions": [
            {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a"]},
            {"key": "kubernetes.io/os", "operator": "In", "values": ["windows"]},
        ]
    }
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term] * n}
        }
    }
    containers = [
        {
            "name": "api",
            "image": "langgenius/dify-api:1.10.1",
            "volumeMounts": [{"name": "app-data", "mountPath": STORAGE}],
        }
    ]
    return _pod(containers, PVC, affinity=affinity)


def labels_and_annotations(n: int) -> Any:
    """n labels and annotations, a status annotation of n entries, and a storage mount."""
    pod = node_affinity_terms(0)
    pod["spec"].pop("affinity")
    pod["metadata"]["labels"].update({f"l{i}": "v" for i in range(n)})
    status = json.dumps({"rule": "x", "initContainer": "volume-permissions", "pad": ["x"] * n})
    annotations = {f"a{i}": "v" for i in range(n)}
    annotations["volume-init.dify.ai/status"] = status
    pod["metadata"]["annotations"] = annotations
    return pod


BUILDERS: dict[str, Callable[[int], Any]] = {
    "storage-mounts-everywhere": storage_mounts_everywhere,
    "one-storage-path-many-times": one_storage_path_many_times,
    "subpath-expr-env-chain": subpath_expr_env_chain,
    "long-mount-paths": long_mount_paths,
    "warning-per-mount": warning_per_mount,
    "node-affinity-terms": node_affinity_terms,
    "labels-and-annotations": labels_and_annotations,
}


def body(build: Callable[[int], Any], budget: int = BUDGET) -> bytes:
    """The review of `build(n)` for the largest n whose body fits in `budget` bytes."""

    def encoded(n: int) -> bytes:
        return json.dumps(
            helpers.review(build(n), uid="worst-case"), separators=(",", ":")
        ).encode()

    low, high = 1, 1
    while len(encoded(high)) <= budget:
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        if len(encoded(middle)) <= budget:
            low = middle
        else:
            high = middle
    return encoded(low)


def baseline_body(budget: int = BUDGET) -> bytes:
    """A body of the same size that costs the webhook nothing but reading it: an
    injected chart pod carrying managedFields, which the decision never reads."""
    pod = helpers.load_pod(helpers.PODS / "helm-api.yaml")
    return body(lambda n: helpers.with_managed_fields(pod, entries=n, fields=40), budget)
