"""The hot path's SQLite work: group commit of ledger rows, inline statements that never wait.

A row is committed before ``await ledger.write(row)`` returns (the guarantee behind "no ledger
row lost for any answer a client received"; the kill -9 test in test_reliability.py checks it
across a crash); statements run inline on the event loop unless they would have to wait for a
lock, and then in a worker thread while the loop keeps serving.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from gateway.config import default_config
from gateway.counting import INLINE_BODY_BYTES, admission_tokens
from gateway.groupcommit import GroupCommit
from gateway.ledger import Ledger, UsageRow
from gateway.state import Counter, Hold
from gateway.state.connections import CHECKPOINT_EVERY
from gateway.state.sqlite import SQLiteStore


class CountingExecutor(ThreadPoolExecutor):
    """The loop's default executor (what ``asyncio.to_thread`` uses), counting its jobs."""

    def __init__(self) -> None:
        super().__init__(max_workers=4)
        self.jobs = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        self.jobs += 1
        return super().submit(fn, *args, **kwargs)


def run_counting(coro_fn: Any) -> int:
    """Run ``coro_fn()`` on a fresh loop; how many jobs went to a worker thread."""
    ex = CountingExecutor()

    async def main() -> None:
        asyncio.get_running_loop().set_default_executor(ex)
        await coro_fn()

    asyncio.run(main())
    return ex.jobs


def test_concurrent_writers_share_one_commit_and_each_waits_for_it():
    batches: list[list[int]] = []
    committed: set[int] = set()

    def blocking(items: list[int]) -> None:
        time.sleep(0.05)  # a slow commit (fsync): nobody may return before it is done
        batches.append(items)
        committed.update(items)

    async def writer(i: int) -> None:
        await gc.submit(i)
        assert i in committed  # durable when submit returns

    async def go() -> None:
        await asyncio.gather(*(writer(i) for i in range(50)))
        await writer(50)

    gc: GroupCommit[int] = GroupCommit(blocking)
    asyncio.run(go())
    assert sorted(i for b in batches for i in b) == list(range(51))
    assert len(batches) == 2 and gc.flushes == 2  # 50 in one transaction, then the last one


def test_a_failing_item_fails_only_its_own_caller():
    def blocking(items: list[str]) -> None:
        if "bad" in items:
            raise sqlite3.IntegrityError("bad row")

    async def go() -> list[Any]:
        return await asyncio.gather(
            *(gc.submit(x) for x in ("a", "bad", "c")), return_exceptions=True
        )

    gc: GroupCommit[str] = GroupCommit(blocking, lambda items: False)
    out = asyncio.run(go())
    assert out[0] is None and out[2] is None
    assert isinstance(out[1], sqlite3.IntegrityError)


def test_a_cancelled_writer_still_gets_its_row_written(tmp_path: Path):
    ledger = Ledger(tmp_path / "ledger.db", sync="full")  # full: every flush in a thread

    async def go() -> None:
        t = asyncio.ensure_future(ledger.write(UsageRow("req_cancelled")))
        await asyncio.sleep(0)  # queued
        t.cancel()
        await ledger.write(UsageRow("req_after"))  # flushed after the first

    asyncio.run(go())
    assert {r["request_id"] for r in ledger.rows()} == {"req_cancelled", "req_after"}
    ledger.close()


def test_ledger_rows_are_committed_inline_when_nothing_waits(tmp_path: Path):
    ledger = Ledger(tmp_path / "ledger.db")

    async def go() -> None:
        await asyncio.gather(
            *(ledger.write(UsageRow(f"req_{i}", prompt_tokens=i)) for i in range(20))
        )
        with sqlite3.connect(tmp_path / "ledger.db") as other:  # committed, visible to anyone
            assert other.execute("SELECT COUNT(*), SUM(total_tokens) FROM usage").fetchone() == (
                20,
                190,
            )

    assert run_counting(go) == 0
    ledger.close()


def _hold_write_lock(path: Path) -> sqlite3.Connection:
    """Another process's writer, mid-transaction (WAL: readers still read)."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("SELECT 1")
    return other


def test_a_locked_ledger_waits_in_a_thread_while_the_loop_keeps_serving(tmp_path: Path):
    path = tmp_path / "ledger.db"
    ledger = Ledger(path)
    other = _hold_write_lock(path)

    async def go() -> None:
        write = asyncio.ensure_future(ledger.write(UsageRow("req_locked")))
        t0 = time.perf_counter()
        await asyncio.sleep(0.2)  # the loop is not blocked by the waiting write
        assert time.perf_counter() - t0 < 1.0
        assert not write.done()  # not answered before it is durable
        other.execute("COMMIT")
        await asyncio.wait_for(write, 10)

    assert run_counting(go) >= 1
    assert ledger.get("req_locked") is not None
    other.close()
    ledger.close()


def test_store_admission_is_inline_unless_the_database_is_locked(tmp_path: Path):
    path = tmp_path / "state.db"
    store = SQLiteStore(path)
    hold = Hold("req_1", "gw-a", 30.0, ["t"], 10)

    async def unlocked() -> None:
        assert (await store.admit([Counter("t", 100, 10, 60)], hold)).ok
        await store.settle([("t", -4, 60)], hold="req_1")
        await store.kv_put("k", {"v": 1})
        assert await store.kv_get("k") == ({"v": 1}, 1)
        assert await store.peek(["t"]) == [6]

    assert run_counting(unlocked) == 0
    other = _hold_write_lock(path)

    async def locked() -> None:
        admit = asyncio.ensure_future(store.admit([Counter("t", 100, 10, 60)]))
        await asyncio.sleep(0.2)
        assert not admit.done()
        assert await store.peek(["t"]) == [6]  # reads do not wait for a writer
        other.execute("COMMIT")
        assert (await asyncio.wait_for(admit, 10)).ok
        await store.close()

    assert run_counting(locked) >= 1
    other.close()


@pytest.mark.parametrize(("size", "threaded"), [(200, False), (INLINE_BODY_BYTES + 1, True)])
def test_small_bodies_are_counted_inline_large_ones_in_a_thread(size: int, threaded: bool):
    cfg = default_config()
    alias = cfg.alias("genaiops-local")
    assert alias is not None
    body = {"model": "genaiops-local", "messages": [{"role": "user", "content": "hello there"}]}
    bounds: list[int] = []

    async def go() -> None:
        bounds.append(await admission_tokens(cfg, alias, body, body_bytes=size))
        bounds.append(await admission_tokens(cfg, alias, body))  # size unknown: a thread

    assert run_counting(go) == (2 if threaded else 1)
    assert bounds[0] == bounds[1] > 0


def test_inline_commits_checkpoint_in_a_thread_and_the_wal_stays_bounded(tmp_path: Path):
    """The no-wait connection never checkpoints inside a commit (an fsync on the loop); the
    checkpoints it skips run in a worker thread, so the WAL is still started over."""
    ledger = Ledger(tmp_path / "ledger.db")
    n = 3 * CHECKPOINT_EVERY * 5  # unbounded, the WAL would reach ~12 KB x n (~37 MB)

    async def go() -> None:
        for i in range(n):
            await ledger.write(UsageRow(f"req_{i}", key_id="k", safety={"prompt": {}}))

    assert run_counting(go) >= n // CHECKPOINT_EVERY - 1  # the checkpoints, not the writes
    assert (tmp_path / "ledger.db-wal").stat().st_size < 20e6
    assert len(ledger.rows(limit=n + 1)) == n
    ledger.close()
