"""Evaluation benchmarks; writes the "## Evaluation" section of docs/benchmarks.md.

* runner per-line overhead: a one-node flow (a trivial python tool) over N lines, run by the
  genaiops runner and by ``pf run``, against a plain Python loop calling the same function
  (goal < 50 ms/line; promptflow's issue #1318 reports ~430 ms/line);
* metric throughput: ROUGE-1/2/L and BLEU pairs per second on the python FAQ answers;
* optionally (``--faq N``) wall time and tokens for N FAQ questions through the real gateway
  with the local model (needs the python-docs index at alias ``current``).

    python bench/eval_overhead.py [--lines 300] [--pf-lines 100] [--faq 0]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "datasets"
RESULTS = ROOT / "bench" / "results"
if str(ROOT) not in sys.path:  # run as `python bench/eval_overhead.py` from anywhere
    sys.path.insert(0, str(ROOT))


def machine() -> dict[str, Any]:
    """CPU model and core count from /proc (self-contained: no shared bench helpers)."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": sys.version.split()[0]}


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str))
    return path


DOC = ROOT / "docs" / "benchmarks.md"
HEADING = "## Evaluation"

ECHO_TOOL = """import sys
if "promptflow" in sys.modules:
    from promptflow.core import tool
else:
    from evaluation.runtime.flowtools import tool


@tool
def echo(question: str) -> dict:
    return {"answer": question[::-1]}
"""
ECHO_DAG = """inputs:
  question: {type: string}
outputs:
  answer: {type: string, reference: "${echo.output.answer}"}
nodes:
- name: echo
  type: python
  source: {type: code, path: echo.py}
  inputs: {question: "${inputs.question}"}
"""


def make_flow(tmp: Path, n: int) -> tuple[Path, Path]:
    flow = tmp / "echo_flow"
    flow.mkdir(exist_ok=True)
    (flow / "echo.py").write_text(ECHO_TOOL)
    (flow / "flow.dag.yaml").write_text(ECHO_DAG)
    data = tmp / f"data-{n}.jsonl"
    data.write_text(
        "".join(json.dumps({"question": f"question number {i}"}) + "\n" for i in range(n))
    )
    return flow, data


def plain_loop(flow: Path, data: Path) -> float:
    import importlib.util

    spec = importlib.util.spec_from_file_location("echo_bench", flow / "echo.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rows = [json.loads(x) for x in data.read_text().splitlines()]
    t0 = time.perf_counter()
    out = [mod.echo(r["question"]) for r in rows]
    assert len(out) == len(rows)
    return time.perf_counter() - t0


def ours(flow: Path, data: Path) -> float:
    from evaluation.runtime.runner import RunRequest, run_flow

    t0 = time.perf_counter()
    res = run_flow(RunRequest(flow=str(flow), data=str(data), concurrency=1))
    dt = time.perf_counter() - t0
    assert not any(res.errors().values())
    return dt


def pf(flow: Path, data: Path) -> float:
    from evaluation.runtime.pf_runner import pf_batch

    t0 = time.perf_counter()
    lines = pf_batch(flow, data, {"question": "${data.question}"}, None, concurrency=1)
    dt = time.perf_counter() - t0
    assert all(ln.error is None for ln in lines), "pf run had failed lines"
    return dt


def metric_throughput(pairs: int) -> dict[str, float]:
    from evaluation.metrics import BleuEvaluator, EvalSample, RougeEvaluator

    faq = SHARED / "python-docs" / "faq_qa.jsonl"
    answers = [json.loads(x)["answer"] for x in faq.read_text().splitlines()]
    samples = [
        EvalSample(response=answers[i % len(answers)], ground_truth=answers[(i + 1) % len(answers)])
        for i in range(pairs)
    ]
    out = {"pairs": pairs, "mean_answer_chars": sum(map(len, answers)) / len(answers)}
    for name, ev in (("rouge", RougeEvaluator()), ("bleu", BleuEvaluator())):
        ev(samples[0])  # warm up (imports, scorer)
        t0 = time.perf_counter()
        for s in samples:
            ev(s)
        out[f"{name}_pairs_per_s"] = pairs / (time.perf_counter() - t0)
    return out


def faq_run(n: int, index_home: str, concurrency: int) -> dict[str, Any]:
    """N FAQ questions through a loopback gateway (local SmolLM2) with the python-docs index."""
    from evaluation.config import EvalConfig
    from evaluation.pipeline import evaluate
    from evaluation.runtime.local_gateway import local_gateway
    from evaluation.runtime.runner import RunRequest
    from genaiops.settings import reset_settings

    os.environ["GENAIOPS_HOME"] = index_home
    reset_settings()
    variant = "answer_prompt.terse"
    t0 = time.perf_counter()
    with local_gateway() as gw:
        warm = time.perf_counter() - t0
        os.environ["GENAIOPS_GATEWAY_URL"], os.environ["GENAIOPS_API_KEY"] = gw.url, gw.api_key
        reset_settings()
        t1 = time.perf_counter()
        out = evaluate(
            RunRequest(
                flow=str(ROOT / "flows/rag"),
                data="faq",
                variants=variant,
                column_mapping={"index": "python-docs"},
                concurrency=concurrency,
                limit=n,
            ),
            EvalConfig(metrics=["bleu", "rouge", "similarity", "cost", "groundedness"]),
            track=False,
        )
        wall = time.perf_counter() - t1
    lines = out.run.lines[variant]
    m = out.summary.variants[variant].metrics
    return {
        "lines": len(lines),
        "variant": variant,
        "index": "python-docs",
        "concurrency": concurrency,
        "wall_s": wall,
        "gateway_start_and_warm_s": warm,
        "s_per_line": wall / max(1, len(lines)),
        "prompt_tokens": sum(x.prompt_tokens for x in lines),
        "completion_tokens": sum(x.completion_tokens for x in lines),
        "errors": sum(1 for x in lines if x.error),
        "metrics": {
            k: m[k].mean for k in ("rougeL", "answer_similarity", "groundedness") if k in m
        },
    }


def render(r: dict[str, Any]) -> str:
    m, o = r["machine"], r["overhead"]
    lines = [
        HEADING,
        "",
        f"Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores; load average at start "
        f"{r['load_start']} (other jobs share this machine). Command: "
        f"`{r['command']}` ({r['date']}). All numbers below come from that one run.",
        "",
        "### Runner per-line overhead (`bench/eval_overhead.py`)",
        "",
        "A one-node flow whose python tool reverses a string, so everything measured is runner "
        "cost. Overhead/line = (runner wall time − plain loop wall time) / lines. The genaiops "
        "runner figure includes loading the flow, checking the column mapping, writing "
        "`run.json` and one fsync-free JSONL append per line (resumability).",
        "",
        "| runner | lines | wall s | overhead ms/line | goal < 50 ms/line |",
        "|---|---|---|---|---|",
        f"| plain Python loop | {o['lines']} | {o['plain_s']:.4f} | — | |",
        f"| genaiops runner (`genaiops eval run`) | {o['lines']} | {o['ours_s']:.3f} | "
        f"**{o['ours_ms_per_line']:.2f}** | {'met' if o['ours_ms_per_line'] < 50 else 'not met'} |",
    ]
    if "pf_s" in o:
        lines.append(
            f"| promptflow `pf run` (in-process `PFClient.run`, after one warm-up run) | "
            f"{o['pf_lines']} | {o['pf_s']:.1f} | **{o['pf_ms_per_line']:.1f}** (wall/lines; "
            f"{o['pf_small_lines']} lines took {o['pf_small_s']:.1f} s) | "
            f"{'met' if o['pf_ms_per_line'] < 50 else 'not met'} |"
        )
    t = r["metrics"]
    lines += [
        "",
        "### Metric throughput",
        "",
        f"{t['pairs']} (response, ground truth) pairs of python FAQ answers (mean "
        f"{t['mean_answer_chars']:.0f} characters), one evaluator call per pair:",
        "",
        "| metric | pairs/s |",
        "|---|---|",
        f"| ROUGE-1/2/L (rouge-score, stemming) | {t['rouge_pairs_per_s']:.0f} |",
        f"| BLEU (sacrebleu sentence_bleu) | {t['bleu_pairs_per_s']:.0f} |",
    ]
    if r.get("faq"):
        f = r["faq"]
        lines += [
            "",
            "### FAQ set through the gateway with the local model",
            "",
            f"{f['lines']} questions of `faq_qa.jsonl`, flow `flows/rag` variant "
            f"`{f['variant']}`, index `{f['index']}`, concurrency {f['concurrency']}: "
            f"wall {f['wall_s']:.0f} s ({f['s_per_line']:.1f} s/line), "
            f"{f['prompt_tokens']} prompt + {f['completion_tokens']} completion tokens, "
            f"{f['errors']} errored lines (gateway start + model warm-up "
            f"{f['gateway_start_and_warm_s']:.0f} s, not included). Scores: "
            + ", ".join(f"{k} {v:.3f}" for k, v in f["metrics"].items())
            + ". The FAQ pages are not in the corpus, so answers come from the rest of the docs.",
        ]
    return "\n".join(lines) + "\n"


def write_section(text: str) -> None:
    doc = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    start = doc.find(HEADING + "\n")
    if start >= 0:
        nxt = doc.find("\n## ", start + len(HEADING))
        doc = doc[:start] + text + (doc[nxt + 1 :] if nxt >= 0 else "")
    else:
        doc = doc.rstrip("\n") + "\n\n" + text
    DOC.write_text(doc)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=300)
    ap.add_argument("--pf-lines", type=int, default=100)
    ap.add_argument("--pf-small", type=int, default=20)
    ap.add_argument("--pairs", type=int, default=1000)
    ap.add_argument("--no-pf", action="store_true")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--faq", type=int, default=0, help="FAQ questions through the gateway")
    ap.add_argument(
        "--faq-home",
        default=os.environ.get("GENAIOPS_FAQ_HOME", ""),
        help="a GENAIOPS_HOME whose python-docs index has alias current",
    )
    ap.add_argument("--faq-concurrency", type=int, default=4)
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="eval-bench-"))
    os.environ["GENAIOPS_HOME"] = str(home / "home")
    os.environ.setdefault("PF_HOME_DIRECTORY", str(home / "pf-home"))
    os.environ.setdefault("PF_DISABLE_TRACING", "true")
    r: dict[str, Any] = {
        "machine": machine(),
        "load_start": [round(x, 2) for x in os.getloadavg()],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python bench/eval_overhead.py " + " ".join(sys.argv[1:]),
    }
    flow, data = make_flow(home, args.lines)
    plain = min(plain_loop(flow, data) for _ in range(3))
    ours_s = min(ours(flow, data) for _ in range(3))
    o: dict[str, Any] = {
        "lines": args.lines,
        "plain_s": plain,
        "ours_s": ours_s,
        "ours_ms_per_line": 1000 * (ours_s - plain) / args.lines,
    }
    if not args.no_pf:
        from evaluation.runtime.pf_runner import stop_service

        try:
            _, small = make_flow(home, args.pf_small)
            _, big = make_flow(home, args.pf_lines)
            pf(flow, small)  # warm-up: the first pf run starts promptflow's local service
            pf_small = pf(flow, small)
            pf_big = pf(flow, big)
        finally:
            stop_service()
        o.update(
            pf_lines=args.pf_lines,
            pf_small_lines=args.pf_small,
            pf_s=pf_big,
            pf_ms_per_line=1000 * pf_big / args.pf_lines,
            pf_marginal_ms_per_line=1000 * (pf_big - pf_small) / (args.pf_lines - args.pf_small),
        )
    r["overhead"] = o
    r["metrics"] = metric_throughput(args.pairs)
    if args.faq:
        if not args.faq_home:
            raise SystemExit("--faq needs --faq-home (a home with the python-docs index)")
        r["faq"] = faq_run(args.faq, args.faq_home, args.faq_concurrency)
    write_result("eval_overhead", r)
    text = render(r)
    print(text)
    if not args.no_write:
        write_section(text)


if __name__ == "__main__":
    main()
