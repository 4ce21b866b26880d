"""The deployment (docs/design.md#deployment) as Kubernetes objects, derived from the policy.

`objects()` returns every object `kubectl apply` needs, as plain dicts, in
the order they apply; `deploy/` holds the same YAML (a test fails when they
drift). The Deployment is data (`deployment.yaml`), filled in here.
The webhook configuration is derived from the policy so the apiserver
sends only pods the policy can match: one webhook entry per pod selector of
each rule, whose `objectSelector` is that selector. (An objectSelector is a
single LabelSelector, and the policy's selectors are ORed; one entry each
keeps the apiserver's own label matching, which works on every supported
Kubernetes version, instead of CEL `matchConditions`. A pod matching two
selectors is sent twice; the second call sees the first's patch and answers
`already-injected`.) Each entry exists twice, with complementary namespace
selectors on `pod-security.kubernetes.io/enforce`: namespaces enforcing
"restricted" are sent to `/mutate/restricted`, all others to `/mutate`.
"""

from __future__ import annotations

import base64
from importlib import resources
from typing import Any

import yaml

from webhook.certs import layout, pki
from webhook.engine import DEFAULT_IMAGE, PRODUCT
from webhook.engine import policy as policies
from webhook.engine.policy import LabelSelector, Policy, selection_fingerprint
from webhook.k8s import emit

NAME = PRODUCT
DEFAULT_NAMESPACE = PRODUCT
SELECTION_ANNOTATION = "volume-init.dify.ai/selection"
"""On the webhook configuration: the fingerprint of the policy selection it renders."""
POLICY_CONFIGMAP = f"{NAME}-policy"
POLICY_KEY = "policy.yaml"
ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"
DISABLE_LABEL = "volume-init.dify.ai/inject"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
CERT_DIR = "/etc/dify-volume-init/tls"
POLICY_DIR = "/etc/dify-volume-init/policy"
LABELS = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/component": "webhook"}


def objects(
    policy: Policy,
    policy_text: str,
    *,
    namespace: str = DEFAULT_NAMESPACE,
    image: str = DEFAULT_IMAGE,
    ca_bundle: bytes | None = None,
    cert_manager: bool = False,
) -> list[dict[str, Any]]:
    """Every object of the install, in apply order."""
    if ca_bundle is not None and cert_manager:
        raise ValueError("--ca-bundle and --cert-manager exclude each other")
    found = [
        _namespace(namespace),
        _service_account(namespace),
        _policy_configmap(namespace, policy_text),
        _deployment(namespace, image, selection=selection_fingerprint(policy)),
        _disruption_budget(namespace),
        _service(namespace),
    ]
    if cert_manager:
        found += cert_manager_objects(namespace)
    found.append(
        webhook_configuration(
            policy, namespace=namespace, ca_bundle=ca_bundle, cert_manager=cert_manager
        )
    )
    return found


def _meta(name: str, namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta["labels"] = dict(LABELS)
    return meta


def _namespace(namespace: str) -> dict[str, Any]:
    meta = _meta(namespace)
    # Its own pods are never sent to it, and they meet Pod Security "restricted".
    meta["labels"].update({DISABLE_LABEL: "disabled", ENFORCE_LABEL: "restricted"})
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def _service_account(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(NAME, namespace),
        # The webhook calls no Kubernetes API: no token, no RBAC.
        "automountServiceAccountToken": False,
    }


def _policy_configmap(namespace: str, policy_text: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(POLICY_CONFIGMAP, namespace),
        "data": {POLICY_KEY: policy_text},
    }


def _deployment(namespace: str, image: str, *, selection: str) -> dict[str, Any]:
    """deployment.yaml, filled in."""
    found: dict[str, Any] = yaml.safe_load(
        resources.files(__package__).joinpath("deployment.yaml").read_text()
    )
    found["metadata"] = _meta(NAME, namespace)
    spec = found["spec"]
    template = spec["template"]["spec"]
    for holder in (
        spec["selector"],
        template["topologySpreadConstraints"][0]["labelSelector"],
        template["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][
            0
        ]["podAffinityTerm"]["labelSelector"],
    ):
        holder["matchLabels"] = dict(LABELS)
    spec["template"]["metadata"]["labels"] = dict(LABELS)
    template["serviceAccountName"] = NAME
    (container,) = template["containers"]
    container["image"] = image
    container["args"] = [
        "serve",
        *("--tls-cert", f"{CERT_DIR}/{layout.TLS_CERT}"),
        *("--tls-key", f"{CERT_DIR}/{layout.TLS_KEY}"),
        *("--policy", f"{POLICY_DIR}/{POLICY_KEY}"),
    ]
    values = {"VOLUME_INIT_SELECTION": selection, "VOLUME_INIT_IMAGE": image}
    for entry in container["env"]:
        if entry["name"] in values:
            entry["value"] = values[entry["name"]]
    tls_mount, policy_mount = container["volumeMounts"]
    tls_mount["mountPath"], policy_mount["mountPath"] = CERT_DIR, POLICY_DIR
    tls_volume, policy_volume = template["volumes"]
    tls_volume["secret"]["secretName"] = layout.SECRET
    policy_volume["configMap"]["name"] = POLICY_CONFIGMAP
    return found


def _disruption_budget(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(NAME, namespace),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": dict(LABELS)}},
    }


def _service(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(NAME, namespace),
        "spec": {
            "selector": dict(LABELS),
            "ports": [{"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}],
        },
    }


def cert_manager_objects(namespace: str) -> list[dict[str, Any]]:
    """A self-signed Issuer and the serving Certificate, written to the TLS Secret."""
    return [
        {
            "apiVersion": "cert-manager.io/v1",
            "kind": "Issuer",
            "metadata": _meta(f"{NAME}-selfsigned", namespace),
            "spec": {"selfSigned": {}},
        },
        {
            "apiVersion": "cert-manager.io/v1",
            "kind": "Certificate",
            "metadata": _meta(NAME, namespace),
            "spec": {
                "secretName": layout.SECRET,
                "dnsNames": pki.service_names(NAME, namespace),
                "duration": "2160h",
                "renewBefore": "720h",
                "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
                "usages": ["server auth", "digital signature"],
                "issuerRef": {"name": f"{NAME}-selfsigned", "kind": "Issuer"},
            },
        },
    ]


def excluded_namespaces(policy: Policy, namespace: str) -> list[str]:
    """Namespaces no entry sends: `policy.excluded_namespaces`, the webhook's own first."""
    return list(policies.excluded_namespaces(policy, (namespace,)))


def webhook_configuration(
    policy: Policy,
    *,
    namespace: str = DEFAULT_NAMESPACE,
    ca_bundle: bytes | None = None,
    cert_manager: bool = False,
) -> dict[str, Any]:
    """The MutatingWebhookConfiguration: two entries per pod selector of each rule."""
    entries = []
    for rule in policy.spec.rules:
        for index, selector in enumerate(rule.pod_selectors):
            for restricted in (False, True):
                entries.append(
                    _entry(
                        name=f"{rule.name}-{index}{'-restricted' if restricted else ''}"
                        ".volume-init.dify.ai",
                        selector=selector,
                        restricted=restricted,
                        namespace=namespace,
                        excluded=excluded_namespaces(policy, namespace),
                        opt_in=policy.spec.namespace_selector,
                        ca_bundle=ca_bundle,
                        restricted_by_default=(
                            policy.spec.pod_security.cluster_default == "restricted"
                        ),
                    )
                )
    meta = _meta(NAME)
    meta["annotations"] = {SELECTION_ANNOTATION: selection_fingerprint(policy)}
    if cert_manager:
        meta["annotations"]["cert-manager.io/inject-ca-from"] = f"{namespace}/{NAME}"
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": meta,
        "webhooks": entries,
    }


LENIENT_LEVELS = ["privileged", "baseline"]


def _enforce(restricted: bool, *, restricted_by_default: bool) -> dict[str, Any]:
    """The namespace expression that splits the two entries by Pod Security level.

    Where the cluster enforces nothing by default, a namespace is restricted only when
    labelled so (`In [restricted]`); where it enforces restricted by default (the
    PodSecurity AdmissionConfiguration's `defaults`), every namespace is, unless
    labelled privileged or baseline: `NotIn` matches a namespace with no label too.
    """
    if restricted_by_default:
        operator = "NotIn" if restricted else "In"
        return {"key": ENFORCE_LABEL, "operator": operator, "values": LENIENT_LEVELS}
    operator = "In" if restricted else "NotIn"
    return {"key": ENFORCE_LABEL, "operator": operator, "values": ["restricted"]}


def _entry(
    *,
    name: str,
    selector: LabelSelector,
    restricted: bool,
    namespace: str,
    excluded: list[str],
    opt_in: LabelSelector | None,
    ca_bundle: bytes | None,
    restricted_by_default: bool,
) -> dict[str, Any]:
    namespace_selector: dict[str, Any] = {
        "matchExpressions": [
            {"key": NAMESPACE_NAME_LABEL, "operator": "NotIn", "values": excluded},
            {"key": DISABLE_LABEL, "operator": "NotIn", "values": ["disabled"]},
            _enforce(restricted, restricted_by_default=restricted_by_default),
        ]
    }
    if opt_in is not None:  # ANDed with the exclusions: an opt-in never overrides them
        chosen = opt_in.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        namespace_selector = {
            **({"matchLabels": chosen["matchLabels"]} if chosen.get("matchLabels") else {}),
            "matchExpressions": [
                *namespace_selector["matchExpressions"],
                *chosen.get("matchExpressions", []),
            ],
        }
    client: dict[str, Any] = {
        "service": {
            "name": NAME,
            "namespace": namespace,
            "path": "/mutate/restricted" if restricted else "/mutate",
            "port": 443,
        }
    }
    if ca_bundle is not None:
        client["caBundle"] = base64.b64encode(ca_bundle).decode("ascii")
    return {
        "name": name,
        "admissionReviewVersions": ["v1"],
        "clientConfig": client,
        "rules": [
            {
                "operations": ["CREATE"],
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "resources": ["pods"],
                "scope": "Namespaced",
            }
        ],
        # Fail open: a pod created while the webhook is down starts unpatched
        # (as it would without the webhook) instead of not at all.
        "failurePolicy": "Ignore",
        "matchPolicy": "Equivalent",
        "sideEffects": "None",
        "timeoutSeconds": 5,
        "reinvocationPolicy": "IfNeeded",
        "namespaceSelector": namespace_selector,
        "objectSelector": selector.model_dump(mode="json", by_alias=True, exclude_defaults=True),
    }


HEADER = (
    "# dify-volume-init: generated by `dify-volume-init manifests`; edit the policy, not this.\n"
)


def to_yaml(found: list[dict[str, Any]]) -> str:
    """The objects as one YAML stream, with a header comment."""
    return HEADER + "---\n".join(emit.emit(obj) for obj in found)
