"""Redis state store: several gateway replicas share keys, counters and rollout state.

Admission and compare-and-set are Lua scripts, so each is one atomic step on the server.  All keys
live under a namespace (default ``genaiops:gw:``).

    >>> store = RedisStore("redis://127.0.0.1:6379/0")               # doctest: +SKIP
"""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis

from gateway.state.base import AdmitResult, Counter

__all__ = ["RedisStore"]

_ADMIT = """
local n = #KEYS
for i = 1, n do
  local used = tonumber(redis.call('GET', KEYS[i]) or '0')
  local limit = tonumber(ARGV[(i - 1) * 3 + 1])
  local amount = tonumber(ARGV[(i - 1) * 3 + 2])
  if used + amount > limit then return {i, used} end
end
local out = {0}
for i = 1, n do
  local v = redis.call('INCRBY', KEYS[i], ARGV[(i - 1) * 3 + 2])
  if redis.call('PTTL', KEYS[i]) < 0 then
    redis.call('PEXPIRE', KEYS[i], ARGV[(i - 1) * 3 + 3])
  end
  out[#out + 1] = v
end
return out
"""

_SETTLE = """
for i = 1, #KEYS do
  local delta = tonumber(ARGV[(i - 1) * 2 + 1])
  local v = redis.call('INCRBY', KEYS[i], delta)
  if v < 0 then redis.call('SET', KEYS[i], 0, 'KEEPTTL') end
  if redis.call('PTTL', KEYS[i]) < 0 then
    redis.call('PEXPIRE', KEYS[i], ARGV[(i - 1) * 2 + 2])
  end
end
return 1
"""

_CAS = """
local cur = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if cur ~= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'version', cur + 1)
redis.call('SADD', KEYS[2], KEYS[1])
return 1
"""

_PUT = """
local ver = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HSET', KEYS[1], 'v', ARGV[1])
redis.call('SADD', KEYS[2], KEYS[1])
return ver
"""


class RedisStore:
    """:class:`~gateway.state.base.StateStore` on a Redis server."""

    def __init__(self, url: str, namespace: str = "genaiops:gw:", max_connections: int = 64):
        self.url = url
        self.ns = namespace
        # a bounded pool that queues callers: 1,000 concurrent requests must wait, not fail
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=30, decode_responses=True
        )
        self._r = aioredis.Redis(connection_pool=pool)
        self._admit = self._r.register_script(_ADMIT)
        self._settle = self._r.register_script(_SETTLE)
        self._cas = self._r.register_script(_CAS)
        self._put = self._r.register_script(_PUT)
        self._index = f"{namespace}kv-index"

    def _c(self, bucket: str) -> str:
        return f"{self.ns}c:{bucket}"

    def _k(self, key: str) -> str:
        return f"{self.ns}kv:{key}"

    async def admit(self, counters: list[Counter]) -> AdmitResult:
        args: list[Any] = []
        for c in counters:
            args += [c.limit, c.amount, max(1, int(c.ttl_s * 1000))]
        res = await self._admit(keys=[self._c(c.bucket) for c in counters], args=args)
        if int(res[0]) == 0:
            return AdmitResult(ok=True, used=[int(x) for x in res[1:]])
        failed = int(res[0]) - 1
        return AdmitResult(ok=False, used=[0] * failed + [int(res[1])], failed=failed)

    async def settle(self, deltas: list[tuple[str, int, float]]) -> None:
        if not deltas:
            return
        args: list[Any] = []
        for _, d, ttl in deltas:
            args += [int(d), max(1, int(ttl * 1000))]
        await self._settle(keys=[self._c(b) for b, _, _ in deltas], args=args)

    async def peek(self, buckets: list[str]) -> list[int]:
        if not buckets:
            return []
        vals = await self._r.mget([self._c(b) for b in buckets])
        return [int(v or 0) for v in vals]

    async def kv_get(self, key: str) -> tuple[dict[str, Any] | None, int]:
        h = await self._r.hgetall(self._k(key))
        if not h or "v" not in h:
            return None, 0
        return json.loads(h["v"]), int(h.get("version", 0))

    async def kv_put(self, key: str, value: dict[str, Any]) -> int:
        return int(await self._put(keys=[self._k(key), self._index], args=[json.dumps(value)]))

    async def kv_cas(self, key: str, value: dict[str, Any], version: int) -> bool:
        ok = await self._cas(keys=[self._k(key), self._index], args=[json.dumps(value), version])
        return bool(int(ok))

    async def kv_list(self, prefix: str) -> list[tuple[str, dict[str, Any]]]:
        full = self._k(prefix)
        members = {str(n) for n in await self._r.smembers(self._index)}  # decode_responses=True
        names = sorted(n for n in members if n.startswith(full))
        out = []
        for n in names:
            v = await self._r.hget(n, "v")
            if v is not None:
                out.append((n[len(self._k("")) :], json.loads(v)))
        return out

    async def kv_delete(self, key: str) -> None:
        await self._r.delete(self._k(key))
        await self._r.srem(self._index, self._k(key))

    async def close(self) -> None:
        await self._r.aclose()
        await self._r.connection_pool.disconnect()
