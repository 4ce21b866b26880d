"""The decision for one pod: inject, skip or deny (docs/design.md#the-decision). Pure: no I/O.

`mutate()` takes a pod as the plain dict kube-apiserver sent (never a model,
which would drop fields it does not know) and returns a `Decision`: what
happened and why, the warnings for the user, the JSON Patch and the patched
pod. The admission endpoint and the `review` command both call it, so what a
user previews is what the cluster gets.

The rule it keeps: **never make a pod worse**. It injects only when the
patched pod is valid and its init container can start and can succeed;
otherwise it leaves the pod alone and says why (a stable reason code and a
warning). Denial is kept for storage that is a hostPath of the node's own
directories. Its work is linear in the pod's size (one pass over the
containers and their mounts, sets and dicts for every lookup) and bounded by
`limits`.

It is idempotent by construction: everything it adds is added only where
absent, and a pod that already carries its init container is left alone, so a
second call on its own output (reinvocation) yields no patch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import orjson

from webhook.engine import PRODUCT, envexpand, hostpaths, initscript, limits, podshape
from webhook.engine.patches import Operation, PatchBuilder
from webhook.engine.policy import Policy, Rule

ANNOTATION_PREFIX = "volume-init.dify.ai/"
INJECT_ANNOTATION = ANNOTATION_PREFIX + "inject"
STATUS_ANNOTATION = ANNOTATION_PREFIX + "status"
FULL_PASS_ANNOTATION = ANNOTATION_PREFIX + "full-pass"
FULL_PASS_ENV = "VOLUME_INIT_FULL_PASS"  # noqa: S105 (a walk, not a password)
# A token the script records in its flag: a new one forces one full walk.
_FULL_PASS = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9._:+]{0,62}$")
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
OS_LABELS = ("kubernetes.io/os", "beta.kubernetes.io/os")

# Volume types the kubelet always mounts read-only.
_READ_ONLY_SOURCES = frozenset({"configMap", "secret", "projected", "downwardAPI", "image"})
_NAME_LIMIT = 63  # a container name is a DNS-1123 label

Outcome = Literal["injected", "skipped", "denied"]

REASONS: dict[str, str] = {
    "injected": "the init container and securityContext were added",
    "restricted": "Pod Security restricted: only the securityContext was added",
    "no-rule-matched": "no rule's pod selector matches the pod's labels",
    "no-storage-mount": "a rule matches, but no container mounts a volume at its mountPaths",
    "image-not-listed": "no container mounting the storage runs one of the rule's images",
    "image-runs-as-root": "the app image is older than nonRootSince and runs as root",
    "read-only-storage": "the storage is read-only (its source or every mount of it)",
    "subpath-expr-unresolvable": "the init container could not expand a subPathExpr the same way",
    "pod-too-large": "more containers, volumes or storage mounts than the webhook handles",
    "windows-pod": "a Windows pod: ownership cannot be set",
    "opted-out": 'annotation volume-init.dify.ai/inject: "false"',
    "excluded-namespace": "the namespace is excluded (the policy's list or the webhook's own)",
    "mirror-pod": "a mirror pod of a static pod: the kubelet owns it",
    "already-injected": "the pod already carries the init container (reinvocation)",
    "hostpath-refused": "denied: the storage is a hostPath of a system path",
}
"""Every reason a decision gives, with one line of why (the README lists them)."""

# Skips of a pod a rule wants: the user is told why in a warning.
_TOLD = frozenset(
    {
        "image-not-listed",
        "image-runs-as-root",
        "read-only-storage",
        "subpath-expr-unresolvable",
        "pod-too-large",
        "windows-pod",
    }
)


@dataclass(frozen=True)
class Decision:
    """What the webhook does with one pod, and why."""

    outcome: Outcome
    reason: str
    """A stable code for metrics and scripts: a key of `REASONS`."""
    message: str
    """One line for people: the rule and volume fixed, or why not."""
    pod: dict[str, Any]
    """The patched pod (the request's own object when nothing changes)."""
    patch: list[Operation] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    rule: str | None = None

    def __post_init__(self) -> None:
        # NB: a pod can produce a warning per mount; kube-apiserver keeps 4 KiB.
        object.__setattr__(self, "warnings", limits.capped(self.warnings))


class _Mount(NamedTuple):
    """One mount at or below a storage path, by a container that counts."""

    container: str
    kind: str  # "containers" or "initContainers"
    position: int  # in its list of containers
    path: str  # normalized mountPath
    mount_path: str  # as written
    volume: str
    sub_path: str | None
    sub_path_expr: str | None
    read_only: bool
    root: str  # the storage path it is at or below

    @property
    def key(self) -> tuple[str, str | None, str | None]:
        """What the mount shows of its volume."""
        return (self.volume, self.sub_path, self.sub_path_expr)


@dataclass
class _Scan:
    """What one rule finds in a pod's containers."""

    mounts: list[_Mount] = field(default_factory=list)
    unlisted: list[str] = field(default_factory=list)
    """Containers mounting a storage path but running none of the rule's images."""
    root_images: list[tuple[str, str, str]] = field(default_factory=list)
    """(container, image, nonRootSince) of counted containers whose image runs as root."""
    too_large: str | None = None
    """Why the scan stopped early: more storage mounts, or a longer path, than handled."""


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

    if MIRROR_ANNOTATION in annotations:
        return _skip(pod, "mirror-pod", "mirror pod of a static pod: the kubelet owns it")
    if namespace in protected_namespaces or namespace in policy.spec.exclude_namespaces:
        return _skip(pod, "excluded-namespace", f"namespace {namespace} is excluded")
    if (annotations.get(INJECT_ANNOTATION) or "").strip().lower() == "false":
        return _skip(pod, "opted-out", f'opted out by annotation {INJECT_ANNOTATION}: "false"')

    passed: list[Decision] = []  # rules whose selector matched but that found no storage
    for rule in policy.spec.rules:
        selector = rule.matching_selector(labels)
        if selector is None:
            continue
        where = f"rule {rule.name} (selector {selector.description})"
        decision = _decide_for_rule(pod, rule, annotations, where=where, restricted=restricted)
        if decision.reason not in ("no-storage-mount", "image-not-listed"):
            return decision
        passed.append(decision)
    if passed:
        return next((d for d in passed if d.reason == "image-not-listed"), passed[0])
    return _skip(pod, "no-rule-matched", "no rule's pod selector matches the pod's labels")


def _skip(pod: dict[str, Any], reason: str, message: str, rule: str | None = None) -> Decision:
    """The pod left alone; a rule that wanted it says why in a warning too."""
    warnings = [f"not injected: {message}"] if reason in _TOLD else []
    return Decision("skipped", reason, message, pod, warnings=warnings, rule=rule)


def _decide_for_rule(
    pod: dict[str, Any], rule: Rule, annotations: dict[str, str], *, where: str, restricted: bool
) -> Decision:
    """The decision of one rule whose selector matches: its limits and storage mounts,
    the skips that keep a pod from being made worse, then the classified mounts and
    the patch."""
    spec: dict[str, Any] = pod["spec"]
    too_big = limits.exceeded(spec)
    if too_big is not None:
        return _skip(pod, "pod-too-large", f"{where}: the pod has {too_big}", rule.name)
    scan = _scan(spec, rule)
    if scan.too_large is not None:
        return _skip(pod, "pod-too-large", f"{where}: {scan.too_large}", rule.name)
    if not scan.mounts:
        paths = ", ".join(rule.mount_paths)
        if scan.unlisted:
            wanted = ", ".join(entry.repository for entry in rule.images)
            return _skip(
                pod,
                "image-not-listed",
                f"{where}: container {scan.unlisted[0]} mounts {paths} but runs"
                f" none of the rule's images ({wanted})",
                rule.name,
            )
        return _skip(
            pod,
            "no-storage-mount",
            f"rule {rule.name} matches the labels but no container mounts a volume at {paths}",
            rule.name,
        )
    windows = _windows(spec)
    if windows is not None:
        return _skip(pod, "windows-pod", f"{where}: Windows pod ({windows})", rule.name)
    ours = _injected(spec, annotations)
    if ours is not None:
        message = f"already injected: init container {ours} is present"
        return _skip(pod, "already-injected", message, rule.name)
    if scan.root_images:
        container, image, since = scan.root_images[0]
        return _skip(
            pod,
            "image-runs-as-root",
            f"{where}: container {container} runs {image}, older than {since}, from which"
            " the image runs as non-root; forcing a user onto it would change an app that"
            " has no problem",
            rule.name,
        )
    classified = _classify(pod, rule, scan.mounts, where=where)
    if isinstance(classified, Decision):
        return classified
    return _apply(pod, rule, classified, restricted=restricted, where=where)


def _scan(spec: dict[str, Any], rule: Rule) -> _Scan:
    """The mounts at or below the rule's storage paths, by containers that count.

    A container's mount at a storage path is a root; its mounts below a root
    (an NFS share at `/app/api/storage/upload_files`) are fixed with it.
    Linear: each mount is normalized once and compared with at most the
    rule's few storage paths; the scan stops at the first mount past a limit.
    """
    scan = _Scan()
    storage = rule.mount_path_set
    for kind in ("containers", "initContainers"):
        for index, container in enumerate(spec.get(kind) or ()):
            entries = container.get("volumeMounts") or ()
            paths = [hostpaths.normalize(m["mountPath"]) for m in entries]
            roots = {p for p in paths if p in storage}
            if not roots:
                continue
            name = container.get("name") or f"{kind}[{index}]"
            if rule.images:
                image = container.get("image") or ""
                entry = rule.image_rule(image)
                if entry is None:
                    scan.unlisted.append(name)
                    continue
                if entry.runs_as_root(image):
                    scan.root_images.append((name, image, str(entry.non_root_since)))
            # A storage path below another one of the same container is nested in it.
            top = [r for r in roots if not any(r != o and hostpaths.within(r, o) for o in roots)]
            for mount, path in zip(entries, paths, strict=True):
                root = next((r for r in top if hostpaths.within(path, r)), None)
                if root is None:
                    continue
                if len(scan.mounts) == limits.MAX_STORAGE_MOUNTS:
                    scan.too_large = (
                        f"more than {limits.MAX_STORAGE_MOUNTS} mounts at or below"
                        f" {', '.join(rule.mount_paths)}, the most the webhook handles"
                    )
                    return scan
                if len(path) > limits.MAX_PATH_BYTES:
                    scan.too_large = (
                        f"container {name} mounts a path of {len(path)} bytes below the storage,"
                        f" longer than PATH_MAX ({limits.MAX_PATH_BYTES})"
                    )
                    return scan
                scan.mounts.append(
                    _Mount(
                        container=name,
                        kind=kind,
                        position=index,
                        path=path,
                        mount_path=mount["mountPath"],
                        volume=mount["name"],
                        sub_path=mount.get("subPath") or None,
                        sub_path_expr=mount.get("subPathExpr") or None,
                        read_only=mount.get("readOnly") is True,
                        root=root,
                    )
                )
    return scan


def _windows(spec: dict[str, Any]) -> str | None:
    """How the pod says it runs on Windows, or None."""
    if (spec.get("os") or {}).get("name") == "windows":
        return "spec.os.name: windows"
    node_selector = spec.get("nodeSelector") or {}
    for label in OS_LABELS:
        if node_selector.get(label) == "windows":
            return f"nodeSelector {label}: windows"
    terms = podshape.required_node_terms(spec)
    if terms and all(_term_excludes_linux(term) for term in terms):
        return "required node affinity on kubernetes.io/os excludes linux"
    return None


def _term_excludes_linux(term: dict[str, Any]) -> bool:
    """A nodeSelectorTerm no Linux node can satisfy, by its OS label."""
    for expression in term.get("matchExpressions") or ():
        if expression.get("key") not in OS_LABELS:
            continue
        values = expression.get("values") or ()
        operator = expression.get("operator")
        if operator == "In" and values and "linux" not in values:
            return True
        if operator == "NotIn" and "linux" in values:
            return True
    return False


def _injected(spec: dict[str, Any], annotations: dict[str, str]) -> str | None:
    """The name of the init container this webhook injected, when the pod has it.

    Ours is the one the status annotation names, or (should another tool drop
    the annotation) one that runs our script.
    """
    present: set[str] = set()
    for container in spec.get("initContainers") or ():
        name = container.get("name") or ""
        if initscript.runs_script(container.get("command")):
            return name
        present.add(name)
    status = annotations.get(STATUS_ANNOTATION)
    if status:
        try:
            recorded = orjson.loads(status)
        except orjson.JSONDecodeError:
            return None
        if isinstance(recorded, dict):
            name = recorded.get("initContainer")
            if isinstance(name, str) and name in present:
                return name
    return None


def _read_only(volume: dict[str, Any], source: str) -> str | None:
    """Why the kubelet mounts this volume read-only in every container, or None."""
    if source in _READ_ONLY_SOURCES:
        return f"a read-only {source} volume"
    if (volume.get(source) or {}).get("readOnly") is True:
        return f"a read-only {source} volume ({source}.readOnly: true)"
    return None


@dataclass
class _Classified:
    """The storage mounts a pod's patch will fix, and what was said of the others."""

    fixable: list[_Mount]
    sources: dict[str, str]
    """Each fixable volume's source type (`persistentVolumeClaim`, `nfs`, ...)."""
    warnings: list[str]


def _classify(
    pod: dict[str, Any], rule: Rule, mounts: list[_Mount], *, where: str
) -> _Classified | Decision:
    """Each storage mount: fixable, or left alone (undeclared, read-only) with a
    warning; a hostPath of the node's own directories denies the pod. A pod with
    nothing fixable gets its skip decision here."""
    volumes = {v["name"]: v for v in pod["spec"].get("volumes") or ()}
    writable = {m.key for m in mounts if not m.read_only}
    classified = _Classified([], {}, [])
    read_only = 0
    for mount in mounts:
        volume = volumes.get(mount.volume)
        if volume is None:
            classified.warnings.append(
                f"container {mount.container} mounts volume {mount.volume} at"
                f" {mount.mount_path}, but the pod declares no such volume"
            )
            continue
        source = _source(volume)
        why = _read_only(volume, source)
        if why is None and mount.key not in writable:
            why = "mounted read-only by every container that mounts it there"
        if why is not None:
            read_only += 1
            classified.warnings.append(
                f"volume {mount.volume} at {mount.mount_path} is {why}: left alone"
            )
            continue
        if source == "hostPath":
            path = volume["hostPath"]["path"]
            refusal = hostpaths.refusal(
                path,
                forbidden=rule.forbidden_host_path_prefixes,
                allowed=rule.allowed_host_path_prefixes,
            )
            if refusal is not None:
                return Decision(
                    "denied",
                    "hostpath-refused",
                    f"volume {mount.volume} (mounted at {mount.mount_path} by container"
                    f" {mount.container}) is a hostPath of {hostpaths.shown(path)},"
                    f" {refusal}."
                    f" {PRODUCT} will not change ownership there: use a directory of"
                    " Dify's own (e.g. /srv/dify/storage) or a PersistentVolumeClaim.",
                    pod,
                    rule=rule.name,
                )
        classified.sources[mount.volume] = source
        classified.fixable.append(mount)
    if classified.fixable:
        return classified
    reason = "read-only-storage" if read_only else "no-storage-mount"
    what = "writable " if read_only else "fixable "
    message = f"{where} matches, but no {what}volume is mounted at {', '.join(rule.mount_paths)}"
    warnings = classified.warnings
    if read_only:
        warnings = [f"not injected: {message}", *warnings]
    return Decision("skipped", reason, message, pod, warnings=warnings, rule=rule.name)


def _apply(
    pod: dict[str, Any], rule: Rule, classified: _Classified, *, restricted: bool, where: str
) -> Decision:
    """The patch for the fixable mounts: the init container (not under Pod Security
    restricted), the securityContext and the status annotation."""
    fixable, warnings = classified.fixable, classified.warnings
    builder = PatchBuilder(pod)
    fixed = tuple(dict.fromkeys(m.volume for m in fixable))
    fs_group = (pod["spec"].get("securityContext") or {}).get("fsGroup")
    group = rule.group if fs_group is None else fs_group
    owner = f"{rule.user}:{group}"
    init_name: str | None = None
    if restricted:
        weak = [
            f"{name} ({classified.sources[name]})"
            for name in fixed
            if classified.sources[name] in ("hostPath", "nfs")
        ]
        warnings.append(
            f"Pod Security restricted: no init container, only fsGroup {group}"
            " (OnRootMismatch), which hostPath and NFS volumes ignore"
            + (f"; make {', '.join(weak)} owned by {owner} on the server" if weak else "")
        )
    else:
        added = _add_init_container(builder, rule, fixable, group=group, warnings=warnings)
        if isinstance(added, envexpand.Unreproducible):
            message = f"{where}: a subPathExpr cannot be expanded the same way: {added}"
            return Decision(
                "skipped",
                "subpath-expr-unresolvable",
                message,
                pod,
                warnings=[f"not injected: {message}", *warnings],
                rule=rule.name,
            )
        init_name = added
    if fs_group is not None and fs_group != rule.group:
        warnings.append(
            f"pod securityContext.fsGroup is {fs_group}, not the policy's group {rule.group}:"
            + (
                " left as is"
                if restricted
                else f" the volume is given to {owner}, so that the kubelet and the init"
                " container agree"
            )
        )
    _security_context(builder, rule, fixable, warnings)
    _status_annotation(builder, rule=rule.name, volumes=fixed, owner=owner, init=init_name)

    if not builder.operations:
        return Decision(
            "skipped",
            "already-injected",
            f"{where}: already injected, nothing to change",
            pod,
            warnings=warnings,
            rule=rule.name,
        )
    mounted = ", ".join(dict.fromkeys(f"{m.volume} at {m.mount_path}" for m in fixable))
    what = "securityContext only (Pod Security restricted)" if restricted else "init container"
    return Decision(
        "injected",
        "restricted" if restricted else "injected",
        f"{where} fixes {mounted} for {owner} ({what})",
        builder.result,
        patch=builder.operations,
        warnings=warnings,
        rule=rule.name,
    )


def _add_init_container(
    builder: PatchBuilder, rule: Rule, fixable: list[_Mount], *, group: int, warnings: list[str]
) -> str | envexpand.Unreproducible:
    """Insert the init container first in `initContainers`; its name, or why a
    `subPathExpr` keeps it out."""
    pod = builder.result
    spec = pod["spec"]
    try:
        env_from, env = _subpath_env(spec, fixable)
    except envexpand.Unreproducible as exc:
        return exc
    name = _free_name(spec, rule.init_container.name)
    if name != rule.init_container.name:
        warnings.append(
            f"another container is named {rule.init_container.name}:"
            f" the init container is named {name}"
        )
    token = ((pod.get("metadata") or {}).get("annotations") or {}).get(FULL_PASS_ANNOTATION)
    if token is not None:
        if _FULL_PASS.match(token):
            env = [*env, {"name": FULL_PASS_ENV, "value": token}]
        else:
            warnings.append(
                f"annotation {FULL_PASS_ANNOTATION} ignored: expected 1-63 letters, digits"
                " or . _ : + - (e.g. a date), starting with a letter or digit"
            )
    container = _init_container(rule, fixable, name=name, group=group, env_from=env_from, env=env)
    builder.insert(("spec", "initContainers"), 0, container)
    return name


def _status_annotation(
    builder: PatchBuilder, *, rule: str, volumes: tuple[str, ...], owner: str, init: str | None
) -> None:
    """The annotation that names what was injected (and how a reinvocation knows it)."""
    status = {"rule": rule, "volumes": list(volumes), "owner": owner, "initContainer": init}
    value = orjson.dumps(status).decode()
    if builder.get(("metadata", "annotations", STATUS_ANNOTATION)) != value:
        builder.set_default(("metadata", "annotations"), STATUS_ANNOTATION, value, overwrite=True)


def _source(volume: dict[str, Any]) -> str:
    for key, value in volume.items():
        if key != "name" and value is not None:
            return key
    return "emptyDir"  # a volume with no source: kube-apiserver will reject it


def _free_name(spec: dict[str, Any], wanted: str) -> str:
    """`wanted`, or `wanted-N`: a name no init, regular or ephemeral container has.

    kube-apiserver refuses a pod whose containers of any kind share a name.
    At most one more try than there are containers, so it always ends.
    """
    taken = {
        container.get("name")
        for kind in podshape.CONTAINER_KINDS
        for container in spec.get(kind) or ()
    }
    name = wanted
    suffix = 2
    while name in taken:
        tail = f"-{suffix}"
        name = wanted[: _NAME_LIMIT - len(tail)].rstrip("-") + tail
        suffix += 1
    return name


def _subpath_env(spec: dict[str, Any], mounts: list[_Mount]) -> tuple[list[Any], list[Any]]:
    """The `envFrom` and `env` the init container needs for the `subPathExpr` mounts."""
    expressions: dict[tuple[str, int], list[str]] = {}
    names: dict[tuple[str, int], str] = {}
    for mount in mounts:
        if mount.sub_path_expr:
            expressions.setdefault((mount.kind, mount.position), []).append(mount.sub_path_expr)
            names[(mount.kind, mount.position)] = mount.container
    requirements = []
    for (kind, index), texts in expressions.items():
        container = spec[kind][index]
        env = podshape.check_env(container, f"spec.{kind}[{index}]")
        requirements.append(envexpand.requirement(container, env, texts, name=names[(kind, index)]))
    return envexpand.merge(requirements)


def _directories(mounts: list[_Mount]) -> list[tuple[str, _Mount]]:
    """Where the init container mounts each of `mounts`: a tree per storage root.

    Each container's mounts under one storage root form a tree (the root and
    the mounts below it, at their paths relative to the root). Containers
    whose trees are the same share one; a different tree gets its own base
    directory (`/app/api/storage-2`), never inside or above another, so that
    the init container's mounts neither shadow nor nest in each other.
    """
    trees: dict[tuple[Any, ...], tuple[str, list[tuple[str, _Mount]]]] = {}
    by_container: dict[tuple[str, int, str, int], list[tuple[str, _Mount]]] = {}
    # NB: kube-apiserver compares mount paths as written, so one container may
    # mount two volumes at `/app/api/storage` and `/app/api/storage/`; the second
    # goes in a tree of its own (a slot), as the init container's may not repeat.
    slots: dict[tuple[str, int, str, str], int] = {}
    for mount in mounts:
        relative = mount.path[len(mount.root) :].lstrip("/")
        place = (mount.kind, mount.position, mount.root, relative)
        slot = slots.get(place, 0)
        slots[place] = slot + 1
        by_container.setdefault((mount.kind, mount.position, mount.root, slot), []).append(
            (relative, mount)
        )
    for (_, _, root, _), entries in by_container.items():
        shape = (root, frozenset((rel, *m.key) for rel, m in entries))
        trees.setdefault(shape, (root, entries))
    used: set[str] = set()
    above_used: set[str] = set()
    next_suffix: dict[str, int] = {}  # NB: each search resumes where the last one stopped
    placed: list[tuple[str, _Mount]] = []
    for storage, entries in trees.values():
        base = storage
        suffix = next_suffix.get(storage, 1)
        while base in used or base in above_used or _below_any(base, used):
            suffix += 1
            base = f"{storage}-{suffix}"
        next_suffix[storage] = suffix
        used.add(base)
        parent = base
        while parent != "/":
            parent = parent.rsplit("/", 1)[0] or "/"
            above_used.add(parent)
        seen: set[tuple[str, tuple[str, str | None, str | None]]] = set()
        for relative, mount in sorted(entries, key=lambda e: (e[0].count("/"), e[0])):
            target = f"{base}/{relative}" if relative else base
            if (target, mount.key) in seen:
                continue
            seen.add((target, mount.key))
            placed.append((target, mount))
    return placed


def _below_any(path: str, bases: set[str]) -> bool:
    parent = path
    while parent != "/":
        parent = parent.rsplit("/", 1)[0] or "/"
        if parent in bases:
            return True
    return False


def _init_container(
    rule: Rule,
    mounts: list[_Mount],
    *,
    name: str,
    group: int,
    env_from: list[Any],
    env: list[Any],
) -> dict[str, Any]:
    volume_mounts: list[dict[str, Any]] = []
    directories: list[str] = []
    for target, mount in _directories(mounts):
        entry: dict[str, Any] = {"name": mount.volume, "mountPath": target}
        if mount.sub_path:
            entry["subPath"] = mount.sub_path
        if mount.sub_path_expr:
            entry["subPathExpr"] = mount.sub_path_expr
        volume_mounts.append(entry)
        directories.append(target)
    ic = rule.init_container
    container: dict[str, Any] = {
        "name": name,
        "image": ic.image,
        "command": initscript.command(user=rule.user, group=group, directories=directories),
    }
    if ic.image_pull_policy:
        container["imagePullPolicy"] = ic.image_pull_policy
    if env_from:
        container["envFrom"] = env_from
    if env:
        container["env"] = env
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


def _security_context(
    builder: PatchBuilder, rule: Rule, mounts: list[_Mount], warnings: list[str]
) -> None:
    pod_sc_path = ("spec", "securityContext")
    pod_sc: dict[str, Any] = builder.get(pod_sc_path) or {}
    builder.set_defaults(
        pod_sc_path, {"fsGroup": rule.group, "fsGroupChangePolicy": "OnRootMismatch"}
    )

    done: set[int] = set()
    for mount in mounts:
        if mount.kind != "containers" or mount.position in done:
            continue
        done.add(mount.position)
        path = ("spec", "containers", mount.position, "securityContext")
        sc: dict[str, Any] = builder.get(path) or {}
        wanted: dict[str, Any] = {}
        effective: dict[str, Any] = {}
        for key, value in (("runAsUser", rule.user), ("runAsGroup", rule.group)):
            # NB: an explicit null is unset: the pod-level value applies.
            current, level = sc.get(key), "container"
            if current is None:
                current, level = pod_sc.get(key), "pod"
            if current is None:
                wanted[key] = effective[key] = value
                continue
            effective[key] = current
            if current != value:
                warnings.append(
                    f"container {mount.container}: {key} is {current} (set on the {level}),"
                    f" the policy wants {value}: left as is"
                )
        non_root = sc.get("runAsNonRoot")
        if non_root is None:
            non_root = pod_sc.get("runAsNonRoot")
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
