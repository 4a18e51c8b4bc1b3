"""Admission control: per key and per team RPM, TPM and a token quota per day or month.

Admission **reserves** one request plus ``prompt tokens + max_tokens`` in every applicable bucket
at once (all or nothing, atomically in the state store), so concurrent requests can never
overshoot.  :meth:`Limiter.settle` then returns the unused part of the reservation.  Windows are
fixed one-minute buckets (UTC); quota periods are UTC calendar days or months.

    >>> lim = Limiter(store, teams={"search": LimitsConfig(tpm=50_000)})   # doctest: +SKIP
    >>> res = await lim.admit(key_record, tokens=812)                     # doctest: +SKIP
    >>> await lim.settle(res, used_tokens=300)                            # doctest: +SKIP
"""

from __future__ import annotations

import calendar
import datetime as dt
import time
from dataclasses import dataclass, field

from gateway.config import LimitsConfig
from gateway.errors import QuotaExceeded, RateLimited
from gateway.keys import KeyRecord
from gateway.state import Counter, StateStore

__all__ = ["Limiter", "Reservation", "format_duration"]


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


def format_duration(seconds: float) -> str:
    """OpenAI-style reset durations: ``12ms``, ``6s``, ``1m3s``."""
    if seconds < 1:
        return f"{max(0, int(seconds * 1000))}ms"
    s = int(seconds + 0.999)
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s}s" if s else f"{m}m"
    h, m = divmod(m, 60)
    return f"{h}h{m}m"


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

    def __init__(self, store: StateStore, teams: dict[str, LimitsConfig] | None = None):
        self.store = store
        self.teams = teams or {}

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

    async def admit(self, key: KeyRecord, tokens: int) -> Reservation:
        """Reserve or raise :class:`RateLimited` / :class:`QuotaExceeded` (429)."""
        now = time.time()
        slots = self._slots(key, tokens, now)
        res = Reservation(tokens=tokens, slots=slots)
        if not slots:
            return res
        result = await self.store.admit([s.counter for s in slots])
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
        return res

    def settle_deltas(self, res: Reservation, used_tokens: int) -> list[tuple[str, int, float]]:
        """The bucket changes that give back ``reserved - used`` tokens (at most once).

        Never charges more than was reserved: admission is the only place a limit is checked.
        """
        if res.settled:
            return []
        res.settled = True
        give_back = res.tokens - min(max(0, used_tokens), res.tokens)
        if give_back <= 0:
            return []
        return [
            (s.counter.bucket, -give_back, s.counter.ttl_s)
            for s in res.slots
            if s.kind in ("tokens", "quota")
        ]

    async def settle(self, res: Reservation, used_tokens: int) -> None:
        deltas = self.settle_deltas(res, used_tokens)
        if deltas:
            await self.store.settle(deltas)


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
