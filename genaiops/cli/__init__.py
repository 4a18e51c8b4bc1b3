"""The ``genaiops`` command: one Typer app, one module per command group.

Commands parse options and call library functions; ``--json`` prints machine-readable output.
A :class:`~genaiops.errors.GenAIOpsError` becomes a one-line message and exit status 2.
"""

from __future__ import annotations

import logging
import os
import sys

import typer

from genaiops import tracing
from genaiops.errors import GenAIOpsError

__all__ = ["app", "main"]

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="genaiops: versioned indexes, gateway, evaluation gate.",
)


def _register() -> None:
    from genaiops.cli import demo, index

    app.add_typer(index.app, name="index", help="Build, version, promote and query indexes.")
    app.command("demo")(demo.demo)
    for name in ("gateway", "eval", "flow", "train", "monitor"):  # groups added later
        try:
            mod = __import__(f"genaiops.cli.{name}", fromlist=["app"])
        except ModuleNotFoundError as e:
            if e.name != f"genaiops.cli.{name}":
                raise
            continue
        app.add_typer(mod.app, name=name, help=(mod.__doc__ or "").strip().splitlines()[0])


_register()


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    # the application, not library code, sets third-party switches for its own process
    os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    level = os.environ.get("GENAIOPS_LOG_LEVEL", "WARNING").upper()
    logging.basicConfig(level=level)
    for noisy in ("bm25s", "httpx", "sentence_transformers", "transformers"):
        logging.getLogger(noisy).setLevel(max(logging.getLevelName(level), logging.WARNING))
    # traces (OTLP) only when OTEL_EXPORTER_OTLP_ENDPOINT is set; service genaiops-<group>
    group = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1].isalpha() else ""
    tracing.setup_from_env(f"genaiops-{group}" if group else "genaiops")
    try:
        app()
    except GenAIOpsError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)
