"""Gateway test fixtures: admin key in the environment, a fake upstream, a running gateway."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.state import SQLiteStore, StateStore
from tests.gateway.support import ADMIN_KEY, FakeUpstream, Running, serve, upstream_config
from tests.gateway.telemetry import spans  # noqa: F401  (traces of a test: InMemorySpanExporter)


@pytest.fixture(autouse=True)
def admin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENAIOPS_ADMIN_KEY", ADMIN_KEY)


@pytest.fixture
def upstream() -> FakeUpstream:
    return FakeUpstream()


@pytest.fixture
def gateway(upstream: FakeUpstream) -> Iterator[Running]:
    with serve(upstream_config(), upstream.client()) as running:
        yield running


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    from tests.gateway.support import redis_server

    with redis_server() as url:
        yield url


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """One throwaway PostgreSQL server for the session; yields the DSN of its ``postgres``
    database (tests that need a blank database create one)."""
    from tests.gateway.support import postgres_server

    with postgres_server() as server:
        yield server.dsn


@pytest.fixture(scope="session")
def _pg_migrated(pg_server: str) -> str:
    import psycopg

    from gateway import migrations

    with psycopg.connect(pg_server, autocommit=True) as c:
        c.execute("CREATE DATABASE gw_test")
    dsn = pg_server.rsplit("/", 1)[0] + "/gw_test"
    migrations.upgrade(dsn)
    return dsn


@pytest.fixture
def pg_dsn(_pg_migrated: str) -> str:
    """A migrated database with every gateway table emptied (TRUNCATE: milliseconds, where a
    fresh database per test took a second on a loaded machine)."""
    import psycopg

    with psycopg.connect(_pg_migrated, autocommit=True) as c:
        c.execute("TRUNCATE counters, kv, holds, owners, usage, scores, captures, feedback")
    return _pg_migrated


@pytest.fixture(params=["sqlite", "redis", "postgres", "postgres-for-update"])
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[StateStore]:
    """Each state store in turn: the contract suites run on all of them (PostgreSQL with both
    ways of locking counters)."""
    if request.param == "sqlite":
        yield SQLiteStore(tmp_path / "state.db")
    elif request.param.startswith("postgres"):
        from gateway.state.postgres import PostgresStore

        lock = "for_update" if request.param.endswith("for-update") else "update"
        yield PostgresStore(request.getfixturevalue("pg_dsn"), counter_lock=lock)
    else:
        import uuid

        from gateway.state.redis import RedisStore

        url = request.getfixturevalue("redis_url")
        yield RedisStore(url, namespace=f"t{uuid.uuid4().hex[:8]}:")
