"""Training jobs: run a spec, list and show tracked runs, promote, roll back, export to Azure ML.

genaiops train run training/specs/prompt_attack.yaml [--device cpu] [--set params.C=2]
genaiops train list [--model prompt-attack]
genaiops train show RUN_ID
genaiops train promote prompt-attack [--version 3]     # exit 1 + numbers when refused
genaiops train promote generator-faq                   # + evaluation gate, gateway rollout
genaiops train rollback prompt-attack
genaiops train export training/specs/prompt_attack.yaml --target azureml [-o job.yaml]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from genaiops.cli._output import StageBar, console, emit_json, err_console
from genaiops.errors import ConfigError

app = typer.Typer(no_args_is_help=True, help=__doc__.splitlines()[0])

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


class JobProgress(StageBar):
    """:class:`StageBar` plus ETA and the latest loss per stage (off for --json)."""

    def __init__(self, enabled: bool):
        super().__init__(enabled)
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=err_console,
            transient=True,
        )

    def __call__(self, stage: str, done: int, total: int, **info: Any) -> None:
        if not self.enabled:
            return
        text = " ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in info.items()
        )
        if stage not in self.tasks:
            self.tasks[stage] = self.bar.add_task(stage, total=total or 1, info=text)
        self.bar.update(self.tasks[stage], completed=done, total=total or 1, info=text)


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


@app.command("run")
def run_cmd(
    spec: Annotated[Path, typer.Argument(help="Job spec (training/specs/*.yaml).")],
    device: Annotated[str | None, typer.Option(help="cpu | cuda | auto (overrides spec).")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a spec key: params.C=2.")
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Train a job spec, track it in MLflow and register the result as the challenger."""
    from training import load_spec, run_job

    if device is not None and device not in ("cpu", "cuda", "auto"):
        raise ConfigError(f"--device {device!r}: expected cpu, cuda or auto")
    job = load_spec(spec, set_, device)
    with JobProgress(not json_) as bar:
        report = run_job(job, spec_path=spec, progress=bar)
    if json_:
        emit_json(report.model_dump(mode="json"))
        return
    console.print(
        f"run [bold]{report.run_id}[/] → [bold]{report.model}[/] v{report.version} "
        f"(alias challenger) in {report.duration_s:.1f}s on {report.device}"
    )
    t = Table("metric", "value")
    for k in (
        "precision",
        "recall",
        "f1",
        "roc_auc",
        "threshold",
        "fpr",
        "fpr_innocent_triggers",
        "offline_recall",
        "offline_fpr",
        "ndcg_at_10_hybrid",
        "base_ndcg_at_10_hybrid",
        "rougeL",
        "base_rougeL",
        "answer_similarity",
        "base_answer_similarity",
        "groundedness",
        "base_groundedness",
        "val_loss",
        "base_val_loss",
        "train_tokens_per_s",
        "time_per_epoch_s",
    ):
        if k in report.metrics:
            t.add_row(k, _fmt(report.metrics[k]))
    console.print(t)
    if report.per_source:
        s = Table("source (test split)", "n", "flagged", "rate")
        for name, f in report.per_source.items():
            s.add_row(name, str(f.n), str(f.flagged), f"{f.rate:.1%}")
        console.print(s)
    if "context_source" in report.extra:
        console.print(f"context: {report.extra['context_source']}")
    console.print(
        f"tracking: {report.tracking_uri}  ·  next: genaiops train promote {report.model}"
    )


@app.command("list")
def list_cmd(
    model: Annotated[str | None, typer.Option(help="Only runs of this model.")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 50,
    json_: JsonOpt = False,
) -> None:
    """Tracked training runs, newest first."""
    from training import list_runs

    rows = list_runs(model, limit)
    if json_:
        emit_json(rows)
        return
    t = Table("run", "model", "kind", "status", "started", "version", "aliases", "f1", "roc_auc")
    for r in rows:
        m = r["metrics"]
        t.add_row(
            r["run_id"][:12],
            r["model"],
            r["kind"] or "",
            r["status"],
            r["started"][:19],
            r["version"] or "",
            ",".join(r["aliases"]),
            _fmt(m.get("f1", "")),
            _fmt(m.get("roc_auc", "")),
        )
    console.print(t)


@app.command("show")
def show_cmd(run: Annotated[str, typer.Argument(help="Run id.")], json_: JsonOpt = False) -> None:
    """One run: params, metrics, data provenance and environment."""
    from training import show_run

    info = show_run(run)
    if json_:
        emit_json(info)
        return
    console.print(f"run [bold]{info['run_id']}[/] ({info['status']}) {info['artifact_uri']}")
    t = Table("metric", "value")
    for k, v in sorted(info["metrics"].items()):
        t.add_row(k, _fmt(v))
    console.print(t)
    rep = info.get("report") or {}
    for rec in rep.get("data", []):
        console.print(
            f"data: {rec['name']} {rec.get('version') or ''} {rec['location']} "
            f"sha256:{rec['sha256'][:16]} ({rec['examples']} examples)"
        )
    env = rep.get("environment") or {}
    if env:
        console.print(
            f"env: python {env['python']} on {env['device']}, git {env['git_commit'][:12]}"
            f"{' (dirty)' if env['git_dirty'] else ''}"
        )


@app.command("promote")
def promote_cmd(
    model: Annotated[str, typer.Argument(help="Registered model name.")],
    version: Annotated[str | None, typer.Option(help="Version (default: the challenger).")] = None,
    json_: JsonOpt = False,
) -> None:
    """Make the challenger the champion if it beats the champion on its held-out evaluation."""
    from training import PromotionRefused, promote

    try:
        out = promote(model, version)
    except PromotionRefused as e:
        if json_:
            emit_json({"promoted": False, "reason": str(e), "comparison": e.comparison})
        else:
            err_console.print(f"refused: {e}")
        sys.exit(1)
    if json_:
        emit_json({"promoted": True, **out})
        return
    c = out.get("comparison")
    detail = (
        f" ({c['metric']} {c['challenger']:.4f} vs champion {c['champion']:.4f})"
        if c
        else " (first champion)"
    )
    console.print(f"{model} v{out['version']} is now the champion{detail}")
    _print_handoff(out.get("gate"), out.get("handoff"))


def _print_handoff(gate: Any, handoff: Any) -> None:
    """One line per hand-off step: the evaluation gate, the index, the gateway rollout."""
    g = (gate or {}).get("gate")
    if isinstance(g, dict):
        console.print(f"evaluation gate passed ({g['checks']} checks, run {g['run_id']})")
    elif g:
        console.print(f"evaluation gate {g}")
    if not isinstance(handoff, dict):
        return
    if "built" in handoff:
        console.print(
            f"index {handoff['index']}: {handoff['built']} promoted "
            f"({', '.join(f'{k} {v:.4f}' for k, v in handoff['metrics'].items())})"
        )
    if "deployment" in handoff:
        ro = handoff["rollout"]
        state = "started" if ro.get("started") else f"NOT started: {ro.get('reason')}"
        console.print(
            f"gateway deployment {handoff['deployment']} in {handoff['config']}; "
            f"rollout {state} via {ro.get('via')}"
        )
        if ro.get("next"):
            console.print(f"next: {ro['next']}")


@app.command("rollback")
def rollback_cmd(
    model: Annotated[str, typer.Argument(help="Registered model name.")], json_: JsonOpt = False
) -> None:
    """Return the champion alias (and the gateway's copy) to the previous champion."""
    from training import rollback

    out = rollback(model)
    if json_:
        emit_json(out)
        return
    console.print(f"{model}: champion v{out['rolled_back']} → v{out['version']}")
    _print_handoff(None, out.get("handoff"))


@app.command("export")
def export_cmd(
    spec: Annotated[Path, typer.Argument(help="Job spec.")],
    target: Annotated[str, typer.Option(help="Only azureml.")] = "azureml",
    out: Annotated[
        Path | None, typer.Option("-o", "--out", help="Write here (else stdout).")
    ] = None,
    compute: Annotated[str, typer.Option(help="Azure ML compute target.")] = "azureml:cpu-cluster",
    set_: Annotated[list[str] | None, typer.Option("--set", help="Spec override.")] = None,
    json_: JsonOpt = False,
) -> None:
    """Write an Azure ML command job YAML that runs this spec's entry point."""
    from training import export_azureml

    if target != "azureml":
        raise ConfigError(f"--target {target!r}: only azureml is supported")
    text = export_azureml(
        spec, compute=compute, overrides=set_, relative_to=out.parent if out else None
    )
    if out is not None:
        out.write_text(text, encoding="utf-8")
    if json_:
        emit_json({"target": target, "path": str(out) if out else None, "yaml": text})
    elif out is None:
        print(text, end="")
    else:
        console.print(f"wrote {out} (az ml job create -f {out})")
