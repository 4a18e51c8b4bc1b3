"""The backend contract: OpenAI-shaped JSON in, OpenAI-shaped JSON out.

A backend receives the request body already validated and normalised by the gateway (``model`` is
the upstream name, ``max_tokens`` always set) and returns a ``chat.completion`` dict, yields
``chat.completion.chunk`` dicts, or returns an embeddings ``list`` dict.  Failures raise
:class:`~gateway.errors.UpstreamFailed` (``retryable`` → the router may fall back) or a 4xx
:class:`~gateway.errors.APIError` passed through to the client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol, runtime_checkable

from gateway.errors import UpstreamFailed

__all__ = ["Backend", "BackendBusy", "BackendFailure"]


class BackendFailure(UpstreamFailed):
    """A deployment failed after its retries; ``retryable`` means another deployment may work."""

    def __init__(
        self,
        message: str,
        *,
        deployment: str,
        upstream_status: int | None = None,
        retryable: bool = True,
        timeout: bool = False,
    ):
        super().__init__(
            message, status=504 if timeout else 502, code="timeout" if timeout else None
        )
        self.deployment = deployment
        self.upstream_status = upstream_status
        self.retryable = retryable


class BackendBusy(BackendFailure):
    """A deployment has no room now (the local model's queue is full, or the request waited
    longer than the bound): 503 with ``Retry-After``; another deployment may still answer."""

    code = "model_busy"

    def __init__(self, message: str, *, deployment: str, retry_after: float = 1.0):
        super().__init__(message, deployment=deployment, retryable=True)
        self.status = 503
        self.error_code = "model_busy"
        self.retry_after = max(1.0, retry_after)
        self.headers.setdefault("retry-after", str(int(-(-self.retry_after // 1))))
        self.headers.setdefault("retry-after-ms", str(int(self.retry_after * 1000)))


@runtime_checkable
class Backend(Protocol):
    """One deployment's way of answering."""

    name: str

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]: ...

    def stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]: ...

    async def embeddings(self, body: dict[str, Any]) -> dict[str, Any]: ...

    async def aclose(self) -> None: ...
