"""Backends and routing: retries honouring Retry-After, fallback order, Azure OpenAI wire format,
timeouts, a gateway whose upstream is another gateway over real HTTP, the local backend."""

from __future__ import annotations

import asyncio
import itertools
import time

import httpx
import openai
import pytest

from gateway.backends import BackendFailure, HTTPBackend, LocalChatBackend
from gateway.config import DeploymentConfig
from gateway.errors import InvalidRequest
from genaiops.providers import get_local_generator
from tests.gateway.support import FakeUpstream, serve, upstream_config

MSG = [{"role": "user", "content": "Say hello"}]
BODY = {"model": "x", "messages": MSG, "max_tokens": 5}


def _dep(**kw) -> DeploymentConfig:
    base = {
        "name": "d",
        "backend": "openai_compatible",
        "base_url": "http://up.test/v1",
        "backoff_s": 0.01,
    }
    return DeploymentConfig.model_validate({**base, **kw})


def test_retries_429_honouring_retry_after_then_succeeds():
    up = FakeUpstream(fail=[429, 503], retry_after="0.3")
    b = HTTPBackend(_dep(max_retries=2), up.client())
    t0 = time.perf_counter()
    out = asyncio.run(b.chat(BODY))
    assert out["choices"][0]["message"]["content"] == "Hello from upstream."
    assert len(up.requests) == 3
    assert time.perf_counter() - t0 >= 0.6  # waited Retry-After twice, not the 10 ms backoff


def test_retry_after_is_capped_and_exhaustion_is_retryable_failure():
    up = FakeUpstream(fail_always=500, retry_after="3600")
    b = HTTPBackend(_dep(max_retries=1, max_retry_after_s=0.05), up.client())
    t0 = time.perf_counter()
    with pytest.raises(BackendFailure) as ei:
        asyncio.run(b.chat(BODY))
    assert ei.value.retryable and ei.value.upstream_status == 500
    assert len(up.requests) == 2 and time.perf_counter() - t0 < 2


def test_client_errors_pass_through_without_retry():
    up = FakeUpstream(fail=[422])
    b = HTTPBackend(_dep(max_retries=3), up.client())
    with pytest.raises(InvalidRequest) as ei:
        asyncio.run(b.chat(BODY))
    assert ei.value.status == 422 and len(up.requests) == 1


def test_timeout_becomes_504_failure():
    up = FakeUpstream(delay_s=0.5)

    def handler(req: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=req)

    b = HTTPBackend(_dep(max_retries=1), httpx.AsyncClient(transport=httpx.MockTransport(handler)))
    with pytest.raises(BackendFailure) as ei:
        asyncio.run(b.chat(BODY))
    assert ei.value.status == 504 and ei.value.retryable
    assert up.requests == []


def test_azure_openai_url_api_key_and_entra(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AZ_KEY", "azkey123")
    monkeypatch.setenv("AZ_TOKEN", "eyJtoken")
    up = FakeUpstream()
    cfg = dict(
        backend="azure_openai",
        base_url="https://res.openai.azure.com",
        azure_deployment="gpt-4o-prod",
        api_version="2024-10-21",
    )
    asyncio.run(HTTPBackend(_dep(**cfg, api_key_env="AZ_KEY"), up.client()).chat(BODY))
    assert up.urls[-1] == (
        "https://res.openai.azure.com/openai/deployments/gpt-4o-prod/"
        "chat/completions?api-version=2024-10-21"
    )
    assert up.headers[-1]["api-key"] == "azkey123" and "model" not in up.requests[-1]
    asyncio.run(HTTPBackend(_dep(**cfg, entra_token_env="AZ_TOKEN"), up.client()).chat(BODY))
    assert up.headers[-1]["authorization"] == "Bearer eyJtoken"
    assert "api-key" not in up.headers[-1]


def test_fallback_order_serves_from_next_deployment():
    primary = FakeUpstream(fail_always=503)
    backup = FakeUpstream(reply="from backup")

    async def route(req: httpx.Request) -> httpx.Response:
        target = primary if req.url.host == "primary.test" else backup
        return await target.handle(req)

    cfg = upstream_config(
        deployments=[
            {
                "name": "p",
                "backend": "openai_compatible",
                "base_url": "http://primary.test/v1",
                "max_retries": 1,
                "backoff_s": 0,
            },
            {"name": "b", "backend": "openai_compatible", "base_url": "http://backup.test/v1"},
        ],
        models=[{"name": "gpt-test", "deployments": [{"deployment": "p"}], "fallback": ["b"]}],
    )
    client = httpx.AsyncClient(transport=httpx.MockTransport(route))
    with serve(cfg, client) as gw:
        key = gw.create_key()
        with gw.client(key) as c:
            r = c.post("/v1/chat/completions", json={"model": "gpt-test", "messages": MSG})
            assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == (
                "from backup"
            )
            s = c.post(
                "/v1/chat/completions", json={"model": "gpt-test", "messages": MSG, "stream": True}
            )
            assert "from backup" in s.text.replace('"', "") or "backup" in s.text
        assert len(primary.requests) == 4  # two requests x (1 try + 1 retry)
        rows = gw.gw.ledger.rows()
    served = [r for r in rows if r["outcome"] == "ok"]
    failed = [r for r in rows if r["outcome"] == "attempt_error"]
    assert {r["deployment"] for r in served} == {"b"} and {r["deployment"] for r in failed} == {"p"}


def test_gateway_behind_gateway_over_real_http(tmp_path, monkeypatch: pytest.MonkeyPatch):
    """Gateway A's upstream is gateway B (openai_compatible) on loopback; B's upstream is fake."""
    up = FakeUpstream(reply="deep answer here")
    with serve(
        upstream_config(
            state={"path": str(tmp_path / "b.db"), "ledger_path": str(tmp_path / "b-ledger.db")}
        ),
        up.client(),
    ) as inner:
        inner_key = inner.create_key()
        monkeypatch.setenv("INNER_KEY", inner_key)
        outer_cfg = upstream_config(
            deployments=[
                {
                    "name": "inner",
                    "backend": "openai_compatible",
                    "base_url": inner.url + "/v1",
                    "model": "gpt-test",
                    "api_key_env": "INNER_KEY",
                },
                {
                    "name": "inner-embed",
                    "backend": "openai_compatible",
                    "kind": "embeddings",
                    "base_url": inner.url + "/v1",
                    "model": "embed-test",
                    "api_key_env": "INNER_KEY",
                },
            ],
            models=[
                {"name": "outer", "deployments": [{"deployment": "inner"}]},
                {
                    "name": "outer-embed",
                    "kind": "embeddings",
                    "deployments": [{"deployment": "inner-embed"}],
                },
            ],
            state={"path": str(tmp_path / "a.db"), "ledger_path": str(tmp_path / "a-ledger.db")},
        )
        with serve(outer_cfg) as outer:  # its own real httpx.AsyncClient
            key = outer.create_key(tpm=10_000)
            cli = openai.OpenAI(base_url=outer.url + "/v1", api_key=key, max_retries=0)
            r = cli.chat.completions.create(model="outer", messages=MSG, max_tokens=10)
            assert r.choices[0].message.content == "deep answer here" and r.model == "outer"
            stream = cli.chat.completions.create(
                model="outer", messages=MSG, stream=True, stream_options={"include_usage": True}
            )
            chunks = list(stream)
            assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
                "deep answer here"
            )
            assert chunks[-1].usage is not None
            e = cli.embeddings.create(model="outer-embed", input="x")
            assert len(e.data[0].embedding) == 3
            by_dep = {r["deployment"]: r["requests"] for r in outer.gw.ledger.summary("deployment")}
            assert by_dep == {"inner": 2, "inner-embed": 1}
        by_model = {r["model"]: r["requests"] for r in inner.gw.ledger.summary("model")}
        assert by_model == {"gpt-test": 2, "embed-test": 1}


def test_local_backend_batches_concurrent_requests():
    """Concurrent chats are decoded together by the continuous batcher (SmolLM2 on CPU)."""
    b = LocalChatBackend("local", batch_size=8)
    sched = get_local_generator().batcher()
    steps, rows = sched.steps, sched.rows_decoded

    async def go():
        bodies = [
            {
                "model": "genaiops-local",
                "max_tokens": 4,
                "messages": [{"role": "user", "content": f"Count to {i}"}],
            }
            for i in range(4)
        ]
        out = await asyncio.gather(*(b.chat(x) for x in bodies))
        chunks = [c async for c in b.stream(bodies[0])]
        await b.aclose()
        return out, chunks

    out, chunks = asyncio.run(go())
    assert len(out) == 4 and all(o["choices"][0]["message"]["content"] for o in out)
    assert all(o["usage"]["completion_tokens"] <= 4 for o in out)
    assert b.requests_run == 5
    # at least one decoding step ran more than one request (serial would be one row per step)
    assert sched.rows_decoded - rows > sched.steps - steps
    assert chunks[-1]["usage"]["completion_tokens"] >= 1
    assert chunks[-2]["choices"][0]["finish_reason"] in ("stop", "length")


@pytest.mark.slow
def test_default_config_serves_embedded_models():
    """No config: ``genaiops-local`` (SmolLM2) and ``genaiops-embed`` (MiniLM) via the SDK."""
    from gateway.config import default_config

    with serve(default_config()) as gw:
        key = gw.create_key()
        cli = openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0, timeout=120)
        r = cli.chat.completions.create(model="genaiops-local", messages=MSG, max_tokens=4)
        assert r.choices[0].message.content and r.usage and r.usage.completion_tokens <= 4
        pieces = [
            c.choices[0].delta.content or ""
            for c in cli.chat.completions.create(
                model="genaiops-local", messages=MSG, max_tokens=4, stream=True
            )
            if c.choices
        ]
        assert "".join(pieces)
        e = cli.embeddings.create(model="genaiops-embed", input=["hello", "world"])
        assert len(e.data) == 2 and len(e.data[0].embedding) == 384


def test_azure_entra_credential_tokens_are_cached_and_refreshed():
    """``entra_auth``: tokens come from an azure.core TokenCredential (the azure-identity seam)."""
    from azure.core.credentials import AccessToken
    from azure.core.exceptions import ClientAuthenticationError

    class Credential:
        def __init__(self) -> None:
            self.calls: list[str] = []
            self.fail = False

        def get_token(self, *scopes: str, **kw) -> AccessToken:
            if self.fail:
                raise ClientAuthenticationError("no identity")
            self.calls.append(scopes[0])
            # the second token expires soon, so the third call must refresh
            return AccessToken(
                f"tok{len(self.calls)}", int(time.time()) + (3600 if len(self.calls) == 1 else 60)
            )

    up = FakeUpstream()
    cred = Credential()
    dep = _dep(
        backend="azure_openai",
        base_url="https://res.openai.azure.com",
        azure_deployment="gpt",
        entra_auth=True,
    )
    b = HTTPBackend(dep, up.client(), credential=cred)

    async def go():
        await b.chat(BODY)
        await b.chat(BODY)  # cached
        b._token = (b._token[0], time.time() + 10)  # about to expire
        await b.chat(BODY)  # refreshed

    asyncio.run(go())
    assert [h["authorization"] for h in up.headers] == ["Bearer tok1", "Bearer tok1", "Bearer tok2"]
    assert cred.calls == ["https://cognitiveservices.azure.com/.default"] * 2
    cred.fail = True
    b._token = None
    with pytest.raises(BackendFailure, match="Entra ID token"):
        asyncio.run(b.chat(BODY))


@pytest.mark.parametrize(
    "payload", [b"not json", b"[1]", b'{"choices": []}', b'{"choices": [{"message": "x"}]}']
)
def test_malformed_upstream_answers_are_502_not_500(payload: bytes):
    def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=payload, headers={"content-type": "application/json"})

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    with serve(upstream_config(), client) as gw, gw.client(gw.create_key()) as c:
        r = c.post("/v1/chat/completions", json={**BODY, "model": "gpt-test"})
    assert r.status_code == 502 and r.json()["error"]["type"] == "upstream_error"


def test_circuit_breaker_demotes_a_failing_deployment_then_closes():
    primary = FakeUpstream(fail_always=503)
    backup = FakeUpstream(reply="from backup")
    cfg = upstream_config(
        deployments=[
            {
                "name": "p",
                "backend": "openai_compatible",
                "base_url": "http://primary.test/v1",
                "max_retries": 1,
                "backoff_s": 0,
                "breaker_failures": 2,
                "breaker_cooldown_s": 0.5,
            },
            {"name": "b", "backend": "openai_compatible", "base_url": "http://backup.test/v1"},
        ],
        models=[{"name": "gpt-test", "deployments": [{"deployment": "p"}], "fallback": ["b"]}],
    )
    from tests.gateway.support import routed_client

    client = routed_client({"primary.test": primary, "backup.test": backup})
    body = {"model": "gpt-test", "messages": MSG}
    with serve(cfg, client) as gw, gw.client(gw.create_key()) as c:
        for _ in range(5):
            assert c.post("/v1/chat/completions", json=body).status_code == 200
        assert len(primary.requests) == 4  # 2 requests x 2 tries, then the circuit is open
        rows = gw.gw.ledger.rows()
        assert sum(r["error_code"] == "circuit_open" for r in rows) == 3  # misses still count
        primary.fail_always = None
        time.sleep(0.6)  # cool-down over: tried again, and a success closes the circuit
        r = c.post("/v1/chat/completions", json=body)
        assert r.json()["choices"][0]["message"]["content"] == "Hello from upstream."
        assert not gw.gw.router.is_open("p")


def test_backends_warm_up_one_after_another_and_a_failing_one_leaves_the_rest_warm(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two local models loading at once raced in transformers' lazy imports (the embedder's
    warm-up failed with "cannot import name 'AutoTokenizer'"): warm-ups run in turn."""
    from fastapi.testclient import TestClient

    import gateway.app as app_module
    from tests.gateway.support import two_deployment_config

    spans: list[tuple[str, float, float]] = []
    real = app_module.build_backends

    def build(config, http):
        backends = real(config, http)
        for name, b in backends.items():

            async def warm(name: str = name) -> None:
                t0 = time.perf_counter()
                await asyncio.sleep(0.1)
                spans.append((name, t0, time.perf_counter()))
                if name == "stable":
                    raise RuntimeError("no model here")

            b.warm_up = warm
        return backends

    monkeypatch.setattr(app_module, "build_backends", build)
    app = app_module.create_app(two_deployment_config())
    with TestClient(app):
        deadline = time.monotonic() + 10
        while len(spans) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert sorted(s[0] for s in spans) == ["canary", "mirror", "stable"]
    spans.sort(key=lambda s: s[1])
    for (_, _, end), (_, start, _) in itertools.pairwise(spans):
        assert start >= end  # never two at once
