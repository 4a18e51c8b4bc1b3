"""Check and try prompt flows; create the promptflow connection to the gateway.

genaiops flow validate flows/rag
genaiops flow test flows/rag -i question="How do I rotate logs?" --variant answer_prompt.terse
genaiops flow connections          # pf connection 'genaiops_gateway' from GENAIOPS_* settings;
                                   # on a headless machine also keyring's keyringrc.cfg
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from genaiops.cli._output import console, emit_json
from genaiops.errors import ConfigError

# each command imports the flow runtime when it runs, so `genaiops --help` stays fast
app = typer.Typer(no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


@app.command()
def validate(
    flow: Annotated[str, typer.Argument(help="Flow folder.")] = "flows/rag",
    json_: JsonOpt = False,
) -> None:
    """Check references, node types, tool files and variants (deeper than `pf flow validate`)."""
    from evaluation.runtime.flow import load_flow, select_variants

    f = load_flow(flow)
    info = {
        "flow": str(f.path),
        "inputs": list(f.inputs),
        "outputs": list(f.outputs),
        "nodes": [n.name for n in f.resolved_nodes()],
        "variants": [v.label for v in select_variants(f, "grid")],
    }
    if json_:
        emit_json(info | {"valid": True})
    else:
        console.print(
            f"[green]valid[/] {escape(str(f.path))}: nodes {', '.join(info['nodes'])}; "
            f"variants {', '.join(info['variants'])}"
        )


@app.command()
def test(
    flow: Annotated[str, typer.Argument(help="Flow folder.")] = "flows/rag",
    inputs: Annotated[list[str] | None, typer.Option("--inputs", "-i", help="NAME=VALUE")] = None,
    variant: Annotated[str, typer.Option(help="default or NODE.VARIANT")] = "default",
    json_: JsonOpt = False,
) -> None:
    """Run one line with the genaiops runner (no promptflow needed) and print the outputs."""
    from evaluation.runtime.executor import FlowExecutor
    from evaluation.runtime.flow import load_flow, select_variants

    values = {}
    for pair in inputs or []:
        k, sep, v = pair.partition("=")
        if not sep:
            raise ConfigError(f"--inputs {pair!r}: expected NAME=VALUE")
        values[k.strip()] = v
    f = load_flow(flow)
    vs = select_variants(f, variant)[0]
    res = FlowExecutor(f).run_line(values, vs)
    if json_:
        emit_json(res.to_dict())
    else:
        if res.error:
            console.print(f"[red]error[/] {escape(res.error['message'])}")
        for k, v in res.outputs.items():
            if k != "context":
                console.print(f"[bold]{k}:[/] {escape(str(v))}")
        console.print(
            f"[dim]{res.variant} · {res.latency_s:.2f}s · tokens "
            f"{res.prompt_tokens}+{res.completion_tokens}[/]"
        )
    if res.error:
        raise typer.Exit(1)


@app.command()
def connections(
    base_url: Annotated[str | None, typer.Option(help="Default: GENAIOPS_GATEWAY_URL.")] = None,
    json_: JsonOpt = False,
) -> None:
    """Create/update promptflow's OpenAI connection `genaiops_gateway` (base_url = gateway) and
    leave promptflow working for later `pf` commands (keyring and telemetry config files)."""
    from evaluation.runtime.pf_runner import ensure_connection

    info = ensure_connection(base_url=base_url)
    if json_:
        emit_json(info)
        return
    console.print(f"connection {info['name']} -> {info['base_url']}")
    for path, what in info["configured"].items():
        console.print(f"[dim]wrote {escape(path)}: {escape(what)}[/]")
