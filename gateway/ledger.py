"""The usage ledger: one durable SQLite row per request, written before the response completes.

Non-streaming responses are recorded before the body is sent.  A streamed response gets its row
(``outcome='streaming'``) before the first byte, its token counts are brought up to date while it
runs (every ``progress_interval_s``, by :mod:`gateway.leases`) and it is finalised when it ends, so
a ``kill -9`` never loses the record of a response a client received.  Rows name the process that
wrote them (``owner``); a ``streaming`` row whose owner's lease has run out becomes
``interrupted``, with the tokens delivered up to its last update.  WAL with
``synchronous=NORMAL`` survives a process crash (the default); ``full`` also survives power loss.
Several processes may share the file.  Keys appear only as id and prefix.

Writes go through a :class:`~gateway.groupcommit.GroupCommit`: ``await ledger.write(row)``
returns once the row is committed, and the rows of requests finishing together share one
transaction (inline on the event loop with ``synchronous=NORMAL``, where a commit does not
``fsync``; in a worker thread with ``full``, or when the file is locked by another writer).

    >>> ledger = Ledger("ledger.db")                                    # doctest: +SKIP
    >>> ledger.summary(by="model")                                      # doctest: +SKIP
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from gateway.groupcommit import GroupCommit
from gateway.ledgers import deployment_stats_of
from gateway.state.connections import ThreadConnections, immediate, is_busy

__all__ = ["Ledger", "UsageRow"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
  request_id TEXT PRIMARY KEY, ts REAL NOT NULL, key_id TEXT, key_prefix TEXT, team TEXT,
  alias TEXT, deployment TEXT, prompt_tokens INTEGER NOT NULL DEFAULT 0,
  completion_tokens INTEGER NOT NULL DEFAULT 0, total_tokens INTEGER NOT NULL DEFAULT 0,
  latency_ms REAL, status INTEGER, outcome TEXT, stream INTEGER NOT NULL DEFAULT 0,
  error_code TEXT, safety TEXT, owner TEXT);
CREATE INDEX IF NOT EXISTS usage_ts ON usage(ts);
CREATE INDEX IF NOT EXISTS usage_dep ON usage(deployment, ts);
CREATE TABLE IF NOT EXISTS scores (
  request_id TEXT PRIMARY KEY, name TEXT, score REAL NOT NULL, ts REAL NOT NULL);
"""
_STREAMING_INDEX = (
    "CREATE INDEX IF NOT EXISTS usage_streaming ON usage(owner) WHERE outcome='streaming'"
)

_GROUPS = {
    "key": "key_id",
    "model": "alias",
    "deployment": "deployment",
    "day": "date(ts, 'unixepoch')",
    "team": "team",
}


@dataclass
class UsageRow:
    request_id: str
    key_id: str | None = None
    key_prefix: str | None = None
    team: str | None = None
    alias: str | None = None
    deployment: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float | None = None
    status: int | None = None
    # ok | error | filtered | disconnected | streaming | interrupted (its gateway process died
    # mid-stream) | shadow | attempt_error (a deployment that failed before a fallback
    # answered: counted for rollout judgement, not for usage)
    outcome: str = "ok"
    stream: bool = False
    error_code: str | None = None
    safety: dict[str, Any] = field(default_factory=dict)
    ts: float = field(default_factory=time.time)
    owner: str | None = None  # the gateway process that wrote the row


_FIELDS = [f.name for f in fields(UsageRow)]
_INSERT = (
    f"INSERT OR REPLACE INTO usage({','.join(_FIELDS)},total_tokens) "
    f"VALUES({','.join('?' * (len(_FIELDS) + 1))})"
)


def _values(row: UsageRow) -> tuple[Any, ...]:
    """The row as ``_INSERT`` parameters (no ``asdict``: it deep-copies every value)."""
    v = [getattr(row, n) for n in _FIELDS]
    v[_FIELDS.index("stream")] = int(row.stream)
    v[_FIELDS.index("safety")] = json.dumps(row.safety) if row.safety else None
    return (*v, row.prompt_tokens + row.completion_tokens)


class Ledger:
    """Append/update usage rows; summarise them for the CLI and the rollout judge."""

    def __init__(self, path: str | Path, sync: str = "normal"):
        self.path = Path(path)
        self.sync = "full" if sync == "full" else "normal"
        self._conns = ThreadConnections(self.path, self.sync.upper())
        self._writer = GroupCommit(self.write_many_sync, self._write_many_inline)
        c = self._conn()
        c.executescript(_SCHEMA)
        if "owner" not in {r[1] for r in c.execute("PRAGMA table_info(usage)")}:
            try:  # a ledger from before leases (another process may be adding it right now)
                c.execute("ALTER TABLE usage ADD COLUMN owner TEXT")
            except sqlite3.OperationalError as e:
                if "duplicate column" not in str(e):
                    raise
        c.execute(_STREAMING_INDEX)

    def _conn(self) -> sqlite3.Connection:
        return self._conns.get()

    def write_sync(self, row: UsageRow) -> None:
        self.write_many_sync([row])

    def write_many_sync(self, rows: list[UsageRow]) -> None:
        """One transaction for ``rows`` (blocking: waits for the lock, may ``fsync``)."""
        with self._conns.write_lock, immediate(self._conn()) as c:
            c.executemany(_INSERT, [_values(r) for r in rows])

    def _write_many_inline(self, rows: list[UsageRow]) -> bool:
        """``write_many_sync`` if it cannot wait or ``fsync``; False: do it in a thread."""
        if self.sync == "full":
            return False
        with self._conns.inline() as c:
            if c is None:
                return False
            try:
                with immediate(c):
                    c.executemany(_INSERT, [_values(r) for r in rows])
            except sqlite3.OperationalError as e:
                if is_busy(e):
                    return False
                raise
        return True

    async def write(self, row: UsageRow) -> None:
        """Record ``row``; returns once it is committed (group commit, see the module doc)."""
        await self._writer.submit(row)

    def progress_sync(self, updates: list[tuple[str, int, int]]) -> None:
        """Tokens so far ``(request_id, prompt, completion)`` of rows still ``streaming``."""
        with self._conns.write_lock:
            self._conn().executemany(
                "UPDATE usage SET prompt_tokens=?, completion_tokens=?, total_tokens=? "
                "WHERE request_id=? AND outcome='streaming'",
                [(p, c, p + c, rid) for rid, p, c in updates],
            )

    def streaming_owners_sync(self, exclude: str) -> list[str]:
        """Owners other than ``exclude`` with rows still ``streaming``."""
        cur = self._conn().execute(
            "SELECT DISTINCT owner FROM usage WHERE outcome='streaming' AND owner IS NOT NULL "
            "AND owner != ?",
            (exclude,),
        )
        return [r[0] for r in cur.fetchall()]

    def interrupt_sync(self, owners: list[str], request_ids: list[str]) -> int:
        """Mark rows still ``streaming`` of dead ``owners`` (or with these ids) ``interrupted``."""
        with self._conns.write_lock:
            c = self._conn()
            n = c.executemany(
                "UPDATE usage SET outcome='interrupted', error_code='gateway_stopped' "
                "WHERE owner=? AND outcome='streaming'",
                [(o,) for o in owners],
            ).rowcount
            n += c.executemany(
                "UPDATE usage SET outcome='interrupted', error_code='gateway_stopped' "
                "WHERE request_id=? AND outcome='streaming'",
                [(r,) for r in request_ids],
            ).rowcount
        return max(0, n)

    def rows(self, limit: int = 1000) -> list[dict[str, Any]]:
        cur = self._conn().execute("SELECT * FROM usage ORDER BY ts DESC LIMIT ?", (limit,))
        names = [c[0] for c in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def rows_between(self, since: float, until: float | None = None) -> list[dict[str, Any]]:
        """Rows with ``since <= ts < until`` (no upper bound when None), oldest first — what
        offline reports (``genaiops monitor report``) plot over time."""
        cur = self._conn().execute(
            "SELECT * FROM usage WHERE ts >= ? AND (? IS NULL OR ts < ?) ORDER BY ts",
            (since, until, until),
        )
        names = [c[0] for c in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def get(self, request_id: str) -> dict[str, Any] | None:
        cur = self._conn().execute("SELECT * FROM usage WHERE request_id=?", (request_id,))
        r = cur.fetchone()
        return dict(zip([c[0] for c in cur.description], r, strict=True)) if r else None

    def summary(self, by: str = "model", since: float | None = None) -> list[dict[str, Any]]:
        """Requests, errors and tokens grouped by key, model, deployment, team or day."""
        if by not in _GROUPS:
            raise ValueError(f"--by must be one of {', '.join(_GROUPS)}")
        expr = _GROUPS[by]
        cur = self._conn().execute(
            f"SELECT {expr} AS grp, COUNT(*), SUM(outcome NOT IN ('ok','filtered')), "
            "SUM(prompt_tokens), SUM(completion_tokens), SUM(total_tokens), AVG(latency_ms) "
            "FROM usage WHERE outcome NOT IN ('shadow', 'attempt_error') AND ts >= ? "
            "GROUP BY grp ORDER BY grp",
            (since or 0,),
        )
        keys = ["requests", "errors", "prompt_tokens", "completion_tokens", "total_tokens"]
        out = []
        for grp, *vals in cur.fetchall():
            row: dict[str, Any] = {by: grp}
            row.update({k: int(v or 0) for k, v in zip(keys, vals[:5], strict=True)})
            row["avg_latency_ms"] = round(vals[5], 2) if vals[5] is not None else None
            out.append(row)
        return out

    def record_score(self, request_id: str, score: float, name: str = "online") -> bool:
        """Attach an online evaluation score to a request; False if no such request."""
        c = self._conn()
        if c.execute("SELECT 1 FROM usage WHERE request_id=?", (request_id,)).fetchone() is None:
            return False
        c.execute(
            "INSERT OR REPLACE INTO scores(request_id, name, score, ts) VALUES(?,?,?,?)",
            (request_id, name, float(score), time.time()),
        )
        return True

    def deployment_stats(self, alias: str, deployment: str, since: float) -> dict[str, Any]:
        """Sample size, error rate, p95 latency and mean online score since ``since``."""
        rows = (
            self._conn()
            .execute(
                "SELECT u.status, u.latency_ms, s.score FROM usage u "
                "LEFT JOIN scores s ON s.request_id = u.request_id "
                "WHERE u.alias=? AND u.deployment=? AND u.ts>=? "
                "AND u.outcome IN ('ok','error','filtered','attempt_error')",
                (alias, deployment, since),
            )
            .fetchall()
        )
        return deployment_stats_of(rows)

    def close(self) -> None:
        self._writer.drain_sync()
        self._conns.close()
