"""``genaiops monitor report``: operational and learning-from-production figures of a window in
one self-contained HTML page (inline PNG plots, no network), ``report.json`` (the typed
:class:`MonitorReport`) and ``report.md`` (fits a PR comment or a chat message).

Operational figures come from the gateway ledger's usage rows (requests, tokens and cost by team
and model over time, p50/p95 latency, error and 429 rates, safety blocks by category); online
scores from :class:`~evaluation.monitoring.store.ScoreStore` (by deployment and prompt variant);
the thumbs-up rate from the feedback the apps sent; drift from :mod:`evaluation.monitoring.drift`.

    >>> report = build_report(state, scores, cfg, since=time.time() - 7 * 86400)  # doctest: +SKIP
    >>> write_report(report, Path("monitor-report"))                            # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import jinja2
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from evaluation.monitoring import plots
from evaluation.monitoring.config import Breach, MonitoringConfig, Thresholds
from evaluation.monitoring.drift import DriftReport
from evaluation.monitoring.online import GroupStats, group_scores, score_breaches
from evaluation.monitoring.sources import FeedbackRecord, GatewayState
from evaluation.monitoring.store import ScoreStore

__all__ = [
    "REPORT_SCHEMA_VERSION",
    "MonitorReport",
    "build_report",
    "ops_breaches",
    "write_report",
]

REPORT_SCHEMA_VERSION = 1
_COUNTED = ("shadow", "attempt_error")  # ledger rows that are not client requests


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UsageGroup(_Model):
    name: str
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0


class Operations(_Model):
    requests: int = 0
    errors: int = 0
    rate_limited: int = 0
    safety_blocked: int = 0
    error_rate: float = 0.0
    rate_limited_rate: float = 0.0
    p50_latency_ms: float | None = None
    p95_latency_ms: float | None = None
    total_tokens: int = 0
    cost: float = 0.0
    by_team: list[UsageGroup] = Field(default_factory=list)
    by_model: list[UsageGroup] = Field(default_factory=list)
    safety_blocks: dict[str, int] = Field(default_factory=dict)


class FeedbackStats(_Model):
    deployment: str | None
    variant: str | None
    n: int
    thumbs_up: int
    thumbs_up_rate: float


class MonitorReport(_Model):
    """Everything the page shows, as data (``report.json``)."""

    schema_version: int = REPORT_SCHEMA_VERSION
    generated_at: float
    since: float
    until: float
    operations: Operations
    online: list[GroupStats]
    feedback: list[FeedbackStats]
    feedback_total: int = 0
    thumbs_up_rate: float | None = None
    drift: DriftReport | None = None
    thresholds: Thresholds
    breaches: list[Breach]
    plots: list[str] = Field(default_factory=list, description="ids of the figures in the page")
    _rows: list[dict[str, Any]] = PrivateAttr(default_factory=list)  # usage rows, for plots


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(math.ceil(q * len(s))) - 1 if q > 0 else 0)]


def _blocked_categories(row: dict[str, Any]) -> list[str]:
    try:
        safety = json.loads(row.get("safety") or "{}")
    except ValueError:
        return ["unknown"]
    cats: set[str] = set()
    for side in ("prompt", "completion"):
        res = safety.get(side)
        if isinstance(res, dict):
            cats.update(k for k, v in res.items() if isinstance(v, dict) and v.get("filtered"))
    return sorted(cats) or ["unknown"]


def _cost(cfg: MonitoringConfig, row: dict[str, Any]) -> float:
    price = cfg.prices.get(row.get("deployment") or "") or cfg.prices.get(row.get("alias") or "")
    if price is None:
        return 0.0
    return (
        (row.get("prompt_tokens") or 0) * price.prompt_per_1k
        + (row.get("completion_tokens") or 0) * price.completion_per_1k
    ) / 1000


def _operations(rows: list[dict[str, Any]], cfg: MonitoringConfig) -> Operations:
    ops = Operations(requests=len(rows))
    teams: dict[str, UsageGroup] = {}
    models: dict[str, UsageGroup] = {}
    lat: list[float] = []
    blocks: Counter[str] = Counter()
    for r in rows:
        c = _cost(cfg, r)
        ops.cost += c
        ops.total_tokens += r.get("total_tokens") or 0
        for table, key in ((teams, r.get("team") or "-"), (models, r.get("alias") or "-")):
            g = table.setdefault(key, UsageGroup(name=key))
            g.requests += 1
            g.prompt_tokens += r.get("prompt_tokens") or 0
            g.completion_tokens += r.get("completion_tokens") or 0
            g.cost += c
        status = r.get("status") or 0
        if status == 429:
            ops.rate_limited += 1
        elif status >= 500 or r.get("outcome") in ("error", "interrupted"):
            ops.errors += 1
        if r.get("outcome") == "filtered":
            ops.safety_blocked += 1
            blocks.update(_blocked_categories(r))
        if r.get("latency_ms") is not None and r.get("outcome") == "ok":
            lat.append(float(r["latency_ms"]))
    n = max(1, len(rows))
    ops.error_rate, ops.rate_limited_rate = ops.errors / n, ops.rate_limited / n
    ops.p50_latency_ms, ops.p95_latency_ms = _pct(lat, 0.5), _pct(lat, 0.95)
    ops.by_team = sorted(teams.values(), key=lambda g: g.name)
    ops.by_model = sorted(models.values(), key=lambda g: g.name)
    ops.safety_blocks = dict(sorted(blocks.items()))
    return ops


def _feedback(fbs: list[FeedbackRecord]) -> list[FeedbackStats]:
    groups: dict[tuple[str | None, str | None], list[FeedbackRecord]] = defaultdict(list)
    for f in fbs:
        groups[(f.deployment, f.flow_variant)].append(f)
    out = []
    for (dep, var), fs in sorted(groups.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1]))):
        up = sum(f.positive for f in fs)
        out.append(
            FeedbackStats(
                deployment=dep, variant=var, n=len(fs), thumbs_up=up, thumbs_up_rate=up / len(fs)
            )
        )
    return out


def ops_breaches(ops: Operations, feedback: list[FeedbackRecord], t: Thresholds) -> list[Breach]:
    found: list[Breach | None] = []
    if ops.requests >= t.min_samples:
        found += [
            Breach.crossed("error_rate", "all", ops.error_rate, t.error_rate_max, "max"),
            Breach.crossed(
                "rate_limited_rate", "all", ops.rate_limited_rate, t.rate_limited_rate_max, "max"
            ),
            Breach.crossed(
                "p95_latency_ms", "all", ops.p95_latency_ms, t.p95_latency_ms_max, "max"
            ),
        ]
    if len(feedback) >= t.min_samples:
        rate = sum(f.positive for f in feedback) / len(feedback)
        found.append(Breach.crossed("thumbs_up_rate", "all", rate, t.thumbs_up_rate_min, "min"))
    return [b for b in found if b is not None]


def build_report(
    state: GatewayState,
    scores: ScoreStore,
    cfg: MonitoringConfig,
    *,
    since: float,
    until: float | None = None,
    drift: DriftReport | None = None,
) -> MonitorReport:
    until = until if until is not None else time.time()
    rows = [r for r in state.usage(since, until) if r.get("outcome") not in _COUNTED]
    ops = _operations(rows, cfg)
    fbs = [f for f in state.feedback(since=since).values() if f.ts < until]
    online = group_scores(scores.query(since=since, until=until))
    t = cfg.thresholds
    breaches = ops_breaches(ops, fbs, t) + score_breaches(online, t)
    if drift is not None:
        breaches += drift.breaches
    report = MonitorReport(
        generated_at=time.time(),
        since=since,
        until=until,
        operations=ops,
        online=online,
        feedback=_feedback(fbs),
        feedback_total=len(fbs),
        thumbs_up_rate=sum(f.positive for f in fbs) / len(fbs) if fbs else None,
        drift=drift,
        thresholds=t,
        breaches=breaches,
    )
    report._rows = rows
    return report


def _buckets(since: float, until: float) -> float:
    span = max(1.0, until - since)
    return 3600.0 if span <= 3 * 86400 else 86400.0


def _figures(report: MonitorReport) -> dict[str, tuple[str, str]]:
    """``{id: (title, data url)}`` for every plot of the page."""
    rows = report._rows
    step = _buckets(report.since, report.until)
    start = report.since - report.since % step
    edges = [start + i * step for i in range(int((report.until - start) // step) + 1)]

    def series(key: str, value: Any) -> dict[str, list[float | None]]:
        acc: dict[str, list[float | None]] = {}
        for r in rows:
            i = int((r["ts"] - start) // step)
            name = str(r.get(key) or "-")
            ys = acc.setdefault(name, [0.0] * len(edges))
            ys[i] = (ys[i] or 0.0) + value(r)
        return acc

    def per_bucket(fn: Any) -> list[float | None]:
        groups: list[list[dict[str, Any]]] = [[] for _ in edges]
        for r in rows:
            groups[int((r["ts"] - start) // step)].append(r)
        return [fn(g) if g else None for g in groups]

    def lat(q: float) -> Any:
        return lambda g: _pct([r["latency_ms"] for r in g if r.get("latency_ms") is not None], q)

    t = report.thresholds
    unit = "hour" if step == 3600 else "day"
    figs: dict[str, tuple[str, str]] = {}
    figs["requests-by-team"] = (
        f"Requests per {unit} by team",
        plots.time_series("requests by team", edges, series("team", lambda r: 1)),
    )
    figs["tokens-by-model"] = (
        f"Tokens per {unit} by model",
        plots.time_series(
            "tokens by model", edges, series("alias", lambda r: r.get("total_tokens") or 0)
        ),
    )
    ops = report.operations
    figs["cost"] = (
        "Cost by team and model",
        plots.grouped_bars(
            "cost",
            [f"team {g.name}" for g in ops.by_team] + [f"model {g.name}" for g in ops.by_model],
            {"cost": [g.cost for g in ops.by_team + ops.by_model]},
        ),
    )
    figs["latency"] = (
        "Latency p50 / p95 (ms)",
        plots.time_series(
            "latency",
            edges,
            {"p50": per_bucket(lat(0.5)), "p95": per_bucket(lat(0.95))},
            "ms",
            t.p95_latency_ms_max,
        ),
    )
    figs["errors"] = (
        "Error and 429 rates",
        plots.time_series(
            "error / 429 rate",
            edges,
            {
                "errors": per_bucket(
                    lambda g: sum((r.get("status") or 0) >= 500 for r in g) / len(g)
                ),
                "429": per_bucket(lambda g: sum(r.get("status") == 429 for r in g) / len(g)),
            },
            "share of requests",
            t.error_rate_max,
        ),
    )
    figs["safety"] = (
        "Safety blocks by category",
        plots.bar_chart("safety blocks", {k: float(v) for k, v in ops.safety_blocks.items()}),
    )
    labels = [f"{g.deployment or '-'} / {g.variant or '-'}" for g in report.online]
    figs["online-scores"] = (
        "Online scores by deployment / variant",
        plots.grouped_bars(
            "online scores (1-5)",
            labels,
            {
                "groundedness": [g.groundedness_mean for g in report.online],
                "relevance": [g.relevance_mean for g in report.online],
            },
            limits={"groundedness": t.groundedness_min, "relevance": t.relevance_min},
        ),
    )
    figs["thumbs-up"] = (
        "Thumbs-up rate by deployment / variant",
        plots.bar_chart(
            "thumbs-up rate",
            {
                f"{f.deployment or '-'} / {f.variant or '-'}": f.thumbs_up_rate
                for f in report.feedback
            },
            limit=t.thumbs_up_rate_min,
        ),
    )
    d = report.drift
    drift_vals: dict[str, float] = {}
    if d is not None and d.question is not None:
        drift_vals["question drift p"] = d.question.p_value
    if d is not None and d.out_of_domain is not None:
        drift_vals["out-of-domain rate"] = d.out_of_domain.rate
    for g in d.grounding if d is not None else []:
        if g.drop is not None:
            drift_vals[f"grounding drop {g.index}"] = g.drop
    figs["drift"] = (
        "Drift statistics (thresholds: p < "
        f"{t.drift_p_min}, OOD > {t.ood_rate_max}, drop > {t.grounding_drop_max})",
        plots.bar_chart("drift", drift_vals, limit=t.drift_p_min),
    )
    return figs


_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("evaluation", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def _ts(x: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(x))


def render_markdown(report: MonitorReport) -> str:
    o = report.operations
    lines = [
        f"# Monitoring report {_ts(report.since)} – {_ts(report.until)}",
        "",
        f"**{'BREACHED' if report.breaches else 'OK'}** — {len(report.breaches)} threshold(s) "
        "breached",
        "",
    ]
    lines += [f"- {b.line()}" for b in report.breaches]
    lines += [
        "",
        "| requests | errors | 429 | blocked | p50 ms | p95 ms | tokens | cost |",
        "|---|---|---|---|---|---|---|---|",
        f"| {o.requests} | {o.errors} | {o.rate_limited} | {o.safety_blocked} | "
        f"{o.p50_latency_ms or '-'} | {o.p95_latency_ms or '-'} | {o.total_tokens} | "
        f"{o.cost:.4f} |",
        "",
        "| deployment | variant | n | groundedness | relevance | refusal rate |",
        "|---|---|---|---|---|---|",
    ]
    for g in report.online:
        gm = f"{g.groundedness_mean:.2f}" if g.groundedness_mean is not None else "-"
        rm = f"{g.relevance_mean:.2f}" if g.relevance_mean is not None else "-"
        lines.append(
            f"| {g.deployment or '-'} | {g.variant or '-'} | {g.n} | {gm} | {rm} | "
            f"{g.refusal_rate:.2f} |"
        )
    if report.thumbs_up_rate is not None:
        lines += ["", f"Thumbs-up rate: {report.thumbs_up_rate:.2f} ({report.feedback_total})"]
    return "\n".join(lines) + "\n"


def write_report(report: MonitorReport, out: Path) -> dict[str, str]:
    """Write ``report.html``, ``report.json`` and ``report.md`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    figs = _figures(report)
    report.plots = list(figs)
    html = _ENV.get_template("monitor.html.jinja2").render(
        r=report, figs=figs, ts=_ts, markdown=render_markdown(report)
    )
    paths = {"html": out / "report.html", "json": out / "report.json", "md": out / "report.md"}
    paths["html"].write_text(html, encoding="utf-8")
    paths["json"].write_text(report.model_dump_json(indent=2), encoding="utf-8")
    paths["md"].write_text(render_markdown(report), encoding="utf-8")
    return {k: str(v) for k, v in paths.items()}
