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

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from evaluation.config import GateConfig
from evaluation.errors import GateError, RunNotFound
from evaluation.stats import is_nan, paired_worse_pvalue

__all__ = ["Check", "GateResult", "evaluate_gate", "load_baseline"]

LOWER_IS_BETTER = frozenset(
    {"latency_s", "prompt_tokens", "completion_tokens", "total_tokens", "cost"}
)


@dataclass
class Check:
    """One gate check on one variant; ``describe()`` is the line CI prints.

    >>> Check("cited", "threshold", "rougeL", False, 0.1, ">= 0.2").describe()
    'FAIL [cited] threshold rougeL = 0.1 >= 0.2'
    """

    variant: str
    kind: str  # errors | judge_failures | threshold | regression
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


@dataclass
class GateResult:
    """The verdict: passed only if every check passed."""

    passed: bool
    checks: list[Check] = field(default_factory=list)
    baseline: str | None = None

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "baseline": self.baseline,
            "checks": [asdict(c) for c in self.checks],
        }


def load_baseline(ref: str, runs_dir: Path) -> dict[str, Any]:
    """A baseline is a summary JSON file, or a run id whose folder has ``summary.json``."""
    p = Path(ref)
    if not p.exists():
        p = runs_dir / ref / "summary.json"
    if not p.exists():
        raise RunNotFound(f"baseline {ref!r}: neither a file nor a scored run under {runs_dir}")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise RunNotFound(f"baseline {p}: not a readable summary JSON ({e})") from e
    if not isinstance(data, dict) or "variants" not in data or "lines" not in data:
        raise RunNotFound(f"baseline {p}: not a genaiops evaluation summary")
    return data


def _per_line(summary: dict[str, Any], variant: str, metric: str) -> dict[str, float]:
    out = {}
    for s in summary.get("lines", {}).get(variant, []):
        if s.get("error") is None:
            v = s.get("scores", {}).get(metric)
            out[str(s["line_id"])] = math.nan if is_nan(v) else float(v)
    return out


def evaluate_gate(
    summary: dict[str, Any],
    cfg: GateConfig,
    baseline: dict[str, Any] | None = None,
    baseline_name: str | None = None,
) -> GateResult:
    available = list(summary["variants"])
    judged = cfg.variants or available
    unknown = [v for v in judged if v not in available]
    if unknown:
        raise GateError(f"gate variants {unknown} were not run; the run has {available}")
    checks: list[Check] = []
    for label in judged:
        agg = summary["variants"][label]
        bad = agg["n_errors"] + agg.get("n_missing", 0)
        detail = "; ".join(
            f"{e['line_id']}: {e.get('message', '')[:120]}" for e in agg["errors"][:3]
        )
        if agg.get("n_missing"):
            detail = (detail + "; " if detail else "") + f"{agg['n_missing']} lines never ran"
        checks.append(
            Check(label, "errors", "errored_lines", bad == 0, float(bad), "must be 0", detail)
        )
        failed = sum(agg.get("judge_failures", {}).values())
        checks.append(
            Check(
                label,
                "judge_failures",
                "failed_judgements",
                failed <= cfg.max_failed_judgements,
                float(failed),
                f"<= {cfg.max_failed_judgements}",
            )
        )
        for metric, bound in cfg.bounds_for(label).items():
            m = agg["metrics"].get(metric)
            value = None if m is None or is_nan(m["mean"]) else float(m["mean"])
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
                        label,
                        "threshold",
                        metric,
                        False,
                        None,
                        limit,
                        "metric not computed (check evaluation.metrics and data)",
                    )
                )
                continue
            ok = (bound.min is None or value >= bound.min) and (
                bound.max is None or value <= bound.max
            )
            checks.append(Check(label, "threshold", metric, ok, value, limit))
        if baseline is not None:
            checks.extend(_regressions(summary, baseline, label, cfg))
    return GateResult(all(c.passed for c in checks), checks, baseline_name)


def _regressions(
    summary: dict[str, Any], baseline: dict[str, Any], label: str, cfg: GateConfig
) -> list[Check]:
    if label not in baseline.get("variants", {}):
        return [
            Check(
                label,
                "regression",
                "*",
                True,
                None,
                "",
                "no baseline for this variant (new variant): not compared",
            )
        ]
    out = []
    for metric, max_drop in cfg.regression.max_drop.items():
        cand = _per_line(summary, label, metric)
        base = _per_line(baseline, label, metric)
        common = sorted(set(cand) & set(base))
        if not common:
            out.append(
                Check(
                    label,
                    "regression",
                    metric,
                    True,
                    None,
                    "",
                    "no common lines with the baseline: not compared",
                )
            )
            continue
        c = [cand[i] for i in common]
        b = [base[i] for i in common]
        sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
        pairs = [(x, y) for x, y in zip(c, b, strict=True) if not (is_nan(x) or is_nan(y))]
        if not pairs:
            out.append(Check(label, "regression", metric, True, None, "", "no valid pairs"))
            continue
        delta = sum(x - y for x, y in pairs) / len(pairs)
        worse_by = -sign * delta
        p = paired_worse_pvalue([sign * x for x in c], [sign * y for y in b])
        ok = not (worse_by > max_drop and p < cfg.regression.alpha)
        out.append(
            Check(
                label,
                "regression",
                metric,
                ok,
                delta,
                f"drop <= {max_drop} unless p >= {cfg.regression.alpha}",
                f"baseline {sum(y for _, y in pairs) / len(pairs):.4g}, n={len(pairs)}, p={p:.3g}",
            )
        )
    return out
