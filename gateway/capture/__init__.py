"""Learning from production, gateway half: captured traffic and end-user feedback (issue 10).

* :class:`CaptureRecord`: one chat request as the model saw it (messages after the safety
  engine's PII redaction), the grounding the caller supplied (``documents`` with retrieval
  scores, tool messages), the answer as the client received it, usage, latency, a safety
  summary and the app's metadata (``user``, ``x-genaiops-session``,
  ``x-genaiops-flow-variant``, index name / version / alias).
* :class:`FeedbackRecord`: a rating (``up``/``down``/1..5, and its numeric form) an app sent to
  ``POST /v1/feedback`` for one of its own requests.
* :class:`CaptureStore`: the storage seam (blocking methods); :class:`SQLiteCaptureStore` is
  the default, one WAL file beside the ledger shared by every gateway process.

Reading captured traffic offline (what ``genaiops monitor`` does):

    >>> import time
    >>> from gateway.capture import open_capture_store
    >>> store = open_capture_store(load_config("gateway.yaml"))          # doctest: +SKIP
    >>> for rec in store.query(since=time.time() - 3600, alias="chat"):  # doctest: +SKIP
    ...     print(rec.request_id, rec.question(), rec.context(), rec.completion)
    >>> fb = store.get_feedback(rec.request_id, key_id=None)             # doctest: +SKIP
    >>> fb.rating, fb.score                                              # doctest: +SKIP
    ('down', 0.0)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.capture.records import (
    CAPTURE_SCHEMA_VERSION,
    CaptureCounts,
    CapturedDocument,
    CaptureMetadata,
    CaptureRecord,
    FeedbackRecord,
    Rating,
    SafetySummary,
    Usage,
    rating_score,
)
from gateway.capture.store import FEEDBACK_GROUPS, CaptureStore, SQLiteCaptureStore

if TYPE_CHECKING:
    from gateway.config import GatewayConfig


def open_capture_store(config: GatewayConfig) -> CaptureStore:
    """The capture store a gateway with ``config`` uses: PostgreSQL with ``state.kind``
    postgres, else SQLite at ``config.capture_path()``."""
    if config.state.kind == "postgres":
        from gateway import migrations
        from gateway.capture.pg_store import PgCaptureStore

        assert config.state.dsn_env  # validated by StateConfig
        return PgCaptureStore(migrations.dsn_from_env(config.state.dsn_env))
    return SQLiteCaptureStore(config.capture_path(), config.state.ledger_sync)


__all__ = [
    "CAPTURE_SCHEMA_VERSION",
    "FEEDBACK_GROUPS",
    "CaptureCounts",
    "CaptureMetadata",
    "CaptureRecord",
    "CaptureStore",
    "CapturedDocument",
    "FeedbackRecord",
    "Rating",
    "SQLiteCaptureStore",
    "SafetySummary",
    "Usage",
    "open_capture_store",
    "rating_score",
]
