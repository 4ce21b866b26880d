"""The baseline for the admission benchmark: the least a correct webhook can do.

A raw ASGI app (no framework, no policy, no checks) that reads the body,
decodes it, and answers a pod CREATE with the same injection dify-volume-init
makes for the benchmark's pods: the init container (the same script, built
once at import), the pod and container securityContext and the status
annotation, as a base64 JSON Patch with the uid echoed. It uses the standard
library's `json` and `base64`, as a plain Python webhook would. Served by
uvicorn with the same settings and certificate as the webhook, it is the
floor the webhook's latency and CPU are compared with; `bench/kopf_app.py`
runs the same handler under kopf.

`fixed_app` is the floor under that: the same server answering a fixed
300-byte patch (one annotation) without building anything, to show what
the transport alone costs.

`inject()` is written for the benchmark's pod shapes (the storage mounted by
app containers, no init container, no securityContext yet): the benchmark
checks before measuring that its patch equals the webhook's for each pod.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from webhook.engine import DEFAULT_IMAGE, initscript

STORAGE = "/app/api/storage"
USER = GROUP = 1001
STATUS = "volume-init.dify.ai~1status"
INIT_NAME = "volume-permissions"
INIT_TEMPLATE: dict[str, Any] = {
    "name": INIT_NAME,
    "image": DEFAULT_IMAGE,
    "command": ["dify-volume-init", "fix-ownership", "--owner", f"{USER}:{GROUP}", "--", STORAGE],
    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
    "securityContext": {
        "runAsUser": 0,
        "runAsGroup": 0,
        "runAsNonRoot": False,
        "privileged": False,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"], "add": list(initscript.CAPABILITIES)},
        "seccompProfile": {"type": "RuntimeDefault"},
    },
}


def inject(review: dict[str, Any]) -> dict[str, Any]:
    """The AdmissionResponse for one decoded AdmissionReview."""
    request = review["request"]
    response: dict[str, Any] = {"uid": request["uid"], "allowed": True}
    pod = request.get("object") or {}
    if request.get("operation") != "CREATE" or pod.get("kind", "Pod") != "Pod":
        return response
    spec = pod["spec"]
    volumes: list[str] = []
    patch: list[dict[str, Any]] = []
    for index, container in enumerate(spec["containers"]):
        for mount in container.get("volumeMounts") or ():
            if mount["mountPath"] == STORAGE:
                volumes.append(mount["name"])
                patch.append(
                    {
                        "op": "add",
                        "path": f"/spec/containers/{index}/securityContext",
                        "value": {"runAsUser": USER, "runAsGroup": GROUP, "runAsNonRoot": True},
                    }
                )
    if not volumes:
        return response
    init = {**INIT_TEMPLATE, "volumeMounts": [{"name": volumes[0], "mountPath": STORAGE}]}
    # As the webhook sizes it: the app container's cpu and memory, when it sets them.
    app = (spec["containers"][0].get("resources") or {}) if spec["containers"] else {}
    sized = {
        kind: {
            name: value
            for name, value in (app.get(kind) or {}).items()
            if name in ("cpu", "memory")
        }
        for kind in ("requests", "limits")
    }
    sized = {kind: values for kind, values in sized.items() if values}
    if sized:
        init["resources"] = sized
    status = json.dumps(
        {"rule": "dify-storage", "volumes": volumes[:1], "owner": f"{USER}:{GROUP}",
         "initContainer": INIT_NAME},
        separators=(",", ":"),
    )  # fmt: skip
    patch[:0] = [
        {"op": "add", "path": "/spec/initContainers", "value": [init]},
        {"op": "add", "path": "/spec/securityContext",
         "value": {"fsGroup": GROUP, "fsGroupChangePolicy": "OnRootMismatch"}},
    ]  # fmt: skip
    patch.append({"op": "add", "path": f"/metadata/annotations/{STATUS}", "value": status})
    response["patchType"] = "JSONPatch"
    response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
    return response


def answer(review: dict[str, Any]) -> dict[str, Any]:
    """The AdmissionReview to send back."""
    return {"apiVersion": review["apiVersion"], "kind": "AdmissionReview",
            "response": inject(review)}  # fmt: skip


FIXED_PATCH = base64.b64encode(
    json.dumps([{"op": "add", "path": "/metadata/annotations", "value": {"a": "b"}}]).encode()
).decode()


def minimal(review: dict[str, Any]) -> dict[str, Any]:
    """The AdmissionReview of `minimal_app`: the least any webhook of this kind sends,
    a plain `chown -R` init container on the storage volume, nothing else."""
    request = review["request"]
    response: dict[str, Any] = {"uid": request["uid"], "allowed": True}
    pod = request.get("object") or {}
    volume = next(
        (
            m["name"]
            for c in (pod.get("spec") or {}).get("containers") or ()
            for m in c.get("volumeMounts") or ()
            if m["mountPath"] == STORAGE
        ),
        None,
    )
    if volume is not None:
        init = {"name": INIT_NAME, "image": "busybox:1.36.1",
                "command": ["chown", "-R", f"{USER}:{GROUP}", STORAGE],
                "volumeMounts": [{"name": volume, "mountPath": STORAGE}]}  # fmt: skip
        patch = [{"op": "add", "path": "/spec/initContainers", "value": [init]}]
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
    return {"apiVersion": review["apiVersion"], "kind": "AdmissionReview", "response": response}


def fixed(review: dict[str, Any]) -> dict[str, Any]:
    """The AdmissionReview of `fixed_app`: the uid echoed, a fixed patch."""
    return {"apiVersion": review["apiVersion"], "kind": "AdmissionReview",
            "response": {"uid": review["request"]["uid"], "allowed": True,
                         "patchType": "JSONPatch", "patch": FIXED_PATCH}}  # fmt: skip


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await _serve(answer, scope, receive, send)


async def minimal_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await _serve(minimal, scope, receive, send)


async def fixed_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await _serve(fixed, scope, receive, send)


async def _serve(handler: Any, scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["method"] != "POST":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    payload = json.dumps(handler(json.loads(body))).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": payload})
