"""The decision for one pod: inject, skip or deny (SPEC §6). Pure: no I/O.

`mutate()` takes a pod as the plain dict kube-apiserver sent (never a model,
which would drop fields it does not know) and returns a `Decision`: what
happened and why, the warnings for the user, the JSON Patch and the patched
pod. The admission endpoint and the `review` command both call it, so what a
user previews is what the cluster gets.

It is idempotent by construction: everything it adds is added only where
absent, and a pod that already carries the init container is left alone, so a
second call on its own output (reinvocation) yields no patch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from webhook import initscript, podshape
from webhook.patches import Operation, PatchBuilder
from webhook.policy import Policy, Rule, normalize_path

ANNOTATION_PREFIX = "volume-init.dify.ai/"
INJECT_ANNOTATION = ANNOTATION_PREFIX + "inject"
STATUS_ANNOTATION = ANNOTATION_PREFIX + "status"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"

# Host paths whose ownership a pod must never get changed: the host's system
# directories and the node agents' state. A hostPath equal to one of these,
# below one, or above one (a recursive walk from `/var` reaches
# `/var/lib/kubelet`) is refused. `/lib*` is matched by prefix.
FORBIDDEN_HOST_PATHS: tuple[str, ...] = (
    "/etc",
    "/usr",
    "/bin",
    "/sbin",
    "/boot",
    "/dev",
    "/proc",
    "/sys",
    "/run",
    "/var/run",
    "/var/lib/kubelet",
    "/var/lib/docker",
    "/var/lib/containerd",
    "/var/log",
)

# Volume types whose content the kubelet projects read-only: nothing to fix.
_READ_ONLY_SOURCES = frozenset({"configMap", "secret", "projected", "downwardAPI"})
_ENV_REFERENCE = re.compile(r"\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")

Outcome = Literal["injected", "skipped", "denied"]


@dataclass(frozen=True)
class Decision:
    """What the webhook does with one pod, and why."""

    outcome: Outcome
    reason: str
    """A stable code for metrics and scripts: `injected`, `restricted`,
    `no-rule-matched`, `no-storage-mount`, `opted-out`, `excluded-namespace`,
    `mirror-pod`, `windows-pod`, `already-injected`, `hostpath-refused`."""
    message: str
    """One line for people: the rule and volume fixed, or why not."""
    pod: dict[str, Any]
    """The patched pod (the request's own object when nothing changes)."""
    patch: list[Operation] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    rule: str | None = None
    volumes: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Mount:
    container: str
    kind: str  # "containers" or "initContainers"
    index: int
    mount_path: str
    volume: str
    sub_path: str | None
    sub_path_expr: str | None


def mutate(
    pod: dict[str, Any],
    policy: Policy,
    *,
    namespace: str,
    restricted: bool = False,
    protected_namespaces: frozenset[str] = frozenset(),
) -> Decision:
    """Decide what to do with `pod` created in `namespace` under `policy`.

    `restricted` is set for namespaces that enforce Pod Security "restricted":
    no root init container there, only the securityContext and annotation.
    `protected_namespaces` (the webhook's own) are skipped whatever the policy
    says. Raises `InvalidObject` when the pod's fields have the wrong shape.
    """
    podshape.check_pod(pod)
    metadata = pod.get("metadata") or {}
    annotations: dict[str, str] = metadata.get("annotations") or {}
    labels: dict[str, str] = metadata.get("labels") or {}
    spec: dict[str, Any] = pod["spec"]

    def skip(reason: str, message: str, rule: str | None = None) -> Decision:
        return Decision("skipped", reason, message, pod, rule=rule)

    if MIRROR_ANNOTATION in annotations:
        return skip("mirror-pod", "mirror pod of a static pod: the kubelet owns it")
    if namespace in protected_namespaces or namespace in policy.spec.exclude_namespaces:
        return skip("excluded-namespace", f"namespace {namespace} is excluded")
    if annotations.get(INJECT_ANNOTATION, "").strip().lower() == "false":
        return skip("opted-out", f'opted out by annotation {INJECT_ANNOTATION}: "false"')

    matched: list[str] = []
    for rule in policy.spec.rules:
        selector = rule.matching_selector(labels)
        if selector is None:
            continue
        mounts = _storage_mounts(spec, rule)
        if not mounts:
            matched.append(rule.name)
            continue
        if (spec.get("os") or {}).get("name") == "windows":
            return skip("windows-pod", "Windows pod: ownership cannot be set", rule.name)
        init_names = {c.get("name") for c in spec.get("initContainers") or ()}
        if rule.init_container.name in init_names:
            return skip(
                "already-injected",
                f"already injected: init container {rule.init_container.name} is present",
                rule.name,
            )
        where = f"rule {rule.name} (selector {selector.description})"
        return _apply(pod, rule, mounts, restricted=restricted, where=where)
    if matched:
        paths = ", ".join(p for r in policy.spec.rules if r.name in matched for p in r.mount_paths)
        return skip(
            "no-storage-mount",
            f"rule {matched[0]} matches the labels but no container mounts a volume at {paths}",
            matched[0],
        )
    return skip("no-rule-matched", "no rule's pod selector matches the pod's labels")


def _storage_mounts(spec: dict[str, Any], rule: Rule) -> list[_Mount]:
    found: list[_Mount] = []
    for kind in ("containers", "initContainers"):
        for index, container in enumerate(spec.get(kind) or ()):
            for mount in container.get("volumeMounts") or ():
                if normalize_path(mount["mountPath"]) in rule.mount_paths:
                    found.append(
                        _Mount(
                            container=container.get("name") or f"{kind}[{index}]",
                            kind=kind,
                            index=index,
                            mount_path=mount["mountPath"],
                            volume=mount["name"],
                            sub_path=mount.get("subPath") or None,
                            sub_path_expr=mount.get("subPathExpr") or None,
                        )
                    )
    return found


def _apply(
    pod: dict[str, Any], rule: Rule, mounts: list[_Mount], *, restricted: bool, where: str
) -> Decision:
    spec = pod["spec"]
    volumes = {v["name"]: v for v in spec.get("volumes") or ()}
    warnings: list[str] = []
    fixable: list[_Mount] = []
    sources: dict[str, str] = {}
    for mount in mounts:
        volume = volumes.get(mount.volume)
        if volume is None:
            warnings.append(
                f"container {mount.container} mounts volume {mount.volume} at"
                f" {mount.mount_path}, but the pod declares no such volume"
            )
            continue
        source = _source(volume)
        if source in _READ_ONLY_SOURCES:
            warnings.append(
                f"volume {mount.volume} at {mount.mount_path} is a {source} volume"
                " (read-only): left alone"
            )
            continue
        if source == "hostPath":
            refusal = host_path_refusal(volume["hostPath"]["path"], rule)
            if refusal is not None:
                return Decision(
                    "denied",
                    "hostpath-refused",
                    f"volume {mount.volume} (mounted at {mount.mount_path} by container"
                    f" {mount.container}) is a hostPath of {_shown(volume['hostPath']['path'])},"
                    f" {refusal}."
                    " dify-volume-init will not change ownership there: use a directory of"
                    " Dify's own (e.g. /srv/dify/storage) or a PersistentVolumeClaim.",
                    pod,
                    rule=rule.name,
                )
        sources[mount.volume] = source
        fixable.append(mount)
    if not fixable:
        return Decision(
            "skipped",
            "no-storage-mount",
            f"{where} matches, but no fixable volume is mounted at {', '.join(rule.mount_paths)}",
            pod,
            warnings=warnings,
            rule=rule.name,
        )

    builder = PatchBuilder(pod)
    fixed = tuple(dict.fromkeys(m.volume for m in fixable))
    owner = f"{rule.user}:{rule.group}"
    if restricted:
        weak = [
            f"{name} ({sources[name]})" for name in fixed if sources[name] in ("hostPath", "nfs")
        ]
        warnings.append(
            f"Pod Security restricted: no init container, only fsGroup {rule.group}"
            " (OnRootMismatch), which hostPath and NFS volumes ignore"
            + (f"; make {', '.join(weak)} owned by {owner} on the server" if weak else "")
        )
    else:
        builder.insert(("spec", "initContainers"), 0, _init_container(rule, fixable, spec))
    _security_context(builder, rule, fixable, warnings)
    status: dict[str, Any] = {"rule": rule.name, "volumes": list(fixed), "owner": owner}
    status["initContainer"] = None if restricted else rule.init_container.name
    value = orjson.dumps(status).decode()
    if builder.get(("metadata", "annotations", STATUS_ANNOTATION)) != value:
        builder.set_default(("metadata", "annotations"), STATUS_ANNOTATION, value, overwrite=True)

    mounted = ", ".join(dict.fromkeys(f"{m.volume} at {m.mount_path}" for m in fixable))
    what = "securityContext only (Pod Security restricted)" if restricted else "init container"
    if not builder.operations:
        return Decision(
            "skipped",
            "already-injected",
            f"{where}: already injected, nothing to change",
            pod,
            warnings=warnings,
            rule=rule.name,
            volumes=fixed,
        )
    return Decision(
        "injected",
        "restricted" if restricted else "injected",
        f"{where} fixes {mounted} for {owner} ({what})",
        builder.result,
        patch=builder.operations,
        warnings=warnings,
        rule=rule.name,
        volumes=fixed,
    )


def _source(volume: dict[str, Any]) -> str:
    for key, value in volume.items():
        if key != "name" and value is not None:
            return key
    return "emptyDir"  # a volume with no source: kube-apiserver will reject it


def host_path_refusal(path: str, rule: Rule) -> str | None:
    """Why a hostPath must not be chowned, or None when it may be."""
    if not path.startswith("/"):
        return "not an absolute path"
    normalized = normalize_path(path)
    if normalized == "/":
        return "the host's root directory"
    first = normalized.split("/")[1]
    if first.startswith("lib"):
        return f"a system path (under /{first})"
    for forbidden in FORBIDDEN_HOST_PATHS:
        if _within(normalized, forbidden):
            return f"a system path (under {forbidden})"
        if _within(forbidden, normalized):
            return f"a directory that contains the system path {forbidden}"
    if rule.allowed_host_path_prefixes and not any(
        _within(normalized, prefix) for prefix in rule.allowed_host_path_prefixes
    ):
        allowed = ", ".join(rule.allowed_host_path_prefixes)
        return f"outside the policy's allowedHostPathPrefixes ({allowed})"
    return None


def _shown(path: str) -> str:
    normalized = normalize_path(path) if path.startswith("/") else path
    return path if normalized == path else f"{path} (= {normalized})"


def _within(path: str, ancestor: str) -> bool:
    return ancestor in ("/", path) or path.startswith(ancestor + "/")


def _init_container(rule: Rule, mounts: list[_Mount], spec: dict[str, Any]) -> dict[str, Any]:
    volume_mounts: list[dict[str, Any]] = []
    directories: list[str] = []
    seen: set[tuple[str, str | None, str | None]] = set()
    env: dict[str, dict[str, Any]] = {}
    for mount in mounts:
        key = (mount.volume, mount.sub_path, mount.sub_path_expr)
        if key in seen:
            continue
        seen.add(key)
        path = normalize_path(mount.mount_path)
        suffix = 2
        while path in directories:
            path = f"{normalize_path(mount.mount_path)}-{suffix}"
            suffix += 1
        directories.append(path)
        entry: dict[str, Any] = {"name": mount.volume, "mountPath": path}
        if mount.sub_path:
            entry["subPath"] = mount.sub_path
        if mount.sub_path_expr:
            entry["subPathExpr"] = mount.sub_path_expr
            env.update(_referenced_env(spec, mount))
        volume_mounts.append(entry)
    ic = rule.init_container
    container: dict[str, Any] = {
        "name": ic.name,
        "image": ic.image,
        "command": initscript.command(user=rule.user, group=rule.group, directories=directories),
    }
    if ic.image_pull_policy:
        container["imagePullPolicy"] = ic.image_pull_policy
    if env:
        container["env"] = list(env.values())
    resources = ic.resources.to_k8s()
    if resources:
        container["resources"] = resources
    container["securityContext"] = {
        "runAsUser": 0,
        "runAsGroup": 0,
        "runAsNonRoot": False,
        "privileged": False,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"], "add": list(initscript.CAPABILITIES)},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container["volumeMounts"] = volume_mounts
    return container


def _referenced_env(spec: dict[str, Any], mount: _Mount) -> dict[str, dict[str, Any]]:
    """The env entries a `subPathExpr` expands, copied from the app container."""
    names = _ENV_REFERENCE.findall(mount.sub_path_expr or "")
    container = spec[mount.kind][mount.index]
    out: dict[str, dict[str, Any]] = {}
    for var in podshape.check_env(container, f"spec.{mount.kind}[{mount.index}]"):
        if var.get("name") in names:
            out[var["name"]] = var
    return out


def _security_context(
    builder: PatchBuilder, rule: Rule, mounts: list[_Mount], warnings: list[str]
) -> None:
    pod_sc_path = ("spec", "securityContext")
    pod_sc: dict[str, Any] = builder.get(pod_sc_path) or {}
    fs_group = pod_sc.get("fsGroup")
    if fs_group is not None and fs_group != rule.group:
        warnings.append(
            f"pod securityContext.fsGroup is {fs_group}, the policy wants {rule.group}: left as is"
        )
    builder.set_defaults(
        pod_sc_path, {"fsGroup": rule.group, "fsGroupChangePolicy": "OnRootMismatch"}
    )

    done: set[int] = set()
    for mount in mounts:
        if mount.kind != "containers" or mount.index in done:
            continue
        done.add(mount.index)
        path = ("spec", "containers", mount.index, "securityContext")
        sc: dict[str, Any] = builder.get(path) or {}
        wanted: dict[str, Any] = {}
        effective: dict[str, Any] = {}
        for key, value in (("runAsUser", rule.user), ("runAsGroup", rule.group)):
            current = sc.get(key, pod_sc.get(key))
            if current is None:
                wanted[key] = effective[key] = value
                continue
            effective[key] = current
            if current != value:
                level = "container" if sc.get(key) is not None else "pod"
                warnings.append(
                    f"container {mount.container}: {key} is {current} (set on the {level}),"
                    f" the policy wants {value}: left as is"
                )
        non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
        if non_root is None:
            # NB: runAsNonRoot with UID 0 stops the kubelet from starting the container.
            if effective["runAsUser"] != 0:
                wanted["runAsNonRoot"] = True
        elif non_root is False:
            warnings.append(
                f"container {mount.container}: runAsNonRoot is false, the policy wants true:"
                " left as is"
            )
        builder.set_defaults(path, wanted)
