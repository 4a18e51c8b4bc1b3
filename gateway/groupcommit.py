"""Group commit: many concurrent writers, one transaction per flush.

``await writer.submit(item)`` queues ``item`` and returns only once the flush that carried it has
committed — so a request that awaits its ledger row before answering still never answers without
a durable row — but the rows of every request that finished in the same event-loop turn share
one ``executemany`` and one commit.  A flush runs right after the current loop turn, inline when
``try_inline(items)`` can write without waiting (it returns False when it would have to wait: a
lock held elsewhere, or an ``fsync`` that must not stall the loop), else in a worker thread with
``blocking(items)``.  Items queued while a threaded flush runs go into the next one.  When a
batch fails, its items are retried one by one, so each caller gets its own item's outcome.

    >>> writer = GroupCommit(blocking=ledger.write_many_sync)          # doctest: +SKIP
    >>> await writer.submit(row)        # durable when this returns    # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["GroupCommit"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class GroupCommit(Generic[T]):
    """Batches ``submit`` calls of one event loop into flushes (see the module doc)."""

    def __init__(
        self,
        blocking: Callable[[list[T]], None],
        try_inline: Callable[[list[T]], bool] | None = None,
        *,
        max_batch: int = 512,
    ):
        self.blocking = blocking
        self.try_inline = try_inline
        self.max_batch = max_batch
        self._queue: list[tuple[T, asyncio.Future[None]]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scheduled = False  # a flush is due (call_soon) or running (thread task)
        self._task: asyncio.Task[None] | None = None
        self.flushes = 0  # transactions committed (for tests and benchmarks)

    async def submit(self, item: T) -> None:
        """Queue ``item``; return when it is committed (raise if writing it failed)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._queue:  # another loop's flush is pending: do not mix loops
                await asyncio.to_thread(self.blocking, [item])
                return
            self._loop, self._scheduled, self._task = loop, False, None
        fut: asyncio.Future[None] = loop.create_future()
        self._queue.append((item, fut))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush_soon)
        await fut

    def pending(self) -> int:
        return len(self._queue)

    def drain_sync(self) -> None:
        """Write whatever is still queued, from any thread (shutdown)."""
        batch, self._queue = self._queue, []
        if batch:
            self.blocking([item for item, _ in batch])
            for _, fut in batch:
                if self._loop is not None and not self._loop.is_closed():
                    self._loop.call_soon_threadsafe(_resolve, fut, None)

    def _take(self) -> list[tuple[T, asyncio.Future[None]]]:
        batch = self._queue[: self.max_batch]
        del self._queue[: self.max_batch]
        return batch

    def _flush_soon(self) -> None:
        """Runs one loop turn after the first submit: everything queued by then is one batch."""
        while self._queue and self.try_inline is not None:
            batch = self._take()
            try:
                done = self.try_inline([item for item, _ in batch])
            except Exception:  # retried one by one in the thread, which reports
                done = False
            if not done:
                self._queue[:0] = batch
                break
            self.flushes += 1
            for _, fut in batch:
                _resolve(fut, None)
        if not self._queue:
            self._scheduled = False
            return
        assert self._loop is not None
        self._task = self._loop.create_task(self._flush_in_thread())

    async def _flush_in_thread(self) -> None:
        try:
            while self._queue:
                batch = self._take()
                items = [item for item, _ in batch]
                try:
                    await asyncio.to_thread(self.blocking, items)
                except Exception:  # each item gets its own outcome below
                    await self._one_by_one(batch)
                    continue
                self.flushes += 1
                for _, fut in batch:
                    _resolve(fut, None)
        finally:
            self._scheduled = False
            self._task = None

    async def _one_by_one(self, batch: list[tuple[T, asyncio.Future[None]]]) -> None:
        for item, fut in batch:
            try:
                await asyncio.to_thread(self.blocking, [item])
            except Exception as e:  # handed to the caller that submitted it
                log.error("group commit: an item failed: %s: %s", type(e).__name__, e)
                if not fut.done():
                    fut.set_exception(e)
                continue
            self.flushes += 1
            _resolve(fut, None)


def _resolve(fut: asyncio.Future[None], value: None) -> None:
    if not fut.done():  # a caller that was cancelled still had its item written
        fut.set_result(value)
