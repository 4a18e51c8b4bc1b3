"""Shared state behind one interface: SQLite (one host), Redis or PostgreSQL (several replicas).

>>> store = open_config_store(config.state, config.state_path())     # doctest: +SKIP
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
from redis.exceptions import RedisError

from gateway.state.base import AdmitResult, Counter, Hold, StateStore
from gateway.state.sqlite import SQLiteStore

if TYPE_CHECKING:
    from gateway.config import StateConfig

__all__ = [
    "STATE_ERRORS",
    "AdmitResult",
    "Counter",
    "Hold",
    "SQLiteStore",
    "StateStore",
    "open_config_store",
    "open_store",
]

# what a store raises when its database is unreachable or failing (→ 503 state_unavailable);
# psycopg_pool.PoolTimeout is a psycopg.OperationalError
STATE_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, RedisError, psycopg.Error)


def open_store(
    backend: str, path: Path, redis_url: str | None = None, *, state: StateConfig | None = None
) -> StateStore:
    """The configured store; Redis and PostgreSQL are imported only when used.  ``postgres``
    needs ``state`` (its ``dsn_env``) and checks the schema revision first."""
    if backend == "postgres":
        assert state is not None and state.dsn_env, "postgres needs state.dsn_env"
        from gateway import migrations
        from gateway.state.postgres import PostgresStore

        dsn = migrations.dsn_from_env(state.dsn_env)
        migrations.check(dsn, state.dsn_env)
        pg = PostgresStore(dsn, pool_size=state.pool_size)
        if not redis_url:
            return pg
        from gateway.state.redis import RedisStore
        from gateway.state.split import SplitStore

        return SplitStore(counters=RedisStore(redis_url), records=pg)
    if backend == "redis":
        from gateway.state.redis import RedisStore

        assert redis_url, "redis backend needs redis_url (validated by StateConfig)"
        return RedisStore(redis_url)
    return SQLiteStore(path)


def open_config_store(state: StateConfig, path: Path) -> StateStore:
    """:func:`open_store` for a ``state:`` block (``path``: the SQLite file, when sqlite)."""
    return open_store(state.kind, path, state.redis_url, state=state)
