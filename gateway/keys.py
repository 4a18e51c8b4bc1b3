"""API keys: created once (the secret is shown only then), stored as a SHA-256 hash.

Keys are 256-bit random tokens, so a fast unsalted hash is enough to make a stolen state file
useless; only the id and an 8-character prefix ever appear in listings, logs and the ledger.

    >>> km = KeyManager(store)                                        # doctest: +SKIP
    >>> secret, rec = await km.create(name="app", team="search", tpm=10_000)   # doctest: +SKIP
    >>> (await km.authenticate(secret)).id == rec.id                 # doctest: +SKIP
    True
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from typing import Any

from gateway.errors import AuthenticationFailed, InvalidRequest, NotFound
from gateway.state import StateStore

__all__ = ["KeyManager", "KeyRecord", "hash_key", "key_field_problems"]

KEY_PREFIX = "sk-gw-"


def hash_key(secret: str) -> str:
    return "sha256:" + hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass
class KeyRecord:
    """What the gateway knows about a key (never the secret)."""

    id: str
    prefix: str
    name: str = ""
    team: str | None = None
    rpm: int | None = None
    tpm: int | None = None
    quota: int | None = None
    period: str = "month"
    safety_policy: str | None = None
    created: float = field(default_factory=time.time)
    revoked: bool = False

    def public(self) -> dict[str, Any]:
        return asdict(self)


def key_field_problems(
    *,
    rpm: int | None = None,
    tpm: int | None = None,
    quota: int | None = None,
    period: str = "month",
    safety_policy: str | None = None,
    policies: Collection[str] | None = None,
) -> list[tuple[str, str]]:
    """``(field, problem)`` for every invalid setting of a new key, checked before anything is
    written; the API and the CLI word them for their users.  An unknown safety policy is refused
    rather than silently served by the default one (a typo must not weaken a key's filter)."""
    problems = []
    for label, v in (("rpm", rpm), ("tpm", tpm), ("quota", quota)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            problems.append((label, f"must be a whole number >= 0, got {v!r}"))
    if period not in ("day", "month"):
        problems.append(("period", f"must be day or month, got {period!r}"))
    if safety_policy is not None and policies is not None and safety_policy not in policies:
        known = ", ".join(sorted(policies))
        problems.append(("safety_policy", f"unknown policy {safety_policy!r}; known: {known}"))
    return problems


class KeyManager:
    """Create, list, revoke and authenticate keys in a :class:`StateStore`.

    ``policies`` are the safety policy names of the gateway's config: a key naming another one
    is refused (None: not checked, for tools without a config).
    """

    def __init__(
        self,
        store: StateStore,
        cache_ttl_s: float = 1.0,
        policies: Collection[str] | None = None,
    ):
        self.store = store
        self.cache_ttl_s = cache_ttl_s
        self.policies = set(policies) if policies is not None else None
        self._cache: dict[str, tuple[float, KeyRecord | None]] = {}

    async def create(
        self,
        *,
        name: str = "",
        team: str | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        quota: int | None = None,
        period: str = "month",
        safety_policy: str | None = None,
    ) -> tuple[str, KeyRecord]:
        limits: dict[str, Any] = {"rpm": rpm, "tpm": tpm, "quota": quota, "period": period}
        problems = key_field_problems(**limits, safety_policy=safety_policy, policies=self.policies)
        if problems:
            name, problem = problems[0]
            raise InvalidRequest(f"{name}: {problem}", param=name)
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        rec = KeyRecord(
            id="key_" + secrets.token_hex(6),
            prefix=secret[: len(KEY_PREFIX) + 4],
            name=name,
            team=team,
            rpm=rpm,
            tpm=tpm,
            quota=quota,
            period=period,
            safety_policy=safety_policy,
        )
        h = hash_key(secret)
        await self.store.kv_put(f"apikey:{rec.id}", {**rec.public(), "hash": h})
        await self.store.kv_put(f"apikeyhash:{h}", {"id": rec.id})
        return secret, rec

    async def list(self) -> list[KeyRecord]:
        rows = await self.store.kv_list("apikey:")
        return [_record(v) for _, v in rows]

    async def get(self, key_id: str) -> KeyRecord:
        v, _ = await self.store.kv_get(f"apikey:{key_id}")
        if v is None:
            raise NotFound(f"no key with id {key_id!r}", param="key_id")
        return _record(v)

    async def revoke(self, key_id: str) -> KeyRecord:
        v, _ = await self.store.kv_get(f"apikey:{key_id}")
        if v is None:
            raise NotFound(f"no key with id {key_id!r}", param="key_id")
        v["revoked"] = True
        await self.store.kv_put(f"apikey:{key_id}", v)
        await self.store.kv_delete(f"apikeyhash:{v['hash']}")
        self._cache.clear()
        return _record(v)

    async def authenticate(self, secret: str | None) -> KeyRecord:
        if not secret:
            raise AuthenticationFailed(
                "missing API key: send 'Authorization: Bearer <key>' or an 'api-key' header"
            )
        h = hash_key(secret)
        now = time.monotonic()
        hit = self._cache.get(h)
        if hit is not None and now - hit[0] < self.cache_ttl_s:
            rec = hit[1]
        else:
            rec = None
            ref, _ = await self.store.kv_get(f"apikeyhash:{h}")
            if ref is not None:
                v, _ = await self.store.kv_get(f"apikey:{ref['id']}")
                rec = _record(v) if v is not None else None
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[h] = (now, rec)
        if rec is None or rec.revoked:
            raise AuthenticationFailed("invalid API key (unknown or revoked)")
        return rec


def _record(v: dict[str, Any]) -> KeyRecord:
    fields = KeyRecord.__dataclass_fields__
    return KeyRecord(**{k: val for k, val in v.items() if k in fields})
