"""Library code leaves the process environment alone (issue 12, item 7): only the CLI, the
application, sets switches for its own process."""

from __future__ import annotations

import os

import pytest


def test_tracker_and_ragas_import_do_not_touch_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from evaluation.ragas_adapter import _import_ragas
    from training.tracking import Tracker

    for name in ("RAGAS_DO_NOT_TRACK", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"):
        monkeypatch.delenv(name, raising=False)
    before = dict(os.environ)
    Tracker()
    _import_ragas()
    assert dict(os.environ) == before
