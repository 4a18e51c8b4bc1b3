"""Shared state on PostgreSQL: counter admission two ways, and the gateway's per-request cost.

Part 1, counters (in this process, the store API directly): ``C`` concurrent tasks each admit
one request into two shared buckets (a key's TPM and its team's TPM, the hot rows of a real
quota) and settle it, ``N`` times in all, on SQLite, Redis, PostgreSQL with the conditional
upsert (``counter_lock="update"``) and PostgreSQL with ``SELECT .. FOR UPDATE``.  Reported:
admissions/s, p50/p99 of admit + settle, and CPU per admission of this process and of the
database server (PostgreSQL: postmaster + backends from /proc; Redis: ``INFO cpu``).

Part 2, the gateway (``genaiops gateway serve``, its own process) in front of the mock upstream
(``gateway.testing``, its own process), a key with a quota (admission + settlement + ledger row
on every request), safety off: state on SQLite, on PostgreSQL (counters on row locks) and on
PostgreSQL + Redis (counters on Redis).  Reported: req/s, p50/p99, CPU ms per request of the
gateway process and of the database server(s).

A throwaway PostgreSQL server is started (fsync on, ``synchronous_commit=off``: commits survive
a process crash, as SQLite's WAL with synchronous=NORMAL does) and a throwaway redis-server.

    python bench/pg_state.py                 # writes bench/results/pg_state.json, prints markdown
    python bench/pg_state.py --quick         # fewer requests
    python bench/pg_state.py --render        # print the markdown section from the JSON
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from _common import RESULTS, ROOT, machine
from gateway_latency import ADMIN, cpu_seconds, load, start, stop

from genaiops.openai_client import free_port

OUT = RESULTS / "pg_state.json"


def _pct(xs: list[float]) -> tuple[float, float]:
    ms = np.asarray(xs) * 1000
    return round(float(np.percentile(ms, 50)), 3), round(float(np.percentile(ms, 99)), 3)


def _pg_cpu(pid: int) -> float:
    """CPU seconds of a PostgreSQL server: the postmaster, its live backends (children) and
    the backends that already exited (the postmaster's cutime + cstime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    reaped = sum(int(x) for x in fields[13:15]) / os.sysconf("SC_CLK_TCK")
    return cpu_seconds(pid) + reaped


def _redis_cpu(url: str) -> float:
    import redis

    info = redis.Redis.from_url(url).info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def _counters(store: Any, concurrency: int, total: int) -> dict[str, Any]:
    from gateway.state import Counter, Hold

    team, key = f"team:{uuid.uuid4().hex[:6]}:tpm", f"key:{uuid.uuid4().hex[:6]}:tpm"
    lat: list[float] = []
    todo = 0

    async def worker(w: int) -> None:
        nonlocal todo
        i = 0
        while todo > 0:
            todo -= 1
            i += 1
            t0 = time.perf_counter()
            hold = Hold(f"r{w}-{i}", "bench", 30.0, [key, team], 40)
            res = await store.admit(
                [Counter(key, 10**12, 40, 3600), Counter(team, 10**12, 40, 3600)], hold
            )
            assert res.ok
            await store.settle([(key, -10, 3600), (team, -10, 3600)], hold=hold.id)
            lat.append(time.perf_counter() - t0)

    warm = todo = min(concurrency, 4) * 5
    await asyncio.gather(*(worker(w) for w in range(min(concurrency, 4))))  # warm-up, pools
    lat.clear()
    todo = total
    t0, c0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker(w + 100) for w in range(concurrency)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    expect = 30 * (warm + total)  # each admission reserves 40 and settles -10
    assert await store.peek([key, team]) == [expect, expect], "a counter lost an update"
    p50, p99 = _pct(lat)
    return {
        "n": len(lat),
        "ops_s": round(len(lat) / wall, 1),
        "p50_ms": p50,
        "p99_ms": p99,
        "client_cpu_ms": round(cpu * 1000 / len(lat), 3),
    }


def part_counters(pg: Any, redis_url: str, concurrency: int, total: int) -> list[dict[str, Any]]:
    from gateway.state import SQLiteStore
    from gateway.state.postgres import PostgresStore
    from gateway.state.redis import RedisStore

    tmp = Path(tempfile.mkdtemp(prefix="pg-bench-"))
    out = []
    stores: list[tuple[str, Any, Any]] = [
        ("sqlite", lambda: SQLiteStore(tmp / "state.db"), None),
        ("redis", lambda: RedisStore(redis_url, namespace=f"b{uuid.uuid4().hex[:6]}:"), "redis"),
        ("postgres, conditional upsert", lambda: PostgresStore(pg.dsn, pool_size=16), "pg"),
        (
            "postgres, SELECT FOR UPDATE",
            lambda: PostgresStore(pg.dsn, pool_size=16, counter_lock="for_update"),
            "pg",
        ),
    ]
    for name, make, server in stores:

        async def go(make: Any = make) -> dict[str, Any]:
            store = make()
            try:
                return await _counters(store, concurrency, total)
            finally:
                await store.close()

        s0 = _pg_cpu(pg.pid()) if server == "pg" else _redis_cpu(redis_url) if server else 0
        r = asyncio.run(go())
        s1 = _pg_cpu(pg.pid()) if server == "pg" else _redis_cpu(redis_url) if server else 0
        r["server_cpu_ms"] = round((s1 - s0) * 1000 / r["n"], 3) if server else None
        r["store"], r["concurrency"] = name, concurrency
        print(f"  counters {name} c={concurrency}: {r}", flush=True)
        out.append(r)
    return out


def _gateway_yaml(upstream: str, state: str) -> str:
    return (
        "deployments:\n"
        f"  - {{name: mock, backend: openai_compatible, base_url: '{upstream}', model: mock,"
        " max_retries: 0}\n"
        "models:\n  - {name: gpt-test, deployments: [{deployment: mock}]}\n"
        f"state: {state}\nsafety: {{enabled: false}}\n"
    )


def part_gateway(pg: Any, redis_url: str, levels: list[int], total: int) -> list[dict[str, Any]]:
    import httpx

    from gateway import migrations

    tmp = Path(tempfile.mkdtemp(prefix="pg-bench-gw-"))
    env = {
        **os.environ,
        "GENAIOPS_HOME": str(tmp / "home"),
        "GENAIOPS_ADMIN_KEY": ADMIN,
        "GENAIOPS_PG_DSN": pg.dsn,
    }
    migrations.upgrade(pg.dsn)
    up_port = free_port()
    upstream = f"http://127.0.0.1:{up_port}/v1"
    mock = subprocess.Popen(
        [sys.executable, "-m", "gateway.testing", "--port", str(up_port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 180
    while True:  # any HTTP answer (the mock serves only the OpenAI POST routes)
        try:
            httpx.get(upstream, timeout=1)
            break
        except httpx.HTTPError:
            if mock.poll() is not None or time.time() > deadline:
                raise RuntimeError("the mock upstream did not start") from None
            time.sleep(0.2)
    states = {
        "sqlite": f"{{path: '{tmp / 'state.db'}', ledger_path: '{tmp / 'ledger.db'}'}}",
        "postgres": "{kind: postgres, dsn_env: GENAIOPS_PG_DSN}",
        "postgres + redis counters": (
            f"{{kind: postgres, dsn_env: GENAIOPS_PG_DSN, redis_url: '{redis_url}'}}"
        ),
    }
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "Say hello."}],
            "max_tokens": 16}  # fmt: skip
    out = []
    try:
        for name, state in states.items():
            cfg = tmp / f"{name.split()[0]}-{len(out)}.yaml"
            cfg.write_text(_gateway_yaml(upstream, state))
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            gw = start(
                [sys.executable, "-m", "genaiops", "gateway", "serve", "--config", str(cfg),
                 "--port", str(port)],
                env,
                url + "/healthz",
            )  # fmt: skip
            try:
                r = httpx.post(
                    url + "/admin/keys",
                    json={"quota": 10**12, "period": "day"},
                    headers={"authorization": f"Bearer {ADMIN}"},
                    timeout=30,
                )
                headers = {"authorization": f"Bearer {r.json()['key']}"}
                for c in levels:
                    servers = [("pg", pg.pid())] if name.startswith("postgres") else []
                    g0 = cpu_seconds(gw.pid)
                    d0 = sum(_pg_cpu(p) for _, p in servers)
                    r0 = _redis_cpu(redis_url) if "redis" in name else 0.0
                    res = asyncio.run(load(url + "/v1/chat/completions", headers, c, total, body))
                    n = res["n"] + min(50, total)  # load() warms up with 50 requests first
                    res["gateway_cpu_ms"] = round((cpu_seconds(gw.pid) - g0) * 1000 / n, 3)
                    db = sum(_pg_cpu(p) for _, p in servers) - d0
                    db += (_redis_cpu(redis_url) - r0) if "redis" in name else 0.0
                    res["db_cpu_ms"] = (
                        round(db * 1000 / n, 3) if servers or "redis" in name else None
                    )
                    res["state"], res["concurrency"] = name, c
                    print(f"  gateway {name} c={c}: {res}", flush=True)
                    out.append(res)
            finally:
                stop(gw)
    finally:
        stop(mock)
    return out


def render(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        "## Gateway state: SQLite vs PostgreSQL (`bench/pg_state.py`)",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}; load average before"
        f" {m['load'][0]}, after {r['load_after'][0]}"
        f"{' (the cores were shared with other work)' if m['load'][0] > 1 else ''}."
        f" Command: `.venv/bin/python bench/pg_state.py{' --quick' if r['quick'] else ''}`"
        f" ({r['when']}). PostgreSQL {r['pg_version']} (throwaway server on loopback, fsync on,"
        " `synchronous_commit=off`), redis-server on loopback, everything on this machine.",
        "",
        f"Counters: {r['counter_concurrency']} concurrent tasks, each admission = `admit` of two"
        " shared buckets with a hold + `settle`, through the store API in one process.",
        "",
        "| store | admissions/s | p50 ms | p99 ms | client CPU ms/op | server CPU ms/op |",
        "|---|---|---|---|---|---|",
    ]
    for x in r["counters"]:
        server = x["server_cpu_ms"] if x["server_cpu_ms"] is not None else ""
        lines.append(
            f"| {x['store']} | {x['ops_s']} | {x['p50_ms']} | {x['p99_ms']} |"
            f" {x['client_cpu_ms']} | {server} |"
        )
    lines += [
        "",
        "Gateway per request (`genaiops gateway serve`, one process; non-streaming chat against"
        " the mock upstream; a key with a quota, so admission + settlement + a ledger row per"
        " request; safety off):",
        "",
        "| state | concurrency | req/s | p50 ms | p99 ms | gateway CPU ms/req"
        " | database CPU ms/req |",
        "|---|---|---|---|---|---|---|",
    ]
    for x in r["gateway"]:
        lines.append(
            f"| {x['state']} | {x['concurrency']} | {x['rps']} | {x['p50_ms']} | {x['p99_ms']} |"
            f" {x['gateway_cpu_ms']} | {x['db_cpu_ms'] if x['db_cpu_ms'] is not None else ''} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--render", action="store_true")
    ap.add_argument("--levels", default="1,8")
    ap.add_argument("--counter-concurrency", type=int, default=32)
    a = ap.parse_args()
    if a.render:
        print(render(json.loads(OUT.read_text())))
        return
    sys.path.insert(0, str(ROOT))
    from tests.gateway.support import postgres_server, redis_server

    total_c = 400 if a.quick else 3000
    total_g = 200 if a.quick else 1500
    r: dict[str, Any] = {
        "machine": machine(),
        "quick": a.quick,
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "counter_concurrency": a.counter_concurrency,
    }
    with postgres_server(durable=True) as pg, redis_server() as redis_url:
        import psycopg

        with psycopg.connect(pg.dsn) as c:
            r["pg_version"] = str(c.execute("SHOW server_version").fetchone()[0]).split()[0]  # type: ignore[index]
        from gateway import migrations

        migrations.upgrade(pg.dsn)
        r["counters"] = part_counters(pg, redis_url, a.counter_concurrency, total_c)
        r["gateway"] = part_gateway(pg, redis_url, [int(x) for x in a.levels.split(",")], total_g)
    r["load_after"] = [round(x, 2) for x in os.getloadavg()]
    RESULTS.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(r, indent=2))
    print(render(r))


if __name__ == "__main__":
    main()
