"""Shared helpers for the tests: test data, golden files, AdmissionReviews."""

from __future__ import annotations

import base64
import copy
import difflib
import json
import os
import re
import uuid
from pathlib import Path
from typing import Any

import yaml

from webhook.engine import initscript, mutation
from webhook.engine.policy import Policy, default_policy_text, parse_policy

TESTDATA = Path(__file__).parent / "testdata"
PODS = TESTDATA / "pods"
GOLDEN_SUFFIX = ".golden.yaml"
REFRESH = os.environ.get("REFRESH_GOLDEN") == "1"


def pod_inputs() -> list[Path]:
    """Every pod of the golden set, discovered by name."""
    return sorted(p for p in PODS.glob("*.yaml") if not p.name.endswith(GOLDEN_SUFFIX))


# Golden pods decided under an edit of the default policy: (old text, new text).
POLICY_EDITS: dict[str, tuple[str, str]] = {
    "digest-only-leave-alone": ("untaggedDigest: current", "untaggedDigest: leaveAlone"),
    "script-mode": (
        "        name: volume-permissions\n",
        "        name: volume-permissions\n        mode: script\n",
    ),
    "pull-secrets": (
        "        name: volume-permissions\n",
        "        name: volume-permissions\n        programImage: registry.example/dvi:0.1.0\n"
        "        imagePullSecrets: [regcred, mirror-cred]\n",
    ),
    "app-user-not-followed": (
        "      warnImageNotListed: false",
        "      warnImageNotListed: false\n      followAppUser: false",
    ),
}


def policy_for(pod_file: Path, default: Policy) -> Policy:
    """The policy a golden pod is decided under: the default, or its edit of it."""
    edit = POLICY_EDITS.get(pod_file.stem)
    if edit is None:
        return default
    text = default_policy_text()
    assert edit[0] in text, edit
    return parse_policy(text.replace(*edit), source=pod_file.name)


def golden_path(pod_file: Path) -> Path:
    return pod_file.with_name(pod_file.name[: -len(".yaml")] + GOLDEN_SUFFIX)


def load_pod(path: Path) -> dict[str, Any]:
    pod = yaml.safe_load(path.read_text())
    assert isinstance(pod, dict), path
    return pod


def namespace_of(pod: dict[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("namespace") or "default")


SCRIPT_GOLDEN = TESTDATA / "volume-init.golden.sh"
_OWNER_IN_SCRIPT = re.compile(r"^export VI_USER=(\d+) VI_GROUP=(\d+)$", re.MULTILINE)


def without_script(value: Any) -> Any:
    """`value` with the injected script's text replaced by a placeholder naming its owner.

    The script is goldened once (SCRIPT_GOLDEN); the placeholder stands for it
    only after checking that the text is exactly the script for that owner.
    """
    if isinstance(value, list):
        return [without_script(item) for item in value]
    if not isinstance(value, dict):
        return value
    out = {key: without_script(item) for key, item in value.items()}
    command = value.get("command")
    if initscript.runs_script(command):
        match = _OWNER_IN_SCRIPT.search(command[2])
        assert match, "the injected script names no owner"
        user, group = int(match.group(1)), int(match.group(2))
        assert command[2] == initscript.script_text(user=user, group=group)
        out["command"] = [*command[:2], f"<volume-init.sh for {user}:{group}>", *command[3:]]
    return out


def decision_record(decision: mutation.Decision) -> dict[str, Any]:
    """What a golden file records of one decision (the script as a placeholder)."""
    return {
        "outcome": decision.outcome,
        "reason": decision.reason,
        "rule": decision.rule,
        "message": decision.message,
        "warnings": list(decision.warnings),
        "patch": without_script(decision.patch),
    }


def assert_golden(golden: Path, text: str) -> None:
    """`text` is what `golden` holds, or a unified diff says where it is not.

    With REFRESH_GOLDEN=1 the golden is rewritten instead; a missing one is
    written and fails, to be reviewed.
    """
    if REFRESH or not golden.exists():
        golden.write_text(text)
        assert REFRESH, f"{golden.name} was missing and has been written; review and commit it"
        return
    expected = golden.read_text()
    if expected != text:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                text.splitlines(keepends=True),
                f"{golden.name} (golden)",
                f"{golden.name} (now)",
            )
        )
        raise AssertionError(
            f"{golden.name} is stale (REFRESH_GOLDEN=1 make test rewrites it):\n{diff}"
        )


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


def first_rule_policy_text() -> str:
    """The built-in policy with its first rule only (`dify-storage`): for tests that
    edit one line of it by text and name the line."""
    text = default_policy_text()
    cut = text.index("    - name: dify-generic-labels")
    return text[:cut]
