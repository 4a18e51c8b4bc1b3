"""Declarative evaluation and gate configs (YAML, pydantic ``extra="forbid"``).

>>> cfg = load_gate_config("evaluation/gate.yaml")                   # doctest: +SKIP
>>> cfg.thresholds["groundedness"].min                                # doctest: +SKIP
3.0
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from genaiops.specs import load_yaml_model

__all__ = [
    "COLUMN_ALIASES",
    "REFERENCE_METRICS",
    "Bound",
    "EvalConfig",
    "GateConfig",
    "RegressionConfig",
    "RunSection",
    "load_gate_config",
]

#: dataset columns recognised for each evaluator input when ``mapping`` does not name one; the
#: first present wins (azure-ai-evaluation's ``ground_truth``, ragas' ``reference`` /
#: ``reference_context_ids`` / ``reference_contexts`` / ``user_input``, the sample set's names)
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "query": ("question", "query", "user_input"),
    "ground_truth": ("ground_truth", "reference", "answer"),
    "reference_ids": ("doc_ids", "reference_context_ids", "reference_ids"),
    "reference_contexts": ("reference_contexts",),
}
DEFAULT_RESPONSE = "${run.outputs.answer}"
#: metrics that need a reference, and the mapping key that supplies it
REFERENCE_METRICS: dict[str, str] = {
    "bleu": "ground_truth",
    "rouge": "ground_truth",
    "similarity": "ground_truth",
    "retrieval": "reference_ids",
}
MetricName = Literal[
    "bleu", "rouge", "retrieval", "similarity", "cost", "groundedness", "relevance"
]
ALL_METRICS: tuple[MetricName, ...] = (
    "bleu",
    "rouge",
    "retrieval",
    "similarity",
    "cost",
    "groundedness",
    "relevance",
)
OPTIONAL_MAPPING = (
    "ground_truth",
    "reference_ids",
    "reference_contexts",
    "context",
    "retrieved_ids",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EvalConfig(_Strict):
    """Which evaluators run and how the judge is set up."""

    metrics: list[MetricName] = Field(default_factory=lambda: list(ALL_METRICS))
    judge: str = Field(
        default="offline",
        description="'offline' or 'gateway:<model alias>' (e.g. gateway:genaiops-local)",
    )
    judge_threshold: float = Field(default=3.0, ge=1, le=5)
    repeats: int = Field(default=1, ge=1, le=50)
    k: int = Field(default=4, ge=1, description="cut-off for recall@k and nDCG@k")
    mapping: dict[str, str] = Field(
        default_factory=dict,
        description="evaluator input -> ${data.COLUMN} or ${run.outputs.NAME}; inputs not named "
        "here are found by column name (COLUMN_ALIASES)",
    )
    prompt_price_per_1k: float = 0.0
    completion_price_per_1k: float = 0.0

    @model_validator(mode="after")
    def _check(self) -> EvalConfig:
        if self.judge != "offline" and not self.judge.startswith("gateway:"):
            raise ValueError("judge must be 'offline' or 'gateway:<model alias>'")
        unknown = set(self.mapping) - {"query", "response", *OPTIONAL_MAPPING}
        if unknown:
            raise ValueError(f"unknown mapping keys {sorted(unknown)}")
        return self

    def resolve_mapping(self, columns: Iterable[str]) -> dict[str, str]:
        """The mapping used on a dataset: ``mapping`` over the recognised column names.

        >>> EvalConfig().resolve_mapping(["question", "ground_truth", "doc_ids"])["ground_truth"]
        '${data.ground_truth}'
        """
        cols = set(columns)
        out = {"query": "${data.question}", "response": DEFAULT_RESPONSE}
        for key, names in COLUMN_ALIASES.items():
            col = next((c for c in names if c in cols), None)
            if col is not None:
                out[key] = f"${{data.{col}}}"
        out.update(self.mapping)
        return out


class Bound(_Strict):
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _one(self) -> Bound:
        if self.min is None and self.max is None:
            raise ValueError("give min and/or max")
        return self


class RegressionConfig(_Strict):
    """A metric regresses when it drops by more than ``max_drop`` *and* the paired test says the
    drop is unlikely to be noise (one-sided p < ``alpha``)."""

    alpha: float = Field(default=0.05, gt=0, lt=1)
    max_drop: dict[str, float] = Field(default_factory=dict)


class RunSection(_Strict):
    flow: str = "flows/rag"
    data: str = "datasets/sample/qa.jsonl"
    variants: str = "all"
    column_mapping: dict[str, Any] = Field(default_factory=dict)
    index_alias: str | None = None
    concurrency: int = Field(default=2, ge=1, le=64)
    limit: int | None = Field(default=None, ge=1)


class GateConfig(_Strict):
    """``evaluation/gate.yaml``: what to run, how to score, and what passes.

    Paths (``run.flow``, ``run.data``, ``baseline``) are relative to the working directory: CI
    runs the gate from the repository root.
    """

    run: RunSection = Field(default_factory=RunSection)
    evaluation: EvalConfig = Field(default_factory=EvalConfig)
    thresholds: dict[str, Bound] = Field(default_factory=dict)
    variant_thresholds: dict[str, dict[str, Bound]] = Field(default_factory=dict)
    variants: list[str] | None = Field(
        default=None, description="variants the gate judges (default: every variant run)"
    )
    regression: RegressionConfig = Field(default_factory=RegressionConfig)
    max_failed_judgements: int = Field(default=0, ge=0)
    baseline: str | None = Field(
        default=None, description="default baseline (run id or summary file); --baseline wins"
    )

    def bounds_for(self, variant: str) -> dict[str, Bound]:
        return {**self.thresholds, **self.variant_thresholds.get(variant, {})}


def load_gate_config(path: str | Path) -> GateConfig:
    return load_yaml_model(path, GateConfig)
