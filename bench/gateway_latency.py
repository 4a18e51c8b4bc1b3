"""Gateway added latency, throughput ceiling and local-backend tokens/s.

Everything runs on loopback on this machine: a mock OpenAI-compatible upstream
(``gateway.testing``, its own process), a bare FastAPI + httpx pass-through
(``bench/passthrough.py``), our gateway (``genaiops gateway serve``, its own process) with quota +
safety off and on, and — when ``bench/.venv-litellm`` exists — the LiteLLM proxy pointed at the
same mock.  The load generator (aiohttp, this process) sends non-streaming chat
requests at fixed concurrency; *added latency* = p50/p99 through a proxy minus p50/p99 calling
the mock directly at the same concurrency, in the same run.

    # LiteLLM lives in its own venv, never a project dependency (1.82.7/1.82.8 excluded):
    python3 -m venv bench/.venv-litellm
    bench/.venv-litellm/bin/pip install 'litellm[proxy]!=1.82.7,!=1.82.8'

    python bench/gateway_latency.py                  # writes bench/results/gateway_latency.json
                                                     # and docs/img/gateway_latency.png
    python bench/gateway_latency.py --quick          # fewer requests
    python bench/gateway_latency.py --render         # print the markdown section from the JSON
    git archive <old commit> | tar -x -C "$BEFORE"  # then: --baseline "$BEFORE"
                                                     # (that code's gateway as one more path)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from genaiops.openai_client import free_port

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _gateway_report import (  # noqa: E402
    BEFORE,
    LITELLM,
    OFF,
    ON,
    ON2,
    PASS,
    PASS_AIO,
    goals,
    plot,
    render,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
LITELLM_VENV = ROOT / "bench" / ".venv-litellm"
ADMIN = "bench-admin-key-0123456789"
LITELLM_KEY = "sk-bench-" + "0123456789abcdef" * 4  # master key only (no database)
BODY = {
    "model": "gpt-test",
    "messages": [{"role": "user", "content": "Say hello."}],
    "max_tokens": 16,
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "load_before": [round(x, 2) for x in os.getloadavg()],
    }


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    import urllib.error
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return  # it answered (the mock upstream has no GET routes: 404 means up)
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process and its live child processes (uvicorn workers)."""
    pids = [pid]
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if int(_stat(int(d))[1]) == pid:
                    pids.append(int(d))
            except (OSError, IndexError, ValueError):
                continue
    ticks = 0
    for p in pids:
        try:
            ticks += sum(int(x) for x in _stat(p)[11:13])  # utime, stime
        except OSError:
            continue
    return ticks / os.sysconf("SC_CLK_TCK")


def start(cmd: list[str], env: dict[str, str], health: str) -> subprocess.Popen[bytes]:
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(health, p)
    return p


def stop(p: subprocess.Popen[bytes]) -> None:
    p.terminate()
    try:
        p.wait(timeout=15)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


async def load(
    url: str, headers: dict[str, str], concurrency: int, total: int, body: dict[str, Any]
) -> dict[str, Any]:
    import aiohttp

    lat: list[float] = []
    errors = 0
    todo = total
    conn = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=conn, headers=headers) as s:

        async def worker() -> None:
            nonlocal todo, errors
            while todo > 0:
                todo -= 1
                t0 = time.perf_counter()
                async with s.post(url, json=body) as r:
                    await r.read()
                    if r.status != 200:
                        errors += 1
                lat.append(time.perf_counter() - t0)

        # warm-up: connections, caches, JIT-less but lazy imports on the server side
        for _ in range(min(50, total)):
            async with s.post(url, json=body) as r:
                await r.read()
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    ms = np.asarray(lat) * 1000
    return {
        "n": len(lat),
        "errors": errors,
        "rps": round(len(lat) / wall, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
    }


async def interleaved(
    targets: dict[str, tuple[str, dict[str, str]]], n: int, body: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """Concurrency 1 on every path at once: one request to each path in turn, ``n`` rounds
    (after 50 warm-up rounds), so a change in machine load hits all paths alike."""
    import aiohttp

    sessions = {k: aiohttp.ClientSession(headers=h) for k, (_, h) in targets.items()}
    lat: dict[str, list[float]] = {k: [] for k in targets}
    errors = dict.fromkeys(targets, 0)
    try:
        for i in range(n + 50):
            for k, (url, _) in targets.items():
                t0 = time.perf_counter()
                async with sessions[k].post(url + "/chat/completions", json=body) as r:
                    await r.read()
                    bad = r.status != 200
                if i >= 50:
                    lat[k].append(time.perf_counter() - t0)
                    errors[k] += bad
    finally:
        for s in sessions.values():
            await s.close()
    out = {}
    for k, xs in lat.items():
        ms = np.asarray(xs) * 1000
        out[k] = {
            "n": len(xs),
            "errors": errors[k],
            "rps": round(len(xs) / (float(ms.sum()) / 1000), 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3),
        }
    return out


def gateway_yaml(upstream: str, state_dir: Path, on: bool) -> str:
    return (
        "deployments:\n"
        f"  - {{name: mock, backend: openai_compatible, base_url: '{upstream}', model: mock,"
        " max_retries: 0}\n"
        "models:\n  - {name: gpt-test, deployments: [{deployment: mock}]}\n"
        f"state: {{path: '{state_dir / 'state.db'}', ledger_path: '{state_dir / 'ledger.db'}'}}\n"
        f"safety: {{enabled: {'true' if on else 'false'}}}\n"
    )


def litellm_yaml(upstream: str) -> str:
    return (
        "model_list:\n"
        "  - model_name: gpt-test\n"
        "    litellm_params: {model: openai/mock, api_base: '" + upstream + "', api_key: x}\n"
        "litellm_settings: {drop_params: true, telemetry: false}\n"
    )


def _gateway(
    label: str, d: Path, upstream: str, env: dict[str, str], on: bool, workers: int,
    src: Path | None = None,
) -> tuple[subprocess.Popen[bytes], str, dict[str, str]]:  # fmt: skip
    """Start one gateway (from ``src``, another checkout, when given) and create its key."""
    import urllib.request

    d.mkdir(parents=True, exist_ok=True)
    cfg = d / "gateway.yaml"
    cfg.write_text(gateway_yaml(upstream, d, on))
    port = free_port()
    cmd = [sys.executable, "-m", "genaiops", "gateway", "serve", "--config", str(cfg)]
    cmd += ["--port", str(port), "--workers", str(workers)]
    if src is not None:  # its own modules first on sys.path (cwd), the same packages
        env = {**env, "PYTHONPATH": str(src)}
    p = subprocess.Popen(
        cmd, env=env, cwd=src, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/healthz", p)
    limits = {"rpm": 10**9, "tpm": 10**12, "quota": 10**15, "period": "month"} if on else {}
    req = urllib.request.Request(
        base + "/admin/keys",
        data=json.dumps(limits).encode(),
        method="POST",
        headers={"authorization": f"Bearer {ADMIN}", "content-type": "application/json"},
    )
    with urllib.request.urlopen(req) as r:
        key = json.loads(r.read())["key"]
    log(f"started {label} on {base}")
    return p, base + "/v1", {"authorization": f"Bearer {key}"}


def run_proxies(
    levels: list[int], per_level: int, baseline: Path | None = None, two_workers: bool = False
) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="gw-bench-"))
    env = {
        **os.environ,
        "GENAIOPS_HOME": str(tmp / "home"),
        "GENAIOPS_ADMIN_KEY": ADMIN,
        "GENAIOPS_LOG_LEVEL": "WARNING",
    }
    up_port = free_port()
    upstream = f"http://127.0.0.1:{up_port}/v1"
    mock = start(
        [sys.executable, "-m", "gateway.testing", "--port", str(up_port)],
        env,
        upstream.replace("/v1", "/v1/models"),
    )
    targets: dict[str, tuple[str, dict[str, str]]] = {"direct": (upstream, {})}
    pids: dict[str, int] = {"direct": mock.pid}
    procs: list[subprocess.Popen[bytes]] = []
    results: dict[str, Any] = {}
    try:
        port = free_port()
        p = start(
            [sys.executable, str(ROOT / "bench" / "passthrough.py"), "--upstream", upstream,
             "--port", str(port)],
            env,
            f"http://127.0.0.1:{port}/healthz",
        )  # fmt: skip
        procs.append(p)
        targets[PASS], pids[PASS] = (f"http://127.0.0.1:{port}/v1", {}), p.pid
        port = free_port()
        p = start(
            [sys.executable, str(ROOT / "bench" / "passthrough.py"), "--upstream", upstream,
             "--port", str(port), "--transport", "aiohttp"],
            env,
            f"http://127.0.0.1:{port}/healthz",
        )  # fmt: skip
        procs.append(p)
        targets[PASS_AIO], pids[PASS_AIO] = (f"http://127.0.0.1:{port}/v1", {}), p.pid
        gateways: list[tuple[str, bool, int, Path | None]] = [(OFF, False, 1, None)]
        gateways.append((ON, True, 1, None))
        if two_workers:
            gateways.append((ON2, True, 2, None))
        if baseline is not None:
            gateways.append((BEFORE, True, 1, baseline))
            results["baseline"] = str(baseline)
        for i, (label, on, workers, src) in enumerate(gateways):
            p, url, headers = _gateway(label, tmp / f"gw{i}", upstream, env, on, workers, src)
            procs.append(p)
            targets[label], pids[label] = (url, headers), p.pid
        litellm = LITELLM_VENV / "bin" / "litellm"
        if litellm.exists():
            cfg = tmp / "litellm.yaml"
            cfg.write_text(litellm_yaml(upstream))
            port = free_port()
            lenv = {
                **env,
                "LITELLM_LOG": "ERROR",
                "LITELLM_TELEMETRY": "False",
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "LITELLM_MASTER_KEY": LITELLM_KEY,
            }
            p = start(
                [str(litellm), "--config", str(cfg), "--port", str(port), "--num_workers", "1"],
                lenv,
                f"http://127.0.0.1:{port}/health/liveliness",
            )
            procs.append(p)
            targets[LITELLM] = (
                f"http://127.0.0.1:{port}/v1",
                {"authorization": f"Bearer {LITELLM_KEY}"},
            )
            pids[LITELLM] = p.pid
            results["litellm_version"] = subprocess.run(
                [
                    str(LITELLM_VENV / "bin" / "python"),
                    "-c",
                    "import importlib.metadata as m; print(m.version('litellm'))",
                ],
                capture_output=True,
                text=True,
            ).stdout.strip()
        for c in levels:
            if c == 1:  # every path alternately, request by request: all see the same machine
                n = per_level * 4
                log(f"all paths interleaved: concurrency 1, {n} requests each")
                cpu0 = {k: cpu_seconds(pids[k]) for k in targets}
                got = asyncio.run(interleaved(targets, n, BODY))
                for label, r in got.items():
                    r["cpu_ms_per_req"] = round(
                        (cpu_seconds(pids[label]) - cpu0[label]) * 1000 / (r["n"] + 50), 3
                    )
                    if label == "direct":  # the mock served every path's upstream call too
                        r["cpu_ms_per_req"] = round(r["cpu_ms_per_req"] / len(targets), 3)
                    results.setdefault("levels", {}).setdefault("1", {})[label] = r
                continue
            for label, (url, headers) in targets.items():
                n = per_level * max(1, c // 8) if c > 1 else per_level
                if label == LITELLM:  # ~10x slower: fewer requests, still > 100 per client
                    n = max(per_level // 2, min(n, 25 * c))
                log(f"{label}: concurrency {c}, {n} requests")
                cpu0 = cpu_seconds(pids[label])
                r = asyncio.run(load(url + "/chat/completions", headers, c, n, BODY))
                # CPU the proxy process itself spent per request (incl. warm-up requests):
                # independent of how busy the shared cores are
                r["cpu_ms_per_req"] = round(
                    (cpu_seconds(pids[label]) - cpu0) * 1000 / (r["n"] + min(50, n)), 3
                )
                results.setdefault("levels", {}).setdefault(str(c), {})[label] = r
    finally:
        for p in procs:
            stop(p)
        stop(mock)
        shutil.rmtree(tmp, ignore_errors=True)
    for lvl in results.get("levels", {}).values():
        base = lvl["direct"]
        for label, r in lvl.items():
            if label != "direct":
                r["added_p50_ms"] = round(r["p50_ms"] - base["p50_ms"], 3)
                r["added_p99_ms"] = round(r["p99_ms"] - base["p99_ms"], 3)
    return results


def local_tokens_per_s(max_tokens: int) -> dict[str, Any]:
    """SmolLM2 through the local backend: one stream, and 8 concurrent batched requests."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("GENAIOPS_MODEL_CACHE", str(ROOT / ".genaiops" / "test-models"))
    from gateway.backends import LocalChatBackend
    from genaiops.providers import get_local_generator

    get_local_generator().warm_up()
    b = LocalChatBackend("local", batch_size=8, batch_wait_ms=5)
    msg = [{"role": "user", "content": "Write a short paragraph about rivers."}]
    body = {"model": "genaiops-local", "messages": msg, "max_tokens": max_tokens}

    async def go() -> dict[str, Any]:
        await b.chat({**body, "max_tokens": 4})  # warm
        t0 = time.perf_counter()
        n = 0
        first = None
        async for ch in b.stream(body):
            if ch.get("choices") and ch["choices"][0]["delta"].get("content"):
                first = first or time.perf_counter() - t0
            if ch.get("usage"):
                n = ch["usage"]["completion_tokens"]
        single = time.perf_counter() - t0
        t0 = time.perf_counter()
        outs = await asyncio.gather(*(b.chat(body) for _ in range(8)))
        conc = time.perf_counter() - t0
        toks = sum(o["usage"]["completion_tokens"] for o in outs)
        await b.aclose()
        return {
            "single_stream_tokens": n,
            "single_stream_tok_per_s": round(n / single, 1),
            "time_to_first_token_ms": round((first or 0) * 1000, 1),
            "concurrent_8_tokens": toks,
            "concurrent_8_tok_per_s": round(toks / conc, 1),
            "batches": b.batches_run,
        }

    return asyncio.run(go())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--render", action="store_true")
    ap.add_argument("--levels", default="1,8,32,128")
    ap.add_argument("--requests", type=int, help="requests per level (default 400, --quick 100)")
    ap.add_argument("--no-local", action="store_true")
    ap.add_argument("--two-workers", action="store_true", help="also a 2-worker gateway")
    ap.add_argument(
        "--baseline",
        type=Path,
        help="a checkout of the code before a change: its gateway runs as one more path",
    )
    ap.add_argument("--plot", type=Path, default=ROOT / "docs" / "img" / "gateway_latency.png")
    a = ap.parse_args()
    out = RESULTS / "gateway_latency.json"
    if a.render:
        r = json.loads(out.read_text())
        print(render({**r, "goals": goals(r)}))
        return
    r: dict[str, Any] = {"benchmark": "gateway_latency", "machine": machine()}
    r["args"] = "".join(f" {x}" for x in sys.argv[1:])
    r.update(
        run_proxies(
            [int(x) for x in a.levels.split(",")],
            a.requests or (100 if a.quick else 400),
            baseline=a.baseline.resolve() if a.baseline else None,
            two_workers=a.two_workers,
        )
    )
    r["goals"] = goals(r)
    if not a.no_local:
        log("local backend tokens/s")
        r["local"] = local_tokens_per_s(32 if a.quick else 64)
    r["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    plot(r, a.plot)
    r["plot"] = os.path.relpath(a.plot, ROOT / "docs")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(r, indent=2))
    print(render(r))


if __name__ == "__main__":
    main()
