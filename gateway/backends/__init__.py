"""Deployment backends: ``local`` (embedded models), ``openai_compatible``, ``azure_openai``.

>>> backends = build_backends(config, httpx.AsyncClient())           # doctest: +SKIP
"""

from __future__ import annotations

import httpx

from gateway.backends.base import Backend, BackendBusy, BackendFailure
from gateway.backends.http import HTTPBackend
from gateway.backends.local import LocalChatBackend, LocalEmbeddingsBackend, message_text
from gateway.config import GatewayConfig

__all__ = [
    "Backend",
    "BackendBusy",
    "BackendFailure",
    "HTTPBackend",
    "LocalChatBackend",
    "LocalEmbeddingsBackend",
    "build_backends",
    "message_text",
]


def build_backends(config: GatewayConfig, client: httpx.AsyncClient) -> dict[str, Backend]:
    out: dict[str, Backend] = {}
    for d in config.deployments:
        if d.backend != "local":
            out[d.name] = HTTPBackend(d, client)
        elif d.kind == "embeddings":
            out[d.name] = LocalEmbeddingsBackend(d.name)
        else:
            out[d.name] = LocalChatBackend(
                d.name,
                config.local_batch_size,
                queue_max=config.local_queue_max,
                queue_wait_s=config.local_queue_wait_s,
                model=d.model,
            )
    return out
