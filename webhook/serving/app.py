"""The HTTP shell (docs/design.md#endpoints): routes that decode, delegate and encode.

`create_app()` builds an app from explicit settings and a `ServingState`; nothing
is built at import time. The admission routes read the raw body (no pydantic
model of a pod: it would drop fields it does not know) and hand it to
`admission`; this module only adds the size limit, the status codes, the
metrics and the one log line per admission. Probes and metrics are FastAPI
routes; the two admission routes are plain ASGI in front of them, for speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
import traceback
import types
from collections.abc import AsyncIterator, Sequence
from typing import Any

from fastapi import FastAPI, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from webhook.engine import PRODUCT, admission, limits
from webhook.engine.errors import BadRequest, PayloadTooLarge
from webhook.serving import logs, reload
from webhook.serving.settings import Settings
from webhook.serving.state import ServingState

_log = logs.get("admission")
_server_log = logs.get("server")


def create_app(
    settings: Settings, runtime: ServingState, *, watched: Sequence[reload.Watched] = ()
) -> AdmissionRoutes:
    """The webhook's ASGI app for one process; `watched` files are polled while it runs.

    The two admission routes come first, as plain ASGI (`AdmissionRoutes`);
    everything else (probes, metrics, the lifespan) goes on to FastAPI.
    """

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        _drain_on_sigterm(runtime, delay=settings.shutdown_delay)
        wake = asyncio.Event()
        _reload_on_sighup(wake, watching=bool(watched))
        task = None
        if watched:
            task = asyncio.create_task(
                reload.watch(list(watched), interval=settings.reload_interval, wake=wake)
            )
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app = FastAPI(
        title=PRODUCT,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )

    _probes_and_metrics(app, runtime)
    return AdmissionRoutes(app, runtime=runtime)


def _probes_and_metrics(app: FastAPI, runtime: ServingState) -> None:
    """`/healthz` (the process answers), `/readyz` (certificate, policy, not draining:
    what is missing, else ok) and `/metrics` (Prometheus)."""

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response("ok\n", media_type="text/plain")

    @app.get("/readyz")
    async def readyz() -> Response:
        if runtime.ready:
            return Response("ok\n", media_type="text/plain")
        missing = [
            what
            for what, ok in (
                ("certificate", runtime.certificate_loaded),
                ("policy", runtime.policy is not None),
                ("not shutting down", not runtime.shutting_down),
            )
            if not ok
        ]
        return Response(f"not ready: {', '.join(missing)}\n", 503, media_type="text/plain")

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(
            runtime.metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )


def _drain_on_sigterm(runtime: ServingState, *, delay: float) -> None:
    """On SIGTERM, turn readiness false first, and only `delay` seconds later let
    uvicorn stop accepting and finish what is in flight.

    NB: uvicorn installs its own handlers (with `signal.signal`) before the
    lifespan starts; this wraps its SIGTERM handler. The delay covers the time
    Kubernetes takes to drop a not-ready pod from the Service's endpoints, so
    the apiserver stops sending new calls before the listener closes.
    """
    if delay <= 0 or threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()
    uvicorn_handler = signal.getsignal(signal.SIGTERM)
    if not callable(uvicorn_handler):
        return

    def on_sigterm(sig: int, frame: types.FrameType | None) -> None:
        if runtime.shutting_down:  # a second SIGTERM: stop now
            uvicorn_handler(sig, frame)
            return
        runtime.shutting_down = True
        _server_log.info(
            "SIGTERM: readiness is false; closing the listener after the drain delay",
            extra={"fields": {"delaySeconds": delay}},
        )
        loop.call_soon_threadsafe(loop.call_later, delay, uvicorn_handler, sig, None)

    signal.signal(signal.SIGTERM, on_sigterm)


def _reload_on_sighup(wake: asyncio.Event, *, watching: bool) -> None:
    """SIGHUP re-reads the policy and the certificate now instead of at the next poll.

    NB: Python's default for SIGHUP ends the process at once, without the drain
    SIGTERM gets; a `kill -HUP` or a closed terminal must never do that to a
    webhook. (With --workers, uvicorn's supervisor takes SIGHUP itself and
    replaces the workers one by one, each new one ready before an old one stops.)
    """
    if threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()

    def on_sighup(sig: int, frame: types.FrameType | None) -> None:
        _server_log.info(
            "SIGHUP: re-reading the policy and the certificate now"
            if watching
            else "SIGHUP: nothing to re-read (built-in policy, no files watched)"
        )
        loop.call_soon_threadsafe(wake.set)

    signal.signal(signal.SIGHUP, on_sighup)


ADMISSION_PATHS = {"/mutate": False, "/mutate/restricted": True}
_TEXT = [(b"content-type", b"text/plain; charset=utf-8")]
_JSON_HEADERS = [(b"content-type", b"application/json")]


class AdmissionRoutes:
    """`POST /mutate` and `POST /mutate/restricted` as pure ASGI, in front of FastAPI.

    NB: an admission is on the path of every matching pod creation, and the
    framework's middleware stack (error, telemetry and body-limit wrappers
    around every receive and send), request and response objects and routing
    cost more CPU than the admission itself; so these two routes are answered
    before FastAPI sees the request, with plain ASGI messages. `_admit` catches
    everything itself, so nothing is lost by skipping FastAPI's error
    middleware. Everything else (probes, metrics, lifespan) goes on to FastAPI.
    """

    def __init__(self, app: ASGIApp, *, runtime: ServingState) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        restricted = ADMISSION_PATHS.get(scope.get("path", "")) if scope["type"] == "http" else None
        if restricted is None:
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":
            await _send(send, 405, b"only POST is allowed here\n", [*_TEXT, (b"allow", b"POST")])
            return
        status, body, headers = await _admit(scope, receive, self.runtime, restricted=restricted)
        await _send(send, status, body, headers)


async def _send(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(scope: Scope, receive: Receive) -> bytes:
    for name, value in scope.get("headers", ()):
        if name == b"content-length" and value.isdigit() and int(value) > limits.MAX_BODY_BYTES:
            raise PayloadTooLarge(f"request body is over {limits.MAX_BODY_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequest("the client went away before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limits.MAX_BODY_BYTES:
            raise PayloadTooLarge(f"request body is over {limits.MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _peer_verified(scope: Scope, runtime: ServingState) -> bool:
    client = scope.get("client")
    return client is not None and runtime.verified_peers.get(tuple(client), False)


async def _admit(
    scope: Scope, receive: Receive, runtime: ServingState, *, restricted: bool
) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    started = time.perf_counter()
    endpoint = "/mutate/restricted" if restricted else "/mutate"
    metrics = runtime.metrics
    document: dict[str, Any] | None = None
    if runtime.require_client_certificate and not _peer_verified(scope, runtime):
        metrics.count("error", "unauthenticated")
        _log.warning(
            "admission request without a verified client certificate",
            extra={"fields": {"endpoint": endpoint, "status": 403}},
        )
        message = b"a client certificate signed by the configured --client-ca is required\n"
        return 403, message, _TEXT
    try:
        policy = runtime.policy
        if policy is None:
            raise BadRequest("no valid policy is loaded yet")
        document = admission.decode(await _read_body(scope, receive))
        result = admission.answer(
            document,
            policy,
            restricted=restricted,
            protected_namespaces=runtime.protected_namespaces,
        )
    except BadRequest as exc:
        status = 413 if isinstance(exc, PayloadTooLarge) else 400
        metrics.count("error", "bad-request")
        metrics.observe(endpoint, time.perf_counter() - started)
        _log.warning(
            "bad admission request",
            extra={"fields": {"endpoint": endpoint, "status": status, "reason": str(exc)}},
        )
        return status, f"{exc}\n".encode(), _TEXT
    except Exception as exc:  # a bug of ours must not fail pod creation
        fallback = _internal_error(document, exc, endpoint)
        if fallback is None:
            metrics.count("error", "internal")
            return 400, b"cannot answer this request\n", _TEXT
        result = fallback
    body = admission.encode(result.review)
    elapsed = time.perf_counter() - started
    metrics.count(result.outcome, result.reason)
    metrics.observe(endpoint, elapsed)
    if _log.isEnabledFor(logging.INFO):
        _log_admission(result, endpoint, elapsed)
    return 200, body, _JSON_HEADERS


def _internal_error(
    document: dict[str, Any] | None, exc: Exception, endpoint: str
) -> admission.Answer | None:
    """Logged with where it happened; the answer that admits the pod unchanged, or
    None when the request cannot be answered at all."""
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    _log.error(
        "internal error while answering an admission",
        extra={
            "fields": {
                "endpoint": endpoint,
                "error": type(exc).__name__,
                "where": f"{frame.filename}:{frame.lineno}" if frame else "",
            }
        },
    )
    return admission.internal_error(document, exc)


def _log_admission(result: admission.Answer, endpoint: str, elapsed: float) -> None:
    _log.info(
        "admission",
        extra={
            "fields": {
                "uid": result.uid,
                "operation": result.operation,
                "namespace": result.namespace,
                "pod": result.name,
                "outcome": result.outcome,
                "reason": result.reason,
                "rule": result.rule,
                "dryRun": result.dry_run,
                "endpoint": endpoint,
                "latencyMs": round(elapsed * 1000, 3),
            }
        },
    )
