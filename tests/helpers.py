"""Shared helpers for the tests: test data, golden files, AdmissionReviews."""

from __future__ import annotations

import base64
import copy
import json
import os
import uuid
from pathlib import Path
from typing import Any

import yaml

from webhook.engine import mutation
from webhook.engine.policy import Policy

TESTDATA = Path(__file__).parent / "testdata"
PODS = TESTDATA / "pods"
GOLDEN_SUFFIX = ".golden.yaml"
REFRESH = os.environ.get("REFRESH_GOLDEN") == "1"


def pod_inputs() -> list[Path]:
    """Every pod of the golden set, discovered by name."""
    return sorted(p for p in PODS.glob("*.yaml") if not p.name.endswith(GOLDEN_SUFFIX))


def golden_path(pod_file: Path) -> Path:
    return pod_file.with_name(pod_file.name[: -len(".yaml")] + GOLDEN_SUFFIX)


def load_pod(path: Path) -> dict[str, Any]:
    pod = yaml.safe_load(path.read_text())
    assert isinstance(pod, dict), path
    return pod


def namespace_of(pod: dict[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("namespace") or "default")


def decision_record(decision: mutation.Decision) -> dict[str, Any]:
    """What a golden file records of one decision."""
    return {
        "outcome": decision.outcome,
        "reason": decision.reason,
        "rule": decision.rule,
        "message": decision.message,
        "warnings": list(decision.warnings),
        "patch": decision.patch,
    }


def golden_record(pod: dict[str, Any], policy: Policy) -> dict[str, Any]:
    """Both modes of one pod: the default webhook and Pod Security restricted."""
    namespace = namespace_of(pod)
    return {
        mode: decision_record(
            mutation.mutate(pod, policy, namespace=namespace, restricted=mode == "restricted")
        )
        for mode in ("default", "restricted")
    }


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump_yaml(value: Any) -> str:
    return yaml.dump(value, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)


def review(
    pod: Any,
    *,
    namespace: str = "dify",
    operation: str = "CREATE",
    api_version: str = "admission.k8s.io/v1",
    uid: str | None = None,
    dry_run: bool = False,
    kind: str = "Pod",
) -> dict[str, Any]:
    """An AdmissionReview as kube-apiserver sends it for a pod."""
    resource = "pods" if kind == "Pod" else kind.lower() + "s"
    return {
        "apiVersion": api_version,
        "kind": "AdmissionReview",
        "request": {
            "uid": uid or str(uuid.uuid4()),
            "kind": {"group": "", "version": "v1", "kind": kind},
            "resource": {"group": "", "version": "v1", "resource": resource},
            "requestKind": {"group": "", "version": "v1", "kind": kind},
            "requestResource": {"group": "", "version": "v1", "resource": resource},
            "name": (pod.get("metadata") or {}).get("name", "") if isinstance(pod, dict) else "",
            "namespace": namespace,
            "operation": operation,
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod,
            "oldObject": None,
            "dryRun": dry_run,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }


def decoded_patch(response: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The JSON Patch of an AdmissionReview response, or None when there is none."""
    patch = response["response"].get("patch")
    if patch is None:
        assert "patchType" not in response["response"]
        return None
    assert response["response"]["patchType"] == "JSONPatch"
    result: list[dict[str, Any]] = json.loads(base64.b64decode(patch))
    return result


def with_managed_fields(pod: dict[str, Any], *, entries: int, fields: int) -> dict[str, Any]:
    """A copy of `pod` with `entries` managedFields entries of `fields` fields each,
    the shape field managers leave on a busy cluster's pods."""
    result = copy.deepcopy(pod)
    result["metadata"]["managedFields"] = [
        {
            "manager": "kube-controller-manager",
            "operation": "Update",
            "apiVersion": "v1",
            "time": "2026-11-28T00:00:00Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:spec": {f"f:field-{i}": {".": {}, "f:value": {}} for i in range(fields)}
            },
        }
        for _ in range(entries)
    ]
    return result
