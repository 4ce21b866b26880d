"""`dify-volume-init review`: the same engine as `/mutate`, on manifests, with no cluster."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import yaml
from fastapi.testclient import TestClient

from tests import helpers
from webhook.engine.policy import Policy, default_policy_text
from webhook.review import documents

EXAMPLES = Path(__file__).parent.parent / "examples"


def cli(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "webhook", "review", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


def deployment(pod: dict[str, Any], *, name: str = "dify-api") -> dict[str, Any]:
    """A Deployment whose template is the pod's metadata and spec."""
    template: dict[str, Any] = {"spec": pod["spec"]}
    labels = (pod.get("metadata") or {}).get("labels")
    if labels:
        template["metadata"] = {"labels": labels}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": helpers.namespace_of(pod)},
        "spec": {"selector": {"matchLabels": labels or {}}, "template": template},
    }


@pytest.mark.parametrize(
    "pod_file", helpers.pod_inputs(), ids=[p.stem for p in helpers.pod_inputs()]
)
def test_review_and_mutate_give_the_same_patch(
    pod_file: Path, client: TestClient, policy: Policy
) -> None:
    """One core: a golden pod through `review` and through `/mutate`."""
    pod = helpers.load_pod(pod_file)
    namespace = helpers.namespace_of(pod)
    for restricted, path in ((False, "/mutate"), (True, "/mutate/restricted")):
        options = documents.Options(policy=policy, restricted=restricted)
        reviewed = documents.review(pod, options)
        answer = client.post(path, json=helpers.review(pod, namespace=namespace)).json()
        sent = helpers.decoded_patch(answer) or []
        assert reviewed.patch == sent
        assert (reviewed.decision is not None) and reviewed.decision.outcome == (
            answer["response"]["auditAnnotations"]["outcome"]
        )


def test_an_admission_review_is_answered_exactly_as_mutate(
    client: TestClient, policy: Policy
) -> None:
    """Guards one core: review answers an AdmissionReview as /mutate does."""
    body = json.loads((EXAMPLES / "admission-review.json").read_text())
    reviewed = documents.review(body, documents.Options(policy=policy))
    assert reviewed.result == client.post("/mutate", json=body).json()
    result = cli("-f", str(EXAMPLES / "admission-review.json"), "-o", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == client.post("/mutate", json=body).json()


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        ("Deployment", "/spec/template"),
        ("StatefulSet", "/spec/template"),
        ("DaemonSet", "/spec/template"),
        ("ReplicaSet", "/spec/template"),
        ("ReplicationController", "/spec/template"),
        ("Job", "/spec/template"),
        ("CronJob", "/spec/jobTemplate/spec/template"),
    ],
)
def test_workload_templates_are_reviewed_as_pods(kind: str, path: str, policy: Policy) -> None:
    """Guards workload kinds: their pod template is reviewed as the pod it becomes."""
    pod = helpers.load_pod(helpers.PODS / "helm-worker-with-init.yaml")
    obj = deployment(pod)
    obj["kind"] = kind
    if kind == "CronJob":
        obj["spec"] = {
            "schedule": "@daily",
            "jobTemplate": {"spec": {"template": obj["spec"]["template"]}},
        }
    pristine = copy.deepcopy(obj)
    reviewed = documents.review(obj, documents.Options(policy=policy))
    assert obj == pristine
    assert reviewed.patch
    assert all(op["path"].startswith(path + "/") for op in reviewed.patch)
    assert jsonpatch.apply_patch(obj, reviewed.patch) == reviewed.result
    again = documents.review(reviewed.result, documents.Options(policy=policy))
    assert again.patch == []


def test_namespace_comes_from_the_object_then_the_flag(policy: Policy) -> None:
    """Guards the namespace: the object's, then --namespace."""
    pod = helpers.load_pod(helpers.PODS / "helm-api.yaml")
    obj = deployment(pod)
    del obj["metadata"]["namespace"]
    assert documents.review(obj, documents.Options(policy=policy)).patch
    excluded = documents.review(obj, documents.Options(policy=policy, namespace="kube-system"))
    assert excluded.decision is not None and excluded.decision.reason == "excluded-namespace"
    obj["metadata"]["namespace"] = "dify"
    assert documents.review(obj, documents.Options(policy=policy, namespace="kube-system")).patch


def test_yaml_output_keeps_every_document_in_order(tmp_path: Path) -> None:
    """Guards -o yaml: every document, in order, comments kept, re-review finds nothing."""
    source = EXAMPLES / "dify-helm-nfs.yaml"
    result = cli("-f", str(source), "-o", "yaml")
    assert result.returncode == 0, result.stderr
    before = list(yaml.safe_load_all(source.read_text()))
    after = list(yaml.safe_load_all(result.stdout))
    assert [(d["kind"], d["metadata"]["name"]) for d in after] == [
        (d["kind"], d["metadata"]["name"]) for d in before
    ]
    changed = {d["metadata"]["name"] for d, e in zip(before, after, strict=True) if d != e}
    assert changed == {"dify-api", "dify-worker", "dify-beat"}
    for doc in after:
        if doc["kind"] == "Deployment" and doc["metadata"]["name"] in changed:
            spec = doc["spec"]["template"]["spec"]
            assert spec["initContainers"][0]["name"] == "volume-permissions"
    # the output reviewed again changes nothing
    again = cli("-f", "-", "--exit-code", stdin=result.stdout)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout == ""


def test_patch_output_applies_to_each_object() -> None:
    """Guards -o patch: per object, applicable with jsonpatch."""
    source = EXAMPLES / "dify-helm-nfs.yaml"
    result = cli("-f", str(source), "-o", "patch")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    headers = lines[0::2]
    assert headers == [
        "# Deployment dify/dify-api",
        "# Deployment dify/dify-worker",
        "# Deployment dify/dify-beat",
    ]
    docs = {
        d["metadata"]["name"]: d
        for d in yaml.safe_load_all(source.read_text())
        if d["kind"] == "Deployment"
    }
    for header, patch_line in zip(lines[0::2], lines[1::2], strict=True):
        name = header.split("/")[-1]
        patched = jsonpatch.apply_patch(docs[name], json.loads(patch_line))
        assert patched["spec"]["template"]["spec"]["securityContext"]["fsGroup"] == 1001


def test_diff_is_plain_when_piped_and_coloured_when_asked() -> None:
    """Guards the diff output and its colouring."""
    source = str(EXAMPLES / "dify-helm-nfs.yaml")
    plain = cli("-f", source)
    assert plain.returncode == 0
    assert plain.stdout.startswith(
        "--- Deployment dify/dify-api\n+++ Deployment dify/dify-api (patched)\n"
    )
    assert "\033[" not in plain.stdout
    assert "+      - name: volume-permissions\n" in plain.stdout
    coloured = cli("-f", source, "--color", "always")
    assert "\033[32m+" in coloured.stdout


def test_explain_says_why_for_every_object() -> None:
    """Guards --explain: one line per object with its reason."""
    result = cli("-f", str(EXAMPLES / "dify-helm-nfs.yaml"), "--explain", "-o", "patch")
    lines = result.stderr.splitlines()
    assert len(lines) == 7
    assert lines[0].endswith("PersistentVolumeClaim dify/dify: unchanged: not a pod or workload")
    assert "Deployment dify/dify-api: patched: rule dify-storage (selector" in lines[1]
    assert "fixes app-data at /app/api/storage for 1001:1001" in lines[1]
    assert "Deployment dify/dify-web: skipped (no-rule-matched)" in lines[4]


def test_hostpath_refusal_is_reported_and_counts_as_a_change() -> None:
    """Guards refusals in review: reported, and a change for --exit-code."""
    result = cli("-f", str(EXAMPLES / "dify-hostpath.yaml"), "--exit-code", "-o", "patch")
    assert result.returncode == 1
    assert "Deployment dify/dify-worker: denied: volume storage" in result.stderr
    assert "/var/log/dify, a system path (under /var/log)" in result.stderr
    assert result.stdout.startswith("# Deployment dify/dify-api\n")


def test_exit_codes() -> None:
    """Guards review's exit codes (0, 1 with --exit-code, 2)."""
    assert cli("-f", str(EXAMPLES / "dify-s3.yaml"), "--exit-code").returncode == 0
    assert cli("-f", str(EXAMPLES / "dify-helm-nfs.yaml"), "--exit-code").returncode == 1
    assert cli("-f", str(EXAMPLES / "dify-helm-nfs.yaml")).returncode == 0
    assert cli("-f", "/nonexistent.yaml").returncode == 2


def test_restricted_mode_injects_no_init_container() -> None:
    """Guards --pod-security restricted in review."""
    result = cli(
        "-f", str(EXAMPLES / "dify-helm-nfs.yaml"), "--pod-security", "restricted", "-o", "yaml"
    )
    assert result.returncode == 0
    for doc in yaml.safe_load_all(result.stdout):
        if doc["kind"] == "Deployment":
            assert "initContainers" not in doc["spec"]["template"]["spec"]
    assert "Pod Security restricted" in result.stderr


def test_directories_stdin_json_streams_and_lists(tmp_path: Path) -> None:
    """Guards review's inputs: directories, stdin, JSON streams, Lists."""
    pod = helpers.load_pod(helpers.PODS / "helm-api.yaml")
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(deployment(pod, name="from-yaml")))
    stream = (
        json.dumps(deployment(pod, name="json-1"))
        + "\n"
        + json.dumps(deployment(pod, name="json-2"))
    )
    (tmp_path / "b.json").write_text(stream)
    listing = {"apiVersion": "v1", "kind": "List", "items": [pod, deployment(pod, name="in-list")]}
    (tmp_path / "c.yml").write_text(yaml.safe_dump(listing))
    (tmp_path / "notes.txt").write_text("ignored")
    result = cli("-f", str(tmp_path), "-o", "patch")
    assert result.returncode == 0, result.stderr
    headers = [line for line in result.stdout.splitlines() if line.startswith("#")]
    assert headers == [
        "# Deployment dify/from-yaml",
        "# Deployment dify/json-1",
        "# Deployment dify/json-2",
        "# Pod dify/dify-api-7d9f8c6b5-",
        "# Deployment dify/in-list",
    ]
    piped = cli("-f", "-", "-o", "json", stdin=json.dumps(listing))
    assert piped.returncode == 0
    out = json.loads(piped.stdout)
    assert out["kind"] == "List"
    assert out["items"][0]["spec"]["initContainers"][0]["name"] == "volume-permissions"


def test_invalid_yaml_is_exit_2_with_file_and_line(tmp_path: Path) -> None:
    """Guards invalid YAML: exit 2, file and line, nothing on stdout."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Pod\nmetadata:\n  name: [unclosed\n")
    result = cli("-f", str(bad), "-o", "yaml")
    assert result.returncode == 2
    assert result.stderr.startswith(f"{bad}:")
    assert "invalid YAML" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == "", "a partial stream must not reach kubectl apply"


def test_bad_documents_are_reported_and_the_others_reviewed(tmp_path: Path) -> None:
    """Guards bad documents: reported while the rest is reviewed."""
    pod = helpers.load_pod(helpers.PODS / "helm-api.yaml")
    manifest = tmp_path / "mixed.yaml"
    no_template = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "empty"}}
    bad_pod = copy.deepcopy(pod)
    bad_pod["spec"]["containers"] = "api"
    manifest.write_text(
        "just a string\n---\n"
        + yaml.safe_dump(no_template)
        + "---\n"
        + yaml.safe_dump(bad_pod)
        + "---\n"
        + yaml.safe_dump(pod)
    )
    result = cli("-f", str(manifest), "-o", "patch")
    assert result.returncode == 2
    errors = result.stderr.splitlines()
    assert f"{manifest}:1: document: error: not a mapping (a Kubernetes object)" in errors
    assert (
        f"{manifest}:3: Deployment default/empty: error: no pod template at spec.template" in errors
    )
    assert any("spec.containers: expected a list, got a string" in e for e in errors)
    assert result.stdout.startswith("# Pod dify/dify-api-7d9f8c6b5-\n")
    assert "Traceback" not in result.stderr


def test_unknown_kinds_pass_through_untouched(policy: Policy) -> None:
    """Guards other kinds: passed through untouched."""
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "x"},
        "data": {"a": "b"},
    }
    reviewed = documents.review(config_map, documents.Options(policy=policy))
    assert reviewed.result is config_map
    assert reviewed.patch == []


def test_an_opt_in_namespace_selector_is_applied_with_namespace_labels(tmp_path: Path) -> None:
    """Guards review under spec.namespaceSelector: assumed selected (and said so under
    --explain) without --namespace-labels; with them, a namespace it does not select
    is "not sent" and unchanged; malformed labels are exit 2."""
    opted = tmp_path / "opt-in.yaml"
    opted.write_text(
        default_policy_text().replace(
            "  excludeNamespaces:",
            "  namespaceSelector:\n    matchLabels: {volume-init.dify.ai/inject: enabled}\n"
            "  excludeNamespaces:",
        )
    )
    manifest = str(EXAMPLES / "dify-helm-nfs.yaml")
    assumed = cli("-f", manifest, "--policy", str(opted), "--explain", "-o", "patch")
    assert assumed.returncode == 0, assumed.stderr
    assert "namespaceSelector (volume-init.dify.ai/inject=enabled) is applied by the apiserver" in (
        assumed.stderr
    )
    assert "# Deployment dify/dify-api" in assumed.stdout
    args = ("-f", manifest, "--policy", str(opted), "--exit-code", "-o", "patch", "--explain")
    unselected = cli(*args, "--namespace-labels", "kubernetes.io/metadata.name=dify")
    assert unselected.returncode == 0, unselected.stderr
    assert unselected.stdout == ""
    assert "Deployment dify/dify-api: unchanged: not sent: the namespace's labels" in (
        unselected.stderr
    )
    selected = cli(*args, "--namespace-labels", "a=b,volume-init.dify.ai/inject=enabled")
    assert selected.returncode == 1
    assert "# Deployment dify/dify-api" in selected.stdout
    broken = cli("-f", manifest, "--namespace-labels", "no-equals-sign")
    assert broken.returncode == 2
    assert (
        broken.stderr == "dify-volume-init: --namespace-labels: 'no-equals-sign' is not KEY=VALUE\n"
    )


DUPLICATED = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: dify-api
  namespace: dify
spec:
  selector: {matchLabels: {app: dify-api}}
  template:
    metadata:
      labels: {app: dify-api}
    spec:
      containers:
        - name: api
          image: langgenius/dify-api:1.9.0
          image: langgenius/dify-api:1.13.3
          volumeMounts: [{name: storage, mountPath: /app/api/storage}]
      volumes: [{name: storage, persistentVolumeClaim: {claimName: dify}}]
---
apiVersion: v1
kind: Pod
metadata: {name: dify-worker, namespace: dify, labels: {app: dify-worker}}
spec:
  containers:
    - name: worker
      image: langgenius/dify-api:1.13.3
      volumeMounts: [{name: storage, mountPath: /app/api/storage}]
  volumes: [{name: storage, persistentVolumeClaim: {claimName: dify}}]
"""


def test_duplicate_keys_are_a_warning_and_the_last_value_wins(tmp_path: Path) -> None:
    """Before: the whole file was refused at the first duplicate key (exit 2), where
    kubectl applies it with the last value (3 of 13 public repositories have one). Now a
    warning names both lines, the last value decides (here 1.13.3: patched, where the
    first value, 1.9.0, would be left alone as root-running), and the rest is reviewed."""
    manifest = tmp_path / "dup.yaml"
    manifest.write_text(DUPLICATED)
    result = cli("-f", str(manifest), "-o", "json", "--explain")
    assert result.returncode == 0, result.stderr
    assert (
        f"{manifest}:15: warning: duplicate key 'image' (also on line 14): the last value is"
        " used, as kubectl reads it"
    ) in result.stderr.splitlines()
    assert "Deployment dify/dify-api: patched" in result.stderr
    assert "Pod dify/dify-worker: patched" in result.stderr
    out = json.loads(result.stdout)
    containers = out["items"][0]["spec"]["template"]["spec"]["containers"]
    assert containers[0]["image"] == "langgenius/dify-api:1.13.3"


def test_a_merge_key_override_is_not_a_duplicate(tmp_path: Path) -> None:
    """Before: `<<: *defaults` then the same key written again was refused as a
    duplicate, though YAML defines it as an override (Dify's own compose file does it)."""
    manifest = tmp_path / "merge.yaml"
    manifest.write_text(
        DUPLICATED.replace(
            "          image: langgenius/dify-api:1.9.0\n          image:",
            "          <<: &base {image: langgenius/dify-api:1.9.0}\n          image:",
        )
    )
    result = cli("-f", str(manifest), "-o", "patch", "--explain")
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr
    assert "Deployment dify/dify-api: patched" in result.stderr


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ("volume-init.dify.ai/inject=disabled", "unchanged: not sent: the namespace is labelled"),
        ("pod-security.kubernetes.io/enforce=restricted", "(Pod Security restricted))"),
        ("pod-security.kubernetes.io/enforce=baseline", "patched: rule dify-storage"),
        ("team=ai", "patched: rule dify-storage"),
    ],
)
def test_namespace_labels_decide_as_the_webhook_configuration(labels: str, expected: str) -> None:
    """Before: --namespace-labels applied only the opt-in namespaceSelector:
    inject=disabled still showed an injection the apiserver never sends, and
    enforce=restricted the full patch Pod Security would refuse. Now the entries
    `manifests` renders decide, as in the cluster."""
    result = cli(
        "-f", str(EXAMPLES / "dify-helm-nfs.yaml"), "--namespace-labels", labels,
        "-o", "patch", "--explain",
    )  # fmt: skip
    line = next(x for x in result.stderr.splitlines() if "Deployment dify/dify-api:" in x)
    assert expected in line, line
    if "restricted" in expected:
        assert "initContainers" in cli("-f", str(EXAMPLES / "dify-helm-nfs.yaml")).stdout
        assert "initContainers" not in result.stdout


@pytest.mark.parametrize("labels", [None, "team=ai"])
def test_kube_system_is_excluded_whatever_the_policy_lists(
    tmp_path: Path, labels: str | None
) -> None:
    """Before: a policy whose excludeNamespaces left kube-system out made review (and the
    engine) inject there, while `manifests` and the chart never send kube-system. Now
    one function (policy.excluded_namespaces) decides for all of them."""
    custom = tmp_path / "policy.yaml"
    custom.write_text(
        default_policy_text().replace(
            "excludeNamespaces: [kube-system, kube-public, kube-node-lease]",
            "excludeNamespaces: [kube-public]",
        )
    )
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(
        DUPLICATED.split("---\n")[1].replace("namespace: dify", "namespace: kube-system")
    )
    args = ["-f", str(manifest), "--policy", str(custom), "-o", "patch", "--explain"]
    if labels is not None:
        args += ["--namespace-labels", labels]
    result = cli(*args)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    said = "not sent: namespace kube-system is excluded" if labels else "excluded-namespace"
    assert said in result.stderr, result.stderr


def test_the_readme_shows_a_real_run_on_dify_in_the_wild() -> None:
    """Guards the README's `dify-in-the-wild` block: every line of it is what the
    command prints today (generic labels, mirror, own UID, root, S3, not Dify)."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    command = "review -f examples/dify-in-the-wild.yaml --explain -o patch > /dev/null\n"
    block = readme.split(command, 1)[1].split("```", 1)[0]
    result = cli("-f", str(EXAMPLES / "dify-in-the-wild.yaml"), "--explain", "-o", "patch")
    assert result.returncode == 0
    said = result.stderr.replace(
        str(EXAMPLES / "dify-in-the-wild.yaml"), "examples/dify-in-the-wild.yaml"
    )
    assert block == said
