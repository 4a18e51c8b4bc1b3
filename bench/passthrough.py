"""A bare FastAPI + httpx pass-through: the floor the gateway's added latency is measured against.

One route relays the request body to the upstream with one pooled ``httpx.AsyncClient`` (the
gateway's pool limits) and returns the upstream's bytes unchanged: no keys, quotas, safety,
ledger, parsing or re-encoding.  Served by uvicorn exactly as ``genaiops gateway serve`` serves
the gateway (one process, ``log_level=warning``, no access log), so the difference between the
two is the gateway's own work.  ``bench/gateway_latency.py`` starts it beside the gateway.

    python bench/passthrough.py --upstream http://127.0.0.1:9001/v1 --port 9002
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator

import httpx
import uvicorn
from fastapi import FastAPI, Request, Response


def create_app(upstream: str) -> FastAPI:
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
    a = ap.parse_args()
    uvicorn.run(
        create_app(a.upstream), host=a.host, port=a.port, log_level="warning", access_log=False
    )


if __name__ == "__main__":
    main()
