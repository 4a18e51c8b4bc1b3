"""The gateway's runtime objects and the FastAPI dependencies that hand them to routes.

>>> async def route(gw: GW, key: ApiKey): ...                      # doctest: +SKIP
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass, field
from typing import Annotated, Any

import httpx
from fastapi import Depends, Request

from gateway.backends import Backend
from gateway.capture.service import Capturer
from gateway.config import GatewayConfig
from gateway.errors import AuthenticationFailed, PermissionDenied
from gateway.keys import KeyManager, KeyRecord
from gateway.leases import LeaseKeeper
from gateway.ledgers import UsageLedger
from gateway.metrics import Metrics
from gateway.quotas import Limiter
from gateway.rollout import RolloutManager
from gateway.routing import Router
from gateway.safety import SafetyEngine
from gateway.state import StateStore

__all__ = ["GW", "AdminKey", "ApiKey", "Gateway", "bearer", "get_gateway"]


@dataclass
class Gateway:
    """Everything a request needs; built once by :func:`gateway.app.create_app`."""

    config: GatewayConfig
    store: StateStore
    ledger: UsageLedger
    keys: KeyManager
    limiter: Limiter
    safety: SafetyEngine | None
    rollouts: RolloutManager
    router: Router
    backends: dict[str, Backend]
    metrics: Metrics
    http: httpx.AsyncClient
    background: set[Any] = field(default_factory=set)
    leases: LeaseKeeper | None = None  # None: reservations are not followed (tests)
    capture: Capturer | None = None  # captured traffic and feedback (issue 10)

    def admin_key(self) -> str | None:
        return os.environ.get(self.config.admin_key_env) or None


async def get_gateway(request: Request) -> Gateway:
    """Async on purpose: FastAPI runs a plain ``def`` dependency in its thread pool, one
    thread hop per request for an attribute read."""
    gw: Gateway = request.app.state.gateway
    return gw


GW = Annotated[Gateway, Depends(get_gateway)]


def bearer(request: Request) -> str | None:
    """The key from ``Authorization: Bearer`` or ``api-key`` (Azure style)."""
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return request.headers.get("api-key") or None


async def _api_key(request: Request, gw: GW) -> KeyRecord:
    rec = await gw.keys.authenticate(bearer(request))
    request.state.key = rec
    return rec


async def _admin(request: Request, gw: GW) -> None:
    given = bearer(request)
    expected = gw.admin_key()
    if not given:
        raise AuthenticationFailed("missing admin key")
    if expected is None or not hmac.compare_digest(given.encode(), expected.encode()):
        raise PermissionDenied(f"admin routes need the admin key (env {gw.config.admin_key_env})")


ApiKey = Annotated[KeyRecord, Depends(_api_key)]
AdminKey = Depends(_admin)
