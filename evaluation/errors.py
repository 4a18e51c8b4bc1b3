"""Errors of the evaluation package (flows, runs, metrics, the gate).

The subtree below hangs off :class:`genaiops.errors.EvaluationError`::

    EvaluationError
    ├── DataError            a dataset file or line is unreadable (names file + line)
    ├── ColumnMappingError   a mapping names a column that does not exist (lists the ones that do)
    ├── FlowError            a flow folder / flow.dag.yaml is invalid (names file + key)
    │   └── NodeError        a node failed on one line (recorded on the line, fails the gate)
    ├── JudgeError           a judge produced no usable score (recorded as NaN, counted)
    ├── RunNotFound          unknown run id or baseline file
    ├── SummaryError         a summary/baseline file does not validate or is of a newer schema
    └── GateError            the gate cannot be evaluated (metric or variant missing)

Metric and judge failures are values on the scored line, never crashes: these exceptions are
raised inside evaluators and caught by them, or raised before anything runs.
"""

from __future__ import annotations

from genaiops.errors import EvaluationError

__all__ = [
    "ColumnMappingError",
    "DataError",
    "EvaluationError",
    "FlowError",
    "GateError",
    "JudgeError",
    "NodeError",
    "RunNotFound",
    "SummaryError",
]


class DataError(EvaluationError):
    """A dataset file cannot be read, or one of its lines is not a JSON object."""


class ColumnMappingError(EvaluationError):
    """A column mapping refers to a missing column.

    ``missing`` lists the unknown references, ``available`` the names that do exist.
    """

    def __init__(self, message: str, missing: list[str], available: list[str]):
        self.missing = missing
        self.available = available
        super().__init__(f"{message}; available: {', '.join(available) or '(none)'}")


class FlowError(EvaluationError):
    """A flow definition is invalid (unknown node, bad reference, missing tool file)."""


class NodeError(FlowError):
    """A node raised while running one line; the runner records it on that line."""

    def __init__(self, node: str, message: str):
        self.node = node
        super().__init__(f"node {node!r}: {message}")


class JudgeError(EvaluationError):
    """A judge call failed or its reply held no 1–5 score."""


class RunNotFound(EvaluationError):
    """No run with that id under the runs folder, and no such file."""


class SummaryError(EvaluationError):
    """A summary or baseline file is not valid JSON, does not match the schema (names the file
    and the key), or was written by a newer genaiops (its ``schema_version`` is unknown)."""


class GateError(EvaluationError):
    """The gate config names a metric or variant the run does not have."""
