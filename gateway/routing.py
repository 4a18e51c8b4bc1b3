"""Alias → deployment: weighted, sticky per key/user, rollout-aware, with fallback order.

The primary deployment is chosen by hashing ``alias + sticky id`` onto the weights, so one user
keeps seeing the same deployment while weights are unchanged.  The rest of the alias's weighted
deployments, then its ``fallback`` list, are tried in order when a deployment fails after its
own retries (429/5xx/timeouts); 4xx answers are not retried elsewhere.

    >>> router = Router(config, backends, rollouts)                      # doctest: +SKIP
    >>> order = await router.order(config.alias("chat"), sticky="key_1")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import time

from gateway.backends import Backend
from gateway.config import AliasConfig, GatewayConfig
from gateway.rollout import RolloutManager

__all__ = ["Router", "bucket"]


def bucket(*parts: str) -> float:
    """A stable number in [0, 100) for the given identity."""
    h = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64 * 100


class Router:
    """Orders deployments for a request.

    A per-process circuit breaker demotes a deployment that failed ``breaker_failures`` requests
    in a row to the end of the order for ``breaker_cooldown_s`` (APIM backend-pool style), so a
    dead primary does not cost every request its retries; one success closes it again.
    """

    def __init__(
        self, config: GatewayConfig, backends: dict[str, Backend], rollouts: RolloutManager
    ):
        self.config = config
        self.backends = backends
        self.rollouts = rollouts
        self._failures: dict[str, int] = {}
        self._open_until: dict[str, float] = {}

    def record(self, deployment: str, ok: bool) -> None:
        if ok:
            self._failures.pop(deployment, None)
            self._open_until.pop(deployment, None)
            return
        n = self._failures.get(deployment, 0) + 1
        self._failures[deployment] = n
        cfg = self.config.deployment(deployment)
        if n >= cfg.breaker_failures:
            self._open_until[deployment] = time.monotonic() + cfg.breaker_cooldown_s

    def is_open(self, deployment: str) -> bool:
        until = self._open_until.get(deployment)
        return until is not None and time.monotonic() < until

    async def weights(self, alias: AliasConfig) -> dict[str, float]:
        w = {d.deployment: d.weight for d in alias.deployments}
        st = await self.rollouts.cached(alias.name)
        if st is None:
            return w
        if st.status in ("running", "paused", "promoted"):
            return st.weights()
        # rolled back: the configured weights without the candidate
        return {k: v for k, v in w.items() if k != st.candidate} or {st.stable: 100.0}

    async def order(self, alias: AliasConfig, sticky: str) -> list[str]:
        return (await self.plan(alias, sticky))[0]

    async def plan(self, alias: AliasConfig, sticky: str) -> tuple[list[str], str | None]:
        """The order to try, and the deployment the request was meant for when its circuit
        is open (so the miss still counts against it, e.g. for a rollout's judgement)."""
        weights = await self.weights(alias)
        live = [(d, w) for d, w in weights.items() if w > 0]
        total = sum(w for _, w in live)
        primary = None
        if total > 0:
            x = bucket(alias.name, sticky) / 100 * total
            acc = 0.0
            for d, w in live:
                acc += w
                if x < acc:
                    primary = d
                    break
            primary = primary or live[-1][0]
        rest = [d for d, _ in sorted(live, key=lambda p: -p[1]) if d != primary]
        seq = ([primary] if primary else []) + rest + list(alias.fallback)
        st = await self.rollouts.cached(alias.name)
        if st is not None and st.status == "rolled_back":
            seq = [d for d in seq if d != st.candidate]
        out: list[str] = []
        for d in seq:
            if d not in out:
                out.append(d)
        # open circuits go last (still tried if nothing else answers)
        skipped = out[0] if out and self.is_open(out[0]) else None
        ordered = [d for d in out if not self.is_open(d)] + [d for d in out if self.is_open(d)]
        return ordered, skipped

    def shadow_target(self, alias: AliasConfig, sticky: str, request_id: str) -> str | None:
        if alias.shadow is None:
            return None
        return (
            alias.shadow.deployment if bucket("shadow", request_id) < alias.shadow.percent else None
        )
