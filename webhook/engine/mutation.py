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

from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import orjson

from webhook.engine import (
    PRODUCT,
    envexpand,
    hostpaths,
    initcontainer,
    limits,
    podshape,
    storage,
    storagetype,
)
from webhook.engine.patches import Operation, PatchBuilder
from webhook.engine.policy import Policy, Rule, excluded_namespaces

ANNOTATION_PREFIX = "volume-init.dify.ai/"
INJECT_ANNOTATION = ANNOTATION_PREFIX + "inject"
STATUS_ANNOTATION = ANNOTATION_PREFIX + "status"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
OS_LABELS = ("kubernetes.io/os", "beta.kubernetes.io/os")

# Volume types the kubelet always mounts read-only.
_READ_ONLY_SOURCES = frozenset({"configMap", "secret", "projected", "downwardAPI", "image"})


Outcome = Literal["injected", "skipped", "denied"]

REASONS: dict[str, str] = {
    "injected": "the init container and securityContext were added",
    "restricted": "Pod Security restricted: only the securityContext was added",
    "no-rule-matched": "no rule's pod selector matches the pod's labels",
    "no-storage-mount": "a rule matches, but no container mounts a volume at its mountPaths",
    "image-not-listed": "no container mounting the storage runs one of the rule's images",
    "image-runs-as-root": "the app image is older than nonRootSince and runs as root",
    "image-version-unknown": "the app image is pinned by digest alone, and the rule asks for a tag",
    "read-only-storage": "the storage is read-only (its source or every mount of it)",
    "subpath-expr-unresolvable": "the init container could not expand a subPathExpr the same way",
    "pod-too-large": "more containers, volumes or storage mounts than the webhook handles",
    "windows-pod": "a Windows pod: ownership cannot be set",
    "storage-not-local": "the app's STORAGE_TYPE is an object store: Dify does not write there",
    "app-runs-as-root": "an app container runs as root (runAsUser: 0): it can write already",
    "app-users-differ": "the app containers run as different UIDs: no one owner serves them",
    "app-user-not-policy": "the app runs as a UID not the policy's, and followAppUser is off",
    "hostpath-not-directory": "the storage is a hostPath of a type that is not a directory",
    "opted-out": 'annotation volume-init.dify.ai/inject: "false"',
    "excluded-namespace": "the namespace is excluded (the policy's list or the webhook's own)",
    "mirror-pod": "a mirror pod of a static pod: the kubelet owns it",
    "already-injected": "the pod already carries the init container (reinvocation)",
    "hostpath-refused": "denied: the storage is a hostPath of a system path",
}
"""Every reason a decision gives, with one line of why (the README lists them)."""

# hostPath types the init container cannot walk (the kubelet makes or checks a file,
# socket or device there): `chown -R`/the walk exits 1 and the pod never starts.
_NOT_DIRECTORY = frozenset({"File", "FileOrCreate", "Socket", "CharDevice", "BlockDevice"})

# Skips of a pod a rule wants: the user is told why in a warning.
_TOLD = frozenset(
    {
        "image-not-listed",
        "image-runs-as-root",
        "image-version-unknown",
        "read-only-storage",
        "subpath-expr-unresolvable",
        "pod-too-large",
        "windows-pod",
        "storage-not-local",
        "hostpath-not-directory",
        "app-runs-as-root",
        "app-users-differ",
        "app-user-not-policy",
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
    if namespace in excluded_namespaces(policy, protected_namespaces):
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


def _skip(
    pod: dict[str, Any],
    reason: str,
    message: str,
    rule: str | None = None,
    *,
    warnings: list[str] | None = None,
    quiet: bool = False,
) -> Decision:
    """The pod left alone, with `warnings` said on the way; a rule that wanted it
    says why in a warning too, first (unless `quiet`)."""
    told = [f"not injected: {message}"] if reason in _TOLD and quiet is False else []
    return Decision("skipped", reason, message, pod, warnings=[*told, *(warnings or ())], rule=rule)


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
    scan = storage.scan(spec, rule)
    if scan.too_large is not None:
        return _skip(pod, "pod-too-large", f"{where}: {scan.too_large}", rule.name)
    if not scan.mounts:
        return _no_storage(pod, rule, scan, where=where)
    windows = _windows(spec)
    if windows is not None:
        return _skip(pod, "windows-pod", f"{where}: Windows pod ({windows})", rule.name)
    ours = _injected(spec, annotations)
    if ours is not None:
        return _reinvoked(pod, rule, scan.mounts, ours, where=where)
    notes: list[str] = []
    unsure = _unsure_of_the_app(pod, rule, scan, notes, where=where)
    if unsure is not None:
        return unsure
    classified = _classify(pod, rule, scan.mounts, where=where)
    if isinstance(classified, Decision):
        return classified
    classified.warnings.extend(notes)
    followed = _follow_app_user(pod, rule, classified, where=where)
    if isinstance(followed, Decision):
        return followed
    return _apply(pod, followed, classified, restricted=restricted, where=where)


def _no_storage(pod: dict[str, Any], rule: Rule, scan: storage.Scan, *, where: str) -> Decision:
    """No container of the rule's images mounts its storage: which skip, and why."""
    paths = ", ".join(rule.mount_paths)
    if scan.unlisted:
        wanted = ", ".join(entry.repository for entry in rule.images)
        return _skip(
            pod,
            "image-not-listed",
            f"{where}: container {scan.unlisted[0]} mounts {paths} but runs"
            f" none of the rule's images ({wanted})",
            rule.name,
            quiet=not rule.warn_image_not_listed,
        )
    return _skip(
        pod,
        "no-storage-mount",
        f"rule {rule.name} matches the labels but no container mounts a volume at {paths}",
        rule.name,
    )


def _unsure_of_the_app(
    pod: dict[str, Any], rule: Rule, scan: storage.Scan, notes: list[str], *, where: str
) -> Decision | None:
    """The skip for an app the webhook cannot be sure of: one that writes to an object
    store, runs a Dify older than non-root, or whose version cannot be told."""
    spec: dict[str, Any] = pod["spec"]
    remote = _object_storage(spec, scan.mounts, notes) if rule.skip_object_storage else None
    if remote is not None:
        container, what = remote
        return _skip(
            pod,
            "storage-not-local",
            f"{where}: container {container} has {what}: Dify writes its files to the"
            f" object store, not to the volume at {', '.join(rule.mount_paths)} (and"
            " ownership often cannot be changed on such a mount)",
            rule.name,
        )
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
    if scan.unknown_versions:
        container, image = scan.unknown_versions[0]
        return _skip(
            pod,
            "image-version-unknown",
            f"{where}: container {container} runs {image}, pinned by digest with no tag:"
            " its version, and so its user, cannot be told (the rule's images entry says"
            " untaggedDigest: leaveAlone)",
            rule.name,
        )
    return None


def _follow_app_user(
    pod: dict[str, Any], rule: Rule, classified: _Classified, *, where: str
) -> Rule | Decision:
    """The rule to apply: the policy's owner, or the user the app containers run as
    (`followAppUser`), said in a warning; a skip when the app is unsure or not followed."""
    identity = _identity(pod["spec"], classified.fixable)
    if isinstance(identity, _LeaveAlone):
        return _skip(pod, identity.reason, f"{where}: {identity.message}", rule.name)
    if identity is None:
        return rule
    user, group, said = identity
    if user == rule.user and (group is None or group == rule.group):
        return rule
    if not rule.follow_app_user:
        return _skip(
            pod,
            "app-user-not-policy",
            f"{where}: {said}, not the policy's {rule.user}:{rule.group}, and the"
            " rule's followAppUser is false",
            rule.name,
        )
    owner = f"{user}:{group}" if group is not None else f"UID {user}"
    classified.warnings.append(f"{said}: the volume is given to {owner}, as the app runs")
    return rule.model_copy(update={"user": user, "group": group or rule.group})


class _AppUser(NamedTuple):
    """The one UID (and group, when one is set) the app containers run as."""

    user: int
    group: int | None
    said: str
    """Who says so: `container api runs as UID 1000 (set on the container)`."""


class _LeaveAlone(NamedTuple):
    reason: str
    message: str


def _identity(spec: dict[str, Any], mounts: list[storage.Mount]) -> _AppUser | _LeaveAlone | None:
    """Who the app containers that mount the storage will run as, from their own
    securityContext (else the pod's): None when none says, so the policy's user
    stands; the UID they set (the volume is given to the app's real user, or it would
    lose write access where fsGroup does nothing); or why the pod must be left alone
    (an app that runs as root, or apps that run as different users)."""
    pod_sc = spec.get("securityContext") or {}
    users: dict[int, str] = {}
    groups: set[int] = set()
    for position in dict.fromkeys(m.position for m in mounts if m.kind == "containers"):
        container = spec["containers"][position]
        sc = container.get("securityContext") or {}
        name = container.get("name", "?")
        user, level = sc.get("runAsUser"), "container"
        if user is None:
            user, level = pod_sc.get("runAsUser"), "pod"
        group = sc.get("runAsGroup")
        if group is None:
            group = pod_sc.get("runAsGroup")
        if isinstance(group, int) and not isinstance(group, bool):
            groups.add(group)
        if not isinstance(user, int) or isinstance(user, bool):
            continue
        if user == 0:
            return _LeaveAlone(
                "app-runs-as-root",
                f"container {name} runs as root (runAsUser: 0, set on the {level}): it can"
                " write the storage as it is, and giving the volume to another user would"
                " take that away",
            )
        users.setdefault(user, f"container {name} runs as UID {user} (set on the {level})")
    if len(users) > 1:
        said = "; ".join(users.values())
        return _LeaveAlone("app-users-differ", f"{said}: no one owner lets them all write")
    if not users:
        return None
    ((user, said),) = users.items()
    return _AppUser(user, next(iter(groups)) if len(groups) == 1 else None, said)


def _object_storage(
    spec: dict[str, Any], mounts: list[storage.Mount], notes: list[str]
) -> tuple[str, str] | None:
    """The first app container and its object store, when every app container that
    mounts the storage writes to an object store; what could not be read goes to
    `notes`."""
    found: tuple[str, str] | None = None
    for position in dict.fromkeys(m.position for m in mounts if m.kind == "containers"):
        container = spec["containers"][position]
        said = storagetype.of(container)
        name = container.get("name", "?")
        if said.unreadable:
            notes.append(f"container {name}: {said.unreadable}: assumed local storage")
        if said.remote is None:
            return None
        found = found or (name, said.remote)
    return found


def _reinvoked(
    pod: dict[str, Any], rule: Rule, mounts: list[storage.Mount], ours: str, *, where: str
) -> Decision:
    """A pod that already carries our init container: called again (reinvocation) after
    another webhook changed it. A container that webhook added and that mounts the
    storage gets the securityContext the others got; anything else is left alone."""
    builder = PatchBuilder(pod)
    warnings: list[str] = []
    fixed = _fixed_volumes(pod)
    mounting = [m for m in mounts if m.volume in fixed and not m.read_only]
    if mounting:
        _security_context(builder, rule, mounting, warnings)
    if not builder.operations:
        message = f"already injected: init container {ours} is present"
        return _skip(pod, "already-injected", message, rule.name, warnings=warnings)
    added = sorted(
        {op["path"].split("/")[3] for op in builder.operations if "/containers/" in op["path"]}
    )
    names = ", ".join(pod["spec"]["containers"][int(i)].get("name", "?") for i in added)
    return Decision(
        "injected",
        "injected",
        f"{where}: already injected (init container {ours}); container {names}, added"
        " since, mounts the storage and gets the securityContext",
        builder.result,
        patch=builder.operations,
        warnings=warnings,
        rule=rule.name,
    )


def _fixed_volumes(pod: dict[str, Any]) -> frozenset[str]:
    """The volumes the status annotation says the init container fixes (none when it
    cannot be read: then nothing is added on a reinvocation)."""
    status = recorded_status((pod.get("metadata") or {}).get("annotations"))
    volumes = (status or {}).get("volumes")
    if not isinstance(volumes, list):
        return frozenset()
    return frozenset(v for v in volumes if isinstance(v, str))


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
        if initcontainer.ours(container.get("command")):
            return name
        present.add(name)
    name = (recorded_status(annotations) or {}).get("initContainer")
    if isinstance(name, str) and name in present:
        return name
    return None


def recorded_status(annotations: Any) -> dict[str, Any] | None:
    """The status annotation as the JSON object it should hold, or None (absent, not
    text, not JSON, not an object): the one reader of what the webhook wrote."""
    value = annotations.get(STATUS_ANNOTATION) if isinstance(annotations, dict) else None
    if not isinstance(value, str) or not value:
        return None
    try:
        recorded = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    return recorded if isinstance(recorded, dict) else None


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

    fixable: list[storage.Mount]
    sources: dict[str, str]
    """Each fixable volume's source type (`persistentVolumeClaim`, `nfs`, ...)."""
    warnings: list[str]


def _classify(
    pod: dict[str, Any], rule: Rule, mounts: list[storage.Mount], *, where: str
) -> _Classified | Decision:
    """Each storage mount: fixable, or left alone (undeclared, read-only, not a
    directory) with a warning; a hostPath of the node's own directories denies the
    pod. A pod with nothing fixable gets its skip decision here."""
    volumes = {v["name"]: v for v in pod["spec"].get("volumes") or ()}
    writable = {m.key for m in mounts if not m.read_only}
    classified = _Classified([], {}, [])
    left_alone: list[str] = []
    for mount in mounts:
        volume = volumes.get(mount.volume)
        source = "" if volume is None else _source(volume)
        why = _left_alone(mount, volume, source, writable)
        if why is not None:
            kind, warning = why
            left_alone.append(kind)
            classified.warnings.append(warning)
            continue
        assert volume is not None  # an undeclared volume is left alone above
        refused = _refused_host_path(pod, rule, mount, volume) if source == "hostPath" else None
        if refused is not None:
            return refused
        classified.sources[mount.volume] = source
        classified.fixable.append(mount)
    if classified.fixable:
        return classified
    if "not-directory" in left_alone and "read-only" not in left_alone:
        message = f"{where} matches, but its storage is a hostPath that is not a directory"
        return _skip(
            pod, "hostpath-not-directory", message, rule.name, warnings=classified.warnings
        )
    read_only = "read-only" in left_alone
    reason = "read-only-storage" if read_only else "no-storage-mount"
    what = "writable " if read_only else "fixable "
    message = f"{where} matches, but no {what}volume is mounted at {', '.join(rule.mount_paths)}"
    return _skip(pod, reason, message, rule.name, warnings=classified.warnings)


def _left_alone(
    mount: storage.Mount, volume: dict[str, Any] | None, source: str, writable: set[Any]
) -> tuple[str, str] | None:
    """Why a storage mount (of `volume`, whose source is `source`) is left alone
    (`undeclared`, `read-only`, `not-directory`) and the warning that says so; None
    when it can be fixed."""
    if volume is None:
        return "undeclared", (
            f"container {mount.container} mounts volume {mount.volume} at"
            f" {mount.mount_path}, but the pod declares no such volume"
        )
    why = _read_only(volume, source)
    if why is None and mount.key not in writable:
        why = "mounted read-only by every container that mounts it there"
    if why is not None:
        return "read-only", f"volume {mount.volume} at {mount.mount_path} is {why}: left alone"
    host_type = volume["hostPath"].get("type") if source == "hostPath" else None
    if isinstance(host_type, str) and host_type in _NOT_DIRECTORY:
        return "not-directory", (
            f"volume {mount.volume} at {mount.mount_path} is a hostPath of type"
            f" {host_type}, not a directory: left alone"
        )
    return None


def _refused_host_path(
    pod: dict[str, Any], rule: Rule, mount: storage.Mount, volume: dict[str, Any]
) -> Decision | None:
    """The denial for a hostPath of the node's own directories (or outside the rule's
    allowed prefixes), else None."""
    path = volume["hostPath"]["path"]
    refusal = hostpaths.refusal(
        path,
        forbidden=rule.forbidden_host_path_prefixes,
        allowed=rule.allowed_host_path_prefixes,
    )
    if refusal is None:
        return None
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
        added = initcontainer.add(builder, rule, fixable, group=group, warnings=warnings)
        if isinstance(added, envexpand.Unreproducible):
            message = f"{where}: a subPathExpr cannot be expanded the same way: {added}"
            return _skip(pod, "subpath-expr-unresolvable", message, rule.name, warnings=warnings)
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
        message = f"{where}: already injected, nothing to change"
        return _skip(pod, "already-injected", message, rule.name, warnings=warnings)
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


def _security_context(
    builder: PatchBuilder, rule: Rule, mounts: list[storage.Mount], warnings: list[str]
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
