"""The shared-state seam: counters (rate limits, quotas) and a small versioned key-value store.

Two implementations share one contract (``tests/gateway/test_state_contract.py``): SQLite (WAL,
one host, several processes) and Redis (several replicas; atomic Lua scripts).

Admission is all-or-nothing over a list of :class:`Counter` buckets: either every bucket has room
for its ``amount`` and all are incremented in one atomic step, or nothing changes.  Settlement adds
``actual - reserved`` (never below zero) to the buckets that were reserved.

    >>> res = await store.admit([Counter("k1:tpm:2921", 1000, 300, 60)])   # doctest: +SKIP
    >>> await store.settle([("k1:tpm:2921", -120, 60)])                    # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = ["AdmitResult", "Counter", "StateStore"]


@dataclass(frozen=True)
class Counter:
    """One bucket to reserve from: ``amount`` more must fit under ``limit``."""

    bucket: str
    limit: int
    amount: int
    ttl_s: float


@dataclass(frozen=True)
class AdmitResult:
    """``ok``; else ``failed`` is the index of the first bucket without room.

    ``used`` holds each bucket's value after admission (or, on failure, the failed bucket's
    current value at position ``failed``).
    """

    ok: bool
    used: list[int]
    failed: int | None = None


@runtime_checkable
class StateStore(Protocol):
    """Counters and a versioned JSON key-value store; every method is atomic."""

    async def admit(self, counters: list[Counter]) -> AdmitResult: ...

    async def settle(self, deltas: list[tuple[str, int, float]]) -> None:
        """Add ``delta`` to each bucket (clamped at 0); ``ttl_s`` applies if it is created."""
        ...

    async def peek(self, buckets: list[str]) -> list[int]: ...

    async def kv_get(self, key: str) -> tuple[dict[str, Any] | None, int]:
        """The value and its version (0 when absent)."""
        ...

    async def kv_put(self, key: str, value: dict[str, Any]) -> int: ...

    async def kv_cas(self, key: str, value: dict[str, Any], version: int) -> bool:
        """Write only if the stored version is still ``version``."""
        ...

    async def kv_list(self, prefix: str) -> list[tuple[str, dict[str, Any]]]: ...

    async def kv_delete(self, key: str) -> None: ...

    async def close(self) -> None: ...
