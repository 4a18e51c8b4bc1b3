"""Reports of a scored run (and its gate verdict): Markdown, HTML with plots, JSON, JUnit XML.

Markdown is short enough for a pull-request comment (aggregates, failed checks, baseline
deltas; per-line details folded). HTML adds one SVG bar chart per metric (mean and 95% interval
per variant) and the full per-line table. JUnit has one test case per gate check so CI systems
show failures natively.

    >>> paths = write_reports(summary, gate_result, out_dir)              # doctest: +SKIP
    >>> paths["markdown"]                                                 # doctest: +SKIP
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from evaluation.gate import GateResult
from evaluation.stats import is_nan

__all__ = ["KEY_METRICS", "render_html", "render_junit", "render_markdown", "write_reports"]

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


def _fmt(m: dict[str, Any] | None) -> str:
    if not m or is_nan(m.get("mean")):
        return "n/a"
    s = f"{m['mean']:.3g}"
    if not is_nan(m.get("low")):
        s += f" ±{(m['high'] - m['low']) / 2:.2g}"
    if m.get("n_nan"):
        s += f" ({m['n_nan']} NaN)"
    return s


def _metrics(summary: dict[str, Any]) -> list[str]:
    present = {k for v in summary["variants"].values() for k in v["metrics"]}
    ordered = [m for m in KEY_METRICS if m in present]
    return ordered + sorted(present - set(ordered) - {"prompt_tokens", "completion_tokens", "cost"})


def render_markdown(
    summary: dict[str, Any], gate: GateResult | None = None, max_lines: int = 40
) -> str:
    out = []
    if gate is not None:
        verdict = "✅ **PASSED**" if gate.passed else "❌ **FAILED**"
        out.append(f"### Evaluation gate: {verdict}")
    else:
        out.append("### Evaluation")
    out.append(
        f"run `{summary['run_id']}` · flow `{Path(summary['flow']).name}` · "
        f"data `{summary['data']}` ({summary['n_rows']} lines)"
    )
    if gate is not None and gate.baseline:
        out.append(f"baseline: `{gate.baseline}`")
    metrics = _metrics(summary)
    out.append("")
    out.append("| variant | errors | judge NaN | " + " | ".join(metrics) + " |")
    out.append("|---|---|---|" + "---|" * len(metrics))
    for label, agg in summary["variants"].items():
        nan = sum(agg.get("judge_failures", {}).values())
        cells = [_fmt(agg["metrics"].get(m)) for m in metrics]
        out.append(
            f"| `{label}` | {agg['n_errors'] + agg.get('n_missing', 0)} | {nan} | "
            + " | ".join(cells)
            + " |"
        )
    out.append("")
    out.append(
        "Means with 95% t-interval half-widths; judged metrics on 1–5 "
        f"(judge `{summary['evaluation']['judge']}`, repeats "
        f"{summary['evaluation']['repeats']})."
    )
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
    for label, agg in summary["variants"].items():
        p = agg["params"]
        lineage.append(
            f"- `{label}`: prompt `{p['prompt_hash']}`, index "
            f"{', '.join(p['index_version_ids']) or 'n/a'}, model "
            f"`{p['model_alias']}` → {', '.join(p['model_deployments']) or 'n/a'}"
        )
    out.append("\n<details><summary>Lineage</summary>\n\n" + "\n".join(lineage) + "\n</details>")
    for label, lines in summary["lines"].items():
        rows = [
            f"| {s['line_id']} | {_answer_cell(s)} | "
            + " | ".join(_num(s["scores"].get(m)) for m in metrics[:4])
            + " |"
            for s in lines[:max_lines]
        ]
        out.append(
            f"\n<details><summary>Lines: {label}</summary>\n\n| id | answer | "
            + " | ".join(metrics[:4])
            + " |\n|---|---|"
            + "---|" * len(metrics[:4])
            + "\n"
            + "\n".join(rows)
            + "\n</details>"
        )
    return "\n".join(out) + "\n"


def _answer_cell(s: dict[str, Any]) -> str:
    return "ERROR: " + _cell(s["error"]["message"]) if s["error"] else _cell(s["answer"])


def _cell(text: Any) -> str:
    return str(text or "").replace("|", "\\|").replace("\n", " ")[:100]


def _num(v: Any) -> str:
    return "n/a" if is_nan(v) else f"{float(v):.3g}"


def _svg_chart(metric: str, summary: dict[str, Any]) -> str:
    labels = list(summary["variants"])
    vals = [summary["variants"][v]["metrics"].get(metric) or {} for v in labels]
    highs: list[Any] = [x.get("high") if not is_nan(x.get("high")) else x.get("mean") for x in vals]
    top = max([float(h) for h in highs if not is_nan(h)] + [1e-9])
    w, bar, gap, h = 420, 26, 10, 34 + len(labels) * 36
    parts = [
        f'<svg width="{w}" height="{h}" role="img" aria-label="{html.escape(metric)}">',
        f'<text x="0" y="14" font-weight="bold">{html.escape(metric)}</text>',
    ]
    for i, (label, x) in enumerate(zip(labels, vals, strict=True)):
        y = 24 + i * (bar + gap)
        mean: Any = x.get("mean")
        width = 0.0 if is_nan(mean) else 260 * float(mean) / top
        parts.append(f'<text x="0" y="{y + 17}" font-size="11">{html.escape(label[:24])}</text>')
        parts.append(f'<rect x="150" y="{y}" width="{width:.1f}" height="{bar}" fill="#4c78a8"/>')
        if not is_nan(x.get("low")):
            lo, hi = (150 + 260 * float(x[k]) / top for k in ("low", "high"))
            parts.append(
                f'<line x1="{lo:.1f}" x2="{hi:.1f}" y1="{y + bar / 2}" y2="{y + bar / 2}" '
                'stroke="#222" stroke-width="2"/>'
            )
        label_v = "n/a" if is_nan(mean) else f"{float(mean):.3g}"
        parts.append(f'<text x="{155 + width:.1f}" y="{y + 17}" font-size="11">{label_v}</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(summary: dict[str, Any], gate: GateResult | None = None) -> str:
    md_table = render_markdown(summary, gate, max_lines=0)
    charts = "".join(f"<div class=chart>{_svg_chart(m, summary)}</div>" for m in _metrics(summary))
    metrics = _metrics(summary)
    line_rows = []
    for label, lines in summary["lines"].items():
        for s in lines:
            err = s["error"]["message"] if s["error"] else ""
            line_rows.append(
                "<tr>"
                + "".join(
                    f"<td>{html.escape(str(c))}</td>"
                    for c in (
                        label,
                        s["line_id"],
                        s["question"],
                        s["answer"] or "",
                        err,
                        ", ".join(s.get("retrieved_ids") or []),
                        *(_num(s["scores"].get(m)) for m in metrics),
                    )
                )
                + "</tr>"
            )
    head = "".join(
        f"<th>{html.escape(h)}</th>"
        for h in ("variant", "id", "question", "answer", "error", "retrieved", *metrics)
    )
    checks = ""
    if gate is not None:
        checks = (
            "<h2>Gate checks</h2><ul>"
            + "".join(
                f"<li class={'ok' if c.passed else 'fail'}>{html.escape(c.describe())}</li>"
                for c in gate.checks
            )
            + "</ul>"
        )
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>genaiops evaluation {html.escape(summary["run_id"])}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse;font-size:12px}}
td,th{{border:1px solid #ccc;padding:3px 6px;vertical-align:top}}
.chart{{display:inline-block;margin:8px}}
.fail{{color:#b00}} .ok{{color:#070}} pre{{white-space:pre-wrap}}</style></head><body>
<h1>Evaluation {html.escape(summary["run_id"])}</h1>
<pre>{html.escape(md_table)}</pre>{checks}<h2>Metrics</h2>{charts}
<h2>Lines</h2><table><tr>{head}</tr>{"".join(line_rows)}</table></body></html>
"""


def render_junit(summary: dict[str, Any], gate: GateResult) -> str:
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


def _clean(x: Any) -> Any:
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_clean(v) for v in x]
    return x


def write_reports(
    summary: dict[str, Any], gate: GateResult | None, out_dir: Path
) -> dict[str, str]:
    """Write report.md, report.html, report.json (+ junit.xml with a gate); returns paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "markdown": out_dir / "report.md",
        "html": out_dir / "report.html",
        "json": out_dir / "report.json",
    }
    paths["markdown"].write_text(render_markdown(summary, gate), encoding="utf-8")
    paths["html"].write_text(render_html(summary, gate), encoding="utf-8")
    doc = {"summary": summary, "gate": gate.to_dict() if gate else None}
    paths["json"].write_text(json.dumps(_clean(doc), indent=2, default=str), encoding="utf-8")
    if gate is not None:
        paths["junit"] = out_dir / "junit.xml"
        paths["junit"].write_text(render_junit(summary, gate), encoding="utf-8")
    return {k: str(v) for k, v in paths.items()}
