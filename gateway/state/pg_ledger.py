"""The usage ledger on PostgreSQL: the rows of every gateway replica in one table.

Same rows, same queries and same durability rule as the SQLite :class:`gateway.ledger.Ledger`
(a row is committed before the response it records completes; streamed rows are brought up to
date while they run and marked ``interrupted`` when their process dies).  Blocking methods on a
psycopg 3 connection pool; the async :meth:`PgLedger.write` runs one in a worker thread.

    >>> ledger = PgLedger("postgresql://gw@db/gw")                      # doctest: +SKIP
    >>> ledger.summary(by="team")                                       # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from psycopg import Connection
from psycopg_pool import ConnectionPool

from gateway.ledger import UsageRow
from gateway.ledgers import deployment_stats_of

__all__ = ["PgLedger", "SyncPool", "pg_text"]

_GROUPS = {
    "key": "key_id",
    "model": "alias",
    "deployment": "deployment",
    "day": "to_char(to_timestamp(ts) AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
    "team": "team",
}
_COLS = [
    "request_id", "ts", "key_id", "key_prefix", "team", "alias", "deployment", "prompt_tokens",
    "completion_tokens", "total_tokens", "latency_ms", "status", "outcome", "stream",
    "error_code", "safety", "owner",
]  # fmt: skip
_WRITE = (
    f"INSERT INTO usage({', '.join(_COLS)}) VALUES({', '.join(['%s'] * len(_COLS))}) "
    "ON CONFLICT (request_id) DO UPDATE SET " + ", ".join(f"{c}=excluded.{c}" for c in _COLS[1:])
)


def pg_text(v: Any) -> Any:
    """``v`` with NUL characters replaced (U+FFFD): PostgreSQL text cannot hold them, and a
    client's string must not turn a request into a database error."""
    return v.replace("\x00", "\ufffd") if isinstance(v, str) and "\x00" in v else v


class SyncPool:
    """A blocking psycopg pool that opens lazily.  Callers queue for one of its ``size``
    connections without a deadline; the pool's ``timeout_s`` then only runs out when no
    connection can be made at all (the database is down: ``PoolTimeout``, a 503)."""

    def __init__(self, dsn: str, size: int, name: str, timeout_s: float = 5.0):
        self._pool: ConnectionPool[Connection[Any]] = ConnectionPool(
            dsn,
            min_size=1,
            max_size=size,
            timeout=timeout_s,
            reconnect_timeout=timeout_s,
            open=False,
            name=name,
        )
        self._pool.open(wait=False)
        self._slots = threading.BoundedSemaphore(size)

    @contextlib.contextmanager
    def connection(self) -> Iterator[Connection[Any]]:
        """A connection in a transaction: committed on exit, rolled back on an error."""
        with self._slots, self._pool.connection() as conn:
            yield conn

    def close(self) -> None:
        self._pool.close()


class PgLedger:
    """:class:`gateway.ledgers.UsageLedger` on PostgreSQL."""

    def __init__(self, dsn: str, *, pool_size: int = 10):
        self._pool = SyncPool(dsn, pool_size, "genaiops-ledger")

    def _fetch(self, sql: str, args: Any = ()) -> list[dict[str, Any]]:
        with self._pool.connection() as c:
            cur = c.execute(sql, args)
            names = [d.name for d in cur.description or []]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def write_sync(self, row: UsageRow) -> None:
        d = asdict(row)
        d["total_tokens"] = row.prompt_tokens + row.completion_tokens
        d["stream"] = int(row.stream)
        d["safety"] = json.dumps(row.safety) if row.safety else None
        with self._pool.connection() as c:
            c.execute(_WRITE, [pg_text(d[k]) for k in _COLS])

    async def write(self, row: UsageRow) -> None:
        await asyncio.to_thread(self.write_sync, row)

    def progress_sync(self, updates: list[tuple[str, int, int]]) -> None:
        if not updates:
            return
        with self._pool.connection() as c:
            c.execute(
                "UPDATE usage AS u SET prompt_tokens=v.p, completion_tokens=v.c, "
                "total_tokens=v.p + v.c FROM unnest(%s::text[], %s::bigint[], %s::bigint[]) "
                "AS v(id, p, c) WHERE u.request_id = v.id AND u.outcome = 'streaming'",
                ([u[0] for u in updates], [u[1] for u in updates], [u[2] for u in updates]),
            )

    def streaming_owners_sync(self, exclude: str) -> list[str]:
        rows = self._fetch(
            "SELECT DISTINCT owner FROM usage WHERE outcome='streaming' AND owner IS NOT NULL "
            "AND owner <> %s",
            (exclude,),
        )
        return [str(r["owner"]) for r in rows]

    def interrupt_sync(self, owners: list[str], request_ids: list[str]) -> int:
        if not owners and not request_ids:
            return 0
        with self._pool.connection() as c:
            cur = c.execute(
                "UPDATE usage SET outcome='interrupted', error_code='gateway_stopped' "
                "WHERE outcome='streaming' AND (owner = ANY(%s) OR request_id = ANY(%s))",
                (owners, request_ids),
            )
            return max(0, cur.rowcount)

    def rows(self, limit: int = 1000) -> list[dict[str, Any]]:
        return self._fetch("SELECT * FROM usage ORDER BY ts DESC LIMIT %s", (limit,))

    def rows_between(self, since: float, until: float | None = None) -> list[dict[str, Any]]:
        return self._fetch(
            "SELECT * FROM usage WHERE ts >= %s AND (%s::float8 IS NULL OR ts < %s) ORDER BY ts",
            (since, until, until),
        )

    def get(self, request_id: str) -> dict[str, Any] | None:
        rows = self._fetch("SELECT * FROM usage WHERE request_id=%s", (request_id,))
        return rows[0] if rows else None

    def summary(self, by: str = "model", since: float | None = None) -> list[dict[str, Any]]:
        """Requests, errors and tokens grouped by key, model, deployment, team or day."""
        if by not in _GROUPS:
            raise ValueError(f"--by must be one of {', '.join(_GROUPS)}")
        rows = self._fetch(
            f"SELECT {_GROUPS[by]} AS grp, COUNT(*) AS requests, "
            "SUM((outcome NOT IN ('ok','filtered'))::int) AS errors, "
            "SUM(prompt_tokens) AS prompt_tokens, SUM(completion_tokens) AS completion_tokens, "
            "SUM(total_tokens) AS total_tokens, AVG(latency_ms) AS lat FROM usage "
            "WHERE outcome NOT IN ('shadow', 'attempt_error') AND ts >= %s "
            f'GROUP BY grp ORDER BY ({_GROUPS[by]}) COLLATE "C" NULLS FIRST',
            (since or 0,),
        )
        keys = ["requests", "errors", "prompt_tokens", "completion_tokens", "total_tokens"]
        out = []
        for r in rows:
            row: dict[str, Any] = {by: r["grp"]}
            row.update({k: int(r[k] or 0) for k in keys})
            row["avg_latency_ms"] = round(float(r["lat"]), 2) if r["lat"] is not None else None
            out.append(row)
        return out

    def record_score(self, request_id: str, score: float, name: str = "online") -> bool:
        """Attach an online evaluation score to a request; False if no such request."""
        with self._pool.connection() as c:
            cur = c.execute(
                "INSERT INTO scores(request_id, name, score, ts) SELECT %s, %s, %s, %s "
                "WHERE EXISTS (SELECT 1 FROM usage WHERE request_id=%s) "
                "ON CONFLICT (request_id) DO UPDATE SET name=excluded.name, "
                "score=excluded.score, ts=excluded.ts",
                (request_id, name, float(score), time.time(), request_id),
            )
            return cur.rowcount == 1

    def deployment_stats(self, alias: str, deployment: str, since: float) -> dict[str, Any]:
        """Sample size, error rate, p95 latency and mean online score since ``since``."""
        rows = self._fetch(
            "SELECT u.status, u.latency_ms, s.score FROM usage u "
            "LEFT JOIN scores s ON s.request_id = u.request_id "
            "WHERE u.alias=%s AND u.deployment=%s AND u.ts>=%s "
            "AND u.outcome IN ('ok','error','filtered','attempt_error')",
            (alias, deployment, since),
        )
        return deployment_stats_of([(r["status"], r["latency_ms"], r["score"]) for r in rows])

    def close(self) -> None:
        self._pool.close()
