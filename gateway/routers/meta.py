"""``GET /v1/models``, ``GET /healthz``, ``GET /metrics``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from gateway.calls import resolve_alias
from gateway.deps import GW, ApiKey

__all__ = ["router"]

router = APIRouter()


def _model(name: str, created: int = 1700000000) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": "genaiops"}


@router.get("/v1/models", tags=["models"])
async def list_models(gw: GW, key: ApiKey) -> dict[str, Any]:
    return {"object": "list", "data": [_model(a.name) for a in gw.config.models]}


@router.get("/v1/models/{model}", tags=["models"])
async def get_model(model: str, gw: GW, key: ApiKey) -> dict[str, Any]:
    alias = gw.config.alias(model) or resolve_alias(gw, model, "chat")
    return _model(alias.name)


@router.get("/healthz", tags=["ops"])
async def healthz(gw: GW) -> dict[str, Any]:
    await gw.store.peek(["healthz"])  # the shared state answers: counters ...
    await gw.store.kv_get("healthz")  # ... and records (another database with kind postgres)
    return {"status": "ok", "models": [a.name for a in gw.config.models]}


@router.get("/metrics", tags=["ops"])
async def metrics(gw: GW) -> Response:
    return Response(gw.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
