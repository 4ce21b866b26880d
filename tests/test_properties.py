"""Properties over generated pods: the patch applies (with an independent
implementation) and equals the mutation, a second pass changes nothing, and no
input makes `/mutate` answer 5xx."""

from __future__ import annotations

import copy
import functools
import json
from typing import Any

import jsonpatch
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import helpers, strategies
from webhook import mutation
from webhook.app import create_app
from webhook.policy import Policy, default_policy
from webhook.runtime import Runtime
from webhook.settings import Settings

POLICY = default_policy()
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(pod=strategies.pods(), restricted=st.booleans())
def test_patch_applies_and_equals_mutation(pod: dict[str, Any], restricted: bool) -> None:
    pristine = copy.deepcopy(pod)
    decision = mutation.mutate(pod, POLICY, namespace="dify", restricted=restricted)
    assert pod == pristine
    patched = jsonpatch.apply_patch(pod, decision.patch)
    assert patched == decision.pod
    assert all(op["op"] == "add" for op in decision.patch)
    # nothing outside the injected parts changes: every container keeps its fields
    for i, container in enumerate(pod["spec"]["containers"]):
        after = patched["spec"]["containers"][i]
        assert {k: v for k, v in after.items() if k != "securityContext"} == {
            k: v for k, v in container.items() if k != "securityContext"
        }
        for key, value in (container.get("securityContext") or {}).items():
            assert after["securityContext"][key] == value
    if decision.outcome != "injected":
        assert decision.patch == []


@SETTINGS
@given(pod=strategies.pods(), restricted=st.booleans())
def test_second_pass_is_a_no_op(pod: dict[str, Any], restricted: bool) -> None:
    first = mutation.mutate(pod, POLICY, namespace="dify", restricted=restricted)
    second = mutation.mutate(first.pod, POLICY, namespace="dify", restricted=restricted)
    assert second.patch == []
    assert second.outcome in ("skipped", "denied")


def _json_values() -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5)
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
        ),
        max_leaves=10,
    )


@st.composite
def damaged_reviews(draw: st.DrawFn) -> Any:
    """A valid AdmissionReview with one part of it replaced by arbitrary JSON."""
    body = helpers.review(draw(strategies.pods()))
    paths = [
        ("request",),
        ("request", "uid"),
        ("request", "object"),
        ("request", "object", "metadata"),
        ("request", "object", "metadata", "labels"),
        ("request", "object", "metadata", "annotations"),
        ("request", "object", "spec"),
        ("request", "object", "spec", "containers"),
        ("request", "object", "spec", "volumes"),
        ("request", "object", "spec", "securityContext"),
        ("request", "operation"),
        ("request", "kind"),
        ("request", "namespace"),
        ("apiVersion",),
    ]
    path = draw(st.sampled_from(paths))
    node = body
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = draw(_json_values())
    return body


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.one_of(damaged_reviews(), _json_values()))
def test_mutate_never_answers_5xx(body: Any) -> None:
    client = _client()
    for path in ("/mutate", "/mutate/restricted"):
        response = client.post(path, content=json.dumps(body).encode())
        assert response.status_code in (200, 400), response.text
        if response.status_code == 200:
            assert response.json()["kind"] == "AdmissionReview"
        else:
            assert "\n" not in response.text.rstrip("\n")


@functools.cache
def _client() -> TestClient:
    """One app for all examples keeps the run fast."""
    runtime = Runtime(policy=POLICY, certificate_loaded=True)
    return TestClient(create_app(Settings(), runtime))


def test_policy_fixture_is_default(policy: Policy) -> None:
    assert policy == POLICY
