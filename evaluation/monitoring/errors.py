"""Errors of online evaluation and monitoring (``genaiops monitor ...``).

The subtree below hangs off :class:`genaiops.errors.EvaluationError`::

    EvaluationError
    └── MonitoringError          monitoring cannot run (no captured records store, no ledger)
        ├── WhereError           a ``--where`` expression does not parse or names an unknown field
        └── ReferenceError_      a drift reference is missing, empty or unreadable

A breached threshold is not an error: it is a value (:class:`~evaluation.monitoring.config.Breach`)
that makes ``monitor evaluate`` / ``monitor check`` exit 1.
"""

from __future__ import annotations

from genaiops.errors import EvaluationError

__all__ = ["MonitoringError", "ReferenceError_", "WhereError"]


class MonitoringError(EvaluationError):
    """Monitoring cannot run with what it was given."""


class WhereError(MonitoringError):
    """A ``--where`` filter is not valid (the message points at the problem)."""


class ReferenceError_(MonitoringError):  # noqa: N801 - the builtin ReferenceError is unrelated
    """A drift reference (dataset file or earlier window) is missing or has too few questions."""
