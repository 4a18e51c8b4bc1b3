"""MLOps training jobs: a YAML spec, one entry point, tracked in MLflow, promoted by alias.

    >>> from training import load_spec, promote, run_job
    >>> report = run_job(load_spec("training/specs/prompt_attack.yaml"))   # doctest: +SKIP
    >>> promote("prompt-attack")                                           # doctest: +SKIP

The CLI is ``genaiops train run|list|show|promote|rollback|export``.  Kinds live in
``training.kinds``; the MLflow seam is ``training.tracking``.
"""

from training.errors import DataSourceError, PromotionRefused, RunNotFound, TrainingError
from training.export import export_azureml
from training.jobs import list_runs, run_job, show_run
from training.promotion import promote, rollback
from training.report import RunReport
from training.spec import load_spec
from training.tracking import Tracker, tracking_uri

__all__ = [
    "DataSourceError",
    "PromotionRefused",
    "RunNotFound",
    "RunReport",
    "Tracker",
    "TrainingError",
    "export_azureml",
    "list_runs",
    "load_spec",
    "promote",
    "rollback",
    "run_job",
    "show_run",
    "tracking_uri",
]
