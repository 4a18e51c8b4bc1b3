"""Remote deployments over one injected ``httpx.AsyncClient``: OpenAI-compatible and Azure OpenAI.

``openai_compatible`` posts to ``{base_url}/chat/completions`` (OpenAI, vLLM, llama.cpp server,
Ollama, another genaiops gateway); ``azure_openai`` posts to
``{base_url}/openai/deployments/{azure_deployment}/chat/completions?api-version=...`` with an
``api-key`` header or an Entra ID bearer token.  429 and 5xx are retried with exponential backoff,
honouring ``Retry-After`` / ``retry-after-ms`` (capped); other 4xx pass through to the client.

This is the pass-through hot path of the core client seam (:mod:`genaiops.openai_client`): it
relays upstream JSON and SSE bytes on raw ``httpx`` (``bench/client_seam.py`` measured the
``openai`` SDK slower here, see docs/benchmarks.md) and takes the seam's retry policy
(``RETRY_STATUS``, ``backoff_delay``).  Each attempt is a ``gateway.upstream`` client span
(:mod:`genaiops.tracing`) whose W3C ``traceparent`` goes upstream with the request; a streamed
attempt's span ends when the response headers arrive.

    >>> b = HTTPBackend(dep_config, httpx.AsyncClient())                 # doctest: +SKIP
    >>> await b.chat({"model": "gpt-4o", "messages": [...], "max_tokens": 16})   # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from azure.core.exceptions import AzureError

from gateway.backends.base import BackendFailure
from gateway.config import DeploymentConfig
from gateway.errors import APIError, InvalidRequest
from genaiops import tracing
from genaiops.openai_client import RETRY_STATUS, backoff_delay

__all__ = ["HTTPBackend"]

log = logging.getLogger(__name__)


def _error_message(resp: httpx.Response) -> str:
    try:
        err = resp.json().get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:500]
    except (ValueError, AttributeError):
        pass
    return resp.text[:200]


class HTTPBackend:
    """A remote deployment (``openai_compatible`` or ``azure_openai``)."""

    def __init__(self, cfg: DeploymentConfig, client: httpx.AsyncClient, credential: Any = None):
        self.cfg = cfg
        self.name = cfg.name
        self.client = client
        self.timeout = httpx.Timeout(cfg.timeout_s, connect=cfg.connect_timeout_s)
        # an azure.core TokenCredential (DefaultAzureCredential unless one is injected)
        self._credential = credential
        self._token: tuple[str, float] | None = None

    async def _entra_token(self) -> str:
        """A cached Entra ID access token, refreshed five minutes before it expires."""
        now = time.time()
        if self._token is not None and self._token[1] - 300 > now:
            return self._token[0]
        if self._credential is None:
            from azure.identity import DefaultAzureCredential

            self._credential = DefaultAzureCredential()
        try:
            tok = await asyncio.to_thread(self._credential.get_token, self.cfg.entra_scope)
        except AzureError as e:  # CredentialUnavailableError, ClientAuthenticationError, ...
            raise BackendFailure(
                f"deployment {self.name}: cannot get an Entra ID token ({type(e).__name__})",
                deployment=self.name,
                retryable=True,
            ) from e
        self._token = (tok.token, float(tok.expires_on))
        return tok.token

    def _url(self, op: str) -> str:
        base = (self.cfg.base_url or "").rstrip("/")
        if self.cfg.backend == "azure_openai":
            return (
                f"{base}/openai/deployments/{self.cfg.azure_deployment}/{op}"
                f"?api-version={self.cfg.api_version}"
            )
        return f"{base}/{op}"

    async def _headers(self) -> dict[str, str]:
        h: dict[str, str] = {}
        if self.cfg.entra_auth:
            h["authorization"] = f"Bearer {await self._entra_token()}"
        elif self.cfg.entra_token_env:
            h["authorization"] = f"Bearer {os.environ.get(self.cfg.entra_token_env, '')}"
        elif self.cfg.api_key_env:
            key = os.environ.get(self.cfg.api_key_env, "")
            if self.cfg.backend == "azure_openai":
                h["api-key"] = key
            else:
                h["authorization"] = f"Bearer {key}"
        return h

    def _body(self, body: dict[str, Any]) -> dict[str, Any]:
        out = dict(body)
        if self.cfg.backend == "azure_openai":
            out.pop("model", None)
        elif self.cfg.model:
            out["model"] = self.cfg.model
        return out

    async def _delay(self, attempt: int, resp: httpx.Response | None) -> None:
        cfg = self.cfg
        await asyncio.sleep(
            backoff_delay(attempt, resp, base_s=cfg.backoff_s, cap_s=cfg.max_retry_after_s)
        )

    def _fail(self, resp: httpx.Response) -> APIError:
        msg = (
            f"deployment {self.name}: upstream answered {resp.status_code}: {_error_message(resp)}"
        )
        if resp.status_code in RETRY_STATUS:
            return BackendFailure(msg, deployment=self.name, upstream_status=resp.status_code)
        if resp.status_code in (400, 404, 413, 422):
            # the request itself was refused: the client should see it, no fallback helps
            return InvalidRequest(msg, status=400 if resp.status_code == 404 else resp.status_code)
        return BackendFailure(
            msg, deployment=self.name, upstream_status=resp.status_code, retryable=True
        )

    async def _send(self, op: str, body: dict[str, Any], stream: bool) -> httpx.Response:
        """POST with retries; returns a 2xx response (streamed responses left open)."""
        url, payload, headers = self._url(op), self._body(body), await self._headers()
        last: APIError | None = None
        for attempt in range(self.cfg.max_retries + 1):
            resp: httpx.Response | None = None
            try:
                resp = await self._attempt(url, payload, headers, stream, attempt)
            except httpx.TimeoutException as e:
                last = BackendFailure(
                    f"deployment {self.name}: upstream timed out ({type(e).__name__})",
                    deployment=self.name,
                    timeout=True,
                )
            except httpx.HTTPError as e:
                last = BackendFailure(
                    f"deployment {self.name}: cannot reach upstream ({type(e).__name__})",
                    deployment=self.name,
                )
            else:
                if resp.status_code < 400:
                    return resp
                if stream:
                    await resp.aread()
                    await resp.aclose()
                last = self._fail(resp)
                if not isinstance(last, BackendFailure):
                    raise last
            if attempt < self.cfg.max_retries:
                log.info("deployment %s: retry %d after %s", self.name, attempt + 1, last)
                await self._delay(attempt, resp)
        assert last is not None
        raise last

    async def _attempt(
        self, url: str, payload: dict[str, Any], headers: dict[str, str], stream: bool, n: int
    ) -> httpx.Response:
        """One POST, in its client span when tracing is on."""
        if not tracing.enabled():
            req = self.client.build_request(
                "POST", url, json=payload, headers=headers, timeout=self.timeout
            )
            return await self.client.send(req, stream=stream)
        attrs: dict[str, tracing.AttributeValue] = {
            "http.request.method": "POST",
            "url.full": url,
            "genaiops.deployment": self.name,
            "http.request.resend_count": n,
        }
        with tracing.span("gateway.upstream", attrs, kind=tracing.SpanKind.CLIENT) as sp:
            traced = dict(headers)
            tracing.inject(traced)
            req = self.client.build_request(
                "POST", url, json=payload, headers=traced, timeout=self.timeout
            )
            resp = await self.client.send(req, stream=stream)
            sp.set_attribute("http.response.status_code", resp.status_code)
            if resp.status_code >= 400:
                sp.set_status(tracing.StatusCode.ERROR)
            return resp

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        resp = await self._send("chat/completions", {**body, "stream": False}, stream=False)
        data = _json(resp, self.name)
        choices = data.get("choices")
        if not (
            isinstance(choices, list)
            and choices
            and all(isinstance(c, dict) and isinstance(c.get("message"), dict) for c in choices)
        ):
            raise BackendFailure(
                f"deployment {self.name}: upstream answer has no choices[].message",
                deployment=self.name,
            )
        return data

    async def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        return _json(await self._send("embeddings", body, stream=False), self.name)

    async def stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        body = {**body, "stream": True, "stream_options": {"include_usage": True}}
        resp = await self._send("chat/completions", body, stream=True)
        try:
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                try:
                    obj = json.loads(data)
                except ValueError as e:
                    raise BackendFailure(
                        f"deployment {self.name}: malformed stream chunk",
                        deployment=self.name,
                        retryable=False,
                    ) from e
                if isinstance(obj, dict) and obj.get("error"):
                    err = obj["error"]
                    msg = err.get("message") if isinstance(err, dict) else str(err)
                    raise BackendFailure(
                        f"deployment {self.name}: upstream stream error: {str(msg)[:300]}",
                        deployment=self.name,
                        retryable=False,
                    )
                yield obj
        except httpx.HTTPError as e:
            raise BackendFailure(
                f"deployment {self.name}: stream broke ({type(e).__name__})",
                deployment=self.name,
                retryable=False,
            ) from e
        finally:
            await resp.aclose()

    async def aclose(self) -> None:
        return None


def _json(resp: httpx.Response, name: str) -> dict[str, Any]:
    try:
        data = resp.json()
    except ValueError as e:
        raise BackendFailure(
            f"deployment {name}: upstream sent invalid JSON", deployment=name
        ) from e
    if not isinstance(data, dict):
        raise BackendFailure(f"deployment {name}: upstream sent a non-object", deployment=name)
    return data
