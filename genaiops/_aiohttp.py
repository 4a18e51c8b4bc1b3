"""``httpx-aiohttp``'s transport with errors of the kinds ``httpcore`` raises.

``httpx_aiohttp`` maps every ``aiohttp.ClientConnectionError`` (a refused connection, a server
that closed the socket) to :class:`httpx.ConnectTimeout`; callers that tell "timed out" from
"cannot reach" (the gateway's 504 vs 502, its circuit breaker) need the real kind, so this
module re-maps from the aiohttp exception itself, on the request and while the body is read.
Only :func:`genaiops.openai_client.upstream_async_client` uses it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport as _Base

__all__ = ["AiohttpTransport"]

# most specific first: the first match wins
_KINDS: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (aiohttp.SocketTimeoutError, httpx.ReadTimeout),
    (asyncio.TimeoutError, httpx.ReadTimeout),  # ServerTimeoutError and a total timeout
    (aiohttp.ClientProxyConnectionError, httpx.ProxyError),
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientPayloadError, httpx.ReadError),
    (aiohttp.InvalidURL, httpx.UnsupportedProtocol),
    (aiohttp.ClientConnectionError, httpx.NetworkError),
    (aiohttp.ClientError, httpx.TransportError),
)


def _remap(e: httpx.TransportError) -> httpx.TransportError:
    cause = e.__cause__ if e.__cause__ is not None else e
    for kind, to in _KINDS:
        if isinstance(cause, kind):
            return e if type(e) is to else to(str(cause) or type(cause).__name__)
    return e


class _Stream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream):
        self._inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                yield chunk
        except httpx.TransportError as e:
            raise _remap(e) from e.__cause__

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        except httpx.TransportError as e:
            raise _remap(e) from e.__cause__


class AiohttpTransport(_Base):
    """``httpx_aiohttp.AiohttpTransport`` with httpcore's error kinds."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            resp = await super().handle_async_request(request)
        except httpx.TransportError as e:
            raise _remap(e) from e.__cause__
        assert isinstance(resp.stream, httpx.AsyncByteStream)
        resp.stream = _Stream(resp.stream)
        return resp
