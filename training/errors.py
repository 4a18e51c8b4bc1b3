"""Errors of the training package (job specs, runs, the registry and promotion).

The subtree hangs off :class:`genaiops.errors.GenAIOpsError` (the CLI maps it to one line and
exit 2; :class:`PromotionRefused` is a verdict, not a failure, and exits 1 with the numbers)::

    TrainingError
    ├── DataSourceError    a training data source cannot be fetched or read (names it)
    ├── RunNotFound        unknown run id / registered model / model version
    └── PromotionRefused   the challenger does not beat the champion (carries both numbers)
"""

from __future__ import annotations

from typing import Any

from genaiops.errors import GenAIOpsError

__all__ = ["DataSourceError", "PromotionRefused", "RunNotFound", "TrainingError"]


class TrainingError(GenAIOpsError):
    """Base of training errors."""


class DataSourceError(TrainingError):
    """A data source named by a job spec cannot be fetched or read."""


class RunNotFound(TrainingError):
    """No tracked run, registered model or model version by that name."""


class PromotionRefused(TrainingError):
    """The challenger did not beat the champion on the job's own evaluation.

    ``comparison`` holds the metric name and both values so the CLI can print them.
    """

    def __init__(self, message: str, comparison: dict[str, Any]):
        self.comparison = comparison
        super().__init__(message)
