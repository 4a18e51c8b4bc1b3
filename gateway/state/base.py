"""The shared-state seam: counters (rate limits, quotas) and a small versioned key-value store.

Two implementations share one contract (``tests/gateway/test_state_contract.py``): SQLite (WAL,
one host, several processes) and Redis (several replicas; atomic Lua scripts).

Admission is all-or-nothing over a list of :class:`Counter` buckets: either every bucket has room
for its ``amount`` and all are incremented in one atomic step, or nothing changes.  Settlement adds
``actual - reserved`` (may be positive: the true usage is always counted; never below zero) to the
buckets that were reserved.

A reservation can carry a :class:`Hold`: a record, written in the same atomic step, of which
process (``owner``) holds how many tokens in which buckets.  Admission and :meth:`progress` renew
the owner's lease; :meth:`reclaim` (any process, any time) gives back the holds of owners whose
lease ran out — a ``kill -9`` leaks a reservation for one lease at most — keeping the ``charge``
recorded by :meth:`progress` (tokens already delivered).  Settling a hold that was reclaimed
corrects the buckets by what the reclaim gave back, so nothing is counted twice.

    >>> hold = Hold("req_1", "gw-a", 30.0, ["k1:tpm:2921"], 300)
    >>> res = await store.admit([Counter("k1:tpm:2921", 1000, 300, 60)], hold)  # doctest: +SKIP
    >>> await store.settle([("k1:tpm:2921", -120, 60)], hold="req_1")          # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = ["AdmitResult", "Counter", "Hold", "StateStore"]


@dataclass(frozen=True)
class Counter:
    """One bucket to reserve from: ``amount`` more must fit under ``limit``."""

    bucket: str
    limit: int
    amount: int
    ttl_s: float


@dataclass(frozen=True)
class Hold:
    """Who holds a reservation: released by :meth:`StateStore.reclaim` if ``owner`` stops
    renewing its lease (``lease_s``).  ``buckets`` are the token buckets of ``amount`` each."""

    id: str
    owner: str
    lease_s: float
    buckets: list[str]
    amount: int


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

    async def admit(self, counters: list[Counter], hold: Hold | None = None) -> AdmitResult:
        """Reserve every counter or none; on success also record ``hold`` and renew its
        owner's lease, in the same atomic step."""
        ...

    async def settle(
        self,
        deltas: list[tuple[str, int, float]],
        *,
        hold: str | None = None,
        then: Callable[[], None] | None = None,
    ) -> None:
        """Add ``delta`` to each bucket (clamped at 0); ``ttl_s`` applies if it is created.

        ``hold``: release that hold too (if it was reclaimed meanwhile, each delta is first
        corrected by what the reclaim gave back).  ``then``: blocking work to run once the
        settlement is stored (the ledger write), in the same worker-thread hop where the store
        has one — one hop instead of two per request on SQLite.
        """
        ...

    async def progress(self, owner: str, lease_s: float, charges: dict[str, int]) -> None:
        """Renew ``owner``'s lease; record per hold the tokens to keep if it is reclaimed."""
        ...

    async def reclaim(self) -> list[str]:
        """Give back the holds of owners whose lease has expired (keeping their ``charge``);
        the ids of the holds released."""
        ...

    async def owners_alive(self, owners: list[str]) -> set[str]:
        """The owners in ``owners`` whose lease is current."""
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
