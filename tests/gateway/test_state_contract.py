"""One contract every state store passes: SQLite (WAL) and Redis (Lua)."""

from __future__ import annotations

import asyncio
import threading

from gateway.state import Counter, Hold, StateStore


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


def test_settle_runs_then_after_the_settlement_is_stored(store: StateStore):
    """The seam calls.py used to reach around with isinstance(store, SQLiteStore)."""

    async def go():
        await store.admit([Counter("s", 100, 40, 60)])
        seen: list[int] = []
        loop_thread = threading.get_ident()
        threads: list[int] = []

        def then() -> None:  # blocking work (the ledger write): never on the event loop
            threads.append(threading.get_ident())
            seen.append(1)

        await store.settle([("s", -15, 60)], then=then)
        assert seen == [1] and threads[0] != loop_thread
        assert await store.peek(["s"]) == [25]
        await store.settle([], then=then)  # nothing to settle: still runs
        assert seen == [1, 1]
        await store.settle([("s", 30, 60)])  # usage above the reservation is counted
        assert await store.peek(["s"]) == [55]
        await store.close()

    run(go())


def test_holds_of_a_dead_owner_are_reclaimed_keeping_their_charge(store: StateStore):
    async def go():
        a = Hold("r1", "owner-a", 0.3, ["t", "q"], 50)
        b = Hold("r2", "owner-b", 60.0, ["t", "q"], 30)
        assert (await store.admit([Counter("t", 1000, 50, 60), Counter("q", 1000, 50, 60)], a)).ok
        assert (await store.admit([Counter("t", 1000, 30, 60), Counter("q", 1000, 30, 60)], b)).ok
        await store.progress("owner-a", 0.3, {"r1": 12})  # 12 tokens delivered so far
        assert await store.reclaim() == []  # owner-a's lease is still current
        assert await store.owners_alive(["owner-a", "owner-b", "nobody"]) == {"owner-a", "owner-b"}
        await asyncio.sleep(0.5)  # owner-a stops renewing (kill -9)
        assert await store.owners_alive(["owner-a", "owner-b"]) == {"owner-b"}
        assert await store.reclaim() == ["r1"]
        assert await store.peek(["t", "q"]) == [42, 42]  # 12 charged + owner-b's 30
        assert await store.reclaim() == []  # once only
        # owner-b settles normally: its hold is released with it
        await store.settle([("t", -10, 60), ("q", -10, 60)], hold="r2")
        assert await store.peek(["t", "q"]) == [32, 32]
        await store.close()

    run(go())


def test_late_settlement_of_a_reclaimed_hold_counts_once(store: StateStore):
    """A process that was only stalled settles after its hold was reclaimed: the buckets end at
    its true usage, not at usage minus what the reclaim gave back."""

    async def go():
        h = Hold("r1", "slow", 0.2, ["t"], 100)
        assert (await store.admit([Counter("t", 1000, 100, 60)], h)).ok
        await store.progress("slow", 0.2, {"r1": 20})
        await asyncio.sleep(0.4)
        assert await store.reclaim() == ["r1"]
        assert await store.peek(["t"]) == [20]
        await store.settle([("t", 60 - 100, 60)], hold="r1")  # true usage 60 of 100 reserved
        assert await store.peek(["t"]) == [60]
        await store.settle([("t", 0, 60)], hold="r1")  # the hold is gone: plain delta
        assert await store.peek(["t"]) == [60]
        await store.close()

    run(go())


def test_bucket_and_key_names_with_nul_work(store: StateStore):
    """A team or key name is client text: a NUL in it must not make every request a 503."""

    async def go():
        assert (await store.admit([Counter("team:a\x00b:tpm", 100, 10, 60)])).ok
        await store.settle([("team:a\x00b:tpm", -4, 60)])
        assert await store.peek(["team:a\x00b:tpm"]) == [6]
        await store.kv_put("x:\x00", {"v": "\x00"})
        assert await store.kv_get("x:\x00") == ({"v": "\x00"}, 1)
        await store.close()

    run(go())
