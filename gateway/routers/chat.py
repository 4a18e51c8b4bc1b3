"""``POST /v1/chat/completions``: non-streaming and SSE streaming, safety both ways, quotas.

    curl -H "Authorization: Bearer $KEY" localhost:8080/v1/chat/completions \
         -d '{"model": "genaiops-local", "messages": [{"role": "user", "content": "hi"}]}'
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from gateway.backends import Backend, BackendFailure, message_text
from gateway.calls import Call, resolve_alias
from gateway.capture.service import metadata_headers
from gateway.config import AliasConfig
from gateway.counting import admission_tokens
from gateway.deps import GW, ApiKey, Gateway
from gateway.errors import (
    APIError,
    ClientDisconnected,
    ContentFiltered,
    InvalidRequest,
    UpstreamFailed,
)
from gateway.ledger import UsageRow
from gateway.safety import StreamFilter, merge_results
from gateway.schemas import ChatCompletionRequest, require_valid_text
from genaiops.tokens import count_tokens

__all__ = ["router"]

router = APIRouter(tags=["chat"])


def _body_bytes(request: Request) -> int | None:
    """The request body's Content-Length (None when it was sent chunked)."""
    value = request.headers.get("content-length")
    return int(value) if value is not None and value.isdigit() else None


def _sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(
    body: ChatCompletionRequest, request: Request, gw: GW, key: ApiKey
) -> Response:
    alias = resolve_alias(gw, body.model, "chat")
    require_valid_text(body)
    meta = metadata_headers(request.headers)
    call = Call(gw, request, key, alias.name, stream=bool(body.stream))
    request.state.extra_headers = call.headers()
    max_tokens = body.max_completion_tokens or body.max_tokens or gw.config.default_max_tokens
    if max_tokens > gw.config.max_max_tokens:
        raise InvalidRequest(
            f"max_tokens is {max_tokens}; this gateway allows at most {gw.config.max_max_tokens}",
            param="max_tokens",
        )
    payload = body.model_dump(
        exclude_none=True,
        exclude={"documents", "retrieval", "max_completion_tokens", "stream_options"},
    )
    payload["max_tokens"] = max_tokens
    payload["model"] = alias.name
    policy = key.safety_policy or alias.safety_policy
    safety_on = gw.safety is not None and gw.config.safety.enabled
    prompt_notes: list[dict[str, Any]] | None = None
    # an upper bound of the billed prompt; 400 before any work when it cannot fit or be bounded
    sent = payload["messages"]
    docs = body.document_texts()
    size = _body_bytes(request)
    call.prompt_estimate = await admission_tokens(gw.config, alias, payload, docs, body_bytes=size)
    redacted = False
    if safety_on:
        assert gw.safety is not None
        try:
            checked = await gw.safety.check_request(payload["messages"], docs, policy)
            payload["messages"], prompt_notes = checked.messages, checked.notes
            docs, redacted = checked.documents, checked.redacted
        except ContentFiltered as e:
            gw.metrics.safety.labels("input", "blocked").inc()
            await call.finish(
                None, 0, 0, status=400, outcome="filtered", error=e, safety={"prompt": e.result}
            )
            raise
        except APIError as e:  # the filter itself failed and the policy fails closed
            gw.metrics.safety.labels("input", "unavailable").inc()
            await call.finish(None, 0, 0, status=e.status, outcome="error", error=e)
            raise
    if payload["messages"] != sent:  # redacted by the input filter: count what is sent
        call.prompt_estimate = await admission_tokens(
            gw.config, alias, payload, docs, body_bytes=size
        )
    if gw.capture is not None:  # after redaction: what a captured record stores
        call.capture = gw.capture.begin(
            call.request_id, key, alias.name, body, meta, payload["messages"], docs, redacted
        )
    await call.admit(call.prompt_estimate + max_tokens)
    try:
        order, skipped = await gw.router.plan(alias, sticky=body.user or key.id)
        if skipped:
            await call.circuit_skipped(skipped)
        _maybe_shadow(gw, call, alias, payload)
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return await _stream(gw, call, order, payload, policy, prompt_notes, include_usage)
        dep, resp = await call.until_disconnect(call.dispatch(order, lambda b: b.chat(payload)))
        return await _complete(gw, call, alias, dep, resp, policy, prompt_notes)
    except ClientDisconnected:
        await call.finish(None, 0, 0, status=499, outcome="disconnected")
        return Response(status_code=499)
    except APIError as e:
        await call.finish(None, 0, 0, status=e.status, outcome="error", error=e)
        raise
    except Exception:
        await call.finish(None, 0, 0, status=500, outcome="error")
        raise
    except BaseException:  # cancelled: the client or the server went away
        with anyio.CancelScope(shield=True):
            await call.finish(None, 0, 0, status=499, outcome="disconnected")
        raise


async def _complete(
    gw: Gateway,
    call: Call,
    alias: AliasConfig,
    dep: str,
    resp: dict[str, Any],
    policy: str | None,
    prompt_notes: list[dict[str, Any]] | None,
) -> Response:
    choices = resp.get("choices") or []
    message = (choices[0].get("message") or {}) if choices else {}
    text = message_text(message.get("content"))
    usage = resp.get("usage") or {}
    pt = int(usage.get("prompt_tokens") or call.prompt_estimate)
    ct = int(usage.get("completion_tokens") or count_tokens(text))
    safety: dict[str, Any] = {}
    outcome = "ok"
    if prompt_notes is not None and gw.safety is not None:
        resp["prompt_filter_results"] = prompt_notes
        safety["prompt"] = prompt_notes[0]["content_filter_results"]
        if choices:
            checked, verdict = await gw.safety.check_completion(message, policy)
            choices[0]["message"] = checked
            choices[0]["content_filter_results"] = verdict.results
            safety["completion"] = verdict.results
            if verdict.blocked:
                outcome = "filtered"
                gw.metrics.safety.labels("output", "blocked").inc()
                choices[0]["finish_reason"] = "content_filter"
    resp["model"] = alias.name
    resp.setdefault("usage", {"prompt_tokens": pt, "completion_tokens": ct})
    resp["usage"]["total_tokens"] = pt + ct
    await call.finish(dep, pt, ct, outcome=outcome, safety=safety)  # durable before the reply
    if call.capture is not None:
        msg = choices[0].get("message") or {} if choices else {}
        finish = choices[0].get("finish_reason") if choices else None
        text = message_text(msg.get("content"))
        _capture(gw, call, dep, text, msg.get("tool_calls"), finish, pt, ct, outcome, safety)
    return JSONResponse(resp, headers=call.headers())


def _capture(
    gw: Gateway,
    call: Call,
    dep: str,
    text: str,
    tool_calls: Any,
    finish_reason: str | None,
    pt: int,
    ct: int,
    outcome: str,
    safety: dict[str, Any],
) -> None:
    """Queue the captured record of an answered request (never fails, never blocks)."""
    if gw.capture is not None and call.capture is not None:
        gw.capture.submit(
            call.capture,
            deployment=dep,
            completion=text,
            tool_calls=tool_calls,
            finish_reason=finish_reason,
            prompt_tokens=pt,
            completion_tokens=ct,
            latency_ms=round((time.perf_counter() - call.t0) * 1000, 3),
            outcome=outcome,
            safety=safety,
        )


def _maybe_shadow(gw: Gateway, call: Call, alias: AliasConfig, payload: dict[str, Any]) -> None:
    target = gw.router.shadow_target(alias, call.key.id, call.request_id)
    if target is None:
        return

    async def mirror() -> None:
        t0 = time.perf_counter()
        status, pt, ct = 200, 0, 0
        try:
            resp = await gw.backends[target].chat({**payload, "stream": False})
            usage = resp.get("usage") or {}
            pt, ct = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        except APIError as e:
            status = getattr(e, "upstream_status", None) or e.status
        await gw.ledger.write(
            UsageRow(
                request_id=f"{call.request_id}:shadow",
                key_id=call.key.id,
                key_prefix=call.key.prefix,
                team=call.key.team,
                alias=alias.name,
                deployment=target,
                prompt_tokens=pt,
                completion_tokens=ct,
                latency_ms=round((time.perf_counter() - t0) * 1000, 3),
                status=status,
                outcome="shadow",
            )
        )

    call.spawn(mirror())


async def _open_stream(
    call: Call, order: list[str], payload: dict[str, Any]
) -> tuple[str, AsyncIterator[dict[str, Any]], dict[str, Any] | None]:
    """First deployment whose stream yields a first chunk (fallback happens only here)."""

    async def first(b: Backend) -> tuple[AsyncIterator[dict[str, Any]], dict[str, Any] | None]:
        it = b.stream(payload).__aiter__()
        try:
            return it, await it.__anext__()
        except StopAsyncIteration:
            return it, None

    dep, (it, chunk) = await call.dispatch(order, first)
    return dep, it, chunk


async def _stream(
    gw: Gateway,
    call: Call,
    order: list[str],
    payload: dict[str, Any],
    policy: str | None,
    prompt_notes: list[dict[str, Any]] | None,
    include_usage: bool,
) -> Response:
    dep, it, first = await call.until_disconnect(_open_stream(call, order, payload))
    await call.mark_streaming(dep)
    filt = None
    if prompt_notes is not None and gw.safety is not None:
        filt = StreamFilter(gw.safety, policy, gw.config.safety.stream_window_chars)
    return _SettlingStream(
        _EventStream(gw, call, dep, it, first, filt, prompt_notes, include_usage).events(),
        lambda: _close_stream(call, dep, it),
        media_type="text/event-stream",
        headers={**call.headers(), "cache-control": "no-cache"},
    )


class _ToolCallBuffer:
    """Streamed tool-call (and legacy function-call) deltas, held back until the stream ends so
    their arguments are judged whole before any of them leaves."""

    def __init__(self) -> None:
        self.calls: dict[int, dict[str, Any]] = {}
        self.function_call: dict[str, Any] | None = None

    def add(self, delta: dict[str, Any]) -> None:
        for tc in delta.pop("tool_calls", None) or []:
            if not isinstance(tc, dict):
                continue
            cur = self.calls.setdefault(int(tc.get("index") or 0), {"function": {}})
            for k in ("id", "type"):
                if tc.get(k):
                    cur[k] = tc[k]
            fn = tc.get("function") or {}
            if fn.get("name"):
                cur["function"]["name"] = fn["name"]
            cur["function"]["arguments"] = cur["function"].get("arguments", "") + str(
                fn.get("arguments") or ""
            )
        fc = delta.pop("function_call", None)
        if isinstance(fc, dict):
            cur = self.function_call = self.function_call or {}
            if fc.get("name"):
                cur["name"] = fc["name"]
            cur["arguments"] = cur.get("arguments", "") + str(fc.get("arguments") or "")

    def message(self) -> dict[str, Any]:
        msg: dict[str, Any] = {"role": "assistant", "content": ""}
        if self.calls:
            msg["tool_calls"] = [{"index": i, **c} for i, c in sorted(self.calls.items())]
        if self.function_call is not None:
            msg["function_call"] = self.function_call
        return msg

    def __bool__(self) -> bool:
        return bool(self.calls) or self.function_call is not None


class _EventStream:
    """The SSE events of one streamed answer: relays the backend's chunks, releases text only
    through the :class:`StreamFilter`, holds tool calls until they are judged, then sends the
    final chunk (with usage if asked), settles the call and ends with ``[DONE]``."""

    def __init__(
        self,
        gw: Gateway,
        call: Call,
        dep: str,
        it: AsyncIterator[dict[str, Any]],
        first: dict[str, Any] | None,
        filt: StreamFilter | None,
        prompt_notes: list[dict[str, Any]] | None,
        include_usage: bool,
    ):
        self.gw, self.call, self.dep, self.it, self.first = gw, call, dep, it, first
        self.filt, self.prompt_notes, self.include_usage = filt, prompt_notes, include_usage
        self.usage: dict[str, Any] | None = None
        self.finish: str | None = None
        self.blocked = False
        self.tools = _ToolCallBuffer()
        self.template: dict[str, Any] = {
            "id": (first or {}).get("id") or "chatcmpl-" + call.request_id[4:28],
            "object": "chat.completion.chunk",
            "created": (first or {}).get("created") or int(time.time()),
        }

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None, **extra: Any) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        choice.update(extra)
        return _sse({**self.template, "model": self.call.alias, "choices": [choice]})

    async def _upstream(self) -> AsyncIterator[dict[str, Any]]:
        if self.first is not None:
            yield self.first
        async for c in self.it:
            yield c

    async def _relay(self, c: dict[str, Any]) -> AsyncIterator[bytes]:
        """Events for one backend chunk; sets ``blocked`` when the filter stops the answer."""
        self.template["id"] = c.get("id", self.template["id"])
        self.template["created"] = c.get("created", self.template["created"])
        if c.get("usage"):
            self.usage = c["usage"]
        for ch in c.get("choices") or []:
            delta = dict(ch.get("delta") or {})
            raw = delta.pop("content", None)
            piece = raw if isinstance(raw, str) else message_text(raw)  # parts: their text
            self.call.streamed += piece
            self.finish = ch.get("finish_reason") or self.finish
            out: str | None = piece
            if self.filt is not None:
                self.tools.add(delta)
                if piece:
                    out = await self.filt.feed(piece)
                    if out is None:
                        self.blocked = True
                        return
            if out:
                delta["content"] = out
            if delta:
                yield self._chunk(delta, None)

    async def _release_rest(self) -> AsyncIterator[bytes]:
        """After the last chunk: the held-back text, then the held tool calls, once judged."""
        assert self.filt is not None
        rest = await self.filt.finish()
        if rest is None:
            self.blocked = True
            return
        if rest:
            yield self._chunk({"content": rest}, None)
        if self.tools:
            msg, verdict = await self.filt.engine.check_completion(
                self.tools.message(), self.filt.policy
            )
            merge_results(self.filt.results, verdict.results)
            if verdict.blocked:
                self.blocked = True
                return
            msg.pop("role", None)
            msg.pop("content", None)
            yield self._chunk(msg, None)

    async def _settle(self) -> AsyncIterator[bytes]:
        extra: dict[str, Any] = {}
        if self.filt is not None:
            extra["content_filter_results"] = self.filt.results
        if self.blocked:
            self.gw.metrics.safety.labels("output", "blocked").inc()
        finish = "content_filter" if self.blocked else (self.finish or "stop")
        yield self._chunk({}, finish, **extra)
        call, usage = self.call, self.usage or {}
        pt = int(usage.get("prompt_tokens") or call.prompt_estimate)
        ct = int(usage.get("completion_tokens") or count_tokens(call.streamed))
        if self.blocked or self.usage is None:
            ct = count_tokens(call.streamed)
        if self.include_usage:
            u = {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}
            yield _sse({**self.template, "model": call.alias, "choices": [], "usage": u})
        safety = {"completion": self.filt.results} if self.filt is not None else {}
        if self.prompt_notes is not None:
            safety["prompt"] = self.prompt_notes[0]["content_filter_results"]
        outcome = "filtered" if self.blocked else "ok"
        await call.finish(self.dep, pt, ct, outcome=outcome, safety=safety)
        if call.capture is not None:  # the text as delivered (after the stream filter)
            text = self.filt.released if self.filt is not None else call.streamed
            tools = (
                self.tools.message().get("tool_calls") if self.tools and not self.blocked else None
            )
            _capture(self.gw, call, self.dep, text, tools, finish, pt, ct, outcome, safety)
        yield b"data: [DONE]\n\n"

    async def events(self) -> AsyncIterator[bytes]:
        try:
            if self.prompt_notes is not None and self.include_usage:  # empty choices if asked
                notes = {**self.template, "model": self.call.alias, "choices": []}
                yield _sse({**notes, "prompt_filter_results": self.prompt_notes})
            async for c in self._upstream():
                async for ev in self._relay(c):
                    yield ev
                if self.blocked:
                    break
            if self.filt is not None and not self.blocked:
                async for ev in self._release_rest():
                    yield ev
            async for ev in self._settle():
                yield ev
        except APIError as e:
            # mid-stream failure: the SDK raises on an ``error`` event
            await self.call.finish(
                self.dep,
                self.call.prompt_estimate,
                count_tokens(self.call.streamed),
                status=e.status,
                outcome="error",
                error=e,
            )
            yield _sse(e.body())
        finally:
            await _close_stream(self.call, self.dep, self.it)


async def _close_stream(call: Call, dep: str, it: AsyncIterator[dict[str, Any]]) -> None:
    """Settle partial usage if the client went away, and close the upstream stream (once)."""
    with anyio.CancelScope(shield=True):
        if not call.done:
            await call.finish(
                dep,
                call.prompt_estimate,
                count_tokens(call.streamed),
                status=200,
                outcome="disconnected",
            )
        aclose = getattr(it, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(BackendFailure, UpstreamFailed, RuntimeError):
                await aclose()


class _SettlingStream(StreamingResponse):
    """A stream that settles its call even if its body generator never ran or never resumed
    (client gone before the first byte, or cancelled while a chunk was being sent)."""

    def __init__(self, content: Any, cleanup: Callable[[], Awaitable[None]], **kw: Any):
        super().__init__(content, **kw)
        self._cleanup = cleanup

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._cleanup()
