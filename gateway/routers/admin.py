"""Admin API under ``/admin`` (admin key only): keys, usage, rollouts.

    curl -H "Authorization: Bearer $GENAIOPS_ADMIN_KEY" -X POST localhost:8080/admin/keys \
         -d '{"name": "app", "tpm": 10000, "quota": 1000000, "period": "month"}'
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Query

from gateway.deps import GW, AdminKey
from gateway.errors import NotFound
from gateway.rollout import parse_duration
from gateway.schemas import KeyCreate, RolloutStart, ScoreIn

__all__ = ["router"]

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[AdminKey])


@router.post("/keys", status_code=201)
async def create_key(body: KeyCreate, gw: GW) -> dict[str, Any]:
    secret, rec = await gw.keys.create(**body.model_dump())
    return {"key": secret, **rec.public()}


@router.get("/keys")
async def list_keys(gw: GW) -> dict[str, Any]:
    return {"object": "list", "data": [k.public() for k in await gw.keys.list()]}


@router.delete("/keys/{key_id}")
async def revoke_key(key_id: str, gw: GW) -> dict[str, Any]:
    return (await gw.keys.revoke(key_id)).public()


@router.get("/usage")
async def usage(
    gw: GW, by: Literal["key", "model", "deployment", "day", "team"] = Query("model")
) -> dict[str, Any]:
    return {"object": "list", "by": by, "data": await asyncio.to_thread(gw.ledger.summary, by)}


@router.post("/scores", status_code=201)
async def post_score(body: ScoreIn, gw: GW) -> dict[str, Any]:
    """Online evaluation feeds scores back; rollouts compare candidate and stable on them."""
    ok = await asyncio.to_thread(gw.ledger.record_score, body.request_id, body.score, body.name)
    if not ok:
        raise NotFound(f"no request {body.request_id!r} in the ledger", param="request_id")
    return {"request_id": body.request_id, "score": body.score, "name": body.name}


@router.get("/rollouts")
async def list_rollouts(gw: GW) -> dict[str, Any]:
    return {"object": "list", "data": [r.to_dict() for r in await gw.rollouts.all()]}


@router.post("/rollouts/{alias}", status_code=201)
async def start_rollout(alias: str, body: RolloutStart, gw: GW) -> dict[str, Any]:
    st = await gw.rollouts.start(
        alias,
        body.candidate,
        body.steps,
        parse_duration(body.interval),
        stable=body.stable,
        min_samples=body.min_samples,
        max_error_rate_increase=body.max_error_rate_increase,
        max_p95_ratio=body.max_p95_ratio,
        max_score_drop=body.max_score_drop,
    )
    return st.to_dict()


@router.get("/rollouts/{alias}")
async def rollout_status(alias: str, gw: GW) -> dict[str, Any]:
    st = await gw.rollouts.get(alias)
    if st is None:
        raise NotFound(f"no rollout for {alias!r}", param="alias")
    return st.to_dict()


@router.post("/rollouts/{alias}/{action}")
async def rollout_action(
    alias: str, action: Literal["promote", "rollback", "pause", "resume"], gw: GW
) -> dict[str, Any]:
    st = await getattr(gw.rollouts, action)(alias)
    return st.to_dict()
