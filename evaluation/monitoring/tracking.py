"""One MLflow run per ``monitor evaluate`` (experiment ``genaiops-online``), in the store
evaluation and training use (:func:`evaluation.tracking.tracking_uri`).

Metrics are the window's aggregates overall and per deployment and prompt variant
(``groundedness_mean.<deployment>.<variant>``); params say which window, alias and judge.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from evaluation.tracking import use_experiment

if TYPE_CHECKING:
    from evaluation.monitoring.online import EvaluateResult

__all__ = ["ONLINE_EXPERIMENT", "log_online_run"]

ONLINE_EXPERIMENT = "genaiops-online"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-/ ]")  # MLflow metric names allow these only


def log_online_run(result: EvaluateResult, alias: str | None = None) -> str:
    """Log the run; returns its MLflow run id."""
    mlflow = use_experiment(ONLINE_EXPERIMENT)
    with mlflow.start_run(run_name=f"online/{alias or 'all'}") as run:
        mlflow.log_params(
            {
                "since": f"{result.since:.0f}",
                "until": f"{result.until:.0f}",
                "alias": alias or "all",
                "judge": result.judge,
            }
        )
        metrics: dict[str, float] = {
            "captured": float(result.captured),
            "scored": float(result.scored),
            "ledger_scores": float(result.ledger_scores),
            "breaches": float(len(result.breaches)),
        }
        for g in result.groups:
            suffix = _UNSAFE.sub("_", f"{g.deployment or '-'}.{g.variant or '-'}")
            for name in (
                "groundedness_mean",
                "relevance_mean",
                "online_score_mean",
                "refusal_rate",
                "safety_block_rate",
                "answer_length_mean",
            ):
                v = getattr(g, name)
                if v is not None:
                    metrics[f"{name}.{suffix}"] = float(v)
            metrics[f"n.{suffix}"] = float(g.n)
        mlflow.log_metrics(metrics)
        mlflow.set_tags({"genaiops.kind": "online-eval"})
        return str(run.info.run_id)
