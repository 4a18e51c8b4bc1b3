"""The whole evaluation loop as two calls: :func:`evaluate` (run → score → report → track) and
:func:`run_gate` (the same, then the gate verdict against thresholds and a baseline).

    >>> outcome = run_gate(load_gate_config("evaluation/gate.yaml"))      # doctest: +SKIP
    >>> outcome.gate.passed, outcome.reports["markdown"]                 # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from evaluation.config import EvalConfig, GateConfig
from evaluation.gate import GateResult, evaluate_gate, load_baseline
from evaluation.reports import write_reports
from evaluation.runtime.runner import Progress, RunRequest, RunResult, load_run, run_flow, runs_dir
from evaluation.scoring import score_run
from evaluation.summary import EvalSummary
from evaluation.tracking import log_summary

__all__ = ["Outcome", "evaluate", "run_gate"]


@dataclass
class Outcome:
    """Run, summary, report paths, gate verdict (if gated) and MLflow run ids per variant."""

    run: RunResult
    summary: EvalSummary
    reports: dict[str, str]
    gate: GateResult | None = None
    mlflow_runs: dict[str, str] = field(default_factory=dict)


def evaluate(
    req: RunRequest,
    cfg: EvalConfig,
    *,
    resume: str | None = None,
    existing_run: str | None = None,
    progress: Progress | None = None,
    connections: dict[str, Any] | None = None,
    track: bool = True,
    gate: GateConfig | None = None,
    baseline: str | None = None,
) -> Outcome:
    """Run (or reuse ``existing_run``), score, gate if asked, write reports, log to MLflow."""
    if existing_run:
        run = load_run(existing_run)
    else:
        run = run_flow(req, resume=resume, progress=progress, connections=connections)
    summary = score_run(run, cfg)
    result = None
    if gate is not None:
        base = load_baseline(baseline, runs_dir()) if baseline else None
        result = evaluate_gate(summary, gate, base, baseline)
    reports = write_reports(summary, result, run.path)
    reports["summary"] = str(run.path / "summary.json")
    mlflow_runs = {}
    if track:
        mlflow_runs = log_summary(summary, {k: v for k, v in reports.items() if k != "json"})
    return Outcome(run, summary, reports, result, mlflow_runs)


def run_gate(
    cfg: GateConfig,
    *,
    baseline: str | None = None,
    existing_run: str | None = None,
    progress: Progress | None = None,
    connections: dict[str, Any] | None = None,
    track: bool = True,
) -> Outcome:
    """Run the configured flow and data, score, and judge with the gate."""
    r = cfg.run
    req = RunRequest(
        flow=r.flow,
        data=r.data,
        variants=r.variants,
        column_mapping=dict(r.column_mapping),
        index_alias=r.index_alias,
        concurrency=r.concurrency,
        limit=r.limit,
        name="gate",
    )
    return evaluate(
        req,
        cfg.evaluation,
        existing_run=existing_run,
        progress=progress,
        connections=connections,
        track=track,
        gate=cfg,
        baseline=baseline or cfg.baseline,
    )
