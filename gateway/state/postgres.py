"""PostgreSQL state store: several gateway replicas share keys, counters and holds on one server.

Every call is one transaction on a connection from a psycopg 3 async pool.  Admission is
all-or-nothing under row locks, one of two ways (``counter_lock``; ``bench/pg_state.py``
measures both):

* ``"update"`` (default): one call of ``gw_admit`` (a PL/pgSQL function of the migrations):
  a conditional upsert over all buckets in bucket order, ``INSERT .. ON CONFLICT DO UPDATE SET
  used = used + n WHERE used + n <= limit RETURNING``, rolled back unless every bucket had room,
  then the hold and the owner's lease.  One round trip; the row locks are held only while the
  server runs it (no client round trip inside the transaction).
* ``"for_update"``: ``BEGIN``, create missing rows, ``SELECT .. ORDER BY bucket FOR UPDATE``,
  decide in Python, write back, ``COMMIT``: four round trips with the locks held across three.

Settlement is one round trip too (``BEGIN``, release the hold, add the deltas, ``COMMIT`` sent
together in pipeline mode).  Locks are always taken in bucket order, so concurrent admissions
over overlapping buckets cannot deadlock.  The tables come from the Alembic migrations in
:mod:`gateway.migrations`.

    >>> store = PostgresStore("postgresql://gw@db/gw")                   # doctest: +SKIP
    >>> await store.admit([Counter("k1:tpm:2921", 1000, 300, 60)])        # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

from psycopg import AsyncConnection
from psycopg.types.json import Json
from psycopg_pool import AsyncConnectionPool

from gateway.state.base import AdmitResult, Counter, Hold
from gateway.state.pg_ledger import pg_text

__all__ = ["PostgresStore"]

_TOMBSTONE_S = 86400.0  # a reclaimed hold is remembered this long for its late settlement
_GC_EVERY_S = 60.0

# gw_admit (migration 0001): the conditional upsert, the hold and the lease in one call
_ADMIT = (
    "SELECT gw_admit(%s::text[], %s::bigint[], %s::bigint[], %s::float8[], %s, %s, %s, %s, "
    "%s::text[], %s, %s, %s)"
)

# A settled hold that was reclaimed meanwhile gets back what the reclaim gave back.
_RELEASE = """
WITH d AS (DELETE FROM holds WHERE id = %(hold)s RETURNING state, amount, charge, buckets, ttl),
x AS (SELECT b AS bucket, sum(amount - charge) AS delta, max(ttl) AS ttl
        FROM d, unnest(d.buckets) AS b WHERE state = 'reclaimed' GROUP BY b)
INSERT INTO counters AS c (bucket, used, expires)
SELECT bucket, GREATEST(0, delta), %(now)s + ttl FROM x ORDER BY bucket
ON CONFLICT (bucket) DO UPDATE SET used = GREATEST(0, c.used + excluded.used)
"""

_ADD = """
INSERT INTO counters AS c (bucket, used, expires)
SELECT v.bucket, v.delta, %(now)s + v.ttl
  FROM unnest(%(buckets)s::text[], %(deltas)s::bigint[], %(ttls)s::float8[])
       AS v(bucket, delta, ttl)
 ORDER BY v.bucket
ON CONFLICT (bucket) DO UPDATE SET used = GREATEST(0, c.used + excluded.used)
"""
_CLAMP_NEW = "UPDATE counters SET used = 0 WHERE bucket = ANY(%s) AND used < 0"


def _merge(deltas: list[tuple[str, int, float]]) -> dict[str, tuple[int, float]]:
    """One ``(delta, ttl)`` per bucket (an upsert may touch a row only once)."""
    out: dict[str, tuple[int, float]] = {}
    for b, d, ttl in deltas:
        prev = out.get(b)
        out[b] = (prev[0] + int(d), prev[1]) if prev else (int(d), float(ttl))
    return out


class PostgresStore:
    """:class:`~gateway.state.base.StateStore` on PostgreSQL (schema: ``genaiops gateway
    migrate``).  ``pool_size`` connections at most; a caller waits ``timeout_s`` for one, then
    gets :class:`psycopg_pool.PoolTimeout` (the gateway answers 503 ``state_unavailable``)."""

    def __init__(
        self,
        dsn: str,
        *,
        pool_size: int = 10,
        timeout_s: float = 5.0,
        counter_lock: Literal["update", "for_update"] = "update",
    ):
        self._dsn = dsn
        self.pool_size = pool_size
        self.timeout_s = timeout_s
        self.counter_lock = counter_lock
        self._pool: AsyncConnectionPool[AsyncConnection[Any]] | None = None
        self._opening: asyncio.Lock | None = None
        # callers queue here for one of the pool's connections, without a deadline (1,000
        # concurrent requests wait their turn); the pool's own timeout then only runs out when
        # no connection can be made at all: the database is down → 503
        self._slots = asyncio.Semaphore(pool_size)
        self._last_gc = 0.0

    async def _open(self) -> AsyncConnectionPool[AsyncConnection[Any]]:
        if self._pool is not None:
            return self._pool
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._pool is None:
                pool: AsyncConnectionPool[AsyncConnection[Any]] = AsyncConnectionPool(
                    self._dsn,
                    min_size=1,
                    max_size=self.pool_size,
                    timeout=self.timeout_s,
                    reconnect_timeout=self.timeout_s,
                    kwargs={"autocommit": True},  # one statement, one transaction
                    open=False,
                    name="genaiops-state",
                )
                await pool.open(wait=False)
                self._pool = pool
        return self._pool

    @contextlib.asynccontextmanager
    async def _conn(self) -> AsyncIterator[AsyncConnection[Any]]:
        """A connection in autocommit mode: each statement is a transaction of its own;
        ``conn.transaction()`` (inside ``conn.pipeline()``: still one round trip) for more."""
        pool = await self._open()
        async with self._slots, pool.connection() as conn:
            yield conn

    # -- counters ---------------------------------------------------------------------------
    async def admit(self, counters: list[Counter], hold: Hold | None = None) -> AdmitResult:
        if any("\x00" in c.bucket for c in counters):  # PostgreSQL text holds no NUL
            counters = [dataclasses.replace(c, bucket=pg_text(c.bucket)) for c in counters]
            if hold is not None:
                hold = dataclasses.replace(hold, buckets=[pg_text(b) for b in hold.buckets])
        now = time.time()
        async with self._conn() as conn:
            if self.counter_lock == "update" and len({c.bucket for c in counters}) == len(counters):
                res = await self._admit_upsert(conn, counters, hold, now)
            else:
                async with conn.transaction():
                    res = await self._admit_locked(conn, counters, now)
                    if res.ok and hold is not None:  # (refused: nothing but empty rows written)
                        await self._record_hold(conn, counters, hold, now)
            if now - self._last_gc > _GC_EVERY_S:
                self._last_gc = now
                async with conn.pipeline():
                    await conn.execute("DELETE FROM counters WHERE expires < %s", (now - 60,))
                    await conn.execute(
                        "DELETE FROM holds WHERE state='reclaimed' AND expires < %s", (now,)
                    )
                    await conn.execute(
                        "DELETE FROM owners WHERE expires < %s", (now - _TOMBSTONE_S,)
                    )
        return res

    async def _admit_upsert(
        self, conn: AsyncConnection[Any], counters: list[Counter], hold: Hold | None, now: float
    ) -> AdmitResult:
        ttl = max((c.ttl_s for c in counters), default=60.0)
        cur = await conn.execute(
            _ADMIT,
            (
                [c.bucket for c in counters],
                [c.amount for c in counters],
                [c.limit for c in counters],
                [c.ttl_s for c in counters],
                now,
                hold.id if hold else None,
                hold.owner if hold else None,
                hold.amount if hold else None,
                hold.buckets if hold else None,
                ttl,
                now + hold.lease_s if hold else None,
                now + _TOMBSTONE_S,
            ),
        )
        row = await cur.fetchone()
        if row is not None and row[0] is not None:
            return AdmitResult(ok=True, used=[int(u) for u in row[0]])
        used = await self._peek(conn, [c.bucket for c in counters], now)  # refused: which one
        for i, (c, u) in enumerate(zip(counters, used, strict=True)):
            if u + c.amount > c.limit:
                return AdmitResult(ok=False, used=used[: i + 1], failed=i)
        return AdmitResult(ok=False, used=used[:1], failed=0)  # room was freed meanwhile

    async def _admit_locked(
        self, conn: AsyncConnection[Any], counters: list[Counter], now: float
    ) -> AdmitResult:
        ttl_of = {c.bucket: c.ttl_s for c in counters}
        names = sorted(ttl_of)
        await conn.execute(
            "INSERT INTO counters(bucket, used, expires) SELECT b, 0, %s + t "
            "FROM unnest(%s::text[], %s::float8[]) AS v(b, t) ORDER BY b "
            "ON CONFLICT (bucket) DO NOTHING",
            (now, names, [ttl_of[b] for b in names]),
        )
        cur = await conn.execute(
            "SELECT bucket, used, expires FROM counters WHERE bucket = ANY(%s) "
            "ORDER BY bucket FOR UPDATE",
            (names,),
        )
        state = {str(b): (int(u) if e > now else 0, float(e)) for b, u, e in await cur.fetchall()}
        used: list[int] = []
        for i, c in enumerate(counters):
            value, exp = state[c.bucket]
            if value + c.amount > c.limit:
                return AdmitResult(ok=False, used=[*used, value], failed=i)
            used.append(value)
            state[c.bucket] = (value + c.amount, exp if exp > now else now + c.ttl_s)
        await conn.execute(
            "UPDATE counters AS c SET used = v.used, expires = v.expires "
            "FROM unnest(%s::text[], %s::bigint[], %s::float8[]) AS v(bucket, used, expires) "
            "WHERE c.bucket = v.bucket",
            (names, [state[b][0] for b in names], [state[b][1] for b in names]),
        )
        return AdmitResult(
            ok=True, used=[u + c.amount for u, c in zip(used, counters, strict=True)]
        )

    @classmethod
    async def _record_hold(
        cls, conn: AsyncConnection[Any], counters: list[Counter], hold: Hold, now: float
    ) -> None:
        ttl = max((c.ttl_s for c in counters), default=60.0)
        await conn.execute(
            "INSERT INTO holds(id, owner, amount, charge, buckets, ttl, state, expires)"
            " VALUES(%s,%s,%s,0,%s,%s,'active',%s) ON CONFLICT (id) DO UPDATE SET "
            "owner=excluded.owner, amount=excluded.amount, charge=0, "
            "buckets=excluded.buckets, ttl=excluded.ttl, state='active', "
            "expires=excluded.expires",
            (hold.id, hold.owner, hold.amount, hold.buckets, ttl, now + _TOMBSTONE_S),
        )
        await cls._renew(conn, hold.owner, now + hold.lease_s)

    @staticmethod
    async def _renew(conn: AsyncConnection[Any], owner: str, until: float) -> None:
        await conn.execute(
            "INSERT INTO owners AS o (owner, expires) VALUES(%s,%s) ON CONFLICT (owner) "
            "DO UPDATE SET expires = GREATEST(o.expires, excluded.expires)",
            (owner, until),
        )

    @staticmethod
    async def _add(
        conn: AsyncConnection[Any], merged: dict[str, tuple[int, float]], now: float
    ) -> None:
        names = sorted(merged)
        await conn.execute(
            _ADD,
            {
                "now": now,
                "buckets": names,
                "deltas": [merged[b][0] for b in names],
                "ttls": [merged[b][1] for b in names],
            },
        )
        await conn.execute(_CLAMP_NEW, (names,))

    async def settle(
        self,
        deltas: list[tuple[str, int, float]],
        *,
        hold: str | None = None,
        then: Callable[[], None] | None = None,
    ) -> None:
        if deltas or hold is not None:
            now = time.time()
            merged = _merge([(pg_text(b), d, t) for b, d, t in deltas])
            async with self._conn() as conn, conn.pipeline(), conn.transaction():
                if hold is not None:  # one round trip: BEGIN, release, add, COMMIT
                    await conn.execute(_RELEASE, {"hold": hold, "now": now})
                if merged:
                    await self._add(conn, merged, now)
        if then is not None:
            await asyncio.to_thread(then)

    async def progress(self, owner: str, lease_s: float, charges: dict[str, int]) -> None:
        async with self._conn() as conn, conn.pipeline(), conn.transaction():
            await self._renew(conn, owner, time.time() + lease_s)
            if charges:
                await conn.execute(
                    "UPDATE holds AS h SET charge = v.charge FROM unnest(%s::text[], "
                    "%s::bigint[]) AS v(id, charge) WHERE h.id = v.id AND h.state = 'active'",
                    (list(charges), [int(v) for v in charges.values()]),
                )

    _EXPIRED = (
        "FROM holds h WHERE state='active' AND NOT EXISTS (SELECT 1 FROM owners o "
        "WHERE o.owner = h.owner AND o.expires > %s)"
    )

    async def reclaim(self) -> list[str]:
        now = time.time()
        async with self._conn() as conn:
            cur = await conn.execute(f"SELECT 1 {self._EXPIRED} LIMIT 1", (now,))
            if await cur.fetchone() is None:
                return []  # the usual case: nothing locked, nothing written
            async with conn.transaction():
                cur = await conn.execute(
                    f"SELECT id, amount, charge, buckets, ttl {self._EXPIRED} ORDER BY id "
                    "FOR UPDATE SKIP LOCKED",
                    (now,),
                )
                rows = await cur.fetchall()
                if not rows:
                    return []
                gives = [(b, int(c) - int(a), float(t)) for _, a, c, bs, t in rows for b in bs]
                if gives:
                    await self._add(conn, _merge(gives), now)
                await conn.execute(
                    "UPDATE holds SET state='reclaimed', expires=%s WHERE id = ANY(%s)",
                    (now + _TOMBSTONE_S, [r[0] for r in rows]),
                )
        return [str(r[0]) for r in rows]

    async def owners_alive(self, owners: list[str]) -> set[str]:
        if not owners:
            return set()
        async with self._conn() as conn:
            cur = await conn.execute(
                "SELECT owner FROM owners WHERE owner = ANY(%s) AND expires > %s",
                (owners, time.time()),
            )
            return {str(r[0]) for r in await cur.fetchall()}

    @staticmethod
    async def _peek(conn: AsyncConnection[Any], buckets: list[str], now: float) -> list[int]:
        cur = await conn.execute(
            "SELECT bucket, used FROM counters WHERE bucket = ANY(%s) AND expires > %s",
            (buckets, now),
        )
        found = {str(b): int(u) for b, u in await cur.fetchall()}
        return [found.get(b, 0) for b in buckets]

    async def peek(self, buckets: list[str]) -> list[int]:
        if not buckets:
            return []
        async with self._conn() as conn:
            return await self._peek(conn, [pg_text(b) for b in buckets], time.time())

    # -- key-value --------------------------------------------------------------------------
    async def kv_get(self, key: str) -> tuple[dict[str, Any] | None, int]:
        key = pg_text(key)
        async with self._conn() as conn:
            cur = await conn.execute("SELECT v, version FROM kv WHERE k=%s", (key,))
            row = await cur.fetchone()
        return (dict(row[0]), int(row[1])) if row else (None, 0)

    async def kv_put(self, key: str, value: dict[str, Any]) -> int:
        key = pg_text(key)
        async with self._conn() as conn:
            cur = await conn.execute(
                "INSERT INTO kv AS t (k, v, version) VALUES(%s,%s,1) ON CONFLICT (k) DO UPDATE "
                "SET v=excluded.v, version=t.version+1 RETURNING version",
                (key, Json(value)),
            )
            row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    async def kv_cas(self, key: str, value: dict[str, Any], version: int) -> bool:
        key = pg_text(key)
        async with self._conn() as conn:
            if version == 0:
                cur = await conn.execute(
                    "INSERT INTO kv(k, v, version) VALUES(%s,%s,1) ON CONFLICT (k) DO NOTHING",
                    (key, Json(value)),
                )
            else:
                cur = await conn.execute(
                    "UPDATE kv SET v=%s, version=version+1 WHERE k=%s AND version=%s",
                    (Json(value), key, version),
                )
            return cur.rowcount == 1

    async def kv_list(self, prefix: str) -> list[tuple[str, dict[str, Any]]]:
        async with self._conn() as conn:
            cur = await conn.execute(
                'SELECT k, v FROM kv WHERE starts_with(k, %s) ORDER BY k COLLATE "C"',
                (prefix,),
            )
            return [(str(k), dict(v)) for k, v in await cur.fetchall()]

    async def kv_delete(self, key: str) -> None:
        key = pg_text(key)
        async with self._conn() as conn:
            await conn.execute("DELETE FROM kv WHERE k=%s", (key,))

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
