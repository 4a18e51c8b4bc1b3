"""An upper bound of the prompt tokens a chat request can be billed, computed before admission.

Quotas promise zero overshoot, so admission must reserve at least what the upstream will charge.
Every field an upstream bills as prompt tokens is counted, with the deployment's rule:

* ``tiktoken`` (HTTP deployments): text counted with the project counter (cl100k); exact for the
  OpenAI tokenizer it names, an estimate for others.
* ``bytes`` (the local SmolLM2, or any deployment whose tokenizer is unknown): text counted as its
  UTF-8 length.  A byte-level BPE never makes more tokens than bytes, so this bounds any of them.

What is counted (the README's *Quotas* section lists the same):

* per message ``4`` + its ``role`` + its ``content`` + ``name`` (+1) + ``tool_call_id`` +
  ``tool_calls`` / ``function_call`` (compact JSON + 4 per call); OpenAI documents 3 per message
  and 1 per name, the local generator 4 per message;
* content parts: ``text`` / ``refusal`` text (+1 each), ``image_url`` by OpenAI's published tile
  rule (``detail: low`` 85; otherwise 85 + 170 per 512-px tile after fitting into 2048×2048 and
  the short side into 768; 1445, the most, when the size is unknown), ``input_audio`` by the
  length of its base64 data;
* ``tools`` / ``functions`` (compact JSON + 8 per definition + 12), ``tool_choice``,
  ``response_format`` (compact JSON), the ``documents`` extension (each document + 4);
* any other field the gateway forwards and does not know: its JSON length in bytes;
* 3 tokens priming the reply (``bytes`` rule: 32, room for a chat template's fixed text).

Refused (400): ``file`` parts, ``audio`` references in messages and unknown part types, whose
cost the gateway cannot bound; more messages than ``max_messages``; a bound above the smallest
``context_window`` of the alias's deployments (``context_length_exceeded``, as OpenAI answers).

    >>> body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    >>> prompt_bound(body, rule="tiktoken")
    10
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import math
import warnings
from collections.abc import Callable
from typing import Any

from PIL import Image

from gateway.config import AliasConfig, GatewayConfig
from gateway.errors import InvalidRequest
from genaiops.tokens import count_tokens

__all__ = [
    "IMAGE_MAX_TOKENS",
    "INLINE_BODY_BYTES",
    "admission_tokens",
    "admission_tokens_sync",
    "image_tokens",
    "prompt_bound",
]

PER_MESSAGE = 4
PER_NAME = 1
PER_CALL = 4
PER_TOOL = 8
TOOLS_BASE = 12
PER_DOCUMENT = 4
PRIMING = {"tiktoken": 3, "bytes": 32}
IMAGE_BASE, IMAGE_TILE = 85, 170
IMAGE_MAX_TOKENS = IMAGE_BASE + IMAGE_TILE * 8  # 768 x 2048 after scaling: 2 x 4 tiles
# Request bodies up to this size are counted on the event loop (well under a millisecond; a
# thread hop costs about as much as counting them); larger ones in a worker thread.
INLINE_BODY_BYTES = 8192

# Top-level fields that carry no prompt text (or are counted on their own below).
_FREE = {
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n",
    "stream", "stream_options", "stop", "user", "seed", "presence_penalty", "frequency_penalty",
    "logit_bias", "logprobs", "top_logprobs", "parallel_tool_calls", "store", "metadata",
    "service_tier", "reasoning_effort", "modalities", "documents", "tools", "functions",
    "tool_choice", "function_call", "response_format",
}  # fmt: skip
_MESSAGE_KNOWN = {"role", "content", "name", "tool_calls", "function_call", "tool_call_id"}


def _counter(rule: str) -> Callable[[str], int]:
    if rule == "bytes":
        return lambda s: len(s.encode("utf-8", "surrogatepass"))
    return count_tokens


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def image_tokens(
    width: int | None, height: int | None, detail: str = "auto", base: int = IMAGE_BASE,
    tile: int = IMAGE_TILE,
) -> int:  # fmt: skip
    """Tokens OpenAI bills for one image (gpt-4o family rule; the most when the size is unknown).

    >>> image_tokens(1024, 1024), image_tokens(2048, 4096), image_tokens(None, None, "low")
    (765, 1105, 85)
    """
    if detail == "low":
        return base
    if not width or not height:
        return base + tile * 8
    w, h = float(width), float(height)
    if max(w, h) > 2048:
        s = 2048 / max(w, h)
        w, h = w * s, h * s
    if min(w, h) > 768:
        s = 768 / min(w, h)
        w, h = w * s, h * s
    return base + tile * math.ceil(w / 512) * math.ceil(h / 512)


def _data_url_size(url: str) -> tuple[int | None, int | None]:
    """Width and height of a ``data:image/...;base64,`` URL (header only), or (None, None)."""
    if not url.startswith("data:") or "," not in url:
        return None, None
    try:
        raw = base64.b64decode(url.split(",", 1)[1], validate=False)
        with warnings.catch_warnings():  # a huge size only matters as a size here
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw)) as im:  # reads the header, not the pixels
                return int(im.width), int(im.height)
    except (binascii.Error, ValueError, OSError, Image.DecompressionBombError):
        return None, None  # the upstream will refuse it; the bound is the largest image


def _refuse(what: str, param: str) -> InvalidRequest:
    return InvalidRequest(
        f"{param}: {what} cannot be counted against token quotas, so this gateway does not "
        "accept it",
        param=param,
    )


class _Bound:
    """Adds up one request's bound; ``image`` holds the per-image token rule."""

    def __init__(self, rule: str, image_base: int = IMAGE_BASE, image_tile: int = IMAGE_TILE):
        self.count = _counter(rule)
        self.rule = rule
        self.image_base, self.image_tile = image_base, image_tile

    def part(self, p: Any, param: str) -> int:
        if not isinstance(p, dict):
            raise _refuse("a content part that is not an object", param)
        kind = p.get("type")
        if kind == "text":
            return self.count(str(p.get("text") or "")) + 1
        if kind == "refusal":
            return self.count(str(p.get("refusal") or "")) + 1
        if kind == "image_url":
            spec = p.get("image_url")
            spec = spec if isinstance(spec, dict) else {"url": spec}
            w, h = _data_url_size(str(spec.get("url") or ""))
            detail = str(spec.get("detail") or "auto")
            return image_tokens(w, h, detail, self.image_base, self.image_tile) + 1
        if kind == "input_audio":
            audio = p.get("input_audio")
            data = audio.get("data") if isinstance(audio, dict) else None
            if not isinstance(data, str):
                raise _refuse("an input_audio part without base64 data", param)
            return len(data) + 1  # audio tokens are far fewer than bytes of base64
        raise _refuse(f"a content part of type {kind!r}", f"{param}.type")

    def message(self, m: dict[str, Any], param: str) -> int:
        n = PER_MESSAGE + self.count(str(m.get("role") or ""))
        content = m.get("content")
        if isinstance(content, str):
            n += self.count(content)
        elif isinstance(content, list):
            n += sum(self.part(p, f"{param}.content.{j}") for j, p in enumerate(content))
        if m.get("name"):
            n += self.count(str(m["name"])) + PER_NAME
        if m.get("tool_call_id"):
            n += self.count(str(m["tool_call_id"]))
        for k in ("tool_calls", "function_call"):
            v = m.get(k)
            if v:
                calls = len(v) if isinstance(v, list) else 1
                n += self.count(_json(v)) + PER_CALL * calls
        if "audio" in m:
            raise _refuse("an audio reference (that audio is billed again)", f"{param}.audio")
        for k, v in m.items():  # fields the gateway forwards but does not know: bytes
            if k not in _MESSAGE_KNOWN and v is not None:
                n += len(_json(v).encode()) + len(k)
        return n

    def body(self, body: dict[str, Any], documents: list[str]) -> int:
        messages = body.get("messages") or []
        n = sum(self.message(m, f"messages.{i}") for i, m in enumerate(messages))
        for k in ("tools", "functions"):
            defs = body.get(k)
            if defs:
                n += self.count(_json(defs)) + PER_TOOL * len(defs) + TOOLS_BASE
        for k in ("tool_choice", "function_call", "response_format"):
            v = body.get(k)
            if isinstance(v, dict | list):
                n += self.count(_json(v))
            elif isinstance(v, str):
                n += self.count(v)
        n += sum(self.count(d) + PER_DOCUMENT for d in documents)
        for k, v in body.items():
            if k not in _FREE and v is not None:
                n += len(_json(v).encode()) + len(k)
        return n + PRIMING[self.rule]


def prompt_bound(
    body: dict[str, Any],
    documents: list[str] | None = None,
    *,
    rule: str = "tiktoken",
    image_base: int = IMAGE_BASE,
    image_tile: int = IMAGE_TILE,
) -> int:
    """Upper bound of the prompt tokens of a chat ``body`` under ``rule`` (see the module doc).

    Raises :class:`~gateway.errors.InvalidRequest` for content whose cost cannot be bounded.
    """
    try:
        return _Bound(rule, image_base, image_tile).body(body, documents or [])
    except RecursionError as e:  # a structure nested deeper than JSON tools can walk
        raise InvalidRequest("request body is nested too deeply to be counted") from e


async def admission_tokens(
    config: GatewayConfig,
    alias: AliasConfig,
    body: dict[str, Any],
    documents: list[str] | None = None,
    *,
    body_bytes: int | None = None,
) -> int:
    """:func:`admission_tokens_sync`: inline for a request body of at most
    :data:`INLINE_BODY_BYTES` (``body_bytes``, its Content-Length), else in a worker thread (a
    2 MB prompt takes a while to count, and the event loop serves everyone else meanwhile)."""
    if body_bytes is not None and body_bytes <= INLINE_BODY_BYTES:
        return admission_tokens_sync(config, alias, body, documents)
    return await asyncio.to_thread(admission_tokens_sync, config, alias, body, documents)


def admission_tokens_sync(
    config: GatewayConfig,
    alias: AliasConfig,
    body: dict[str, Any],
    documents: list[str] | None = None,
) -> int:
    """The prompt bound admission reserves for ``alias``: the largest over its deployments'
    counting rules; 400 when there are too many messages or it exceeds a context window."""
    messages = body.get("messages") or []
    if len(messages) > config.max_messages:
        raise InvalidRequest(
            f"messages has {len(messages)} entries; this gateway accepts at most "
            f"{config.max_messages} per request",
            param="messages",
            code="too_many_messages",
        )
    names = [w.deployment for w in alias.deployments] + list(alias.fallback)
    deps = [config.deployment(n) for n in dict.fromkeys(names)]
    bounds: dict[tuple[str, int, int], int] = {}
    for d in deps:
        k = (d.token_rule(), d.image_base_tokens, d.image_tile_tokens)
        if k not in bounds:
            bounds[k] = prompt_bound(body, documents, rule=k[0], image_base=k[1], image_tile=k[2])
    windows = [
        (d.context_window, bounds[(d.token_rule(), d.image_base_tokens, d.image_tile_tokens)])
        for d in deps
        if d.context_window
    ]
    for window, bound in sorted(windows):
        if bound > window:
            raise InvalidRequest(
                f"This model's maximum context length is {window} tokens. However, your "
                f"messages resulted in up to {bound} tokens (an upper bound counted by the "
                "gateway). Please reduce the length of the messages.",
                param="messages",
                code="context_length_exceeded",
            )
    return max(bounds.values())
