"""Learning from production: score captured traffic, watch drift, report, export eval sets.

Works on the gateway's own state (``--config FILE``: its ledger and capture store; default
SQLite under ``$GENAIOPS_HOME/gateway``), so it runs as a batch job (cron, a CI schedule) beside
the gateway. ``evaluate`` and ``check`` exit 1 when a ``monitoring.yaml`` threshold is breached.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from genaiops.cli._output import console, emit_json, err_console

app = typer.Typer(no_args_is_help=True)

ConfigOpt = Annotated[
    str | None,
    typer.Option("--config", "-c", envvar="GENAIOPS_GATEWAY_CONFIG", help="Gateway YAML."),
]
ThresholdsOpt = Annotated[
    str | None,
    typer.Option(
        "--monitoring", "-m", envvar="GENAIOPS_MONITORING", help="monitoring.yaml (thresholds)."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
SinceOpt = Annotated[str, typer.Option(help="Window: records of the last 1h, 30m, 7d, ...")]


def _seconds(text: str, option: str) -> float:
    from gateway.errors import InvalidRequest
    from gateway.rollout import parse_duration
    from genaiops.errors import ConfigError

    try:
        value = parse_duration(text)
    except InvalidRequest:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"{option} must be a duration like 30m, 1h, 7d, got {text!r}")
    return value


@contextmanager
def _open(config: str | None, monitoring: str | None) -> Iterator[tuple[Any, Any, Any]]:
    from evaluation.monitoring.config import load_monitoring_config
    from evaluation.monitoring.sources import GatewayState
    from evaluation.monitoring.store import ScoreStore

    cfg = load_monitoring_config(monitoring)
    state = GatewayState.open(config)
    scores = ScoreStore()
    try:
        yield state, scores, cfg
    finally:
        scores.close()
        state.close()


def _print_breaches(breaches: list[Any]) -> None:
    for b in breaches:
        err_console.print(f"[red]breach[/red] {b.line()}")


def _exit_on(breaches: list[Any]) -> None:
    if breaches:
        raise typer.Exit(1)


@app.command()
def evaluate(
    since: SinceOpt = "1h",
    sample: Annotated[int | None, typer.Option(min=1, help="Score at most N records.")] = None,
    alias: Annotated[str | None, typer.Option(help="Only this model alias.")] = None,
    judge: Annotated[str | None, typer.Option(help="offline | gateway:ALIAS")] = None,
    rescore: Annotated[bool, typer.Option(help="Score already scored records again.")] = False,
    no_mlflow: Annotated[bool, typer.Option("--no-mlflow", help="Do not log to MLflow.")] = False,
    config: ConfigOpt = None,
    monitoring: ThresholdsOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Score captured answers (groundedness, relevance, safety, length, refusals); write the
    online scores to the ledger (rollouts use them) and MLflow; exit 1 on a breach."""
    from evaluation.monitoring.online import evaluate_online
    from genaiops.errors import ConfigError

    window = _seconds(since, "--since")
    with _open(config, monitoring) as (state, scores, cfg):
        if judge is not None:
            if judge != "offline" and not judge.startswith("gateway:"):
                raise ConfigError(f"--judge must be offline or gateway:ALIAS, got {judge!r}")
            cfg.evaluate.judge = judge
        res = evaluate_online(
            state,
            scores,
            cfg,
            since=time.time() - window,
            alias=alias,
            sample=sample,
            rescore=rescore,
            track=not no_mlflow,
        )
    if json_:
        emit_json(res.model_dump())
    else:
        console.print(
            f"scored {res.scored} of {res.captured} captured records "
            f"({res.already_scored} scored before); {res.ledger_scores} online scores in the "
            f"ledger" + (f"; MLflow run {res.mlflow_run_id}" if res.mlflow_run_id else "")
        )
        t = Table("deployment", "variant", "n", "groundedness", "relevance", "refusal", "blocked")
        for g in res.groups:
            t.add_row(
                g.deployment or "-",
                g.variant or "-",
                str(g.n),
                f"{g.groundedness_mean:.2f}" if g.groundedness_mean is not None else "-",
                f"{g.relevance_mean:.2f}" if g.relevance_mean is not None else "-",
                f"{g.refusal_rate:.2f}",
                f"{g.safety_block_rate:.2f}",
            )
        console.print(t)
        _print_breaches(res.breaches)
    _exit_on(res.breaches)


def _drift(
    state: Any,
    scores: Any,
    cfg: Any,
    since: str,
    reference: str | None,
    reference_since: str | None,
    index: str | None,
) -> Any:
    from evaluation.monitoring.drift import compute_drift
    from genaiops.errors import ConfigError

    now = time.time()
    window = _seconds(since, "--since")
    ref_window = None
    if reference_since is not None:
        if reference is not None:
            raise ConfigError("give --reference or --reference-since, not both")
        start = now - _seconds(reference_since, "--reference-since")
        if start >= now - window:
            raise ConfigError("--reference-since must reach further back than --since")
        ref_window = (start, now - window)
    return compute_drift(
        state,
        scores,
        cfg,
        since=now - window,
        until=now,
        reference=reference,
        reference_window=ref_window,
        index=index,
    )


def _build(
    state: Any,
    scores: Any,
    cfg: Any,
    since: str,
    reference: str | None,
    reference_since: str | None,
    index: str | None,
) -> Any:
    """The whole report over ``--since``, drift included (``check`` and ``report``)."""
    from evaluation.monitoring.report import build_report

    rep = _drift(state, scores, cfg, since, reference, reference_since, index)
    return build_report(
        state, scores, cfg, since=time.time() - _seconds(since, "--since"), drift=rep
    )


RefOpt = Annotated[
    str | None, typer.Option(help="Reference questions: an evaluation dataset (JSONL).")
]
RefSinceOpt = Annotated[
    str | None,
    typer.Option(help="Reference: the captured questions from this far back up to --since."),
]
IndexOpt = Annotated[str | None, typer.Option(help="Index for the out-of-domain rate.")]


@app.command()
def drift(
    since: SinceOpt = "1d",
    reference: RefOpt = None,
    reference_since: RefSinceOpt = None,
    index: IndexOpt = None,
    config: ConfigOpt = None,
    monitoring: ThresholdsOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Question drift (energy two-sample test), out-of-domain rate and grounding drift."""
    with _open(config, monitoring) as (state, scores, cfg):
        rep = _drift(state, scores, cfg, since, reference, reference_since, index)
    if json_:
        emit_json(rep.model_dump())
        return
    if rep.question:
        q = rep.question
        console.print(
            f"question drift vs {q.reference}: energy {q.statistic:.4f}, p={q.p_value:.4f} "
            f"({q.n_current} vs {q.n_reference} questions)"
        )
    if rep.out_of_domain:
        o = rep.out_of_domain
        console.print(f"out-of-domain rate on {o.index}@{o.version}: {o.rate:.2f}")
    for g in rep.grounding:
        for v in g.versions:
            console.print(f"grounding {g.index}@{v.version}: mean best score {v.mean:.3f} ({v.n})")
    for n in rep.notes:
        console.print(f"note: {n}")
    _print_breaches(rep.breaches)


@app.command()
def check(
    since: SinceOpt = "1h",
    reference: RefOpt = None,
    reference_since: RefSinceOpt = None,
    index: IndexOpt = None,
    config: ConfigOpt = None,
    monitoring: ThresholdsOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Every threshold over the window (operations, online scores, feedback, drift): exit 1
    and list what breached."""
    with _open(config, monitoring) as (state, scores, cfg):
        report = _build(state, scores, cfg, since, reference, reference_since, index)
    if json_:
        emit_json(
            {"ok": not report.breaches, "breaches": [b.model_dump() for b in report.breaches]}
        )
    elif not report.breaches:
        console.print("ok: no threshold breached")
    _print_breaches(report.breaches)
    _exit_on(report.breaches)


@app.command()
def report(
    out: Annotated[Path, typer.Option(help="Folder for report.html, report.json, report.md.")],
    since: SinceOpt = "7d",
    reference: RefOpt = None,
    reference_since: RefSinceOpt = None,
    index: IndexOpt = None,
    config: ConfigOpt = None,
    monitoring: ThresholdsOpt = None,
    json_: JsonOpt = False,
) -> None:
    """One self-contained HTML page with the plots, plus report.json and report.md."""
    from evaluation.monitoring.report import write_report

    with _open(config, monitoring) as (state, scores, cfg):
        built = _build(state, scores, cfg, since, reference, reference_since, index)
        paths = write_report(built, out)
    if json_:
        emit_json({"paths": paths, "breaches": [b.model_dump() for b in built.breaches]})
    else:
        console.print(f"report: {paths['html']}")
        _print_breaches(built.breaches)


@app.command()
def export(
    where: Annotated[str, typer.Option(help='Filter, e.g. "rating=down or groundedness<3".')],
    out: Annotated[Path, typer.Option(help="JSONL file to write (an evaluation dataset).")],
    since: Annotated[str | None, typer.Option(help="Only the last 7d, 24h, ...")] = None,
    config: ConfigOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Captured records as an evaluation set (question, context, answer to review)."""
    from evaluation.monitoring.export import export_records
    from evaluation.monitoring.where import parse_where

    parse_where(where)  # a bad expression fails before anything is opened
    start = time.time() - _seconds(since, "--since") if since else None
    with _open(config, None) as (state, scores, _):
        n = export_records(state, scores, where, out, since=start)
    if json_:
        emit_json({"path": str(out), "lines": n})
    else:
        console.print(f"wrote {n} line(s) to {out}")
