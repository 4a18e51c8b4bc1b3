"""Counters on one store, keys and other records on another: ``state: {kind: postgres,
redis_url: ...}`` keeps rate and quota counters (and their holds) on Redis, whose Lua scripts
admit in one server step, and the key-value records (API keys, rollouts) on PostgreSQL.

    >>> store = SplitStore(counters=RedisStore(url), records=PostgresStore(dsn))   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.state.base import AdmitResult, Counter, Hold, StateStore

__all__ = ["SplitStore"]


class SplitStore:
    """:class:`~gateway.state.base.StateStore`: counter methods go to ``counters``, key-value
    methods to ``records``."""

    def __init__(self, *, counters: StateStore, records: StateStore):
        self.counters = counters
        self.records = records

    async def admit(self, counters: list[Counter], hold: Hold | None = None) -> AdmitResult:
        return await self.counters.admit(counters, hold)

    async def settle(
        self,
        deltas: list[tuple[str, int, float]],
        *,
        hold: str | None = None,
        then: Callable[[], None] | None = None,
    ) -> None:
        await self.counters.settle(deltas, hold=hold, then=then)

    async def progress(self, owner: str, lease_s: float, charges: dict[str, int]) -> None:
        await self.counters.progress(owner, lease_s, charges)

    async def reclaim(self) -> list[str]:
        return await self.counters.reclaim()

    async def owners_alive(self, owners: list[str]) -> set[str]:
        return await self.counters.owners_alive(owners)

    async def peek(self, buckets: list[str]) -> list[int]:
        return await self.counters.peek(buckets)

    async def kv_get(self, key: str) -> tuple[dict[str, Any] | None, int]:
        return await self.records.kv_get(key)

    async def kv_put(self, key: str, value: dict[str, Any]) -> int:
        return await self.records.kv_put(key, value)

    async def kv_cas(self, key: str, value: dict[str, Any], version: int) -> bool:
        return await self.records.kv_cas(key, value, version)

    async def kv_list(self, prefix: str) -> list[tuple[str, dict[str, Any]]]:
        return await self.records.kv_list(prefix)

    async def kv_delete(self, key: str) -> None:
        await self.records.kv_delete(key)

    async def close(self) -> None:
        await self.counters.close()
        await self.records.close()
