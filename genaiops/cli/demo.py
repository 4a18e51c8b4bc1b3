"""The main job on embedded defaults (README's first command): the whole GenAIOps loop."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from genaiops.cli._output import StageBar, console, emit_json, err_console


def demo(
    json_: Annotated[bool, typer.Option("--json")] = False,
    track: Annotated[bool, typer.Option("--track/--no-track", help="Log to MLflow.")] = True,
) -> None:
    """Build the sample index, start the gateway, evaluate the rag flow's variants, gate them.

    Exit status is the gate's: 0 passed, 1 failed.
    """
    from evaluation.demo import run_demo
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
                    k: {m: v["mean"] for m, v in a["metrics"].items()}
                    for k, a in outcome.summary["variants"].items()
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
