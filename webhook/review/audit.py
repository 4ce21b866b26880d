"""The pods that slipped through: live pods the policy would have patched, unpatched.

Pods created during a webhook outage, before the install, or while the
webhook configuration's selection drifted from the policy run without the
init container, and their app fails later with "Permission denied". `audit`
reads what `kubectl get pods -A -o json` (or `-o yaml`) prints, runs the same
engine on each live pod as if it were being created, and reports each pod it
would have patched that carries no valid status annotation, with its owning
workload and the one command per workload that fixes it (a new pod is
patched at creation). Pure: documents in, findings out.

NB: every value printed here came from the cluster, and any pod creator
controls a pod's `ownerReferences`, names and annotations. The printed block
is meant to be pasted into a shell, so a command is made only from an owner
kind `audit` knows and names Kubernetes accepts, and every word of it is
shell-quoted as well (`shlex.quote`); everything else printed has its
control characters escaped, so no value can run, or forge a line.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from webhook.engine import admission, mutation, podshape
from webhook.engine.errors import InvalidObject
from webhook.engine.policy import Policy
from webhook.k8s import names
from webhook.review.selection import Selection

# Pods that have finished run nothing more: a completed Job's pod needs no fix.
_FINISHED = frozenset({"Succeeded", "Failed"})
# Workloads `kubectl rollout restart` knows.
_RESTARTABLE = {"Deployment": "deployment", "StatefulSet": "statefulset", "DaemonSet": "daemonset"}
# Controllers that make a new pod when one of theirs is deleted (a Job while it runs).
_RECREATING = frozenset({"ReplicaSet", "ReplicationController", "Job"})
_POD_LIST_KINDS = frozenset({"List", "PodList"})


@dataclass(frozen=True)
class Finding:
    """One live pod the webhook would have changed."""

    namespace: str
    pod: str
    owner: str
    """`Deployment/dify-api`, `Job/migrate`, or `none` for a bare pod."""
    why: str
    fix: str
    """The command (shell-quoted) or `# comment` that makes a patched pod replace it
    (shared by a workload's pods)."""


def printable(text: str) -> str:
    """`text` with every character that is not printable (control characters, line
    and paragraph separators, bidi overrides) escaped as `\\xNN`/`\\uNNNN`: a value
    from the cluster cannot start a line or hide what follows it."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(c: str) -> str:
    if c in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[c]
    code = ord(c)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def pods(documents: list[Any]) -> list[dict[str, Any]]:
    """The pods in `documents`: Pods, and the items of Lists and PodLists.

    Input that holds no pod at all is an `InvalidObject` naming what was read:
    nothing (what `kubectl get pods | audit -f -` gives when kubectl fails), a
    Table, a list of other kinds, `items` that is not a list. A list that is
    empty is a cluster with no pods, and is fine.
    """
    found: list[dict[str, Any]] = []
    seen: list[str] = []
    lists = 0
    for document in documents:
        if document is None:
            continue
        if not isinstance(document, dict):
            raise InvalidObject("document: expected a mapping (kubectl get pods -o json)")
        kind = document.get("kind")
        if kind == "Pod":
            found.append(document)
        elif kind in _POD_LIST_KINDS:
            items = document.get("items")
            if not isinstance(items, list):
                raise InvalidObject(
                    f"a {kind} whose items is {_type_name(items)}, not a list of pods"
                )
            lists += 1
            for item in items:
                if isinstance(item, dict) and item.get("kind", "Pod") == "Pod":
                    found.append(item)
                else:
                    seen.append(_kind_of(item))
        else:
            seen.append(str(kind) if isinstance(kind, str) else "an object with no kind")
    if found or (lists and not seen):
        return found
    if not seen:
        raise InvalidObject(
            "no pods read: the input is empty (did `kubectl get pods -A -o json` fail?)"
        )
    kinds = ", ".join(printable(k) for k in dict.fromkeys(seen))
    hint = " (kubectl -o json gives pods; a Table comes from the API's table format)"
    raise InvalidObject(f"no pods read: the input holds {kinds}, not pods{hint}")


def namespace_labels(documents: list[Any]) -> dict[str, dict[str, str]]:
    """Each namespace's labels from `kubectl get namespaces -o json` (or one Namespace)."""
    found: dict[str, dict[str, str]] = {}
    for document in documents:
        if not isinstance(document, dict):
            continue
        items = document.get("items") if document.get("kind") != "Namespace" else [document]
        for item in items if isinstance(items, list) else ():
            if not isinstance(item, dict) or item.get("kind", "Namespace") != "Namespace":
                continue
            metadata = item.get("metadata")
            name = metadata.get("name") if isinstance(metadata, dict) else None
            if not isinstance(name, str):
                continue
            labels = metadata.get("labels") if isinstance(metadata, dict) else None
            found[name] = {
                str(k): str(v) for k, v in (labels.items() if isinstance(labels, dict) else ())
            }
            # NB: the apiserver sets this label on every namespace since 1.21.
            found[name].setdefault("kubernetes.io/metadata.name", name)
    if not found:
        raise InvalidObject("no namespaces read: it holds none (kubectl get namespaces -o json)")
    return found


def audit(
    live: Iterable[dict[str, Any]],
    policy: Policy,
    *,
    webhook_namespace: str,
    selection: Selection | None = None,
) -> list[Finding]:
    """Every pod of `live` the policy would have patched (or refused) that carries no
    valid status annotation; finished and terminating pods, the webhook's own
    namespace and (given `selection`) pods the apiserver would never send are left out.
    A pod in a namespace enforcing Pod Security "restricted" is judged as the
    restricted entry would judge it."""
    findings = []
    for pod in live:
        podshape.check_pod(pod)  # NB: before reading metadata: `InvalidObject` names the field
        metadata = pod.get("metadata") or {}
        if metadata.get("deletionTimestamp") is not None:
            continue  # terminating: its replacement is what counts
        status = pod.get("status")
        if isinstance(status, dict) and status.get("phase") in _FINISHED:
            continue
        namespace = str(metadata.get("namespace") or admission.DEFAULT_NAMESPACE)
        if _patched(pod):
            name = str(metadata.get("name") or metadata.get("generateName") or "?")
            stuck = _init_stuck(pod, namespace, name)
            if stuck is not None:
                owner, _ = _owner(pod, namespace, name)
                why, fix = stuck
                findings.append(
                    Finding(printable(namespace), printable(name), printable(owner), why, fix)
                )
            continue
        restricted = False
        if selection is not None:
            sent = selection.sends(namespace, metadata.get("labels") or {})
            if sent is None:
                continue
            restricted = sent
        decision = mutation.mutate(
            pod,
            policy,
            namespace=namespace,
            restricted=restricted,
            protected_namespaces=frozenset({webhook_namespace}),
        )
        name = str(metadata.get("name") or metadata.get("generateName") or "?")
        owner, fix = _owner(pod, namespace, name)
        if decision.outcome == "injected" and decision.patch:
            why = f"unpatched: {decision.message}"
        elif decision.outcome == "denied":
            why = f"would be refused: {decision.message}"
            fix = f"# fix the manifest of {printable(owner)}: a restart would be refused"
        else:
            continue
        findings.append(Finding(printable(namespace), printable(name), printable(owner), why, fix))
    return findings


_PULL_FAILURES = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName"})


def _init_stuck(pod: dict[str, Any], namespace: str, name: str) -> tuple[str, str] | None:
    """Why a patched pod's injected init container holds it back (its image cannot be
    pulled, or the fix failed), and the kubectl line that shows more; None when it
    does not."""
    status = pod.get("status")
    init = (mutation.recorded_status((pod.get("metadata") or {}).get("annotations")) or {}).get(
        "initContainer"
    )
    if not isinstance(status, dict) or not isinstance(init, str):
        return None
    for entry in status.get("initContainerStatuses") or ():
        if not isinstance(entry, dict) or entry.get("name") != init:
            continue
        waiting = (entry.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason in _PULL_FAILURES:
            image = entry.get("image") or "?"
            return (
                f"init container {init} cannot pull {image} ({reason}): push the webhook's"
                " image where this namespace's nodes can pull, name pull secrets in the"
                " policy (initContainer.imagePullSecrets), or use initContainer.mode: script",
                f"# kubectl -n {shlex.quote(namespace)} describe pod {shlex.quote(name)}",
            )
        last = (entry.get("lastState") or {}).get("terminated") or {}
        if reason == "CrashLoopBackOff" or last.get("exitCode") not in (None, 0):
            said = str(last.get("message") or "").strip() or "see its log"
            return (
                f"init container {init} fails (exit {last.get('exitCode', '?')}): {said}",
                f"# kubectl -n {shlex.quote(namespace)} logs {shlex.quote(name)}"
                f" -c {shlex.quote(init)}",
            )
    return None


def _patched(pod: dict[str, Any]) -> bool:
    """True when the pod carries the status annotation as the webhook writes it: JSON
    naming the rule, the volumes, the owner and the init container, which the pod has
    (none under Pod Security "restricted"). Anything else does not count."""
    status = mutation.recorded_status((pod.get("metadata") or {}).get("annotations"))
    if status is None or set(status) != {"rule", "volumes", "owner", "initContainer"}:
        return False
    volumes, init = status["volumes"], status["initContainer"]
    if not (
        isinstance(status["rule"], str)
        and isinstance(status["owner"], str)
        and isinstance(volumes, list)
        and volumes
        and all(isinstance(v, str) for v in volumes)
    ):
        return False
    if init is None:
        return True
    containers = (pod.get("spec") or {}).get("initContainers") or ()
    return isinstance(init, str) and any(
        isinstance(c, dict) and c.get("name") == init for c in containers
    )


def _owner(pod: dict[str, Any], namespace: str, name: str) -> tuple[str, str]:
    """The workload that owns `pod` and the command that replaces the pod.

    A ReplicaSet named `<deployment>-<pod-template-hash>` belongs to that
    Deployment (the hash is the pod's `pod-template-hash` label). A command is
    made only from names Kubernetes accepts and an owner kind known to replace
    its pods; anything else gets a `#` line saying why, naming the pod.
    """
    metadata = pod.get("metadata") or {}
    references = metadata.get("ownerReferences")
    if not isinstance(references, list):
        references = []
    controller = next(
        (r for r in references if isinstance(r, dict) and r.get("controller")),
        references[0] if references and isinstance(references[0], dict) else None,
    )
    pod_ref = printable(f"{namespace}/{name}")
    if controller is None:
        return "none", f"# re-create the bare pod {pod_ref} from its manifest"
    kind, owner = str(controller.get("kind") or "?"), str(controller.get("name") or "?")
    template_hash = (metadata.get("labels") or {}).get("pod-template-hash")
    if (
        kind == "ReplicaSet"
        and isinstance(template_hash, str)
        and template_hash
        and owner.endswith(f"-{template_hash}")
    ):
        kind, owner = "Deployment", owner[: -len(template_hash) - 1]
    shown = f"{kind}/{owner}"
    problem = _unsafe(namespace, name, kind, owner)
    if problem is not None:
        return shown, f"# no command for pod {pod_ref}: {problem}"
    if kind in _RESTARTABLE:
        return shown, _command(
            "-n", namespace, "rollout", "restart", f"{_RESTARTABLE[kind]}/{owner}"
        )
    delete = _command("-n", namespace, "delete", "pod", name)
    return shown, f"{delete}  # {kind} {owner} re-creates it"


def _unsafe(namespace: str, name: str, kind: str, owner: str) -> str | None:
    """Why no command may be made from these values, or None."""
    if kind not in _RESTARTABLE and kind not in _RECREATING:
        return (
            f"its owner's kind {printable(repr(kind))} is not one audit knows to replace pods"
            f" ({', '.join(sorted({*_RESTARTABLE, *_RECREATING}))}); re-create it as its owner"
            " does"
        )
    for what, value in (("namespace", namespace), ("pod name", name), ("owner name", owner)):
        check = names.dns_label if what == "namespace" else names.dns_subdomain
        try:
            check(value)
        except ValueError:
            return f"its {what} {printable(repr(value))} is not a valid Kubernetes name"
    return None


def _command(*arguments: str) -> str:
    """`kubectl ARGUMENTS`, each word quoted for the shell (validated names need none;
    the quoting holds should validation ever change)."""
    return shlex.join(["kubectl", *arguments])


def _type_name(value: object) -> str:
    return "absent" if value is None else f"a {type(value).__name__}"


def _kind_of(item: object) -> str:
    if isinstance(item, dict):
        kind = item.get("kind")
        return str(kind) if isinstance(kind, str) else "an object with no kind"
    return f"a {type(item).__name__}"


def report(findings: list[Finding]) -> str:
    """The findings, one line each, then each fixing command once. Every line is built
    from escaped values, so the text has exactly the lines made here."""
    if not findings:
        return "no unpatched pods: every pod the policy matches carries the status annotation\n"
    lines = [f"{f.namespace}/{f.pod} ({f.owner}): {printable(f.why)}" for f in findings]
    lines.append("")
    lines.append("# to fix, replace them with patched pods:")
    lines.extend(dict.fromkeys(printable(f.fix) for f in findings))
    return "\n".join(lines) + "\n"
