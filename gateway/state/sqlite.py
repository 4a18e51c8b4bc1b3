"""SQLite (WAL) state store: one host, any number of gateway processes sharing the file.

Every admission is one ``BEGIN IMMEDIATE`` transaction, so concurrent admissions from threads or
processes serialise on the database write lock and can never overshoot a limit.  Calls run in a
worker thread (``asyncio.to_thread``); each thread keeps its own connection.

    >>> store = SQLiteStore("/tmp/state.db")                         # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from gateway.state.base import AdmitResult, Counter
from gateway.state.connections import ThreadConnections

__all__ = ["SQLiteStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS counters (bucket TEXT PRIMARY KEY, used INTEGER NOT NULL,
                                     expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT NOT NULL, version INTEGER NOT NULL);
"""


class SQLiteStore:
    """:class:`~gateway.state.base.StateStore` on one SQLite file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._conns = ThreadConnections(self.path)
        self._last_gc = 0.0
        self._conn().executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        return self._conns.get()

    # -- counters ---------------------------------------------------------------------------
    def _admit_sync_locked(self, counters: list[Counter]) -> AdmitResult:
        now = time.time()
        c = self._conn()
        c.execute("BEGIN IMMEDIATE")
        try:
            used: list[int] = []
            for i, ctr in enumerate(counters):
                row = c.execute(
                    "SELECT used, expires FROM counters WHERE bucket=?", (ctr.bucket,)
                ).fetchone()
                cur = row[0] if row and row[1] > now else 0
                if cur + ctr.amount > ctr.limit:
                    c.execute("ROLLBACK")
                    return AdmitResult(ok=False, used=[*used, cur], failed=i)
                used.append(cur)
            after = []
            for ctr, cur in zip(counters, used, strict=True):
                c.execute(
                    "INSERT INTO counters(bucket, used, expires) VALUES(?,?,?) "
                    "ON CONFLICT(bucket) DO UPDATE SET used=?, "
                    "expires=CASE WHEN expires > ? THEN expires ELSE excluded.expires END",
                    (ctr.bucket, cur + ctr.amount, now + ctr.ttl_s, cur + ctr.amount, now),
                )
                after.append(cur + ctr.amount)
            if now - self._last_gc > 60:
                self._last_gc = now
                c.execute("DELETE FROM counters WHERE expires < ?", (now - 60,))
            c.execute("COMMIT")
            return AdmitResult(ok=True, used=after)
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise

    def admit_sync(self, counters: list[Counter]) -> AdmitResult:
        with self._conns.write_lock:
            return self._admit_sync_locked(counters)

    def _settle_sync_locked(self, deltas: list[tuple[str, int, float]]) -> None:
        now = time.time()
        c = self._conn()
        c.execute("BEGIN IMMEDIATE")
        try:
            for bucket, delta, ttl in deltas:
                c.execute(
                    "INSERT INTO counters(bucket, used, expires) VALUES(?, MAX(0, ?), ?) "
                    "ON CONFLICT(bucket) DO UPDATE SET used=MAX(0, used + ?)",
                    (bucket, delta, now + ttl, delta),
                )
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise

    def settle_sync(self, deltas: list[tuple[str, int, float]]) -> None:
        with self._conns.write_lock:
            return self._settle_sync_locked(deltas)

    def peek_sync(self, buckets: list[str]) -> list[int]:
        now = time.time()
        out = []
        for b in buckets:
            row = (
                self._conn()
                .execute("SELECT used FROM counters WHERE bucket=? AND expires > ?", (b, now))
                .fetchone()
            )
            out.append(row[0] if row else 0)
        return out

    async def admit(self, counters: list[Counter]) -> AdmitResult:
        return await asyncio.to_thread(self.admit_sync, counters)

    async def settle(self, deltas: list[tuple[str, int, float]]) -> None:
        await asyncio.to_thread(self.settle_sync, deltas)

    async def peek(self, buckets: list[str]) -> list[int]:
        return await asyncio.to_thread(self.peek_sync, buckets)

    # -- key-value --------------------------------------------------------------------------
    def kv_get_sync(self, key: str) -> tuple[dict[str, Any] | None, int]:
        row = self._conn().execute("SELECT v, version FROM kv WHERE k=?", (key,)).fetchone()
        return (json.loads(row[0]), row[1]) if row else (None, 0)

    def _kv_put_sync_locked(self, key: str, value: dict[str, Any]) -> int:
        row = (
            self._conn()
            .execute(
                "INSERT INTO kv(k, v, version) VALUES(?,?,1) ON CONFLICT(k) DO UPDATE SET "
                "v=excluded.v, version=version+1 RETURNING version",
                (key, json.dumps(value)),
            )
            .fetchone()
        )
        return int(row[0])

    def kv_put_sync(self, key: str, value: dict[str, Any]) -> int:
        with self._conns.write_lock:
            return self._kv_put_sync_locked(key, value)

    def _kv_cas_sync_locked(self, key: str, value: dict[str, Any], version: int) -> bool:
        c = self._conn()
        if version == 0:
            cur = c.execute(
                "INSERT OR IGNORE INTO kv(k, v, version) VALUES(?,?,1)", (key, json.dumps(value))
            )
        else:
            cur = c.execute(
                "UPDATE kv SET v=?, version=version+1 WHERE k=? AND version=?",
                (json.dumps(value), key, version),
            )
        return cur.rowcount == 1

    def kv_cas_sync(self, key: str, value: dict[str, Any], version: int) -> bool:
        with self._conns.write_lock:
            return self._kv_cas_sync_locked(key, value, version)

    def kv_list_sync(self, prefix: str) -> list[tuple[str, dict[str, Any]]]:
        rows = (
            self._conn()
            .execute(
                "SELECT k, v FROM kv WHERE substr(k, 1, ?) = ? ORDER BY k", (len(prefix), prefix)
            )
            .fetchall()
        )
        return [(k, json.loads(v)) for k, v in rows]

    def _kv_delete_sync_locked(self, key: str) -> None:
        self._conn().execute("DELETE FROM kv WHERE k=?", (key,))

    def kv_delete_sync(self, key: str) -> None:
        with self._conns.write_lock:
            return self._kv_delete_sync_locked(key)

    async def kv_get(self, key: str) -> tuple[dict[str, Any] | None, int]:
        return await asyncio.to_thread(self.kv_get_sync, key)

    async def kv_put(self, key: str, value: dict[str, Any]) -> int:
        return await asyncio.to_thread(self.kv_put_sync, key, value)

    async def kv_cas(self, key: str, value: dict[str, Any], version: int) -> bool:
        return await asyncio.to_thread(self.kv_cas_sync, key, value, version)

    async def kv_list(self, prefix: str) -> list[tuple[str, dict[str, Any]]]:
        return await asyncio.to_thread(self.kv_list_sync, prefix)

    async def kv_delete(self, key: str) -> None:
        await asyncio.to_thread(self.kv_delete_sync, key)

    async def close(self) -> None:
        self._conns.close()
