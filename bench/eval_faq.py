"""FAQ set end to end through a loopback gateway with the local model: before/after and lines/s
vs ``--concurrency``.

Each invocation measures one configuration and writes ``bench/results/eval_faq_<label>.json``:
flow ``flows/rag`` variant ``answer_prompt.terse`` over the first ``--lines`` questions of
``faq_qa.jsonl`` against the ``python-docs`` index of ``--home``, metrics bleu, rouge,
similarity, cost, groundedness (as ``bench/eval_overhead.py --faq``).  Run time (the flow over
every line) and scoring time are taken apart, and per-node latency means say where a line's
time goes.  ``--render`` reads the results, plots lines/s vs concurrency to
``docs/img/eval_concurrency.png`` and prints the markdown for docs/benchmarks.md.

    # the code before the change, from a checkout of it (its modules first on sys.path):
    PYTHONPATH=$BEFORE python bench/eval_faq.py --home H --lines 30 --concurrency 4 --label before
    python bench/eval_faq.py --home H --lines 30 --concurrency 8 --label after
    python bench/eval_faq.py --home H --lines 12 --concurrency 1 --label c1   # ... c2 c4 c8
    python bench/eval_faq.py --render --write
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, ROOT, load, machine, write_result  # noqa: E402

VARIANT = "answer_prompt.terse"
METRICS = ["bleu", "rouge", "similarity", "cost", "groundedness"]
PLOT = ROOT / "docs" / "img" / "eval_concurrency.png"
DOC = ROOT / "docs" / "benchmarks.md"
HEADING = "## Evaluation throughput: continuous batching (`bench/eval_faq.py`)"
AFTER_SECTION = "## Evaluation\n"  # placed right after that section the first time


def run_one(home: str, lines: int, concurrency: int) -> dict[str, Any]:
    """One FAQ evaluation through a fresh loopback gateway (model warm-up not timed)."""
    os.environ["GENAIOPS_HOME"] = home
    from evaluation.config import EvalConfig
    from evaluation.runtime.local_gateway import using_local_gateway
    from evaluation.runtime.runner import RunRequest, run_flow
    from evaluation.scoring import score_run
    from genaiops.settings import reset_settings

    reset_settings()
    t0 = time.perf_counter()
    with using_local_gateway():
        warm = time.perf_counter() - t0
        t1 = time.perf_counter()
        run = run_flow(
            RunRequest(
                flow=str(ROOT / "flows/rag"),
                data="faq",
                variants=VARIANT,
                column_mapping={"index": "python-docs"},
                concurrency=concurrency,
                limit=lines,
            )
        )
        run_s = time.perf_counter() - t1
        t2 = time.perf_counter()
        summary = score_run(run, EvalConfig.model_validate({"metrics": METRICS}))
        score_s = time.perf_counter() - t2
    res = run.lines[VARIANT]
    nodes: dict[str, list[float]] = {}
    for r in res:
        for k, v in r.node_latency_s.items():
            nodes.setdefault(k, []).append(v)
    m = summary.variants[VARIANT].metrics
    wall = run_s + score_s
    return {
        "lines": len(res),
        "concurrency": concurrency,
        "wall_s": wall,
        "run_s": run_s,
        "score_s": score_s,
        "lines_per_s": len(res) / wall,
        "gateway_start_and_warm_s": warm,
        "line_latency_mean_s": statistics.fmean(r.latency_s for r in res),
        "node_latency_mean_s": {k: statistics.fmean(v) for k, v in nodes.items()},
        "prompt_tokens": sum(r.prompt_tokens for r in res),
        "completion_tokens": sum(r.completion_tokens for r in res),
        "errors": sum(1 for r in res if r.error),
        "metrics": {
            k: m[k].mean for k in ("bleu", "rougeL", "answer_similarity", "groundedness") if k in m
        },
        "answers": [r.outputs.get("answer", "") for r in res],
    }


def profile_model(home: str, prompt_tokens: int = 870, steps: int = 8) -> dict[str, Any]:
    """Where a line's model time goes, in this process: prefill of one FAQ-length prompt vs
    one decoding step at 1, 4 and 8 rows (the local generator's own model and batcher)."""
    os.environ["GENAIOPS_HOME"] = home
    from genaiops.providers.batching import BatchRequest
    from genaiops.providers.generator import get_local_generator
    from genaiops.settings import reset_settings

    reset_settings()
    gen = get_local_generator()
    sched = gen.batcher()
    text = (ROOT.parent / "shared" / "datasets" / "python-docs" / "corpus.jsonl").read_text()
    ids = sched.tok(text[:20000], add_special_tokens=False)["input_ids"][:prompt_tokens]
    sched.submit(BatchRequest(ids=ids[:16], max_tokens=2)).wait()  # warm-up
    t0 = time.perf_counter()
    sched.submit(BatchRequest(ids=ids, max_tokens=1)).wait()
    prefill = time.perf_counter() - t0
    out: dict[str, Any] = {"prompt_tokens": len(ids), "prefill_s": prefill, "step_s": {}}
    for rows in (1, 4, 8):
        # short prompts, many steps: the decoding steps dominate; per-step = (t - prefills) / n
        t0 = time.perf_counter()
        reqs = [sched.submit(BatchRequest(ids=ids[:32], max_tokens=1)) for _ in range(rows)]
        for r in reqs:
            r.wait()
        pre = time.perf_counter() - t0
        s0 = sched.steps
        t0 = time.perf_counter()
        reqs = [sched.submit(BatchRequest(ids=ids[:32], max_tokens=steps + 1)) for _ in range(rows)]
        for r in reqs:
            r.wait()
        n = max(1, sched.steps - s0)
        out["step_s"][str(rows)] = max(0.0, time.perf_counter() - t0 - pre) / n
    return out


def _read(label: str) -> dict[str, Any] | None:
    p = RESULTS / f"eval_faq_{label}.json"
    return json.loads(p.read_text()) if p.exists() else None


def render() -> str:
    before, after = _read("before"), _read("after")
    sweep = [r for c in (1, 2, 4, 8) if (r := _read(f"c{c}"))]
    out = [HEADING, ""]
    if before and after:
        b, a = before["result"], after["result"]
        same = sum(x == y for x, y in zip(b["answers"], a["answers"], strict=False))
        out += [
            f"Machine: {after['machine'].get('cpu', '?')}, {after['machine'].get('cores', '?')} "
            f"cores, shared with other work (load average before/after: before run "
            f"{before['load_start']} / {before['load_end']}, after run {after['load_start']} / "
            f"{after['load_end']}); `GENAIOPS_TORCH_THREADS={after['torch_threads']}` for both. "
            f"Same {a['lines']} questions, same index, flow, model and metrics; "
            f"{same}/{a['lines']} answers identical. Commands: `{before['command']}` (from a "
            f"checkout of the code before, its modules first on `PYTHONPATH`), then "
            f"`{after['command']}`." + (f" {after['note']}" if after.get("note") else ""),
            "",
            "| | code | concurrency | wall s | run s | scoring s | lines/s | mean line s "
            "| generate node s | retrieve node s | rougeL | answer_similarity | groundedness |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, r, res in (("before", before, b), ("after", after, a)):
            n, mm = res["node_latency_mean_s"], res["metrics"]
            out.append(
                f"| {name} | {r['code']} {r.get('code_commit', '')} | {res['concurrency']} | "
                f"{res['wall_s']:.0f} | "
                f"{res['run_s']:.0f} | {res['score_s']:.1f} | {res['lines_per_s']:.3f} | "
                f"{res['line_latency_mean_s']:.1f} | {n.get('generate', 0):.1f} | "
                f"{n.get('retrieve', 0):.2f} | {mm.get('rougeL', float('nan')):.3f} | "
                f"{mm.get('answer_similarity', float('nan')):.3f} | "
                f"{mm.get('groundedness', float('nan')):.3f} |"
            )
        ratio = b["wall_s"] / a["wall_s"]
        gen_share = a["node_latency_mean_s"].get("generate", 0) / a["line_latency_mean_s"]
        out += [
            "",
            f"Speed-up end to end (before wall / after wall): **{ratio:.2f}x**; run only "
            f"{b['run_s'] / a['run_s']:.2f}x. Where a line's time goes (after): the `generate` "
            f"node (the gateway call, queueing included) is {100 * gen_share:.0f}% of its "
            f"latency; `retrieve` averages {a['node_latency_mean_s'].get('retrieve', 0):.1f} s, "
            "almost all of it the first call of the run (index and query-embedder load, which "
            "the first wave of lines waits for); scoring (bleu, rouge, similarity with MiniLM, "
            f"cost, groundedness) takes {100 * a['score_s'] / a['wall_s']:.0f}% of the wall. "
            "The groundedness judge is the offline one by default (no model call); "
            "`--judge gateway:<alias>` would add one model call per line.",
        ]
    prof = _read("profile")
    if prof:
        p = prof["result"]
        st = p["step_s"]
        out += [
            "",
            f"Where the model time goes (same generator in one process, load at start "
            f"{prof['load_start']}): prefill of one {p['prompt_tokens']}-token prompt "
            f"**{p['prefill_s']:.2f} s**; one decoding step "
            + ", ".join(f"{k} row(s) {1000 * v:.0f} ms" for k, v in st.items())
            + f". A 60-token answer alone costs ~{p['prefill_s']:.1f} s prefill + "
            f"{60 * st['1']:.1f} s decoding; inside a batch of 8 its decoding share is "
            f"~{60 * st['8'] / 8:.1f} s, and the prefill cannot be shared.",
        ]
    if sweep:
        out += [
            "",
            "Lines/s vs `--concurrency` (after; same questions per point; plot: "
            "`docs/img/eval_concurrency.png`):",
            "",
            "| concurrency | lines | wall s | lines/s | mean line s | load at start |",
            "|---|---|---|---|---|---|",
        ]
        for r in sweep:
            x = r["result"]
            out.append(
                f"| {x['concurrency']} | {x['lines']} | {x['wall_s']:.0f} | "
                f"{x['lines_per_s']:.3f} | {x['line_latency_mean_s']:.1f} | {r['load_start']} |"
            )
        lo, hi = sweep[0]["result"], sweep[-1]["result"]
        out += [
            "",
            f"Concurrency {hi['concurrency']} vs {lo['concurrency']} (one request at a time): "
            f"**{hi['lines_per_s'] / lo['lines_per_s']:.2f}x** lines/s (the load differed "
            "between points; see the last column).",
        ]
        plot(sweep)
    return "\n".join(out) + "\n"


def write_section(text: str) -> None:
    """Replace this benchmark's section of docs/benchmarks.md (or insert it after Evaluation)."""
    doc = DOC.read_text()
    start = doc.find(HEADING + "\n")
    if start < 0:
        at = doc.find(AFTER_SECTION)
        nxt = doc.find("\n## ", at + len(AFTER_SECTION)) if at >= 0 else -1
        doc = doc[: nxt + 1] + text + "\n" + doc[nxt + 1 :] if nxt >= 0 else doc + "\n" + text
    else:
        nxt = doc.find("\n## ", start + len(HEADING))
        doc = doc[:start] + text + ("\n" + doc[nxt + 1 :] if nxt >= 0 else "")
    DOC.write_text(doc)


def plot(sweep: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r["result"]["concurrency"] for r in sweep]
    ys = [r["result"]["lines_per_s"] for r in sweep]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(xs, ys, marker="o")
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_xlabel("genaiops eval run --concurrency")
    ax.set_ylabel("lines/s (end to end)")
    ax.set_title("FAQ set, local SmolLM2, continuous batching")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", help="a GENAIOPS_HOME whose python-docs index has alias current")
    ap.add_argument("--lines", type=int, default=30)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--label", default="after")
    ap.add_argument("--note", default="", help="how --home's index was built (rendered)")
    ap.add_argument("--profile", action="store_true", help="prefill vs decoding step times")
    ap.add_argument("--render", action="store_true", help="print the markdown, draw the plot")
    ap.add_argument("--write", action="store_true", help="with --render: into benchmarks.md")
    args = ap.parse_args()
    if args.render:
        text = render()
        print(text)
        if args.write:
            write_section(text)
        return
    if not args.home:
        raise SystemExit("--home is required (a home with the python-docs index)")
    # the gateway child runs ``python -m genaiops.cli`` from the current directory: a checkout
    # there (the code before the change) is what serves the model; otherwise this tree
    code_root = Path.cwd() if (Path.cwd() / "genaiops").is_dir() else ROOT
    code = "after" if (code_root / "genaiops/providers/batching.py").exists() else "before"
    commit = subprocess.run(
        ["git", "-C", str(code_root), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    start = [round(x, 2) for x in load()]
    if args.profile:
        args.label = "profile"
        res = profile_model(args.home)
    else:
        res = run_one(args.home, args.lines, args.concurrency)
    path = write_result(
        f"eval_faq_{args.label}",
        {
            "machine": machine(),
            "command": "python bench/eval_faq.py " + " ".join(sys.argv[1:]),
            "code": code,
            "code_commit": commit,
            "torch_threads": os.environ.get("GENAIOPS_TORCH_THREADS", "default"),
            "note": args.note,
            "load_start": start,
            "load_end": [round(x, 2) for x in load()],
            "result": res,
        },
    )
    print(json.dumps({k: v for k, v in res.items() if k != "answers"}, indent=2))
    print(path)


if __name__ == "__main__":
    main()
