"""`audit`: live pods the policy would have patched, found in `kubectl get pods -A -o json`.

The input is built the way kubectl prints it: a `List` of Pods with names,
uids, `ownerReferences`, `managedFields`, `nodeName` and `status`, made from
the golden pods (some patched by the engine itself, as the cluster would hold
them).
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import yaml

from tests import helpers
from webhook import cli
from webhook.engine import mutation
from webhook.engine.policy import default_policy


def live(
    pod_file: str,
    name: str,
    *,
    owner: tuple[str, str] | None = None,
    phase: str = "Running",
    patched: bool = False,
    restricted: bool = False,
    namespace: str | None = None,
) -> dict[str, Any]:
    """A golden pod as the cluster holds it once created (and patched, when asked)."""
    pod = copy.deepcopy(helpers.load_pod(helpers.PODS / pod_file))
    ns = namespace or helpers.namespace_of(pod)
    if patched:
        decision = mutation.mutate(pod, default_policy(), namespace=ns, restricted=restricted)
        pod = jsonpatch.apply_patch(pod, decision.patch)
    metadata = pod.setdefault("metadata", {})
    metadata.update(name=name, namespace=ns, uid=f"uid-{name}")
    metadata["managedFields"] = [{"manager": "kube-controller-manager", "operation": "Update"}]
    if owner is not None:
        kind, owner_name = owner
        metadata["ownerReferences"] = [
            {"apiVersion": "apps/v1", "kind": kind, "name": owner_name, "controller": True}
        ]
        if kind == "ReplicaSet":
            metadata.setdefault("labels", {})["pod-template-hash"] = owner_name.rsplit("-", 1)[1]
    pod["spec"]["nodeName"] = "node-1"
    pod["status"] = {"phase": phase, "podIP": "10.0.0.7"}
    return pod


def cluster() -> dict[str, Any]:
    items = [
        live(
            "helm-api.yaml", "dify-api-7d9f8c6b5-x2k8p", owner=("ReplicaSet", "dify-api-7d9f8c6b5")
        ),
        live(
            "helm-api.yaml", "dify-api-7d9f8c6b5-q9w3e", owner=("ReplicaSet", "dify-api-7d9f8c6b5")
        ),
        live(
            "helm-beat.yaml",
            "dify-beat-5c4b-abcde",
            owner=("ReplicaSet", "dify-beat-5c4b"),
            patched=True,
        ),
        # patched in a Pod Security restricted namespace: the annotation, no init container
        live(
            "helm-worker-with-init.yaml",
            "dify-worker-6d-abcde",
            owner=("ReplicaSet", "dify-worker-6d"),
            patched=True,
            restricted=True,
        ),
        live("opt-out.yaml", "dify-api-opted-out", owner=("ReplicaSet", "dify-x-6f7d")),
        live(
            "helm-api.yaml", "dify-migrate-done", owner=("Job", "dify-migrate"), phase="Succeeded"
        ),
        live("helm-api.yaml", "dify-migrate-run", owner=("Job", "dify-migrate-2")),
        live("douban-worker-nfs.yaml", "dify-worker-0", owner=("StatefulSet", "dify-worker")),
        live("helm-web.yaml", "dify-web-7f-abcde", owner=("ReplicaSet", "dify-web-7f")),
        live("plain-api-hostpath.yaml", "dify-api"),
        live("plain-api-hostpath-var.yaml", "dify-api-var", owner=("ReplicaSet", "legacy-5d")),
        live("helm-api.yaml", "in-own-ns", namespace="dify-volume-init"),
    ]
    return {"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}}


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "webhook", "audit", *args],
        capture_output=True,
        text=True,
        input=stdin,
        check=False,
    )


def test_unpatched_pods_are_listed_with_one_command_per_workload(tmp_path: Path) -> None:
    """Guards audit's findings and its fixes: owners resolved (ReplicaSet ->
    Deployment by the template hash, StatefulSet, Job, bare pod), one command per
    workload; patched (also under Pod Security restricted, with no init container),
    opted-out, finished, unmatched and own-namespace pods left out."""
    listing = tmp_path / "pods.json"
    listing.write_text(json.dumps(cluster()))
    result = run("-f", str(listing))
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    listed = [line.split(" ")[0] for line in lines[: lines.index("")]]
    assert listed == [
        "dify/dify-api-7d9f8c6b5-x2k8p",
        "dify/dify-api-7d9f8c6b5-q9w3e",
        "dify/dify-migrate-run",
        "ai/dify-worker-0",
        "default/dify-api",
        "default/dify-api-var",
    ]
    assert "dify/dify-api-7d9f8c6b5-x2k8p (Deployment/dify-api): unpatched: rule dify-storage" in (
        result.stdout
    )
    assert "default/dify-api-var (Deployment/legacy): would be refused: volume storage" in (
        result.stdout
    )
    fixes = lines[lines.index("# to fix, replace them with patched pods:") + 1 :]
    assert fixes == [
        "kubectl -n dify rollout restart deployment/dify-api",
        "kubectl -n dify delete pod dify-migrate-run  # Job dify-migrate-2 re-creates it",
        "kubectl -n ai rollout restart statefulset/dify-worker",
        "# re-create the bare pod default/dify-api from its manifest",
        "# fix the manifest of Deployment/legacy: a restart would be refused",
    ]


def test_yaml_and_stdin_give_the_same_answer(tmp_path: Path) -> None:
    """Guards audit's inputs: `-o yaml` and standard input read like `-o json`."""
    listing = tmp_path / "pods.json"
    listing.write_text(json.dumps(cluster()))
    as_json = run("-f", str(listing))
    as_yaml = run("-f", "-", stdin=yaml.safe_dump(cluster()))
    assert as_yaml.returncode == 1, as_yaml.stderr
    assert as_yaml.stdout == as_json.stdout


def test_nothing_to_fix_is_exit_0(tmp_path: Path) -> None:
    """Guards exit 0 when every matching pod is patched."""
    listing = tmp_path / "pods.json"
    patched = live("helm-api.yaml", "a", owner=("ReplicaSet", "dify-api-7d9f"), patched=True)
    listing.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [patched]}))
    result = run("-f", str(listing))
    assert (result.returncode, result.stderr) == (0, f"note: {cli.ASSUMED_SELECTION}\n")
    assert result.stdout.startswith("no unpatched pods")


def test_bad_input_is_exit_2_with_one_line(tmp_path: Path) -> None:
    """Guards audit's bad input: one line naming the file, exit 2, no traceback."""
    broken = tmp_path / "broken.json"
    broken.write_text('{"kind": "List", "items": [')
    result = run("-f", str(broken))
    assert result.returncode == 2
    assert result.stderr.startswith(f"dify-volume-init: {broken}:")
    assert result.stderr.count("\n") == 1
    strings = tmp_path / "strings.json"
    strings.write_text('["not", "a", "pod"]')
    result = run("-f", str(strings))
    assert result.returncode == 2
    assert "expected a mapping" in result.stderr and "Traceback" not in result.stderr
    missing = run("-f", str(tmp_path / "absent.json"))
    assert missing.returncode == 2
    assert "no such file or directory" in missing.stderr


def test_odd_shapes_of_a_live_pod_are_one_line_or_read_as_absent(tmp_path: Path) -> None:
    """Guards audit against pod shapes the engine's checks do not cover: a metadata that
    is not a mapping is one line naming the field (it was an AttributeError traceback),
    and a `status` or `ownerReferences` of the wrong shape is read as absent (they were
    tracebacks too); any other crash of that kind is the last resort's one line."""
    listing = tmp_path / "pods.json"
    odd = live("helm-api.yaml", "odd", owner=("ReplicaSet", "dify-api-7d9f"))
    odd["metadata"] = "not a mapping"
    listing.write_text(json.dumps({"kind": "List", "items": [odd]}))
    result = run("-f", str(listing))
    assert result.returncode == 2
    assert (
        result.stderr
        == f"dify-volume-init: {listing}: metadata: expected a mapping, got a string\n"
    )
    for field, value in (("status", "Running"), ("status", [1]), ("ownerReferences", {"a": 1})):
        pod = live("helm-api.yaml", "odd", owner=("ReplicaSet", "dify-api-7d9f"))
        (pod if field == "status" else pod["metadata"])[field] = value
        listing.write_text(json.dumps({"kind": "List", "items": [pod]}))
        result = run("-f", str(listing))
        assert result.returncode == 1, (field, result.stderr)
        assert result.stderr == f"note: {cli.ASSUMED_SELECTION}\n", field
        assert result.stdout.startswith("dify/odd (")


@pytest.mark.parametrize(
    ("stdin", "said"),
    [
        ("", "<stdin>: no pods read: the input is empty (did `kubectl get pods -A -o json` fail?)"),
        (
            json.dumps({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "rows": []}),
            "<stdin>: no pods read: the input holds Table, not pods",
        ),
        (
            json.dumps({"kind": "List", "items": [{"kind": "Deployment"}, {"kind": "Service"}]}),
            "<stdin>: no pods read: the input holds Deployment, Service, not pods",
        ),
        (json.dumps({"kind": "PodList", "items": {"a": 1}}), "a PodList whose items is a dict"),
        (json.dumps({"kind": "List"}), "a List whose items is absent, not a list of pods"),
    ],
)
def test_input_with_no_pods_is_exit_2_naming_what_was_read(stdin: str, said: str) -> None:
    """Guards audit against reading nothing as "nothing to fix": empty input (kubectl
    failed), a Table, a list of other kinds or `items` of the wrong shape is exit 2 with
    one line naming what was read (each was exit 0 "no unpatched pods")."""
    result = run("-f", "-", stdin=stdin)
    assert result.returncode == 2, result.stdout
    assert result.stderr.count("\n") == 1 and said in result.stderr, result.stderr


def test_an_empty_pod_list_is_a_cluster_with_no_pods() -> None:
    """Guards the other side: `items: []` is a real answer, exit 0."""
    result = run("-f", "-", stdin=json.dumps({"kind": "List", "items": []}))
    assert result.returncode == 0, result.stderr


def namespaces(**labels: dict[str, str]) -> dict[str, Any]:
    return {
        "kind": "List",
        "items": [
            {"kind": "Namespace", "metadata": {"name": name, "labels": value}}
            for name, value in labels.items()
        ],
    }


def test_namespaces_leave_out_pods_the_apiserver_never_sends(tmp_path: Path) -> None:
    """Guards --namespaces: a pod in a namespace labelled inject=disabled, outside the
    policy's opt-in selector, or excluded is not listed; one in a namespace enforcing
    restricted is judged as the restricted entry would (securityContext only, no init
    container), and the assumption note is gone."""
    listing = tmp_path / "pods.json"
    pods = [
        live("helm-api.yaml", "sent", owner=("StatefulSet", "a"), namespace="plain"),
        live("helm-api.yaml", "disabled", owner=("StatefulSet", "b"), namespace="off"),
        live("helm-api.yaml", "strict", owner=("StatefulSet", "c"), namespace="strict"),
        live("helm-api.yaml", "unknown-ns", owner=("StatefulSet", "d"), namespace="new"),
        live("helm-api.yaml", "system", owner=("StatefulSet", "e"), namespace="kube-system"),
    ]
    listing.write_text(json.dumps({"kind": "List", "items": pods}))
    ns_file = tmp_path / "ns.json"
    ns_file.write_text(
        json.dumps(
            namespaces(
                plain={},
                off={"volume-init.dify.ai/inject": "disabled"},
                strict={"pod-security.kubernetes.io/enforce": "restricted"},
            )
        )
    )
    result = run("-f", str(listing), "--namespaces", str(ns_file))
    assert result.returncode == 1 and result.stderr == "", result.stderr
    listed = [line.split(" ")[0] for line in result.stdout.splitlines() if " (" in line]
    assert listed == ["plain/sent", "strict/strict", "new/unknown-ns"]
    strict = next(line for line in result.stdout.splitlines() if line.startswith("strict/"))
    assert strict.endswith("(securityContext only (Pod Security restricted))"), strict
    opt_in = tmp_path / "opt-in.yaml"
    opt_in.write_text(
        policy_text().replace(
            "spec:\n", "spec:\n  namespaceSelector:\n    matchLabels: {dify: 'yes'}\n", 1
        )
    )
    ns_file.write_text(json.dumps(namespaces(plain={"dify": "yes"}, strict={})))
    result = run("-f", str(listing), "--namespaces", str(ns_file), "--policy", str(opt_in))
    listed = [line.split(" ")[0] for line in result.stdout.splitlines() if " (" in line]
    assert listed == ["plain/sent"], result.stdout + result.stderr


def policy_text() -> str:
    from webhook.engine import policy

    return policy.default_policy_text()


def test_a_forged_status_annotation_or_a_terminating_pod(tmp_path: Path) -> None:
    """Guards what counts as patched: a status annotation that is not what the webhook
    writes (not JSON, other keys, an init container the pod lacks) does not; a pod being
    deleted is left out (its replacement is what counts)."""
    listing = tmp_path / "pods.json"
    forged = []
    for index, value in enumerate(
        [
            "yes",
            '{"rule": "dify-storage"}',
            json.dumps(
                {"rule": "r", "volumes": ["app-data"], "owner": "1001:1001", "initContainer": "x"}
            ),
        ]
    ):
        pod = live("helm-api.yaml", f"forged-{index}", owner=("StatefulSet", "a"))
        pod["metadata"].setdefault("annotations", {})[mutation.STATUS_ANNOTATION] = value
        forged.append(pod)
    going = live("helm-api.yaml", "going", owner=("StatefulSet", "a"))
    going["metadata"]["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    listing.write_text(json.dumps({"kind": "List", "items": [*forged, going]}))
    result = run("-f", str(listing))
    listed = [line.split(" ")[0] for line in result.stdout.splitlines() if " (" in line]
    assert listed == ["dify/forged-0", "dify/forged-1", "dify/forged-2"], result.stdout


def test_a_namespaces_file_with_no_namespaces_is_exit_2(tmp_path: Path) -> None:
    """Guards --namespaces against reading nothing as "no namespace selected": a file
    with no Namespace (kubectl failed, or the pods file given twice) is one line."""
    listing = tmp_path / "pods.json"
    listing.write_text(json.dumps(cluster()))
    result = run("-f", str(listing), "--namespaces", str(listing))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == f"dify-volume-init: {listing}: no namespaces read: it holds none" \
        " (kubectl get namespaces -o json)\n"  # fmt: skip


def test_a_patched_pod_held_back_by_its_init_container_is_said(tmp_path: Path) -> None:
    """Guards what program mode adds: an init container whose image the namespace
    cannot pull (ImagePullBackOff) and one whose fix fails (its termination message)
    are findings, with the command that shows more; a healthy patched pod is not."""
    pulling = live("helm-api.yaml", "dify-api-pull", owner=("ReplicaSet", "dify-api-7d9f8c6b5"),
                   patched=True)  # fmt: skip
    image = pulling["spec"]["initContainers"][0]["image"]
    pulling["status"]["initContainerStatuses"] = [
        {"name": "volume-permissions", "image": image,
         "state": {"waiting": {"reason": "ImagePullBackOff"}}},
    ]  # fmt: skip
    failing = live("helm-api.yaml", "dify-api-fail", owner=("ReplicaSet", "dify-api-7d9f8c6b5"),
                   patched=True)  # fmt: skip
    failing["status"]["initContainerStatuses"] = [
        {"name": "volume-permissions", "image": image,
         "state": {"waiting": {"reason": "CrashLoopBackOff"}},
         "lastState": {"terminated": {"exitCode": 1, "message": "fix-ownership: /app/api/storage:"
                                      " cannot change the owner"}}},
    ]  # fmt: skip
    healthy = live("helm-api.yaml", "dify-api-ok", owner=("ReplicaSet", "dify-api-7d9f8c6b5"),
                   patched=True)  # fmt: skip
    healthy["status"]["initContainerStatuses"] = [
        {"name": "volume-permissions", "image": image,
         "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
    ]  # fmt: skip
    path = tmp_path / "pods.json"
    path.write_text(json.dumps({"kind": "List", "items": [pulling, failing, healthy]}))
    result = run("-f", str(path))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0] == (
        "dify/dify-api-pull (Deployment/dify-api): init container volume-permissions cannot"
        f" pull {image} (ImagePullBackOff): push the webhook's image where this namespace's"
        " nodes can pull, name pull secrets in the policy (initContainer.imagePullSecrets),"
        " or use initContainer.mode: script"
    )
    assert lines[1] == (
        "dify/dify-api-fail (Deployment/dify-api): init container volume-permissions fails"
        " (exit 1): fix-ownership: /app/api/storage: cannot change the owner"
    )
    assert "dify-api-ok" not in result.stdout
    assert "# kubectl -n dify describe pod dify-api-pull" in lines
    assert "# kubectl -n dify logs dify-api-fail -c volume-permissions" in lines
