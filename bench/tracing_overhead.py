"""Tracing's cost: gateway CPU per request with tracing off vs on (SDK in-memory exporter).

Two gateways in this process, on the same in-process mock upstream (``gateway.testing``,
``httpx.MockTransport``), driven over ``httpx.ASGITransport`` (no sockets: the figure is the
Python work of a request, not loopback scheduling): one built with tracing off (no ASGI tracing
middleware, no-op spans), one with tracing on (the OpenTelemetry server span, safety, quota and
upstream spans, ``traceparent`` injected; a ``BatchSpanProcessor`` into an
``InMemorySpanExporter``, cleared after each round), and a third like the second less the
server-span middleware (what the ASGI instrumentation costs).  Rounds alternate off / on / bare
so load drift hits all alike; the figure is process CPU time (``time.process_time``) per
request, median of rounds.
Also the cost of one ``genaiops.tracing.span`` block off and on (the per-span price flows pay).

    python bench/tracing_overhead.py              # prints a markdown table; --n 400 --rounds 7
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from typing import Any

import _common  # noqa: F401  (puts the repo on sys.path)
import httpx
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway import create_app
from gateway.config import GatewayConfig
from gateway.testing import MockUpstream
from genaiops import tracing

BODY = {"model": "gpt-test", "messages": [{"role": "user", "content": "Say hello."}]}
CONFIG = {
    "deployments": [
        {"name": "up", "backend": "openai_compatible", "base_url": "http://up.test/v1",
         "max_retries": 0},
    ],
    "models": [{"name": "gpt-test", "deployments": [{"deployment": "up"}]}],
}  # fmt: skip


async def _client(app: Any) -> tuple[httpx.AsyncClient, Any]:
    gw = app.state.gateway
    secret, _ = await gw.keys.create(name="bench")
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://gw.test",
        headers={"authorization": f"Bearer {secret}"},
    )
    return client, gw


async def _round(client: httpx.AsyncClient, n: int) -> float:
    """CPU µs per request over ``n`` sequential requests."""
    c0 = time.process_time()
    for _ in range(n):
        r = await client.post("/v1/chat/completions", json={**BODY, "max_tokens": 8})
        assert r.status_code == 200, r.text
    return (time.process_time() - c0) / n * 1e6


def _span_cost(n: int = 100_000) -> float:
    """CPU ns per ``with tracing.span(...)`` block (process time: the export thread counts)."""
    t0 = time.process_time()
    for _ in range(n):
        with tracing.span("bench", {"k": 1}):
            pass
    return (time.process_time() - t0) / n * 1e9


async def main(n: int, rounds: int) -> dict[str, list[float]]:
    cfg = GatewayConfig.model_validate(CONFIG)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    upstream = MockUpstream(reply="Hello from the mock upstream.")
    tracing.reset()
    off_app = create_app(cfg, http_client=upstream.client())
    off, _ = await _client(off_app)
    tracing.configure(provider)
    on_app = create_app(cfg, http_client=upstream.client())
    on, _ = await _client(on_app)
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    bare_app = create_app(cfg, http_client=upstream.client())
    FastAPIInstrumentor.uninstrument_app(
        bare_app
    )  # the child spans only: what the middleware costs
    bare, _ = await _client(bare_app)
    out: dict[str, list[float]] = {
        "off": [], "on": [], "bare": [], "span_off_ns": [], "span_on_ns": [],
        "spans_per_request": [],
    }  # fmt: skip
    await _round(off, 50)  # warm both
    await _round(on, 50)
    await _round(bare, 50)
    provider.force_flush()
    exporter.clear()
    for _ in range(rounds):
        tracing.reset()
        out["off"].append(await _round(off, n))
        out["span_off_ns"].append(_span_cost())
        tracing.configure(provider)
        out["on"].append(await _round(on, n))
        provider.force_flush()
        out["spans_per_request"].append(len(exporter.get_finished_spans()) / n)
        exporter.clear()
        out["bare"].append(await _round(bare, n))
        provider.force_flush()
        exporter.clear()
        out["span_on_ns"].append(_span_cost(2_000))  # within the batch queue (2048)
        provider.force_flush()
        exporter.clear()
    tracing.reset()
    await off.aclose()
    await on.aclose()
    await bare.aclose()
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=400)
    p.add_argument("--rounds", type=int, default=7)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as home:
        os.environ["GENAIOPS_HOME"] = home  # state and ledger of the two gateways
        res = asyncio.run(main(a.n, a.rounds))
    m = {k: statistics.median(v) for k, v in res.items()}
    print(f"machine: {_common.machine()}")
    print(f"command: python bench/tracing_overhead.py --n {a.n} --rounds {a.rounds}")
    print("| tracing | gateway CPU µs/request (median of rounds) | one span block, CPU ns |")
    print("|---|---|---|")
    print(f"| off (default) | {m['off']:.0f} | {m['span_off_ns']:.0f} |")
    print(f"| on, in-memory exporter | {m['on']:.0f} | {m['span_on_ns']:.0f} |")
    print(f"| on, without the ASGI server span | {m['bare']:.0f} |  |")
    print(f"added: {m['on'] - m['off']:.0f} µs/request ({m['on'] / m['off']:.2f}x); "
          f"{m['spans_per_request']:.1f} spans per request")  # fmt: skip
