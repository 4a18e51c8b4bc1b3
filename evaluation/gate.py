"""The CI gate: absolute thresholds, regression against a baseline, and zero errored lines.

Rules, per judged variant:

* **errors** — any errored (or missing) line fails the gate; the template pipeline this replaces
  let flow errors pass CI.
* **judge failures** — failed judgements (NaN) above ``max_failed_judgements`` fail it.
* **thresholds** — ``min``/``max`` on a metric's mean (``thresholds`` for every variant,
  ``variant_thresholds`` per variant); a metric that was not computed fails.
* **regression** — with a baseline, a metric in ``regression.max_drop`` fails only when it got
  worse by more than ``max_drop`` *and* a paired sign-flip test on the per-line values gives
  p < ``alpha`` (noise does not fail a pull request; latency/tokens/cost count lower as better).

    >>> result = evaluate_gate(summary, load_gate_config("evaluation/gate.yaml"))  # doctest: +SKIP
    >>> result.passed, [c.describe() for c in result.failures]           # doctest: +SKIP
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from evaluation.config import GateConfig
from evaluation.errors import GateError, RunNotFound
from evaluation.stats import is_nan, paired_worse_pvalue
from evaluation.summary import SCHEMA_VERSION, EvalSummary, load_summary

__all__ = ["Check", "GateResult", "evaluate_gate", "load_baseline"]

LOWER_IS_BETTER = frozenset(
    {"latency_s", "prompt_tokens", "completion_tokens", "total_tokens", "cost"}
)
CheckKind = Literal["errors", "judge_failures", "threshold", "regression"]


class Check(BaseModel):
    """One gate check on one variant; ``describe()`` is the line CI prints.

    >>> Check(variant="cited", kind="threshold", metric="rougeL", passed=False, value=0.1,
    ...       limit=">= 0.2").describe()
    'FAIL [cited] threshold rougeL = 0.1 >= 0.2'
    """

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="null")

    variant: str
    kind: CheckKind
    metric: str
    passed: bool
    value: float | None = None
    limit: str = ""
    detail: str = ""

    def describe(self) -> str:
        mark = "ok  " if self.passed else "FAIL"
        value = "" if self.value is None else f" = {self.value:.4g}"
        text = f"{mark} [{self.variant}] {self.kind} {self.metric}{value} {self.limit}"
        return f"{text} {self.detail}".rstrip()


class GateResult(BaseModel):
    """The verdict: passed only if every check passed (``report.json``'s ``gate``)."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="null")

    schema_version: int = SCHEMA_VERSION
    passed: bool
    checks: list[Check] = Field(default_factory=list)
    baseline: str | None = None

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``--json`` output and ``report.json``)."""
        return self.model_dump(mode="json")


def load_baseline(ref: str, runs_dir: Path) -> EvalSummary:
    """A baseline is a summary JSON file, or a run id whose folder has ``summary.json``.

    Read by :func:`evaluation.summary.load_summary`: a pre-versioned file loads, a bad one
    fails naming the file and the key."""
    p = Path(ref)
    if not p.exists():
        p = runs_dir / ref / "summary.json"
    if not p.exists():
        raise RunNotFound(f"baseline {ref!r}: neither a file nor a scored run under {runs_dir}")
    return load_summary(p)


def _per_line(summary: EvalSummary, variant: str, metric: str) -> dict[str, float]:
    out = {}
    for s in summary.lines.get(variant, []):
        if s.error is None:
            v = s.scores.get(metric)
            out[s.line_id] = math.nan if is_nan(v) else float(v)  # type: ignore[arg-type]
    return out


def evaluate_gate(
    summary: EvalSummary,
    cfg: GateConfig,
    baseline: EvalSummary | None = None,
    baseline_name: str | None = None,
) -> GateResult:
    """Every check of ``cfg`` on every judged variant of ``summary`` (see the module doc)."""
    available = list(summary.variants)
    judged = cfg.variants or available
    unknown = [v for v in judged if v not in available]
    if unknown:
        raise GateError(f"gate variants {unknown} were not run; the run has {available}")
    checks: list[Check] = []
    for label in judged:
        agg = summary.variants[label]
        bad = agg.n_errors + agg.n_missing
        detail = "; ".join(f"{e.line_id}: {e.message[:120]}" for e in agg.errors[:3])
        if agg.n_missing:
            detail = (detail + "; " if detail else "") + f"{agg.n_missing} lines never ran"
        checks.append(
            Check(
                variant=label,
                kind="errors",
                metric="errored_lines",
                passed=bad == 0,
                value=float(bad),
                limit="must be 0",
                detail=detail,
            )
        )
        failed = sum(agg.judge_failures.values())
        checks.append(
            Check(
                variant=label,
                kind="judge_failures",
                metric="failed_judgements",
                passed=failed <= cfg.max_failed_judgements,
                value=float(failed),
                limit=f"<= {cfg.max_failed_judgements}",
            )
        )
        for metric, bound in cfg.bounds_for(label).items():
            m = agg.metrics.get(metric)
            value = None if m is None or is_nan(m.mean) else float(m.mean)
            limit = " ".join(
                x
                for x in (
                    f">= {bound.min}" if bound.min is not None else "",
                    f"<= {bound.max}" if bound.max is not None else "",
                )
                if x
            )
            if value is None:
                checks.append(
                    Check(
                        variant=label,
                        kind="threshold",
                        metric=metric,
                        passed=False,
                        limit=limit,
                        detail=_not_computed(summary, metric),
                    )
                )
                continue
            ok = (bound.min is None or value >= bound.min) and (
                bound.max is None or value <= bound.max
            )
            checks.append(
                Check(
                    variant=label,
                    kind="threshold",
                    metric=metric,
                    passed=ok,
                    value=value,
                    limit=limit,
                )
            )
        if baseline is not None:
            checks.extend(_regressions(summary, baseline, label, cfg))
    return GateResult(passed=all(c.passed for c in checks), checks=checks, baseline=baseline_name)


def _source_metric(metric: str) -> str:
    """The ``evaluation.metrics`` name that produces an aggregate (rougeL comes from rouge)."""
    if metric.startswith("rouge"):
        return "rouge"
    if metric == "mrr" or metric.startswith(("recall_at_", "ndcg_at_")):
        return "retrieval"
    return "similarity" if metric == "answer_similarity" else metric


def _not_computed(summary: EvalSummary, metric: str) -> str:
    source = _source_metric(metric)
    skipped = next((s for s in summary.skipped if s.metric == source), None)
    if skipped is not None:
        return f"metric not computed: {source} {skipped.reason}"
    return "metric not computed (check evaluation.metrics and data)"


def _skip(label: str, metric: str, detail: str) -> Check:
    return Check(variant=label, kind="regression", metric=metric, passed=True, detail=detail)


def _regressions(
    summary: EvalSummary, baseline: EvalSummary, label: str, cfg: GateConfig
) -> list[Check]:
    if label not in baseline.variants:
        return [_skip(label, "*", "no baseline for this variant (new variant): not compared")]
    out = []
    for metric, max_drop in cfg.regression.max_drop.items():
        cand = _per_line(summary, label, metric)
        base = _per_line(baseline, label, metric)
        common = sorted(set(cand) & set(base))
        if not common:
            out.append(_skip(label, metric, "no common lines with the baseline: not compared"))
            continue
        c = [cand[i] for i in common]
        b = [base[i] for i in common]
        sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
        pairs = [(x, y) for x, y in zip(c, b, strict=True) if not (is_nan(x) or is_nan(y))]
        if not pairs:
            out.append(_skip(label, metric, "no valid pairs"))
            continue
        delta = sum(x - y for x, y in pairs) / len(pairs)
        worse_by = -sign * delta
        p = paired_worse_pvalue([sign * x for x in c], [sign * y for y in b])
        ok = not (worse_by > max_drop and p < cfg.regression.alpha)
        out.append(
            Check(
                variant=label,
                kind="regression",
                metric=metric,
                passed=ok,
                value=delta,
                limit=f"drop <= {max_drop} unless p >= {cfg.regression.alpha}",
                detail=f"baseline {sum(y for _, y in pairs) / len(pairs):.4g}, "
                f"n={len(pairs)}, p={p:.3g}",
            )
        )
    return out
