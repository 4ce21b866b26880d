"""The HTTP shell (SPEC §4): FastAPI routes that decode, delegate and encode.

`create_app()` builds an app from explicit settings and a `Runtime`; nothing
is built at import time. The admission routes read the raw body (no pydantic
model of a pod: it would drop fields it does not know) and hand it to
`admission`; this module only adds the size limit, the status codes, the
metrics and the one log line per admission.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
import traceback
import types
from collections.abc import AsyncIterator, Sequence
from typing import Any

from fastapi import FastAPI, Request, Response

from webhook import admission, logs, reload
from webhook.errors import BadRequest, PayloadTooLarge
from webhook.runtime import Runtime
from webhook.settings import Settings

_log = logs.get("admission")
_server_log = logs.get("server")
_JSON = "application/json"


def create_app(
    settings: Settings, runtime: Runtime, *, watched: Sequence[reload.Watched] = ()
) -> FastAPI:
    """The webhook's ASGI app for one process; `watched` files are polled while it runs."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        _drain_on_sigterm(runtime, delay=settings.shutdown_delay)
        task = None
        if watched:
            task = asyncio.create_task(
                reload.watch(list(watched), interval=settings.reload_interval)
            )
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app = FastAPI(
        title="dify-volume-init",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.runtime = runtime

    @app.post("/mutate")
    async def mutate(request: Request) -> Response:
        return await _admit(request, runtime, restricted=False)

    @app.post("/mutate/restricted")
    async def mutate_restricted(request: Request) -> Response:
        return await _admit(request, runtime, restricted=True)

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
            runtime.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    return app


def _drain_on_sigterm(runtime: Runtime, *, delay: float) -> None:
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


async def _read_body(request: Request) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > admission.MAX_BODY_BYTES:
        raise PayloadTooLarge(f"request body is over {admission.MAX_BODY_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > admission.MAX_BODY_BYTES:
            raise PayloadTooLarge(f"request body is over {admission.MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _peer_verified(request: Request, runtime: Runtime) -> bool:
    client = request.client
    return client is not None and runtime.verified_peers.get((client.host, client.port), False)


async def _admit(request: Request, runtime: Runtime, *, restricted: bool) -> Response:
    started = time.perf_counter()
    endpoint = "/mutate/restricted" if restricted else "/mutate"
    metrics = runtime.metrics
    document: dict[str, Any] | None = None
    if runtime.require_client_certificate and not _peer_verified(request, runtime):
        metrics.admissions.labels("error", "unauthenticated").inc()
        _log.warning(
            "admission request without a verified client certificate",
            extra={"fields": {"endpoint": endpoint, "status": 403}},
        )
        return Response(
            "a client certificate signed by the configured --client-ca is required\n",
            403,
            media_type="text/plain",
        )
    try:
        policy = runtime.policy
        if policy is None:
            raise BadRequest("no valid policy is loaded yet")
        document = admission.decode(await _read_body(request))
        result = admission.answer(
            document,
            policy,
            restricted=restricted,
            protected_namespaces=runtime.protected_namespaces,
        )
    except BadRequest as exc:
        status = 413 if isinstance(exc, PayloadTooLarge) else 400
        metrics.admissions.labels("error", "bad-request").inc()
        elapsed = time.perf_counter() - started
        metrics.latency.labels(endpoint).observe(elapsed)
        _log.warning(
            "bad admission request",
            extra={"fields": {"endpoint": endpoint, "status": status, "reason": str(exc)}},
        )
        return Response(f"{exc}\n", status, media_type="text/plain")
    except Exception as exc:  # a bug of ours must not fail pod creation
        fallback = admission.internal_error(document, exc)
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
        if fallback is None:
            metrics.admissions.labels("error", "internal").inc()
            return Response("cannot answer this request\n", 400, media_type="text/plain")
        result = fallback
    elapsed = time.perf_counter() - started
    metrics.admissions.labels(result.outcome, result.reason).inc()
    metrics.latency.labels(endpoint).observe(elapsed)
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
    return Response(admission.encode(result.review), media_type=_JSON)
