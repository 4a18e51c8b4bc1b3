"""``create_app(config)``: the FastAPI application of the gateway.

All runtime objects are built here and injected (the upstream ``httpx.AsyncClient`` and the
state store can be passed in; tests fake only the upstream transport).  One set of exception
handlers turns every failure into OpenAI's ``{"error": {message, type, param, code}}``.

    >>> app = create_app(load_config("gateway.yaml"))                   # doctest: +SKIP
    >>> uvicorn.run(app, host="127.0.0.1", port=8080)                   # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.backends import build_backends
from gateway.capture import CaptureStore, open_capture_store
from gateway.capture.service import Capturer
from gateway.config import GatewayConfig, default_config
from gateway.deps import Gateway
from gateway.errors import APIError, InvalidRequest, PayloadTooLarge, StateUnavailable
from gateway.keys import KeyManager
from gateway.leases import LeaseKeeper
from gateway.ledgers import open_ledger
from gateway.metrics import Metrics
from gateway.quotas import Limiter
from gateway.rollout import RolloutManager
from gateway.routers import admin, chat, embeddings, feedback, meta
from gateway.routing import Router
from gateway.safety import Detector, SafetyEngine
from gateway.state import STATE_ERRORS, StateStore, open_config_store
from gateway.tracing import instrument
from genaiops import tracing
from genaiops.errors import GenAIOpsError
from genaiops.openai_client import upstream_async_client
from genaiops.tokens import count_tokens

__all__ = ["app_from_env", "build_gateway", "create_app"]

log = logging.getLogger(__name__)


def build_gateway(
    config: GatewayConfig,
    *,
    http_client: httpx.AsyncClient | None = None,
    store: StateStore | None = None,
    detectors: list[Detector] | None = None,
    capture_store: CaptureStore | None = None,
) -> Gateway:
    """Every runtime object of one gateway process, wired together."""
    http = http_client or upstream_async_client()
    store = store or open_config_store(config.state, config.state_path())
    ledger = open_ledger(config)
    backends = build_backends(config, http)
    rollouts = RolloutManager(store, config, ledger)
    limiter = Limiter(store, config.teams, lease_s=config.lease_s)
    leases = LeaseKeeper(store, ledger, limiter.owner, config.lease_s, config.progress_interval_s)
    metrics = Metrics()
    capturer = Capturer(
        config.capture,
        lambda: capture_store or open_capture_store(config),
        metrics,
    )
    return Gateway(
        config=config,
        store=store,
        ledger=ledger,
        keys=KeyManager(store, policies=config.safety.policies),
        limiter=limiter,
        safety=SafetyEngine(config.safety, detectors) if config.safety.enabled else None,
        rollouts=rollouts,
        router=Router(config, backends, rollouts),
        backends=backends,
        metrics=metrics,
        http=http,
        leases=leases,
        capture=capturer,
    )


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413 (Content-Length or counted)."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.limit
                except ValueError:
                    too_big = False
                if too_big:
                    await _send_error(send, PayloadTooLarge(self._msg()))
                    return
                await self.app(scope, receive, send)  # the server enforces Content-Length
                return
        if scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        # no Content-Length (chunked): read the body here, so an oversized one is a clean 413
        chunks: list[bytes] = []
        seen = 0
        while True:
            msg = await receive()
            if msg["type"] != "http.request":
                await self.app(scope, receive, send)  # disconnected: let the app see it
                return
            chunk = msg.get("body", b"")
            seen += len(chunk)
            if seen > self.limit:
                await _send_error(send, PayloadTooLarge(self._msg()))
                return
            chunks.append(chunk)
            if not msg.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _msg(self) -> str:
        return f"request body is larger than {self.limit} bytes"


async def _send_error(send: Send, err: APIError) -> None:
    body = json.dumps(err.body()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": err.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _error_response(request: Request, err: APIError) -> JSONResponse:
    headers = dict(getattr(request.state, "extra_headers", None) or {})
    headers.update(err.headers)
    return JSONResponse(err.body(), status_code=err.status, headers=headers)


def _install_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        return _error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errs = exc.errors()
        first: dict[str, Any] = errs[0] if errs else {}
        loc = [str(x) for x in first.get("loc", ()) if x != "body"]
        if first.get("type") == "json_invalid":
            msg = "We could not parse the JSON body of your request."
        else:
            msg = f"Invalid request: {'.'.join(loc) or 'body'}: {first.get('msg', 'invalid')}"
        err = InvalidRequest(msg, param=".".join(loc) or None)
        return _error_response(request, err)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        msg = str(exc.detail)
        if exc.status_code == 404:
            msg = f"Unknown request URL: {request.method} {request.url.path}."
        err: APIError = InvalidRequest(msg, status=exc.status_code, code=None)
        if exc.status_code >= 500:
            err = APIError(msg, status=exc.status_code)
        return _error_response(request, err)

    async def state_down(request: Request, exc: Exception) -> JSONResponse:
        log.error("state store error: %s: %s", type(exc).__name__, exc)
        err = StateUnavailable(f"the gateway's state store is unavailable ({type(exc).__name__})")
        return _error_response(request, err)

    for kind in STATE_ERRORS:  # SQLite, Redis, PostgreSQL (a pool timeout included)
        app.add_exception_handler(kind, state_down)

    @app.exception_handler(GenAIOpsError)
    async def other(request: Request, exc: GenAIOpsError) -> JSONResponse:
        log.error("request failed: %s", exc)
        return _error_response(request, APIError(f"{type(exc).__name__}: {exc}", status=500))

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception) -> JSONResponse:
        rid = getattr(request.state, "request_id", "")
        log.exception("unhandled error in request %s", rid)
        return _error_response(request, APIError(f"internal error (request {rid})", status=500))


def create_app(
    config: GatewayConfig | None = None,
    *,
    http_client: httpx.AsyncClient | None = None,
    store: StateStore | None = None,
    detectors: list[Detector] | None = None,
    capture_store: CaptureStore | None = None,
) -> FastAPI:
    """The gateway app; ``config`` None serves the embedded models."""
    config = config or default_config()
    tracing.setup_from_env("genaiops-gateway")  # off unless OTEL_EXPORTER_OTLP_ENDPOINT is set
    gw = build_gateway(
        config,
        http_client=http_client,
        store=store,
        detectors=detectors,
        capture_store=capture_store,
    )
    owns_http = http_client is None

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(count_tokens, "warm up")  # load the BPE before the first request
        ticker = asyncio.create_task(_tick_rollouts(gw))
        keeper = asyncio.create_task(gw.leases.run()) if gw.leases is not None else None
        writer = asyncio.create_task(gw.capture.run()) if gw.capture is not None else None
        task = asyncio.create_task(_warm_up(list(gw.backends.values())))
        gw.background.add(task)
        task.add_done_callback(gw.background.discard)
        try:
            yield
        finally:
            for t in (ticker, keeper, writer):
                if t is not None:
                    t.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await t
            if gw.capture is not None:
                with contextlib.suppress(Exception):  # counted and logged by the writer
                    await gw.capture.flush()  # a graceful stop loses no captured record
                gw.capture.close()
            for task in list(gw.background):
                task.cancel()
            for b in gw.backends.values():
                await b.aclose()
            if owns_http:
                await gw.http.aclose()
            await gw.store.close()
            gw.ledger.close()
            tp = tracing.provider()
            if tp is not None:  # a graceful stop exports the last requests' spans now, not
                # whenever (if ever) the process's exit handlers run
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(tp.force_flush, 5000)

    app = FastAPI(
        title="genaiops gateway",
        version="0.1.0",
        summary="OpenAI-compatible endpoint with quotas, usage ledger, content safety, rollout.",
        lifespan=lifespan,
        # no trailing-slash redirects: Starlette builds their Location from the Host header (an
        # open redirect); "/v1/models/" is a plain 404 in the OpenAI shape instead
        redirect_slashes=False,
    )
    app.state.gateway = gw
    _install_handlers(app)
    for r in (chat.router, embeddings.router, feedback.router, meta.router, admin.router):
        app.include_router(r)
    app.add_middleware(BodyLimit, limit=config.max_body_bytes)
    instrument(app)  # the server span of each request, when tracing is on
    return app


async def _warm_up(backends: list[Any]) -> None:
    """Warm the backends that can be warmed, one after another (local loads are serialised by
    :func:`genaiops.providers._torch.model_loading` anyway, and would compete for the same
    cores); one backend's failed warm-up leaves the others warm."""
    for b in backends:
        warm = getattr(b, "warm_up", None)
        if warm is None:
            continue
        try:
            await warm()
        except Exception as e:  # one backend's failure must not leave the others cold
            log.warning("backend %s: warm-up failed: %s", getattr(b, "name", b), e)


async def _tick_rollouts(gw: Gateway) -> None:
    while True:
        await asyncio.sleep(gw.config.rollout_tick_s)
        try:
            for st in await gw.rollouts.tick():
                log.warning("rollout %s: %s (weight %s)", st.alias, st.status, st.weight)
        except (GenAIOpsError, OSError) as e:
            log.error("rollout tick failed: %s", e)


def app_from_env() -> FastAPI:
    """uvicorn factory for several worker processes (``serve --workers N``): the config file
    comes from ``GENAIOPS_GATEWAY_CONFIG`` (empty: the embedded models).  Workers share the
    SQLite (or Redis) state and the ledger file, exactly like separate replicas."""
    import os

    from gateway.config import load_config

    return create_app(load_config(os.environ.get("GENAIOPS_GATEWAY_CONFIG") or None))
