"""Training tests: fake wheels in the cache, and an MLflow store migrated once per session.

Creating MLflow's SQLite schema runs every alembic migration (tens of seconds on a busy CPU);
the session builds one empty store and each test starts from a copy of it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.training.fixtures import write_wheels


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import os

    from genaiops.settings import reset_settings
    from training.tracking import Tracker

    home = tmp_path_factory.mktemp("mlflow-template")
    old = os.environ.get("GENAIOPS_HOME")
    os.environ["GENAIOPS_HOME"] = str(home)
    # mlflow.set_tracking_uri (evaluation tests) exports MLFLOW_TRACKING_URI; the template is
    # the local default store
    uri = os.environ.pop("MLFLOW_TRACKING_URI", None)
    reset_settings()
    try:
        Tracker().client.search_experiments()
    finally:
        if old is None:
            os.environ.pop("GENAIOPS_HOME", None)
        else:
            os.environ["GENAIOPS_HOME"] = old
        reset_settings()
        if uri is not None:
            os.environ["MLFLOW_TRACKING_URI"] = uri
    return home / "mlflow.db"


@pytest.fixture
def train_home(genaiops_home: Path, mlflow_template: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """GENAIOPS_HOME with a ready MLflow store and the stand-in wheels."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    genaiops_home.mkdir(parents=True, exist_ok=True)
    shutil.copy(mlflow_template, genaiops_home / "mlflow.db")
    write_wheels(genaiops_home / "cache" / "wheels")
    return genaiops_home
