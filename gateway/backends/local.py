"""The embedded models: SmolLM2 chat and MiniLM embeddings, run off the event loop.

The generator allows one forward pass at a time, so concurrent chat requests are queued and
grouped into padded batches (``generate_batch``; up to ``batch_size`` requests that share
``max_tokens``/``temperature``/``stop``, collected for ``batch_wait_ms``).  Streams wait in the
same queue and run alone in a worker thread that hands deltas to the event loop.  The queue is
bounded (``local_queue_max`` requests, ``local_queue_wait_s`` to start: 503 + ``Retry-After``
past either), and a request whose caller left stops generating at the next decoding step.

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

from gateway.backends.base import BackendBusy, BackendFailure
from gateway.errors import InvalidRequest
from genaiops.errors import ContextWindowExceeded, InputRejected
from genaiops.providers import ChatMessage, EmbedderConfig, get_local_generator, make_embedder
from genaiops.providers.generator import prompt_tokens
from genaiops.tokens import count_tokens

__all__ = ["LocalChatBackend", "LocalEmbeddingsBackend", "message_text", "to_messages"]

log = logging.getLogger(__name__)
BUSY_RETRY_AFTER_S = 2.0


def message_text(content: Any) -> str:
    """Text of an OpenAI message ``content`` (a string or a list of parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):  # a malformed upstream answer: still text, never a crash
        return str(content)
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


class _Job:
    """One queued request: a chat (batched with others of the same ``key``) or a stream (run
    alone).  ``cancel`` is shared with the generator: set when the caller gives up or leaves,
    the worker skips the job, or its row stops at the next decoding step."""

    __slots__ = ("cancel", "deltas", "fut", "max_tokens", "messages", "started", "temperature")

    def __init__(self, messages: list[ChatMessage], max_tokens: int, temperature: float):
        self.messages = messages
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.started = asyncio.Event()
        self.cancel = threading.Event()
        self.deltas: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()


def _rejected(name: str, e: InputRejected) -> InvalidRequest:
    """The client's 400 for an input the model refused (no tokenizer internals in it)."""
    if isinstance(e, ContextWindowExceeded):
        return InvalidRequest(str(e), param="messages", code="context_length_exceeded")
    return InvalidRequest(f"the messages cannot be read by deployment {name}", param="messages")


class LocalChatBackend:
    """SmolLM2 behind one worker: chats batched through ``generate_batch``, streams one at a time.

    Isolation, so one request cannot stall or break the others: at most ``queue_max`` requests
    wait (more → :class:`BackendBusy`, 503 + ``Retry-After``), none waits longer than
    ``queue_wait_s`` to start (→ the same), a caller that goes away stops its generation at the
    next decoding step, and when one request of a batch fails the others run again without it.
    """

    def __init__(
        self,
        name: str,
        batch_size: int = 8,
        batch_wait_ms: float = 5.0,
        *,
        queue_max: int = 64,
        queue_wait_s: float = 30.0,
        model: str | None = None,
    ):
        self.name = name
        self.model = model  # a fine-tune (DeploymentConfig.model); None: the embedded SmolLM2
        self.batch_size = batch_size
        self.batch_wait_s = batch_wait_ms / 1000
        self.queue_max = queue_max
        self.queue_wait_s = queue_wait_s
        self._queues: dict[tuple[Any, ...], list[_Job]] = {}
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self.batches_run = 0

    def waiting(self) -> int:
        """Requests queued and not given up (what ``queue_max`` bounds)."""
        return sum(1 for q in self._queues.values() for j in q if not j.cancel.is_set())

    def _enqueue(self, key: tuple[Any, ...], job: _Job) -> None:
        if self.waiting() >= self.queue_max:
            raise BackendBusy(
                f"deployment {self.name}: {self.queue_max} requests are already waiting for "
                "the local model; retry shortly",
                deployment=self.name,
                retry_after=BUSY_RETRY_AFTER_S,
            )
        self._queues.setdefault(key, []).append(job)
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work())
        self._wakeup.set()

    async def _wait_start(self, job: _Job) -> None:
        try:
            await asyncio.wait_for(job.started.wait(), self.queue_wait_s)
        except TimeoutError:
            job.cancel.set()  # the worker skips it
            raise BackendBusy(
                f"deployment {self.name}: the local model did not start this request within "
                f"{self.queue_wait_s:g}s; retry shortly",
                deployment=self.name,
                retry_after=BUSY_RETRY_AFTER_S,
            ) from None

    async def _work(self) -> None:
        assert self._wakeup is not None
        while True:
            await self._wakeup.wait()
            await asyncio.sleep(self.batch_wait_s)  # let concurrent requests join the batch
            self._wakeup.clear()
            while self._queues:
                key = next(iter(self._queues))
                queue = self._queues[key]
                batch = [j for j in queue[: self.batch_size] if not j.cancel.is_set()]
                del queue[: self.batch_size]
                if not queue:
                    del self._queues[key]
                if not batch:
                    continue
                if key[0] == "stream":
                    await self._run_stream(batch[0])
                else:
                    await self._run_batch(key, batch)

    def _fail(self, job: _Job, err: Exception) -> None:
        if not job.fut.done():
            job.fut.set_exception(err)

    async def _run_batch(self, key: tuple[Any, ...], batch: list[_Job]) -> None:
        max_tokens, temperature, stop = key
        gen = get_local_generator(model=self.model)
        for j in batch:
            j.started.set()
        pending = list(batch)
        while pending := [j for j in pending if not j.cancel.is_set()]:
            try:
                results = await asyncio.to_thread(
                    gen.generate_batch,
                    [j.messages for j in pending],
                    max_tokens=max_tokens,
                    temperature=temperature,
                    stop=list(stop) or None,
                    cancel=[j.cancel for j in pending],
                )
            except InputRejected as e:  # that one request fails; the others run again
                bad = pending.pop(e.index if 0 <= e.index < len(pending) else 0)
                self._fail(bad, _rejected(self.name, e))
                continue
            except Exception as e:  # torch/transformers raise many kinds: isolate, never hang
                if len(pending) > 1:  # run each alone, so only the culprit fails
                    for j in pending:
                        await self._run_batch(key, [j])
                    return
                log.error("deployment %s: local generation failed: %r", self.name, e)
                self._fail(pending[0], self._failure())
                return
            self.batches_run += 1
            for j, r in zip(pending, results, strict=True):
                if not j.fut.done():
                    j.fut.set_result(r)
            return

    def _failure(self) -> BackendFailure:
        return BackendFailure(
            f"deployment {self.name}: local generation failed", deployment=self.name
        )

    async def _run_stream(self, job: _Job) -> None:
        """Run one stream to its end (or until its caller leaves) in a worker thread."""
        job.started.set()
        loop = asyncio.get_running_loop()

        def put(kind: str, val: Any) -> None:
            loop.call_soon_threadsafe(job.deltas.put_nowait, (kind, val))

        def produce() -> None:
            try:
                for piece in get_local_generator(model=self.model).stream(
                    job.messages,
                    max_tokens=job.max_tokens,
                    temperature=job.temperature,
                    cancel=job.cancel,
                ):
                    put("delta", piece)
                put("end", None)
            except InputRejected as e:
                put("error", _rejected(self.name, e))
            except Exception as e:  # any failure must reach the consumer, or it waits forever
                log.error("deployment %s: local stream failed: %r", self.name, e)
                put("error", self._failure())

        await asyncio.to_thread(produce)

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        msgs = to_messages(body.get("messages", []))
        stop = body.get("stop") or ()
        stop = (stop,) if isinstance(stop, str) else tuple(stop)
        max_tokens = int(body.get("max_tokens") or 256)
        temperature = float(body.get("temperature") or 0.0)
        job = _Job(msgs, max_tokens, temperature)
        self._enqueue((max_tokens, temperature, stop), job)
        try:
            await self._wait_start(job)
            g = await job.fut
        finally:
            job.cancel.set()  # answered, or the caller left: its row stops at the next step
        return _completion(
            str(body.get("model")), g.text, g.finish_reason, g.prompt_tokens, g.completion_tokens
        )

    async def stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        msgs = to_messages(body.get("messages", []))
        max_tokens = int(body.get("max_tokens") or 256)
        job = _Job(msgs, max_tokens, float(body.get("temperature") or 0.0))
        self._enqueue(("stream", id(job)), job)
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
            await self._wait_start(job)
            item = await job.deltas.get()  # a refused input fails before the first chunk
            if item[0] == "error":
                raise item[1]
            yield chunk({"role": "assistant", "content": ""}, None)
            while True:
                kind, val = item
                if kind == "error":
                    raise val
                if kind == "end":
                    break
                text += val
                yield chunk({"content": val}, None)
                item = await job.deltas.get()
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
            job.cancel.set()  # the consumer is done or gone: generation stops at the next step

    async def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        raise BackendFailure(
            f"deployment {self.name} serves chat only", deployment=self.name, retryable=False
        )

    async def warm_up(self) -> None:
        """Load the model in the background at startup, so the first request does not wait."""
        try:
            await asyncio.to_thread(get_local_generator(model=self.model).warm_up)
        except Exception as e:  # the first request will report it properly
            log.warning("deployment %s: warm-up failed: %s", self.name, e)

    async def aclose(self) -> None:
        for q in self._queues.values():
            for j in q:
                j.cancel.set()
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
