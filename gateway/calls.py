"""One request's lifecycle: admission, dispatch with fallback, settlement and its ledger row.

Every path out of a request — success, upstream error, content filter, client disconnect —
goes through :meth:`Call.finish` exactly once, which settles the reservation and writes the row.
Cleanup runs shielded from cancellation so a disconnect cannot skip it.

    >>> call = Call(gw, request, key, alias="chat")                    # doctest: +SKIP
    >>> await call.admit(tokens=prompt + max_tokens)                    # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
from fastapi import Request

from gateway.backends import Backend, BackendFailure
from gateway.config import AliasConfig
from gateway.deps import Gateway
from gateway.errors import APIError, ClientDisconnected, ModelNotFound, UpstreamFailed
from gateway.keys import KeyRecord
from gateway.ledger import UsageRow
from gateway.quotas import Reservation
from gateway.state import SQLiteStore

__all__ = ["Call", "ClientDisconnected", "resolve_alias"]

log = logging.getLogger(__name__)
T = TypeVar("T")


def resolve_alias(gw: Gateway, model: str, kind: str) -> AliasConfig:
    alias = gw.config.alias(model)
    if alias is None or alias.kind != kind:
        raise ModelNotFound(
            f"The model '{model}' does not exist or is not a {kind} model on this gateway",
            param="model",
        )
    return alias


class Call:
    """State of one API request from admission to its ledger row."""

    def __init__(self, gw: Gateway, request: Request, key: KeyRecord, alias: str, stream: bool):
        self.gw = gw
        self.request = request
        self.key = key
        self.alias = alias
        self.stream = stream
        self.request_id = "req_" + uuid.uuid4().hex
        self.t0 = time.perf_counter()
        self.reservation: Reservation | None = None
        self.done = False
        self.prompt_estimate = 0
        self.streamed = ""  # text streamed so far (partial usage if the client leaves)
        request.state.request_id = self.request_id

    def headers(self) -> dict[str, str]:
        h = {"x-request-id": self.request_id}
        if self.reservation is not None:
            h.update(self.reservation.headers)
        return h

    def _row(self, **kw: Any) -> UsageRow:
        return UsageRow(
            request_id=self.request_id,
            key_id=self.key.id,
            key_prefix=self.key.prefix,
            team=self.key.team,
            alias=self.alias,
            stream=self.stream,
            latency_ms=round((time.perf_counter() - self.t0) * 1000, 3),
            **kw,
        )

    async def admit(self, tokens: int) -> None:
        try:
            self.reservation = await self.gw.limiter.admit(self.key, tokens)
        except APIError as e:
            self.request.state.extra_headers = {**e.headers, "x-request-id": self.request_id}
            self.gw.metrics.limited.labels("key", e.error_code or "").inc()
            await self.finish(None, 0, 0, status=e.status, outcome="rejected", error=e)
            raise
        self.request.state.extra_headers = self.headers()

    async def finish(
        self,
        deployment: str | None,
        prompt_tokens: int,
        completion_tokens: int,
        *,
        status: int = 200,
        outcome: str = "ok",
        error: APIError | None = None,
        safety: dict[str, Any] | None = None,
    ) -> None:
        """Settle and record; runs at most once and cannot be cancelled half-way."""
        if self.done:
            return
        self.done = True
        with anyio.CancelScope(shield=True):
            deltas = (
                self.gw.limiter.settle_deltas(self.reservation, prompt_tokens + completion_tokens)
                if self.reservation is not None
                else []
            )
            row = self._row(
                deployment=deployment,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                status=status,
                outcome=outcome,
                error_code=error.error_code if error else None,
                safety=safety or {},
            )
            if deployment and outcome in ("ok", "error", "filtered"):
                await self.gw.rollouts.observe(self.alias, deployment, status, row.latency_ms or 0)
            store = self.gw.store
            if isinstance(store, SQLiteStore):  # one worker-thread hop for both writes
                await asyncio.to_thread(self._settle_and_record, store, deltas, row)
            else:
                if deltas:
                    await store.settle(deltas)
                await self.gw.ledger.write(row)
        log.info(
            "request %s key=%s alias=%s deployment=%s status=%s outcome=%s tokens=%d+%d "
            "latency_ms=%.1f",
            self.request_id,
            self.key.id,
            self.alias,
            deployment,
            status,
            outcome,
            prompt_tokens,
            completion_tokens,
            row.latency_ms or 0.0,
        )
        m = self.gw.metrics
        m.requests.labels(self.alias, deployment or "", str(status)).inc()
        if deployment:
            m.latency.labels(self.alias, deployment).observe(time.perf_counter() - self.t0)
            team = self.key.team or ""
            m.tokens.labels(self.alias, deployment, team, "prompt").inc(prompt_tokens)
            m.tokens.labels(self.alias, deployment, team, "completion").inc(completion_tokens)

    def _settle_and_record(
        self, store: SQLiteStore, deltas: list[tuple[str, int, float]], row: UsageRow
    ) -> None:
        if deltas:
            store.settle_sync(deltas)
        self.gw.ledger.write_sync(row)

    async def mark_streaming(self, deployment: str) -> None:
        """Record the request before the first byte of a streamed answer leaves."""
        await self.gw.ledger.write(
            self._row(deployment=deployment, status=200, outcome="streaming")
        )

    async def attempt_failed(self, deployment: str, err: BackendFailure) -> None:
        self.gw.metrics.upstream_failures.labels(deployment).inc()
        row = self._row(deployment=deployment, status=err.status, outcome="attempt_error")
        row.request_id = f"{self.request_id}:{deployment}"
        row.error_code = err.error_code
        await self.gw.ledger.write(row)
        await self.gw.rollouts.observe(self.alias, deployment, err.status, row.latency_ms or 0)

    async def circuit_skipped(self, deployment: str) -> None:
        """The request was meant for a deployment whose circuit is open: record the miss."""
        self.gw.metrics.upstream_failures.labels(deployment).inc()
        row = self._row(deployment=deployment, status=503, outcome="attempt_error")
        row.request_id = f"{self.request_id}:{deployment}"
        row.error_code = "circuit_open"
        await self.gw.ledger.write(row)
        await self.gw.rollouts.observe(self.alias, deployment, 503, 0.0)

    async def dispatch(
        self, order: list[str], fn: Callable[[Backend], Awaitable[T]]
    ) -> tuple[str, T]:
        """Try deployments in order; fall back only on retryable failures."""
        last: APIError | None = None
        for dep in order:
            try:
                result = await fn(self.gw.backends[dep])
            except BackendFailure as e:
                self.gw.router.record(dep, ok=False)
                await self.attempt_failed(dep, e)
                last = e
                if not e.retryable:
                    break
                log.warning("request %s: deployment %s failed, falling back", self.request_id, dep)
                continue
            self.gw.router.record(dep, ok=True)
            return dep, result
        if last is None:
            raise UpstreamFailed(f"model {self.alias!r} has no deployment with traffic")
        raise last

    async def until_disconnect(self, work: Awaitable[T]) -> T:
        """Await ``work`` unless the client disconnects first (→ :class:`ClientDisconnected`)."""
        task = asyncio.ensure_future(work)
        watch = asyncio.ensure_future(self._wait_disconnect())
        try:
            await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            task.cancel()  # we are being cancelled ourselves (shutdown): stop the work too
            raise
        finally:
            watch.cancel()
        if task.done():
            return task.result()
        task.cancel()
        raise ClientDisconnected(self.request_id)

    async def _wait_disconnect(self) -> None:
        while True:
            msg = await self.request.receive()
            if msg["type"] == "http.disconnect":
                return

    def spawn(self, coro: Awaitable[Any]) -> None:
        """Fire-and-forget work (shadow traffic) that must not be garbage-collected early."""
        task = asyncio.ensure_future(coro)
        self.gw.background.add(task)
        task.add_done_callback(self.gw.background.discard)
