"""The on-disk contracts (summary.json, scores.jsonl, report.json) and the rendered reports, on
the committed baseline (real data, no flow run)."""

from __future__ import annotations

import doctest
import importlib
import json
import math
from importlib import resources
from pathlib import Path

import pytest

from evaluation.config import load_gate_config
from evaluation.errors import RunNotFound, SummaryError
from evaluation.gate import GateResult, evaluate_gate, load_baseline
from evaluation.reports import ReportFile, render_html, render_markdown, write_reports
from evaluation.summary import (
    SCHEMA_VERSION,
    EvalSummary,
    ScoredLine,
    SkippedMetric,
    load_summary,
    write_scores,
    write_summary,
)

REPO = Path(__file__).resolve().parents[2]
BASELINE = REPO / "evaluation/baselines/sample.json"


@pytest.fixture(scope="module")
def baseline() -> EvalSummary:
    return load_summary(BASELINE)


def test_the_committed_pre_versioned_baseline_loads(baseline: EvalSummary) -> None:
    raw = json.loads(BASELINE.read_text())
    assert "schema_version" not in raw  # written before the contract: loads as version 1
    assert baseline.schema_version == SCHEMA_VERSION == 1
    assert set(baseline.variants) == {"answer_prompt.cited", "answer_prompt.terse"}
    cited = baseline.variants["answer_prompt.cited"]
    assert cited.n_lines == 17 and cited.params.model_alias == "genaiops-local"
    assert (
        cited.metrics["groundedness"].mean
        == raw["variants"]["answer_prompt.cited"]["metrics"]["groundedness"]["mean"]
    )
    assert baseline.lines["answer_prompt.cited"][0].scores["groundedness_result"] == "fail"
    assert load_baseline(str(BASELINE), REPO).run_id == raw["run_id"]


def test_summary_round_trips_with_nan_as_null(tmp_path: Path, baseline: EvalSummary) -> None:
    s = baseline.model_copy(deep=True)
    s.variants["answer_prompt.cited"].metrics["bleu"].low = math.nan
    s.lines["answer_prompt.cited"][0].scores["groundedness"] = math.nan
    p = write_summary(s, tmp_path / "summary.json")
    text = p.read_text()
    assert "NaN" not in text  # standard JSON for CI tools
    raw = json.loads(text)
    assert raw["schema_version"] == SCHEMA_VERSION
    assert raw["variants"]["answer_prompt.cited"]["metrics"]["bleu"]["low"] is None
    back = load_summary(p)
    assert math.isnan(back.variants["answer_prompt.cited"].metrics["bleu"].low)
    assert back.lines["answer_prompt.cited"][0].scores["groundedness"] is None
    back.variants["answer_prompt.cited"].metrics["bleu"].low = (
        s.variants["answer_prompt.cited"].metrics["bleu"].low
    )
    assert back.lines["answer_prompt.terse"] == s.lines["answer_prompt.terse"]


def test_a_newer_schema_version_fails_clearly(tmp_path: Path) -> None:
    raw = json.loads(BASELINE.read_text())
    raw["schema_version"] = SCHEMA_VERSION + 1
    p = tmp_path / "future.json"
    p.write_text(json.dumps(raw))
    with pytest.raises(SummaryError, match=rf"{p}: schema_version 2 is newer .*upgrade genaiops"):
        load_summary(p)


def test_a_broken_summary_names_the_file_and_the_key(tmp_path: Path) -> None:
    raw = json.loads(BASELINE.read_text())
    del raw["variants"]["answer_prompt.cited"]["n_lines"]
    raw["variants"]["answer_prompt.terse"]["metrics"]["bleu"]["meen"] = 1.0
    p = tmp_path / "broken.json"
    p.write_text(json.dumps(raw))
    with pytest.raises(SummaryError) as e:
        load_summary(p)
    msg = str(e.value)
    assert str(p) in msg and "variants.answer_prompt.cited.n_lines: required key" in msg
    assert "variants.answer_prompt.terse.metrics.bleu.meen: unknown key" in msg
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(SummaryError, match="expected a JSON object"):
        load_summary(tmp_path / "list.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(SummaryError, match="not a readable summary JSON"):
        load_summary(tmp_path / "bad.json")
    with pytest.raises(RunNotFound, match="neither a file nor a scored run"):
        load_baseline("no-such-run", tmp_path)


def test_scores_jsonl_and_report_json_are_typed(tmp_path: Path, baseline: EvalSummary) -> None:
    lines = baseline.lines["answer_prompt.terse"]
    p = write_scores(lines, tmp_path / "scores.jsonl")
    back = [ScoredLine.model_validate_json(x) for x in p.read_text().splitlines()]
    assert back == lines
    gate = evaluate_gate(baseline, load_gate_config(REPO / "evaluation/gate.yaml"), baseline, "b")
    paths = write_reports(baseline, gate, tmp_path)
    doc = ReportFile.model_validate_json(Path(paths["json"]).read_text())
    assert doc.schema_version == SCHEMA_VERSION and doc.summary.run_id == baseline.run_id
    assert isinstance(doc.gate, GateResult) and doc.gate == gate and doc.gate.passed
    assert json.loads(Path(paths["json"]).read_text())["gate"]["checks"][0]["kind"] == "errors"


def test_html_report_is_html_not_markdown(baseline: EvalSummary) -> None:
    gate = evaluate_gate(baseline, load_gate_config(REPO / "evaluation/gate.yaml"), baseline, "b")
    page = render_html(baseline, gate)
    assert "<pre>" not in page and "|---|" not in page and "✅" not in page
    assert 'id="verdict">gate PASSED' in page and '<table id="aggregates">' in page
    assert page.count('<table class="lines"') == 2
    cited = page.split('data-variant="answer_prompt.cited"')[1].split("</table>")[0]
    assert cited.count("<tr") == 1 + 17  # header + every line
    # worst first: the lowest groundedness line of the variant comes first
    lines = baseline.lines["answer_prompt.cited"]
    worst = min(lines, key=lambda s: (s.scores["groundedness"], s.scores["relevance"]))
    first_row = cited.split("<tr")[2]
    assert f"<td>{worst.line_id}</td>" in first_row
    assert worst.retrieved_ids and ", ".join(worst.retrieved_ids) in first_row
    # user text is escaped, not injected
    evil = baseline.model_copy(deep=True)
    evil.lines["answer_prompt.cited"][0].answer = "<script>alert(1)</script>"
    assert "<script>alert" not in render_html(evil, None)


def test_markdown_lines_worst_first_and_skipped_metrics_shown(baseline: EvalSummary) -> None:
    s = baseline.model_copy(deep=True)
    s.skipped = [SkippedMetric(metric="bleu", reason="skipped: no ground_truth mapped")]
    md = render_markdown(s, None, max_lines=3)
    head = md.split("<details>")[0]  # what the CLI prints
    assert "**Skipped metrics**" in head and "- bleu: skipped: no ground_truth mapped" in head
    section = md.split("Lines: answer_prompt.cited")[1].split("</details>")[0]
    rows = [r for r in section.splitlines() if r.startswith("| q")]
    assert len(rows) == 3
    scores = [float(r.split(" | ")[2]) for r in rows]  # groundedness column
    assert scores == sorted(scores) and scores[0] == 1.0


def test_templates_ship_as_package_data() -> None:
    files = resources.files("evaluation") / "templates"
    assert (files / "report.html.jinja2").is_file() and (files / "chart.svg.jinja2").is_file()
    text = (REPO / "pyproject.toml").read_text()
    assert '"*.jinja2"' in text  # setuptools package-data pattern that carries them


@pytest.mark.parametrize("name", ["summary", "reports", "config"])
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(f"evaluation.{name}"))
    assert result.failed == 0 and result.attempted > 0


SCORING_SIDE = [
    "agreement",
    "config",
    "errors",
    "gate",
    "judges",
    "metrics",
    "pipeline",
    "ragas_adapter",
    "reports",
    "scoring",
    "stats",
    "summary",
    "tracking",
]


@pytest.mark.parametrize("name", SCORING_SIDE)
def test_scoring_side_imports_evaluation_at_module_level(name: str) -> None:
    """No lazy ``from evaluation...`` inside functions (an import cycle hidden behind one);
    scoring depends on the runtime, never the other way round from this side."""
    import ast

    tree = ast.parse((REPO / "evaluation" / f"{name}.py").read_text())
    lazy = [
        f"line {node.lineno}: {ast.unparse(node)}"
        for fn in ast.walk(tree)
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
        for node in ast.walk(fn)
        if isinstance(node, ast.ImportFrom | ast.Import)
        and any(
            (getattr(node, "module", None) or a.name).split(".")[0] == "evaluation"
            for a in node.names
        )
    ]
    assert lazy == []


def test_scoring_imports_cleanly_in_a_fresh_interpreter() -> None:
    import subprocess
    import sys

    code = "import evaluation.scoring, evaluation.pipeline, evaluation.reports; print('ok')"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]
