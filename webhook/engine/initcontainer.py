"""The injected init container: its name, its mounts, the env it needs and its script.

`add()` inserts it first in `initContainers`: named so that no other container
of the pod shares the name, mounting each storage tree where the script
expects it (one directory per tree, never inside another), carrying the env a
`subPathExpr` needs, running `volume-init.sh` with an explicit securityContext
and only the capabilities the script needs.
"""

from __future__ import annotations

import re
from typing import Any

from webhook.engine import DEFAULT_IMAGE, envexpand, hostpaths, initscript, podshape, resources
from webhook.engine.patches import PatchBuilder
from webhook.engine.policy import Rule
from webhook.engine.storage import Mount

FULL_PASS_ANNOTATION = "volume-init.dify.ai/full-pass"  # noqa: S105 (a walk, not a password)
FULL_PASS_ENV = "VOLUME_INIT_FULL_PASS"  # noqa: S105 (a walk, not a password)
# A token the script records in its flag: a new one forces one full walk.
_FULL_PASS = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9._:+]{0,62}$")
_NAME_LIMIT = 63  # a container name is a DNS-1123 label


def add(
    builder: PatchBuilder, rule: Rule, fixable: list[Mount], *, group: int, warnings: list[str]
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
    _own_apparmor(spec, container, warnings)
    app: dict[str, Any] = next(
        (spec["containers"][m.position] for m in fixable if m.kind == "containers"),
        {},
    )
    sized = resources.adapt(container.pop("resources", {}), app)
    if sized:
        container = _with(container, "resources", sized, before="securityContext")
    builder.insert(("spec", "initContainers"), 0, container)
    _pull_secrets(builder, rule.init_container.image_pull_secrets)
    return name


def _pull_secrets(builder: PatchBuilder, names: tuple[str, ...]) -> None:
    """The policy's pull secrets for the init container's image, added to the pod's
    `imagePullSecrets` where absent (the pod's own stay, first)."""
    present = builder.get(("spec", "imagePullSecrets"))
    have = (
        # NB: names only: a malformed entry (a list for a name) is the apiserver's to refuse
        {e.get("name") for e in present if isinstance(e, dict) and isinstance(e.get("name"), str)}
        if isinstance(present, list)
        else set()
    )
    for name in names:
        if name not in have:
            builder.insert(("spec", "imagePullSecrets"), len(present or ()), {"name": name})
            present = builder.get(("spec", "imagePullSecrets"))
            have.add(name)


PROGRAM = ("dify-volume-init", "fix-ownership")
"""The start of the program mode's command: how an init container of ours is known."""


def command(rule: Rule, *, group: int, directories: list[str]) -> list[str]:
    """The init container's command for the rule's mode."""
    if rule.init_container.mode == "script":
        return initscript.command(user=rule.user, group=group, directories=directories)
    return [*PROGRAM, "--owner", f"{rule.user}:{group}", "--", *directories]


def ours(command: Any) -> bool:
    """`command` is one the webhook's init container runs, in either mode."""
    if isinstance(command, list) and command[:2] == list(PROGRAM):
        return True
    return initscript.runs_script(command)


def image(rule: Rule) -> str:
    """The init container's image: busybox in script mode; in program mode the one the
    policy names, else the webhook's own."""
    ic = rule.init_container
    if ic.mode == "script":
        return ic.image
    return ic.program_image or DEFAULT_IMAGE


def _own_apparmor(spec: dict[str, Any], container: dict[str, Any], warnings: list[str]) -> None:
    """A pod-level AppArmor `Localhost` profile is written for the app, and would be
    inherited by the init container, whose chown it may deny: the init container gets
    the runtime's default profile instead, and the user is told. (The node enforces
    AppArmor already, or the pod would not start at all.)"""
    profile = (spec.get("securityContext") or {}).get("appArmorProfile") or {}
    if profile.get("type") != "Localhost":
        return
    container["securityContext"]["appArmorProfile"] = {"type": "RuntimeDefault"}
    named = profile.get("localhostProfile") or "?"
    warnings.append(
        f"the pod's AppArmor profile Localhost/{named} is the app's: the init container"
        f" {container['name']} runs under RuntimeDefault instead, so that its chown is"
        " not denied by a profile written for the app"
    )


def _with(container: dict[str, Any], key: str, value: Any, *, before: str) -> dict[str, Any]:
    """`container` with `key` set to `value`, placed before `before` (key order is the
    order kubectl shows and the goldens hold)."""
    out: dict[str, Any] = {}
    for name, existing in container.items():
        if name == before:
            out[key] = value
        if name != key:
            out[name] = existing
    out.setdefault(key, value)
    return out


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


def _subpath_env(spec: dict[str, Any], mounts: list[Mount]) -> tuple[list[Any], list[Any]]:
    """The `envFrom` and `env` the init container needs for the `subPathExpr` mounts."""
    expressions: dict[tuple[str, int, str], list[str]] = {}  # by (kind, position, name)
    for mount in mounts:
        if mount.sub_path_expr:
            key = (mount.kind, mount.position, mount.container)
            expressions.setdefault(key, []).append(mount.sub_path_expr)
    requirements = []
    for (kind, index, name), texts in expressions.items():
        container = spec[kind][index]
        env = podshape.check_env(container, f"spec.{kind}[{index}]")
        requirements.append(envexpand.requirement(container, env, texts, name=name))
    return envexpand.merge(requirements)


def _directories(mounts: list[Mount]) -> list[tuple[str, Mount]]:
    """Where the init container mounts each of `mounts`: a tree per storage root.

    Each container's mounts under one storage root form a tree (the root and
    the mounts below it, at their paths relative to the root). Containers
    whose trees are the same share one; a different tree gets its own base
    directory (`/app/api/storage-2`), never inside or above another, so that
    the init container's mounts neither shadow nor nest in each other.
    """
    trees: dict[tuple[Any, ...], tuple[str, list[tuple[str, Mount]]]] = {}
    by_container: dict[tuple[str, int, str, int], list[tuple[str, Mount]]] = {}
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
    used: list[str] = []  # NB: at most limits.MAX_STORAGE_MOUNTS: compared directly
    next_suffix: dict[str, int] = {}  # NB: each search resumes where the last one stopped
    placed: list[tuple[str, Mount]] = []
    for storage, entries in trees.values():
        # NB: a storage path below a directory already taken (a rule's nested
        # storage paths, mounted by different containers) moves beside that
        # directory: a suffix on its own last name would keep it below, forever.
        below = [other for other in used if hostpaths.within(storage, other) and other != storage]
        anchor = min(below, key=len, default=storage)
        base = storage
        suffix = next_suffix.get(anchor, 1)
        while any(hostpaths.within(base, other) or hostpaths.within(other, base) for other in used):
            suffix += 1
            base = f"{anchor}-{suffix}"
        next_suffix[anchor] = suffix
        used.append(base)
        # NB: each place of a tree holds one mount (a second mount at the same place
        # starts a tree of its own: the slot above), so no target repeats here.
        for relative, mount in sorted(entries, key=lambda e: (e[0].count("/"), e[0])):
            placed.append((f"{base}/{relative}" if relative else base, mount))
    return placed


def _init_container(
    rule: Rule,
    mounts: list[Mount],
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
        "image": image(rule),
        "command": command(rule, group=group, directories=directories),
    }
    if ic.image_pull_policy:
        container["imagePullPolicy"] = ic.image_pull_policy
    if env_from:
        container["envFrom"] = env_from
    if env:
        container["env"] = env
    sized = ic.resources.to_k8s()
    if sized:
        container["resources"] = sized
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
