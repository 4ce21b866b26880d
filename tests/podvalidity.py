"""Is a pod one kube-apiserver accepts and the kubelet can start? As far as a patch can change it.

The strict OpenAPI schema of the newest Kubernetes release (kubernetes-validate)
checks every field's name and type; on top, the rules of kube-apiserver's
`ValidatePodSpec` (pkg/apis/core/validation) that an injected init container
or securityContext could break, and the kubelet's refusal to start a
container that must run as non-root with UID 0.
"""

from __future__ import annotations

import re
from typing import Any

import kubernetes_validate

KUBERNETES_VERSION = kubernetes_validate.latest_version()
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_KINDS = ("initContainers", "containers", "ephemeralContainers")


def problems(pod: dict[str, Any]) -> list[str]:
    """Why kube-apiserver would refuse `pod`, or the kubelet not start it; [] when neither."""
    found: list[str] = []
    try:
        kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        found.append(f"schema: {exc.message}")
    spec = pod.get("spec") or {}
    volumes = {v.get("name") for v in spec.get("volumes") or ()}
    names: set[str] = set()
    pod_sc = spec.get("securityContext") or {}
    for kind in _KINDS:
        for i, container in enumerate(spec.get(kind) or ()):
            where = f"spec.{kind}[{i}]"
            name = container.get("name")
            if not isinstance(name, str) or not _DNS1123_LABEL.match(name):
                found.append(f"{where}.name: not a DNS-1123 label: {name!r}")
            elif name in names:
                found.append(f"{where}.name: duplicate name {name!r}")
            names.add(name)
            paths: set[str] = set()
            for j, mount in enumerate(container.get("volumeMounts") or ()):
                at = f"{where}.volumeMounts[{j}]"
                if mount.get("name") not in volumes:
                    found.append(f"{at}.name: no volume {mount.get('name')!r}")
                if mount.get("mountPath") in paths:
                    found.append(f"{at}.mountPath: must be unique: {mount.get('mountPath')!r}")
                paths.add(mount.get("mountPath"))
                if mount.get("subPath") and mount.get("subPathExpr"):
                    found.append(f"{at}: subPath and subPathExpr are mutually exclusive")
            sc = container.get("securityContext") or {}
            user = (
                sc.get("runAsUser") if sc.get("runAsUser") is not None else pod_sc.get("runAsUser")
            )
            non_root = sc.get("runAsNonRoot")
            if non_root is None:
                non_root = pod_sc.get("runAsNonRoot")
            if non_root is True and user == 0:
                found.append(f"{where}: runAsNonRoot with runAsUser 0 never starts")
    if (spec.get("os") or {}).get("name") == "windows" and pod_sc.get("fsGroup") is not None:
        found.append("spec.securityContext.fsGroup: forbidden for a Windows pod")
    return found
