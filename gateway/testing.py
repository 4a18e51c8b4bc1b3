"""A fake OpenAI-compatible upstream for tests and benchmarks (raw ASGI, no framework overhead).

``POST /v1/chat/completions`` (JSON or SSE stream), ``POST /v1/embeddings``; the reply is fixed,
optional ``delay_ms`` per request and ``chunk_delay_ms`` per streamed chunk; ``fail_every`` answers
every N-th request with 503.  ``exact_usage`` reports usage as OpenAI bills it (the cookbook's
count for chat prompts, :func:`openai_prompt_tokens`; the reply cut at ``max_tokens`` tokens)
instead of a fixed 10 prompt tokens and one token per word.

    $ python -m gateway.testing --port 9001 --delay-ms 0
    >>> app = mock_upstream_app(reply="ok")                            # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

__all__ = ["exact_reply", "mock_upstream_app", "openai_prompt_tokens"]


def openai_prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """Prompt tokens of text chat messages as the OpenAI cookbook counts them (cl100k): 3 per
    message, every string value, 1 more per ``name``, 3 priming the reply."""
    from genaiops.tokens import count_tokens

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
    from genaiops.tokens import decode, encode

    ids = encode(reply)[: max_tokens or None]
    return [decode([t]) for t in ids], len(ids)


def mock_upstream_app(
    reply: str = "Hello from the mock upstream.",
    delay_ms: float = 0.0,
    fail_every: int = 0,
    *,
    chunk_delay_ms: float = 0.0,
    exact_usage: bool = False,
) -> Any:
    words = reply.split(" ")
    count = 0

    async def read_body(receive: Any) -> bytes:
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                return body

    async def respond(send: Any, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(data)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": data})

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal count
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = json.loads(await read_body(receive) or b"{}")
        count += 1
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        if fail_every and count % fail_every == 0:
            await respond(send, 503, {"error": {"message": "injected", "type": "server_error"}})
            return
        if scope["path"].endswith("/embeddings"):
            n = 1 if isinstance(body.get("input"), str) else len(body.get("input") or [])
            data = [{"object": "embedding", "index": i, "embedding": [0.0] * 8} for i in range(n)]
            await respond(
                send,
                200,
                {
                    "object": "list",
                    "data": data,
                    "model": "mock",
                    "usage": {"prompt_tokens": n, "total_tokens": n},
                },
            )
            return
        if exact_usage:
            pieces, ct = exact_reply(reply, body.get("max_tokens"))
            pt = openai_prompt_tokens(body.get("messages") or [])
        else:
            out = words[: int(body.get("max_tokens") or len(words))]
            pieces = [w if i == 0 else " " + w for i, w in enumerate(out)]
            pt, ct = 10, len(out)
        usage = {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}
        base = {"id": "chatcmpl-mock", "created": 1, "model": "mock"}
        if not body.get("stream"):
            await respond(
                send,
                200,
                {
                    **base,
                    "object": "chat.completion",
                    "usage": usage,
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "message": {"role": "assistant", "content": "".join(pieces)},
                        }
                    ],
                },
            )
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
            if chunk_delay_ms:
                await asyncio.sleep(chunk_delay_ms / 1000)
            await send(ev([{"index": 0, "delta": {"content": piece}, "finish_reason": None}]))
        await send(ev([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
        if (body.get("stream_options") or {}).get("include_usage"):
            await send(ev([], usage=usage))
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})

    return app


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
