"""End to end through a real kube-apiserver (tests/controlplane.py): what was stored.

The webhook runs as `dify-volume-init serve` on 127.0.0.1 with a certificate for that
address, and its MutatingWebhookConfiguration is the one `manifests` renders, with
each entry's `clientConfig.service` rewritten to `url: https://127.0.0.1:PORT/<path>`
exactly as controller-runtime's envtest rewrites it: the only difference from
production. Pods are created by the controllers from Deployments (or directly), run
through the apiserver's whole admission chain, and the tests read what it stored.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests import controlplane, servers
from webhook.certs import pki, store
from webhook.engine import mutation
from webhook.engine.policy import Policy, default_policy, default_policy_text, parse_policy
from webhook.install import manifests

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


class Cluster:
    """The control plane, the webhook server and its registration."""

    def __init__(self, plane: controlplane.ControlPlane, server: servers.Server, ca: bytes) -> None:
        self.plane = plane
        self.server = server
        self.ca = ca

    def register(
        self,
        *,
        failure_policy: str = "Ignore",
        port: int | None = None,
        policy: Policy | None = None,
        ca_bundle: bytes | None = None,
    ) -> None:
        """The rendered webhook configuration, pointed at the test server by URL."""
        config = manifests.webhook_configuration(
            policy or default_policy(), ca_bundle=ca_bundle or self.ca
        )
        for entry in config["webhooks"]:
            path = entry["clientConfig"].pop("service")["path"]
            entry["clientConfig"]["url"] = f"https://127.0.0.1:{port or self.server.port}{path}"
            entry["failurePolicy"] = failure_policy
        self.plane.apply(config)
        # NB: the apiserver reads webhook configurations through an informer: a change
        # takes effect a moment after it is stored.
        time.sleep(1.5)

    def admissions(self) -> int:
        """How many admissions the server has logged."""
        return sum('"outcome"' in line for line in self.server.log().splitlines())

    def namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        self.plane.apply(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": name, "labels": labels or {}},
            }
        )

    def pods_of(self, namespace: str, selector: str, *, count: int = 1) -> list[dict[str, Any]]:
        """The pods the controllers made for `selector`, once there are `count`."""
        deadline = time.monotonic() + 60
        while True:
            found = self.plane.get("pods", "-n", namespace, "-l", selector)["items"]
            if len(found) >= count:
                return list(found)
            if time.monotonic() > deadline:
                events = self.plane.kubectl("get", "events", "-n", namespace, check=False).stdout
                raise AssertionError(f"no pod for {selector} in {namespace}:\n{events}")
            time.sleep(0.2)


@contextmanager
def started(
    directory: Path,
    *,
    admission_config: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[Cluster]:
    """A control plane with the webhook server registered against it."""
    bundle = pki.build(
        dns_names=pki.service_names(servers.SERVICE, servers.NAMESPACE),
        ip_addresses=["127.0.0.1"],
    )
    store.write_files(directory / "webhook-tls", bundle)
    with (
        controlplane.running(directory / "plane", admission_config=admission_config) as plane,
        servers.running(
            servers.tls_args(directory / "webhook-tls"),
            ca_file=directory / "webhook-tls" / "ca.crt",
            workdir=directory,
            env=env,
        ) as server,
    ):
        found = Cluster(plane, server, bundle.ca_cert)
        found.register()
        yield found


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with started(tmp_path_factory.mktemp("cluster")) as found:
        yield found


def contains(stored: Any, expected: Any, where: str = "") -> None:
    """Every field of `expected` is in `stored` with the same value (the apiserver adds
    defaults around them: terminationMessagePath, imagePullPolicy, ...)."""
    if isinstance(expected, dict):
        assert isinstance(stored, dict), where
        for key, value in expected.items():
            assert key in stored, f"{where}.{key} missing from what was stored"
            contains(stored[key], value, f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(stored, list) and len(stored) == len(expected), where
        for index, (left, right) in enumerate(zip(stored, expected, strict=True)):
            contains(left, right, f"{where}[{index}]")
    else:
        assert stored == expected, f"{where}: stored {stored!r}, predicted {expected!r}"


def review_json(path: Path) -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "webhook", "review", "-f", str(path), "-o", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    return list(document["items"]) if document["kind"] == "List" else [document]


def test_stored_pods_are_what_review_predicted(cluster: Cluster) -> None:
    """Guards the dry run's promise against the real apiserver: for the dify-helm
    example, each Deployment's pod as the apiserver stored it (after every admission
    plugin and the controllers) holds exactly the spec and status annotation `review`
    predicted for its template; the web pod is left alone."""
    cluster.namespace("dify")
    manifest = EXAMPLES / "dify-helm-nfs.yaml"
    cluster.plane.kubectl("apply", "-f", str(manifest))
    predicted = {
        d["metadata"]["name"]: d["spec"]["template"]
        for d in review_json(manifest)
        if d["kind"] == "Deployment"
    }
    assert predicted, "the example has Deployments"
    for name, template in predicted.items():
        labels = ",".join(f"{k}={v}" for k, v in template["metadata"]["labels"].items())
        (pod,) = cluster.pods_of("dify", labels)
        contains(pod["spec"], template["spec"], f"{name}.spec")
        annotations = template["metadata"].get("annotations", {})
        assert (pod["metadata"].get("annotations") or {}).get(
            mutation.STATUS_ANNOTATION
        ) == annotations.get(mutation.STATUS_ANNOTATION), name
    api = cluster.pods_of("dify", "component=api")[0]
    assert api["spec"]["initContainers"][0]["name"] == "volume-permissions"
    web = [
        p
        for p in cluster.plane.get("pods", "-n", "dify")["items"]
        if "web" in p["metadata"]["name"]
    ]
    assert web and all("initContainers" not in p["spec"] for p in web)


def bare_pod(name: str, namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "containers": [
                {
                    "name": "api",
                    "image": "langgenius/dify-api:1.10.1",
                    "volumeMounts": [{"name": "data", "mountPath": "/app/api/storage"}],
                }
            ],
            "volumes": [{"name": "data", "emptyDir": {}}],
        },
    }


DIFY = {"app.kubernetes.io/name": "dify", "component": "api"}


@pytest.mark.parametrize(
    ("namespace", "labels", "pod_labels", "annotations"),
    [
        ("kube-system", None, DIFY, {}),
        ("dify-volume-init", None, DIFY, {}),
        ("kube-public", None, DIFY, {}),
        ("opted-out-ns", {"volume-init.dify.ai/inject": "disabled"}, DIFY, {}),
        ("plain", None, {"app": "nginx"}, {}),
    ],
    ids=["kube-system", "webhook-own", "excluded", "inject-disabled", "not-dify"],
)
def test_pods_the_policy_never_selects_never_reach_the_webhook(
    cluster: Cluster,
    namespace: str,
    labels: dict[str, str] | None,
    pod_labels: dict[str, str],
    annotations: dict[str, str],
) -> None:
    """Guards the rendered selection: the apiserver does not call the webhook for these
    (the server logs no admission) and stores the pod unchanged."""
    if namespace not in ("kube-system", "kube-public"):
        cluster.namespace(namespace, labels)
    before = cluster.admissions()
    pod = bare_pod(f"p-{namespace}", namespace, pod_labels)
    pod["metadata"]["annotations"] = annotations
    cluster.plane.apply(pod)
    stored = cluster.plane.get("pod", "-n", namespace, pod["metadata"]["name"])
    assert "initContainers" not in stored["spec"]
    time.sleep(0.5)
    assert cluster.admissions() == before, cluster.server.log()[-2000:]


def test_a_pod_opted_out_by_annotation_is_stored_unchanged(cluster: Cluster) -> None:
    """Guards `volume-init.dify.ai/inject: "false"`: the webhook is called (the
    selection cannot read annotations) and answers with no patch."""
    cluster.namespace("opt-out")
    pod = bare_pod("opted", "opt-out", DIFY)
    pod["metadata"]["annotations"] = {"volume-init.dify.ai/inject": "false"}
    cluster.plane.apply(pod)
    stored = cluster.plane.get("pod", "-n", "opt-out", "opted")
    assert "initContainers" not in stored["spec"]
    assert mutation.STATUS_ANNOTATION not in (stored["metadata"].get("annotations") or {})


def test_a_restricted_namespace_gets_the_restricted_answer(cluster: Cluster) -> None:
    """Guards the Pod Security split: in a namespace enforcing restricted, the apiserver
    calls /mutate/restricted; the pod is admitted by PodSecurity with the
    securityContext and annotation, and no root init container."""
    cluster.namespace("strict", {"pod-security.kubernetes.io/enforce": "restricted"})
    pod = bare_pod("strict-api", "strict", DIFY)
    pod["spec"]["securityContext"] = {"seccompProfile": {"type": "RuntimeDefault"}}
    pod["spec"]["containers"][0]["securityContext"] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    cluster.plane.apply(pod)
    stored = cluster.plane.get("pod", "-n", "strict", "strict-api")
    assert "initContainers" not in stored["spec"]
    assert stored["spec"]["securityContext"]["fsGroup"] == 1001
    assert stored["spec"]["containers"][0]["securityContext"]["runAsUser"] == 1001
    status = json.loads(stored["metadata"]["annotations"][mutation.STATUS_ANNOTATION])
    assert status["initContainer"] is None


def test_server_side_dry_run_calls_the_webhook_and_stores_nothing(cluster: Cluster) -> None:
    """Guards `kubectl apply --dry-run=server`: the answer carries the same patch (the
    returned pod has the init container) and nothing is stored."""
    cluster.namespace("dry")
    pod = bare_pod("dry-api", "dry", DIFY)
    done = cluster.plane.kubectl(
        "apply", "--dry-run=server", "-o", "json", "-f", "-", stdin=yaml.safe_dump(pod)
    )
    answered = json.loads(done.stdout)
    assert answered["spec"]["initContainers"][0]["name"] == "volume-permissions"
    missing = cluster.plane.kubectl("get", "pod", "-n", "dry", "dry-api", check=False)
    assert missing.returncode != 0 and "NotFound" in missing.stderr


def test_the_webhook_down_fails_open_and_audit_finds_the_pod(cluster: Cluster) -> None:
    """Guards failurePolicy Ignore end to end: with the webhook unreachable the
    apiserver admits the Deployment's pod unpatched; `audit` over the real
    `kubectl get pods -A -o json` lists it, and its printed `rollout restart`, run,
    makes the controller create a pod that is patched."""
    cluster.namespace("outage")
    cluster.register(port=servers.free_port())  # nothing listens there
    deployment = yaml.safe_load((EXAMPLES / "dify-helm-nfs.yaml").read_text().split("---")[1])
    deployment = copy.deepcopy(deployment)
    deployment["metadata"]["namespace"] = "outage"
    deployment["spec"]["template"]["spec"].pop("serviceAccountName", None)
    try:
        cluster.plane.apply(deployment)
        (pod,) = cluster.pods_of("outage", "component=api")
        assert "initContainers" not in pod["spec"]
    finally:
        cluster.register()
    listing = cluster.plane.kubectl("get", "pods", "-A", "-o", "json").stdout
    audited = subprocess.run(
        [sys.executable, "-m", "webhook", "audit", "-f", "-"],
        input=listing,
        capture_output=True,
        text=True,
        check=False,
    )
    assert audited.returncode == 1, audited.stderr
    command = "kubectl -n outage rollout restart deployment/dify-api"
    assert command in audited.stdout.splitlines()
    cluster.plane.kubectl(*command.split()[1:])
    deadline = time.monotonic() + 60
    while True:
        pods = cluster.plane.get("pods", "-n", "outage", "-l", "component=api")["items"]
        if any("initContainers" in p["spec"] for p in pods):
            break
        assert time.monotonic() < deadline, "no patched pod after the restart"
        time.sleep(0.2)


def test_fail_closed_refuses_with_the_apiservers_message(cluster: Cluster) -> None:
    """Guards failurePolicy Fail: with the webhook unreachable, a matching pod is
    refused, and the apiserver's message names the webhook."""
    cluster.namespace("closed")
    cluster.register(failure_policy="Fail", port=servers.free_port())
    try:
        done = cluster.plane.kubectl(
            "apply", "-f", "-", stdin=yaml.safe_dump(bare_pod("c", "closed", DIFY)), check=False
        )
    finally:
        cluster.register()
    assert done.returncode != 0
    assert "failed calling webhook" in done.stderr and "volume-init.dify.ai" in done.stderr


def test_the_ca_bundle_is_what_the_apiserver_trusts(cluster: Cluster) -> None:
    """Guards the caBundle end to end: registered with another CA, the apiserver cannot
    verify the webhook (fail open: the pod is stored unpatched, `x509` in its log)."""
    cluster.namespace("wrongca")
    other = pki.build(dns_names=["x"]).ca_cert
    config = manifests.webhook_configuration(default_policy(), ca_bundle=other)
    for entry in config["webhooks"]:
        path = entry["clientConfig"].pop("service")["path"]
        entry["clientConfig"]["url"] = f"https://127.0.0.1:{cluster.server.port}{path}"
    cluster.plane.apply(config)
    time.sleep(1.5)  # as in Cluster.register
    try:
        before = fail_open_count(cluster)
        cluster.plane.apply(bare_pod("w", "wrongca", DIFY))
        stored = cluster.plane.get("pod", "-n", "wrongca", "w")
        assert "initContainers" not in stored["spec"]
        assert "x509" in cluster.plane.log("kube-apiserver")
        assert fail_open_count(cluster) > before
    finally:
        cluster.register()


def fail_open_count(cluster: Cluster) -> float:
    """The apiserver's `apiserver_admission_webhook_fail_open_count` for our webhooks."""
    metrics = cluster.plane.kubectl("get", "--raw", "/metrics").stdout
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("apiserver_admission_webhook_fail_open_count{")
        and "volume-init.dify.ai" in line
    )


def with_resources(
    pod: dict[str, Any], requests: dict[str, str], limits: dict[str, str]
) -> dict[str, Any]:
    pod["spec"]["containers"][0]["resources"] = {"requests": requests, "limits": limits}
    return pod


def test_a_cpu_limit_quota_admits_the_patched_pod(cluster: Cluster) -> None:
    """Guards quota admission after the webhook: a namespace whose ResourceQuota caps
    limits.cpu and requests.memory requires them of every container, the injected one
    too; the patched pod of an app that sets them is admitted (it was refused:
    "must specify limits.cpu for: volume-permissions")."""
    cluster.namespace("quota")
    cluster.plane.apply(
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "q", "namespace": "quota"},
            "spec": {"hard": {"limits.cpu": "4", "limits.memory": "4Gi", "requests.memory": "4Gi"}},
        }
    )
    deadline = time.monotonic() + 30
    while not cluster.plane.get("resourcequota", "-n", "quota", "q").get("status", {}).get("hard"):
        assert time.monotonic() < deadline, "the quota controller never filled status"
        time.sleep(0.2)
    pod = with_resources(
        bare_pod("limited", "quota", DIFY),
        {"cpu": "100m", "memory": "256Mi"},
        {"cpu": "1", "memory": "512Mi"},
    )
    done = cluster.plane.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(pod), check=False)
    assert done.returncode == 0, done.stderr
    stored = cluster.plane.get("pod", "-n", "quota", "limited")
    (init,) = stored["spec"]["initContainers"]
    assert {"cpu", "memory"} <= set(init["resources"]["limits"])
    assert stored["status"]["qosClass"] == "Burstable"


def test_a_guaranteed_pod_stays_guaranteed(cluster: Cluster) -> None:
    """Guards the QoS class: a pod whose every container has requests equal to limits
    for cpu and memory is Guaranteed, and stays so with the init container (it was
    demoted to Burstable, first to be evicted under pressure)."""
    cluster.namespace("qos")
    pod = with_resources(
        bare_pod("guaranteed", "qos", DIFY),
        {"cpu": "500m", "memory": "512Mi"},
        {"cpu": "500m", "memory": "512Mi"},
    )
    cluster.plane.apply(pod)
    stored = cluster.plane.get("pod", "-n", "qos", "guaranteed")
    assert stored["spec"]["initContainers"][0]["name"] == "volume-permissions"
    assert stored["status"]["qosClass"] == "Guaranteed"


def test_a_pod_level_apparmor_localhost_profile_is_admitted_with_the_init_containers_own(
    cluster: Cluster,
) -> None:
    """Guards the AppArmor answer against the real apiserver: a pod whose pod-level
    profile is Localhost (the apiserver syncs it to per-container annotations before
    admission) is stored with the init container under RuntimeDefault, the app
    containers still under the pod's profile, and the warning said."""
    cluster.namespace("apparmor")
    pod = bare_pod("localhost-profile", "apparmor", DIFY)
    pod["spec"]["securityContext"] = {
        "appArmorProfile": {"type": "Localhost", "localhostProfile": "dify-api"}
    }
    done = cluster.plane.kubectl("apply", "-f", "-", stdin=json.dumps(pod))
    assert "runs under RuntimeDefault instead" in done.stderr, done.stderr
    stored = cluster.plane.get("pod", "-n", "apparmor", "localhost-profile")
    init = stored["spec"]["initContainers"][0]
    assert init["name"] == "volume-permissions"
    assert init["securityContext"]["appArmorProfile"] == {"type": "RuntimeDefault"}
    assert stored["spec"]["securityContext"]["appArmorProfile"]["type"] == "Localhost"
    assert "appArmorProfile" not in (stored["spec"]["containers"][0].get("securityContext") or {})


def test_a_limit_range_admits_the_patched_pod(cluster: Cluster) -> None:
    """Guards LimitRanger's validation after the webhook: a LimitRange with a minimum,
    a maximum, a maxLimitRequestRatio and defaults judges the injected container too;
    the patched pod of an app within it is admitted (the policy's 10m cpu request was
    below the minimum: refused)."""
    cluster.namespace("limits")
    cluster.plane.apply(
        {
            "apiVersion": "v1",
            "kind": "LimitRange",
            "metadata": {"name": "lr", "namespace": "limits"},
            "spec": {
                "limits": [
                    {
                        "type": "Container",
                        "min": {"cpu": "100m", "memory": "128Mi"},
                        "max": {"cpu": "2", "memory": "2Gi"},
                        "maxLimitRequestRatio": {"cpu": "4"},
                        "default": {"cpu": "500m", "memory": "512Mi"},
                        "defaultRequest": {"cpu": "200m", "memory": "256Mi"},
                    }
                ]
            },
        }
    )
    for name, pod in (
        (
            "sized",
            with_resources(
                bare_pod("sized", "limits", DIFY),
                {"cpu": "200m", "memory": "256Mi"},
                {"cpu": "800m", "memory": "1Gi"},
            ),
        ),
        ("defaulted", bare_pod("defaulted", "limits", DIFY)),
    ):
        done = cluster.plane.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(pod), check=False)
        assert done.returncode == 0, (name, done.stderr)
        stored = cluster.plane.get("pod", "-n", "limits", name)
        (init,) = stored["spec"]["initContainers"]
        assert init["name"] == "volume-permissions", name
        assert init["resources"] == stored["spec"]["containers"][0]["resources"], name


RESTRICTED_BY_DEFAULT = {
    "apiVersion": "apiserver.config.k8s.io/v1",
    "kind": "AdmissionConfiguration",
    "plugins": [
        {
            "name": "PodSecurity",
            "configuration": {
                "apiVersion": "pod-security.admission.config.k8s.io/v1",
                "kind": "PodSecurityConfiguration",
                "defaults": {
                    "enforce": "restricted",
                    "enforce-version": "latest",
                    "audit": "restricted",
                    "audit-version": "latest",
                    "warn": "restricted",
                    "warn-version": "latest",
                },
                "exemptions": {
                    "usernames": [],
                    "runtimeClasses": [],
                    "namespaces": ["kube-system"],
                },
            },
        }
    ],
}


def restricted_pod(name: str, namespace: str) -> dict[str, Any]:
    """A Dify pod that meets Pod Security restricted (as non-root Dify does)."""
    pod = bare_pod(name, namespace, DIFY)
    pod["spec"]["securityContext"] = {"seccompProfile": {"type": "RuntimeDefault"}}
    pod["spec"]["containers"][0]["securityContext"] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    return pod


def test_a_cluster_enforcing_restricted_by_default_admits_the_pod(tmp_path: Path) -> None:
    """Guards `spec.podSecurity.clusterDefault`: on an apiserver whose PodSecurity
    AdmissionConfiguration enforces restricted on unlabelled namespaces (as RKE2 and
    Rancher's hardened profiles do), the default policy sends an unlabelled
    namespace's pod to /mutate and its root init container is refused; with
    `clusterDefault: restricted` the rendered selection sends it to /mutate/restricted
    and it is admitted, while a namespace labelled baseline still gets the init
    container."""
    with started(tmp_path, admission_config=RESTRICTED_BY_DEFAULT) as cluster:
        cluster.namespace("plain")
        refused = cluster.plane.kubectl(
            "apply", "-f", "-", stdin=yaml.safe_dump(restricted_pod("before", "plain")), check=False
        )
        assert refused.returncode != 0 and "violates PodSecurity" in refused.stderr
        text = default_policy_text().replace(
            "spec:\n", "spec:\n  podSecurity: {clusterDefault: restricted}\n", 1
        )
        cluster.register(policy=parse_policy(text, source="restricted.yaml"))
        cluster.plane.apply(restricted_pod("after", "plain"))
        stored = cluster.plane.get("pod", "-n", "plain", "after")
        assert "initContainers" not in stored["spec"]
        assert stored["spec"]["securityContext"]["fsGroup"] == 1001
        cluster.namespace("lenient", {"pod-security.kubernetes.io/enforce": "baseline"})
        cluster.plane.apply(bare_pod("lenient", "lenient", DIFY))
        stored = cluster.plane.get("pod", "-n", "lenient", "lenient")
        assert stored["spec"]["initContainers"][0]["name"] == "volume-permissions"


STATEFULSET = """\
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: dify-worker, namespace: sts}
spec:
  serviceName: dify-worker
  replicas: 1
  selector:
    matchLabels: {app.kubernetes.io/name: dify, component: worker}
  template:
    metadata:
      labels: {app.kubernetes.io/name: dify, component: worker}
    spec:
      containers:
        - name: worker
          image: langgenius/dify-api:1.13.3
          env: [{name: MODE, value: worker}]
          resources:
            requests: {cpu: 200m, memory: 512Mi}
            limits: {cpu: "1", memory: 1Gi}
          volumeMounts: [{name: storage, mountPath: /app/api/storage}]
  volumeClaimTemplates:
    - metadata: {name: storage}
      spec:
        accessModes: [ReadWriteOnce]
        resources: {requests: {storage: 1Gi}}
"""


def test_a_statefulset_and_a_bare_pod_are_stored_as_review_predicted(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Guards the dry run's promise for the other shapes: the pod the StatefulSet
    controller makes (with its claim's volume) and a bare pod from douban/charts hold
    what `review` predicted for the manifest."""
    cluster.namespace("sts")
    manifest = tmp_path / "sts.yaml"
    manifest.write_text(STATEFULSET)
    cluster.plane.kubectl("apply", "-f", str(manifest))
    (predicted,) = review_json(manifest)
    (pod,) = cluster.pods_of("sts", "component=worker")
    contains(pod["spec"], predicted["spec"]["template"]["spec"], "statefulset.spec")
    claim = next(v for v in pod["spec"]["volumes"] if v["name"] == "storage")
    assert claim["persistentVolumeClaim"]["claimName"] == "storage-dify-worker-0"
    assert pod["spec"]["initContainers"][0]["volumeMounts"][0]["name"] == "storage"
    bare = Path(__file__).parent / "testdata" / "pods" / "douban-api-nfs.yaml"
    cluster.namespace("ai")
    (expected,) = review_json(bare)
    created = cluster.plane.kubectl("create", "-f", str(bare), "-o", "json")
    stored = json.loads(created.stdout)
    contains(stored["spec"], expected["spec"], "pod.spec")
    assert (
        stored["metadata"]["annotations"][mutation.STATUS_ANNOTATION]
        == (expected["metadata"]["annotations"][mutation.STATUS_ANNOTATION])
    )


def test_an_opt_in_namespace_selector_sends_only_the_namespaces_that_ask(
    cluster: Cluster,
) -> None:
    """Guards `spec.namespaceSelector` as the apiserver applies it: with the opt-in
    selection registered, a pod in a namespace without the label never reaches the
    webhook; one in a labelled namespace is patched."""
    text = default_policy_text().replace(
        "spec:\n",
        "spec:\n  namespaceSelector:\n    matchLabels: {volume-init.dify.ai/inject: enabled}\n",
        1,
    )
    cluster.register(policy=parse_policy(text, source="opt-in.yaml"))
    try:
        cluster.namespace("asks", {"volume-init.dify.ai/inject": "enabled"})
        cluster.namespace("silent")
        before = cluster.admissions()
        cluster.plane.apply(bare_pod("quiet", "silent", DIFY))
        assert "initContainers" not in cluster.plane.get("pod", "-n", "silent", "quiet")["spec"]
        time.sleep(0.5)
        assert cluster.admissions() == before
        cluster.plane.apply(bare_pod("asked", "asks", DIFY))
        stored = cluster.plane.get("pod", "-n", "asks", "asked")
        assert stored["spec"]["initContainers"][0]["name"] == "volume-permissions"
    finally:
        cluster.register()


def served_certificate(cluster: Cluster) -> bytes:
    """The serving certificate the webhook presents now (DER)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", cluster.server.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=servers.SERVICE_DNS) as tls,
    ):
        found = tls.getpeercert(binary_form=True)
    assert found is not None
    return found


def test_renewal_and_ca_rotation_refuse_no_pod_creation(tmp_path: Path) -> None:
    """Guards day two end to end: with failurePolicy Fail (a refused call refuses the
    pod), Dify pods are created through the apiserver before and after each of
    `certs --renew` and the three `--rotate-ca` steps, each caBundle applied as the
    steps say: every creation succeeds and every pod is patched.

    NB: the apiserver keeps its connections to the webhook (the server's keep-alive
    is 65 s), so it verifies a new serving certificate against the caBundle only
    when it opens a new one, or when a new caBundle gives it a new client: this test
    holds that no step refuses a creation, not that a skipped caBundle step would."""
    with started(tmp_path, env={"VOLUME_INIT_RELOAD_INTERVAL": "0.2"}) as cluster:
        directory = tmp_path / "webhook-tls"
        cluster.namespace("rotation")
        cluster.register(failure_policy="Fail")
        failures: list[str] = []
        created: list[str] = []

        def burst(count: int = 4) -> None:
            for _ in range(count):
                name = f"p{len(created) + len(failures)}"
                done = cluster.plane.kubectl(
                    "create", "-f", "-", stdin=yaml.safe_dump(bare_pod(name, "rotation", DIFY)),
                    check=False,
                )  # fmt: skip
                (created if done.returncode == 0 else failures).append(name + done.stderr)

        def step(*args: str, bundle: str | None = None) -> None:
            done = subprocess.run(
                [sys.executable, "-m", "webhook", "certs", "--out-dir", str(directory), *args],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            burst()
            if bundle is not None:
                cluster.register(failure_policy="Fail", ca_bundle=(directory / bundle).read_bytes())
            wanted = x509.load_pem_x509_certificate((directory / "tls.crt").read_bytes())
            der = wanted.public_bytes(serialization.Encoding.DER)
            deadline = time.monotonic() + 30
            while served_certificate(cluster) != der:
                assert time.monotonic() < deadline, "the server never loaded the new certificate"
                time.sleep(0.1)
            burst()

        burst()
        step("--renew")
        step("--rotate-ca", "start", bundle="ca-bundle.crt")
        step("--rotate-ca", "switch")
        step("--rotate-ca", "finish", bundle="ca.crt")
        assert failures == [], failures[:3]
        assert len(created) == 4 + 4 * 8
        pods = cluster.plane.get("pods", "-n", "rotation")["items"]
        assert all(p["spec"]["initContainers"][0]["name"] == "volume-permissions" for p in pods)


@contextmanager
def sidecar_webhook(directory: Path) -> Iterator[tuple[int, bytes]]:
    """A second mutating webhook (as a sidecar injector would be): it adds a container
    `uploader` that mounts the pod's storage. Yields its port and CA."""
    import base64
    import http.server

    bundle = pki.build(dns_names=["sidecar"], ip_addresses=["127.0.0.1"])
    store.write_files(directory, bundle)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            pod = review["request"]["object"]
            mount = next(
                m for m in pod["spec"]["containers"][0]["volumeMounts"]
                if m["mountPath"] == "/app/api/storage"
            )  # fmt: skip
            names = [c["name"] for c in pod["spec"]["containers"]]
            patch = [] if "uploader" in names else [
                {
                    "op": "add",
                    "path": "/spec/containers/-",
                    "value": {
                        "name": "uploader",
                        "image": "langgenius/dify-api:1.10.1",
                        "volumeMounts": [{"name": mount["name"], "mountPath": "/app/api/storage"}],
                    },
                }
            ]  # fmt: skip
            response: dict[str, Any] = {"uid": review["request"]["uid"], "allowed": True}
            if patch:
                response["patchType"] = "JSONPatch"
                response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
            body = json.dumps({**review, "response": response}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(directory / "tls.crt"), str(directory / "tls.key"))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    import threading

    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], bundle.ca_cert
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_a_container_another_webhook_adds_later_gets_the_security_context(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Guards reinvocation: a second webhook, called after ours, adds a container that
    mounts the storage; with reinvocationPolicy IfNeeded on both, the apiserver calls
    ours again and the stored pod's new container runs as the storage's owner too
    (before, the reinvocation answered "already injected" and left it as root)."""
    import base64

    cluster.namespace("sidecars")
    with sidecar_webhook(tmp_path / "sidecar") as (port, ca):
        cluster.plane.apply(
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "MutatingWebhookConfiguration",
                "metadata": {"name": "zz-sidecar-injector"},
                "webhooks": [
                    {
                        "name": "sidecar.example.com",
                        "admissionReviewVersions": ["v1"],
                        "clientConfig": {
                            "url": f"https://127.0.0.1:{port}/",
                            "caBundle": base64.b64encode(ca).decode(),
                        },
                        "rules": [
                            {
                                "operations": ["CREATE"],
                                "apiGroups": [""],
                                "apiVersions": ["v1"],
                                "resources": ["pods"],
                            }
                        ],
                        "objectSelector": {"matchLabels": {"sidecar": "yes"}},
                        "failurePolicy": "Fail",
                        "sideEffects": "None",
                        "reinvocationPolicy": "IfNeeded",
                    }
                ],
            }
        )
        time.sleep(1.5)  # as in Cluster.register
        try:
            cluster.plane.apply(bare_pod("with-sidecar", "sidecars", {**DIFY, "sidecar": "yes"}))
        finally:
            cluster.plane.kubectl("delete", "mutatingwebhookconfiguration", "zz-sidecar-injector")
    stored = cluster.plane.get("pod", "-n", "sidecars", "with-sidecar")
    assert [c["name"] for c in stored["spec"]["containers"]] == ["api", "uploader"]
    assert stored["spec"]["initContainers"][0]["name"] == "volume-permissions"
    for container in stored["spec"]["containers"]:
        context = container["securityContext"]
        assert (context["runAsUser"], context["runAsGroup"], context["runAsNonRoot"]) == (
            1001,
            1001,
            True,
        ), container["name"]


CHART = Path(__file__).resolve().parent.parent / "deploy" / "helm" / "dify-volume-init"
DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
NOT_AFTER = "volume-init.dify.ai/not-after"


def test_helm_install_upgrade_renewal_and_uninstall(tmp_path: Path) -> None:
    """Guards the chart against the real API with Helm's own SDK: every object is
    accepted on install; an upgrade keeps the generated certificate (read back with
    `lookup`, which no offline render runs); an upgrade once the certificate is within
    30 days of its end re-issues it from the kept CA, so the caBundle is unchanged and
    still verifies it; uninstall leaves nothing of the release."""
    import helm_python as helm

    with started(tmp_path) as cluster:
        plane = cluster.plane
        plane.kubectl("delete", "mutatingwebhookconfiguration", "dify-volume-init")
        config = helm.Config(kubeconfig_path=str(plane.kubeconfig), namespace="dify-volume-init")
        try:
            config.install(str(CHART), "dify-volume-init", create_namespace=True)

            def secret() -> dict[str, Any]:
                found: dict[str, Any] = plane.get(
                    "secret",
                    "-n",
                    "dify-volume-init",
                    "dify-volume-init-tls",
                    "--show-managed-fields",
                )
                return found

            def bundles() -> set[str]:
                configuration = plane.get("mutatingwebhookconfiguration", "dify-volume-init")
                return {e["clientConfig"]["caBundle"] for e in configuration["webhooks"]}

            first = secret()
            assert bundles() == {first["data"]["ca.crt"]}
            assert plane.get("secret", "-n", "dify-volume-init", "dify-volume-init-ca")["data"][
                "ca.key"
            ]
            config.upgrade(str(CHART), "dify-volume-init", reuse_values=True)
            kept = secret()
            assert kept["data"] == first["data"], "an upgrade must keep the certificate"
            soon = (dt.datetime.now(dt.UTC) + dt.timedelta(days=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
            # NB: time passing, as Helm's own field manager would have written it
            # (Helm 4 applies server-side: another manager's annotation would conflict).
            manager = next(
                m["manager"] for m in kept["metadata"]["managedFields"] if m["operation"] == "Apply"
            )
            stamped = {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": kept["type"],
                "metadata": {
                    "name": "dify-volume-init-tls",
                    "namespace": "dify-volume-init",
                    "labels": kept["metadata"]["labels"],
                    "annotations": {**kept["metadata"]["annotations"], NOT_AFTER: soon},
                },
                "data": kept["data"],
            }
            plane.kubectl(
                "apply", "--server-side", "--force-conflicts", f"--field-manager={manager}",
                "-f", "-", stdin=yaml.safe_dump(stamped),
            )  # fmt: skip
            config.upgrade(str(CHART), "dify-volume-init", reuse_values=True)
            renewed = secret()
            assert renewed["data"]["tls.crt"] != first["data"]["tls.crt"]
            assert renewed["data"]["ca.crt"] == first["data"]["ca.crt"]
            assert bundles() == {first["data"]["ca.crt"]}
            ca = x509.load_pem_x509_certificate(base64.b64decode(first["data"]["ca.crt"]))
            leaf = x509.load_pem_x509_certificate(base64.b64decode(renewed["data"]["tls.crt"]))
            leaf.verify_directly_issued_by(ca)
            assert renewed["metadata"]["annotations"][NOT_AFTER] > soon
        finally:
            config.uninstall("dify-volume-init", ignore_not_found=True)
            config.close()
        left = plane.kubectl(
            "get", "all,secret,configmap,mutatingwebhookconfiguration,poddisruptionbudget",
            "-A", "-l", "app.kubernetes.io/instance=dify-volume-init", "-o", "name",
        ).stdout  # fmt: skip
        assert left.strip() == "", left


def test_kustomize_and_manifests_are_accepted_by_the_real_api(tmp_path: Path) -> None:
    """Guards what users apply: `kubectl apply -k deploy/` and `manifests | kubectl apply`
    go through the real API's server-side validation in strict mode (an unknown or
    misplaced field is an error, not a warning)."""
    with started(tmp_path) as cluster:
        plane = cluster.plane
        plane.kubectl("delete", "mutatingwebhookconfiguration", "dify-volume-init")
        plane.kubectl("apply", "--server-side", "--validate=strict", "-k", str(DEPLOY))
        assert plane.get("deployment", "-n", "dify-volume-init", "dify-volume-init")
        plane.kubectl("delete", "-k", str(DEPLOY), "--wait=false")
        rendered = subprocess.run(
            [sys.executable, "-m", "webhook", "manifests", "-n", "other-ns"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        plane.kubectl("apply", "--server-side", "--validate=strict", "-f", "-", stdin=rendered)
        assert plane.get("service", "-n", "other-ns", "dify-volume-init")
