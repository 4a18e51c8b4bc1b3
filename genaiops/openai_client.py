"""The one seam for OpenAI-compatible HTTP: the ``openai`` SDK over one pooled ``httpx`` client.

Everything in genaiops that calls an OpenAI-compatible API (the evaluation LLM client, judges,
flow tools, remote embeddings) builds its client here, so there is one retry policy and one
connection pool per process:

* :func:`shared_http_client` — one pooled ``httpx.Client`` per process (re-created after a
  fork), reused by every call and every thread;
* :func:`openai_client` — ``openai.OpenAI`` (or ``openai.AzureOpenAI`` with ``azure=``) over an
  injected ``httpx.Client`` (the test seam: ``httpx.Client(transport=httpx.MockTransport(...))``)
  or the shared one; the SDK retries 408/409/429/5xx and connection errors with exponential
  backoff and honours ``Retry-After`` / ``retry-after-ms`` (up to 60 s);
* :func:`to_upstream_error` — the SDK's exceptions as :class:`~genaiops.errors.UpstreamError`;
* every request carries the W3C ``traceparent`` of the current span when tracing is on
  (:mod:`genaiops.tracing`), so the gateway's spans join the caller's trace.

The gateway's pass-through hot path stays on raw ``httpx.AsyncClient`` (it relays upstream JSON
and SSE bytes without building SDK objects; ``bench/client_seam.py`` measures the difference,
``docs/benchmarks.md`` has the figures) and takes its retry policy from here:
:data:`RETRY_STATUS`, :func:`retry_after` and :func:`backoff_delay`. Its client,
:func:`upstream_async_client`, keeps the ``httpx`` API (the tests' ``MockTransport`` seam) over
``aiohttp``'s connection pool (``httpx-aiohttp``, the transport the ``openai`` SDK's
``DefaultAioHttpClient`` uses): ``httpcore`` took about half of the gateway's CPU per request
(``bench/gateway_latency.py``), aiohttp's C-accelerated HTTP/1.1 writer and parser a fraction.

    >>> retry_after(httpx.Headers({"retry-after-ms": "250"}))
    0.25
    >>> backoff_delay(2, None, base_s=0.5, cap_s=30)
    2.0
    >>> client = openai_client("http://127.0.0.1:8080/v1", "sk-...")      # doctest: +SKIP
    >>> client.chat.completions.create(model="genaiops-local", messages=[...])  # doctest: +SKIP
"""

from __future__ import annotations

import http.cookiejar
import os
import socket
import threading
from dataclasses import dataclass

import httpx
import openai

from genaiops import tracing
from genaiops.errors import UpstreamError

__all__ = [
    "DEFAULT_MAX_RETRIES",
    "RETRY_STATUS",
    "AzureTarget",
    "backoff_delay",
    "free_port",
    "openai_client",
    "retry_after",
    "shared_http_client",
    "to_upstream_error",
    "upstream_async_client",
]

#: statuses worth retrying (the same set the ``openai`` SDK retries)
RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
DEFAULT_MAX_RETRIES = 3

_LOCK = threading.Lock()
_SHARED: tuple[int, httpx.Client] | None = None


def shared_http_client() -> httpx.Client:
    """The process's pooled ``httpx.Client`` (keep-alive connections shared by all callers).

    Per-request timeouts come from the SDK client (see :func:`openai_client`); a forked child
    gets its own pool (sockets must not be shared across processes).
    """
    global _SHARED
    with _LOCK:
        if _SHARED is None or _SHARED[0] != os.getpid() or _SHARED[1].is_closed:
            limits = httpx.Limits(max_connections=64, max_keepalive_connections=32)
            _SHARED = (os.getpid(), httpx.Client(limits=limits, timeout=600.0))
        return _SHARED[1]


def upstream_async_client(
    *, max_connections: int = 512, max_keepalive: int = 128, timeout_s: float = 60.0
) -> httpx.AsyncClient:
    """The gateway's pooled async client: ``httpx.AsyncClient`` over an aiohttp transport.

    Per-request timeouts (``httpx.Timeout``) map to aiohttp's connect and per-read timeouts;
    no cookie is ever kept (an upstream's ``Set-Cookie`` must not reach another key's
    request); errors are ``httpx`` ones of the same kind as ``httpcore`` raises (a refused
    connection is :class:`httpx.ConnectError`, not a timeout). Proxies from the environment
    (``HTTPS_PROXY``) still go through httpx's own proxy transport.
    """
    from genaiops._aiohttp import AiohttpTransport

    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_keepalive)
    return httpx.AsyncClient(
        transport=AiohttpTransport(limits=limits),
        limits=limits,
        timeout=httpx.Timeout(timeout_s, connect=5.0),
        # a jar that accepts no domain: the gateway relays for many keys
        cookies=http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[])),
    )


@dataclass(frozen=True)
class AzureTarget:
    """Where an Azure OpenAI deployment lives: ``base_url`` is the resource endpoint."""

    deployment: str
    api_version: str


class _OpenAI(openai.OpenAI):
    """``OpenAI`` whose requests (each retry too) carry the current span's ``traceparent``."""

    def _prepare_request(self, request: httpx.Request) -> None:
        tracing.inject(request.headers)


class _AzureOpenAI(openai.AzureOpenAI):
    """``AzureOpenAI`` that sends the key only as ``api-key``: the 1.109 SDK also sends it as an
    ``Authorization: Bearer`` header, which Azure does not need and proxies may log; requests
    carry the current span's ``traceparent`` like :class:`_OpenAI`'s."""

    @property
    def auth_headers(self) -> dict[str, str]:
        return {}

    def _prepare_request(self, request: httpx.Request) -> None:
        tracing.inject(request.headers)


def openai_client(
    base_url: str | None,
    api_key: str | None,
    *,
    azure: AzureTarget | None = None,
    http_client: httpx.Client | None = None,
    max_retries: int = DEFAULT_MAX_RETRIES,
    timeout: float = 600.0,
) -> openai.OpenAI:
    """An SDK client for ``base_url`` over ``http_client`` (default: :func:`shared_http_client`).

    Building one is cheap (no connection is opened): callers may keep it or build one per call;
    the pool is what is shared. ``api_key`` None sends no ``Authorization`` header.
    """
    http = http_client if http_client is not None else shared_http_client()
    if azure is not None:
        return _AzureOpenAI(
            azure_endpoint=(base_url or "").rstrip("/"),
            azure_deployment=azure.deployment,
            api_version=azure.api_version,
            api_key=api_key or "",
            http_client=http,
            max_retries=max_retries,
            timeout=timeout,
        )
    return _OpenAI(
        base_url=(base_url or "https://api.openai.com/v1").rstrip("/"),
        api_key=api_key or "",
        http_client=http,
        max_retries=max_retries,
        timeout=timeout,
    )


def to_upstream_error(e: openai.OpenAIError, what: str) -> UpstreamError:
    """``what`` (e.g. ``"gateway http://…"``) failed: the SDK's error as an UpstreamError that
    keeps the HTTP status and the first bytes of the body (never the request's key)."""
    if isinstance(e, openai.APIStatusError):
        return UpstreamError(
            f"{what} answered {e.status_code}: {e.response.text[:300]}", e.status_code
        )
    if isinstance(e, openai.APITimeoutError):
        return UpstreamError(f"{what} timed out")
    if isinstance(e, openai.APIConnectionError):
        return UpstreamError(f"{what} unreachable: {e.__cause__ or e}")
    return UpstreamError(f"{what}: unusable reply ({type(e).__name__}: {str(e)[:200]})")


def retry_after(headers: httpx.Headers) -> float | None:
    """Seconds the upstream asked us to wait: Azure's ``retry-after-ms``, else ``Retry-After``
    (seconds); None when absent or not a number."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value:
            try:
                return max(0.0, float(value) / scale)
            except ValueError:
                continue
    return None


def backoff_delay(
    attempt: int, response: httpx.Response | None, *, base_s: float, cap_s: float
) -> float:
    """How long to wait before retry ``attempt + 1``: the upstream's ``Retry-After`` when it
    sent one, else ``base_s * 2**attempt``; never more than ``cap_s``."""
    wait = retry_after(response.headers) if response is not None else None
    if wait is None:
        wait = base_s * (2**attempt)
    return float(min(wait, cap_s))


def free_port() -> int:
    """A free loopback TCP port, for local servers (gateway processes, test upstreams)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
