"""Which pods the apiserver sends, and to which entry: the webhook configuration's own
selectors, evaluated as kube-apiserver evaluates them.

`audit --namespaces` and `review --namespace-labels` both decide with the entries
`manifests` renders, so neither can disagree with the cluster: a namespace labelled
`volume-init.dify.ai/inject=disabled`, one excluded by name, one outside the opt-in
selector is "not sent"; one labelled Pod Security `restricted` gets the restricted
entry's answer.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from webhook.engine.policy import LabelSelector, Policy, excluded_namespaces

NAME_LABEL = "kubernetes.io/metadata.name"
DISABLE_LABEL = "volume-init.dify.ai/inject"  # =disabled: no entry sends the namespace
ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"


@dataclass(frozen=True)
class Selection:
    """How the apiserver chooses the pods it sends: the webhook configuration's entries
    and the namespaces' labels (`kubectl get namespaces -o json`)."""

    entries: list[dict[str, Any]]
    """The MutatingWebhookConfiguration's `webhooks` (`manifests` renders them)."""
    namespaces: dict[str, dict[str, str]]
    """Each namespace's labels."""
    other_labels: dict[str, str] | None = None
    """The labels of a namespace `namespaces` does not hold (besides its name label,
    which the apiserver sets on every namespace); None: its name label alone, as a new
    namespace has."""

    @functools.cached_property
    def compiled(self) -> list[tuple[LabelSelector | None, LabelSelector | None, bool]]:
        """Each entry's namespace and object selectors, built once, and whether it is
        the Pod Security "restricted" entry."""
        return [
            (
                _selector(entry.get("namespaceSelector")),
                _selector(entry.get("objectSelector")),
                str((entry.get("clientConfig") or {}).get("service", {}).get("path", "")).endswith(
                    "/restricted"
                ),
            )
            for entry in self.entries
        ]

    def labels_of(self, namespace: str) -> dict[str, str]:
        """The namespace's labels as the apiserver sees them."""
        known = self.namespaces.get(namespace)
        if known is not None:
            return known
        return {**(self.other_labels or {}), NAME_LABEL: namespace}

    def sends(self, namespace: str, labels: Any) -> bool | None:
        """Whether the apiserver sends the pod: None when no entry does, else whether
        the entry that does is the Pod Security "restricted" one."""
        ns_labels = self.labels_of(namespace)
        pod_labels = {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}
        for namespaces, objects, restricted in self.compiled:
            if (namespaces is None or namespaces.matches(ns_labels)) and (
                objects is None or objects.matches(pod_labels)
            ):
                return restricted
        return None

    def namespace_sent(self, namespace: str) -> bool:
        """Whether any entry takes pods from the namespace (whatever their labels)."""
        ns_labels = self.labels_of(namespace)
        return any(ns is None or ns.matches(ns_labels) for ns, _, _ in self.compiled)

    def why_not_sent(self, namespace: str, policy: Policy, own: Iterable[str]) -> str:
        """Why no entry takes pods from the namespace, for people (`own`: the webhook's
        own namespaces)."""
        labels = self.labels_of(namespace)
        if labels.get(DISABLE_LABEL) == "disabled":
            return f"the namespace is labelled {DISABLE_LABEL}=disabled"
        excluded = excluded_namespaces(policy, own)
        if namespace in excluded:
            return f"namespace {namespace} is excluded ({', '.join(excluded)})"
        opt_in = policy.spec.namespace_selector
        if opt_in is not None and not opt_in.matches(labels):
            return (
                "the namespace's labels do not match the policy's namespaceSelector"
                f" ({opt_in.description})"
            )
        return "the namespace's labels match no entry's namespaceSelector"


def _selector(selector: dict[str, Any] | None) -> LabelSelector | None:
    return LabelSelector.model_validate(selector) if selector else None
