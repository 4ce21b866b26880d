"""The Helm chart (deploy/helm/dify-volume-init), checked with Helm's own Go SDK.

There is no helm binary here: `helm-python-sdk` embeds Helm v4's SDK as a
library, which lints, validates values against values.schema.json and renders
templates offline exactly as `helm template` does (`lookup` returns nothing).
The chart must render what `dify-volume-init manifests` renders, apart from
what is Helm's by design, each exception stated where it is made:
- Helm's own labels (instance, version, managed-by, helm.sh/chart);
- no Namespace object (a release goes into `--create-namespace`'s namespace);
- certificate handling (a chart-generated Secret and its caBundle, a
  cert-manager Issuer/Certificate, or an existing Secret);
- the policy ConfigMap's text (Helm's toYaml, no comments): compared as the
  policy it parses to.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store

from webhook.engine import policy
from webhook.install import manifests

CHART = Path(__file__).parent.parent / "deploy" / "helm" / "dify-volume-init"
RELEASE = NAMESPACE = "dify-volume-init"
KUBERNETES_VERSION = kubernetes_validate.latest_version()
HELM_LABELS = (
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
)
CUSTOM_POLICY = """\
apiVersion: volume-init.dify.ai/v1
kind: VolumeInitPolicy
spec:
  excludeNamespaces: [legacy]
  namespaceSelector:
    matchLabels: {volume-init.dify.ai/inject: enabled}
    matchExpressions:
      - {key: tier, operator: NotIn, values: [sandbox]}
  rules:
    - name: api
      podSelectors:
        - matchLabels: {app: dify-api}
        - matchExpressions:
            - {key: dify.ai/storage, operator: Exists}
      mountPaths: [/app/api/storage]
    - name: sandbox-data
      podSelectors:
        - matchLabels: {app: dify-sandbox, tier: data}
      mountPaths: [/data]
      user: 2000
      group: 2000
"""


def render(values: dict[str, Any] | None = None, **kwargs: Any) -> list[dict[str, Any]]:
    """The chart's objects for `values`, as `helm template` would print them."""
    chart = helm.Chart.load(CHART)
    rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True, **kwargs)
    found = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        found += [doc for doc in yaml.safe_load_all(text) if doc]
    return found


def keyed(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def without_helm_labels(obj: dict[str, Any]) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    for meta in (obj["metadata"], obj.get("spec", {}).get("template", {}).get("metadata", {})):
        for label in HELM_LABELS:
            (meta.get("labels") or {}).pop(label, None)
    return obj


def without_ca_bundles(config: dict[str, Any]) -> dict[str, Any]:
    config = copy.deepcopy(config)
    for entry in config["webhooks"]:
        entry["clientConfig"].pop("caBundle", None)
    return config


def comparable(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Objects keyed by kind and name, with the stated exceptions taken out."""
    out = {}
    for rendered in objects:
        if rendered["kind"] in ("Namespace", "Secret", "Issuer", "Certificate"):
            continue  # no Namespace object; certificate handling
        obj = without_helm_labels(rendered)
        if obj["kind"] == "MutatingWebhookConfiguration":
            obj = without_ca_bundles(obj)  # certificate handling
        if obj["kind"] == "ConfigMap":
            text = obj["data"].pop("policy.yaml")
            obj["data"]["policy"] = policy.parse_policy(text, source="ConfigMap")
        out[(obj["kind"], obj["metadata"]["name"])] = obj
    return out


def manifests_of(text: str) -> list[dict[str, Any]]:
    return manifests.objects(policy.parse_policy(text, source="p.yaml"), text)


def test_the_chart_lints_clean() -> None:
    """Guards the chart against Helm's own lint, strict (warnings count): no message."""
    report = helm.lint(CHART, strict=True, namespace=NAMESPACE, kube_version="v1.30.0")
    assert report["errors"] == [] and report["messages"] == [], report


def test_lint_can_fail(tmp_path: Path) -> None:
    """The lint check can fail: a copy of the chart with a broken template is reported."""
    copy_dir = tmp_path / "dify-volume-init"
    shutil.copytree(CHART, copy_dir)
    (copy_dir / "templates" / "service.yaml").write_text("{{ .Values.nope.deeper }")
    report = helm.lint(copy_dir, strict=True)
    assert report["errors"] or any(m["severity"] >= 2 for m in report["messages"])


def test_default_values_render_what_manifests_renders() -> None:
    """Guards the chart's defaults against `manifests`: the same objects, field for field,
    apart from the exceptions in this module's docstring; and the values' policy is the
    built-in one."""
    chart = comparable(render())
    expected = comparable(manifests_of(policy.default_policy_text()))
    assert chart.keys() == expected.keys()
    for key in expected:
        assert chart[key] == expected[key], key


def test_the_comparison_can_fail() -> None:
    """The comparison above can fail: one changed value shows as a difference."""
    chart = comparable(render({"replicaCount": 3}))
    expected = comparable(manifests_of(policy.default_policy_text()))
    assert chart[("Deployment", RELEASE)] != expected[("Deployment", RELEASE)]


def test_a_custom_policy_renders_the_selection_manifests_renders() -> None:
    """Guards the selection derived in Helm templates: a policy with two rules, an
    opt-in namespaceSelector, Exists and extra exclusions gives the same webhook entries,
    the same fingerprint on the configuration and in the Deployment as `manifests --policy`,
    and the ConfigMap holds that policy."""
    chart = keyed(render({"policy": yaml.safe_load(CUSTOM_POLICY)}))
    expected = keyed(manifests_of(CUSTOM_POLICY))
    key = ("MutatingWebhookConfiguration", RELEASE)
    assert without_ca_bundles(chart[key])["webhooks"] == expected[key]["webhooks"]
    assert len(expected[key]["webhooks"]) == 6
    fingerprint = policy.selection_fingerprint(policy.parse_policy(CUSTOM_POLICY, source="p"))
    assert chart[key]["metadata"]["annotations"][manifests.SELECTION_ANNOTATION] == fingerprint
    (container,) = chart[("Deployment", RELEASE)]["spec"]["template"]["spec"]["containers"]
    assert {"name": "VOLUME_INIT_SELECTION", "value": fingerprint} in container["env"]
    text = chart[("ConfigMap", f"{RELEASE}-policy")]["data"]["policy.yaml"]
    assert policy.parse_policy(text, source="c") == policy.parse_policy(CUSTOM_POLICY, source="p")


MODES: dict[str, dict[str, Any]] = {
    "generate": {},
    "certManager": {"certificates": {"mode": "certManager"}},
    "existingSecret": {
        "certificates": {
            "mode": "existingSecret",
            "existingSecret": "corp-tls",
            "caBundle": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        }
    },
    "everything-on": {
        "metrics": {"scrapeAnnotations": True, "serviceMonitor": {"enabled": True}},
        "networkPolicy": {"enabled": True, "from": [{"namespaceSelector": {}}]},
        "priorityClassName": "system-cluster-critical",
        "imagePullSecrets": [{"name": "regcred"}],
        "image": {"digest": "sha256:" + "a" * 64},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Exists"}],
        "podDisruptionBudget": {"enabled": False},
        "webhook": {"failurePolicy": "Fail", "timeoutSeconds": 10},
    },
}
CUSTOM_RESOURCES = ("Issuer", "Certificate", "ServiceMonitor")  # no OpenAPI schema in core


@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_rendered_object_passes_the_openapi_schema(mode: str) -> None:
    """Guards every object of each certificate mode (and every option turned on)
    against Kubernetes' OpenAPI schema in strict mode; cert-manager's and the
    Prometheus Operator's objects are checked for their key fields instead."""
    objects = render(MODES[mode])
    kinds = {o["kind"] for o in objects}
    for obj in objects:
        if obj["kind"] in CUSTOM_RESOURCES:
            continue
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    found = keyed(objects)
    config = found[("MutatingWebhookConfiguration", RELEASE)]
    annotations = config["metadata"]["annotations"]
    if mode == "certManager":
        assert {"Issuer", "Certificate"} <= kinds and "Secret" not in kinds
        assert annotations["cert-manager.io/inject-ca-from"] == f"{NAMESPACE}/{RELEASE}"
        certificate = found[("Certificate", RELEASE)]["spec"]
        assert certificate["secretName"] == f"{RELEASE}-tls"
        assert f"{RELEASE}.{NAMESPACE}.svc" in certificate["dnsNames"]
    elif mode == "existingSecret":
        assert "Secret" not in kinds
        bundles = {e["clientConfig"]["caBundle"] for e in config["webhooks"]}
        assert bundles == {
            base64.b64encode(MODES[mode]["certificates"]["caBundle"].encode()).decode()
        }
        volumes = found[("Deployment", RELEASE)]["spec"]["template"]["spec"]["volumes"]
        assert {"name": "tls", "secret": {"secretName": "corp-tls"}} in volumes
    elif mode == "everything-on":
        monitor = found[("ServiceMonitor", RELEASE)]["spec"]
        assert monitor["endpoints"][0]["tlsConfig"]["serverName"] == f"{RELEASE}.{NAMESPACE}.svc"
        policy_ = found[("NetworkPolicy", RELEASE)]["spec"]
        assert policy_["ingress"][0]["ports"] == [{"port": 8443, "protocol": "TCP"}]
        assert "PodDisruptionBudget" not in kinds
        pod = found[("Deployment", RELEASE)]["spec"]["template"]
        assert pod["spec"]["containers"][0]["image"].endswith("@sha256:" + "a" * 64)
        assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
        assert {e["failurePolicy"] for e in config["webhooks"]} == {"Fail"}


def test_the_schema_check_can_fail() -> None:
    """The OpenAPI check can fail: a rendered Deployment with a misspelled field is refused."""
    deployment = keyed(render())[("Deployment", RELEASE)]
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_generated_certificates_are_trusted_by_the_ca_bundle() -> None:
    """Guards certificates.mode=generate: the Secret's serving certificate verifies for
    the Service's DNS name against the caBundle every webhook entry carries. (Keeping
    them on upgrade reads the Secret back with `lookup`, which an offline render cannot
    exercise; the template takes that branch whenever the Secret has a ca.crt.)"""
    found = keyed(render())
    secret = found[("Secret", f"{RELEASE}-tls")]
    config = found[("MutatingWebhookConfiguration", RELEASE)]
    (bundle,) = {e["clientConfig"]["caBundle"] for e in config["webhooks"]}
    assert bundle == secret["data"]["ca.crt"]
    store = Store(x509.load_pem_x509_certificates(base64.b64decode(bundle)))
    leaf = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    verifier = (
        PolicyBuilder()
        .store(store)
        .build_server_verifier(x509.DNSName(f"{RELEASE}.{NAMESPACE}.svc"))
    )
    verifier.verify(leaf, [])


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"replicaCount": "two"}, "/replicaCount"),
        ({"webhook": {"failurePolicy": "Sometimes"}}, "/webhook/failurePolicy"),
        ({"certificates": {"mode": "byHand"}}, "/certificates/mode"),
        ({"policy": {"spec": {"rules": [{"name": "x", "user": "1001"}]}}}, "/policy/spec/rules/0"),
        ({"replicas": 3}, "replicas"),
    ],
)
def test_values_schema_refuses_a_wrong_value_naming_the_key(
    values: dict[str, Any], key: str
) -> None:
    """Guards values.schema.json: a wrong type, a value outside its set, or a misspelled
    top-level key is refused by Helm with a message naming the key."""
    with pytest.raises(helm.HelmValuesError) as refused:
        render(values)
    assert key in str(refused.value), str(refused.value)


def test_the_default_values_pass_the_schema() -> None:
    """The schema's other side: the chart's own defaults and every mode above pass it."""
    chart = helm.Chart.load(CHART)
    for values in MODES.values():
        chart.validate_schema(chart.merge_values(values))


def test_the_ca_bundle_keeps_only_certificates_and_refuses_a_key(tmp_path: Path) -> None:
    """Guards certificates.caBundle: text around the certificates is dropped from what
    every webhook entry carries, and a bundle holding a private key fails the render
    with a message naming the key (it was rendered into the cluster-wide object)."""
    from tests.test_private_keys import combined

    cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
    values = copy.deepcopy(MODES["existingSecret"])
    values["certificates"]["caBundle"] = f"Bag Attributes: x\n{cert}\ntrailing text\n"
    config = keyed(render(values))[("MutatingWebhookConfiguration", RELEASE)]
    bundles = {base64.b64decode(e["clientConfig"]["caBundle"]) for e in config["webhooks"]}
    assert bundles == {f"{cert}\n".encode()}
    values["certificates"]["caBundle"] = combined(tmp_path).read_text()
    with pytest.raises(helm.HelmError) as refused:
        render(values)
    assert "holds a private key" in str(refused.value)
    assert "BEGIN PRIVATE KEY" not in str(refused.value)


def material(tmp_path: Path, existing: Any, kept: Any) -> dict[str, Any]:
    """`dvi.certMaterial` for Secrets as the cluster would hold them on an upgrade:
    `lookup` cannot run offline, so a copy of the chart renders the pure template
    with the Secrets given (the schema, which forbids extra values, left out)."""
    chart_dir = tmp_path / "chart"
    if not chart_dir.exists():
        shutil.copytree(CHART, chart_dir)
        (chart_dir / "values.schema.json").unlink()
        (chart_dir / "templates" / "zz-material.yaml").write_text(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: material}\ndata:\n"
            '  material: {{ include "dvi.certMaterial" (dict "root" . "existing"'
            ' .Values.testExisting "kept" .Values.testKept "renewDays" 30) | quote }}\n'
        )
    rendered = helm.Chart.load(chart_dir).render(
        {"testExisting": existing, "testKept": kept},
        name=RELEASE,
        namespace=NAMESPACE,
        is_install=False,
    )
    text = next(v for k, v in rendered.items() if k.endswith("templates/zz-material.yaml"))
    found: dict[str, Any] = json.loads(yaml.safe_load(text)["data"]["material"])
    return found


def test_generated_certificates_renew_within_30_days_from_the_kept_ca(tmp_path: Path) -> None:
    """Guards certificates.mode=generate on upgrade: the CA and its key are kept in their
    own Secret; a serving certificate with more than 30 days left is kept as it is, one
    within 30 days is re-issued from the same CA (the caBundle stays valid), and an
    install whose CA key was never kept keeps its certificate and says it cannot renew
    (before, the certificate was kept until it expired and the webhook stopped)."""
    found = keyed(render())
    tls = found[("Secret", f"{RELEASE}-tls")]
    kept = found[("Secret", f"{RELEASE}-ca")]
    assert "ca.key" not in tls["data"] and set(kept["data"]) == {"ca.crt", "ca.key"}
    deployment = found[("Deployment", RELEASE)]["spec"]["template"]["spec"]
    assert f"{RELEASE}-ca" not in json.dumps(deployment), "the CA key is never mounted"
    ca = x509.load_pem_x509_certificate(base64.b64decode(kept["data"]["ca.crt"]))
    leaf = x509.load_pem_x509_certificate(base64.b64decode(tls["data"]["tls.crt"]))
    recorded = dt.datetime.fromisoformat(tls["metadata"]["annotations"][NOT_AFTER])
    assert abs((recorded - leaf.not_valid_after_utc).total_seconds()) < 120

    def with_end(days: int) -> dict[str, Any]:
        secret = copy.deepcopy(tls)
        end = dt.datetime.now(dt.UTC) + dt.timedelta(days=days)
        secret["metadata"]["annotations"][NOT_AFTER] = end.strftime("%Y-%m-%dT%H:%M:%SZ")
        return secret

    far = material(tmp_path, with_end(200), kept)
    assert (
        far["state"] == "kept" and far["cert"] == base64.b64decode(tls["data"]["tls.crt"]).decode()
    )
    near = material(tmp_path, with_end(10), kept)
    assert near["state"] == "renewed" and near["cert"] != far["cert"]
    renewed = x509.load_pem_x509_certificate(near["cert"].encode())
    renewed.verify_directly_issued_by(ca)
    assert renewed.not_valid_after_utc > leaf.not_valid_after_utc - dt.timedelta(minutes=5)
    assert near["caCert"] == base64.b64decode(kept["data"]["ca.crt"]).decode()
    legacy = material(tmp_path, with_end(10), None)
    assert legacy["state"] == "no-ca-key" and legacy["cert"] == far["cert"]
    assert legacy["caKey"] == ""


NOT_AFTER = "volume-init.dify.ai/not-after"
