"""A fake OpenAI-compatible upstream for tests and benchmarks (raw ASGI, no framework overhead).

``POST /v1/chat/completions`` (JSON or SSE stream), ``POST /v1/embeddings``; the reply is fixed
or computed from the messages, optional ``delay_ms`` per request and ``chunk_delay_ms`` per
streamed chunk; injected failures (a queue of statuses with ``Retry-After``, or every N-th
request). ``exact_usage`` reports usage as OpenAI bills it (the cookbook's count for chat prompts,
:func:`openai_prompt_tokens`; the reply cut at ``max_tokens`` tokens) instead of a fixed
``prompt_tokens`` and one token per word. The one fake upstream of the test suite.

    $ python -m gateway.testing --port 9001 --delay-ms 0
    >>> with MockUpstream(reply="ok").serve() as url:                  # doctest: +SKIP
    ...     httpx.post(f"{url}/chat/completions", json={"messages": []})
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from genaiops.openai_client import free_port
from genaiops.tokens import count_tokens, decode, encode

__all__ = [
    "MockUpstream",
    "exact_reply",
    "mock_upstream_app",
    "openai_prompt_tokens",
    "serve_in_thread",
]

Answer = Callable[[list[dict[str, Any]]], str]


def openai_prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """Prompt tokens of text chat messages as the OpenAI cookbook counts them (cl100k): 3 per
    message, every string value, 1 more per ``name``, 3 priming the reply."""
    n = 3
    for m in messages:
        n += 3
        for k, v in m.items():
            if isinstance(v, list):  # content parts: their text
                v = "".join(str(p.get("text") or "") for p in v if isinstance(p, dict))
            if isinstance(v, str):
                n += count_tokens(v)
            if k == "name":
                n += 1
    return n


def exact_reply(reply: str, max_tokens: int | None) -> tuple[list[str], int]:
    """The reply cut at ``max_tokens`` tokens, as pieces of one token each."""
    ids = encode(reply)[: max_tokens or None]
    return [decode([t]) for t in ids], len(ids)


@dataclass
class MockUpstream:
    """The fake OpenAI-compatible upstream every test and benchmark uses (one implementation).

    ``reply`` is the answer (cut to ``max_tokens`` words) unless ``answer(messages)`` computes
    one; ``fail`` is a queue of statuses answered before succeeding (with ``retry_after`` as
    ``Retry-After``); ``fail_every`` answers every N-th request with 503. ``requests`` records
    the bodies, ``connections`` the client sockets (to check that clients pool connections).
    :meth:`serve` runs it on a free loopback port.
    """

    reply: str = "Hello from the mock upstream."
    delay_ms: float = 0.0
    fail_every: int = 0
    fail: list[int] = field(default_factory=list)
    retry_after: str | None = None
    answer: Answer | None = None
    prompt_tokens: int = 10
    chunk_delay_ms: float = 0.0
    exact_usage: bool = False
    fail_always: int | None = None
    embedding_dim: int = 8
    role_chunk: bool = False  # streams open with a ``{"role": "assistant"}`` delta, as OpenAI's do
    headers: list[dict[str, str]] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    connections: set[tuple[str, int]] = field(default_factory=set)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = json.loads(await _read_body(receive) or b"{}")
        if scope.get("client"):
            self.connections.add((str(scope["client"][0]), int(scope["client"][1])))
        status = await self._arrive(body)
        if status:
            await _respond(send, status, _error(status), self._failure_headers())
            return
        path = scope["path"]
        if path.endswith("/embeddings"):
            await _respond(send, 200, _embeddings_reply(body, self.embedding_dim))
        elif path.endswith("/chat/completions"):
            await self._chat(send, body)
        else:
            await _respond(send, 404, {"error": {"message": f"no route {path}", "type": "nf"}})

    async def _arrive(self, body: dict[str, Any]) -> int:
        """Record a request, wait ``delay_ms``; the injected failure status, or 0."""
        self.requests.append(body)
        self.arrivals.append(time.monotonic())
        if self.delay_ms:
            await asyncio.sleep(self.delay_ms / 1000)
        status = self.fail.pop(0) if self.fail else (self.fail_always or 0)
        if not status and self.fail_every and len(self.requests) % self.fail_every == 0:
            status = 503
        return status

    def _failure_headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"retry-after", self.retry_after.encode())] if self.retry_after else []

    def _completion(self, body: dict[str, Any]) -> tuple[list[str], dict[str, int]]:
        """The reply as streamed pieces, and its usage."""
        if self.exact_usage:
            pieces, ct = exact_reply(self.reply, body.get("max_tokens"))
            p = openai_prompt_tokens(body.get("messages") or [])
        else:
            if self.answer is not None:
                out = self.answer(body.get("messages") or []).split(" ")
            else:
                out = self.reply.split(" ")[: int(body.get("max_tokens") or 10_000)]
            pieces = [w if i == 0 else " " + w for i, w in enumerate(out)]
            p, ct = self.prompt_tokens, len(out)
        return pieces, {"prompt_tokens": p, "completion_tokens": ct, "total_tokens": p + ct}

    def _events(self, body: dict[str, Any], pieces: list[str], usage: dict[str, int]) -> list[Any]:
        """The SSE chunk objects of a streamed answer (``None`` marks a chunk delay)."""
        base = {"id": "chatcmpl-mock", "created": 1, "model": body.get("model") or "mock"}
        base["object"] = "chat.completion.chunk"
        out: list[Any] = []
        if self.role_chunk:
            delta = {"role": "assistant", "content": ""}
            out.append({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
        for piece in pieces:
            if self.chunk_delay_ms:
                out.append(None)
            delta = {"content": piece}
            out.append({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
        out.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            out.append({**base, "choices": [], "usage": usage})
        return out

    def _reply(self, body: dict[str, Any], pieces: list[str], usage: dict[str, int]) -> Any:
        choice = {
            "index": 0,
            "finish_reason": "stop",
            "message": {"role": "assistant", "content": "".join(pieces)},
        }
        model = body.get("model") or "mock"
        return {
            "id": "chatcmpl-mock",
            "created": 1,
            "model": model,
            "object": "chat.completion",
            "usage": usage,
            "choices": [choice],
        }

    # -- in process: an httpx transport (no socket), for tests that inject the client ----------
    def transport(self) -> httpx.MockTransport:
        """The same upstream as an ``httpx`` transport (in process, no port)."""
        return httpx.MockTransport(self.handle)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=self.transport())

    async def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content or b"{}")
        self.headers.append(dict(request.headers))
        self.urls.append(str(request.url))
        status = await self._arrive(body)
        if status:
            h = {"retry-after": self.retry_after} if self.retry_after else {}
            return httpx.Response(status, json=_error(status), headers=h)
        if request.url.path.endswith("/embeddings"):
            return httpx.Response(200, json=_embeddings_reply(body, self.embedding_dim))
        pieces, usage = self._completion(body)
        if body.get("stream"):
            events = self._events(body, pieces, usage)
            stream = _SSE(events, self.chunk_delay_ms / 1000)
            return httpx.Response(200, stream=stream, headers={"content-type": "text/event-stream"})
        return httpx.Response(200, json=self._reply(body, pieces, usage))

    async def _chat(self, send: Any, body: dict[str, Any]) -> None:
        pieces, usage = self._completion(body)
        if not body.get("stream"):
            await _respond(send, 200, self._reply(body, pieces, usage))
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        async for chunk in _SSE(self._events(body, pieces, usage), self.chunk_delay_ms / 1000):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    @contextlib.contextmanager
    def serve(self) -> Iterator[str]:
        """Run on a free loopback port in a thread; yields the ``/v1`` base URL."""
        with serve_in_thread(self, what="mock upstream", access_log=False) as (url, _):
            yield f"{url}/v1"


@contextlib.contextmanager
def serve_in_thread(app: Any, what: str = "server", **config: Any) -> Iterator[tuple[str, Any]]:
    """Any ASGI ``app`` under uvicorn on a free loopback port, in a daemon thread (tests and
    benchmarks); yields its base URL and the ``uvicorn.Server`` once it is accepting."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **config)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def mock_upstream_app(
    reply: str = "Hello from the mock upstream.",
    delay_ms: float = 0.0,
    fail_every: int = 0,
    *,
    chunk_delay_ms: float = 0.0,
    exact_usage: bool = False,
) -> MockUpstream:
    """The ASGI app of a :class:`MockUpstream` (kept for callers of the old factory)."""
    return MockUpstream(
        reply=reply,
        delay_ms=delay_ms,
        fail_every=fail_every,
        chunk_delay_ms=chunk_delay_ms,
        exact_usage=exact_usage,
    )


async def _read_body(receive: Any) -> bytes:
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            return body


async def _respond(
    send: Any, status: int, obj: Any, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    data = json.dumps(obj).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send(
        {"type": "http.response.start", "status": status, "headers": headers + (extra or [])}
    )
    await send({"type": "http.response.body", "body": data})


def _error(status: int) -> dict[str, Any]:
    kind = "rate_limit_error" if status == 429 else "server_error"
    return {"error": {"message": f"injected {status}", "type": kind}}


def _embeddings_reply(body: dict[str, Any], dim: int) -> dict[str, Any]:
    n = 1 if isinstance(body.get("input"), str) else len(body.get("input") or [])
    data = [{"object": "embedding", "index": i, "embedding": [0.1] * dim} for i in range(n)]
    usage = {"prompt_tokens": n, "total_tokens": n}
    return {"object": "list", "data": data, "model": "mock", "usage": usage}


class _SSE(httpx.AsyncByteStream):
    """SSE bytes of chunk objects (``None``: sleep ``delay`` seconds); ``closed`` once the
    client closed it, so tests see a disconnect reach the upstream."""

    def __init__(self, events: list[Any], delay: float):
        self.events, self.delay = events, delay
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for e in self.events:
            if e is None:
                await asyncio.sleep(self.delay)
            else:
                yield f"data: {json.dumps(e)}\n\n".encode()
        yield b"data: [DONE]\n\n"

    async def aclose(self) -> None:
        self.closed = True


def main() -> None:
    import uvicorn

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9001)
    p.add_argument("--delay-ms", type=float, default=0.0)
    p.add_argument("--fail-every", type=int, default=0)
    p.add_argument("--chunk-delay-ms", type=float, default=0.0)
    p.add_argument("--exact-usage", action="store_true")
    a = p.parse_args()
    uvicorn.run(
        mock_upstream_app(
            delay_ms=a.delay_ms,
            fail_every=a.fail_every,
            chunk_delay_ms=a.chunk_delay_ms,
            exact_usage=a.exact_usage,
        ),
        host=a.host,
        port=a.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
