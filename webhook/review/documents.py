"""The dry run (README: `review`): what the webhook would do to manifests.

For every document: a Pod is reviewed as it is; a workload (Deployment,
StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job, CronJob) has
its pod template reviewed as the pod it will become, in the object's
namespace; an AdmissionReview is answered exactly as `/mutate` answers it; a
`kind: List` has each item reviewed; anything else passes through untouched.
Pure: the same `mutation.mutate()` and `admission.answer()` the webhook runs,
so what the review shows is what the cluster will get.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from webhook.engine import PRODUCT, admission, mutation
from webhook.engine.errors import BadRequest, InvalidObject
from webhook.engine.patches import Key, Operation, pointer
from webhook.engine.policy import Policy
from webhook.review.selection import Selection

DEFAULT_WEBHOOK_NAMESPACE = PRODUCT

TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}


@dataclass
class ReviewedObject:
    """One reviewed object: what to print for it and why."""

    label: str
    """`Kind namespace/name`, for headers and explanations."""
    source: str
    line: int
    original: Any
    result: Any
    """The document as `-o yaml` prints it: mutated, answered or untouched."""
    patch: list[Operation] = field(default_factory=list)
    """JSON Patch relative to the object itself (for `kubectl patch --type json`)."""
    decision: mutation.Decision | None = None
    note: str = ""
    """Why there is no decision: passed through, or the error found."""
    error: bool = False
    children: list[ReviewedObject] = field(default_factory=list)
    patched: Any = None
    """The object after the patch where it is not `result`: the pod inside an
    AdmissionReview, whose result is the answer."""

    @property
    def changed(self) -> bool:
        """Would the webhook change anything: a patch, or a refusal."""
        if self.children:
            return any(child.changed for child in self.children)
        return bool(self.patch) or (self.decision is not None and self.decision.outcome == "denied")

    def flat(self) -> list[ReviewedObject]:
        """This object, or the items of a List."""
        if self.children:
            return [item for child in self.children for item in child.flat()]
        return [self]


@dataclass(frozen=True)
class Options:
    """How to review: the policy, default namespace and Pod Security mode."""

    policy: Policy
    namespace: str = admission.DEFAULT_NAMESPACE
    restricted: bool = False
    protected_namespaces: frozenset[str] = frozenset({DEFAULT_WEBHOOK_NAMESPACE})
    selection: Selection | None = None
    """The webhook configuration's entries and the namespace's labels
    (`--namespace-labels`), to decide as the apiserver does which pods are sent and to
    which entry; None: every namespace is assumed selected, not restricted unless
    `restricted`."""


def review(
    value: Any, options: Options, *, source: str = "<input>", line: int = 0
) -> ReviewedObject:
    """Review one document."""
    if not isinstance(value, dict):
        return _problem(value, source, line, "document", "not a mapping (a Kubernetes object)")
    kind = value.get("kind")
    label = _label(value, options)
    if kind == "List" and isinstance(value.get("items"), list):
        children = [review(item, options, source=source, line=line) for item in value["items"]]
        result = dict(value)
        result["items"] = [child.result for child in children]
        return ReviewedObject(label, source, line, value, result, children=children, note="List")
    if kind == "AdmissionReview":
        return _admission_review(value, options, source, line)
    if kind == "Pod":
        return _pod(value, (), pod=value, options=options, source=source, line=line, label=label)
    template_path = TEMPLATE_PATHS.get(kind) if isinstance(kind, str) else None
    if template_path is not None:
        template = _get(value, template_path)
        if not isinstance(template, dict):
            where = ".".join(template_path)
            return _problem(value, source, line, label, f"no pod template at {where}")
        return _pod(
            value,
            template_path,
            pod=template,
            options=options,
            source=source,
            line=line,
            label=label,
            claims=_claim_volumes(value) if kind == "StatefulSet" else [],
        )
    return ReviewedObject(label, source, line, value, value, note="not a pod or workload")


def _claim_volumes(statefulset: dict[str, Any]) -> list[dict[str, Any]]:
    """The volumes the StatefulSet controller gives each pod for its volumeClaimTemplates,
    as for ordinal 0: a `persistentVolumeClaim` named `<template>-<statefulset>-0`
    (kubernetes/pkg/controller/statefulset, updateStorage)."""
    spec = statefulset.get("spec")
    templates = spec.get("volumeClaimTemplates") if isinstance(spec, dict) else None
    metadata = statefulset.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not isinstance(templates, list):
        return []
    volumes = []
    for claim in templates:
        claim_meta = claim.get("metadata") if isinstance(claim, dict) else None
        claim_name = claim_meta.get("name") if isinstance(claim_meta, dict) else None
        if isinstance(claim_name, str) and claim_name:
            volumes.append(
                {
                    "name": claim_name,
                    "persistentVolumeClaim": {
                        "claimName": f"{claim_name}-{name or 'statefulset'}-0",
                        "readOnly": False,
                    },
                }
            )
    return volumes


def _as_created(pod: dict[str, Any], claims: list[dict[str, Any]]) -> dict[str, Any]:
    """The pod template as the controller creates the pod: claim volumes first, then
    the template's volumes of other names (a claim replaces a volume of its name)."""
    spec = pod.get("spec")
    if not claims or not isinstance(spec, dict):
        return pod
    named = {volume["name"] for volume in claims}
    own = spec.get("volumes")
    kept = (
        [v for v in own if not (isinstance(v, dict) and v.get("name") in named)]
        if isinstance(own, list)
        else []
    )
    return {**pod, "spec": {**spec, "volumes": [*claims, *kept]}}


def _as_template(pod: dict[str, Any], template: dict[str, Any]) -> dict[str, Any]:
    """`pod` (a decision on `_as_created(template)`) with the template's own volumes
    back: the controller, not the workload, adds the claim volumes. (The mutation
    never changes volumes, so this undoes exactly what `_as_created` did.)"""
    spec = dict(pod["spec"])
    template_spec = template.get("spec")
    if isinstance(template_spec, dict) and "volumes" in template_spec:
        spec["volumes"] = template_spec["volumes"]
    else:
        spec.pop("volumes", None)
    return {**pod, "spec": spec}


def _pod(
    document: dict[str, Any],
    path: tuple[str, ...],
    *,
    pod: dict[str, Any],
    options: Options,
    source: str,
    line: int,
    label: str,
    claims: list[dict[str, Any]] | None = None,
) -> ReviewedObject:
    metadata = document.get("metadata")
    namespace = metadata.get("namespace") if isinstance(metadata, dict) else None
    if not isinstance(namespace, str) or not namespace:
        namespace = options.namespace
    restricted = options.restricted
    selection = options.selection
    if selection is not None:
        if not selection.namespace_sent(namespace):
            own = sorted(options.protected_namespaces)
            why = selection.why_not_sent(namespace, options.policy, own)
            note = f"not sent: {why}, so the apiserver does not call the webhook"
            return ReviewedObject(label, source, line, document, document, note=note)
        sent = selection.sends(namespace, (pod.get("metadata") or {}).get("labels"))
        restricted = bool(sent)
    created = _as_created(pod, claims or [])
    try:
        decision = mutation.mutate(
            created,
            options.policy,
            namespace=namespace,
            restricted=restricted,
            protected_namespaces=options.protected_namespaces,
        )
    except InvalidObject as exc:
        prefix = ".".join(path) + "." if path else ""
        return _problem(document, source, line, label, f"{prefix}{exc}")
    changed = decision.pod if created is pod else _as_template(decision.pod, pod)
    result = _replace(document, path, changed) if decision.patch else document
    patch = [_prefixed(op, path) for op in decision.patch]
    return ReviewedObject(label, source, line, document, result, patch=patch, decision=decision)


def _admission_review(
    document: dict[str, Any], options: Options, source: str, line: int
) -> ReviewedObject:
    request = document.get("request")
    uid = request.get("uid") if isinstance(request, dict) else None
    label = f"AdmissionReview {uid}" if isinstance(uid, str) else "AdmissionReview"
    try:
        answer = admission.answer(
            document,
            options.policy,
            restricted=options.restricted,
            protected_namespaces=options.protected_namespaces,
        )
    except BadRequest as exc:
        return _problem(document, source, line, label, f"HTTP 400: {exc}")
    decision = answer.decision
    obj = request.get("object") if isinstance(request, dict) else None
    if decision is not None and isinstance(obj, dict):
        ns = answer.namespace or options.namespace
        name = answer.name or "?"
        label = f"{label} (Pod {ns}/{name})"
    return ReviewedObject(
        label,
        source,
        line,
        obj if decision is not None else document,
        answer.review,
        patch=decision.patch if decision is not None else [],
        decision=decision,
        note="" if decision is not None else f"allowed unchanged ({answer.reason})",
        patched=decision.pod if decision is not None else None,
    )


def _problem(value: Any, source: str, line: int, label: str, message: str) -> ReviewedObject:
    return ReviewedObject(label, source, line, value, value, note=message, error=True)


def _label(document: dict[str, Any], options: Options) -> str:
    kind = document.get("kind") if isinstance(document.get("kind"), str) else "(no kind)"
    metadata = document.get("metadata") if isinstance(document.get("metadata"), dict) else {}
    assert isinstance(metadata, dict)
    name = metadata.get("name") or metadata.get("generateName") or "(no name)"
    namespace = metadata.get("namespace") or options.namespace
    return f"{kind} {namespace}/{name}"


def _get(value: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _replace(document: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """A copy of `document` with `value` at `path`, copying only the mappings on the path."""
    if not path:
        return dict(value)
    top = dict(document)
    node = top
    for part in path[:-1]:
        node[part] = dict(node[part])
        node = node[part]
    node[path[-1]] = value
    return top


def _prefixed(op: Operation, path: tuple[Key, ...]) -> Operation:
    if not path:
        return op
    return {**op, "path": pointer(path) + op["path"]}
