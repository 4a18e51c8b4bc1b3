"""The gateway's default upstream client (``upstream_async_client``: httpx over aiohttp) on real
loopback sockets: JSON and SSE relayed, pooled connections, no cookies kept across keys, and
error kinds the backend can act on (a refused port is "cannot reach", not a timeout)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from gateway.backends import BackendFailure, HTTPBackend
from gateway.config import DeploymentConfig
from gateway.testing import serve_in_thread
from genaiops.openai_client import free_port, upstream_async_client
from tests.gateway.support import FakeUpstream, serve, upstream_config

MSG = [{"role": "user", "content": "Say hello"}]


def _dep(base_url: str, **kw: Any) -> DeploymentConfig:
    d = {"name": "d", "backend": "openai_compatible", "base_url": base_url, "max_retries": 0}
    return DeploymentConfig.model_validate({**d, **kw})


def test_gateway_default_client_relays_json_and_sse_over_one_pooled_connection():
    up = FakeUpstream(reply="one two three")
    with up.serve() as base:
        cfg = upstream_config(
            deployments=[
                {"name": "up", "backend": "openai_compatible", "base_url": base, "max_retries": 0}
            ],  # fmt: skip
            models=[{"name": "gpt-test", "deployments": [{"deployment": "up"}]}],
        )
        with serve(cfg) as gw:  # no http_client: the production client
            key = gw.create_key()
            h = {"authorization": f"Bearer {key}"}
            body = {"model": "gpt-test", "messages": MSG, "max_tokens": 8}
            for _ in range(3):
                r = httpx.post(f"{gw.url}/v1/chat/completions", json=body, headers=h)
                assert r.status_code == 200, r.text
                assert r.json()["choices"][0]["message"]["content"] == "one two three"
            with httpx.stream(
                "POST", f"{gw.url}/v1/chat/completions", json={**body, "stream": True}, headers=h
            ) as s:
                lines = [x for x in s.iter_lines() if x.startswith("data: ")]
            assert lines[-1] == "data: [DONE]"
            text = "".join(
                (c["choices"][0]["delta"].get("content") or "")
                for c in (json.loads(x[6:]) for x in lines[:-1])
                if c.get("choices")
            )
            assert text == "one two three"
    assert len(up.requests) == 4
    assert len(up.connections) == 1  # keep-alive: every request on the same socket


def test_refused_connection_is_cannot_reach_not_a_timeout():
    b = HTTPBackend(_dep(f"http://127.0.0.1:{free_port()}/v1"), upstream_async_client())
    with pytest.raises(BackendFailure) as e:
        asyncio.run(b.chat({"model": "m", "messages": MSG}))
    assert "cannot reach upstream (ConnectError)" in e.value.message
    assert e.value.status == 502


def test_slow_upstream_is_a_timeout():
    up = FakeUpstream(delay_s=2.0)
    with up.serve() as base:
        b = HTTPBackend(_dep(base, timeout_s=0.3), upstream_async_client())
        with pytest.raises(BackendFailure) as e:
            asyncio.run(b.chat({"model": "m", "messages": MSG}))
    assert "timed out (ReadTimeout)" in e.value.message
    assert e.value.status == 504


class _CookieSetter:
    """An upstream that sets a cookie and records the Cookie header it is sent."""

    def __init__(self) -> None:
        self.cookies: list[str | None] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        sent = dict(scope["headers"]).get(b"cookie")
        self.cookies.append(sent.decode() if sent else None)
        body = json.dumps({"choices": [{"message": {"role": "assistant", "content": "x"}}]})
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"set-cookie", b"session=alice-secret; Path=/"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body.encode()})


def test_an_upstream_cookie_never_reaches_the_next_request():
    app = _CookieSetter()
    with serve_in_thread(app, what="cookie upstream") as (url, _):
        client = upstream_async_client()
        b = HTTPBackend(_dep(f"{url}/v1"), client)

        async def twice() -> None:
            await b.chat({"model": "m", "messages": MSG})
            await b.chat({"model": "m", "messages": MSG})
            await client.aclose()

        asyncio.run(twice())
    assert app.cookies == [None, None]
