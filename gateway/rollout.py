"""Gradual rollout of a candidate deployment behind a model alias, with automatic rollback.

State lives in the shared store (``rollout:<alias>``), so it survives restarts and every replica
sees it; transitions are compare-and-set, so only one replica advances a step.  Every replica
counts the outcomes of stable and candidate (requests, 5xx, a latency histogram) in the shared
store, so each tick compares candidate and stable on *all* replicas' traffic since the current
step began (online scores come from the ledger of the replica they were posted to):

* breach — candidate error rate above stable's by more than ``max_error_rate_increase``, or
  candidate p95 latency above ``max(stable_p95 * max_p95_ratio, stable_p95 + p95_slack_ms)``, or
  (when evaluation posts online scores to ``/admin/scores``) candidate mean score below
  stable's by more than ``max_score_drop`` — judged as soon as the candidate has
  ``min_samples`` requests (scored ones for the score check): **roll back** (weight 0);
* after ``interval_s`` with enough samples and no breach: advance to the next step; after the
  last step: **promoted** (candidate takes 100%).  Too few samples: wait, never judge.

    >>> mgr = RolloutManager(store, config, ledger)                         # doctest: +SKIP
    >>> await mgr.start("chat", "gpt4o-v2", [5, 25, 50, 100], 60)     # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import bisect
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from gateway.config import GatewayConfig
from gateway.errors import Conflict, InvalidRequest, ModelNotFound, NotFound
from gateway.ledgers import UsageLedger
from gateway.state import StateStore

__all__ = ["LATENCY_EDGES_MS", "RolloutManager", "RolloutState", "parse_duration"]

ACTIVE = ("running", "paused")
# latency histogram bucket upper edges (ms) for the shared p95 estimate
LATENCY_EDGES_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000)


def _prefix(st: RolloutState, deployment: str) -> str:
    return f"ro:{st.alias}:{int(st.step_started * 1000)}:{deployment}"


def _p95(hist: list[int]) -> float | None:
    """Upper edge of the histogram bucket holding the 95th percentile."""
    total = sum(hist)
    if not total:
        return None
    acc = 0
    for i, c in enumerate(hist):
        acc += c
        if acc >= 0.95 * total:
            return float(LATENCY_EDGES_MS[i]) if i < len(LATENCY_EDGES_MS) else 120_000.0
    return None


def parse_duration(text: str) -> float:
    """``60s``, ``2m``, ``500ms``, ``1h``, ``7d``, ``2w`` or a plain number of seconds."""
    t = text.strip().lower()
    units = (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0), ("d", 86400.0), ("w", 604800.0))
    for suffix, mult in units:
        if t.endswith(suffix) and t[: -len(suffix)].replace(".", "", 1).isdigit():
            return float(t[: -len(suffix)]) * mult
    try:
        return float(t)
    except ValueError as e:
        raise InvalidRequest(f"not a duration: {text!r} (use 60s, 2m, 500ms, 7d)") from e


@dataclass
class RolloutState:
    alias: str
    stable: str
    candidate: str
    steps: list[float]
    interval_s: float
    step: int = 0
    status: str = "running"  # running | paused | promoted | rolled_back
    started: float = field(default_factory=time.time)
    step_started: float = field(default_factory=time.time)
    min_samples: int = 20
    max_error_rate_increase: float = 0.05
    max_p95_ratio: float = 1.5
    p95_slack_ms: float = 50.0
    max_score_drop: float = 0.1
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def weight(self) -> float:
        if self.status in ACTIVE:
            return self.steps[self.step]
        return 100.0 if self.status == "promoted" else 0.0

    def weights(self) -> dict[str, float]:
        w = self.weight
        return {self.stable: 100.0 - w, self.candidate: w}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["weight"] = self.weight
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RolloutState:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


class RolloutManager:
    """Start, judge, advance, promote, pause and roll back rollouts."""

    def __init__(self, store: StateStore, config: GatewayConfig, ledger: UsageLedger | None):
        self.store = store
        self.config = config
        self.ledger = ledger
        self._cache: dict[str, tuple[float, RolloutState | None]] = {}

    async def get(self, alias: str) -> RolloutState | None:
        v, _ = await self.store.kv_get(f"rollout:{alias}")
        return RolloutState.from_dict(v) if v else None

    async def cached(self, alias: str, ttl_s: float = 0.5) -> RolloutState | None:
        now = time.monotonic()
        hit = self._cache.get(alias)
        if hit and now - hit[0] < ttl_s:
            return hit[1]
        st = await self.get(alias)
        self._cache[alias] = (now, st)
        return st

    async def all(self) -> list[RolloutState]:
        return [RolloutState.from_dict(v) for _, v in await self.store.kv_list("rollout:")]

    async def start(
        self,
        alias: str,
        candidate: str,
        steps: list[float],
        interval_s: float,
        *,
        stable: str | None = None,
        **thresholds: Any,
    ) -> RolloutState:
        a = self.config.alias(alias)
        if a is None:
            raise ModelNotFound(f"model alias {alias!r} is not configured", param="alias")
        names = {d.name: d for d in self.config.deployments}
        if candidate not in names or names[candidate].kind != a.kind:
            raise InvalidRequest(
                f"candidate {candidate!r} is not a {a.kind} deployment in the config",
                param="candidate",
            )
        cur = await self.get(alias)
        if cur and cur.status in ACTIVE:
            raise Conflict(f"a rollout of {alias!r} is already {cur.status}")
        base = stable or (cur.candidate if cur and cur.status == "promoted" else None)
        base = base or max(a.deployments, key=lambda w: w.weight).deployment
        if base == candidate:
            raise InvalidRequest("candidate is already the stable deployment", param="candidate")
        if not steps or any(not 0 < s <= 100 for s in steps) or steps != sorted(steps):
            raise InvalidRequest("steps must be increasing percentages in (0, 100]", param="steps")
        if interval_s <= 0:
            raise InvalidRequest("interval must be positive", param="interval")
        st = RolloutState(
            alias=alias,
            stable=base,
            candidate=candidate,
            steps=[float(s) for s in steps],
            interval_s=float(interval_s),
            **{k: v for k, v in thresholds.items() if v is not None},
        )
        st.history.append({"ts": st.started, "event": "started", "weight": st.weight})
        await self.store.kv_put(f"rollout:{alias}", st.to_dict())
        self._cache.pop(alias, None)
        return st

    async def _transition(self, alias: str, event: str, **change: Any) -> RolloutState:
        for _ in range(20):
            v, ver = await self.store.kv_get(f"rollout:{alias}")
            if v is None:
                raise NotFound(f"no rollout for {alias!r}", param="alias")
            st = RolloutState.from_dict(v)
            if event != "resumed" and st.status not in ACTIVE:
                raise Conflict(f"rollout of {alias!r} is already {st.status}")
            if event == "resumed" and st.status != "paused":
                raise Conflict(f"rollout of {alias!r} is {st.status}, not paused")
            for k, val in change.items():
                setattr(st, k, val)
            st.history.append({"ts": time.time(), "event": event, "weight": st.weight})
            if await self.store.kv_cas(f"rollout:{alias}", st.to_dict(), ver):
                self._cache.pop(alias, None)
                return st
            await asyncio.sleep(0.01)
        raise Conflict(f"rollout of {alias!r} is changing too fast; retry")

    async def promote(self, alias: str) -> RolloutState:
        return await self._transition(alias, "promoted", status="promoted")

    async def rollback(self, alias: str) -> RolloutState:
        return await self._transition(alias, "rolled_back", status="rolled_back")

    async def pause(self, alias: str) -> RolloutState:
        return await self._transition(alias, "paused", status="paused")

    async def resume(self, alias: str) -> RolloutState:
        return await self._transition(alias, "resumed", status="running", step_started=time.time())

    async def observe(self, alias: str, deployment: str, status: int, latency_ms: float) -> None:
        """Count one outcome of a deployment in a running rollout, in the shared store, so every
        replica's judge sees all replicas' traffic (requests, 5xx, a latency histogram)."""
        st = await self.cached(alias)
        if st is None or st.status != "running" or deployment not in (st.stable, st.candidate):
            return
        p = _prefix(st, deployment)
        ttl = st.interval_s * 4 + 3600
        i = bisect.bisect_left(LATENCY_EDGES_MS, latency_ms)
        err = 1 if status >= 500 else 0
        await self.store.settle(
            [(f"{p}:n", 1, ttl), (f"{p}:err", err, ttl), (f"{p}:lat{i}", 1, ttl)]
        )

    async def stats(self, st: RolloutState, deployment: str) -> dict[str, Any]:
        """Shared counters of this step (all replicas) plus online scores from the ledger."""
        p = _prefix(st, deployment)
        names = [f"{p}:n", f"{p}:err"] + [f"{p}:lat{i}" for i in range(len(LATENCY_EDGES_MS) + 1)]
        n, err, *hist = await self.store.peek(names)
        out: dict[str, Any] = {
            "n": n,
            "errors": err,
            "error_rate": err / n if n else 0.0,
            "p95_ms": _p95(hist),
            "scored": 0,
            "mean_score": None,
        }
        if self.ledger is not None:
            led = await asyncio.to_thread(
                self.ledger.deployment_stats, st.alias, deployment, st.step_started
            )
            out["scored"], out["mean_score"] = led["scored"], led["mean_score"]
        return out

    def judge(
        self, st: RolloutState, now: float, cand: dict[str, Any], stab: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        """``wait`` | ``advance`` | ``rollback`` with the evidence."""
        ev = {"candidate": cand, "stable": stab}
        if cand["n"] < st.min_samples:
            return "wait", {**ev, "reason": f"{cand['n']}/{st.min_samples} candidate samples"}
        base_err = stab["error_rate"] if stab["n"] >= st.min_samples else 0.0
        if cand["error_rate"] > base_err + st.max_error_rate_increase:
            return "rollback", {**ev, "reason": "error rate"}
        if cand["p95_ms"] is not None and stab["n"] >= st.min_samples and stab["p95_ms"]:
            limit = max(stab["p95_ms"] * st.max_p95_ratio, stab["p95_ms"] + st.p95_slack_ms)
            if cand["p95_ms"] > limit:
                return "rollback", {**ev, "reason": "p95 latency"}
        if (
            cand["scored"] >= st.min_samples
            and stab["scored"] >= st.min_samples
            and cand["mean_score"] < stab["mean_score"] - st.max_score_drop
        ):
            return "rollback", {**ev, "reason": "online score"}
        if now - st.step_started >= st.interval_s:
            return "advance", {**ev, "reason": "checks passed"}
        return "wait", {**ev, "reason": "interval not over"}

    async def tick(self) -> list[RolloutState]:
        """Judge every running rollout once; returns those that changed."""
        changed = []
        for key, v in await self.store.kv_list("rollout:"):
            st = RolloutState.from_dict(v)
            if st.status != "running":
                continue
            now = time.time()
            cand, stab = await self.stats(st, st.candidate), await self.stats(st, st.stable)
            verdict, ev = self.judge(st, now, cand, stab)
            if verdict == "wait":
                continue
            _, ver = await self.store.kv_get(key)
            if verdict == "rollback":
                st.status = "rolled_back"
            elif st.step + 1 < len(st.steps):
                st.step += 1
                st.step_started = now
            else:
                st.status = "promoted"
            st.history.append({"ts": now, "event": verdict, "weight": st.weight, **ev})
            if await self.store.kv_cas(key, st.to_dict(), ver):
                self._cache.pop(st.alias, None)
                changed.append(st)
        return changed
