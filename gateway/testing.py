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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from genaiops.openai_client import free_port
from genaiops.tokens import count_tokens, decode, encode

__all__ = ["MockUpstream", "exact_reply", "mock_upstream_app", "openai_prompt_tokens"]

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
        self.requests.append(body)
        self.arrivals.append(time.monotonic())
        if scope.get("client"):
            self.connections.add((str(scope["client"][0]), int(scope["client"][1])))
        if self.delay_ms:
            await asyncio.sleep(self.delay_ms / 1000)
        status = self.fail.pop(0) if self.fail else 0
        if not status and self.fail_every and len(self.requests) % self.fail_every == 0:
            status = 503
        if status:
            kind = "rate_limit_error" if status == 429 else "server_error"
            err = {"error": {"message": f"injected {status}", "type": kind}}
            extra = [(b"retry-after", self.retry_after.encode())] if self.retry_after else []
            await _respond(send, status, err, extra)
            return
        path = scope["path"]
        if path.endswith("/embeddings"):
            await _embeddings(send, body)
        elif path.endswith("/chat/completions"):
            await self._chat(send, body)
        else:
            await _respond(send, 404, {"error": {"message": f"no route {path}", "type": "nf"}})

    async def _chat(self, send: Any, body: dict[str, Any]) -> None:
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
        text = "".join(pieces)
        usage = {"prompt_tokens": p, "completion_tokens": ct, "total_tokens": p + ct}
        base = {"id": "chatcmpl-mock", "created": 1, "model": body.get("model") or "mock"}
        if not body.get("stream"):
            choice = {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": text},
            }
            reply = {**base, "object": "chat.completion", "usage": usage, "choices": [choice]}
            await _respond(send, 200, reply)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        base["object"] = "chat.completion.chunk"

        def ev(choices: list[Any], **extra: Any) -> dict[str, Any]:
            line = json.dumps({**base, "choices": choices, **extra})
            return {
                "type": "http.response.body",
                "body": f"data: {line}\n\n".encode(),
                "more_body": True,
            }

        for piece in pieces:
            if self.chunk_delay_ms:
                await asyncio.sleep(self.chunk_delay_ms / 1000)
            await send(ev([{"index": 0, "delta": {"content": piece}, "finish_reason": None}]))
        await send(ev([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
        if (body.get("stream_options") or {}).get("include_usage"):
            await send(ev([], usage=usage))
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})

    @contextlib.contextmanager
    def serve(self) -> Iterator[str]:
        """Run on a free loopback port in a thread; yields the ``/v1`` base URL."""
        import uvicorn

        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(self, host="127.0.0.1", port=port, log_level="warning", access_log=False)
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("mock upstream did not start")
            time.sleep(0.02)
        try:
            yield f"http://127.0.0.1:{port}/v1"
        finally:
            server.should_exit = True
            thread.join(timeout=10)


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


async def _embeddings(send: Any, body: dict[str, Any]) -> None:
    n = 1 if isinstance(body.get("input"), str) else len(body.get("input") or [])
    data = [{"object": "embedding", "index": i, "embedding": [0.0] * 8} for i in range(n)]
    usage = {"prompt_tokens": n, "total_tokens": n}
    await _respond(send, 200, {"object": "list", "data": data, "model": "mock", "usage": usage})


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
