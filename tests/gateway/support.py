"""Test doubles at the seams only: a fake OpenAI-compatible upstream (httpx transport or a real
loopback server) and a helper that runs a real gateway under uvicorn on a free loopback port."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn

from gateway import create_app
from gateway.config import GatewayConfig
from gateway.testing import MockUpstream, exact_reply, openai_prompt_tokens
from genaiops.openai_client import free_port  # the suite's one free_port

ADMIN_KEY = "admin-test-key-0123456789"
UPSTREAM = "http://upstream.test/v1"


@dataclass
class FakeUpstream:
    """An OpenAI-compatible upstream: answers ``reply`` (streamed word by word when asked).

    ``fail`` is a queue of status codes to answer before succeeding; ``fail_always`` a status
    for every request; ``delay_s`` a pause before answering; ``requests`` records what came in.
    ``exact_usage``: report usage as OpenAI bills it (cookbook prompt count, reply cut at
    ``max_tokens`` tokens) instead of 11 prompt tokens and one per word.
    """

    reply: str = "Hello from upstream."
    fail: list[int] = field(default_factory=list)
    fail_always: int | None = None
    retry_after: str | None = None
    delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    exact_usage: bool = False
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=self.transport())

    async def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content or b"{}")
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        self.urls.append(str(request.url))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        status = self.fail.pop(0) if self.fail else self.fail_always
        if status:
            h = {"retry-after": self.retry_after} if self.retry_after else {}
            err = {"error": {"message": f"injected {status}", "type": "server_error"}}
            return httpx.Response(status, json=err, headers=h)
        if request.url.path.endswith("/embeddings"):
            inp = body["input"]
            n = 1 if isinstance(inp, str) else len(inp)
            data = [
                {"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]} for i in range(n)
            ]
            return httpx.Response(
                200,
                json={
                    "object": "list",
                    "data": data,
                    "model": "m",
                    "usage": {"prompt_tokens": 3, "total_tokens": 3},
                },
            )
        if self.exact_usage:
            pieces, ct = exact_reply(self.reply, body.get("max_tokens"))
            pt = openai_prompt_tokens(body.get("messages") or [])
        else:
            words = self.reply.split(" ")[: int(body.get("max_tokens") or 10_000)]
            pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
            pt, ct = 11, len(words)
        text = "".join(pieces)
        if body.get("stream"):
            return httpx.Response(
                200,
                stream=_Stream(pieces, self.chunk_delay_s, body, pt),
                headers={"content-type": "text/event-stream"},
            )
        return httpx.Response(
            200,
            json={
                "id": "chatcmpl-up",
                "object": "chat.completion",
                "created": 1,
                "model": "up",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct},
            },
        )


class _Stream(httpx.AsyncByteStream):
    def __init__(self, pieces: list[str], delay: float, body: dict[str, Any], prompt: int = 11):
        self.pieces, self.delay, self.body, self.prompt = pieces, delay, body, prompt
        self.closed = False

    async def __aiter__(self):  # type: ignore[override]
        def ev(obj: Any) -> bytes:
            return f"data: {json.dumps(obj)}\n\n".encode()

        base = {"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1, "model": "up"}
        yield ev(
            {
                **base,
                "choices": [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": ""},
                        "finish_reason": None,
                    }
                ],
            }
        )
        for piece in self.pieces:
            if self.delay:
                await asyncio.sleep(self.delay)
            yield ev(
                {
                    **base,
                    "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
                }
            )
        yield ev({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if (self.body.get("stream_options") or {}).get("include_usage"):
            n, p = len(self.pieces), self.prompt
            yield ev(
                {
                    **base,
                    "choices": [],
                    "usage": {"prompt_tokens": p, "completion_tokens": n, "total_tokens": p + n},
                }
            )
        yield b"data: [DONE]\n\n"

    async def aclose(self) -> None:
        self.closed = True


def upstream_config(**kw: Any) -> GatewayConfig:
    """One alias ``gpt-test`` on an openai_compatible deployment ``up`` (plus extras in ``kw``)."""
    data: dict[str, Any] = {
        "deployments": [
            {
                "name": "up",
                "backend": "openai_compatible",
                "base_url": UPSTREAM,
                "model": "up-model",
                "max_retries": 0,
                "backoff_s": 0.0,
            },
            {
                "name": "up-embed",
                "backend": "openai_compatible",
                "base_url": UPSTREAM,
                "kind": "embeddings",
                "max_retries": 0,
            },
        ],
        "models": [
            {"name": "gpt-test", "deployments": [{"deployment": "up"}]},
            {
                "name": "embed-test",
                "kind": "embeddings",
                "deployments": [{"deployment": "up-embed"}],
            },
        ],
    }
    data.update(kw)
    return GatewayConfig.model_validate(data)


@dataclass
class Running:
    url: str
    app: Any
    server: uvicorn.Server

    @property
    def gw(self) -> Any:
        return self.app.state.gateway

    def admin(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=30
        )

    def create_key(self, **limits: Any) -> str:
        with self.admin() as c:
            r = c.post("/admin/keys", json=limits)
            r.raise_for_status()
            return str(r.json()["key"])

    def client(self, key: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"authorization": f"Bearer {key}"}, timeout=60
        )


@contextmanager
def serve(
    config: GatewayConfig, http_client: httpx.AsyncClient | None = None, **kw: Any
) -> Iterator[Running]:
    """A real gateway (uvicorn, lifespan on) on a free loopback port, in a thread."""
    app = create_app(config, http_client=http_client, **kw)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.time() + 30
    while not server.started:
        if time.time() > deadline or not t.is_alive():
            raise RuntimeError("gateway did not start")
        time.sleep(0.02)
    try:
        yield Running(f"http://127.0.0.1:{port}", app, server)
    finally:
        server.should_exit = True
        t.join(timeout=15)


@contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway ``redis-server`` on a free loopback port; yields its URL."""
    import shutil
    import subprocess

    import pytest

    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed (scripts/setup installs it with apt)")
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if time.time() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def routed_client(targets: dict[str, FakeUpstream]) -> httpx.AsyncClient:
    """One AsyncClient whose requests go to ``targets[host]`` (``http://<host>/v1``)."""

    async def route(req: httpx.Request) -> httpx.Response:
        return await targets[req.url.host].handle(req)

    return httpx.AsyncClient(transport=httpx.MockTransport(route))


def two_deployment_config(weights: tuple[float, float] = (100, 0), **kw: Any) -> GatewayConfig:
    """Alias ``gpt-test`` over deployments ``stable`` and ``canary`` (hosts of the same names)."""
    deps = [
        {"name": n, "backend": "openai_compatible", "base_url": f"http://{n}/v1", "max_retries": 0}
        for n in ("stable", "canary", "mirror")
    ]
    alias: dict[str, Any] = {
        "name": "gpt-test",
        "deployments": [
            {"deployment": "stable", "weight": weights[0]},
            {"deployment": "canary", "weight": weights[1]},
        ],
    }
    alias.update(kw.pop("alias", {}))
    return GatewayConfig.model_validate({"deployments": deps, "models": [alias], **kw})


@contextmanager
def mock_upstream_server(**kw: Any) -> Iterator[str]:
    """``gateway.testing``'s fake upstream on a loopback port (thread); yields its ``/v1`` URL."""
    with MockUpstream(**kw).serve() as url:
        yield url


@dataclass
class GatewayProcess:
    url: str
    proc: Any


@contextmanager
def gateway_processes(
    config_yaml: str, home: Any, n: int = 1, args: tuple[str, ...] = ()
) -> Iterator[list[GatewayProcess]]:
    """``n`` real ``genaiops gateway serve`` processes sharing one config (and its state)."""
    import os
    import subprocess
    import sys

    cfg = home / "gateway.yaml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(config_yaml)
    env = {**os.environ, "GENAIOPS_HOME": str(home), "GENAIOPS_ADMIN_KEY": ADMIN_KEY}
    procs = []
    try:
        for _ in range(n):
            port = free_port()
            p = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "genaiops",
                    "gateway",
                    "serve",
                    "--config",
                    str(cfg),
                    "--port",
                    str(port),
                    *args,
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            procs.append(GatewayProcess(f"http://127.0.0.1:{port}", p))
        for gp in procs:
            deadline = time.time() + 60
            while True:
                try:
                    if httpx.get(gp.url + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if gp.proc.poll() is not None or time.time() > deadline:
                    err = gp.proc.stderr.read().decode() if gp.proc.poll() is not None else ""
                    raise RuntimeError(f"gateway process did not start: {err[-2000:]}")
                time.sleep(0.1)
        yield procs
    finally:
        for gp in procs:
            if gp.proc.poll() is None:
                gp.proc.terminate()
        for gp in procs:
            try:
                gp.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                gp.proc.kill()
                gp.proc.wait()
