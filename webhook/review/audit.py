"""The pods that slipped through: live pods the policy would have patched, unpatched.

Pods created during a webhook outage, before the install, or while the
webhook configuration's selection drifted from the policy run without the
init container, and their app fails later with "Permission denied". `audit`
reads what `kubectl get pods -A -o json` (or `-o yaml`) prints, runs the same
engine on each live pod as if it were being created, and reports each pod it
would have patched that carries no status annotation, with its owning
workload and the one command per workload that fixes it (a new pod is
patched at creation). Pure: documents in, findings out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from webhook.engine import admission, mutation, podshape
from webhook.engine.errors import InvalidObject
from webhook.engine.policy import Policy

# Pods that have finished run nothing more: a completed Job's pod needs no fix.
_FINISHED = frozenset({"Succeeded", "Failed"})
# Workloads `kubectl rollout restart` knows; a Job's pod is re-created by deleting it.
_RESTARTABLE = {"Deployment": "deployment", "StatefulSet": "statefulset", "DaemonSet": "daemonset"}


@dataclass(frozen=True)
class Finding:
    """One live pod the webhook would have changed."""

    namespace: str
    pod: str
    owner: str
    """`Deployment/dify-api`, `Job/migrate`, or `none` for a bare pod."""
    why: str
    fix: str
    """The command that makes a patched pod replace it (shared by a workload's pods)."""


def pods(documents: list[Any]) -> list[dict[str, Any]]:
    """The pods in `documents`: Pods, and the items of Lists and PodLists."""
    found: list[dict[str, Any]] = []
    for document in documents:
        if not isinstance(document, dict):
            raise InvalidObject("document: expected a mapping (kubectl get pods -o json)")
        kind = document.get("kind")
        if kind == "Pod":
            found.append(document)
        elif kind in ("List", "PodList") and isinstance(document.get("items"), list):
            for item in document["items"]:
                if isinstance(item, dict) and item.get("kind", "Pod") == "Pod":
                    found.append(item)
    return found


def audit(live: list[dict[str, Any]], policy: Policy, *, webhook_namespace: str) -> list[Finding]:
    """Every pod of `live` the policy would have patched (or refused) that carries no
    status annotation; finished pods and the webhook's own namespace are left out."""
    findings = []
    for pod in live:
        podshape.check_pod(pod)  # NB: before reading metadata: `InvalidObject` names the field
        metadata = pod.get("metadata") or {}
        annotations = metadata.get("annotations") or {}
        if mutation.STATUS_ANNOTATION in annotations:
            continue
        status = pod.get("status")
        if isinstance(status, dict) and status.get("phase") in _FINISHED:
            continue
        namespace = str(metadata.get("namespace") or admission.DEFAULT_NAMESPACE)
        decision = mutation.mutate(
            pod,
            policy,
            namespace=namespace,
            protected_namespaces=frozenset({webhook_namespace}),
        )
        name = str(metadata.get("name") or metadata.get("generateName") or "?")
        owner, fix = _owner(pod, namespace, name)
        if decision.outcome == "injected":
            why = f"unpatched: {decision.message}"
        elif decision.outcome == "denied":
            why = f"would be refused: {decision.message}"
            fix = f"# fix the manifest of {owner}: a restart would be refused"
        else:
            continue
        findings.append(Finding(namespace, name, owner, why, fix))
    return findings


def _owner(pod: dict[str, Any], namespace: str, name: str) -> tuple[str, str]:
    """The workload that owns `pod` and the command that replaces the pod.

    A ReplicaSet named `<deployment>-<pod-template-hash>` belongs to that
    Deployment (the hash is the pod's `pod-template-hash` label).
    """
    metadata = pod.get("metadata") or {}
    references = metadata.get("ownerReferences")
    if not isinstance(references, list):
        references = []
    controller = next(
        (r for r in references if isinstance(r, dict) and r.get("controller")),
        references[0] if references and isinstance(references[0], dict) else None,
    )
    if controller is None:
        return "none", f"# re-create the bare pod {namespace}/{name} from its manifest"
    kind, owner = str(controller.get("kind") or "?"), str(controller.get("name") or "?")
    template_hash = (metadata.get("labels") or {}).get("pod-template-hash")
    if kind == "ReplicaSet" and template_hash and owner.endswith(f"-{template_hash}"):
        kind, owner = "Deployment", owner[: -len(template_hash) - 1]
    if kind in _RESTARTABLE:
        return (
            f"{kind}/{owner}",
            f"kubectl -n {namespace} rollout restart {_RESTARTABLE[kind]}/{owner}",
        )
    return (
        f"{kind}/{owner}",
        f"kubectl -n {namespace} delete pod {name}  # {kind} {owner} re-creates it",
    )


def report(findings: list[Finding]) -> str:
    """The findings, one line each, then each fixing command once."""
    if not findings:
        return "no unpatched pods: every pod the policy matches carries the status annotation\n"
    lines = [f"{f.namespace}/{f.pod} ({f.owner}): {f.why}" for f in findings]
    lines.append("")
    lines.append("# to fix, replace them with patched pods:")
    lines.extend(dict.fromkeys(f.fix for f in findings))
    return "\n".join(lines) + "\n"
