"""Capture's cost: gateway CPU per request with capture off vs capture at 100%, same run.

One mock upstream (``gateway.testing``, its own process) and two gateway processes that differ
only in ``capture:`` (safety on in both: capture stores redacted text).  The load generator
(aiohttp, this process) alternates between them round by round (A B A B ...), so drift in the
shared machine's load hits both alike; the figure is the CPU time the gateway process itself
spent per request (``/proc``: user + system, every thread, so the batch writer is included),
the median over rounds.  Two bodies: a one-line chat, and a RAG-shaped request (system prompt
with context plus four ``documents`` with scores and a ``retrieval`` extension).

    python bench/capture_overhead.py              # writes bench/results/capture_overhead.json
    python bench/capture_overhead.py --quick
    python bench/capture_overhead.py --render     # the markdown section from the JSON
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import gateway_latency as gl  # same folder: the process, CPU and load helpers

from genaiops.openai_client import free_port

OUT = gl.RESULTS / "capture_overhead.json"
DOC = (
    "Lumen rotates its log files daily; set rotate = 'daily' in lumen.toml and keep = 7 to hold "
    "a week of files. Rotation happens at midnight UTC and never loses a line in flight. "
)
BODIES: dict[str, dict[str, Any]] = {
    "chat": gl.BODY,
    "rag": {
        "model": "gpt-test",
        "messages": [
            {"role": "system", "content": "Answer from the sources below.\n" + DOC * 6},
            {"role": "user", "content": "How do I rotate log files with Lumen?"},
        ],
        "max_tokens": 16,
        "documents": [
            {"text": DOC * 3, "id": f"guides/rotation.md#{i}", "score": 0.8 - i / 10}
            for i in range(4)
        ],  # fmt: skip
        "retrieval": {"index": "sample", "index_version": "v1", "alias": "current"},
    },
}


def start(cmd: list[str], env: dict[str, str], url: str) -> Any:
    """A process, once ``url`` answers at all (the mock upstream has no route there: a 404
    is an answer; ``gateway_latency.wait_http`` waits for a 2xx)."""
    import subprocess
    import urllib.error

    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while time.time() < deadline:
        if p.poll() is not None:
            raise RuntimeError(f"{cmd} exited with {p.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return p
        except urllib.error.HTTPError:
            return p
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    p.kill()
    raise RuntimeError(f"{url} did not come up")


def gateway_yaml(upstream: str, state_dir: Path, capture: bool) -> str:
    base = gl.gateway_yaml(upstream, state_dir, on=True)
    if capture:
        base += f"capture: {{enabled: true, path: '{state_dir / 'capture.db'}'}}\n"
    return base


def run(rounds: int, per_round: int, concurrency: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="capture-bench-"))
    env = {**os.environ, "GENAIOPS_HOME": str(tmp / "home"), "GENAIOPS_ADMIN_KEY": gl.ADMIN}
    up_port = free_port()
    upstream = f"http://127.0.0.1:{up_port}/v1"
    mock = start(
        [sys.executable, "-m", "gateway.testing", "--port", str(up_port)],
        env,
        upstream.replace("/v1", "/v1/models"),
    )
    procs, targets, dirs = [], {}, {}
    out: dict[str, Any] = {"machine": gl.machine(), "rounds": rounds, "per_round": per_round,
                           "concurrency": concurrency, "bodies": {}}  # fmt: skip
    try:
        for label, capture in (("capture off", False), ("capture 100%", True)):
            d = tmp / label.replace(" ", "_").replace("%", "")
            d.mkdir(parents=True)
            (d / "gateway.yaml").write_text(gateway_yaml(upstream, d, capture))
            port = free_port()
            p = start(
                [sys.executable, "-m", "genaiops", "gateway", "serve", "--config",
                 str(d / "gateway.yaml"), "--port", str(port)],
                env,
                f"http://127.0.0.1:{port}/healthz",
            )  # fmt: skip
            procs.append(p)
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/admin/keys",
                data=b"{}",
                method="POST",
                headers={"authorization": f"Bearer {gl.ADMIN}", "content-type": "application/json"},
            )
            with urllib.request.urlopen(req) as r:
                key = json.loads(r.read())["key"]
            targets[label] = (p.pid, f"http://127.0.0.1:{port}/v1/chat/completions",
                              {"authorization": f"Bearer {key}"})  # fmt: skip
            dirs[label] = d
        for name, body in BODIES.items():
            cpu: dict[str, list[float]] = {label: [] for label in targets}
            p50: dict[str, list[float]] = {label: [] for label in targets}
            for i in range(rounds):
                for label, (pid, url, headers) in targets.items():
                    gl.log(f"{name}: round {i + 1}/{rounds}, {label}")
                    c0 = gl.cpu_seconds(pid)
                    r = asyncio.run(gl.load(url, headers, concurrency, per_round, body))
                    if r["errors"]:
                        raise RuntimeError(f"{label}: {r['errors']} errors")
                    time.sleep(0.7)  # the batch writer's last flush lands in this round
                    n = r["n"] + min(50, per_round)  # load() warms up with 50 requests
                    cpu[label].append((gl.cpu_seconds(pid) - c0) * 1000 / n)
                    p50[label].append(r["p50_ms"])
            res: dict[str, Any] = {
                label: {"cpu_ms_per_req": round(statistics.median(v), 3),
                        "cpu_ms_rounds": [round(x, 3) for x in v],
                        "p50_ms": round(statistics.median(p50[label]), 3)}
                for label, v in cpu.items()
            }  # fmt: skip
            off = float(res["capture off"]["cpu_ms_per_req"])
            res["ratio"] = round(float(res["capture 100%"]["cpu_ms_per_req"]) / off, 3)
            out["bodies"][name] = res
        db = sqlite3.connect(dirs["capture 100%"] / "capture.db")
        out["captured_records"] = db.execute("SELECT COUNT(*) FROM captures").fetchone()[0]
        db.close()
    finally:
        for p in procs:
            gl.stop(p)
        gl.stop(mock)
        shutil.rmtree(tmp, ignore_errors=True)
    out["load_after"] = [round(x, 2) for x in os.getloadavg()]
    return out


def render(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}; load average "
        f"{m['load_before']} before, {r['load_after']} after (the cores are shared with other "
        f"work, so absolute figures move; the ratio is of the same rounds). Command: "
        f"`.venv/bin/python bench/capture_overhead.py`: {r['rounds']} alternating rounds of "
        f"{r['per_round']} non-streaming requests at concurrency {r['concurrency']} per body "
        f"and gateway; safety on in both; {r['captured_records']} records were stored.",
        "",
        "| body | capture off: CPU ms/req | capture 100%: CPU ms/req | ratio | p50 ms off / on |",
        "|---|---|---|---|---|",
    ]
    for name, b in r["bodies"].items():
        off, on = b["capture off"], b["capture 100%"]
        lines.append(
            f"| {name} | {off['cpu_ms_per_req']} | {on['cpu_ms_per_req']} | {b['ratio']} | "
            f"{off['p50_ms']} / {on['p50_ms']} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--render", action="store_true")
    args = ap.parse_args()
    if args.render:
        print(render(json.loads(OUT.read_text())))
        return
    r = run(rounds=3 if args.quick else 6, per_round=150 if args.quick else 400, concurrency=8)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(r, indent=2))
    print(render(r))
    worst = max(b["ratio"] for b in r["bodies"].values())
    print(f"\ngoal capture CPU <= 1.10x: {'met' if worst <= 1.10 else 'MISSED'} (worst {worst}x)")


if __name__ == "__main__":
    main()
