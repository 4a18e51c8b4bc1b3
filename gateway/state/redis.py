"""Redis state store: several gateway replicas share keys, counters and rollout state.

Admission, settlement, reclaim and compare-and-set are Lua scripts, so each is one atomic step on
the server.  All keys live under a namespace (default ``genaiops:gw:``).  Holds are hashes
``h:<id>``; each owner has a lease key ``owner:<owner>`` (expiring) and a set ``holds:<owner>``;
``owners`` lists the owners with holds.  The scripts reach those keys by name (one server or a
primary with replicas; Redis Cluster would need hash tags).

    >>> store = RedisStore("redis://127.0.0.1:6379/0")               # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from gateway.state.base import AdmitResult, Counter, Hold

__all__ = ["RedisStore"]

_ADMIT = """
local n = tonumber(ARGV[1])
for i = 1, n do
  local used = tonumber(redis.call('GET', KEYS[i]) or '0')
  local limit = tonumber(ARGV[(i - 1) * 3 + 2])
  local amount = tonumber(ARGV[(i - 1) * 3 + 3])
  if used + amount > limit then return {i, used} end
end
local out = {0}
local ttl = 1
for i = 1, n do
  local v = redis.call('INCRBY', KEYS[i], ARGV[(i - 1) * 3 + 3])
  if redis.call('PTTL', KEYS[i]) < 0 then
    redis.call('PEXPIRE', KEYS[i], ARGV[(i - 1) * 3 + 4])
  end
  ttl = math.max(ttl, tonumber(ARGV[(i - 1) * 3 + 4]))
  out[#out + 1] = v
end
if #KEYS > n then
  local a = n * 3 + 2
  -- KEYS: hold hash, owner lease, owner's holds, owners; ARGV: id, owner, lease ms, amount, buckets
  redis.call('HSET', KEYS[n + 1], 'owner', ARGV[a + 1], 'amount', ARGV[a + 3], 'charge', 0,
             'buckets', ARGV[a + 4], 'ttl', ttl, 'state', 'active')
  redis.call('PEXPIRE', KEYS[n + 1], 86400000)
  redis.call('SET', KEYS[n + 2], 1, 'PX', ARGV[a + 2])
  redis.call('SADD', KEYS[n + 3], ARGV[a])
  redis.call('SADD', KEYS[n + 4], ARGV[a + 1])
end
return out
"""

_ADD = """
local function add(key, delta, ttl)
  local v = redis.call('INCRBY', key, delta)
  if v < 0 then redis.call('SET', key, 0, 'KEEPTTL') end
  if redis.call('PTTL', key) < 0 then redis.call('PEXPIRE', key, ttl) end
end
"""

_SETTLE = (
    _ADD
    + """
-- ARGV: namespace, hold id ('' for none), then delta and ttl per bucket in KEYS
local ns = ARGV[1]
if ARGV[2] ~= '' then
  local h = ns .. 'h:' .. ARGV[2]
  local f = redis.call('HMGET', h, 'state', 'amount', 'charge', 'buckets', 'ttl', 'owner')
  if f[1] == 'reclaimed' then
    for _, b in ipairs(cjson.decode(f[4])) do
      add(ns .. 'c:' .. b, tonumber(f[2]) - tonumber(f[3]), tonumber(f[5]))
    end
  end
  if f[6] then redis.call('SREM', ns .. 'holds:' .. f[6], ARGV[2]) end
  redis.call('DEL', h)
end
for i = 1, #KEYS do
  add(KEYS[i], tonumber(ARGV[(i - 1) * 2 + 3]), ARGV[(i - 1) * 2 + 4])
end
return 1
"""
)

_PROGRESS = """
-- KEYS[1] the owner's lease, then hold hashes; ARGV: lease ms, then one charge per hold
redis.call('SET', KEYS[1], 1, 'PX', ARGV[1])
for i = 2, #KEYS do
  if redis.call('HGET', KEYS[i], 'state') == 'active' then
    redis.call('HSET', KEYS[i], 'charge', ARGV[i])
  end
end
return 1
"""

_RECLAIM = (
    _ADD
    + """
local ns = ARGV[1]
local out = {}
for _, owner in ipairs(redis.call('SMEMBERS', ns .. 'owners')) do
  if redis.call('EXISTS', ns .. 'owner:' .. owner) == 0 then
    local set = ns .. 'holds:' .. owner
    for _, id in ipairs(redis.call('SMEMBERS', set)) do
      local h = ns .. 'h:' .. id
      local f = redis.call('HMGET', h, 'state', 'amount', 'charge', 'buckets', 'ttl')
      if f[1] == 'active' then
        for _, b in ipairs(cjson.decode(f[4])) do
          add(ns .. 'c:' .. b, tonumber(f[3]) - tonumber(f[2]), tonumber(f[5]))
        end
        redis.call('HSET', h, 'state', 'reclaimed')
        redis.call('PEXPIRE', h, 86400000)
        out[#out + 1] = id
      end
    end
    redis.call('DEL', set)
    redis.call('SREM', ns .. 'owners', owner)
  end
end
return out
"""
)

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
        self._progress = self._r.register_script(_PROGRESS)
        self._reclaim = self._r.register_script(_RECLAIM)
        self._cas = self._r.register_script(_CAS)
        self._put = self._r.register_script(_PUT)
        self._index = f"{namespace}kv-index"

    def _c(self, bucket: str) -> str:
        return f"{self.ns}c:{bucket}"

    def _k(self, key: str) -> str:
        return f"{self.ns}kv:{key}"

    async def admit(self, counters: list[Counter], hold: Hold | None = None) -> AdmitResult:
        args: list[Any] = [len(counters)]
        for c in counters:
            args += [c.limit, c.amount, max(1, int(c.ttl_s * 1000))]
        keys = [self._c(c.bucket) for c in counters]
        if hold is not None:
            keys += [
                f"{self.ns}h:{hold.id}",
                f"{self.ns}owner:{hold.owner}",
                f"{self.ns}holds:{hold.owner}",
                f"{self.ns}owners",
            ]
            args += [
                hold.id,
                hold.owner,
                max(1, int(hold.lease_s * 1000)),
                hold.amount,
                json.dumps(hold.buckets),
            ]
        res = await self._admit(keys=keys, args=args)
        if int(res[0]) == 0:
            return AdmitResult(ok=True, used=[int(x) for x in res[1:]])
        failed = int(res[0]) - 1
        return AdmitResult(ok=False, used=[0] * failed + [int(res[1])], failed=failed)

    async def settle(
        self,
        deltas: list[tuple[str, int, float]],
        *,
        hold: str | None = None,
        then: Callable[[], None] | None = None,
    ) -> None:
        if deltas or hold is not None:
            args: list[Any] = [self.ns, hold or ""]
            for _, d, ttl in deltas:
                args += [int(d), max(1, int(ttl * 1000))]
            await self._settle(keys=[self._c(b) for b, _, _ in deltas], args=args)
        if then is not None:
            await asyncio.to_thread(then)

    async def progress(self, owner: str, lease_s: float, charges: dict[str, int]) -> None:
        keys = [f"{self.ns}owner:{owner}", *(f"{self.ns}h:{h}" for h in charges)]
        args = [max(1, int(lease_s * 1000)), *(int(v) for v in charges.values())]
        await self._progress(keys=keys, args=args)

    async def reclaim(self) -> list[str]:
        return [str(x) for x in await self._reclaim(keys=[], args=[self.ns])]

    async def owners_alive(self, owners: list[str]) -> set[str]:
        if not owners:
            return set()
        vals = await self._r.mget([f"{self.ns}owner:{o}" for o in owners])
        return {o for o, v in zip(owners, vals, strict=True) if v is not None}

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
