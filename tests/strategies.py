"""hypothesis strategies for pods in the shapes Dify charts and users produce."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

STORAGE = "/app/api/storage"

label_sets = st.sampled_from(
    [
        {"app.kubernetes.io/name": "dify", "component": "api"},
        {"app.kubernetes.io/name": "dify", "component": "worker"},
        {"app.kubernetes.io/name": "dify", "component": "beat"},
        {"app.kubernetes.io/name": "dify", "component": "web"},
        {"app.kubernetes.io/name": "dify", "app.kubernetes.io/component": "worker-beat"},
        {"app.kubernetes.io/name": "dify", "app.kubernetes.io/component": "sandbox"},
        {"app": "dify-api"},
        {"app": "dify-worker"},
        {"app": "nginx"},
        {},
    ]
)
keys = st.sampled_from(["a/b", "x~y", "~1", "/", "e.com/k~0/x", "plain", "volume-init.dify.ai/x"])
annotation_maps = st.dictionaries(keys, st.text(max_size=8), max_size=3)
volume_names = st.sampled_from(["app-data", "storage", "cfg", "missing"])
mount_paths = st.sampled_from([STORAGE, STORAGE + "/", "/data", "/app/api/storage/sub", "/tmp"])
ids = st.one_of(st.none(), st.sampled_from([0, 1001, 2000]))

volume_sources = st.sampled_from(
    [
        {"persistentVolumeClaim": {"claimName": "dify"}},
        {"nfs": {"server": "nfs", "path": "/exports/dify"}},
        {"hostPath": {"path": "/srv/dify"}},
        {"hostPath": {"path": "/etc/dify"}},
        {"emptyDir": {}},
        {"configMap": {"name": "c"}},
        {"csi": {"driver": "x.csi.k8s.io"}},
    ]
)


@st.composite
def security_contexts(draw: st.DrawFn, *, pod: bool) -> dict[str, Any] | None:
    if draw(st.booleans()):
        return None
    sc: dict[str, Any] = {}
    for key in ("runAsUser", "runAsGroup") + (("fsGroup",) if pod else ()):
        value = draw(ids)
        if value is not None:
            sc[key] = value
    non_root = draw(st.one_of(st.none(), st.booleans()))
    if non_root is not None:
        sc["runAsNonRoot"] = non_root
    if pod and draw(st.booleans()):
        sc["fsGroupChangePolicy"] = draw(st.sampled_from(["Always", "OnRootMismatch"]))
    return sc


@st.composite
def containers(draw: st.DrawFn, *, prefix: str) -> dict[str, Any]:
    container: dict[str, Any] = {"name": f"{prefix}-{draw(st.integers(0, 99))}", "image": "i:1"}
    mounts = draw(
        st.lists(
            st.fixed_dictionaries(
                {"name": volume_names, "mountPath": mount_paths},
                optional={"subPath": st.sampled_from(["a", "b c"]), "readOnly": st.booleans()},
            ),
            max_size=2,
        )
    )
    if mounts:
        container["volumeMounts"] = mounts
    sc = draw(security_contexts(pod=False))
    if sc is not None:
        container["securityContext"] = sc
    return container


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
    if draw(st.integers(0, 9)) == 0:
        annotations["volume-init.dify.ai/inject"] = "false"
    if annotations:
        metadata["annotations"] = annotations
    spec: dict[str, Any] = {
        "containers": draw(st.lists(containers(prefix="c"), min_size=1, max_size=3))
    }
    init = draw(st.lists(containers(prefix="i"), max_size=2))
    if init:
        spec["initContainers"] = init
    volumes = []
    for name in draw(st.lists(volume_names, max_size=3, unique=True)):
        volumes.append({"name": name, **draw(volume_sources)})
    if volumes:
        spec["volumes"] = volumes
    sc = draw(security_contexts(pod=True))
    if sc is not None:
        spec["securityContext"] = sc
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}
