"""Three gateway processes on one PostgreSQL (and, when configured, one Redis for counters):
concurrent requests against one token quota never overshoot it, ``genaiops gateway usage`` sees
every replica's traffic, and ``kill -9`` of a replica under load loses no ledger row of an
answer a client received.  The default test runs three gateways in this process (starting
three processes takes most of a minute on a loaded machine); the slow one runs processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator

import httpx
import psycopg
import pytest
from typer.testing import CliRunner

from genaiops.cli import app as cli
from tests.gateway.support import ADMIN_KEY, burst, gateway_processes, mock_upstream_server

MSG = [{"role": "user", "content": "hi"}]


def _config(upstream: str, state: str) -> str:
    return (
        "deployments:\n"
        f"  - {{name: up, backend: openai_compatible, base_url: '{upstream}', max_retries: 0,"
        " connect_timeout_s: 30, timeout_s: 120}\n"  # a loaded machine: the mock is slow to accept
        "models:\n"
        "  - {name: gpt-test, deployments: [{deployment: up}]}\n"
        f"state: {state}\n"
    )


def _kill9_under_load(urls: list[str], key: str, victim: object) -> list[str]:
    """Load on every replica; ``kill -9`` the victim process mid-way.  The ids of the
    responses clients received."""
    delivered: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def load(i: int) -> None:
        url = urls[i % len(urls)]
        with httpx.Client(
            base_url=url, timeout=10, headers={"authorization": f"Bearer {key}"}
        ) as c:
            n = 0
            while not stop.is_set():
                n += 1
                body = {"model": "gpt-test", "messages": MSG, "max_tokens": 8,
                        "stream": (i + n) % 3 == 0}  # fmt: skip
                try:
                    r = c.post("/v1/chat/completions", json=body)
                except httpx.HTTPError:
                    continue  # that replica died mid-request: nothing was delivered
                if r.status_code == 200:
                    with lock:
                        delivered.append(r.headers["x-request-id"])

    threads = [threading.Thread(target=load, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    os.kill(victim.pid, signal.SIGKILL)  # type: ignore[attr-defined]
    victim.wait()  # type: ignore[attr-defined]
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join()
    return delivered


@contextlib.contextmanager
def _mock_upstream_process() -> Iterator[str]:
    """The mock upstream in a process of its own: in this one it would share the GIL with the
    1,000 concurrent clients and answer too slowly."""
    import subprocess
    import sys

    from genaiops.openai_client import free_port

    port = free_port()
    p = subprocess.Popen(
        [sys.executable, "-m", "gateway.testing", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 120
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)  # any answer: it is up
                break
            except httpx.HTTPError:
                pass
            if p.poll() is not None or time.time() > deadline:
                raise RuntimeError("the mock upstream did not start")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        p.terminate()
        p.wait(timeout=10)


def _new_key(url: str, limits: dict[str, object]) -> str:
    r = httpx.post(
        url + "/admin/keys",
        json=limits,
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
        timeout=30,
    )
    r.raise_for_status()
    return str(r.json()["key"])


def _quota_and_usage(urls: list[str], pg_dsn: str, cfg_file: str, n: int, quota: int) -> None:
    key = _new_key(urls[0], {"quota": quota, "period": "day"})  # valid on every replica
    res = burst(urls, key, n, timeout=120, max_connections=n)
    ok = [r for r in res if r.status_code == 200]
    odd = [r.text for r in res if r.status_code not in (200, 429)]
    assert ok and not odd, odd[:3]
    assert len(ok) < n  # the quota did run out
    billed = sum(r.json()["usage"]["total_tokens"] for r in ok)
    assert billed <= quota  # zero overshoot
    with psycopg.connect(pg_dsn) as db:
        ledger = db.execute(
            "SELECT count(*), coalesce(sum(total_tokens), 0), count(DISTINCT owner) "
            "FROM usage WHERE outcome='ok'"
        ).fetchone()
        counted = db.execute(
            "SELECT coalesce(sum(used), 0) FROM counters WHERE bucket LIKE '%%:quota:%%'"
        ).fetchone()
    assert ledger == (len(ok), billed, 3)  # every replica wrote its rows
    if counted != (0,):  # counters on PostgreSQL (else on Redis)
        assert counted == (billed,)
    # usage from the CLI (any host with the config) shows all replicas' traffic
    out = CliRunner().invoke(cli, ["gateway", "usage", "--by", "key", "--json", "-c", cfg_file])
    assert out.exit_code == 0, out.output
    (row,) = json.loads(out.output)
    assert (row["requests"], row["total_tokens"]) == (n, billed)


def test_three_in_process_replicas_share_one_quota_and_the_usage(tmp_path, pg_dsn, monkeypatch):
    """The default version: three gateways (each its own pools and owner id) in this process,
    counters on PostgreSQL row locks, 300 concurrent requests."""
    from gateway.config import load_config
    from tests.gateway.support import serve

    monkeypatch.setenv("GENAIOPS_PG_DSN", pg_dsn)
    with mock_upstream_server() as up, contextlib.ExitStack() as stack:
        cfg_file = tmp_path / "gateway.yaml"
        cfg_file.write_text(_config(up, "{kind: postgres, dsn_env: GENAIOPS_PG_DSN}"))
        gws = [stack.enter_context(serve(load_config(cfg_file))) for _ in range(3)]
        _quota_and_usage([g.url for g in gws], pg_dsn, str(cfg_file), 300, 3000)


@pytest.mark.slow
@pytest.mark.parametrize("counters", ["postgres", "redis"])
def test_three_replica_processes_thousand_concurrent_and_kill9(
    tmp_path, pg_dsn, monkeypatch, request: pytest.FixtureRequest, counters: str
):
    """Three ``genaiops gateway serve`` processes, counters on PostgreSQL or on Redis: 1,000
    concurrent requests on one quota, then ``kill -9`` of one replica under load."""
    monkeypatch.setenv("GENAIOPS_PG_DSN", pg_dsn)
    state = "{kind: postgres, dsn_env: GENAIOPS_PG_DSN"
    if counters == "redis":
        state += f", redis_url: '{request.getfixturevalue('redis_url')}'"
    with (
        _mock_upstream_process() as up,
        gateway_processes(_config(up, state + "}"), tmp_path / "home", n=3) as gps,
    ):
        urls = [g.url for g in gps]
        cfg_file = str(tmp_path / "home" / "gateway.yaml")
        _quota_and_usage(urls, pg_dsn, cfg_file, 1000, 10_000)
        delivered = _kill9_under_load(urls, _new_key(urls[1], {}), gps[0].proc)
    assert len(delivered) > 20
    with psycopg.connect(pg_dsn) as db:
        ids = {r[0] for r in db.execute("SELECT request_id FROM usage").fetchall()}
    missing = [rid for rid in delivered if rid not in ids]
    assert not missing, f"{len(missing)} delivered responses have no ledger row"
