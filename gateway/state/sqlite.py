"""SQLite (WAL) state store: one host, any number of gateway processes sharing the file.

Every admission is one ``BEGIN IMMEDIATE`` transaction, so concurrent admissions from threads or
processes serialise on the database write lock and can never overshoot a limit.  Calls run inline
on the event loop (a statement takes tens of microseconds; a thread hop costs more) unless they
would have to wait — another thread of this process writing, or the database locked by another
process — and then in a worker thread that waits (:meth:`ThreadConnections.inline`).

    >>> store = SQLiteStore("/tmp/state.db")                         # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from gateway.state.base import AdmitResult, Counter, Hold
from gateway.state.connections import ThreadConnections

T = TypeVar("T")

__all__ = ["SQLiteStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS counters (bucket TEXT PRIMARY KEY, used INTEGER NOT NULL,
                                     expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT NOT NULL, version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS holds (id TEXT PRIMARY KEY, owner TEXT NOT NULL,
  amount INTEGER NOT NULL, charge INTEGER NOT NULL DEFAULT 0, buckets TEXT NOT NULL,
  ttl REAL NOT NULL, state TEXT NOT NULL DEFAULT 'active', expires REAL NOT NULL);
CREATE INDEX IF NOT EXISTS holds_owner ON holds(owner, state);
CREATE TABLE IF NOT EXISTS owners (owner TEXT PRIMARY KEY, expires REAL NOT NULL);
"""
_TOMBSTONE_S = 86400.0  # a reclaimed hold is remembered this long for its late settlement


class SQLiteStore:
    """:class:`~gateway.state.base.StateStore` on one SQLite file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._conns = ThreadConnections(self.path)
        self._last_gc = 0.0
        self._conn().executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        return self._conns.get()

    async def _run(self, op: Callable[..., T], *args: Any, write: bool = True) -> T:
        return await self._conns.run(op, *args, write=write)

    # -- counters ---------------------------------------------------------------------------
    def _admit_op(
        self, c: sqlite3.Connection, counters: list[Counter], hold: Hold | None
    ) -> AdmitResult:
        now = time.time()
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
            if hold is not None:
                ttl = max((ctr.ttl_s for ctr in counters), default=60.0)
                c.execute(
                    "INSERT OR REPLACE INTO holds(id, owner, amount, charge, buckets, ttl, state, "
                    "expires) VALUES(?,?,?,0,?,?,'active',?)",
                    (hold.id, hold.owner, hold.amount, json.dumps(hold.buckets), ttl,
                     now + _TOMBSTONE_S),
                )  # fmt: skip
                self._renew(c, hold.owner, now + hold.lease_s)
            if now - self._last_gc > 60:
                self._last_gc = now
                c.execute("DELETE FROM counters WHERE expires < ?", (now - 60,))
                c.execute("DELETE FROM holds WHERE state='reclaimed' AND expires < ?", (now,))
                c.execute("DELETE FROM owners WHERE expires < ?", (now - _TOMBSTONE_S,))
            c.execute("COMMIT")
            return AdmitResult(ok=True, used=after)
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise

    @staticmethod
    def _renew(c: sqlite3.Connection, owner: str, until: float) -> None:
        c.execute(
            "INSERT INTO owners(owner, expires) VALUES(?,?) ON CONFLICT(owner) DO UPDATE SET "
            "expires=MAX(expires, excluded.expires)",
            (owner, until),
        )

    @staticmethod
    def _add(c: sqlite3.Connection, bucket: str, delta: int, ttl: float, now: float) -> None:
        c.execute(
            "INSERT INTO counters(bucket, used, expires) VALUES(?, MAX(0, ?), ?) "
            "ON CONFLICT(bucket) DO UPDATE SET used=MAX(0, used + ?)",
            (bucket, delta, now + ttl, delta),
        )

    def _settle_op(
        self, c: sqlite3.Connection, deltas: list[tuple[str, int, float]], hold: str | None
    ) -> None:
        now = time.time()
        c.execute("BEGIN IMMEDIATE")
        try:
            if hold is not None:
                row = c.execute(
                    "SELECT state, amount, charge, buckets, ttl FROM holds WHERE id=?", (hold,)
                ).fetchone()
                if row is not None and row[0] == "reclaimed":
                    for b in json.loads(row[3]):  # the reclaim gave back amount - charge
                        self._add(c, b, row[1] - row[2], row[4], now)
                c.execute("DELETE FROM holds WHERE id=?", (hold,))
            for bucket, delta, ttl in deltas:
                self._add(c, bucket, delta, ttl, now)
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise

    def _settle_then(
        self, deltas: list[tuple[str, int, float]], hold: str | None, then: Callable[[], None]
    ) -> None:
        if deltas or hold is not None:
            with self._conns.write_lock:
                self._settle_op(self._conn(), deltas, hold)
        then()

    @staticmethod
    def _progress_op(
        c: sqlite3.Connection, owner: str, lease_s: float, charges: dict[str, int]
    ) -> None:
        c.execute("BEGIN IMMEDIATE")
        try:
            SQLiteStore._renew(c, owner, time.time() + lease_s)
            c.executemany(
                "UPDATE holds SET charge=? WHERE id=? AND state='active'",
                [(v, k) for k, v in charges.items()],
            )
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise

    @staticmethod
    def _any_expired_op(c: sqlite3.Connection) -> bool:
        expired = (
            "SELECT 1 FROM holds h WHERE state='active' AND NOT EXISTS (SELECT 1 FROM owners o "
            "WHERE o.owner=h.owner AND o.expires > ?) LIMIT 1"
        )
        return c.execute(expired, (time.time(),)).fetchone() is not None

    def _reclaim_sync(self) -> list[str]:
        now = time.time()
        c = self._conn()
        with self._conns.write_lock:
            c.execute("BEGIN IMMEDIATE")
            try:
                rows = c.execute(
                    "SELECT id, amount, charge, buckets, ttl FROM holds h WHERE state='active' "
                    "AND NOT EXISTS (SELECT 1 FROM owners o WHERE o.owner=h.owner "
                    "AND o.expires > ?)",
                    (now,),
                ).fetchall()
                for _, amount, charge, buckets, ttl in rows:
                    for b in json.loads(buckets):
                        self._add(c, b, charge - amount, ttl, now)
                c.executemany(
                    "UPDATE holds SET state='reclaimed', expires=? WHERE id=?",
                    [(now + _TOMBSTONE_S, r[0]) for r in rows],
                )
                c.execute("COMMIT")
            except BaseException:
                if c.in_transaction:
                    c.execute("ROLLBACK")
                raise
        return [r[0] for r in rows]

    @staticmethod
    def _owners_alive_op(c: sqlite3.Connection, owners: list[str]) -> set[str]:
        now = time.time()
        return {
            o
            for o in owners
            if c.execute("SELECT 1 FROM owners WHERE owner=? AND expires > ?", (o, now)).fetchone()
        }

    @staticmethod
    def _peek_op(c: sqlite3.Connection, buckets: list[str]) -> list[int]:
        now = time.time()
        out = []
        for b in buckets:
            row = c.execute(
                "SELECT used FROM counters WHERE bucket=? AND expires > ?", (b, now)
            ).fetchone()
            out.append(row[0] if row else 0)
        return out

    async def admit(self, counters: list[Counter], hold: Hold | None = None) -> AdmitResult:
        return await self._run(self._admit_op, counters, hold)

    async def settle(
        self,
        deltas: list[tuple[str, int, float]],
        *,
        hold: str | None = None,
        then: Callable[[], None] | None = None,
    ) -> None:
        if then is not None:  # blocking work to follow: one thread hop for both
            await asyncio.to_thread(self._settle_then, deltas, hold, then)
        elif deltas or hold is not None:
            await self._run(self._settle_op, deltas, hold)

    async def progress(self, owner: str, lease_s: float, charges: dict[str, int]) -> None:
        await self._run(self._progress_op, owner, lease_s, charges)

    async def reclaim(self) -> list[str]:
        if not await self._run(self._any_expired_op, write=False):
            return []  # the usual case: no write transaction (and no thread) every round
        return await asyncio.to_thread(self._reclaim_sync)

    async def owners_alive(self, owners: list[str]) -> set[str]:
        return await self._run(self._owners_alive_op, owners, write=False)

    async def peek(self, buckets: list[str]) -> list[int]:
        return await self._run(self._peek_op, buckets, write=False)

    # -- key-value --------------------------------------------------------------------------
    @staticmethod
    def _kv_get_op(c: sqlite3.Connection, key: str) -> tuple[dict[str, Any] | None, int]:
        row = c.execute("SELECT v, version FROM kv WHERE k=?", (key,)).fetchone()
        return (json.loads(row[0]), row[1]) if row else (None, 0)

    @staticmethod
    def _kv_put_op(c: sqlite3.Connection, key: str, value: dict[str, Any]) -> int:
        row = c.execute(
            "INSERT INTO kv(k, v, version) VALUES(?,?,1) ON CONFLICT(k) DO UPDATE SET "
            "v=excluded.v, version=version+1 RETURNING version",
            (key, json.dumps(value)),
        ).fetchone()
        return int(row[0])

    @staticmethod
    def _kv_cas_op(c: sqlite3.Connection, key: str, value: dict[str, Any], version: int) -> bool:
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

    @staticmethod
    def _kv_list_op(c: sqlite3.Connection, prefix: str) -> list[tuple[str, dict[str, Any]]]:
        rows = c.execute(
            "SELECT k, v FROM kv WHERE substr(k, 1, ?) = ? ORDER BY k", (len(prefix), prefix)
        ).fetchall()
        return [(k, json.loads(v)) for k, v in rows]

    @staticmethod
    def _kv_delete_op(c: sqlite3.Connection, key: str) -> None:
        c.execute("DELETE FROM kv WHERE k=?", (key,))

    async def kv_get(self, key: str) -> tuple[dict[str, Any] | None, int]:
        return await self._run(self._kv_get_op, key, write=False)

    async def kv_put(self, key: str, value: dict[str, Any]) -> int:
        return await self._run(self._kv_put_op, key, value)

    async def kv_cas(self, key: str, value: dict[str, Any], version: int) -> bool:
        return await self._run(self._kv_cas_op, key, value, version)

    async def kv_list(self, prefix: str) -> list[tuple[str, dict[str, Any]]]:
        return await self._run(self._kv_list_op, prefix, write=False)

    async def kv_delete(self, key: str) -> None:
        await self._run(self._kv_delete_op, key)

    async def close(self) -> None:
        self._conns.close()
