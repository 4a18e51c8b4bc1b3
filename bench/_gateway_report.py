"""Report side of ``bench/gateway_latency.py``: the path names, the markdown table, the
issue-9 goal lines and the plot, from the results dict the run writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

PASS = "fastapi+httpx pass-through"
PASS_AIO = "fastapi+httpx-aiohttp pass-through"
OFF = "gateway (quota+safety off)"
ON = "gateway (quota+safety on)"
ON2 = "gateway (quota+safety on, 2 workers)"
BEFORE = "gateway before (quota+safety on)"
LITELLM = "litellm proxy"


def render(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        "## Gateway: added latency and throughput",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}; load average before "
        f"{m['load_before'][0]} (the cores are shared with other work). Command: "
        f"`.venv/bin/python bench/gateway_latency.py{r.get('args', '')}` ({r['date']}). Client, "
        "proxies and the mock upstream (`gateway.testing`, 0 ms service time) all run on this "
        "machine over loopback; non-streaming chat, `max_tokens` 16; added = proxy minus direct "
        "at the same concurrency in the same run; at concurrency 1 one client sends to every "
        "path in turn, request by request, so load changes hit all paths alike. "
        "The pass-through (`bench/passthrough.py`) is "
        "a bare FastAPI route relaying the body with a pooled `httpx` client, no checks (the "
        "*httpx-aiohttp* one relays with the gateway's own upstream client, httpx over aiohttp). "
        "*Quota + safety on*: a key with RPM, TPM and a monthly quota (reservation and "
        "settlement in SQLite), offline safety on prompt and completion, the ledger row "
        "committed before the reply (the ledger is on in every gateway row)."
        + (
            f" *Before*: the gateway of `{r['baseline']}` (the code before this change), same "
            "config, same run."
            if r.get("baseline")
            else ""
        )
        + (
            f" LiteLLM proxy {r['litellm_version']} from `bench/.venv-litellm`,"
            " one worker, master key, no database."
            if r.get("litellm_version")
            else " LiteLLM: not installed in `bench/.venv-litellm`, not measured."
        ),
        "",
        "| concurrency | path | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms "
        "| process CPU ms/req |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c, lvl in r["levels"].items():
        for label, x in lvl.items():
            lines.append(
                f"| {c} | {label} | {x['rps']} | {x['p50_ms']} | {x['p99_ms']} | "
                f"{x.get('added_p50_ms', '')} | {x.get('added_p99_ms', '')} | "
                f"{x.get('cpu_ms_per_req', '')} |"
            )
    lines.append("")
    if r.get("plot"):
        lines += [f"![gateway latency and throughput vs concurrency]({r['plot']})", ""]
    goals = r.get("goals")
    if goals:
        lines += [f"- {g}" for g in goals] + [""]
    loc = r.get("local")
    if loc:
        lines += [
            f"Local backend (SmolLM2-135M, CPU, through `LocalChatBackend`): one stream "
            f"{loc['single_stream_tok_per_s']} tokens/s ({loc['single_stream_tokens']} tokens, "
            f"first token {loc['time_to_first_token_ms']} ms); 8 concurrent requests batched into "
            f"{loc['batches']} forward pass(es): {loc['concurrent_8_tok_per_s']} tokens/s "
            "in total.",
            "",
        ]
    return "\n".join(lines)


def per_core_rps(x: dict[str, Any]) -> float:
    """Requests one core serves per second: 1000 / the process's CPU ms per request."""
    return 1000 / x["cpu_ms_per_req"] if x.get("cpu_ms_per_req") else 0.0


def goals(r: dict[str, Any]) -> list[str]:
    """The targets of issue 9 (gateway part), each with its figures from this run."""
    out = []
    levels = r["levels"]
    one = levels.get("1", {})
    ours, bare = one.get(ON), one.get(PASS)
    if ours and bare and bare["added_p50_ms"] > 0:
        ratio = ours["added_p50_ms"] / bare["added_p50_ms"]
        out.append(
            f"concurrency 1: added p50 with quota + safety + ledger on is {ours['added_p50_ms']} "
            f"ms, {ratio:.2f}x the bare FastAPI+httpx pass-through's {bare['added_p50_ms']} ms "
            f"(goal <= 1.5x: {'met' if ratio <= 1.5 else 'not met'})"
        )
    elif ours and bare:
        out.append(
            f"concurrency 1: added p50 not measurable in this run (the pass-through's is "
            f"{bare['added_p50_ms']} ms: direct calls were slower than relayed ones, so the "
            "latencies are scheduling noise of the loaded machine)"
        )
    aio = one.get(PASS_AIO)
    if ours and aio and aio["added_p50_ms"] > 0:
        out.append(
            "concurrency 1, the gateway's own work: added p50 "
            f"{ours['added_p50_ms']} ms vs {aio['added_p50_ms']} ms for a pass-through on the "
            f"gateway's own upstream client (httpx over aiohttp): "
            f"{ours['added_p50_ms'] / aio['added_p50_ms']:.2f}x; CPU per request "
            f"{ours['cpu_ms_per_req']} vs {aio['cpu_ms_per_req']} ms"
        )
    if ours and bare and bare.get("cpu_ms_per_req"):
        ratio = ours["cpu_ms_per_req"] / bare["cpu_ms_per_req"]
        out.append(
            "concurrency 1, CPU per request (the part of the added latency that scheduling "
            "does not add): "
            f"{ours['cpu_ms_per_req']} ms with quota + safety + ledger on vs "
            f"{bare['cpu_ms_per_req']} ms for the pass-through: {ratio:.2f}x"
        )
    top = max(levels, key=int)
    ours, lite = levels[top].get(ON), levels[top].get(LITELLM)
    if ours and lite and per_core_rps(lite) > 0:
        ratio = per_core_rps(ours) / per_core_rps(lite)
        out.append(
            f"saturation (concurrency {top}): {per_core_rps(ours):.0f} requests/s per core "
            f"with quota + safety + ledger on (1000 / CPU ms per request; {ours['rps']} req/s "
            f"measured on the shared cores) vs LiteLLM's {per_core_rps(lite):.0f} "
            f"({lite['rps']} req/s measured): {ratio:.1f}x (goal >= 4x: "
            f"{'met' if ratio >= 4 else 'not met'})"
        )
    mid = levels.get("8", {}).get(ON)
    if mid:
        out.append(
            f"added p99 at concurrency 8 with quota + safety + ledger on: "
            f"{mid['added_p99_ms']} ms (goal <= 10 ms: "
            f"{'met' if mid['added_p99_ms'] <= 10 else 'not met'})"
        )
    before = levels[top].get(BEFORE)
    if before and ours:
        out.append(
            f"before/after at concurrency {top}: CPU per request {before['cpu_ms_per_req']} -> "
            f"{ours['cpu_ms_per_req']} ms; at concurrency 8 added p99 "
            f"{levels['8'][BEFORE]['added_p99_ms'] if '8' in levels else '?'} -> "
            f"{mid['added_p99_ms'] if mid else '?'} ms"
        )
    return out


def plot(r: dict[str, Any], path: Path) -> None:
    """p50/p99 and req/s against concurrency, one line per path (log-scaled axes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = sorted(r["levels"], key=int)
    labels = [k for k in r["levels"][levels[0]] if k != ON2]
    fig, (lat, thr) = plt.subplots(1, 2, figsize=(12, 4.5))
    for label in labels:
        xs = [int(c) for c in levels if label in r["levels"][c]]
        rows = [r["levels"][str(c)][label] for c in xs]
        (line,) = lat.plot(xs, [x["p50_ms"] for x in rows], marker="o", label=f"{label} p50")
        lat.plot(xs, [x["p99_ms"] for x in rows], marker="x", linestyle="--",
                 color=line.get_color(), label=f"{label} p99")  # fmt: skip
        thr.plot(xs, [x["rps"] for x in rows], marker="o", label=label)
    for ax, name in ((lat, "latency ms (p50 solid, p99 dashed)"), (thr, "requests/s")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks([int(c) for c in levels], levels)
        ax.set_xlabel("concurrency")
        ax.set_ylabel(name)
        ax.grid(True, which="both", alpha=0.3)
    lat.legend(fontsize=6, ncol=2)
    thr.legend(fontsize=7)
    fig.suptitle(f"gateway vs pass-through vs LiteLLM ({r['date']}, shared 2-core machine)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
