"""AdmissionReview in, AdmissionReview out (docs/design.md#endpoints). Pure: no I/O, no FastAPI.

This module owns the envelope: it decodes a request body, checks that it is an
AdmissionReview the webhook can answer, hands pod CREATEs to
`mutation.mutate()` and encodes the response the way kube-apiserver expects
(uid echoed, base64 JSON Patch with `patchType: JSONPatch`, warnings,
audit annotations). Everything else, UPDATE and DELETE, other kinds and
subresources, is allowed unchanged.

Two channels of failure, never mixed: a request the webhook cannot read is a
`BadRequest` (HTTP 400 or 413, one-line reason); a pod the policy refuses is an
ordinary answer with `allowed: false`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, NotRequired, TypedDict

import orjson
import pybase64

from webhook.engine.errors import BadRequest, InvalidObject, PayloadTooLarge
from webhook.engine.limits import MAX_BODY_BYTES
from webhook.engine.mutation import Decision, mutate
from webhook.engine.policy import Policy

API_VERSIONS = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")
WARNING_PREFIX = "volume-init: "
DEFAULT_NAMESPACE = "default"
"""Where a pod without a namespace is created, as kubectl and kube-apiserver place it."""


class Status(TypedDict):
    code: int
    reason: str
    message: str


class AdmissionResponse(TypedDict):
    uid: str
    allowed: bool
    patchType: NotRequired[Literal["JSONPatch"]]
    patch: NotRequired[str]
    status: NotRequired[Status]
    warnings: NotRequired[list[str]]
    auditAnnotations: NotRequired[dict[str, str]]


class AdmissionReview(TypedDict):
    apiVersion: str
    kind: Literal["AdmissionReview"]
    response: AdmissionResponse


@dataclass
class Answer:
    """The review to send back, and what the log line and metrics say of it."""

    review: AdmissionReview
    outcome: str
    reason: str
    uid: str
    namespace: str = ""
    name: str = ""
    rule: str | None = None
    operation: str = ""
    dry_run: bool = False
    decision: Decision | None = field(default=None, repr=False)


def decode(body: bytes) -> dict[str, Any]:
    """The JSON object in `body`, or `BadRequest` saying why there is none.

    NB: orjson, because decoding is most of an admission's CPU (a 100 KB pod
    with managedFields takes 2.3 ms with the standard library, a fraction of
    that here). Like kube-apiserver's decoder it refuses what is not JSON:
    invalid UTF-8, NaN and Infinity, numbers out of double range; duplicate
    keys keep the last value, as Go's encoding/json does.
    """
    if len(body) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"request body is over {MAX_BODY_BYTES} bytes")
    if not body.strip():
        raise BadRequest("empty request body: expected an AdmissionReview")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        reason = str(exc)
        if "UTF-8" in reason and "BOM" not in reason:
            raise BadRequest(f"request body is not UTF-8 (byte {exc.pos})") from None
        if "depth limit" in reason or "recursion" in reason:
            raise BadRequest("request body is nested too deeply") from None
        raise BadRequest(f"request body is not JSON: {reason}") from None
    if not isinstance(document, dict):
        raise BadRequest("request body is not a JSON object: expected an AdmissionReview")
    return document


@dataclass(frozen=True)
class Request:
    """What the webhook reads of an AdmissionReview's envelope, checked."""

    api_version: str
    uid: str
    operation: str
    namespace: str
    name: str
    dry_run: bool
    is_pod: bool
    object: Any


def parse_request(document: dict[str, Any]) -> Request:
    """The envelope of a decoded AdmissionReview; `BadRequest` naming the field when
    it is malformed. NB: request values are never echoed: these messages are logged."""
    api_version = document.get("apiVersion")
    if not isinstance(api_version, str) or api_version not in API_VERSIONS:
        raise BadRequest(f"apiVersion: expected {' or '.join(API_VERSIONS)}")
    if document.get("kind") != "AdmissionReview":
        raise BadRequest("kind: expected AdmissionReview")
    request = document.get("request")
    if not isinstance(request, dict):
        raise BadRequest("request: missing or not an object")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise BadRequest("request.uid: missing or not a non-empty string")
    operation = request.get("operation")
    if not isinstance(operation, str):
        raise BadRequest("request.operation: missing or not a string")
    namespace = request.get("namespace") or ""
    if not isinstance(namespace, str):
        raise BadRequest("request.namespace: not a string")
    return Request(
        api_version=api_version,
        uid=uid,
        operation=operation,
        namespace=namespace,
        name=str(request.get("name") or ""),
        dry_run=request.get("dryRun") is True,
        is_pod=_is_pod(request),
        object=request.get("object"),
    )


def answer(
    document: dict[str, Any],
    policy: Policy,
    *,
    restricted: bool = False,
    protected_namespaces: frozenset[str] = frozenset(),
) -> Answer:
    """The answer to one decoded AdmissionReview; `BadRequest` when it is malformed."""
    request = parse_request(document)
    if not request.is_pod or request.operation != "CREATE":
        return _answer(
            request,
            {"uid": request.uid, "allowed": True},
            "skipped",
            "not-a-pod" if not request.is_pod else "not-a-create",
        )
    pod = request.object
    if not isinstance(pod, dict):
        raise BadRequest("request.object: a pod CREATE must carry the pod as an object")
    try:
        decision = mutate(
            pod,
            policy,
            namespace=request.namespace or _pod_namespace(pod),
            restricted=restricted,
            protected_namespaces=protected_namespaces,
        )
    except InvalidObject as exc:
        raise BadRequest(f"request.object.{exc}") from None
    metadata = pod.get("metadata")
    name = ""
    if isinstance(metadata, dict):
        name = str(metadata.get("name") or metadata.get("generateName") or "")
    return _answer(
        request,
        response_of(request.uid, decision),
        decision.outcome,
        decision.reason,
        name=name or request.name,
        decision=decision,
    )


def response_of(uid: str, decision: Decision) -> AdmissionResponse:
    """The AdmissionResponse that says `decision`: a patch, a denial, warnings and
    the audit annotations (outcome, reason, rule)."""
    response: AdmissionResponse = {"uid": uid, "allowed": decision.outcome != "denied"}
    if decision.outcome == "denied":
        response["status"] = {
            "code": 403,
            "reason": "Forbidden",
            "message": f"{WARNING_PREFIX}{decision.message}",
        }
    elif decision.patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = encode_patch(decision.patch)
    if decision.warnings:
        response["warnings"] = [WARNING_PREFIX + w for w in decision.warnings]
    audit = {"outcome": decision.outcome, "reason": decision.reason}
    if decision.rule:
        audit["rule"] = decision.rule
    response["auditAnnotations"] = audit
    return response


def _answer(
    request: Request,
    response: AdmissionResponse,
    outcome: str,
    reason: str,
    *,
    name: str | None = None,
    decision: Decision | None = None,
) -> Answer:
    return Answer(
        _review(request.api_version, response),
        outcome,
        reason,
        request.uid,
        namespace=request.namespace,
        name=request.name if name is None else name,
        rule=decision.rule if decision else None,
        operation=request.operation,
        dry_run=request.dry_run,
        decision=decision,
    )


def internal_error(document: dict[str, Any] | None, exc: BaseException) -> Answer | None:
    """Fail open on a bug: allow the pod unchanged, with a warning, if a uid is known.

    NB: a webhook that answers 500 makes kube-apiserver fail the pod under
    `failurePolicy: Fail`; the product promise is never to break pod creation.
    """
    request = (document or {}).get("request")
    uid = request.get("uid") if isinstance(request, dict) else None
    api_version = (document or {}).get("apiVersion")
    if not isinstance(uid, str) or not uid or api_version not in API_VERSIONS:
        return None
    response: AdmissionResponse = {
        "uid": uid,
        "allowed": True,
        "warnings": [
            f"{WARNING_PREFIX}internal error ({type(exc).__name__}); the pod was admitted"
            " unchanged, and its storage may not be writable by the app's non-root user"
        ],
        "auditAnnotations": {"outcome": "error", "reason": "internal"},
    }
    return Answer(_review(str(api_version), response), "error", "internal", uid)


def encode_patch(patch: list[dict[str, Any]]) -> str:
    """The `patch` field: base64 of the compact JSON Patch."""
    return pybase64.b64encode_as_string(orjson.dumps(patch))


def encode(review: AdmissionReview) -> bytes:
    """The response body."""
    return orjson.dumps(review)


def _review(api_version: str, response: AdmissionResponse) -> AdmissionReview:
    return {"apiVersion": api_version, "kind": "AdmissionReview", "response": response}


def _is_pod(request: dict[str, Any]) -> bool:
    kind = request.get("kind")
    resource = request.get("resource")
    sub = request.get("subResource") or ""
    if isinstance(kind, dict):
        return kind.get("kind") == "Pod" and kind.get("group", "") == "" and not sub
    if isinstance(resource, dict):
        return resource.get("resource") == "pods" and resource.get("group", "") == "" and not sub
    return False


def _pod_namespace(pod: dict[str, Any]) -> str:
    metadata = pod.get("metadata")
    namespace = metadata.get("namespace") if isinstance(metadata, dict) else None
    return namespace if isinstance(namespace, str) and namespace else DEFAULT_NAMESPACE
