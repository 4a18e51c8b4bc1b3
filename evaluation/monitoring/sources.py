"""The one seam between monitoring and the gateway's state: captured records, feedback, the
usage ledger and its ``scores`` table.

``genaiops monitor`` is a batch job beside the gateway, like ``genaiops gateway usage``: it opens
the same ledger and capture store the gateway writes (named by the gateway config: default
SQLite under ``$GENAIOPS_HOME/gateway``, or PostgreSQL), so it runs whether or not a gateway is
up, and the scores it writes are the ones the rollout judge reads
(:meth:`Ledger.deployment_stats` joins ``scores`` to each request's own deployment, so a canary
is judged on its own answers).

    >>> state = GatewayState.open()                                    # doctest: +SKIP
    >>> recs = state.records(since=time.time() - 3600)                 # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.capture import CaptureRecord, FeedbackRecord, open_capture_store
from gateway.config import GatewayConfig, load_config
from gateway.ledgers import UsageLedger, open_ledger

__all__ = ["CaptureRecord", "FeedbackRecord", "GatewayState", "capture_path"]

LEDGER_SCORE_NAME = "online"


def capture_path(cfg: GatewayConfig) -> Path:
    """Where the gateway keeps captured traffic (``capture.path``, else beside the ledger)."""
    return cfg.capture_path()


class GatewayState:
    """Read captures, feedback and usage; write online scores into the ledger."""

    def __init__(self, ledger: UsageLedger, captures: Any):
        self.ledger = ledger
        self.captures = captures

    @classmethod
    def open(cls, config: str | Path | None = None) -> GatewayState:
        cfg = load_config(str(config) if config else None)
        if cfg.state.kind != "postgres":
            capture_path(cfg).parent.mkdir(parents=True, exist_ok=True)
        return cls(open_ledger(cfg), open_capture_store(cfg))  # SQLite files or PostgreSQL

    def records(
        self,
        since: float | None = None,
        until: float | None = None,
        alias: str | None = None,
        limit: int | None = None,
    ) -> list[CaptureRecord]:
        """Captured records, oldest first."""
        out: list[CaptureRecord] = self.captures.query(
            since=since, until=until, alias=alias, limit=limit
        )
        return out

    def feedback(self, since: float | None = None) -> dict[str, FeedbackRecord]:
        """The latest rating of each request (any key: operators see every app's feedback)."""
        latest: dict[str, FeedbackRecord] = {}
        for fb in self.captures.query_feedback(since=since):
            cur = latest.get(fb.request_id)
            if cur is None or fb.ts >= cur.ts:
                latest[fb.request_id] = fb
        return latest

    def usage(self, since: float, until: float | None = None) -> list[dict[str, Any]]:
        """Ledger rows (one per request) with ``since <= ts < until``, oldest first."""
        return self.ledger.rows_between(since, until)

    def record_score(self, request_id: str, score: float) -> bool:
        """The request's online score (0-1) where the rollout judge reads it."""
        return self.ledger.record_score(request_id, score, LEDGER_SCORE_NAME)

    def close(self) -> None:
        self.ledger.close()
        self.captures.close()
