"""The baseline for the admission benchmark: the least an admission server can do.

A raw ASGI app (no framework) that reads the body, decodes the JSON, echoes
the uid and returns a fixed JSON Patch. Served by uvicorn with the same
settings and certificate as the webhook, it is the floor the webhook's
latency and CPU are compared with.
"""

from __future__ import annotations

import base64
import json
from typing import Any

PATCH = base64.b64encode(
    json.dumps([{"op": "add", "path": "/metadata/annotations", "value": {"a": "b"}}]).encode()
).decode()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
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
    review = json.loads(body)
    answer = {
        "apiVersion": review["apiVersion"],
        "kind": "AdmissionReview",
        "response": {
            "uid": review["request"]["uid"],
            "allowed": True,
            "patchType": "JSONPatch",
            "patch": PATCH,
        },
    }
    payload = json.dumps(answer).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": payload})
