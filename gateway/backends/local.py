"""The embedded models: SmolLM2 chat and MiniLM embeddings, run off the event loop.

The generator allows one forward pass at a time, so concurrent chat requests are queued and
grouped into padded batches (``generate_batch``; up to ``batch_size`` requests that share
``max_tokens``/``temperature``/``stop``, collected for ``batch_wait_ms``).  Streams run in a
worker thread that hands deltas to the event loop.

    >>> b = LocalChatBackend("local-smollm2")                           # doctest: +SKIP
    >>> body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
    >>> await b.chat(body)                                              # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from gateway.backends.base import BackendFailure
from genaiops.providers import ChatMessage, EmbedderConfig, get_local_generator, make_embedder
from genaiops.providers.generator import prompt_tokens
from genaiops.tokens import count_tokens

__all__ = ["LocalChatBackend", "LocalEmbeddingsBackend", "message_text", "to_messages"]

log = logging.getLogger(__name__)


def message_text(content: Any) -> str:
    """Text of an OpenAI message ``content`` (a string or a list of parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for p in content:
        if isinstance(p, dict) and p.get("type") == "text":
            parts.append(str(p.get("text", "")))
    return "\n".join(parts)


def to_messages(raw: Sequence[dict[str, Any]]) -> list[ChatMessage]:
    out = []
    for m in raw:
        role = m.get("role", "user")
        role = "system" if role == "developer" else role
        role = role if role in ("system", "user", "assistant") else "user"
        out.append(ChatMessage(role, message_text(m.get("content"))))
    return out


def _completion(model: str, text: str, finish: str, pt: int, ct: int) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish,
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct},
    }


class _Pending:
    __slots__ = ("fut", "messages")

    def __init__(self, messages: list[ChatMessage], fut: asyncio.Future[Any]):
        self.messages = messages
        self.fut = fut


class LocalChatBackend:
    """SmolLM2 through a batching queue; ``generate_batch`` runs in a worker thread."""

    def __init__(self, name: str, batch_size: int = 8, batch_wait_ms: float = 5.0):
        self.name = name
        self.batch_size = batch_size
        self.batch_wait_s = batch_wait_ms / 1000
        self._queues: dict[tuple[Any, ...], list[_Pending]] = {}
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self.batches_run = 0

    def _ensure_worker(self) -> asyncio.Event:
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work())
        return self._wakeup

    async def _work(self) -> None:
        assert self._wakeup is not None
        while True:
            await self._wakeup.wait()
            await asyncio.sleep(self.batch_wait_s)  # let concurrent requests join the batch
            self._wakeup.clear()
            while self._queues:
                key = next(iter(self._queues))
                queue = self._queues[key]
                batch = [p for p in queue[: self.batch_size] if not p.fut.done()]
                del queue[: self.batch_size]
                if not queue:
                    del self._queues[key]
                if batch:
                    await self._run(key, batch)

    async def _run(self, key: tuple[Any, ...], batch: list[_Pending]) -> None:
        max_tokens, temperature, stop = key
        gen = get_local_generator()
        try:
            results = await asyncio.to_thread(
                gen.generate_batch,
                [p.messages for p in batch],
                max_tokens=max_tokens,
                temperature=temperature,
                stop=list(stop) or None,
            )
            self.batches_run += 1
        except Exception as e:  # torch/transformers raise many kinds: fail the batch, never hang
            log.error("deployment %s: local generation failed: %s", self.name, e)
            for p in batch:
                if not p.fut.done():
                    p.fut.set_exception(
                        BackendFailure(f"deployment {self.name}: {e}", deployment=self.name)
                    )
            return
        for p, r in zip(batch, results, strict=True):
            if not p.fut.done():
                p.fut.set_result(r)

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        msgs = to_messages(body.get("messages", []))
        stop = body.get("stop") or ()
        stop = (stop,) if isinstance(stop, str) else tuple(stop)
        key = (int(body.get("max_tokens") or 256), float(body.get("temperature") or 0.0), stop)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queues.setdefault(key, []).append(_Pending(msgs, fut))
        self._ensure_worker().set()
        g = await fut
        return _completion(
            str(body.get("model")), g.text, g.finish_reason, g.prompt_tokens, g.completion_tokens
        )

    async def stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        msgs = to_messages(body.get("messages", []))
        max_tokens = int(body.get("max_tokens") or 256)
        temperature = float(body.get("temperature") or 0.0)
        loop = asyncio.get_running_loop()
        q: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop_flag = threading.Event()

        def produce() -> None:
            try:
                gen = get_local_generator()
                it = gen.stream(msgs, max_tokens=max_tokens, temperature=temperature)
                for piece in it:
                    loop.call_soon_threadsafe(q.put_nowait, ("delta", piece))
                    if stop_flag.is_set():
                        break
                with contextlib.suppress(Exception):
                    it.close()  # type: ignore[attr-defined]
                loop.call_soon_threadsafe(q.put_nowait, ("end", None))
            except Exception as e:  # any failure must reach the consumer, or it waits forever
                loop.call_soon_threadsafe(q.put_nowait, ("error", e))

        thread = threading.Thread(target=produce, daemon=True, name=f"{self.name}-stream")
        thread.start()
        cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        model = str(body.get("model"))
        text = ""

        def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
            return {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }

        try:
            yield chunk({"role": "assistant", "content": ""}, None)
            while True:
                kind, val = await q.get()
                if kind == "error":
                    raise BackendFailure(
                        f"deployment {self.name}: {val}", deployment=self.name, retryable=False
                    )
                if kind == "end":
                    break
                text += val
                yield chunk({"content": val}, None)
            ct = count_tokens(text)
            yield chunk({}, "length" if ct >= max_tokens else "stop")
            pt = prompt_tokens(msgs)
            yield {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct},
            }
        finally:
            stop_flag.set()

    async def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        raise BackendFailure(
            f"deployment {self.name} serves chat only", deployment=self.name, retryable=False
        )

    async def warm_up(self) -> None:
        """Load the model in the background at startup, so the first request does not wait."""
        try:
            await asyncio.to_thread(get_local_generator().warm_up)
        except Exception as e:  # the first request will report it properly
            log.warning("deployment %s: warm-up failed: %s", self.name, e)

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker


class LocalEmbeddingsBackend:
    """all-MiniLM-L6-v2 (384 dimensions), in a worker thread."""

    def __init__(self, name: str):
        self.name = name
        self._embedder: Any = None
        self._lock = threading.Lock()

    async def warm_up(self) -> None:
        try:
            await asyncio.to_thread(self._embed, ["warm-up"])
        except Exception as e:  # the first request will report it properly
            log.warning("deployment %s: warm-up failed: %s", self.name, e)

    def _embed(self, texts: list[str]) -> list[list[float]]:
        with self._lock:
            if self._embedder is None:
                self._embedder = make_embedder(EmbedderConfig())
        return [v.tolist() for v in self._embedder.embed(texts)]

    async def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        inp = body["input"]
        texts = [inp] if isinstance(inp, str) else list(inp)
        try:
            vecs = await asyncio.to_thread(self._embed, texts)
        except Exception as e:  # sentence-transformers/torch raise many kinds
            raise BackendFailure(f"deployment {self.name}: {e}", deployment=self.name) from e
        tokens = sum(count_tokens(t) for t in texts)
        return {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vecs)
            ],
            "model": str(body.get("model")),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        raise BackendFailure(
            f"deployment {self.name} serves embeddings only", deployment=self.name, retryable=False
        )

    def stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        raise BackendFailure(
            f"deployment {self.name} serves embeddings only", deployment=self.name, retryable=False
        )

    async def aclose(self) -> None:
        return None
