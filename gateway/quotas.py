"""Admission control: per key and per team RPM, TPM and a token quota per day or month.

Admission **reserves** one request plus ``prompt bound + max_tokens`` (see
:mod:`gateway.counting`: an upper bound of what the request can be billed) in every applicable
bucket at once (all or nothing, atomically in the state store), so concurrent requests can never
overshoot.  Settlement then charges the **true** usage: it gives back the unused part, and when an
upstream reports more than was reserved it counts the excess too (never hidden) and reports it
(``genaiops_gateway_quota_overshoot_tokens``).  Every reservation is a :class:`~gateway.state.Hold`
of this process (``owner``), released by any process if this one dies (see
:mod:`gateway.leases`).  Windows are fixed one-minute buckets (UTC); quota periods are UTC
calendar days or months.

    >>> lim = Limiter(store, teams={"search": LimitsConfig(tpm=50_000)})   # doctest: +SKIP
    >>> res = await lim.admit(key_record, tokens=812, hold="req_1")       # doctest: +SKIP
    >>> await lim.settle(res, used_tokens=300)                            # doctest: +SKIP
"""

from __future__ import annotations

import calendar
import datetime as dt
import os
import socket
import time
import uuid
from dataclasses import dataclass, field

from gateway.config import LimitsConfig
from gateway.errors import QuotaExceeded, RateLimited
from gateway.keys import KeyRecord
from gateway.state import Counter, Hold, StateStore

__all__ = ["Limiter", "Reservation", "format_duration", "new_owner"]


def new_owner() -> str:
    """A process-unique owner id for holds: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class _Slot:
    scope: str  # "key" | "team"
    kind: str  # "requests" | "tokens" | "quota"
    counter: Counter
    reset_s: float


@dataclass
class Reservation:
    """What one request holds until it settles."""

    tokens: int
    slots: list[_Slot] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    settled: bool = False
    hold: str | None = None  # the store's record of it (token buckets only)
    overshoot: int = 0  # tokens charged beyond the reservation (upstream reported more)


def format_duration(seconds: float) -> str:
    """OpenAI-style reset durations (Go's ``time.Duration`` strings): ``12ms``, ``6s``, ``1m0s``,
    ``1h2m3s``.  Whole units carry their trailing zeros, as OpenAI's own headers do."""
    if seconds < 1:
        return f"{max(0, int(seconds * 1000))}ms"
    s = int(seconds + 0.999)
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s}s"
    h, m = divmod(m, 60)
    return f"{h}h{m}m{s}s"


def _period(period: str, now: float) -> tuple[str, float]:
    d = dt.datetime.fromtimestamp(now, dt.UTC)
    if period == "day":
        end = dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC) + dt.timedelta(days=1)
        return d.strftime("%Y-%m-%d"), end.timestamp() - now
    days = calendar.monthrange(d.year, d.month)[1]
    end = dt.datetime(d.year, d.month, 1, tzinfo=dt.UTC) + dt.timedelta(days=days)
    return d.strftime("%Y-%m"), end.timestamp() - now


class Limiter:
    """Builds counter buckets for a key (and its team) and admits/settles against a store."""

    def __init__(
        self,
        store: StateStore,
        teams: dict[str, LimitsConfig] | None = None,
        *,
        owner: str | None = None,
        lease_s: float = 30.0,
    ):
        self.store = store
        self.teams = teams or {}
        self.owner = owner or new_owner()
        self.lease_s = lease_s

    def _slots(self, key: KeyRecord, tokens: int, now: float) -> list[_Slot]:
        minute = int(now // 60)
        minute_reset = 60 - (now % 60)
        scopes: list[tuple[str, str, LimitsConfig]] = [
            (
                "key",
                key.id,
                LimitsConfig(rpm=key.rpm, tpm=key.tpm, quota=key.quota, period=key.period),  # type: ignore[arg-type]
            )
        ]
        if key.team and key.team in self.teams:
            scopes.append(("team", key.team, self.teams[key.team]))
        slots = []
        for scope, ident, lim in scopes:
            base = f"{scope}:{ident}"
            if lim.rpm is not None:
                c = Counter(f"{base}:rpm:{minute}", lim.rpm, 1, 120)
                slots.append(_Slot(scope, "requests", c, minute_reset))
            if lim.tpm is not None:
                c = Counter(f"{base}:tpm:{minute}", lim.tpm, tokens, 120)
                slots.append(_Slot(scope, "tokens", c, minute_reset))
            if lim.quota is not None:
                pid, left = _period(lim.period, now)
                c = Counter(f"{base}:quota:{lim.period}:{pid}", lim.quota, tokens, left + 86400)
                slots.append(_Slot(scope, "quota", c, left))
        return slots

    async def admit(self, key: KeyRecord, tokens: int, hold: str | None = None) -> Reservation:
        """Reserve or raise :class:`RateLimited` / :class:`QuotaExceeded` (429).

        ``hold``: an id for the store's record of this reservation, so that it is released if
        this process dies before settling it.
        """
        now = time.time()
        slots = self._slots(key, tokens, now)
        res = Reservation(tokens=tokens, slots=slots)
        if not slots:
            return res
        buckets = [s.counter.bucket for s in slots if s.kind in ("tokens", "quota")]
        record = None
        if hold is not None and buckets and tokens > 0:
            record = Hold(hold, self.owner, self.lease_s, buckets, tokens)
        result = await self.store.admit([s.counter for s in slots], record)
        if not result.ok:
            assert result.failed is not None
            bad = slots[result.failed]
            headers = _headers(slots[: result.failed + 1], result.used, ok=False)
            who = "team" if bad.scope == "team" else "key"
            if bad.kind == "quota":
                raise QuotaExceeded(
                    f"token quota of this {who} for the {bad.counter.bucket.split(':')[-2]} is "
                    f"exhausted ({result.used[-1]}/{bad.counter.limit} tokens used; this request "
                    f"needs {tokens})",
                    retry_after=bad.reset_s,
                    headers=headers,
                )
            what = "requests" if bad.kind == "requests" else "tokens"
            raise RateLimited(
                f"rate limit of this {who} reached: {bad.counter.limit} {what} per minute "
                f"(this request needs {bad.counter.amount}); retry after "
                f"{format_duration(bad.reset_s)}",
                retry_after=bad.reset_s,
                headers=headers,
            )
        res.headers = _headers(slots, result.used, ok=True)
        res.hold = record.id if record is not None else None
        return res

    def settle_deltas(self, res: Reservation, used_tokens: int) -> list[tuple[str, int, float]]:
        """The bucket changes that turn the reservation into ``used_tokens`` (at most once).

        The true usage is charged even above the reservation (``res.overshoot`` says by how
        much): a limit is checked only at admission, but the counters never under-report.
        """
        if res.settled:
            return []
        res.settled = True
        delta = max(0, used_tokens) - res.tokens
        res.overshoot = max(0, delta)
        if delta == 0:
            return []
        return [
            (s.counter.bucket, delta, s.counter.ttl_s)
            for s in res.slots
            if s.kind in ("tokens", "quota")
        ]

    async def settle(self, res: Reservation, used_tokens: int) -> None:
        """Settle ``res`` to ``used_tokens`` and release its hold."""
        hold = None if res.settled else res.hold
        deltas = self.settle_deltas(res, used_tokens)
        if deltas or hold is not None:
            await self.store.settle(deltas, hold=hold)


def _headers(slots: list[_Slot], used: list[int], ok: bool) -> dict[str, str]:
    """``x-ratelimit-*`` from the key's own buckets (the team's when the key has none)."""
    out: dict[str, str] = {}
    for slot, u in zip(slots, used, strict=False):
        if slot.kind == "quota":
            name = "x-ratelimit-remaining-quota-tokens"
            if name not in out:
                out[name] = str(max(0, slot.counter.limit - u))
            continue
        suffix = slot.kind
        if f"x-ratelimit-limit-{suffix}" in out:
            continue
        out[f"x-ratelimit-limit-{suffix}"] = str(slot.counter.limit)
        out[f"x-ratelimit-remaining-{suffix}"] = str(max(0, slot.counter.limit - u))
        out[f"x-ratelimit-reset-{suffix}"] = format_duration(slot.reset_s)
    return out
