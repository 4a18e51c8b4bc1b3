"""The on-disk contracts of a scored run, each a pydantic model with one writer and one reader.

* ``summary.json`` (:class:`EvalSummary`) — run lineage, per-variant aggregates
  (:class:`VariantAggregate`, :class:`MetricStats`), every scored line (:class:`ScoredLine`) and
  the reference-based metrics that were skipped (:class:`SkippedMetric`). A committed copy is a
  baseline file (``evaluation/baselines/sample.json``).
* ``scores.jsonl`` — one :class:`ScoredLine` per line, per variant folder.
* ``report.json`` (:class:`evaluation.reports.ReportFile`) — the summary and the gate verdict
  (:class:`evaluation.gate.GateResult`) together.

Files carry ``schema_version``. A summary without one is the pre-versioned format (the same
shape: it loads as version 1); a newer version than this code knows, or a file that does not
validate, fails with :class:`~evaluation.errors.SummaryError` naming the file and the key.
NaN is written as ``null`` (standard JSON) and read back as NaN.

    >>> s = load_summary("evaluation/baselines/sample.json")
    >>> s.schema_version, s.variants["answer_prompt.cited"].metrics["recall_at_4"].mean
    (1, 1.0)
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from evaluation.config import EvalConfig
from evaluation.errors import RunNotFound, SummaryError
from evaluation.stats import MeanCI
from genaiops.specs import format_validation_error

__all__ = [
    "SCHEMA_VERSION",
    "EvalSummary",
    "LineErrorRecord",
    "MetricStats",
    "ScoredLine",
    "SkippedMetric",
    "VariantAggregate",
    "VariantParams",
    "load_summary",
    "write_scores",
    "write_summary",
]

SCHEMA_VERSION = 1


def _nan_if_none(v: Any) -> Any:
    return math.nan if v is None else v


#: a float that is written as ``null`` when NaN and read back as NaN
NanFloat = Annotated[float, BeforeValidator(_nan_if_none)]
#: one per-line score: a number, a judge's verdict/reason/name, or ``None`` (NaN on disk)
ScoreValue = bool | int | float | str | None


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="null")


class MetricStats(_Model):
    """Mean of a metric over a variant's lines with its 95% t-interval and NaN count."""

    mean: NanFloat
    low: NanFloat = math.nan
    high: NanFloat = math.nan
    n: int = 0
    n_nan: int = 0

    @classmethod
    def of(cls, ci: MeanCI) -> MetricStats:
        return cls(mean=ci.mean, low=ci.low, high=ci.high, n=ci.n, n_nan=ci.n_nan)


class LineErrorRecord(_Model):
    """Why a line errored (the node, the exception type and message), for the gate's detail."""

    line_id: str
    node: str = ""
    type: str = ""
    message: str = ""


class ScoredLine(_Model):
    """One line of one variant: what was asked, answered, retrieved, and every score."""

    line_id: str
    index: int = 0
    question: str = ""
    answer: str | None = None
    ground_truth: str | None = None
    retrieved_ids: list[str] | None = None
    reference_ids: list[str] | None = None
    error: dict[str, str] | None = None
    scores: dict[str, ScoreValue] = Field(default_factory=dict)


class VariantParams(_Model):
    """Lineage of one variant's scores: which prompt, index versions, model and data."""

    variant: str
    variant_choice: dict[str, str] = Field(default_factory=dict)
    prompt_hash: str | None = None
    index_version_ids: list[str] = Field(default_factory=list)
    model_alias: str | None = None
    model_deployments: list[str] = Field(default_factory=list)
    judge: str = "offline"
    repeats: int = 1
    data: str = ""
    data_sha256_16: str | None = None
    flow: str = ""
    git_commit: str | None = None
    run_id: str = ""


class VariantAggregate(_Model):
    """Per-variant aggregates the gate reads: counts, metric stats, judge failures, lineage."""

    n_lines: int
    n_missing: int = 0
    n_errors: int = 0
    errors: list[LineErrorRecord] = Field(default_factory=list)
    metrics: dict[str, MetricStats] = Field(default_factory=dict)
    judge_failures: dict[str, int] = Field(default_factory=dict)
    judge_std: dict[str, float | None] = Field(default_factory=dict)
    pass_rates: dict[str, float] = Field(default_factory=dict)
    params: VariantParams


class SkippedMetric(_Model):
    """A metric that did not run (or ran on fewer lines) because a reference was not mapped."""

    metric: str
    reason: str
    n_lines_without: int = 0


class EvalSummary(_Model):
    """``summary.json``: self-contained, so a committed copy can serve as a gate baseline."""

    schema_version: int = SCHEMA_VERSION
    run_id: str
    flow: str
    data: str
    n_rows: int
    interrupted: bool = False
    evaluation: EvalConfig = Field(default_factory=EvalConfig)
    skipped: list[SkippedMetric] = Field(default_factory=list)
    variants: dict[str, VariantAggregate]
    lines: dict[str, list[ScoredLine]] = Field(default_factory=dict)


def _check_version(data: Any, path: Path) -> None:
    if not isinstance(data, dict):
        raise SummaryError(f"{path}: not a genaiops evaluation summary (expected a JSON object)")
    version = data.get("schema_version", 1)  # no field: the pre-versioned format, same shape
    if not isinstance(version, int) or version < 1:
        raise SummaryError(f"{path}: schema_version: expected a positive integer, got {version!r}")
    if version > SCHEMA_VERSION:
        raise SummaryError(
            f"{path}: schema_version {version} is newer than this genaiops reads "
            f"({SCHEMA_VERSION}); upgrade genaiops or re-score the run"
        )


def load_summary(path: str | Path) -> EvalSummary:
    """The one reader of ``summary.json`` (and of baseline files)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise RunNotFound(f"{p}: no such summary file") from e
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SummaryError(f"{p}: not a readable summary JSON ({e})") from e
    _check_version(data, p)
    try:
        summary = EvalSummary.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(f"{k or '(top)'}: {m}" for k, m in format_validation_error(e)[:5])
        raise SummaryError(f"{p}: not a genaiops evaluation summary: {problems}") from e
    summary.schema_version = SCHEMA_VERSION
    return summary


def write_summary(summary: EvalSummary, path: str | Path) -> Path:
    """The one writer of ``summary.json``."""
    p = Path(path)
    p.write_text(summary.model_dump_json(indent=2), encoding="utf-8")
    return p


def write_scores(lines: list[ScoredLine], path: str | Path) -> Path:
    """The one writer of a variant's ``scores.jsonl`` (one :class:`ScoredLine` per line)."""
    p = Path(path)
    with open(p, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(line.model_dump_json() + "\n")
    return p
