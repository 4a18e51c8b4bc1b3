"""One contract every state store passes: SQLite (WAL) and Redis (Lua)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from gateway.state import Counter, SQLiteStore, StateStore


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[StateStore]:
    if request.param == "sqlite":
        yield SQLiteStore(tmp_path / "state.db")
    else:
        from gateway.state.redis import RedisStore

        url = request.getfixturevalue("redis_url")
        yield RedisStore(url, namespace=f"t{uuid.uuid4().hex[:8]}:")


def run(coro):
    return asyncio.run(coro)


def test_admit_is_all_or_nothing(store: StateStore):
    async def go():
        ok = await store.admit([Counter("a", 10, 6, 60), Counter("b", 100, 6, 60)])
        assert ok.ok and ok.used == [6, 6]
        no = await store.admit([Counter("b", 100, 6, 60), Counter("a", 10, 6, 60)])
        assert not no.ok and no.failed == 1 and no.used[-1] == 6
        assert await store.peek(["a", "b"]) == [6, 6]  # "b" was not incremented
        await store.settle([("a", -4, 60), ("b", -100, 60)])
        assert await store.peek(["a", "b"]) == [2, 0]  # clamped at zero
        await store.close()

    run(go())


def test_concurrent_admission_never_overshoots(store: StateStore):
    async def go():
        res = await asyncio.gather(*(store.admit([Counter("q", 1000, 7, 60)]) for _ in range(300)))
        granted = sum(r.ok for r in res)
        assert granted == 1000 // 7
        assert await store.peek(["q"]) == [granted * 7]
        await store.close()

    run(go())


def test_kv_versions_and_cas(store: StateStore):
    async def go():
        assert await store.kv_get("x:1") == (None, 0)
        assert await store.kv_cas("x:1", {"v": 1}, 0)
        assert not await store.kv_cas("x:1", {"v": 2}, 0)
        v, ver = await store.kv_get("x:1")
        assert v == {"v": 1} and ver == 1
        assert await store.kv_cas("x:1", {"v": 2}, 1)
        assert not await store.kv_cas("x:1", {"v": 3}, 1)
        await store.kv_put("x:2", {"v": 9})
        await store.kv_put("y:1", {"v": 0})
        assert [k for k, _ in await store.kv_list("x:")] == ["x:1", "x:2"]
        await store.kv_delete("x:1")
        assert [k for k, _ in await store.kv_list("x:")] == ["x:2"]
        await store.close()

    run(go())
