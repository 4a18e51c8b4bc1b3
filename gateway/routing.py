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

from gateway.backends import Backend
from gateway.config import AliasConfig, GatewayConfig
from gateway.rollout import RolloutManager

__all__ = ["Router", "bucket"]


def bucket(*parts: str) -> float:
    """A stable number in [0, 100) for the given identity."""
    h = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64 * 100


class Router:
    """Orders deployments for a request."""

    def __init__(
        self, config: GatewayConfig, backends: dict[str, Backend], rollouts: RolloutManager
    ):
        self.config = config
        self.backends = backends
        self.rollouts = rollouts

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
        return out

    def shadow_target(self, alias: AliasConfig, sticky: str, request_id: str) -> str | None:
        if alias.shadow is None:
            return None
        return (
            alias.shadow.deployment if bucket("shadow", request_id) < alias.shadow.percent else None
        )
