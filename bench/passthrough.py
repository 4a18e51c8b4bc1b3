"""A bare FastAPI + httpx pass-through: the floor the gateway's added latency is measured against.

One route relays the request body to the upstream with one pooled ``httpx.AsyncClient`` (the
gateway's pool limits) and returns the upstream's bytes unchanged: no keys, quotas, safety,
ledger, parsing or re-encoding.  Served by uvicorn exactly as ``genaiops gateway serve`` serves
the gateway (one process, ``log_level=warning``, no access log), so the difference between the
two is the gateway's own work.  ``bench/gateway_latency.py`` starts it beside the gateway.

    python bench/passthrough.py --upstream http://127.0.0.1:9001/v1 --port 9002
    python bench/passthrough.py ... --transport aiohttp   # the gateway's own upstream client

``--transport aiohttp`` relays with :func:`genaiops.openai_client.upstream_async_client` (httpx
over aiohttp, what the gateway uses), so the gateway's own work can be told apart from the
client's: the issue-9 yardstick stays the plain httpx pass-through.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator

import httpx
import uvicorn
from fastapi import FastAPI, Request, Response


def create_app(upstream: str, transport: str = "httpx") -> FastAPI:
    if transport == "aiohttp":
        from genaiops.openai_client import upstream_async_client

        client = upstream_async_client()
    else:
        client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=512, max_keepalive_connections=128),
            timeout=httpx.Timeout(60.0, connect=5.0),
        )
    url = upstream.rstrip("/") + "/chat/completions"

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await client.aclose()

    app = FastAPI(lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        r = await client.post(
            url, content=await request.body(), headers={"content-type": "application/json"}
        )
        return Response(r.content, status_code=r.status_code, media_type="application/json")

    return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--upstream", required=True, help="the upstream's /v1 base URL")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9002)
    ap.add_argument("--transport", choices=("httpx", "aiohttp"), default="httpx")
    a = ap.parse_args()
    uvicorn.run(
        create_app(a.upstream, a.transport),
        host=a.host,
        port=a.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
