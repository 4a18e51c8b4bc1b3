"""The one HTTP client flows and judges use to reach the gateway (OpenAI-compatible).

The gateway is a service, never imported: this module speaks its ``/chat/completions``
contract over an injectable ``httpx.Client`` (the test seam). Prompts use promptflow's chat
format (``# system:`` / ``# user:`` / ``# assistant:`` headings), so the same Jinja2 templates
run under ``pf`` and under the genaiops runner.

    >>> parse_chat_prompt("# system:\\nBe brief.\\n# user:\\nHi")
    [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Hi'}]
    >>> client = GatewayClient.from_settings()                            # doctest: +SKIP
    >>> msgs = [{"role": "user", "content": "Hi"}]
    >>> client.chat(msgs, model="genaiops-local").text                  # doctest: +SKIP
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from genaiops.errors import ConfigError, UpstreamError
from genaiops.settings import get_settings

__all__ = ["ChatResult", "GatewayClient", "parse_chat_prompt"]

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


@dataclass(frozen=True)
class ChatResult:
    """One chat completion: text, token usage as the gateway reported it, and latency."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    model: str
    finish_reason: str
    latency_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class GatewayClient:
    """Chat completions against ``base_url`` (``…/v1``) with a bearer key.

    ``GatewayClient.from_settings()`` uses ``GENAIOPS_GATEWAY_URL`` / ``GENAIOPS_API_KEY``.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 600.0,
        client: httpx.Client | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self._client = client or httpx.Client(timeout=timeout)

    @classmethod
    def from_settings(cls, **kwargs: Any) -> GatewayClient:
        s = get_settings()
        if not s.gateway_url:
            raise ConfigError(
                "GENAIOPS_GATEWAY_URL is not set: start a gateway "
                "(genaiops gateway serve --port 8080) and export GENAIOPS_GATEWAY_URL="
                "http://127.0.0.1:8080/v1"
            )
        key = s.api_key.get_secret_value() if s.api_key else None
        return cls(s.gateway_url, key, **kwargs)

    def chat(
        self,
        messages: list[dict[str, str]],
        *,
        model: str,
        max_tokens: int = 128,
        temperature: float = 0.0,
        stop: list[str] | None = None,
    ) -> ChatResult:
        body: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        if stop:
            body["stop"] = stop
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        t0 = time.perf_counter()
        try:
            r = self._client.post(f"{self.base_url}/chat/completions", json=body, headers=headers)
        except httpx.HTTPError as e:
            raise UpstreamError(f"gateway {self.base_url} unreachable: {e}") from e
        latency = time.perf_counter() - t0
        if r.status_code >= 400:
            raise UpstreamError(f"gateway answered {r.status_code}: {r.text[:300]}", r.status_code)
        try:
            data = r.json()
            choice = data["choices"][0]
            usage = data.get("usage") or {}
            return ChatResult(
                text=choice["message"].get("content") or "",
                prompt_tokens=int(usage.get("prompt_tokens", 0)),
                completion_tokens=int(usage.get("completion_tokens", 0)),
                model=str(data.get("model", model)),
                finish_reason=str(choice.get("finish_reason", "")),
                latency_s=latency,
            )
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise UpstreamError(f"gateway reply is not a chat completion: {r.text[:300]}") from e

    def chat_prompt(self, prompt: str, **kwargs: Any) -> ChatResult:
        """Render-once convenience: parse a chat-format prompt and call :meth:`chat`."""
        return self.chat(parse_chat_prompt(prompt), **kwargs)

    def close(self) -> None:
        self._client.close()
