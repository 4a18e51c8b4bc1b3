from __future__ import annotations

import json
import math
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from evaluation.config import GateConfig, load_gate_config
from evaluation.errors import GateError
from evaluation.gate import evaluate_gate, load_baseline
from evaluation.pipeline import run_gate
from evaluation.summary import (
    EvalSummary,
    LineErrorRecord,
    MetricStats,
    ScoredLine,
    VariantAggregate,
    VariantParams,
)
from genaiops.errors import SpecError
from tests.evaluation.fake_openai import FakeOpenAI
from tests.evaluation.fixtures import copy_flow_with_degraded_variant

REPO = Path(__file__).resolve().parents[2]


def _gate_cfg(flow: Path, **extra: object) -> GateConfig:
    base = load_gate_config(REPO / "evaluation/gate.yaml").model_dump()
    base["run"].update(
        flow=str(flow), data=str(REPO / "datasets/sample/qa.jsonl"), variants="all", limit=6
    )
    base["evaluation"]["metrics"] = ["rouge", "retrieval", "groundedness", "cost"]
    base["thresholds"] = {"groundedness": {"min": 3.0}, "recall_at_4": {"min": 0.8}}
    base["regression"]["max_drop"] = {"groundedness": 0.5}
    base.update(extra)
    return GateConfig.model_validate(base)


def test_degraded_variant_fails_good_variants_pass(
    tmp_path: Path, sample_index: Path, fake_gateway: FakeOpenAI
) -> None:
    flow = copy_flow_with_degraded_variant(tmp_path)
    out = run_gate(_gate_cfg(flow), track=False)
    assert out.gate is not None and not out.gate.passed
    failed = {(c.variant, c.metric) for c in out.gate.failures}
    assert failed == {("answer_prompt.degraded", "groundedness")}
    per_variant = out.summary.variants
    assert per_variant["answer_prompt.cited"].metrics["groundedness"].mean >= 4
    assert per_variant["answer_prompt.degraded"].metrics["groundedness"].mean < 3

    md = Path(out.reports["markdown"]).read_text()
    assert "FAILED" in md and "answer_prompt.degraded" in md
    junit = ET.parse(out.reports["junit"]).getroot()
    assert int(junit[0].get("failures")) == 1
    assert "<svg" in Path(out.reports["html"]).read_text()
    assert json.loads(Path(out.reports["json"]).read_text())["gate"]["passed"] is False

    # gating only the good variants (same run, re-scored) passes
    only_good = _gate_cfg(flow, variants=["answer_prompt.cited", "answer_prompt.terse"])
    good = run_gate(only_good, existing_run=out.run.run_id, track=False)
    assert good.gate is not None and good.gate.passed

    # regression: the cited run as baseline for itself passes; degraded vs cited regresses
    base = load_baseline(str(Path(out.reports["summary"])), tmp_path)
    self_cmp = evaluate_gate(out.summary, only_good, base, "self")
    assert self_cmp.passed
    swapped = out.summary.model_copy(deep=True)
    swapped.lines["answer_prompt.cited"] = out.summary.lines["answer_prompt.degraded"]
    swapped.variants["answer_prompt.cited"] = out.summary.variants["answer_prompt.terse"]
    worse = evaluate_gate(
        swapped, _gate_cfg(flow, variants=["answer_prompt.cited"], thresholds={}), base, "baseline"
    )
    reg = [c for c in worse.failures if c.kind == "regression"]
    assert reg and reg[0].metric == "groundedness" and "p=" in reg[0].detail


def _summary(values: dict[str, list[float]], errors: int = 0) -> EvalSummary:
    lines = {
        v: [ScoredLine(line_id=f"q{i}", scores={"rougeL": x}) for i, x in enumerate(xs)]
        for v, xs in values.items()
    }
    variants = {
        v: VariantAggregate(
            n_lines=len(xs),
            n_errors=errors,
            errors=[LineErrorRecord(line_id="q0", message="boom")] * errors,
            metrics={"rougeL": MetricStats(mean=sum(xs) / len(xs))},
            params=VariantParams(variant=v),
        )
        for v, xs in values.items()
    }
    return EvalSummary(run_id="r", flow="f", data="d", n_rows=1, variants=variants, lines=lines)


def test_noise_does_not_fail_but_a_real_drop_does() -> None:
    cfg = GateConfig.model_validate({"regression": {"alpha": 0.05, "max_drop": {"rougeL": 0.02}}})
    base = [0.5, 0.6, 0.4, 0.55, 0.45, 0.5, 0.6, 0.4, 0.5, 0.52]
    noisy = [x + (0.04 if i % 2 else -0.05) for i, x in enumerate(base)]  # mean -0.005
    assert evaluate_gate(_summary({"v": noisy}), cfg, _summary({"v": base})).passed
    small_sample = _summary({"v": [0.2, 0.6]})  # big drop on one of two lines: not significant
    assert evaluate_gate(small_sample, cfg, _summary({"v": [0.5, 0.6]})).passed
    dropped = [x - 0.1 for x in base]
    res = evaluate_gate(_summary({"v": dropped}), cfg, _summary({"v": base}))
    assert not res.passed and res.failures[0].kind == "regression"


def test_any_errored_line_fails_and_missing_metric_fails() -> None:
    cfg = GateConfig.model_validate({"thresholds": {"rougeL": {"min": 0.0}}})
    assert evaluate_gate(_summary({"v": [0.9]}), cfg).passed
    res = evaluate_gate(_summary({"v": [0.9]}, errors=1), cfg)
    assert [c.kind for c in res.failures] == ["errors"] and "boom" in res.failures[0].detail
    cfg2 = GateConfig.model_validate({"thresholds": {"groundedness": {"min": 3}}})
    res2 = evaluate_gate(_summary({"v": [0.9]}), cfg2)
    assert not res2.passed and "not computed" in res2.failures[0].detail
    with pytest.raises(GateError, match="not run"):
        evaluate_gate(_summary({"v": [0.9]}), GateConfig(variants=["w"]))


def test_gate_config_errors_name_file_and_key(tmp_path: Path) -> None:
    p = tmp_path / "gate.yaml"
    p.write_text("thresholds:\n  rougeL: {minimum: 0.3}\n")
    with pytest.raises(SpecError) as e:
        load_gate_config(p)
    assert str(p) in str(e.value) and "thresholds.rougeL.minimum" in str(e.value)


def test_nan_judgements_are_counted_by_the_gate() -> None:
    s = _summary({"v": [0.9]})
    s.variants["v"].judge_failures = {"groundedness": 2}
    res = evaluate_gate(s, GateConfig())
    assert not res.passed and res.failures[0].metric == "failed_judgements"
    assert not math.isnan(res.failures[0].value or 0)


def test_ci_runs_tests_and_the_same_lint_everywhere() -> None:
    """GitHub Actions, Azure Pipelines and .ci/run run the tests and `make lint`, which is ruff
    check + ruff format --check + mypy over every top-level package (evaluation.runtime too)."""
    import tomllib

    import yaml

    makefile = (REPO / "Makefile").read_text()
    lint = makefile.split("\nlint:", 1)[1].split("\n\n", 1)[0]
    for tool in ("ruff check .", "ruff format --check .", "mypy"):
        assert tool in lint, tool
    ci = yaml.safe_load((REPO / ".github/workflows/ci.yml").read_text())
    steps = [s.get("run", "") for job in ci["jobs"].values() for s in job["steps"]]
    assert "make lint" in steps and any(s.startswith("make test") for s in steps)
    azure = yaml.safe_load((REPO / ".azure-pipelines/eval-gate.yml").read_text())
    scripts = [s.get("script", "") for s in azure["steps"]]
    assert "make lint" in scripts and any(s.startswith("make test") for s in scripts)
    run = (REPO / ".ci/run").read_text()
    assert "make lint" in run and "make test" in run
    mypy = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["mypy"]["packages"]
    packages = sorted(p.parent.name for p in REPO.glob("*/__init__.py") if p.parent.name != "tests")
    assert sorted(mypy) == packages  # every package (training/ too once it exists), no others
    assert (REPO / "evaluation/runtime/__init__.py").exists()  # checked as part of evaluation
