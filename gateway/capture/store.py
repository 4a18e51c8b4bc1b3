"""Where captured traffic and feedback live: the :class:`CaptureStore` seam and its SQLite default.

The protocol is synchronous on purpose: the gateway calls it from its batch writer thread and
from ``asyncio.to_thread`` (feedback), the offline tools (``genaiops monitor``, the CLI) call it
directly.  A shared database (PostgreSQL) implements the same methods; the contract suite in
``tests/gateway/test_capture_store.py`` runs on every implementation.

SQLite: WAL, one file beside the ledger (``<home>/gateway/capture.db`` by default), any number
of gateway processes and readers at once.  A record is stored whole as JSON, with the columns
queries filter on (time, key, alias, deployment, variant) beside it.

    >>> store = SQLiteCaptureStore("capture.db")                               # doctest: +SKIP
    >>> store.add(CaptureRecord(request_id="r1", ts=time.time(), alias="chat"))  # doctest: +SKIP
    >>> [r.request_id for r in store.query(since=time.time() - 60, alias="chat")]  # doctest: +SKIP
    ['r1']
    >>> store.put_feedback(FeedbackRecord.from_rating("r1", "k1", "down"))  # doctest: +SKIP
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from gateway.capture.records import CaptureCounts, CaptureRecord, FeedbackRecord
from gateway.state.connections import ThreadConnections, immediate

__all__ = ["FEEDBACK_GROUPS", "CaptureStore", "SQLiteCaptureStore"]

FeedbackGroup = Literal["key", "model", "deployment", "team", "day", "variant"]
FEEDBACK_GROUPS: dict[str, str] = {
    "key": "key_id",
    "model": "alias",
    "deployment": "deployment",
    "team": "team",
    "day": "date(ts, 'unixepoch')",
    "variant": "flow_variant",
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS captures (
  request_id TEXT PRIMARY KEY, ts REAL NOT NULL, key_id TEXT, team TEXT, alias TEXT,
  deployment TEXT, flow_variant TEXT, session TEXT, record TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS captures_ts ON captures(ts);
CREATE INDEX IF NOT EXISTS captures_alias ON captures(alias, ts);
CREATE INDEX IF NOT EXISTS captures_dep ON captures(deployment, ts);
CREATE TABLE IF NOT EXISTS feedback (
  request_id TEXT NOT NULL, key_id TEXT NOT NULL, ts REAL NOT NULL, rating TEXT NOT NULL,
  score REAL NOT NULL, alias TEXT, deployment TEXT, team TEXT, flow_variant TEXT,
  record TEXT NOT NULL, PRIMARY KEY (request_id, key_id));
CREATE INDEX IF NOT EXISTS feedback_ts ON feedback(ts);
"""


@runtime_checkable
class CaptureStore(Protocol):
    """Captured requests and their feedback; every method is atomic and blocking.

    ``key_id``: reads for a key only ever see that key's records; ``None`` means any key
    (operators and offline tools, never an app request)."""

    def add(self, record: CaptureRecord) -> None: ...

    def add_many(self, records: Iterable[CaptureRecord]) -> int:
        """Store records in one transaction (a repeated request id replaces the record)."""
        ...

    def get(self, request_id: str, key_id: str | None) -> CaptureRecord | None: ...

    def query(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        alias: str | None = None,
        deployment: str | None = None,
        variant: str | None = None,
        key_id: str | None = None,
        team: str | None = None,
        limit: int | None = None,
    ) -> list[CaptureRecord]:
        """Records with ``since <= ts < until`` matching every filter given, oldest first."""
        ...

    def delete_older_than(self, before: float) -> int:
        """Delete captures with ``ts < before``; how many were deleted."""
        ...

    def put_feedback(self, record: FeedbackRecord) -> tuple[FeedbackRecord, bool]:
        """Store a rating; a repeat for the same (request_id, key_id) replaces rating, comment
        and tags and keeps ``created``.  Returns the stored record and whether it is new."""
        ...

    def get_feedback(self, request_id: str, key_id: str | None) -> FeedbackRecord | None: ...

    def query_feedback(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        alias: str | None = None,
        deployment: str | None = None,
        variant: str | None = None,
        rating: str | None = None,
        limit: int | None = None,
    ) -> list[FeedbackRecord]: ...

    def delete_feedback_older_than(self, before: float) -> int: ...

    def feedback_summary(self, by: str, since: float | None = None) -> list[dict[str, Any]]:
        """Per group (``FEEDBACK_GROUPS``): ``feedback`` count, ``thumbs_up`` (positive
        ratings), ``thumbs_up_rate`` and ``mean_score``."""
        ...

    def counts(self, since: float | None = None) -> CaptureCounts: ...

    def close(self) -> None: ...


def _where(filters: list[tuple[str, Any]]) -> tuple[str, list[Any]]:
    parts = [cond for cond, v in filters if v is not None]
    args = [v for _, v in filters if v is not None]
    return (" WHERE " + " AND ".join(parts)) if parts else "", args


class SQLiteCaptureStore:
    """:class:`CaptureStore` on one SQLite file (WAL; several processes may share it)."""

    def __init__(self, path: str | Path, sync: str = "normal"):
        self.path = Path(path)
        self._conns = ThreadConnections(self.path, "FULL" if sync == "full" else "NORMAL")
        self._conns.get().executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        return self._conns.get()

    # -- shared by both tables --------------------------------------------------------------
    def _select(
        self,
        table: str,
        extra: list[tuple[str, Any]],
        since: float | None,
        until: float | None,
        alias: str | None,
        deployment: str | None,
        variant: str | None,
        limit: int | None,
    ) -> list[str]:
        sql, args = _where(
            [
                ("ts >= ?", since),
                ("ts < ?", until),
                ("alias = ?", alias),
                ("deployment = ?", deployment),
                ("flow_variant = ?", variant),
                *extra,
            ]
        )
        sql = f"SELECT record FROM {table}{sql} ORDER BY ts, request_id"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        return [r[0] for r in self._conn().execute(sql, args)]

    def _one(self, table: str, request_id: str, key_id: str | None) -> str | None:
        sql, args = _where([("request_id = ?", request_id), ("key_id = ?", key_id)])
        row = self._conn().execute(f"SELECT record FROM {table}{sql}", args).fetchone()
        return str(row[0]) if row else None

    def _delete(self, table: str, before: float) -> int:
        with self._conns.write_lock:
            cur = self._conn().execute(f"DELETE FROM {table} WHERE ts < ?", (before,))
        return max(0, cur.rowcount)

    # -- captures ---------------------------------------------------------------------------
    def add(self, record: CaptureRecord) -> None:
        self.add_many([record])

    def add_many(self, records: Iterable[CaptureRecord]) -> int:
        rows = [
            (
                r.request_id, r.ts, r.key_id, r.team, r.alias, r.deployment,
                r.metadata.flow_variant, r.metadata.session, r.model_dump_json(),
            )
            for r in records
        ]  # fmt: skip
        if not rows:
            return 0
        with self._conns.write_lock, immediate(self._conn()) as c:
            c.executemany(
                "INSERT OR REPLACE INTO captures(request_id, ts, key_id, team, alias, "
                "deployment, flow_variant, session, record) VALUES(?,?,?,?,?,?,?,?,?)",
                rows,
            )
        return len(rows)

    def get(self, request_id: str, key_id: str | None) -> CaptureRecord | None:
        row = self._one("captures", request_id, key_id)
        return CaptureRecord.model_validate_json(row) if row else None

    def query(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        alias: str | None = None,
        deployment: str | None = None,
        variant: str | None = None,
        key_id: str | None = None,
        team: str | None = None,
        limit: int | None = None,
    ) -> list[CaptureRecord]:
        rows = self._select(
            "captures",
            [("key_id = ?", key_id), ("team = ?", team)],
            since, until, alias, deployment, variant, limit,
        )  # fmt: skip
        return [CaptureRecord.model_validate_json(r) for r in rows]

    def delete_older_than(self, before: float) -> int:
        return self._delete("captures", before)

    # -- feedback ---------------------------------------------------------------------------
    def put_feedback(self, record: FeedbackRecord) -> tuple[FeedbackRecord, bool]:
        with self._conns.write_lock, immediate(self._conn()) as c:
            row = c.execute(
                "SELECT record FROM feedback WHERE request_id=? AND key_id=?",
                (record.request_id, record.key_id),
            ).fetchone()
            if row is not None:
                record = record.model_copy(
                    update={"created": FeedbackRecord.model_validate_json(row[0]).created}
                )
            c.execute(
                "INSERT OR REPLACE INTO feedback(request_id, key_id, ts, rating, score, "
                "alias, deployment, team, flow_variant, record) VALUES(?,?,?,?,?,?,?,?,?,?)",
                (record.request_id, record.key_id, record.ts, record.rating, record.score,
                 record.alias, record.deployment, record.team, record.flow_variant,
                 record.model_dump_json()),
            )  # fmt: skip
        return record, row is None

    def get_feedback(self, request_id: str, key_id: str | None) -> FeedbackRecord | None:
        row = self._one("feedback", request_id, key_id)
        return FeedbackRecord.model_validate_json(row) if row else None

    def query_feedback(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        alias: str | None = None,
        deployment: str | None = None,
        variant: str | None = None,
        rating: str | None = None,
        limit: int | None = None,
    ) -> list[FeedbackRecord]:
        rows = self._select(
            "feedback", [("rating = ?", rating)], since, until, alias, deployment, variant, limit
        )
        return [FeedbackRecord.model_validate_json(r) for r in rows]

    def delete_feedback_older_than(self, before: float) -> int:
        return self._delete("feedback", before)

    def feedback_summary(self, by: str, since: float | None = None) -> list[dict[str, Any]]:
        if by not in FEEDBACK_GROUPS:
            raise ValueError(f"by must be one of {', '.join(FEEDBACK_GROUPS)}")
        cur = self._conn().execute(
            f"SELECT {FEEDBACK_GROUPS[by]} AS grp, COUNT(*), SUM(score > 0.5), AVG(score) "
            "FROM feedback WHERE ts >= ? GROUP BY grp ORDER BY grp",
            (since or 0,),
        )
        return [
            {
                by: grp,
                "feedback": int(n),
                "thumbs_up": int(up or 0),
                "thumbs_up_rate": round((up or 0) / n, 4) if n else None,
                "mean_score": round(mean, 4) if mean is not None else None,
            }
            for grp, n, up, mean in cur.fetchall()
        ]

    def counts(self, since: float | None = None) -> CaptureCounts:
        c = self._conn()
        lo = since or 0
        n, oldest, newest = c.execute(
            "SELECT COUNT(*), MIN(ts), MAX(ts) FROM captures WHERE ts >= ?", (lo,)
        ).fetchone()
        by_alias = dict(
            c.execute(
                "SELECT alias, COUNT(*) FROM captures WHERE ts >= ? GROUP BY alias", (lo,)
            ).fetchall()
        )
        by_rating = dict(
            c.execute(
                "SELECT rating, COUNT(*) FROM feedback WHERE ts >= ? GROUP BY rating", (lo,)
            ).fetchall()
        )
        return CaptureCounts(
            captures=int(n),
            feedback=sum(by_rating.values()),
            oldest_ts=oldest,
            newest_ts=newest,
            by_alias={str(k): int(v) for k, v in by_alias.items()},
            by_rating={str(k): int(v) for k, v in by_rating.items()},
        )

    def close(self) -> None:
        self._conns.close()
