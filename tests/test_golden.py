"""Golden pods -> decisions and patches, found by name (tests/testdata/pods/X.yaml).

Each input has a `X.golden.yaml` recording both modes (default and Pod
Security restricted). `REFRESH_GOLDEN=1 make test` rewrites them; a golden
without its input, or one that differs, fails. Every patch is applied by the
`jsonpatch` library, an implementation independent of the webhook's own
patch builder, and the patched pod must then yield no patch.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import yaml
from fastapi.testclient import TestClient

from tests import helpers, podvalidity
from webhook.engine import initscript, mutation
from webhook.engine.policy import Policy

INPUTS = helpers.pod_inputs()
IDS = [p.stem for p in INPUTS]


@pytest.mark.parametrize("pod_file", INPUTS, ids=IDS)
def test_golden(pod_file: Path, policy: Policy) -> None:
    """Guards every decision: outcome, reason, message, warnings and patch, both modes."""
    pod = helpers.load_pod(pod_file)
    record = helpers.golden_record(pod, helpers.policy_for(pod_file, policy))
    helpers.assert_golden(helpers.golden_path(pod_file), helpers.dump_yaml(record))


def test_golden_script() -> None:
    """Guards the injected script, once: the pod goldens name it by its owner."""
    text = initscript.script_text(user=1001, group=1001)
    helpers.assert_golden(helpers.SCRIPT_GOLDEN, text)


def test_no_stale_goldens() -> None:
    """Guards the golden set: no golden without its input pod."""
    orphans = [
        g.name
        for g in helpers.PODS.glob("*" + helpers.GOLDEN_SUFFIX)
        if not g.with_name(g.name[: -len(helpers.GOLDEN_SUFFIX)] + ".yaml").exists()
    ]
    assert not orphans, f"golden files without an input pod: {orphans}"


@pytest.mark.parametrize("restricted", [False, True], ids=["default", "restricted"])
@pytest.mark.parametrize("pod_file", INPUTS, ids=IDS)
def test_patch_applies_independently_and_is_idempotent(
    pod_file: Path, restricted: bool, policy: Policy
) -> None:
    """Guards every golden patch: an independent applier, a valid pod, no second patch."""
    pod = helpers.load_pod(pod_file)
    pristine = copy.deepcopy(pod)
    namespace = helpers.namespace_of(pod)
    decision = mutation.mutate(pod, policy, namespace=namespace, restricted=restricted)
    assert pod == pristine, "the mutation changed its input"
    patched = jsonpatch.apply_patch(pod, decision.patch)
    assert patched == decision.pod
    assert all(op["op"] == "add" for op in decision.patch)
    # Never make a pod worse: a pod kube-apiserver accepts stays one it accepts.
    assert podvalidity.problems(pod) == [], "every golden input is a valid pod"
    assert podvalidity.problems(patched) == []
    again = mutation.mutate(patched, policy, namespace=namespace, restricted=restricted)
    assert again.patch == [], f"second pass patched again: {again.patch}"
    if decision.outcome == "injected":
        assert again.reason == "already-injected"


@pytest.mark.parametrize("pod_file", INPUTS, ids=IDS)
def test_webhook_sends_the_golden_patch(pod_file: Path, client: TestClient, policy: Policy) -> None:
    """Guards one core: /mutate sends the engine's patch for every golden pod."""
    pod = helpers.load_pod(pod_file)
    namespace = helpers.namespace_of(pod)
    for path, restricted in (("/mutate", False), ("/mutate/restricted", True)):
        body = helpers.review(pod, namespace=namespace)
        response = client.post(path, json=body)
        assert response.status_code == 200
        answer: dict[str, Any] = response.json()
        decision = mutation.mutate(pod, policy, namespace=namespace, restricted=restricted)
        assert answer["response"]["uid"] == body["request"]["uid"]
        assert answer["response"]["allowed"] is (decision.outcome != "denied")
        expected = decision.patch if decision.outcome == "injected" else None
        assert helpers.decoded_patch(answer) == expected
        assert answer["response"]["auditAnnotations"]["outcome"] == decision.outcome


def test_golden_set_covers_every_reason() -> None:
    """Guards the golden set itself: every reason the engine gives has a golden pod."""
    reasons = set()
    for pod_file in INPUTS:
        for record in yaml.safe_load(helpers.golden_path(pod_file).read_text()).values():
            reasons.add(record["reason"])
    assert reasons == set(mutation.REASONS)


def test_readme_and_design_list_every_reason() -> None:
    """Guards the documents: every reason code is explained to users and maintainers."""
    root = Path(__file__).parent.parent
    readme = (root / "README.md").read_text()
    design = (root / "docs" / "design.md").read_text()
    missing = [reason for reason in mutation.REASONS if f"| `{reason}` |" not in readme]
    assert not missing, f"README's reason table misses {missing}"
    missing = [reason for reason in mutation.REASONS if f"`{reason}`" not in design]
    assert not missing, f"docs/design.md misses {missing}"
