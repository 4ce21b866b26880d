"""The `/mutate` contract of docs/design.md#endpoints, in process."""

from __future__ import annotations

import json
import logging
from typing import Any

import jsonpatch
import pytest
from fastapi.testclient import TestClient

from tests import helpers
from webhook.serving.state import ServingState

API_POD = helpers.load_pod(helpers.PODS / "helm-api.yaml")


def post(client: TestClient, body: Any, path: str = "/mutate") -> Any:
    response = client.post(path, content=json.dumps(body).encode())
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("api_version", ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"])
def test_uid_version_and_patch_are_echoed(client: TestClient, api_version: str) -> None:
    """Guards the envelope: apiVersion, kind and uid echoed; the patch base64 JSON Patch."""
    body = helpers.review(API_POD, api_version=api_version, uid="0b1f-uid")
    answer = post(client, body)
    assert answer["apiVersion"] == api_version
    assert answer["kind"] == "AdmissionReview"
    assert answer["response"]["uid"] == "0b1f-uid"
    assert answer["response"]["allowed"] is True
    patch = helpers.decoded_patch(answer)
    assert patch
    patched = jsonpatch.apply_patch(API_POD, patch)
    assert patched["spec"]["initContainers"][0]["name"] == "volume-permissions"
    assert answer["response"]["auditAnnotations"] == {
        "outcome": "injected",
        "reason": "injected",
        "rule": "dify-storage",
    }


@pytest.mark.parametrize("operation", ["UPDATE", "DELETE", "CONNECT"])
def test_only_create_is_patched(client: TestClient, operation: str) -> None:
    """Guards that UPDATE, DELETE and CONNECT are allowed with no patch."""
    answer = post(client, helpers.review(API_POD, operation=operation))
    assert answer["response"] == {"uid": answer["response"]["uid"], "allowed": True}


def test_other_kinds_and_subresources_are_allowed_unchanged(client: TestClient) -> None:
    """Guards that only pods (not other kinds or subresources) are patched."""
    body = helpers.review(API_POD, kind="Deployment")
    body["request"]["kind"] = {"group": "apps", "version": "v1", "kind": "Deployment"}
    assert "patch" not in post(client, body)["response"]
    body = helpers.review(API_POD)
    body["request"]["subResource"] = "ephemeralcontainers"
    assert "patch" not in post(client, body)["response"]


def test_dry_run_gets_the_same_patch(client: TestClient) -> None:
    """Guards dryRun: the same patch, no side effects."""
    wet = post(client, helpers.review(API_POD))
    dry = post(client, helpers.review(API_POD, dry_run=True))
    assert helpers.decoded_patch(dry) == helpers.decoded_patch(wet)


def test_reinvocation_with_the_patched_pod_returns_no_patch(client: TestClient) -> None:
    """Guards idempotence over HTTP: reinvocation returns no patch."""
    patched = jsonpatch.apply_patch(
        API_POD, helpers.decoded_patch(post(client, helpers.review(API_POD)))
    )
    again = post(client, helpers.review(patched))
    assert helpers.decoded_patch(again) is None
    assert again["response"]["auditAnnotations"]["reason"] == "already-injected"


def test_restricted_endpoint_injects_no_init_container(client: TestClient) -> None:
    """Guards /mutate/restricted: securityContext and annotation only."""
    answer = post(client, helpers.review(API_POD), "/mutate/restricted")
    patch = helpers.decoded_patch(answer)
    assert patch
    patched = jsonpatch.apply_patch(API_POD, patch)
    assert "initContainers" not in patched["spec"]
    assert patched["spec"]["securityContext"] == {
        "fsGroup": 1001,
        "fsGroupChangePolicy": "OnRootMismatch",
    }
    assert any("restricted" in w for w in answer["response"]["warnings"])


def test_denial_is_200_with_a_message(client: TestClient) -> None:
    """Guards the denial channel: HTTP 200, allowed false, a message."""
    pod = helpers.load_pod(helpers.PODS / "plain-worker-hostpath-etc.yaml")
    response = client.post("/mutate", json=helpers.review(pod))
    assert response.status_code == 200
    answer = response.json()["response"]
    assert answer["allowed"] is False
    assert "patch" not in answer and "patchType" not in answer
    assert answer["status"]["code"] == 403
    assert "/etc" in answer["status"]["message"] and "storage" in answer["status"]["message"]


def test_warnings_explain_conflicts(client: TestClient) -> None:
    """Guards response.warnings: conflicts are explained, prefixed."""
    pod = helpers.load_pod(helpers.PODS / "conflicts.yaml")
    warnings = post(client, helpers.review(pod))["response"]["warnings"]
    assert any("runs as root (runAsUser: 0" in w for w in warnings)
    assert all(w.startswith("volume-init: ") for w in warnings)
    pod["spec"]["containers"][0]["securityContext"] = {}  # not root: patched, conflicts said
    warnings = post(client, helpers.review(pod))["response"]["warnings"]
    assert any("fsGroup is 2000" in w for w in warnings)
    assert all(w.startswith("volume-init: ") for w in warnings)


def test_the_webhooks_own_namespace_is_never_mutated(client: TestClient) -> None:
    """Guards the webhook's own namespace from mutation."""
    answer = post(client, helpers.review(API_POD, namespace="dify-volume-init"))
    assert helpers.decoded_patch(answer) is None
    assert answer["response"]["auditAnnotations"]["reason"] == "excluded-namespace"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty request body"),
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"', "not JSON"),
        (b'{"apiVersion": "v1", "kind": "AdmissionReview", "request": {}}', "apiVersion"),
        (b'{"apiVersion": "admission.k8s.io/v1", "kind": "Pod"}', "kind"),
        (
            b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}',
            "request: missing or not an object",
        ),
        (
            b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",'
            b' "request": {"uid": "u", "operation": 5}}',
            "request.operation: missing or not a string",
        ),
        (
            b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {}}',
            "request.uid",
        ),
        (b"\xff\xfe\x00", "not UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
)
def test_malformed_requests_get_400_with_one_line(
    client: TestClient, body: bytes, reason: str
) -> None:
    """Guards the request channel: 400 with one line naming the field."""
    response = client.post("/mutate", content=body)
    assert response.status_code == 400
    assert reason in response.text
    assert response.text.count("\n") == 1


def test_malformed_pod_is_named_in_the_reason(client: TestClient) -> None:
    """Guards that a mistyped pod field is named in the 400's reason."""
    pod = json.loads(json.dumps(API_POD))
    pod["spec"]["containers"][0]["volumeMounts"][0].pop("mountPath")
    response = client.post("/mutate", json=helpers.review(pod))
    assert response.status_code == 400
    assert "spec.containers[0].volumeMounts[0].mountPath" in response.text
    body = helpers.review(None)
    response = client.post("/mutate", json=body)
    assert response.status_code == 400
    assert "request.object: a pod CREATE must carry the pod as an object" in response.text


def test_bodies_over_3_mib_get_413(client: TestClient) -> None:
    """Guards the body limit: 413."""
    response = client.post("/mutate", content=b" " * (3 * 1024 * 1024 + 1))
    assert response.status_code == 413


def test_health_readiness_and_metrics(client: TestClient, runtime: ServingState) -> None:
    """Guards the probes and the metrics endpoint and its counters."""
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    post(client, helpers.review(API_POD))
    client.post("/mutate", content=b"nope")
    text = client.get("/metrics").text
    assert 'volume_init_admissions_total{outcome="injected",reason="injected"} 1.0' in text
    assert 'volume_init_admissions_total{outcome="error",reason="bad-request"} 1.0' in text
    assert 'volume_init_admission_duration_seconds_bucket{endpoint="/mutate",le="0.0005"}' in text
    runtime.certificate_loaded = False
    response = client.get("/readyz")
    assert response.status_code == 503 and "certificate" in response.text


def test_not_ready_without_policy(client: TestClient, runtime: ServingState) -> None:
    """Guards readiness: 503 and no admissions until a policy is loaded."""
    runtime.policy = None
    assert client.get("/readyz").status_code == 503
    assert client.post("/mutate", json=helpers.review(API_POD)).status_code == 400


def test_an_internal_error_admits_the_pod_unchanged(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guards the fail-open fallback: a bug admits the pod unchanged, with a warning."""

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr("webhook.engine.admission.mutate", boom)
    answer = post(client, helpers.review(API_POD))
    assert answer["response"]["allowed"] is True
    assert "patch" not in answer["response"]
    assert "internal error" in answer["response"]["warnings"][0]


def test_one_log_line_per_admission_without_pod_secrets(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Guards the admission log line: one per admission, no value from the pod's env."""
    pod = json.loads(json.dumps(API_POD))
    pod["spec"]["containers"][0]["env"].append({"name": "SECRET_KEY", "value": "sk-MARKER-42"})
    with caplog.at_level(logging.DEBUG, logger="webhook"):
        post(client, helpers.review(pod, uid="log-uid"))
    lines = [r for r in caplog.records if r.name == "webhook.admission"]
    assert len(lines) == 1
    fields = lines[0].fields  # type: ignore[attr-defined]
    assert fields["uid"] == "log-uid"
    assert fields["namespace"] == "dify"
    assert fields["pod"] == "dify-api-7d9f8c6b5-"
    assert fields["outcome"] == "injected"
    assert fields["rule"] == "dify-storage"
    assert fields["latencyMs"] >= 0
    from webhook.serving.logs import JSONFormatter, TextFormatter

    for record in caplog.records:
        for formatter in (JSONFormatter(), TextFormatter()):
            assert "sk-MARKER-42" not in formatter.format(record)


def test_log_times_are_utc_milliseconds_and_follow_the_clock_across_seconds() -> None:
    """Guards the once-a-second date cache of the log formatter: a line in another
    second (later or earlier) gets that second's date, never the cached one."""
    from webhook.serving.logs import JSONFormatter, TextFormatter

    for created, shown in (
        (1764329235.5, "2025-11-28T11:27:15.500+00:00"),
        (1764329235.75, "2025-11-28T11:27:15.750+00:00"),
        (1764329236.25, "2025-11-28T11:27:16.250+00:00"),
        (1764329235.0, "2025-11-28T11:27:15.000+00:00"),
        (1767225599.5, "2025-12-31T23:59:59.500+00:00"),
        (1767225600.0, "2026-01-01T00:00:00.000+00:00"),
    ):
        record = logging.makeLogRecord(
            {"name": "webhook.admission", "msg": "admission", "levelno": logging.INFO,
             "levelname": "INFO", "created": created, "msecs": (created % 1) * 1000}
        )  # fmt: skip
        assert json.loads(JSONFormatter().format(record))["time"] == shown
        assert TextFormatter().format(record).startswith(f"{shown} info admission")


# The six checks that once passed the whole suite with their code disabled; each
# test below fails with its check taken out (see the closing note of the issue).


def test_the_engine_refuses_a_body_over_the_limit_itself() -> None:
    """Guards admission.decode's own size check: the engine is also called without
    the server in front (an embedder, `review` of an AdmissionReview file), and a
    body past kube-apiserver's 3 MiB is refused there too, as 413 not 400."""
    import orjson

    from webhook.engine import admission, limits
    from webhook.engine.errors import PayloadTooLarge

    body = orjson.dumps(helpers.review(API_POD))
    assert admission.decode(body)["request"]["uid"]
    with pytest.raises(PayloadTooLarge, match="over 3145728 bytes"):
        admission.decode(body + b" " * limits.MAX_BODY_BYTES)


def test_a_declared_oversized_body_is_refused_before_a_byte_is_read(
    runtime: ServingState,
) -> None:
    """Guards the Content-Length pre-check: a request that declares more than 3 MiB
    gets 413 at once, without the server reading (and buffering) its body first."""
    import asyncio

    from webhook.serving.app import create_app
    from webhook.serving.settings import Settings

    app = create_app(Settings(namespace="dify-volume-init"), runtime)
    read: list[object] = []
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        read.append(1)
        return {"type": "http.request", "body": b" " * 1024, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [(b"content-type", b"application/json"), (b"content-length", b"3145729")]
    scope = {"type": "http", "method": "POST", "path": "/mutate", "headers": headers}
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 413 and read == []


def test_an_internal_error_under_an_unknown_api_version_is_not_answered() -> None:
    """Guards internal_error's apiVersion check: the fail-open answer echoes the
    request's apiVersion, so under one the webhook does not speak (a v2, none) it
    is no answer at all (HTTP 400), never an allowed response the apiserver
    cannot read; under v1 and v1beta1 it is the allowed answer."""
    from webhook.engine import admission

    for version in ("admission.k8s.io/v1", "admission.k8s.io/v1beta1"):
        answer = admission.internal_error(
            {"apiVersion": version, "request": {"uid": "u"}}, RuntimeError()
        )
        assert answer is not None and answer.review["apiVersion"] == version
    for document in ({"apiVersion": "admission.k8s.io/v2", "request": {"uid": "u"}},
                     {"request": {"uid": "u"}}):  # fmt: skip
        assert admission.internal_error(document, RuntimeError()) is None


def test_the_same_warning_is_said_once() -> None:
    """Guards the de-duplication of warnings: a pod whose two app containers set the
    same thing is told once (kube-apiserver keeps only 4 KiB of warnings)."""
    from webhook.engine.mutation import Decision

    decision = Decision("skipped", "x", "m", {}, warnings=["a", "b", "a", "b", "c"])
    assert decision.warnings == ["a", "b", "c"]


def test_probes_say_what_they_mean(client: TestClient, runtime: ServingState) -> None:
    """Guards the probes' bodies, which people read in `kubectl describe`: `ok`, and
    readiness naming exactly what is missing."""
    assert client.get("/healthz").text == "ok\n"
    assert client.get("/readyz").text == "ok\n"
    runtime.policy = None
    assert client.get("/readyz").text == "not ready: policy\n"


def test_every_admission_is_timed_once_in_its_endpoints_histogram(client: TestClient) -> None:
    """Guards the latency histogram: each answer (a bad request too) is observed once,
    under its endpoint, with its real duration (well under a second here)."""
    post(client, helpers.review(API_POD))
    client.post("/mutate", content=b"nope")
    text = client.get("/metrics").text
    assert 'volume_init_admission_duration_seconds_count{endpoint="/mutate"} 2.0' in text
    assert 'volume_init_admission_duration_seconds_bucket{endpoint="/mutate",le="1.0"} 2.0' in text


def test_a_bug_before_the_review_is_read_is_a_400_not_a_guess(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guards the fallback's limit: a bug before the uid is known cannot be answered
    with `allowed` (no uid to echo), so the request gets 400 and is counted as an
    internal error."""

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr("webhook.engine.admission.decode", boom)
    response = client.post("/mutate", json=helpers.review(API_POD))
    assert (response.status_code, response.text) == (400, "cannot answer this request\n")
    text = client.get("/metrics").text
    assert 'volume_init_admissions_total{outcome="error",reason="internal"} 1.0' in text


def test_what_was_left_alone_is_counted_with_why(client: TestClient) -> None:
    """Guards the reason the metrics and the log line give for requests left alone:
    another kind is `not-a-pod`, a pod UPDATE `not-a-create`; a request that names
    only its resource (no kind) is judged by the resource."""
    deployment = helpers.review(API_POD)
    deployment["request"]["kind"] = {"group": "apps", "version": "v1", "kind": "Deployment"}
    post(client, deployment)
    post(client, helpers.review(API_POD, operation="UPDATE"))
    by_resource = helpers.review(API_POD)
    del by_resource["request"]["kind"]
    by_resource["request"]["resource"] = {"group": "", "version": "v1", "resource": "configmaps"}
    assert "patch" not in post(client, by_resource)["response"]
    text = client.get("/metrics").text
    assert 'volume_init_admissions_total{outcome="skipped",reason="not-a-pod"} 2.0' in text
    assert 'volume_init_admissions_total{outcome="skipped",reason="not-a-create"} 1.0' in text


def test_a_pod_named_in_its_own_metadata_is_judged_in_that_namespace(client: TestClient) -> None:
    """Guards where a pod is when the request names no namespace: its metadata's
    (kube-system here: never patched), else `default`."""
    body = helpers.review(API_POD)
    body["request"]["namespace"] = ""
    body["request"]["object"]["metadata"]["namespace"] = "kube-system"
    answer = post(client, body)["response"]
    assert "patch" not in answer and answer["auditAnnotations"]["reason"] == "excluded-namespace"
