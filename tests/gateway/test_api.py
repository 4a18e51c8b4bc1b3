"""The OpenAI contract: the official SDK against a real gateway on loopback, and error shapes."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.gateway.support import ADMIN_KEY, FakeUpstream, Running

MSG = [{"role": "user", "content": "Say hello"}]


def sdk(gw: Running, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0, timeout=30)


def test_openai_sdk_chat_stream_embeddings_models(gateway: Running, upstream: FakeUpstream):
    key = gateway.create_key(rpm=100, tpm=100_000)
    client = sdk(gateway, key)

    r = client.chat.completions.create(model="gpt-test", messages=MSG, max_tokens=20)
    assert r.choices[0].message.content == "Hello from upstream."
    assert r.model == "gpt-test" and r.usage and r.usage.total_tokens == r.usage.prompt_tokens + 3
    # the gateway forwards the upstream model name and sets max_tokens explicitly
    assert upstream.requests[-1]["model"] == "up-model"
    assert upstream.requests[-1]["max_tokens"] == 20

    chunks = list(
        client.chat.completions.create(
            model="gpt-test",
            messages=MSG,
            max_tokens=20,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from upstream."
    assert chunks[-1].choices == [] and chunks[-1].usage and chunks[-1].usage.completion_tokens == 3
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"

    # without include_usage no chunk has empty choices (clients index choices[0])
    plain = list(client.chat.completions.create(model="gpt-test", messages=MSG, stream=True))
    assert all(c.choices for c in plain)

    e = client.embeddings.create(model="embed-test", input=["a", "b"])
    assert len(e.data) == 2 and e.data[1].index == 1

    models = {m.id for m in client.models.list()}
    assert models == {"gpt-test", "embed-test"}
    assert client.models.retrieve("gpt-test").id == "gpt-test"


def test_sdk_error_mapping(gateway: Running, upstream: FakeUpstream):
    key = gateway.create_key(rpm=100, tpm=100_000)
    with pytest.raises(openai.AuthenticationError) as ei:
        sdk(gateway, "sk-gw-wrong").chat.completions.create(model="gpt-test", messages=MSG)
    assert ei.value.code == "invalid_api_key"
    with pytest.raises(openai.NotFoundError) as nf:
        sdk(gateway, key).chat.completions.create(model="nope", messages=MSG)
    assert nf.value.code == "model_not_found" and nf.value.param == "model"
    with pytest.raises(openai.BadRequestError):
        sdk(gateway, key).chat.completions.create(model="gpt-test", messages=MSG, temperature=9)
    with pytest.raises(openai.BadRequestError):
        sdk(gateway, key).chat.completions.create(model="gpt-test", messages=[])
    with pytest.raises(openai.PermissionDeniedError):
        openai.OpenAI(base_url=gateway.url + "/admin", api_key=key, max_retries=0).get(
            "/keys", cast_to=object
        )
    upstream.fail_always = 503
    with pytest.raises(openai.APIStatusError) as up:
        sdk(gateway, key).chat.completions.create(model="gpt-test", messages=MSG)
    assert up.value.status_code == 502
    upstream.fail_always = None
    small = gateway.create_key(rpm=1)
    sdk(gateway, small).chat.completions.create(model="gpt-test", messages=MSG)
    with pytest.raises(openai.RateLimitError) as rl:
        sdk(gateway, small).chat.completions.create(model="gpt-test", messages=MSG)
    assert rl.value.response.headers["retry-after"]
    assert rl.value.response.headers["x-ratelimit-remaining-requests"] == "0"


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b"{not json", {"content-type": "application/json"}, 400),
        (b"[1, 2]", {"content-type": "application/json"}, 400),
        (b'{"model": 3, "messages": "x"}', {"content-type": "application/json"}, 400),
        (b'{"model": "gpt-test", "messages": [{"role": "pirate", "content": "x"}]}', {}, 400),
        (b'{"model": "gpt-test", "messages": [{"role": "user", "content": "x"}], "n": 2}', {}, 400),
        (b'{"model": "gpt-test", "messages": [{"role": "user"}], "max_tokens": 99999999}', {}, 400),
        (
            b'{"model": "gpt-test", "messages": [{"role": "user", "content": "x"}], '
            b'"max_tokens": "many"}',
            {},
            400,
        ),
        (b"x" * 3_000_000, {"content-type": "application/json"}, 413),
    ],
)
def test_bad_input_is_4xx_openai_shaped(gateway: Running, body: bytes, headers: dict, status: int):
    key = gateway.create_key()
    with gateway.client(key) as c:
        r = c.post("/v1/chat/completions", content=body, headers=headers)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) >= {"message", "type", "param", "code"}


def test_oversized_chunked_body_is_413(gateway: Running):
    key = gateway.create_key()

    def gen():
        for _ in range(40):
            yield b"x" * 100_000

    with gateway.client(key) as c:
        r = c.post("/v1/chat/completions", content=gen())
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"


def test_auth_forms_and_revocation(gateway: Running):
    key = gateway.create_key(name="t")
    body = {"model": "gpt-test", "messages": MSG}
    with httpx.Client(base_url=gateway.url) as c:
        assert c.post("/v1/chat/completions", json=body).status_code == 401
        assert (
            c.post("/v1/chat/completions", json=body, headers={"api-key": key}).status_code == 200
        )
        with gateway.admin() as admin:
            listed = admin.get("/admin/keys").json()["data"]
            assert key not in json.dumps(listed)  # only id and prefix, never the secret
            kid = next(k["id"] for k in listed if k["name"] == "t")
            assert admin.delete(f"/admin/keys/{kid}").json()["revoked"] is True
        import time

        time.sleep(1.1)  # key cache TTL
        r = c.post("/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"})
        assert r.status_code == 401
        r = c.get("/admin/keys", headers={"authorization": f"Bearer {key}"})
        assert r.status_code == 403
        assert c.get("/admin/keys").status_code == 401
        r = c.get("/admin/keys", headers={"authorization": f"Bearer {ADMIN_KEY}"})
        assert r.status_code == 200
    # no key material in the ledger
    rows = gateway.gw.ledger.rows()
    assert rows and key not in json.dumps(rows)


def test_unknown_route_and_method_are_openai_shaped(gateway: Running):
    with httpx.Client(base_url=gateway.url) as c:
        r = c.get("/v1/nothing")
        assert r.status_code == 404 and "error" in r.json()
        r = c.get("/v1/chat/completions")
        assert r.status_code == 405 and "error" in r.json()


def test_health_and_metrics(gateway: Running):
    key = gateway.create_key()
    with gateway.client(key) as c:
        c.post(
            "/v1/chat/completions", json={"model": "gpt-test", "messages": MSG}
        ).raise_for_status()
        assert c.get("/healthz").json()["status"] == "ok"
        m = c.get("/metrics").text
    assert 'genaiops_gateway_tokens_total{deployment="up",kind="completion"' in m
    assert "genaiops_gateway_requests_total" in m


def test_stream_broken_mid_way_surfaces_as_sdk_error():
    """An upstream stream that breaks after the first bytes ends with an SSE ``error`` event,
    which the SDK raises; the ledger records the error and the partial usage."""
    import asyncio

    from tests.gateway.support import serve, upstream_config

    class Broken(httpx.AsyncByteStream):
        async def __aiter__(self):
            yield b'data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m",'
            yield b'"choices":[{"index":0,"delta":{"content":"partial"},"finish_reason":null}]}\n\n'
            await asyncio.sleep(0.01)
            raise httpx.ReadError("connection reset")

    def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=Broken(), headers={"content-type": "text/event-stream"})

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    with serve(upstream_config(safety={"enabled": False}), client) as gw:
        key = gw.create_key()
        stream = sdk(gw, key).chat.completions.create(model="gpt-test", messages=MSG, stream=True)
        with pytest.raises(openai.APIError, match="stream broke"):
            for _ in stream:
                pass
        row = gw.gw.ledger.rows()[0]
    assert row["outcome"] == "error" and row["completion_tokens"] == 1


def test_keys_never_reach_the_logs(gateway: Running, caplog: pytest.LogCaptureFixture):
    import logging

    key = gateway.create_key()
    with caplog.at_level(logging.DEBUG):
        with gateway.client(key) as c:
            c.post("/v1/chat/completions", json={"model": "gpt-test", "messages": MSG})
            c.post("/v1/chat/completions", json={"model": "nope", "messages": MSG})
        with httpx.Client(base_url=gateway.url) as c:
            c.post("/v1/chat/completions", json={}, headers={"api-key": key + "x"})
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "request req_" in text  # the request log line is there ...
    assert key not in text and key[10:] not in text  # ... with the key id, never the secret


def test_admin_errors_map_to_sdk_exceptions():
    from tests.gateway.support import routed_client, serve, two_deployment_config

    ups = {n: FakeUpstream() for n in ("stable", "canary", "mirror")}
    with serve(two_deployment_config(), routed_client(ups)) as gw:
        admin = openai.OpenAI(base_url=gw.url + "/admin", api_key=ADMIN_KEY, max_retries=0)
        admin.post("/rollouts/gpt-test", body={"candidate": "canary"}, cast_to=object)
        with pytest.raises(openai.ConflictError):  # 409: one rollout per alias at a time
            admin.post("/rollouts/gpt-test", body={"candidate": "canary"}, cast_to=object)
        with pytest.raises(openai.BadRequestError):  # candidate is already stable
            admin.post("/rollouts/gpt-test/rollback", body={}, cast_to=object)
            admin.post("/rollouts/gpt-test", body={"candidate": "stable"}, cast_to=object)
        with pytest.raises(openai.NotFoundError):
            admin.post("/rollouts/other/promote", body={}, cast_to=object)


def test_upstream_error_event_mid_stream_is_passed_on():
    from tests.gateway.support import serve, upstream_config

    body = (
        b'data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m",'
        b'"choices":[{"index":0,"delta":{"content":"partial"},"finish_reason":null}]}\n\n'
        b'data: {"error": {"message": "model overloaded", "type": "server_error"}}\n\n'
    )

    def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    with serve(upstream_config(safety={"enabled": False}), client) as gw:
        stream = sdk(gw, gw.create_key()).chat.completions.create(
            model="gpt-test", messages=MSG, stream=True
        )
        with pytest.raises(openai.APIError, match="model overloaded"):
            for _ in stream:
                pass
