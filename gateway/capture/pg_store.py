"""Captured traffic and feedback on PostgreSQL: the :class:`~gateway.capture.store.CaptureStore`
of ``state: {kind: postgres}``, shared by every gateway replica and the offline tools.

Same tables and semantics as :class:`~gateway.capture.store.SQLiteCaptureStore` (the contract
suite ``tests/gateway/test_capture_store.py`` runs on both); a record is stored whole as JSON.

    >>> store = PgCaptureStore("postgresql://gw@db/gw")                 # doctest: +SKIP
    >>> store.query(since=time.time() - 3600, alias="chat")             # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from psycopg.types.json import Json

from gateway.capture.records import CaptureCounts, CaptureRecord, FeedbackRecord
from gateway.capture.store import FEEDBACK_GROUPS
from gateway.state.pg_ledger import SyncPool, pg_text

__all__ = ["PgCaptureStore"]

_DAY = "to_char(to_timestamp(ts) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
_GROUPS = {**FEEDBACK_GROUPS, "day": _DAY}


def _where(filters: list[tuple[str, Any]]) -> tuple[str, list[Any]]:
    parts = [cond for cond, v in filters if v is not None]
    args = [v for _, v in filters if v is not None]
    return (" WHERE " + " AND ".join(parts)) if parts else "", args


class PgCaptureStore:
    """:class:`~gateway.capture.store.CaptureStore` on PostgreSQL (schema: ``genaiops gateway
    migrate``)."""

    def __init__(self, dsn: str, *, pool_size: int = 4):
        self._pool = SyncPool(dsn, pool_size, "genaiops-capture")

    def _records(self, sql: str, args: list[Any]) -> list[dict[str, Any]]:
        with self._pool.connection() as c:
            return [dict(r[0]) for r in c.execute(sql, args).fetchall()]

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
    ) -> list[dict[str, Any]]:
        sql, args = _where(
            [
                ("ts >= %s", since),
                ("ts < %s", until),
                ("alias = %s", alias),
                ("deployment = %s", deployment),
                ("flow_variant = %s", variant),
                *extra,
            ]
        )
        sql = f'SELECT record FROM {table}{sql} ORDER BY ts, request_id COLLATE "C"'
        if limit is not None:
            sql += " LIMIT %s"
            args.append(int(limit))
        return self._records(sql, args)

    def _one(self, table: str, request_id: str, key_id: str | None) -> dict[str, Any] | None:
        sql, args = _where([("request_id = %s", request_id), ("key_id = %s", key_id)])
        rows = self._records(f"SELECT record FROM {table}{sql} LIMIT 1", args)
        return rows[0] if rows else None

    def _delete(self, table: str, before: float) -> int:
        with self._pool.connection() as c:
            return max(0, c.execute(f"DELETE FROM {table} WHERE ts < %s", (before,)).rowcount)

    # -- captures ---------------------------------------------------------------------------
    def add(self, record: CaptureRecord) -> None:
        self.add_many([record])

    def add_many(self, records: Iterable[CaptureRecord]) -> int:
        rows = {  # a repeated id in one batch: the last one wins (one upsert per row)
            r.request_id: (
                *(pg_text(v) for v in (r.request_id, r.ts, r.key_id, r.team, r.alias,
                                       r.deployment, r.metadata.flow_variant, r.metadata.session)),
                Json(r.model_dump(mode="json")),
            )
            for r in records
        }  # fmt: skip
        if not rows:
            return 0
        with self._pool.connection() as c, c.cursor() as cur:
            cur.executemany(
                "INSERT INTO captures(request_id, ts, key_id, team, alias, deployment, "
                "flow_variant, session, record) VALUES(%s,%s,%s,%s,%s,%s,%s,%s,%s) "
                "ON CONFLICT (request_id) DO UPDATE SET ts=excluded.ts, key_id=excluded.key_id, "
                "team=excluded.team, alias=excluded.alias, deployment=excluded.deployment, "
                "flow_variant=excluded.flow_variant, session=excluded.session, "
                "record=excluded.record",
                list(rows.values()),
            )
        return len(rows)

    def get(self, request_id: str, key_id: str | None) -> CaptureRecord | None:
        row = self._one("captures", request_id, key_id)
        return CaptureRecord.model_validate(row) if row else None

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
            [("key_id = %s", key_id), ("team = %s", team)],
            since, until, alias, deployment, variant, limit,
        )  # fmt: skip
        return [CaptureRecord.model_validate(r) for r in rows]

    def delete_older_than(self, before: float) -> int:
        return self._delete("captures", before)

    # -- feedback ---------------------------------------------------------------------------
    def put_feedback(self, record: FeedbackRecord) -> tuple[FeedbackRecord, bool]:
        with self._pool.connection() as c:
            row = c.execute(
                "SELECT record FROM feedback WHERE request_id=%s AND key_id=%s FOR UPDATE",
                (record.request_id, record.key_id),
            ).fetchone()  # the whole record: PostgreSQL's ->> refuses a \u0000 anywhere in it
            if row is not None:  # a repeat keeps the first `created`
                first = FeedbackRecord.model_validate(row[0]).created
                record = record.model_copy(update={"created": first})
            done = c.execute(
                "INSERT INTO feedback(request_id, key_id, ts, rating, score, alias, deployment, "
                "team, flow_variant, record) VALUES(%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) "
                "ON CONFLICT (request_id, key_id) DO UPDATE SET ts=excluded.ts, "
                "rating=excluded.rating, score=excluded.score, alias=excluded.alias, "
                "deployment=excluded.deployment, team=excluded.team, "
                "flow_variant=excluded.flow_variant, record=excluded.record "
                "RETURNING (xmax = 0)",  # xmax 0: inserted (another replica may have won a race)
                (record.request_id, record.key_id, record.ts, record.rating, record.score,
                 record.alias, record.deployment, record.team, record.flow_variant,
                 Json(record.model_dump(mode="json"))),
            ).fetchone()  # fmt: skip
        return record, bool(done and done[0])

    def get_feedback(self, request_id: str, key_id: str | None) -> FeedbackRecord | None:
        row = self._one("feedback", request_id, key_id)
        return FeedbackRecord.model_validate(row) if row else None

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
            "feedback", [("rating = %s", rating)], since, until, alias, deployment, variant, limit
        )
        return [FeedbackRecord.model_validate(r) for r in rows]

    def delete_feedback_older_than(self, before: float) -> int:
        return self._delete("feedback", before)

    def feedback_summary(self, by: str, since: float | None = None) -> list[dict[str, Any]]:
        if by not in _GROUPS:
            raise ValueError(f"by must be one of {', '.join(FEEDBACK_GROUPS)}")
        with self._pool.connection() as c:
            rows = c.execute(
                f"SELECT {_GROUPS[by]} AS grp, COUNT(*), SUM((score > 0.5)::int), AVG(score) "
                "FROM feedback WHERE ts >= %s GROUP BY grp "
                f'ORDER BY ({_GROUPS[by]}) COLLATE "C" NULLS FIRST',
                (since or 0,),
            ).fetchall()
        return [
            {
                by: grp,
                "feedback": int(n),
                "thumbs_up": int(up or 0),
                "thumbs_up_rate": round((up or 0) / n, 4) if n else None,
                "mean_score": round(float(mean), 4) if mean is not None else None,
            }
            for grp, n, up, mean in rows
        ]

    def counts(self, since: float | None = None) -> CaptureCounts:
        lo = since or 0
        with self._pool.connection() as c:
            n, oldest, newest = c.execute(
                "SELECT COUNT(*), MIN(ts), MAX(ts) FROM captures WHERE ts >= %s", (lo,)
            ).fetchone() or (0, None, None)
            by_alias = dict(
                c.execute(
                    "SELECT alias, COUNT(*) FROM captures WHERE ts >= %s GROUP BY alias", (lo,)
                ).fetchall()
            )
            by_rating = dict(
                c.execute(
                    "SELECT rating, COUNT(*) FROM feedback WHERE ts >= %s GROUP BY rating", (lo,)
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
        self._pool.close()
