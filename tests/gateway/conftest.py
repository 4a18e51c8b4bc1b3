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


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[StateStore]:
    """Each state store in turn: the contract suites run on both."""
    if request.param == "sqlite":
        yield SQLiteStore(tmp_path / "state.db")
    else:
        import uuid

        from gateway.state.redis import RedisStore

        url = request.getfixturevalue("redis_url")
        yield RedisStore(url, namespace=f"t{uuid.uuid4().hex[:8]}:")
