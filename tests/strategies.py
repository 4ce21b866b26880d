"""hypothesis strategies for pods in the shapes Dify charts and users produce.

Besides the chart shapes: read-only sources and mounts, `subPathExpr` with
env chains (and the `resourceFieldRef` that cannot be reproduced), mounts
below the storage path, names that clash with the init container's, explicit
nulls, Windows node selection, images of every age and mirror, and pods with
more containers than the webhook handles.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

STORAGE = "/app/api/storage"

DIFY_LABELS = {"app.kubernetes.io/name": "dify", "component": "api"}
label_sets = st.one_of(
    st.just(DIFY_LABELS),
    st.sampled_from(
        [
            {"app.kubernetes.io/name": "dify", "component": "api"},
            {"app.kubernetes.io/name": "dify", "component": "worker"},
            {"app.kubernetes.io/name": "dify", "component": "beat"},
            {"app.kubernetes.io/name": "dify", "component": "web"},
            {"app.kubernetes.io/name": "dify", "app.kubernetes.io/component": "worker-beat"},
            {"app.kubernetes.io/name": "dify", "app.kubernetes.io/component": "sandbox"},
            {"app.kubernetes.io/name": "dify-worker-beat"},
            {"app": "dify-api"},
            {"app": "dify-worker"},
            {"app": "nginx"},
            {},
        ]
    ),
)
keys = st.sampled_from(["a/b", "x~y", "~1", "/", "e.com/k~0/x", "plain", "volume-init.dify.ai/x"])
annotation_maps = st.dictionaries(keys, st.text(max_size=8), max_size=3)
volume_names = st.sampled_from(["app-data", "storage", "uploads", "cfg"])
mount_paths = st.one_of(
    st.just(STORAGE),
    st.sampled_from(
        [
            STORAGE,
            STORAGE + "/",
            STORAGE + "/upload_files",
            STORAGE + "/../storage/privkeys",
            "/data",
            "/tmp",
        ]
    ),
)
ids = st.one_of(st.none(), st.sampled_from([0, 1001, 2000]))
# Current, mirrored, v-prefixed, fix-suffixed, by digest, too old, and not Dify at all.
images = st.one_of(
    st.just("langgenius/dify-api:1.10.1"),
    st.sampled_from(
        [
            "langgenius/dify-api:1.10.1",
            "langgenius/dify-api:1.11.1",
            "registry.example.com:5000/mirror/langgenius/dify-api:v1.10.1-fix.1",
            "langgenius/dify-api",
            "langgenius/dify-api@sha256:" + "a" * 64,
            "langgenius/dify-api:1.9.2",
            "fluent/fluent-bit:3.1.4",
        ]
    ),
)
container_names = st.sampled_from(
    ["api", "worker", "sidecar", "volume-permissions", "volume-permissions-2", "migrate"]
)
# An env chain a subPathExpr can depend on; CPU is a resourceFieldRef without containerName.
ENV = [
    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    {"name": "TENANT", "value": "acme"},
    {"name": "DIR", "value": "$(TENANT)/$(POD_NAME)"},
    {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
    {"name": "SHARD", "value": "cpu-$(CPU)"},
    {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
]
sub_path_exprs = st.sampled_from(["$(DIR)", "pods/$(POD_NAME)", "$(SHARD)", "$(UNDEFINED)"])

volume_sources = st.sampled_from(
    [
        {"persistentVolumeClaim": {"claimName": "dify"}},
        {"persistentVolumeClaim": {"claimName": "dify", "readOnly": True}},
        {"persistentVolumeClaim": {"claimName": "dify", "readOnly": None}},
        {"nfs": {"server": "nfs", "path": "/exports/dify"}},
        {"nfs": {"server": "nfs", "path": "/exports/dify", "readOnly": True}},
        {"hostPath": {"path": "/srv/dify"}},
        {"hostPath": {"path": "/etc/dify"}},
        {"hostPath": {"path": "/var/lib/cilium/x"}},
        {"emptyDir": {}},
        {"configMap": {"name": "c"}},
        {"image": {"reference": "registry.example.com/seed:1"}},
        {"csi": {"driver": "x.csi.k8s.io"}},
        {"csi": {"driver": "x.csi.k8s.io", "readOnly": True}},
    ]
)


def rarely(one_in: int) -> st.SearchStrategy[bool]:
    """True about once in `one_in` draws.

    NB: hypothesis favours a strategy's simplest values (an integer's bounds,
    the first element sampled), so the rare value comes last.
    """
    return st.sampled_from([False] * (one_in - 1) + [True])


@st.composite
def security_contexts(draw: st.DrawFn, *, pod: bool) -> dict[str, Any] | None:
    if draw(st.booleans()):
        return None
    sc: dict[str, Any] = {}
    for key in ("runAsUser", "runAsGroup") + (("fsGroup",) if pod else ()):
        value = draw(ids)
        if value is not None or draw(st.booleans()):
            sc[key] = value  # an explicit null now and then
    non_root = draw(st.one_of(st.none(), st.booleans()))
    if non_root is not None or draw(st.booleans()):
        sc["runAsNonRoot"] = non_root
    if pod and draw(st.booleans()):
        sc["fsGroupChangePolicy"] = draw(st.sampled_from(["Always", "OnRootMismatch"]))
    return sc


@st.composite
def containers(draw: st.DrawFn, *, name: str, volumes: list[str]) -> dict[str, Any]:
    container: dict[str, Any] = {"name": name, "image": draw(images)}
    mounts = []
    paths: set[str] = set()
    # Mostly declared volumes, the undeclared one last (hypothesis favours the first).
    names = st.sampled_from([*volumes, "undeclared"]) if volumes else st.just("undeclared")
    for mount in draw(
        st.lists(
            st.fixed_dictionaries(
                {"name": names, "mountPath": mount_paths},
                optional={
                    "subPath": st.sampled_from(["a", "b c", None]),
                    "subPathExpr": sub_path_exprs,
                    "readOnly": st.one_of(st.none(), st.booleans()),
                },
            ),
            min_size=1,
            max_size=3,
        )
    ):
        if mount["mountPath"] in paths:
            continue  # kube-apiserver refuses a container with two mounts at one path
        if mount.get("subPath") and mount.get("subPathExpr"):
            del mount["subPath"]
        paths.add(mount["mountPath"])
        mounts.append(mount)
    if mounts:
        container["volumeMounts"] = mounts
    if draw(st.booleans()):
        container["env"] = draw(st.sampled_from([ENV, ENV[:3], [ENV[1], ENV[0], ENV[2]]]))
    if draw(rarely(5)):
        container["envFrom"] = [{"configMapRef": {"name": "dify-env"}}]
    sc = draw(security_contexts(pod=False))
    if sc is not None:
        container["securityContext"] = sc
    return container


@st.composite
def scheduling(draw: st.DrawFn) -> dict[str, Any]:
    """Nothing, or a choice of OS by spec.os, nodeSelector or required node affinity."""
    choice = draw(st.sampled_from([0, 0, 0, 0, 1, 2, 3]))
    if choice == 1:
        return {"os": {"name": draw(st.sampled_from(["linux", "windows"]))}}
    if choice == 2:
        return {"nodeSelector": {"kubernetes.io/os": draw(st.sampled_from(["linux", "windows"]))}}
    if choice == 3:
        values = draw(st.sampled_from([["windows"], ["linux"], ["linux", "windows"]]))
        operator = draw(st.sampled_from(["In", "NotIn"]))
        term = {
            "matchExpressions": [
                {"key": "kubernetes.io/os", "operator": operator, "values": values}
            ]
        }
        return {
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}
                }
            }
        }
    return {}


@st.composite
def pods(draw: st.DrawFn) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    if draw(st.booleans()):
        metadata["name"] = "dify-api-0"
    else:
        metadata["generateName"] = "dify-api-"
    labels = draw(label_sets)
    if labels:
        metadata["labels"] = labels
    annotations = draw(annotation_maps)
    if draw(rarely(20)):
        annotations["volume-init.dify.ai/inject"] = "false"
    if annotations:
        metadata["annotations"] = annotations
    volume_list = draw(st.lists(volume_names, min_size=1, max_size=4, unique=True))
    names = draw(st.lists(container_names, min_size=1, max_size=5, unique=True))
    split = draw(st.integers(0, len(names) - 1))
    spec: dict[str, Any] = {
        "containers": [draw(containers(name=n, volumes=volume_list)) for n in names[split:]],
        **draw(scheduling()),
    }
    init = [draw(containers(name=n, volumes=volume_list)) for n in names[:split]]
    if init:
        spec["initContainers"] = init
    elif draw(rarely(10)):
        spec["initContainers"] = None
    if draw(rarely(25)):  # beyond what the webhook handles
        spec["containers"] += [{"name": f"filler-{i}", "image": "i:1"} for i in range(100)]
    spec["volumes"] = [{"name": name, **draw(volume_sources)} for name in volume_list]
    sc = draw(security_contexts(pod=True))
    if sc is not None:
        spec["securityContext"] = sc
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}
