"""Leases on reservations: what a dead gateway process held is given back, what it delivered kept.

Each gateway process is an *owner*.  Its reservations are holds in the state store
(:class:`~gateway.state.Hold`), and its ledger rows carry its id.  A :class:`LeaseKeeper` runs in
every process; every ``progress_interval_s`` it, in one store call and one ledger write:

1. renews this owner's lease (admission renews it too) and records, per stream in flight, the
   tokens delivered so far as the hold's ``charge`` — and the same numbers on its ledger row;
2. reclaims the holds of owners whose lease ran out (``kill -9``, crash, lost host): their
   buckets keep the charge (prompt + delivered tokens) and get the rest back;
3. marks ``streaming`` rows of dead owners in its ledger ``interrupted``.

So after a ``kill -9`` a key's quota is whole again one ``lease_s`` later at most, in any process
still running or in the next one started, and the ledger shows what each cut stream delivered.

    >>> keeper = LeaseKeeper(store, ledger, owner="host:123:ab12cd34", lease_s=15)  # doctest: +SKIP
    >>> keeper.track("req_1", "req_1", lambda: (40, 12))     # doctest: +SKIP
    >>> await keeper.tick()                                   # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from gateway.ledgers import UsageLedger
from gateway.state import STATE_ERRORS, StateStore

__all__ = ["LeaseKeeper", "Progress"]

_TICK_ERRORS: tuple[type[Exception], ...] = (*STATE_ERRORS, OSError)

log = logging.getLogger(__name__)

# (prompt tokens, completion tokens delivered so far), or None while nothing was delivered
Progress = Callable[[], "tuple[int, int] | None"]


@dataclass
class _Tracked:
    hold: str | None
    progress: Progress
    last: tuple[int, int] | None = None


class LeaseKeeper:
    """Renews this process's lease, saves stream progress, and reclaims dead owners' holds."""

    def __init__(
        self,
        store: StateStore,
        ledger: UsageLedger,
        owner: str,
        lease_s: float = 30.0,
        interval_s: float = 1.0,
    ):
        self.store = store
        self.ledger = ledger
        self.owner = owner
        self.lease_s = lease_s
        self.interval_s = interval_s
        self._tracked: dict[str, _Tracked] = {}

    def track(self, request_id: str, hold: str | None, progress: Progress) -> None:
        """Follow one request until :meth:`untrack` (its ledger row and hold get its progress)."""
        self._tracked[request_id] = _Tracked(hold, progress)

    def untrack(self, request_id: str) -> None:
        self._tracked.pop(request_id, None)

    async def tick(self) -> list[str]:
        """One round (see the module doc); the ids of holds reclaimed from dead owners."""
        charges: dict[str, int] = {}
        rows: list[tuple[str, int, int]] = []
        for rid, t in list(self._tracked.items()):
            now = t.progress()
            if now is None or now == t.last:
                continue
            t.last = now
            rows.append((rid, *now))
            if t.hold is not None:
                charges[t.hold] = sum(now)
        await self.store.progress(self.owner, self.lease_s, charges)
        if rows:
            await asyncio.to_thread(self.ledger.progress_sync, rows)
        reclaimed = await self.store.reclaim()
        others = await asyncio.to_thread(self.ledger.streaming_owners_sync, self.owner)
        dead = sorted(set(others) - await self.store.owners_alive(others)) if others else []
        if dead or reclaimed:
            n = await asyncio.to_thread(self.ledger.interrupt_sync, dead, reclaimed)
            log.warning(
                "leases: released %d reservation(s) of stopped gateway processes; %d streamed "
                "ledger row(s) marked interrupted",
                len(reclaimed),
                n,
            )
        return reclaimed

    async def run(self) -> None:
        """:meth:`tick` every ``interval_s`` until cancelled; a failing store only logs."""
        while True:
            try:
                await self.tick()
            except _TICK_ERRORS as e:
                log.error("leases: tick failed: %s: %s", type(e).__name__, e)
            await asyncio.sleep(self.interval_s)
