"""The main job: the whole loop on embedded defaults, in one call (``genaiops demo``).

Builds the sample index (promoted to ``current``), starts the gateway on loopback (local
SmolLM2, no keys), runs every variant of ``flows/rag`` over ``datasets/sample/qa.jsonl``,
scores them, gates them with ``evaluation/gate.yaml`` against the committed baseline, and
returns the outcome with the report paths. The gateway is stopped on the way out.

    >>> outcome, build = run_demo()                                      # doctest: +SKIP
    >>> outcome.gate.passed, outcome.reports["html"]                     # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from evaluation.config import load_gate_config
from evaluation.local_gateway import using_local_gateway
from evaluation.pipeline import Outcome, run_gate

__all__ = ["BASELINE", "GATE_CONFIG", "run_demo"]

ROOT = Path(__file__).resolve().parents[1]
GATE_CONFIG = ROOT / "evaluation" / "gate.yaml"
BASELINE = ROOT / "evaluation" / "baselines" / "sample.json"
SAMPLE_SPEC = ROOT / "indexing" / "specs" / "sample.yaml"


def run_demo(
    say: Callable[[str], None] = print, progress: Any = None, track: bool = True
) -> tuple[Outcome, Any]:
    from indexing import build_index, load_index_spec

    build = build_index(load_index_spec(SAMPLE_SPEC), promote="current")
    say(build.message)
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
