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
from gateway.calls import Call, ClientDisconnected, resolve_alias
from gateway.config import AliasConfig
from gateway.counting import admission_tokens
from gateway.deps import GW, ApiKey, Gateway
from gateway.errors import APIError, ContentFiltered, InvalidRequest, UpstreamFailed
from gateway.ledger import UsageRow
from gateway.safety import StreamFilter
from gateway.schemas import ChatCompletionRequest
from genaiops.tokens import count_tokens

__all__ = ["router"]

router = APIRouter(tags=["chat"])


def _sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(
    body: ChatCompletionRequest, request: Request, gw: GW, key: ApiKey
) -> Response:
    alias = resolve_alias(gw, body.model, "chat")
    call = Call(gw, request, key, alias.name, stream=bool(body.stream))
    request.state.extra_headers = call.headers()
    max_tokens = body.max_completion_tokens or body.max_tokens or gw.config.default_max_tokens
    if max_tokens > gw.config.max_max_tokens:
        raise InvalidRequest(
            f"max_tokens is {max_tokens}; this gateway allows at most {gw.config.max_max_tokens}",
            param="max_tokens",
        )
    payload = body.model_dump(
        exclude_none=True, exclude={"documents", "max_completion_tokens", "stream_options"}
    )
    payload["max_tokens"] = max_tokens
    payload["model"] = alias.name
    policy = key.safety_policy or alias.safety_policy
    safety_on = gw.safety is not None and gw.config.safety.enabled
    prompt_notes: list[dict[str, Any]] | None = None
    # an upper bound of the billed prompt; 400 before any work when it cannot fit or be bounded
    sent = payload["messages"]
    call.prompt_estimate = await admission_tokens(gw.config, alias, payload, body.documents)
    if safety_on:
        assert gw.safety is not None
        try:
            payload["messages"], prompt_notes = await gw.safety.check_input(
                payload["messages"], body.documents or [], policy
            )
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
        call.prompt_estimate = await admission_tokens(gw.config, alias, payload, body.documents)
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
    text = message_text((choices[0].get("message") or {}).get("content")) if choices else ""
    usage = resp.get("usage") or {}
    pt = int(usage.get("prompt_tokens") or call.prompt_estimate)
    ct = int(usage.get("completion_tokens") or count_tokens(text))
    safety: dict[str, Any] = {}
    outcome = "ok"
    if prompt_notes is not None and gw.safety is not None:
        resp["prompt_filter_results"] = prompt_notes
        safety["prompt"] = prompt_notes[0]["content_filter_results"]
        if choices:
            verdict = await gw.safety.check_output(text, policy)
            choices[0]["content_filter_results"] = verdict.results
            safety["completion"] = verdict.results
            if verdict.blocked:
                outcome = "filtered"
                gw.metrics.safety.labels("output", "blocked").inc()
                choices[0]["message"]["content"] = ""
                choices[0]["finish_reason"] = "content_filter"
            elif verdict.text != text:
                choices[0]["message"]["content"] = verdict.text
    resp["model"] = alias.name
    resp.setdefault("usage", {"prompt_tokens": pt, "completion_tokens": ct})
    resp["usage"]["total_tokens"] = pt + ct
    await call.finish(dep, pt, ct, outcome=outcome, safety=safety)  # durable before the reply
    return JSONResponse(resp, headers=call.headers())


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
        _events(gw, call, dep, it, first, filt, prompt_notes, include_usage),
        lambda: _close_stream(call, dep, it),
        media_type="text/event-stream",
        headers={**call.headers(), "cache-control": "no-cache"},
    )


async def _events(
    gw: Gateway,
    call: Call,
    dep: str,
    it: AsyncIterator[dict[str, Any]],
    first: dict[str, Any] | None,
    filt: StreamFilter | None,
    prompt_notes: list[dict[str, Any]] | None,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    call.streamed = ""
    usage: dict[str, Any] | None = None
    finish: str | None = None
    blocked = False
    template: dict[str, Any] = {
        "id": (first or {}).get("id") or "chatcmpl-" + call.request_id[4:28],
        "object": "chat.completion.chunk",
        "created": (first or {}).get("created") or int(time.time()),
    }

    def chunk(delta: dict[str, Any], finish_reason: str | None, **extra: Any) -> bytes:
        c = {**template, "model": call.alias}
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        choice.update(extra)
        c["choices"] = [choice]
        return _sse(c)

    async def chunks() -> AsyncIterator[dict[str, Any]]:
        if first is not None:
            yield first
        async for c in it:
            yield c

    try:
        if prompt_notes is not None and include_usage:  # empty-choices chunks only if asked
            notes = {**template, "model": call.alias, "choices": []}
            yield _sse({**notes, "prompt_filter_results": prompt_notes})
        async for c in chunks():
            template["id"] = c.get("id", template["id"])
            template["created"] = c.get("created", template["created"])
            if c.get("usage"):
                usage = c["usage"]
            for ch in c.get("choices") or []:
                delta = dict(ch.get("delta") or {})
                piece = delta.pop("content", None) or ""
                call.streamed += piece
                finish = ch.get("finish_reason") or finish
                out: str | None = piece
                if filt is not None and piece:
                    out = await filt.feed(piece)
                    if out is None:
                        blocked = True
                        break
                if out:
                    delta["content"] = out
                if delta:
                    yield chunk(delta, None)
            if blocked:
                break
        if filt is not None and not blocked:
            rest = await filt.finish()
            if rest is None:
                blocked = True
            elif rest:
                yield chunk({"content": rest}, None)
        extra: dict[str, Any] = {}
        if filt is not None:
            extra["content_filter_results"] = filt.results
        if blocked:
            gw.metrics.safety.labels("output", "blocked").inc()
        yield chunk({}, "content_filter" if blocked else (finish or "stop"), **extra)
        pt = int((usage or {}).get("prompt_tokens") or call.prompt_estimate)
        ct = int((usage or {}).get("completion_tokens") or count_tokens(call.streamed))
        if blocked or usage is None:
            ct = count_tokens(call.streamed)
        if include_usage:
            u = {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}
            yield _sse({**template, "model": call.alias, "choices": [], "usage": u})
        safety = {"completion": filt.results} if filt is not None else {}
        if prompt_notes is not None:
            safety["prompt"] = prompt_notes[0]["content_filter_results"]
        await call.finish(dep, pt, ct, outcome="filtered" if blocked else "ok", safety=safety)
        yield b"data: [DONE]\n\n"
    except APIError as e:
        # mid-stream failure: the SDK raises on an ``error`` event
        await call.finish(
            dep,
            call.prompt_estimate,
            count_tokens(call.streamed),
            status=e.status,
            outcome="error",
            error=e,
        )
        yield _sse(e.body())
    finally:
        await _close_stream(call, dep, it)


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
