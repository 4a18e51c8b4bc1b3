"""The embedded models: SmolLM2 chat and MiniLM embeddings, run off the event loop.

Chats and streams go to the generator's continuous batcher
(:mod:`genaiops.providers.batching`): a request joins the running batch at the next decoding
step, whatever its ``max_tokens``/``temperature``/``stop``, and leaves it when done; a stream's
deltas are handed from the scheduler thread to the event loop.  At most ``local_batch_size``
requests of a deployment run at once; the queue for a place is bounded
(``local_queue_max`` requests, ``local_queue_wait_s`` to start: 503 + ``Retry-After`` past
either), and a request whose caller left stops generating at the next decoding step.

    >>> b = LocalChatBackend("local-smollm2")                           # doctest: +SKIP
    >>> body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
    >>> await b.chat(body)                                              # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
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
from genaiops.providers.batching import BatchRequest
from genaiops.providers.generator import Generation, LocalGenerator, prompt_tokens
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
    """One request on its way through the generator's continuous batcher.  ``cancel`` is shared
    with the generator: set when the caller gives up or leaves, the request is skipped while it
    waits, or stops at the next decoding step once running."""

    __slots__ = ("cancel", "deltas", "fut")

    def __init__(self) -> None:
        self.fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.cancel = threading.Event()
        self.deltas: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()


def _rejected(name: str, e: InputRejected) -> InvalidRequest:
    """The client's 400 for an input the model refused (no tokenizer internals in it)."""
    if isinstance(e, ContextWindowExceeded):
        return InvalidRequest(str(e), param="messages", code="context_length_exceeded")
    return InvalidRequest(f"the messages cannot be read by deployment {name}", param="messages")


class LocalChatBackend:
    """SmolLM2 behind the generator's continuous batcher: chats and streams share its batch.

    Isolation, so one request cannot stall or break the others: at most ``batch_size`` requests
    of this deployment run in the batch at once, at most ``queue_max`` more wait for a place
    (more → :class:`BackendBusy`, 503 + ``Retry-After``), none waits longer than
    ``queue_wait_s`` for one (→ the same), a caller that goes away stops its generation at the
    next decoding step, and a request the model refuses or fails on fails alone.
    """

    def __init__(
        self,
        name: str,
        batch_size: int = 8,
        *,
        queue_max: int = 64,
        queue_wait_s: float = 30.0,
        model: str | None = None,
    ):
        self.name = name
        self.model = model  # a fine-tune (DeploymentConfig.model); None: the embedded SmolLM2
        self.batch_size = batch_size
        self.queue_max = queue_max
        self.queue_wait_s = queue_wait_s
        self._waiting: list[_Job] = []
        self._slots: asyncio.Semaphore | None = None
        self.requests_run = 0

    def waiting(self) -> int:
        """Requests queued for a place in the batch and not given up (what ``queue_max`` bounds)."""
        return sum(1 for j in self._waiting if not j.cancel.is_set())

    async def _acquire(self, job: _Job) -> None:
        """Wait for a place in the batch: refuse at once past ``queue_max`` waiting, give up
        after ``queue_wait_s``."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.batch_size)
        if self._slots.locked() and self.waiting() >= self.queue_max:
            raise BackendBusy(
                f"deployment {self.name}: {self.queue_max} requests are already waiting for "
                "the local model; retry shortly",
                deployment=self.name,
                retry_after=BUSY_RETRY_AFTER_S,
            )
        self._waiting.append(job)
        try:
            await asyncio.wait_for(self._slots.acquire(), self.queue_wait_s)
        except TimeoutError:
            job.cancel.set()
            raise BackendBusy(
                f"deployment {self.name}: the local model did not start this request within "
                f"{self.queue_wait_s:g}s; retry shortly",
                deployment=self.name,
                retry_after=BUSY_RETRY_AFTER_S,
            ) from None
        finally:
            self._waiting.remove(job)

    def _failure(self) -> BackendFailure:
        return BackendFailure(
            f"deployment {self.name}: local generation failed", deployment=self.name
        )

    async def _run(
        self,
        job: _Job,
        msgs: list[ChatMessage],
        *,
        max_tokens: int,
        temperature: float,
        stop: Sequence[str] = (),
        streaming: bool = False,
    ) -> None:
        """Hold a place, queue ``msgs`` in the batcher; the result (or the deltas) reach
        ``job`` from the scheduler thread; the place is freed when the request has finished."""
        await self._acquire(job)
        assert self._slots is not None
        slots = self._slots
        loop = asyncio.get_running_loop()

        def put(kind: str, val: Any) -> None:
            loop.call_soon_threadsafe(job.deltas.put_nowait, (kind, val))

        def resolve(fut: asyncio.Future[Any], req: BatchRequest) -> None:
            slots.release()
            if fut.done():
                return
            if req.error is not None:
                log.error("deployment %s: local generation failed: %r", self.name, req.error)
                fut.set_exception(self._failure())
            else:
                fut.set_result(LocalGenerator.result(msgs, req))

        def done(req: BatchRequest) -> None:
            loop.call_soon_threadsafe(resolve, job.fut, req)
            if streaming:
                put("error" if req.error is not None else "end", self._failure())

        def submit() -> BatchRequest:
            return get_local_generator(model=self.model).submit(
                msgs,
                max_tokens=max_tokens,
                temperature=temperature,
                stop=list(stop) or None,
                cancel=job.cancel,
                on_delta=(lambda piece: put("delta", piece)) if streaming else None,
                on_done=done,
            )

        # shielded: a caller cancelled now still gets its request queued (then skipped, as its
        # cancel is set) or refused, and the place is freed either way, never leaked
        queued = asyncio.ensure_future(asyncio.to_thread(submit))
        queued.add_done_callback(
            lambda f: slots.release() if f.cancelled() or f.exception() is not None else None
        )
        try:
            await asyncio.shield(queued)
        except InputRejected as e:  # this request fails; nothing was queued
            raise _rejected(self.name, e) from None
        except Exception as e:  # loading or tokenizing failed: the caller gets a 5xx, not a hang
            log.error("deployment %s: local generation failed: %r", self.name, e)
            raise self._failure() from e
        self.requests_run += 1

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        msgs = to_messages(body.get("messages", []))
        stop = body.get("stop") or ()
        stop = (stop,) if isinstance(stop, str) else tuple(stop)
        max_tokens = int(body.get("max_tokens") or 256)
        temperature = float(body.get("temperature") or 0.0)
        job = _Job()
        try:
            await self._run(job, msgs, max_tokens=max_tokens, temperature=temperature, stop=stop)
            g: Generation = await job.fut
        finally:
            job.cancel.set()  # answered, or the caller left: its row stops at the next step
        return _completion(
            str(body.get("model")), g.text, g.finish_reason, g.prompt_tokens, g.completion_tokens
        )

    async def stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        msgs = to_messages(body.get("messages", []))
        max_tokens = int(body.get("max_tokens") or 256)
        job = _Job()
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
            # a refused input fails here, before the first chunk
            await self._run(
                job,
                msgs,
                max_tokens=max_tokens,
                temperature=float(body.get("temperature") or 0.0),
                streaming=True,
            )
            yield chunk({"role": "assistant", "content": ""}, None)
            while True:
                kind, val = await job.deltas.get()
                if kind == "error":
                    raise val
                if kind == "end":
                    break
                text += val
                yield chunk({"content": val}, None)
            g: Generation = await job.fut
            yield chunk({}, g.finish_reason)
            pt = prompt_tokens(msgs)
            ct = count_tokens(text)
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
        for j in self._waiting:
            j.cancel.set()


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
