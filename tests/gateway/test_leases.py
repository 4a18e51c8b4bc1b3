"""Leases in one process (the fast variant of the kill -9 test in test_reliability.py): a keeper
saves stream progress, another owner's keeper reclaims a stopped owner's holds and rows."""

from __future__ import annotations

import asyncio
import sqlite3

from gateway.leases import LeaseKeeper
from gateway.ledger import Ledger, UsageRow
from gateway.state import Counter, Hold, StateStore


def test_stopped_owner_is_reclaimed_by_another_keeper(store: StateStore, tmp_path):
    ledger = Ledger(tmp_path / "ledger.db")

    async def go():
        a = LeaseKeeper(store, ledger, "gw-a", lease_s=0.3, interval_s=0.05)
        b = LeaseKeeper(store, ledger, "gw-b", lease_s=0.3, interval_s=0.05)
        hold = Hold("req_1", "gw-a", 0.3, ["q"], 500)
        assert (await store.admit([Counter("q", 10_000, 500, 3600)], hold)).ok
        ledger.write_sync(UsageRow("req_1", outcome="streaming", stream=True, owner="gw-a"))
        delivered = [(20, 0)]
        a.track("req_1", "req_1", lambda: delivered[0])
        delivered[0] = (20, 33)
        await a.tick()
        row = ledger.get("req_1")
        assert row is not None and row["total_tokens"] == 53 and row["outcome"] == "streaming"
        assert await b.tick() == []  # a is alive
        await asyncio.sleep(0.45)  # a stops (kill -9): no more renewals
        assert await b.tick() == ["req_1"]
        assert await store.peek(["q"]) == [53]  # delivered tokens stay charged, the rest back
        row = ledger.get("req_1")
        assert row is not None and row["outcome"] == "interrupted" and row["total_tokens"] == 53
        await store.close()

    asyncio.run(go())
    ledger.close()


def test_ledger_from_before_leases_gains_its_owner_column(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # the schema as it was
        db.execute(
            "CREATE TABLE usage (request_id TEXT PRIMARY KEY, ts REAL NOT NULL, key_id TEXT, "
            "key_prefix TEXT, team TEXT, alias TEXT, deployment TEXT, prompt_tokens INTEGER "
            "NOT NULL DEFAULT 0, completion_tokens INTEGER NOT NULL DEFAULT 0, total_tokens "
            "INTEGER NOT NULL DEFAULT 0, latency_ms REAL, status INTEGER, outcome TEXT, stream "
            "INTEGER NOT NULL DEFAULT 0, error_code TEXT, safety TEXT)"
        )
        db.execute("INSERT INTO usage(request_id, ts, outcome) VALUES('old', 1, 'ok')")
    ledger = Ledger(path)
    ledger.write_sync(UsageRow("new", outcome="streaming", owner="gw-a", stream=True))
    ledger.progress_sync([("new", 7, 5)])
    assert ledger.streaming_owners_sync(exclude="gw-b") == ["gw-a"]
    assert ledger.interrupt_sync(["gw-a"], []) == 1
    row = ledger.get("new")
    assert row is not None and row["outcome"] == "interrupted" and row["total_tokens"] == 12
    assert ledger.get("old") is not None
    ledger.close()
