"""Run flows over datasets, score them, and gate pull requests on the results.

genaiops eval run --flow flows/rag --data datasets/sample/qa.jsonl --variants all
genaiops eval gate --config evaluation/gate.yaml --baseline evaluation/baselines/sample.json
"""

from __future__ import annotations

import contextlib
import math
import shutil
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from genaiops.cli._output import StageBar, console, emit_json, err_console
from genaiops.errors import ConfigError

app = typer.Typer(no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _mapping(pairs: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in pairs or []:
        key, sep, value = p.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"--column-mapping {p!r}: expected INPUT=VALUE, e.g. question='${{data.question}}'"
            )
        out[key.strip()] = value.strip()
    return out


def _mean(x: float) -> float | None:
    return None if math.isnan(x) else x


def _print_outcome(outcome: Any, json_: bool, extra: dict[str, Any] | None = None) -> None:
    from evaluation.reports import render_markdown

    if json_:
        data = {
            "run_id": outcome.run.run_id,
            "reports": outcome.reports,
            "mlflow_runs": outcome.mlflow_runs,
            "variants": {
                k: {
                    "metrics": {m: _mean(v.mean) for m, v in a.metrics.items()},
                    "n_errors": a.n_errors,
                    "judge_failures": a.judge_failures,
                    "params": a.params.model_dump(mode="json"),
                }
                for k, a in outcome.summary.variants.items()
            },
            "skipped": [k.model_dump(mode="json") for k in outcome.summary.skipped],
            "gate": outcome.gate.to_dict() if outcome.gate else None,
            **(extra or {}),
        }
        emit_json(data)
        return
    md = render_markdown(outcome.summary, outcome.gate, max_lines=0)
    console.print(escape(md.split("<details>")[0].rstrip()))
    for name, path in outcome.reports.items():
        console.print(f"[dim]{name}:[/] {escape(path)}")


@app.command()
def run(
    flow: Annotated[str, typer.Option("--flow", help="Flow folder.")] = "flows/rag",
    data: Annotated[
        str, typer.Option("--data", help="JSONL file ('faq' = the python FAQ set).")
    ] = "datasets/sample/qa.jsonl",
    variants: Annotated[str, typer.Option(help="default | all | grid | NODE.VARIANT")] = "default",
    index_alias: Annotated[str | None, typer.Option(help="Index alias for every line.")] = None,
    column_mapping: Annotated[
        list[str] | None,
        typer.Option("--column-mapping", "-m", help="INPUT='${data.COLUMN}' (repeatable)."),
    ] = None,
    concurrency: Annotated[
        int,
        typer.Option(min=1, max=64, help="Lines in flight (8 fills the local model's batch)."),
    ] = 8,
    limit: Annotated[int | None, typer.Option(help="Only the first N lines.")] = None,
    resume: Annotated[str | None, typer.Option(help="Continue an interrupted run id.")] = None,
    judge: Annotated[str, typer.Option(help="offline | gateway:<model alias>")] = "offline",
    repeats: Annotated[int, typer.Option(min=1, help="Judge repeats (mean + CI).")] = 1,
    k: Annotated[int, typer.Option(help="Cut-off for recall@k / nDCG@k.")] = 4,
    runner: Annotated[str, typer.Option(help="genaiops | pf (promptflow's pf run)")] = "genaiops",
    engine: Annotated[
        str,
        typer.Option(
            help="local (threads) | ray (Ray tasks: a local Ray, or the cluster at RAY_ADDRESS);"
            " --concurrency bounds the lines in flight either way."
        ),
    ] = "local",
    baseline: Annotated[str | None, typer.Option(help="Baseline run id or summary file.")] = None,
    track: Annotated[bool, typer.Option("--track/--no-track", help="Log to MLflow.")] = True,
    json_: JsonOpt = False,
) -> None:
    """Run a flow's variants over a dataset, score every line, write reports, log to MLflow."""
    from evaluation.config import EvalConfig, GateConfig, RegressionConfig
    from evaluation.pipeline import evaluate
    from evaluation.runtime.runner import RunRequest

    if engine not in ("local", "ray"):
        raise ConfigError(f"--engine must be local or ray, not {engine!r}")
    if engine == "ray" and runner != "genaiops":
        raise ConfigError("--engine ray runs the genaiops runner; pf runs its own lines")
    cfg = EvalConfig(judge=judge, repeats=repeats, k=k)
    req = RunRequest(
        flow=flow,
        data=data,
        variants=variants,
        column_mapping=_mapping(column_mapping),
        index_alias=index_alias,
        concurrency=concurrency,
        limit=limit,
        engine=engine,  # type: ignore[arg-type]  # checked above
    )
    gate = None
    if baseline:  # comparison only: no thresholds, report every delta with its p-value
        gate = GateConfig(
            regression=RegressionConfig(
                max_drop={
                    m: float("inf")
                    for m in (
                        "groundedness",
                        "relevance",
                        "answer_similarity",
                        "rougeL",
                        f"recall_at_{k}",
                    )
                }
            )
        )
    connections = None
    if runner == "pf":
        from evaluation.runtime.pf_runner import ensure_connection

        ensure_connection()
        req.name = "pf"
        outcome = _pf_evaluate(req, cfg, gate, baseline, track)
    elif runner != "genaiops":
        raise ConfigError("--runner must be genaiops or pf")
    else:
        with StageBar(not json_) as bar:
            outcome = evaluate(
                req,
                cfg,
                resume=resume,
                progress=bar,
                connections=connections,
                track=track,
                gate=gate,
                baseline=baseline,
            )
    _print_outcome(outcome, json_)


def _pf_evaluate(req: Any, cfg: Any, gate: Any, baseline: str | None, track: bool) -> Any:
    """Execute with ``pf run`` (one per variant), then the same scoring/reports/gate."""
    from evaluation.pipeline import evaluate
    from evaluation.runtime.pf_runner import pf_run_flow

    run_id = pf_run_flow(req)
    return evaluate(req, cfg, existing_run=run_id, track=track, gate=gate, baseline=baseline)


def _start_local_gateway(stack: contextlib.ExitStack, quiet: bool) -> None:
    """Serve the gateway on a free loopback port for the rest of ``stack``; point settings at it."""
    from evaluation.runtime.local_gateway import using_local_gateway

    gw = stack.enter_context(using_local_gateway())
    if not quiet:
        err_console.print(f"[dim]gateway {gw.url} (pid {gw.pid}, log {gw.log})[/]")


@app.command()
def gate(
    config: Annotated[str, typer.Option("--config", help="Gate YAML.")] = "evaluation/gate.yaml",
    baseline: Annotated[str | None, typer.Option(help="Baseline run id or summary file.")] = None,
    run_id: Annotated[str | None, typer.Option("--run", help="Gate an existing run.")] = None,
    report_dir: Annotated[
        str | None,
        typer.Option(help="Also copy report.md/html/json and junit.xml here (CI artifacts)."),
    ] = None,
    track: Annotated[bool, typer.Option("--track/--no-track", help="Log to MLflow.")] = True,
    local_gateway: Annotated[
        bool,
        typer.Option(
            "--local-gateway", help="Start a gateway on loopback for this run, stop it after."
        ),
    ] = False,
    json_: JsonOpt = False,
) -> None:
    """Run the gate config's flow and data, score, and exit 0 (pass) or 1 (fail)."""
    from evaluation.config import load_gate_config
    from evaluation.pipeline import run_gate

    cfg = load_gate_config(config)
    with contextlib.ExitStack() as stack:
        if local_gateway:
            _start_local_gateway(stack, json_)
        with StageBar(not json_) as bar:
            outcome = run_gate(
                cfg, baseline=baseline, existing_run=run_id, progress=bar, track=track
            )
    assert outcome.gate is not None
    if report_dir:
        dest = Path(report_dir)
        dest.mkdir(parents=True, exist_ok=True)
        for name, p in list(outcome.reports.items()):
            outcome.reports[name] = str(shutil.copy2(p, dest / Path(p).name))
    _print_outcome(outcome, json_)
    if not json_:
        verdict = "[green]PASSED[/]" if outcome.gate.passed else "[red]FAILED[/]"
        console.print(
            f"gate {verdict}: {len(outcome.gate.failures)} failed of "
            f"{len(outcome.gate.checks)} checks"
        )
        for c in outcome.gate.failures:
            console.print(f"  [red]{escape(c.describe())}[/]")
    raise typer.Exit(0 if outcome.gate.passed else 1)


@app.command()
def agreement(
    labels: Annotated[
        str, typer.Option(help="Labeled judge set (JSONL).")
    ] = "datasets/sample/judge_labels.jsonl",
    judge: Annotated[str, typer.Option(help="offline | gateway:<model alias>")] = "offline",
    json_: JsonOpt = False,
) -> None:
    """Agreement of a judge with gold grounded/relevant labels (accuracy, Cohen's kappa)."""
    from evaluation.agreement import measure_agreement

    result = measure_agreement(labels, judge)
    if json_:
        emit_json(result)
        return
    for metric, r in result["metrics"].items():
        console.print(
            f"{metric}: n={r['n']} accuracy={r['accuracy']:.3f} kappa={r['kappa']:.3f} "
            f"failed={r['failed']} (judge {result['judge']})"
        )
        for kind, acc in r["accuracy_by_kind"].items():
            console.print(f"  {kind}: accuracy {acc:.3f}")


@app.command()
def ragas(
    run_id: Annotated[str, typer.Option("--run", help="A scored run id.")],
    metrics: Annotated[
        str, typer.Option(help="Comma-separated ragas metrics.")
    ] = "bleu_score,rouge_score,id_based_context_recall,id_based_context_precision",
    llm: Annotated[
        str | None, typer.Option(help="gateway:<model alias> for LLM metrics (faithfulness).")
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Score a run's lines with ragas metrics (offline ones, or LLM ones via the gateway)."""
    import json

    from pydantic import TypeAdapter

    from evaluation.config import EvalConfig
    from evaluation.ragas_adapter import ragas_scores, ragas_summary
    from evaluation.runtime.runner import load_run
    from evaluation.scoring import line_sample
    from evaluation.summary import MetricStats

    run = load_run(run_id)
    names = [m.strip() for m in metrics.split(",") if m.strip()]
    cfg = EvalConfig()
    out: dict[str, dict[str, MetricStats]] = {}
    for label, lines in run.lines.items():
        samples = [line_sample(cfg, run.rows[ln.index], ln) for ln in lines if not ln.error]
        rows = ragas_scores(samples, names, llm=llm)
        out[label] = ragas_summary(rows, names)
    data = TypeAdapter(dict[str, dict[str, MetricStats]]).dump_json(out, indent=2)
    (run.path / "ragas.json").write_bytes(data)  # NaN as null, like summary.json
    if json_:
        emit_json(json.loads(data))
        return
    for label, summ in out.items():
        cells = ", ".join(f"{m}={v.mean:.3f} (NaN {v.n_nan})" for m, v in summ.items())
        console.print(f"{escape(label)}: {escape(cells)}")
