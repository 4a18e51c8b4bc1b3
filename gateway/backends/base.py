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

__all__ = ["Backend", "BackendFailure"]


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


@runtime_checkable
class Backend(Protocol):
    """One deployment's way of answering."""

    name: str

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]: ...

    def stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]: ...

    async def embeddings(self, body: dict[str, Any]) -> dict[str, Any]: ...

    async def aclose(self) -> None: ...
