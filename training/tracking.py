"""The MLflow seam: tracking store, runs, the model registry and its aliases.

The store is ``sqlite:///$GENAIOPS_HOME/mlflow.db`` (shared with evaluation runs; artifacts in
``$GENAIOPS_HOME/mlartifacts``), unless
``MLFLOW_TRACKING_URI`` names another (a server, Azure ML's workspace URI).  Each registered
model has one experiment, ``training/<model>``.  Aliases follow the Azure mlops-v2 templates:
``challenger`` is the version a run just registered, ``champion`` the one in production; the
registered model's tag ``champion_history`` lists earlier champions so rollback can go back.

Nothing else in ``training`` imports mlflow.

    >>> tracker = Tracker()                                           # doctest: +SKIP
    >>> tracker.alias_version("prompt-attack", "champion")            # doctest: +SKIP
    '3'
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from genaiops.settings import get_settings
from training.errors import RunNotFound

__all__ = ["CHALLENGER", "CHAMPION", "Tracker", "tracking_uri"]

CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_TAG = "champion_history"

log = logging.getLogger(__name__)


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else a SQLite store under ``GENAIOPS_HOME``."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    db = get_settings().path("mlflow.db").resolve()  # the store evaluation runs use too
    return f"sqlite:///{db}"


def _artifact_root() -> str | None:
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return None  # the server decides
    return get_settings().path("mlartifacts", "x").parent.resolve().as_uri()


class Tracker:
    """Runs and registry operations on one MLflow store (``MlflowClient``, no global state)."""

    def __init__(self, uri: str | None = None):
        from mlflow.tracking import MlflowClient

        for noisy in ("mlflow", "alembic"):  # after the import: mlflow sets its own levels
            logging.getLogger(noisy).setLevel(logging.WARNING)

        self.uri = uri or tracking_uri()
        self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    # -- runs ---------------------------------------------------------------------------
    def experiment_id(self, model: str) -> str:
        name = f"training/{model}"
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return str(exp.experiment_id)
        return str(self.client.create_experiment(name, artifact_location=_artifact_root_for(name)))

    def start_run(self, model: str, tags: dict[str, str]) -> str:
        run = self.client.create_run(self.experiment_id(model), tags=tags)
        return str(run.info.run_id)

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in sorted(params.items())]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i : i + 100])

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in sorted(metrics.items())]
        for i in range(0, len(items), 500):
            self.client.log_batch(run_id, metrics=items[i : i + 500])

    def log_artifacts(self, run_id: str, folder: Path, path: str | None = None) -> None:
        self.client.log_artifacts(run_id, str(folder), artifact_path=path)

    def log_file(self, run_id: str, path: Path) -> None:
        self.client.log_artifact(run_id, str(path))

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

    def get_run(self, run_id: str) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_run(run_id)
        except MlflowException as e:
            raise RunNotFound(f"no tracked run {run_id!r} in {self.uri}") from e

    def runs(self, model: str | None = None, limit: int = 50) -> list[Any]:
        exps = [e for e in self.client.search_experiments() if e.name.startswith("training/")]
        if model:
            exps = [e for e in exps if e.name == f"training/{model}"]
        if not exps:
            return []
        return list(
            self.client.search_runs(
                [e.experiment_id for e in exps],
                order_by=["attributes.start_time DESC"],
                max_results=limit,
            )
        )

    def download(self, run_id: str, path: str, dest: Path | None = None) -> Path:
        """An artifact folder/file of a run, as a local path."""
        import mlflow.artifacts

        dest = dest or Path(tempfile.mkdtemp(prefix="genaiops-artifact-"))
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=path, dst_path=str(dest), tracking_uri=self.uri
        )
        return Path(local)

    # -- registry -----------------------------------------------------------------------
    def register(self, model: str, run_id: str, artifact_path: str, tags: dict[str, str]) -> str:
        """A new version of ``model`` from a run's artifact folder; it becomes the challenger."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(model)
        except MlflowException:
            self.client.create_registered_model(model, description=f"genaiops training: {model}")
        run = self.get_run(run_id)
        source = f"{run.info.artifact_uri.rstrip('/')}/{artifact_path}"
        mv = self.client.create_model_version(model, source, run_id=run_id, tags=tags)
        self.client.set_registered_model_alias(model, CHALLENGER, mv.version)
        return str(mv.version)

    def versions(self, model: str) -> list[Any]:
        return sorted(
            self.client.search_model_versions(f"name='{model}'"), key=lambda v: int(v.version)
        )

    def version(self, model: str, version: str) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version(model, version)
        except MlflowException as e:
            raise RunNotFound(f"registered model {model!r} has no version {version!r}") from e

    def alias_version(self, model: str, alias: str) -> str | None:
        from mlflow.exceptions import MlflowException

        try:
            return str(self.client.get_model_version_by_alias(model, alias).version)
        except MlflowException:
            return None

    def aliases(self, model: str) -> dict[str, str]:
        from mlflow.exceptions import MlflowException

        try:
            rm = self.client.get_registered_model(model)
        except MlflowException as e:
            raise RunNotFound(f"no registered model {model!r} in {self.uri}") from e
        return {k: str(v) for k, v in (rm.aliases or {}).items()}

    def history(self, model: str) -> list[str]:
        rm = self.client.get_registered_model(model)
        return list(json.loads((rm.tags or {}).get(HISTORY_TAG, "[]")))

    def set_champion(self, model: str, version: str, *, history: list[str]) -> None:
        self.client.set_registered_model_alias(model, CHAMPION, version)
        self.client.set_registered_model_tag(model, HISTORY_TAG, json.dumps(history))
        if self.alias_version(model, CHALLENGER) == version:
            self.client.delete_registered_model_alias(model, CHALLENGER)

    def fetch_version(self, model: str, version: str, dest: Path) -> Path:
        """Copy a registered version's files into ``dest`` (replaced)."""
        import mlflow.artifacts

        mv = self.version(model, version)
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=mv.source, dst_path=str(dest), tracking_uri=self.uri
        )
        return Path(local)


def _artifact_root_for(experiment: str) -> str | None:
    root = _artifact_root()
    if root is None:
        return None
    return f"{root}/{experiment.replace('/', '_')}"
