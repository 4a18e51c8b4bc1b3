"""The whole loop against the real gateway (subprocess on loopback) and the local SmolLM2."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from evaluation.config import load_gate_config
from evaluation.pipeline import run_gate
from evaluation.runtime.local_gateway import local_gateway
from genaiops.settings import reset_settings

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_gate_through_the_real_gateway(sample_index: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_gate_config(REPO / "evaluation/gate.yaml")
    cfg.run.flow = str(REPO / "flows/rag")
    cfg.run.data = str(REPO / "datasets/sample/qa.jsonl")
    cfg.run.limit = 2
    cfg.run.variants = "answer_prompt.terse"
    cfg.thresholds = {}  # a 135M model on two lines: we check the loop, not its quality
    with local_gateway() as gw:
        monkeypatch.setenv("GENAIOPS_GATEWAY_URL", gw.url)
        monkeypatch.setenv("GENAIOPS_API_KEY", gw.api_key)
        reset_settings()
        out = run_gate(cfg, track=False)
    assert out.gate is not None
    lines = out.run.lines["answer_prompt.terse"]
    assert [ln.error for ln in lines] == [None, None], [ln.error for ln in lines]
    assert all(ln.outputs["answer"] and ln.completion_tokens > 0 for ln in lines)
    assert out.summary.variants["answer_prompt.terse"].params.model_deployments
    assert out.gate.passed, [c.describe() for c in out.gate.failures]
    assert os.path.exists(out.reports["markdown"])
