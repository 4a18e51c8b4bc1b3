"""The gateway's pass-through hot path: raw ``httpx`` vs the ``openai`` SDK over the same client.

Why it exists: the core client seam (``genaiops.openai_client``) puts every OpenAI-compatible
call on the SDK, except the gateway's backend, which relays upstream JSON on raw
``httpx.AsyncClient``. This measures, in one run, the client-side cost per non-streaming chat
call of three ways to relay one completion as a dict:

* ``httpx``   — ``client.send(request)`` + ``response.json()`` (what ``HTTPBackend.chat`` does);
* ``sdk raw`` — ``AsyncOpenAI.chat.completions.with_raw_response.create`` + ``.json()``
  (the SDK's request building and retry wrapper, no pydantic model);
* ``sdk``     — ``AsyncOpenAI.chat.completions.create`` + ``.model_dump()`` (the usual SDK use).

The upstream is ``gateway.testing``'s mock in its own process on loopback (0 ms service time);
rounds alternate between the three so load drift hits each alike.

    python bench/client_seam.py              # prints a markdown table; --n 2000 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import openai

from genaiops.openai_client import free_port

BODY = {"model": "m", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 16}


async def _main(n: int, rounds: int) -> dict[str, list[float]]:
    port = free_port()
    up = subprocess.Popen([sys.executable, "-m", "gateway.testing", "--port", str(port)])
    base = f"http://127.0.0.1:{port}/v1"
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            for _ in range(200):
                try:
                    await client.get(f"http://127.0.0.1:{port}/")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            sdk = openai.AsyncOpenAI(base_url=base, api_key="k", http_client=client, max_retries=2)

            async def raw_httpx() -> dict[str, Any]:
                req = client.build_request("POST", f"{base}/chat/completions", json=BODY)
                resp = await client.send(req)
                return dict(resp.json())

            async def sdk_raw() -> dict[str, Any]:
                r = await sdk.chat.completions.with_raw_response.create(**BODY)  # type: ignore[call-overload]
                return dict(r.http_response.json())

            async def sdk_parsed() -> dict[str, Any]:
                r = await sdk.chat.completions.create(**BODY)  # type: ignore[call-overload]
                return dict(r.model_dump())

            ways: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {
                "httpx": raw_httpx,
                "sdk raw": sdk_raw,
                "sdk": sdk_parsed,
            }
            for fn in ways.values():  # warm-up: connections, imports, caches
                for _ in range(50):
                    await fn()
            out: dict[str, list[float]] = {k: [] for k in ways}
            for _ in range(rounds):
                for name, fn in ways.items():
                    t0 = time.perf_counter()
                    for _ in range(n):
                        await fn()
                    out[name].append((time.perf_counter() - t0) / n * 1e6)
            return out
    finally:
        up.terminate()
        up.wait(timeout=10)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000, help="calls per way per round")
    p.add_argument("--rounds", type=int, default=5)
    a = p.parse_args()
    res = asyncio.run(_main(a.n, a.rounds))
    base = statistics.median(res["httpx"])
    print(f"{a.rounds} rounds x {a.n} sequential calls per way; median of the rounds\n")
    print("| way | µs per call (median) | min | vs httpx |")
    print("|---|---|---|---|")
    for name, us in res.items():
        med = statistics.median(us)
        print(f"| {name} | {med:.0f} | {min(us):.0f} | {med / base:.2f}x |")


if __name__ == "__main__":
    main()
