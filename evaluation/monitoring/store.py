"""Online scores of captured records: one typed row per scored request, SQLite under
``$GENAIOPS_HOME/monitor/online.db``.

The ledger's ``scores`` table holds one number per request (the 0-1 ``online`` score the rollout
judge averages); this store keeps every metric, the deployment and prompt variant that produced
the answer, and the retrieval evidence drift needs, so reports, ``monitor check`` and ``monitor
export`` can group and filter without re-judging.

    >>> store = ScoreStore(tmp / "online.db")                           # doctest: +SKIP
    >>> store.put([OnlineScore(request_id="r1", ts=0.0, alias="chat")]) # doctest: +SKIP
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from genaiops.settings import get_settings

__all__ = ["SCORE_SCHEMA_VERSION", "OnlineScore", "ScoreStore"]

SCORE_SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS online_scores (
  request_id TEXT PRIMARY KEY, ts REAL NOT NULL, evaluated_at REAL NOT NULL, alias TEXT,
  deployment TEXT, variant TEXT, record TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS online_scores_ts ON online_scores(ts);
"""


class OnlineScore(BaseModel):
    """Every measurement of one captured answer (NaN-free: an unscorable metric is None)."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCORE_SCHEMA_VERSION
    request_id: str
    ts: float = Field(description="when the request was served")
    evaluated_at: float = 0.0
    alias: str
    deployment: str | None = None
    variant: str | None = None
    team: str | None = None
    judge: str = "offline"
    groundedness: float | None = None
    relevance: float | None = None
    online_score: float | None = Field(default=None, description="0-1, written to the ledger")
    refused: bool = False
    safety_blocked: bool = False
    safety_flagged: list[str] = Field(default_factory=list)
    answer_length: int = 0
    index: str | None = None
    index_version: str | None = None
    retrieval_score: float | None = Field(default=None, description="best retrieval score")
    errors: dict[str, str] = Field(default_factory=dict)


class ScoreStore:
    """Put and read :class:`OnlineScore` rows (a re-evaluated request replaces its row)."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else get_settings().path("monitor", "online.db")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)

    def put(self, rows: Iterable[OnlineScore]) -> int:
        data = [
            (
                r.request_id,
                r.ts,
                r.evaluated_at,
                r.alias,
                r.deployment,
                r.variant,
                r.model_dump_json(),
            )
            for r in rows
        ]
        with self._lock, self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO online_scores VALUES (?,?,?,?,?,?,?)", data
            )
        return len(data)

    def scored_ids(self, request_ids: list[str]) -> set[str]:
        out: set[str] = set()
        with self._lock:
            for i in range(0, len(request_ids), 500):
                part = request_ids[i : i + 500]
                cur = self._db.execute(
                    f"SELECT request_id FROM online_scores WHERE request_id IN "
                    f"({','.join('?' * len(part))})",
                    part,
                )
                out.update(r[0] for r in cur)
        return out

    def query(self, since: float | None = None, until: float | None = None) -> list[OnlineScore]:
        with self._lock:
            cur = self._db.execute(
                "SELECT record FROM online_scores WHERE ts >= ? AND ts < ? ORDER BY ts",
                (since or 0.0, until if until is not None else 1e18),
            )
            return [OnlineScore.model_validate_json(r[0]) for r in cur]

    def close(self) -> None:
        with self._lock:
            self._db.close()
