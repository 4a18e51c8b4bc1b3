"""``monitoring.yaml``: thresholds that make ``monitor evaluate`` / ``monitor check`` exit 1,
prices for the report's cost plots, and the defaults of the online evaluation and drift checks.

Validated with ``extra="forbid"``; errors name the file and the key
(:func:`load_monitoring_config`).
Every threshold is optional: ``null`` (or leaving it out) means "not checked".

    thresholds:
      groundedness_min: 3.0        # mean 1-5, per deployment and prompt variant
      refusal_rate_max: 0.2
      drift_p_min: 0.01            # question drift: two-sample p-value below this breaches
    >>> cfg = load_monitoring_config("monitoring.yaml")              # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from genaiops.specs import load_yaml_model

__all__ = [
    "Breach",
    "DriftSettings",
    "EvaluateSettings",
    "MonitoringConfig",
    "Price",
    "Thresholds",
    "load_monitoring_config",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Thresholds(_Strict):
    """Limits; a group (deployment x variant) is judged once it has ``min_samples`` records."""

    min_samples: int = Field(default=10, ge=1)
    groundedness_min: float | None = Field(default=3.0, ge=1, le=5)
    relevance_min: float | None = Field(default=3.0, ge=1, le=5)
    online_score_min: float | None = Field(default=None, ge=0, le=1)
    refusal_rate_max: float | None = Field(default=0.25, ge=0, le=1)
    safety_block_rate_max: float | None = Field(default=0.05, ge=0, le=1)
    error_rate_max: float | None = Field(default=0.05, ge=0, le=1)
    rate_limited_rate_max: float | None = Field(default=0.1, ge=0, le=1)
    p95_latency_ms_max: float | None = Field(default=None, gt=0)
    thumbs_up_rate_min: float | None = Field(default=0.5, ge=0, le=1)
    drift_p_min: float | None = Field(default=0.01, gt=0, lt=1)
    ood_rate_max: float | None = Field(default=0.2, ge=0, le=1)
    grounding_drop_max: float | None = Field(
        default=0.1, ge=0, description="drop of the mean best retrieval score after an alias move"
    )


class Price(_Strict):
    """Price per 1,000 tokens of one model alias or deployment (for the report's cost plot)."""

    prompt_per_1k: float = Field(default=0.0, ge=0)
    completion_per_1k: float = Field(default=0.0, ge=0)


class EvaluateSettings(_Strict):
    judge: str = Field(default="offline", pattern=r"^(offline|gateway:.+)$")
    judge_threshold: float = Field(default=3.0, ge=1, le=5)
    sample: int | None = Field(default=None, ge=1, description="score at most N records a run")


class DriftSettings(_Strict):
    reference: Path | None = Field(
        default=None, description="evaluation dataset (JSONL with a question column)"
    )
    question_field: str = "question"
    index: str | None = Field(default=None, description="index for the out-of-domain rate")
    alias: str = "current"
    permutations: int = Field(default=200, ge=20, le=10000)
    min_questions: int = Field(default=20, ge=5)
    seed: int = 0


class MonitoringConfig(_Strict):
    thresholds: Thresholds = Field(default_factory=Thresholds)
    prices: dict[str, Price] = Field(default_factory=dict)
    evaluate: EvaluateSettings = Field(default_factory=EvaluateSettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)


class Breach(_Strict):
    """One threshold a measured value crossed."""

    check: str
    scope: str  # "all", "deployment=x variant=y", "index=sample"
    value: float
    limit: float
    direction: Literal["min", "max"]

    @classmethod
    def crossed(
        cls,
        check: str,
        scope: str,
        value: float | None,
        limit: float | None,
        direction: Literal["min", "max"],
    ) -> Breach | None:
        """The breach when ``value`` is below a ``min`` / above a ``max`` limit; None when it
        is not, or when either is unset."""
        if value is None or limit is None:
            return None
        if value < limit if direction == "min" else value > limit:
            return cls(check=check, scope=scope, value=value, limit=limit, direction=direction)
        return None

    def line(self) -> str:
        op = "<" if self.direction == "min" else ">"
        return f"{self.check} {self.value:.4g} {op} {self.limit:.4g} ({self.scope})"


def load_monitoring_config(path: str | Path | None) -> MonitoringConfig:
    """The file's config, or the defaults when ``path`` is None; SpecError names file + key."""
    if path is None:
        return MonitoringConfig()
    return load_yaml_model(path, MonitoringConfig)
