"""Reports of a scored run (and its gate verdict): Markdown, HTML with plots, JSON, JUnit XML.

Markdown is short enough for a pull-request comment (aggregates, skipped metrics, failed checks,
baseline deltas; per-line details folded, worst lines first). HTML is rendered from the jinja2
templates in ``evaluation/templates/`` (package data): the same summary as HTML tables, one SVG
bar chart per metric (mean and 95% interval per variant), and one table per variant with every
line, worst first (question, answer, retrieved doc ids, scores, errors). ``report.json`` is a
:class:`ReportFile`. JUnit has one test case per gate check so CI systems show failures
natively.

    >>> paths = write_reports(summary, gate_result, out_dir)              # doctest: +SKIP
    >>> paths["markdown"]                                                 # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import jinja2
from pydantic import BaseModel, ConfigDict

from evaluation.gate import LOWER_IS_BETTER, GateResult
from evaluation.stats import is_nan
from evaluation.summary import SCHEMA_VERSION, EvalSummary, MetricStats, ScoredLine

__all__ = [
    "KEY_METRICS",
    "ReportFile",
    "render_html",
    "render_junit",
    "render_markdown",
    "worst_first",
    "write_reports",
]

KEY_METRICS = (
    "groundedness",
    "relevance",
    "answer_similarity",
    "rougeL",
    "bleu",
    "recall_at_4",
    "mrr",
    "ndcg_at_4",
    "latency_s",
    "total_tokens",
)
_HIDDEN = {"prompt_tokens", "completion_tokens", "cost"}


class ReportFile(BaseModel):
    """``report.json``: the summary and the gate verdict (``None`` when not gated)."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="null")

    schema_version: int = SCHEMA_VERSION
    summary: EvalSummary
    gate: GateResult | None = None


def _fmt(m: MetricStats | None) -> str:
    if m is None or is_nan(m.mean):
        return "n/a"
    s = f"{m.mean:.3g}"
    if not is_nan(m.low):
        s += f" ±{(m.high - m.low) / 2:.2g}"
    if m.n_nan:
        s += f" ({m.n_nan} NaN)"
    return s


def _metrics(summary: EvalSummary) -> list[str]:
    present = {k for v in summary.variants.values() for k in v.metrics}
    ordered = [m for m in KEY_METRICS if m in present]
    return ordered + sorted(present - set(ordered) - _HIDDEN)


def _num(v: Any) -> str:
    return "n/a" if is_nan(v) else f"{float(v):.3g}"


def _order_by(metrics: list[str]) -> list[str]:
    return [m for m in metrics if m not in LOWER_IS_BETTER][:3]


def worst_first(lines: list[ScoredLine], metrics: list[str]) -> list[ScoredLine]:
    """Errored lines first, then by the first higher-is-better metrics, lowest (or NaN) first.

    >>> a = ScoredLine(line_id="a", scores={"rougeL": 0.9})
    >>> b = ScoredLine(line_id="b", scores={"rougeL": 0.1})
    >>> c = ScoredLine(line_id="c", error={"message": "boom"})
    >>> [s.line_id for s in worst_first([a, b, c], ["rougeL"])]
    ['c', 'b', 'a']
    """
    keys = _order_by(metrics)

    def key(s: ScoredLine) -> tuple[bool, list[float]]:
        vals = [s.scores.get(m) for m in keys]
        return (s.error is None, [float("-inf") if is_nan(v) else float(v) for v in vals])  # type: ignore[arg-type]

    return sorted(lines, key=key)


def _line_errors(s: ScoredLine) -> list[str]:
    out = [f"{s.error.get('node') or 'flow'}: {s.error.get('message', '')}"] if s.error else []
    out += [str(v) for k, v in s.scores.items() if k.endswith("_error") and v]
    return out


def render_markdown(
    summary: EvalSummary, gate: GateResult | None = None, max_lines: int = 40
) -> str:
    """Short enough for a pull-request comment; the part before ``<details>`` is what the CLI
    prints (verdict, aggregates, skipped metrics, failed checks, baseline deltas)."""
    out = []
    if gate is not None:
        verdict = "✅ **PASSED**" if gate.passed else "❌ **FAILED**"
        out.append(f"### Evaluation gate: {verdict}")
    else:
        out.append("### Evaluation")
    out.append(
        f"run `{summary.run_id}` · flow `{Path(summary.flow).name}` · "
        f"data `{summary.data}` ({summary.n_rows} lines)"
    )
    if gate is not None and gate.baseline:
        out.append(f"baseline: `{gate.baseline}`")
    metrics = _metrics(summary)
    out.append("")
    out.append("| variant | errors | judge NaN | " + " | ".join(metrics) + " |")
    out.append("|---|---|---|" + "---|" * len(metrics))
    for label, agg in summary.variants.items():
        nan = sum(agg.judge_failures.values())
        cells = [_fmt(agg.metrics.get(m)) for m in metrics]
        out.append(
            f"| `{label}` | {agg.n_errors + agg.n_missing} | {nan} | " + " | ".join(cells) + " |"
        )
    out.append("")
    out.append(
        "Means with 95% t-interval half-widths; judged metrics on 1–5 "
        f"(judge `{summary.evaluation.judge}`, repeats {summary.evaluation.repeats})."
    )
    if summary.skipped:
        out.append("\n**Skipped metrics**\n")
        out.extend(f"- {k.metric}: {k.reason}" for k in summary.skipped)
    if gate is not None:
        failed = gate.failures
        if failed:
            out.append("\n**Failed checks**\n")
            out.extend(f"- {c.describe()}" for c in failed)
        regress = [c for c in gate.checks if c.kind == "regression" and c.value is not None]
        if regress:
            out.append("\n| variant | metric | Δ vs baseline | test |\n|---|---|---|---|")
            out.extend(
                f"| `{c.variant}` | {c.metric} | {c.value:+.3g} | {c.detail} |" for c in regress
            )
    lineage = []
    for label, agg in summary.variants.items():
        p = agg.params
        lineage.append(
            f"- `{label}`: prompt `{p.prompt_hash}`, index "
            f"{', '.join(p.index_version_ids) or 'n/a'}, model "
            f"`{p.model_alias}` → {', '.join(p.model_deployments) or 'n/a'}"
        )
    out.append("\n<details><summary>Lineage</summary>\n\n" + "\n".join(lineage) + "\n</details>")
    shown = metrics[:4]
    for label, lines in summary.lines.items():
        rows = [
            f"| {s.line_id} | {_answer_cell(s)} | "
            + " | ".join(_num(s.scores.get(m)) for m in shown)
            + " |"
            for s in worst_first(lines, metrics)[:max_lines]
        ]
        out.append(
            f"\n<details><summary>Lines: {label} (worst first)</summary>\n\n| id | answer | "
            + " | ".join(shown)
            + " |\n|---|---|"
            + "---|" * len(shown)
            + "\n"
            + "\n".join(rows)
            + "\n</details>"
        )
    return "\n".join(out) + "\n"


def _answer_cell(s: ScoredLine) -> str:
    return "ERROR: " + _cell(s.error.get("message")) if s.error else _cell(s.answer)


def _cell(text: Any) -> str:
    return str(text or "").replace("|", "\\|").replace("\n", " ")[:100]


@dataclass
class _Bar:
    label: str
    y: int
    width: float
    text: str
    ci: tuple[float, float] | None = None


@dataclass
class _Chart:
    metric: str
    width: int
    height: int
    bar: int
    bars: list[_Bar] = field(default_factory=list)


def _chart(metric: str, summary: EvalSummary) -> _Chart:
    """Bar geometry for one metric: the mean per variant scaled to the largest interval top."""
    labels = list(summary.variants)
    vals = [summary.variants[v].metrics.get(metric) for v in labels]
    tops = [x.high if not is_nan(x.high) else x.mean for x in vals if x is not None]
    top = max([float(t) for t in tops if not is_nan(t)] + [1e-9])
    bar, gap, span = 26, 10, 260
    chart = _Chart(metric, 420, 34 + len(labels) * 36, bar)
    for i, (label, x) in enumerate(zip(labels, vals, strict=True)):
        y = 24 + i * (bar + gap)
        mean = math.nan if x is None else x.mean
        width = 0.0 if is_nan(mean) else span * float(mean) / top
        ci = None
        if x is not None and not is_nan(x.low):
            # an interval reaching below 0 (t-interval of a small mean) is clipped at the axis
            ci = (150 + span * max(0.0, x.low) / top, 150 + span * float(x.high) / top)
        chart.bars.append(_Bar(label, y, width, "n/a" if is_nan(mean) else f"{mean:.3g}", ci))
    return chart


@dataclass
class _LineRow:
    line_id: str
    question: str
    answer: str
    retrieved: list[str]
    cells: list[str]
    errors: list[str]


_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("evaluation", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
)


def render_html(summary: EvalSummary, gate: GateResult | None = None) -> str:
    """The full report page (``templates/report.html.jinja2``): verdict, aggregates, skipped
    metrics, gate checks, one SVG chart per metric, lineage, and every line per variant."""
    metrics = _metrics(summary)
    variants = [
        {
            "label": label,
            "errors": agg.n_errors + agg.n_missing,
            "judge_nan": sum(agg.judge_failures.values()),
            "cells": [_fmt(agg.metrics.get(m)) for m in metrics],
            "params": agg.params,
        }
        for label, agg in summary.variants.items()
    ]
    tables = [
        {
            "label": label,
            "rows": [
                _LineRow(
                    s.line_id,
                    s.question,
                    "" if s.error else (s.answer or ""),
                    list(s.retrieved_ids or []),
                    [_num(s.scores.get(m)) for m in metrics],
                    _line_errors(s),
                )
                for s in worst_first(lines, metrics)
            ],
        }
        for label, lines in summary.lines.items()
    ]
    regressions = (
        [c for c in gate.checks if c.kind == "regression" and c.value is not None] if gate else []
    )
    return _ENV.get_template("report.html.jinja2").render(
        s=summary,
        gate=gate,
        flow_name=Path(summary.flow).name,
        metrics=metrics,
        variants=variants,
        regressions=regressions,
        charts=[_chart(m, summary) for m in metrics],
        order_by=_order_by(metrics),
        line_tables=tables,
    )


def render_junit(summary: EvalSummary, gate: GateResult) -> str:
    """One test case per gate check, so CI systems show failures natively."""
    suite = ET.Element(
        "testsuite",
        name="genaiops-eval-gate",
        tests=str(len(gate.checks)),
        failures=str(len(gate.failures)),
    )
    for c in gate.checks:
        case = ET.SubElement(
            suite, "testcase", classname=f"eval.{c.variant}", name=f"{c.kind}:{c.metric}"
        )
        if not c.passed:
            f = ET.SubElement(case, "failure", message=c.describe())
            f.text = c.detail or c.describe()
    root = ET.Element("testsuites")
    root.append(suite)
    return ET.tostring(root, encoding="unicode")


def write_reports(summary: EvalSummary, gate: GateResult | None, out_dir: Path) -> dict[str, str]:
    """Write report.md, report.html, report.json (+ junit.xml with a gate); returns paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "markdown": out_dir / "report.md",
        "html": out_dir / "report.html",
        "json": out_dir / "report.json",
    }
    paths["markdown"].write_text(render_markdown(summary, gate), encoding="utf-8")
    paths["html"].write_text(render_html(summary, gate), encoding="utf-8")
    paths["json"].write_text(
        ReportFile(summary=summary, gate=gate).model_dump_json(indent=2), encoding="utf-8"
    )
    if gate is not None:
        paths["junit"] = out_dir / "junit.xml"
        paths["junit"].write_text(render_junit(summary, gate), encoding="utf-8")
    return {k: str(v) for k, v in paths.items()}
