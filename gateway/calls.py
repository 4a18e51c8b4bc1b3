"""One request's lifecycle: admission, dispatch with fallback, settlement and its ledger row.

Every path out of a request — success, upstream error, content filter, client disconnect —
goes through :meth:`Call.finish` exactly once, which settles the reservation (to the true usage)
and writes the row.  Cleanup runs shielded from cancellation so a disconnect cannot skip it.  The
reservation is a hold of this process; a streamed call reports its progress to the lease keeper,
so a ``kill -9`` leaves its delivered tokens charged and recorded, and the rest released.

    >>> call = Call(gw, request, key, alias="chat", stream=False)       # doctest: +SKIP
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
from gateway.capture.service import CaptureDraft
from gateway.config import AliasConfig
from gateway.deps import Gateway
from gateway.errors import APIError, ClientDisconnected, ModelNotFound, UpstreamFailed
from gateway.keys import KeyRecord
from gateway.ledger import UsageRow
from gateway.quotas import Reservation
from gateway.tracing import bind_request
from genaiops import tracing
from genaiops.tokens import count_tokens

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
        self.max_completion = 0  # the completion part of the reservation
        self.streamed = ""  # text streamed so far (partial usage if the client leaves)
        self._counted = (0, 0)  # (characters of ``streamed`` counted, their tokens)
        self.capture: CaptureDraft | None = None  # set when this request is captured
        request.state.request_id = self.request_id
        bind_request(self.request_id)

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
            owner=self.gw.limiter.owner,
            **kw,
        )

    def progress(self) -> tuple[int, int]:
        """Prompt and completion tokens a stream has delivered so far (its charge if cut).

        Counted incrementally (only new text each time); the completion part never exceeds
        what was reserved for it, as the upstream cannot send more than ``max_tokens``.
        """
        chars, tokens = self._counted
        if len(self.streamed) > chars:
            tokens += count_tokens(self.streamed[chars:])
            self._counted = (len(self.streamed), tokens)
        return self.prompt_estimate, min(tokens, self.max_completion or tokens)

    async def admit(self, tokens: int) -> None:
        self.max_completion = max(0, tokens - self.prompt_estimate)
        try:
            with tracing.span("gateway.quota", {"genaiops.tokens": tokens}):
                self.reservation = await self.gw.limiter.admit(self.key, tokens, self.request_id)
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
        if self.gw.leases is not None:
            self.gw.leases.untrack(self.request_id)
        with anyio.CancelScope(shield=True):
            res = self.reservation
            hold = res.hold if res is not None and not res.settled else None
            deltas = (
                self.gw.limiter.settle_deltas(res, prompt_tokens + completion_tokens)
                if res is not None
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
            if res is not None and res.overshoot:
                self.gw.metrics.quota_overshoot.labels(self.alias, deployment or "").inc(
                    res.overshoot
                )
                log.warning(
                    "request %s: usage %d is %d tokens over its reservation (counted)",
                    self.request_id,
                    prompt_tokens + completion_tokens,
                    res.overshoot,
                )
            if deployment and outcome in ("ok", "error", "filtered"):
                await self.gw.rollouts.observe(self.alias, deployment, status, row.latency_ms or 0)
            if deltas or hold is not None:
                await self.gw.store.settle(deltas, hold=hold)
            await self.gw.ledger.write(row)  # committed (group commit) before the reply
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

    async def mark_streaming(self, deployment: str) -> None:
        """Record the request before the first byte of a streamed answer leaves; from now on
        the lease keeper saves its progress (ledger row and hold)."""
        await self.gw.ledger.write(
            self._row(deployment=deployment, status=200, outcome="streaming")
        )
        if self.gw.leases is not None and not self.done:
            hold = self.reservation.hold if self.reservation is not None else None
            self.gw.leases.track(self.request_id, hold, self.progress)

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
