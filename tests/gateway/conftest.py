"""Gateway test fixtures: admin key in the environment, a fake upstream, a running gateway."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.gateway.support import ADMIN_KEY, FakeUpstream, Running, serve, upstream_config


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
