"""Capture on the request path: choose, draft, queue; a batch writer stores records off it.

The chat route asks :meth:`Capturer.begin` (after the safety engine's input check, so the
messages and documents are the redacted ones) for a :class:`CaptureDraft`, and hands it to
:meth:`Capturer.submit` with the answer as the client received it.  ``submit`` only appends to
an in-memory queue: no thread hop, no I/O and no pydantic validation per request.  The writer
(:meth:`Capturer.run`, one task per process) wakes every ``flush_interval_s`` (or when
``batch_max`` records wait), builds the :class:`~gateway.capture.records.CaptureRecord` objects
and stores them in one transaction in a worker thread; it also enforces retention every
``purge_interval_s``.

What can be lost: a ``kill -9`` loses the records still queued (at most ``flush_interval_s``
of traffic; a graceful stop flushes them); a full queue (``queue_max``, the store too slow or
down) drops new records.  Every loss is counted in ``genaiops_gateway_capture_failures``
and logged without the content; a capture failure never fails the request.

    >>> capturer = Capturer(cfg.capture, lambda: SQLiteCaptureStore(path))    # doctest: +SKIP
    >>> draft = capturer.begin(rid, key, alias, body, meta, msgs, docs, True)  # doctest: +SKIP
    >>> capturer.submit(draft, deployment="d", completion="Hi", ...)          # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.capture.records import (
    CapturedDocument,
    CaptureMetadata,
    CaptureRecord,
    SafetySummary,
    Usage,
)
from gateway.capture.store import CaptureStore
from gateway.config import CaptureConfig
from gateway.errors import InvalidRequest
from gateway.metrics import Metrics

__all__ = ["SESSION_HEADER", "VARIANT_HEADER", "CaptureDraft", "Capturer", "metadata_headers"]

log = logging.getLogger(__name__)

SESSION_HEADER = "x-genaiops-session"
VARIANT_HEADER = "x-genaiops-flow-variant"
_MAX_HEADER = 256
_CATEGORIES = ("hate", "sexual", "violence", "self_harm")


def metadata_headers(headers: Any) -> tuple[str | None, str | None]:
    """``(session, flow_variant)`` from the request headers; 400 when one is too long."""
    out = []
    for name in (SESSION_HEADER, VARIANT_HEADER):
        v = headers.get(name)
        if v is not None and len(v) > _MAX_HEADER:
            raise InvalidRequest(f"header {name} is longer than {_MAX_HEADER} characters")
        out.append(v or None)
    return out[0], out[1]


def sampled(request_id: str, rate: float) -> bool:
    """Whether ``request_id`` falls in the sample: a hash of the id, not a random draw, so
    every replica (and a later reader) agrees on it."""
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    h = hashlib.blake2b(request_id.encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64 < rate


@dataclass(slots=True)
class CaptureDraft:
    """What the request path holds for one captured request (plain references, no copies)."""

    request_id: str
    key_id: str | None
    team: str | None
    alias: str
    stream: bool
    messages: list[dict[str, Any]]
    documents: list[str]
    doc_meta: list[Any]  # the request's ``documents`` items (str or DocumentIn)
    metadata: CaptureMetadata
    redacted: bool
    answer: dict[str, Any] = field(default_factory=dict)

    def record(self, max_chars: int) -> CaptureRecord:
        """The stored record, its text cut to ``max_chars`` (answer first, newest turns next)."""
        a = self.answer
        budget = _Budget(max_chars)
        completion = budget.take(a.get("completion") or "")
        messages = [budget.message(m) for m in reversed(self.messages)][::-1]
        docs = []
        for text, meta in zip(self.documents, self.doc_meta, strict=False):
            docs.append(
                CapturedDocument(
                    text=budget.take(text),
                    id=getattr(meta, "id", None),
                    score=getattr(meta, "score", None),
                )
            )
        return CaptureRecord(
            request_id=self.request_id,
            ts=a.get("ts") or time.time(),
            key_id=self.key_id,
            team=self.team,
            alias=self.alias,
            deployment=a.get("deployment"),
            stream=self.stream,
            outcome=a.get("outcome") or "ok",
            messages=messages,
            documents=docs,
            completion=completion,
            tool_calls=a.get("tool_calls") or None,
            finish_reason=a.get("finish_reason"),
            usage=Usage(
                prompt_tokens=a.get("prompt_tokens", 0),
                completion_tokens=a.get("completion_tokens", 0),
                total_tokens=a.get("prompt_tokens", 0) + a.get("completion_tokens", 0),
            ),
            latency_ms=a.get("latency_ms"),
            safety=safety_summary(a.get("safety") or {}),
            metadata=self.metadata,
            redacted=self.redacted,
            truncated=budget.cut,
        )


class _Budget:
    """Characters left for one record's text; cuts strings once it runs out."""

    def __init__(self, chars: int):
        self.left = chars
        self.cut = False

    def take(self, text: str) -> str:
        if len(text) <= self.left:
            self.left -= len(text)
            return text
        self.cut = True
        out, self.left = text[: self.left], 0
        return out

    def message(self, m: dict[str, Any]) -> dict[str, Any]:
        content = m.get("content")
        if isinstance(content, str):
            return {**m, "content": self.take(content)}
        if isinstance(content, list):
            parts = [
                {**p, "text": self.take(p["text"])}
                if isinstance(p, dict) and isinstance(p.get("text"), str)
                else p
                for p in content
            ]
            return {**m, "content": parts}
        return dict(m)


def safety_summary(safety: dict[str, Any]) -> SafetySummary:
    """The ledger's Azure-shaped ``{prompt, completion}`` results in brief."""
    if not safety:
        return SafetySummary()
    flagged: set[str] = set()
    pii: set[str] = set()
    blocked = attack = False
    for res in safety.values():
        if not isinstance(res, dict):
            continue
        for k, v in res.items():
            if not isinstance(v, dict):
                continue
            blocked |= bool(v.get("filtered"))
            if k in _CATEGORIES and v.get("severity") not in (None, "safe"):
                flagged.add(k)
            elif k in ("jailbreak", "indirect_attack"):
                attack |= bool(v.get("detected"))
            elif k == "pii":
                pii.update(v.get("detected") or [])
    return SafetySummary(
        checked=True, blocked=blocked, flagged=sorted(flagged), pii=sorted(pii), attack=attack
    )


class Capturer:
    """Which requests to capture, the queue, the batch writer and retention (one per process).

    ``open_store`` is called once, on first use (a gateway that never captures and never gets
    feedback never creates the file)."""

    def __init__(
        self,
        config: CaptureConfig,
        open_store: Callable[[], CaptureStore],
        metrics: Metrics | None = None,
    ):
        self.config = config
        self._open = open_store
        self._store: CaptureStore | None = None
        self._lock = threading.Lock()
        self.metrics = metrics or Metrics()
        self._queue: collections.deque[CaptureDraft] = collections.deque()
        self._wake = asyncio.Event()
        self._models = frozenset(config.models)
        self._teams = frozenset(config.teams)

    @property
    def store(self) -> CaptureStore:
        if self._store is None:
            with self._lock:
                if self._store is None:
                    self._store = self._open()
        return self._store

    def wants(self, alias: str, team: str | None, request_id: str, redacted: bool) -> bool:
        c = self.config
        return (
            c.enabled
            and (not self._models or alias in self._models)
            and (not self._teams or team in self._teams)
            and (redacted or c.allow_unredacted)
            and sampled(request_id, c.sample_rate)
        )

    def begin(
        self,
        request_id: str,
        key: Any,
        alias: str,
        body: Any,
        headers: tuple[str | None, str | None],
        messages: list[dict[str, Any]],
        documents: list[str],
        redacted: bool,
    ) -> CaptureDraft | None:
        """A draft when this request is to be captured, else None (cheap: no copies)."""
        if not self.wants(alias, key.team, request_id, redacted):
            return None
        r = body.retrieval
        meta = CaptureMetadata(
            user=body.user,
            session=headers[0],
            flow_variant=headers[1],
            index=r.index if r else None,
            index_version=r.index_version if r else None,
            index_alias=r.alias if r else None,
        )
        return CaptureDraft(
            request_id, key.id, key.team, alias, bool(body.stream), messages, documents,
            list(body.documents or []), meta, redacted,
        )  # fmt: skip

    def submit(self, draft: CaptureDraft, **answer: Any) -> None:
        """Queue ``draft`` with its answer (deployment, completion, finish_reason, tokens,
        latency_ms, outcome, safety, tool_calls); never raises, never blocks."""
        try:
            if len(self._queue) >= self.config.queue_max:
                self.metrics.capture_failures.labels("queue_full").inc()
                return
            answer.setdefault("ts", time.time())
            draft.answer = answer
            self._queue.append(draft)
            if len(self._queue) >= self.config.batch_max:
                self._wake.set()
        except Exception as e:  # capture must never fail a request
            self.metrics.capture_failures.labels("submit").inc()
            log.error("capture of %s not queued: %s", draft.request_id, type(e).__name__)

    def pending(self) -> int:
        return len(self._queue)

    def flush_sync(self) -> int:
        """Write every queued record now (batches of ``batch_max``); how many were stored."""
        stored = 0
        while self._queue:
            batch: list[CaptureRecord] = []
            while self._queue and len(batch) < self.config.batch_max:
                draft = self._queue.popleft()
                try:
                    batch.append(draft.record(self.config.max_chars))
                except Exception as e:  # a record that cannot be built is counted, not fatal
                    self.metrics.capture_failures.labels("build").inc()
                    log.error("capture of %s not built: %s", draft.request_id, type(e).__name__)
            try:
                stored += self.store.add_many(batch)
            except Exception as e:  # the store is down or unwritable: count, log, go on
                self.metrics.capture_failures.labels("write").inc(len(batch))
                log.error("capture store write of %d records failed: %s: %s", len(batch),
                          type(e).__name__, e)  # fmt: skip
                continue
            for rec in batch:
                self.metrics.captured.labels(rec.alias).inc()
        return stored

    async def flush(self) -> int:
        return await asyncio.to_thread(self.flush_sync) if self._queue else 0

    def purge_sync(self, now: float | None = None) -> tuple[int, int]:
        """Delete captures older than ``retention`` and feedback older than
        ``feedback_retention``; the numbers deleted."""
        now = time.time() if now is None else now
        store = self.store
        n = store.delete_older_than(now - self.config.retention_s())
        f = store.delete_feedback_older_than(now - self.config.feedback_retention_s())
        if n or f:
            self.metrics.capture_purged.labels("captures").inc(n)
            self.metrics.capture_purged.labels("feedback").inc(f)
            log.info("capture retention: deleted %d captures and %d feedback records", n, f)
        return n, f

    async def run(self) -> None:
        """The writer: flush every ``flush_interval_s`` (sooner when a batch is full), purge
        every ``purge_interval_s`` (only a store in use: capture on, or feedback received)."""
        next_purge = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.flush_interval_s)
            self._wake.clear()
            await self.flush()
            if (self.config.enabled or self._store is not None) and time.time() >= next_purge:
                next_purge = time.time() + self.config.purge_interval_s
                try:
                    await asyncio.to_thread(self.purge_sync)
                except Exception as e:  # retention retries next round; requests go on
                    self.metrics.capture_failures.labels("purge").inc()
                    log.error("capture retention failed: %s: %s", type(e).__name__, e)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
