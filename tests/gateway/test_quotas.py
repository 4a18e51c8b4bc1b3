"""Keys, rate limits and token quotas through a real gateway: reserve at admission, settle after,
release on error and disconnect; never overshoot under concurrency."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import pytest

from gateway.counting import prompt_bound
from gateway.quotas import format_duration
from tests.gateway.support import FakeUpstream, Running, serve, upstream_config

MSG = [{"role": "user", "content": "Say hello"}]
BODY = {"model": "gpt-test", "messages": MSG, "max_tokens": 20}


def quota_buckets(gw: Running) -> dict[str, int]:
    rows = gw.gw.store._conn().execute("SELECT bucket, used FROM counters").fetchall()  # type: ignore[attr-defined]
    return {b: u for b, u in rows}


def _bucket(gw: Running, kind: str) -> int:
    return sum(u for b, u in quota_buckets(gw).items() if f":{kind}:" in b)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.012, "12ms"),
        (6, "6s"),
        (59.0, "59s"),
        (59.2, "1m0s"),
        (60, "1m0s"),
        (63, "1m3s"),
        (3600, "1h0m0s"),
    ],
)
def test_reset_durations_are_go_duration_strings(seconds: float, text: str):
    """OpenAI sends Go ``time.Duration`` strings (``6m0s``): a whole minute is ``1m0s``, never
    ``1m``; a per-minute window that resets in exactly 60 s used to print ``1m``."""
    assert format_duration(seconds) == text


def test_headers_rate_limit_and_quota_exhausted(gateway: Running):
    key = gateway.create_key(rpm=3, tpm=100_000, quota=1_000_000, period="day")
    with gateway.client(key) as c:
        r = c.post("/v1/chat/completions", json=BODY)
        assert r.status_code == 200
        assert r.headers["x-ratelimit-limit-requests"] == "3"
        assert r.headers["x-ratelimit-remaining-requests"] == "2"
        assert r.headers["x-ratelimit-limit-tokens"] == "100000"
        assert r.headers["x-ratelimit-reset-requests"].endswith("s")
        c.post("/v1/chat/completions", json=BODY)
        c.post("/v1/chat/completions", json=BODY)
        r = c.post("/v1/chat/completions", json=BODY)
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(r.headers["retry-after"]) <= 60 and int(r.headers["retry-after-ms"]) > 0

    small = gateway.create_key(quota=60, period="month")
    with gateway.client(small) as c:
        assert c.post("/v1/chat/completions", json=BODY).status_code == 200  # reserves ~32
        r = c.post("/v1/chat/completions", json={**BODY, "max_tokens": 50})
    assert r.status_code == 429
    err = r.json()["error"]
    assert err["code"] == "insufficient_quota" and err["type"] == "insufficient_quota"
    assert "retry-after" in r.headers and "x-ratelimit-remaining-quota-tokens" in r.headers


def test_settles_to_actual_usage_and_releases_on_error(gateway: Running, upstream: FakeUpstream):
    key = gateway.create_key(tpm=10_000, quota=10_000, period="day")
    with gateway.client(key) as c:
        r = c.post("/v1/chat/completions", json=BODY)
        used = r.json()["usage"]["total_tokens"]
        assert _bucket(gateway, "quota") == used  # reservation (prompt + 20) settled to 14
        assert _bucket(gateway, "tpm") == used
        upstream.fail_always = 500
        assert c.post("/v1/chat/completions", json=BODY).status_code == 502
        assert _bucket(gateway, "quota") == used  # the failed call holds nothing
    rows = gateway.gw.ledger.rows()
    assert {r["outcome"] for r in rows} >= {"ok", "error"}


def test_team_limits_apply_across_keys():
    up = FakeUpstream()
    cfg = upstream_config(teams={"search": {"rpm": 2}})
    with serve(cfg, up.client()) as gw:
        a, b = gw.create_key(team="search"), gw.create_key(team="search")
        other = gw.create_key(team="other")
        codes = []
        for k in (a, b, a, other):
            with gw.client(k) as c:
                codes.append(c.post("/v1/chat/completions", json=BODY).status_code)
    assert codes == [200, 200, 429, 200]


def test_thousand_concurrent_requests_never_overshoot_quota():
    quota = 3000
    up = FakeUpstream(delay_s=0.01)
    with serve(upstream_config(), up.client()) as gw:
        key = gw.create_key(quota=quota, period="day")
        peak = 0
        stop = threading.Event()

        def monitor():
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, _bucket(gw, "quota"))
                time.sleep(0.005)

        t = threading.Thread(target=monitor)
        t.start()

        async def go():
            limits = httpx.Limits(max_connections=1000)
            async with httpx.AsyncClient(
                base_url=gw.url,
                limits=limits,
                timeout=120,
                headers={"authorization": f"Bearer {key}"},
            ) as c:
                return await asyncio.gather(
                    *(c.post("/v1/chat/completions", json=BODY) for _ in range(1000))
                )

        try:
            res = asyncio.run(go())
        finally:
            stop.set()
            t.join()
        codes = [r.status_code for r in res]
        ok = [r for r in res if r.status_code == 200]
        assert set(codes) <= {200, 429} and ok
        assert all(
            r.json()["error"]["code"] == "insufficient_quota" for r in res if r.status_code == 429
        )
        final = _bucket(gw, "quota")
        billed = sum(r.json()["usage"]["total_tokens"] for r in ok)
        assert peak <= quota and final <= quota
        assert final == billed  # every reservation settled to the exact usage
        ledger_ok = [r for r in gw.gw.ledger.rows(5000) if r["outcome"] == "ok"]
        assert sum(r["total_tokens"] for r in ledger_ok) == billed and len(ledger_ok) == len(ok)


def test_client_disconnect_mid_stream_settles_within_1s():
    up = FakeUpstream(reply=" ".join(["hello"] * 400), chunk_delay_s=0.01)  # 1 token per word
    with serve(upstream_config(), up.client()) as gw:
        key = gw.create_key(quota=100_000, period="day")
        body = {**BODY, "max_tokens": 400, "stream": True}
        with httpx.Client(base_url=gw.url, headers={"authorization": f"Bearer {key}"}) as c:  # noqa: SIM117
            with c.stream("POST", "/v1/chat/completions", json=body) as r:
                got = 0
                reserved = 0
                for line in r.iter_lines():
                    if line.startswith("data:"):
                        got += 1
                    if got == 2 and not reserved:  # mid-stream: prompt + max_tokens held
                        reserved = _bucket(gw, "quota")
                    if got >= 3:
                        break  # leaving iter_lines closes the connection: a real disconnect
        assert reserved > 400
        t0 = time.perf_counter()
        row = None
        while time.perf_counter() - t0 < 1.0:
            rows = [x for x in gw.gw.ledger.rows() if x["outcome"] == "disconnected"]
            if rows and _bucket(gw, "quota") < reserved:
                row = rows[0]
                break
            time.sleep(0.02)
        assert row is not None, "not settled within 1 s of the disconnect"
        assert 1 <= row["completion_tokens"] < 400
        assert _bucket(gw, "quota") == row["total_tokens"]  # partial usage charged, rest released


def test_client_disconnect_before_answer_releases_within_1s():
    up = FakeUpstream(delay_s=5)
    with serve(upstream_config(), up.client()) as gw:
        key = gw.create_key(quota=100_000, period="day")
        with pytest.raises(httpx.ReadTimeout), gw.client(key) as c:
            c.post("/v1/chat/completions", json=BODY, timeout=0.5)
        t0 = time.perf_counter()
        while _bucket(gw, "quota") != 0 and time.perf_counter() - t0 < 1.0:
            time.sleep(0.02)
        assert _bucket(gw, "quota") == 0
        assert any(r["outcome"] == "disconnected" for r in gw.gw.ledger.rows())


def test_state_store_outage_is_503_not_500():
    """Redis gone: admission fails closed with an OpenAI-shaped 503."""
    from tests.gateway.support import free_port

    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    cfg = upstream_config(state={"backend": "redis", "redis_url": dead})
    with serve(cfg, FakeUpstream().client()) as gw, httpx.Client(base_url=gw.url) as c:
        r = c.post("/v1/chat/completions", json=BODY, headers={"authorization": "Bearer sk-x"})
        assert r.status_code == 503 and r.json()["error"]["code"] == "state_unavailable"
        assert c.get("/healthz").status_code == 503


# -- every billed field counts (issue 7, item 3) ---------------------------------------------------


def _ledger_total(gw: Running, outcomes: tuple[str, ...] = ("ok",)) -> int:
    return sum(r["total_tokens"] for r in gw.gw.ledger.rows(5000) if r["outcome"] in outcomes)


def test_non_text_input_counts_against_quota(gateway: Running, upstream: FakeUpstream):
    """A 500-token/day key: tools, tool_calls, images, names, documents are not free."""
    key = gateway.create_key(quota=500, period="day")
    big_tool = {
        "type": "function",
        "function": {"name": "f", "description": "lorem ipsum " * 75_000},  # ~900 KB
    }
    image = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "lookup", "arguments": json.dumps({"q": "x " * 600})},
    }
    bodies = {
        "tools": {**BODY, "tools": [big_tool]},
        "images": {**BODY, "messages": [{"role": "user", "content": [image]}]},
        "tool_calls": {
            **BODY,
            "messages": [*MSG, {"role": "assistant", "content": None, "tool_calls": [call]}],
        },
        "name": {**BODY, "messages": [{**MSG[0], "name": "n" * 1200}]},
        "documents": {**BODY, "documents": ["a long retrieved passage " * 120]},
    }
    with gateway.client(key) as c:
        for what, body in bodies.items():
            r = c.post("/v1/chat/completions", json=body)
            assert r.status_code == 429, what
            assert r.json()["error"]["code"] == "insufficient_quota", what
        r = c.post(
            "/v1/chat/completions",
            json={
                **BODY,
                "messages": [
                    {"role": "user", "content": [{"type": "file", "file": {"file_data": "JVBER"}}]}
                ],
            },
        )  # noqa: E501
        assert r.status_code == 400 and r.json()["error"]["param"] == "messages.0.content.0.type"
        assert c.post("/v1/chat/completions", json=BODY).status_code == 200
    assert len(upstream.requests) == 1
    assert _ledger_total(gateway) <= 500


# -- zero overshoot under concurrency (issue 7, item 4) --------------------------------------------


def _wait_for_fresh_minute() -> None:
    if time.time() % 60 > 40:
        time.sleep(60 - time.time() % 60 + 0.2)


@pytest.mark.parametrize("limit", ["key_quota", "team_quota", "tpm"])
def test_thousand_concurrent_exact_usage_ledger_stays_within_the_limit(limit: str):
    """The upstream reports exactly what OpenAI would bill and fills max_tokens: the ledger (not
    only the counter) stays within the quota, and the counter equals the ledger."""
    cap = 3000
    teams = {"search": {"quota": cap, "period": "day"}} if limit == "team_quota" else {}
    up = FakeUpstream(reply="word " * 50, exact_usage=True)
    with serve(upstream_config(teams=teams), up.client()) as gw:
        key = gw.create_key(
            team="search",
            **({"quota": cap, "period": "day"} if limit == "key_quota" else {}),
            **({"tpm": cap} if limit == "tpm" else {}),
        )
        if limit == "tpm":
            _wait_for_fresh_minute()

        async def go():
            async with httpx.AsyncClient(
                base_url=gw.url,
                limits=httpx.Limits(max_connections=1000),
                timeout=120,
                headers={"authorization": f"Bearer {key}"},
            ) as c:
                return await asyncio.gather(
                    *(c.post("/v1/chat/completions", json=BODY) for _ in range(1000))
                )

        res = asyncio.run(go())
        ok = [r for r in res if r.status_code == 200]
        assert ok and {r.status_code for r in res} <= {200, 429}
        assert all(r.json()["usage"]["completion_tokens"] == 20 for r in ok)  # max_tokens filled
        ledger = _ledger_total(gw)
        kind = {"key_quota": "quota", "team_quota": "quota", "tpm": "tpm"}[limit]
        assert ledger == sum(r.json()["usage"]["total_tokens"] for r in ok)
        assert ledger <= cap
        assert _bucket(gw, kind) == ledger
        assert gw.gw.metrics.quota_overshoot.labels("gpt-test", "up")._value.get() == 0


def test_usage_above_the_reservation_is_counted_and_reported(upstream: FakeUpstream):
    """An upstream that bills more than the bound (its own tokenizer): the counter gets the
    true number, and the excess shows up in the overshoot metric."""
    upstream.reply = "w " * 40  # 20 words = max_tokens; the fake bills 11 prompt tokens
    with serve(upstream_config(), upstream.client()) as gw:
        key = gw.create_key(quota=10_000, period="day")
        body = {**BODY, "messages": [{"role": "user", "content": "hi"}]}  # bound: 9 tokens
        with gw.client(key) as c:
            r = c.post("/v1/chat/completions", json=body)
            metrics = c.get("/metrics").text
        assert r.json()["usage"]["total_tokens"] == 31  # reserved 9 + 20 = 29
        assert _bucket(gw, "quota") == 31 == _ledger_total(gw)
        series = 'genaiops_gateway_quota_overshoot_tokens_total{deployment="up",model="gpt-test"}'
        assert f"{series} 2.0" in metrics


# -- context window and message cap at admission (issue 7, item 6) ---------------------------------


def test_prompt_over_the_context_window_is_400_before_any_work(upstream: FakeUpstream):
    cfg = upstream_config(max_messages=4)
    cfg.deployment("up").context_window = 100
    with serve(cfg, upstream.client()) as gw:
        key = gw.create_key(quota=100_000, period="day")
        with gw.client(key) as c:
            long = {**BODY, "messages": [{"role": "user", "content": "word " * 200}]}
            r = c.post("/v1/chat/completions", json=long)
            err = r.json()["error"]
            assert r.status_code == 400 and err["code"] == "context_length_exceeded"
            assert err["param"] == "messages" and err["type"] == "invalid_request_error"
            assert "maximum context length is 100 tokens" in err["message"]
            assert f"up to {prompt_bound(long)} tokens" in err["message"]
            many = {**BODY, "messages": MSG * 5}
            r = c.post("/v1/chat/completions", json=many)
            assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
            assert "at most 4" in r.json()["error"]["message"]
            assert c.post("/v1/chat/completions", json=BODY).status_code == 200
        assert len(upstream.requests) == 1  # the refused ones never left the gateway
        assert _bucket(gw, "quota") == _ledger_total(gw)


def test_local_model_refuses_a_huge_prompt_without_touching_the_generator():
    """The 1.9 MB prompt that held SmolLM2's lock for 10 minutes: 400 at admission."""
    from gateway import create_app
    from gateway.config import default_config
    from tests.gateway.support import ADMIN_KEY

    app = create_app(default_config())  # no lifespan: the model is never loaded
    gw = app.state.gateway

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
            r = await c.post(
                "/admin/keys", json={}, headers={"authorization": f"Bearer {ADMIN_KEY}"}
            )
            key = r.json()["key"]
            body = {
                "model": "genaiops-local",
                "messages": [{"role": "user", "content": "word " * 380_000}],
            }  # noqa: E501
            return await c.post(
                "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
            )

    r = asyncio.run(go())
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    assert "8192" in r.json()["error"]["message"]
    local = gw.backends["local-smollm2"]
    assert local.requests_run == 0 and not local._waiting
