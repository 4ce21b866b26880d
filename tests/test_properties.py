"""Properties over generated pods: the patch applies (with an independent
implementation) and equals the mutation, a valid pod stays valid, a second
pass changes nothing, and no input makes `/mutate` fail: never a 5xx, never
the internal-error fallback, and an answer without a patch is exactly the
uid, `allowed` and what the contract adds."""

from __future__ import annotations

import asyncio
import copy
import functools
import json
import os
from typing import Any

import jsonpatch
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests import helpers, podvalidity, strategies
from webhook.engine import mutation
from webhook.engine.policy import default_policy
from webhook.serving.app import create_app
from webhook.serving.settings import Settings
from webhook.serving.state import ServingState

POLICY = default_policy()
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(pod=strategies.pods(), restricted=st.booleans())
def test_patch_applies_and_equals_mutation(pod: dict[str, Any], restricted: bool) -> None:
    """Guards, over generated pods: the patch applies, equals the mutation, and keeps
    valid pods valid."""
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
            if value is not None:  # an explicit null is unset, and may be filled
                assert after["securityContext"][key] == value
    if decision.outcome != "injected":
        assert decision.patch == []
    assert decision.reason in mutation.REASONS
    event(decision.reason)
    # Never make a pod worse: a pod kube-apiserver accepts stays one it accepts.
    if not podvalidity.problems(pod):
        assert podvalidity.problems(patched) == [], decision.patch


@SETTINGS
@given(pod=strategies.pods(), restricted=st.booleans())
def test_second_pass_is_a_no_op(pod: dict[str, Any], restricted: bool) -> None:
    """Guards idempotence over generated pods."""
    first = mutation.mutate(pod, POLICY, namespace="dify", restricted=restricted)
    second = mutation.mutate(first.pod, POLICY, namespace="dify", restricted=restricted)
    assert second.patch == []
    assert second.outcome in ("skipped", "denied")
    if first.outcome == "injected":
        assert second.reason == "already-injected"


CONTRACT_EXTRAS = {"warnings", "auditAnnotations"}


def check_answer(body: Any, answer: dict[str, Any]) -> None:
    """A 200 answer is a real decision: never the internal-error fallback, and an
    answer without a patch carries nothing but the uid, `allowed` and the extras."""
    response = answer["response"]
    assert response["uid"] == body["request"]["uid"]
    assert response.get("auditAnnotations", {}).get("outcome") != "error", response
    if response["allowed"] and "patch" not in response:
        assert set(response) - CONTRACT_EXTRAS == {"uid", "allowed"}, response
    if not response["allowed"]:
        assert response["status"]["code"] == 403


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
    """Guards /mutate against damaged reviews: never 5xx, never the error fallback."""
    client = _client()
    for path in ("/mutate", "/mutate/restricted"):
        response = client.post(path, content=json.dumps(body).encode())
        assert response.status_code in (200, 400), response.text
        if response.status_code == 200:
            assert response.json()["kind"] == "AdmissionReview"
            check_answer(body, response.json())
        else:
            assert "\n" not in response.text.rstrip("\n")


@functools.cache
def _client() -> TestClient:
    """One app for all examples keeps the run fast."""
    runtime = ServingState(policy=POLICY, certificate_loaded=True)
    return TestClient(create_app(Settings(), runtime))


GOLDEN_REVIEWS = [helpers.review(helpers.load_pod(p)) for p in helpers.pod_inputs()]
ODD_VALUES = st.one_of(
    st.sampled_from([None, True, 0, -1, 2**63, 1.5, "", "x", [], {}, [None], {"": None}]),
    st.text(max_size=6),
    st.integers(),
)


@st.composite
def mutated_reviews(draw: st.DrawFn) -> Any:
    """A valid AdmissionReview of a golden pod, then 1-3 random edits anywhere in it.

    Each edit walks from the root to a random node (stopping early at random)
    and deletes it, replaces it with an odd value, turns it into a string, or
    wraps it in a list.
    """
    body: Any = copy.deepcopy(draw(st.sampled_from(GOLDEN_REVIEWS)))
    for _ in range(draw(st.integers(1, 3))):
        parent: Any = None
        key: Any = None
        node: Any = body
        # Most edits go into the pod, where the webhook reads the most.
        for part in draw(
            st.sampled_from([(), ("request", "object"), ("request", "object", "spec")])
        ):
            if not (isinstance(node, dict) and isinstance(node.get(part), dict)):
                break
            parent, key, node = node, part, node[part]
        while isinstance(node, dict | list) and node and draw(st.integers(0, 5)) > 0:
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            parent, key = node, keys[draw(st.integers(0, len(keys) - 1))]
            node = node[key]
        action = draw(st.sampled_from(["delete", "replace", "retype", "wrap"]))
        if parent is None:
            body = copy.deepcopy(draw(ODD_VALUES)) if action == "replace" else [body]
        elif action == "delete":
            del parent[key]
        elif action == "replace":
            parent[key] = copy.deepcopy(draw(ODD_VALUES))
        elif action == "retype":
            parent[key] = (
                str(node) if not isinstance(node, str) else copy.deepcopy(draw(ODD_VALUES))
            )
        else:
            parent[key] = [node]
    return body


@settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "10000")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(body=mutated_reviews())
def test_fuzzed_reviews_never_get_5xx(body: Any) -> None:
    """Guards /mutate against fuzzed golden reviews: never 5xx, never the error fallback."""
    status, text = _asgi_post("/mutate", json.dumps(body).encode())
    event(f"HTTP {status}")
    assert status in (200, 400), text
    if status == 200:
        check_answer(body, json.loads(text))


_LOOP = asyncio.new_event_loop()


def _asgi_post(path: str, body: bytes) -> tuple[int, bytes]:
    """POST straight into the ASGI app (no HTTP client), so 10,000 examples run in seconds."""
    app = _client().app
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "https",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8443),
    }
    chunks = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return chunks.pop(0) if chunks else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    _LOOP.run_until_complete(app(scope, receive, send))  # type: ignore[arg-type]
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    text = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return int(status), text
