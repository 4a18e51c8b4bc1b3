"""The one HTTP client flows and judges use to reach the gateway (OpenAI-compatible).

The gateway is a service, never imported: this module speaks its ``/chat/completions``
contract through the core client seam (:mod:`genaiops.openai_client`): the ``openai`` SDK over
one pooled ``httpx.Client`` per process (or an injected one: the test seam), retrying 429/5xx and
honouring ``Retry-After``, so a rate-limited gateway slows a run down instead of failing lines.
Prompts use promptflow's chat format (``# system:`` / ``# user:`` / ``# assistant:``
headings), so the same Jinja2 templates run under ``pf`` and under the genaiops runner.
Each call is an ``llm.chat`` client span (:mod:`genaiops.tracing`, ``gen_ai.*`` attributes)
whose ``traceparent`` the gateway continues; the gateway's ``x-request-id`` is kept on the span,
on :class:`ChatResult` and, inside :func:`collecting_request_ids`, in a per-line list.

    >>> parse_chat_prompt("# system:\\nBe brief.\\n# user:\\nHi")
    [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Hi'}]
    >>> client = GatewayClient.from_settings()                            # doctest: +SKIP
    >>> msgs = [{"role": "user", "content": "Hi"}]
    >>> client.chat(msgs, model="genaiops-local").text                  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from typing import Any

import httpx
import openai

from genaiops import tracing
from genaiops.errors import ConfigError, UpstreamError
from genaiops.openai_client import DEFAULT_MAX_RETRIES, openai_client, to_upstream_error
from genaiops.settings import get_settings

__all__ = [
    "CONNECTION_NAME",
    "ChatResult",
    "GatewayClient",
    "GatewayConnection",
    "collecting_request_ids",
    "gateway_client",
    "gateway_target",
    "parse_chat_prompt",
]

_ROLE = re.compile(r"^\s*#?\s*(system|user|assistant)\s*:\s*$", re.IGNORECASE | re.MULTILINE)


def parse_chat_prompt(text: str) -> list[dict[str, str]]:
    """Split a promptflow-style chat prompt into messages; no headings → one user message."""
    parts = _ROLE.split(text)
    if len(parts) == 1:
        return [{"role": "user", "content": text.strip()}]
    messages = []
    if parts[0].strip():
        messages.append({"role": "user", "content": parts[0].strip()})
    for role, content in zip(parts[1::2], parts[2::2], strict=True):
        messages.append({"role": role.lower(), "content": content.strip()})
    return messages


CONNECTION_NAME = "genaiops_gateway"


@dataclass(frozen=True)
class GatewayConnection:
    """What the genaiops runner passes where promptflow passes an ``OpenAIConnection``."""

    base_url: str
    api_key: str | None = None
    name: str = CONNECTION_NAME

    @classmethod
    def from_settings(cls) -> GatewayConnection:
        """The gateway of ``GENAIOPS_GATEWAY_URL`` / ``GENAIOPS_API_KEY``."""
        return cls(*gateway_target())


@dataclass(frozen=True)
class ChatResult:
    """One chat completion: text, token usage as the gateway reported it, and latency."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    model: str
    finish_reason: str
    latency_s: float
    request_id: str | None = None  # the gateway's x-request-id (its ledger row's request_id)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class GatewayClient:
    """Chat completions against ``base_url`` (``…/v1``) with a bearer key.

    ``GatewayClient.from_settings()`` uses ``GENAIOPS_GATEWAY_URL`` / ``GENAIOPS_API_KEY``.
    ``client`` is the HTTP seam; without it the process's pooled client is used, so building a
    GatewayClient opens no connection and :meth:`close` leaves the pool alone.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 600.0,
        client: httpx.Client | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
    ):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self._owned = client
        self._sdk = openai_client(
            self.base_url, api_key, http_client=client, max_retries=max_retries, timeout=timeout
        )

    @classmethod
    def from_settings(cls, **kwargs: Any) -> GatewayClient:
        """A client for ``GENAIOPS_GATEWAY_URL`` with ``GENAIOPS_API_KEY``."""
        return cls(*gateway_target(), **kwargs)

    def chat(
        self,
        messages: list[dict[str, str]],
        *,
        model: str,
        max_tokens: int = 128,
        temperature: float = 0.0,
        stop: list[str] | None = None,
        documents: list[dict[str, Any]] | None = None,
        retrieval: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> ChatResult:
        """One chat completion (retried on 429/5xx); UpstreamError when it cannot be had.

        ``documents`` (``{text, id, score}``) and ``retrieval`` (``{index, index_version,
        alias}``) are the gateway's extensions: the grounding is checked for indirect attacks
        and kept with a captured request; ``headers`` e.g. ``x-genaiops-flow-variant``."""
        attrs: dict[str, tracing.AttributeValue] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": model,
            "gen_ai.request.max_tokens": max_tokens,
            "server.address": self.base_url,
        }
        with tracing.span("llm.chat", attrs, kind=tracing.SpanKind.CLIENT) as sp:
            res = self._chat(
                messages, model, max_tokens, temperature, stop, documents, retrieval, headers
            )
            if res.request_id:
                sp.set_attribute(tracing.REQUEST_ID, res.request_id)
                ids = _REQUEST_IDS.get()
                if ids is not None:
                    ids.append(res.request_id)
            if sp.is_recording():
                sp.set_attribute("gen_ai.response.model", res.model)
                sp.set_attribute("gen_ai.response.finish_reasons", [res.finish_reason])
                sp.set_attribute("gen_ai.usage.input_tokens", res.prompt_tokens)
                sp.set_attribute("gen_ai.usage.output_tokens", res.completion_tokens)
            return res

    def _chat(
        self,
        messages: list[dict[str, str]],
        model: str,
        max_tokens: int,
        temperature: float,
        stop: list[str] | None,
        documents: list[dict[str, Any]] | None,
        retrieval: dict[str, Any] | None,
        headers: dict[str, str] | None,
    ) -> ChatResult:
        t0 = time.perf_counter()
        extra: dict[str, Any] = {}
        if documents:
            extra["documents"] = documents
        if retrieval:
            extra["retrieval"] = retrieval
        try:
            r = self._sdk.chat.completions.create(
                model=model,
                messages=messages,  # type: ignore[arg-type]
                max_tokens=max_tokens,
                temperature=temperature,
                stop=stop or openai.omit,
                extra_body=extra or None,
                extra_headers=headers or None,
            )
        except openai.OpenAIError as e:
            raise to_upstream_error(e, f"gateway {self.base_url}") from e
        latency = time.perf_counter() - t0
        try:
            choice = r.choices[0]
            usage = r.usage
            return ChatResult(
                text=choice.message.content or "",
                prompt_tokens=int(usage.prompt_tokens) if usage else 0,
                completion_tokens=int(usage.completion_tokens) if usage else 0,
                model=str(r.model or model),
                finish_reason=str(choice.finish_reason or ""),
                latency_s=latency,
                request_id=getattr(r, "_request_id", None),  # the SDK keeps x-request-id here
            )
        except (AttributeError, IndexError, TypeError, ValueError) as e:
            raise UpstreamError(f"gateway reply is not a chat completion: {r!r:.300}") from e

    def chat_prompt(self, prompt: str, **kwargs: Any) -> ChatResult:
        """Render-once convenience: parse a chat-format prompt and call :meth:`chat`."""
        return self.chat(parse_chat_prompt(prompt), **kwargs)

    def close(self) -> None:
        """Close an injected HTTP client; the shared pool stays open for other callers."""
        if self._owned is not None:
            self._owned.close()


_REQUEST_IDS: ContextVar[list[str] | None] = ContextVar("genaiops_request_ids", default=None)


@contextlib.contextmanager
def collecting_request_ids() -> Iterator[list[str]]:
    """A list that gets the gateway request id of every :meth:`GatewayClient.chat` made in this
    context while the block runs (an evaluation line's calls: its join to the ledger)."""
    ids: list[str] = []
    token = _REQUEST_IDS.set(ids)
    try:
        yield ids
    finally:
        _REQUEST_IDS.reset(token)


def gateway_target() -> tuple[str, str | None]:
    """``(GENAIOPS_GATEWAY_URL, GENAIOPS_API_KEY)``; ConfigError saying how to start one."""
    s = get_settings()
    if not s.gateway_url:
        raise ConfigError(
            "GENAIOPS_GATEWAY_URL is not set: start a gateway "
            "(genaiops gateway serve --port 8080) and export GENAIOPS_GATEWAY_URL="
            "http://127.0.0.1:8080/v1"
        )
    return s.gateway_url, s.api_key.get_secret_value() if s.api_key else None


_CLIENTS: dict[tuple[str, str | None], GatewayClient] = {}
_CLIENTS_LOCK = threading.Lock()


def gateway_client(base_url: str, api_key: str | None = None) -> GatewayClient:
    """The process's client for one gateway and key, built once and reused by every line,
    node and thread (over the shared connection pool)."""
    key = (base_url.rstrip("/"), api_key)
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(key)
        if client is None:
            client = _CLIENTS[key] = GatewayClient(base_url, api_key)
        return client
