"""MLflow tracking: one run per variant with lineage params, metrics and report artifacts.

The store is local by default (``sqlite:///$GENAIOPS_HOME/mlflow.db``); ``MLFLOW_TRACKING_URI``
points it at a server. Lineage params answer "which index version, prompt and model produced
this score": ``variant``, ``prompt_hash``, ``index_version_ids``, ``model_alias``,
``model_deployments``, ``judge``, ``data_sha256_16``, ``git_commit``.

    >>> ids = log_summary(summary, report_paths)                         # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any

from evaluation.summary import EvalSummary
from genaiops.settings import get_settings

__all__ = ["log_summary", "tracking_uri", "use_experiment"]

log = logging.getLogger(__name__)


def tracking_uri() -> str:
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    home = get_settings().home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'mlflow.db'}"


def use_experiment(experiment: str) -> Any:
    """Point MLflow at :func:`tracking_uri` and ``experiment`` (created with its artifacts
    under ``GENAIOPS_HOME`` for a local store); returns the ``mlflow`` module."""
    import mlflow

    for noisy in ("mlflow", "alembic"):  # schema-migration chatter at INFO on first use
        logging.getLogger(noisy).setLevel(max(logging.getLogger(noisy).level, logging.WARNING))
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(experiment) is None and "://" not in uri.replace(
        "sqlite:///", ""
    ):
        # a local store keeps artifacts under GENAIOPS_HOME too (mlflow's default is ./mlruns)
        artifacts_root = get_settings().home.resolve() / "mlartifacts"
        mlflow.create_experiment(experiment, artifact_location=artifacts_root.as_uri())
    mlflow.set_experiment(experiment)
    return mlflow


def log_summary(
    summary: EvalSummary,
    artifacts: dict[str, str] | None = None,
    experiment: str = "genaiops-eval",
) -> dict[str, str]:
    """Log each variant as an MLflow run; returns ``{variant: mlflow_run_id}``."""
    mlflow = use_experiment(experiment)
    ids = {}
    for label, agg in summary.variants.items():
        with mlflow.start_run(run_name=f"{summary.run_id}/{label}") as run:
            params = {
                k: (",".join(map(str, v)) if isinstance(v, list) else str(v))
                for k, v in agg.params.model_dump(exclude={"variant_choice"}).items()
            }
            mlflow.log_params({k: v[:500] for k, v in params.items()})
            metrics: dict[str, float] = {
                "n_errors": float(agg.n_errors),
                "n_lines": float(agg.n_lines),
            }
            for name, m in agg.metrics.items():
                if not math.isnan(m.mean):
                    metrics[name] = float(m.mean)
                metrics[f"{name}_n_nan"] = float(m.n_nan)
            for name, n in agg.judge_failures.items():
                metrics[f"{name}_failed_judgements"] = float(n)
            mlflow.log_metrics(metrics)
            mlflow.set_tags({"genaiops.run_id": summary.run_id, "genaiops.variant": label})
            for path in (artifacts or {}).values():
                mlflow.log_artifact(path)
            ids[label] = run.info.run_id
    return ids
