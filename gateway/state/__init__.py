"""Shared state behind one interface: SQLite (one host) or Redis (several replicas).

>>> store = open_store(config.state, config.state_path())        # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from gateway.state.base import AdmitResult, Counter, Hold, StateStore
from gateway.state.sqlite import SQLiteStore

__all__ = ["AdmitResult", "Counter", "Hold", "SQLiteStore", "StateStore", "open_store"]


def open_store(backend: str, path: Path, redis_url: str | None = None) -> StateStore:
    """The configured store; Redis is imported only when used."""
    if backend == "redis":
        from gateway.state.redis import RedisStore

        assert redis_url, "redis backend needs redis_url (validated by StateConfig)"
        return RedisStore(redis_url)
    return SQLiteStore(path)
