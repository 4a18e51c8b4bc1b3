"""Datasets (JSONL) and column mappings, checked before anything runs.

A mapping value is ``${data.COLUMN}`` (a dataset column), ``${run.outputs.NAME}`` (a flow
output, for evaluators) or a literal. :func:`check_mapping` fails at once, naming the unknown
references and listing the available names — promptflow users otherwise meet silent breaks.

    >>> rows = [{"question": "q", "answer": "a"}]
    >>> check_mapping({"question": "${data.question}"}, rows, source="qa.jsonl")
    >>> check_mapping({"question": "${data.qustion}"}, rows, source="qa.jsonl")
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    evaluation.errors.ColumnMappingError: qa.jsonl: ...'qustion'; available: answer, question
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from evaluation.errors import ColumnMappingError, DataError

__all__ = [
    "apply_mapping",
    "check_mapping",
    "default_mapping",
    "line_id",
    "load_jsonl",
    "resolve_data_path",
]

_DATA = re.compile(r"^\$\{data\.([^}]+)\}$")
_RUN = re.compile(r"^\$\{run\.outputs\.([^}]+)\}$")


def resolve_data_path(data: str | Path) -> Path:
    """``faq`` → ``$GENAIOPS_FAQ_QA`` or ``../shared/datasets/python-docs/faq_qa.jsonl``."""
    if str(data) == "faq":
        env = os.environ.get("GENAIOPS_FAQ_QA")
        root = Path(__file__).resolve().parents[2]
        return Path(env) if env else root.parent / "shared/datasets/python-docs/faq_qa.jsonl"
    return Path(data)


def load_jsonl(path: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
    """Rows of a JSONL file; a bad line raises DataError naming file and line number."""
    p = resolve_data_path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise DataError(f"{p}: data file not found") from e
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{p}: cannot read: {e}") from e
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{p}:{n}: invalid JSON: {e.msg}") from e
        if not isinstance(row, dict):
            raise DataError(f"{p}:{n}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
        if limit is not None and len(rows) >= limit:
            break
    if not rows:
        raise DataError(f"{p}: no data lines")
    return rows


def line_id(row: dict[str, Any], index: int) -> str:
    """A stable id for baselines: the row's ``id`` if any, else its position."""
    return str(row.get("id", index))


def columns(rows: Iterable[dict[str, Any]]) -> list[str]:
    cols: set[str] = set()
    for r in rows:
        cols.update(r)
    return sorted(cols)


def default_mapping(flow_inputs: Iterable[str], rows: list[dict[str, Any]]) -> dict[str, str]:
    """Map each flow input to the same-named column when the data has one."""
    cols = set(columns(rows))
    return {name: f"${{data.{name}}}" for name in flow_inputs if name in cols}


def check_mapping(
    mapping: dict[str, Any],
    rows: list[dict[str, Any]],
    *,
    source: str,
    outputs: Iterable[str] | None = None,
    optional: Iterable[str] = (),
) -> None:
    """Every ``${data.x}`` must be a column of every row (``optional`` keys may be absent),
    every ``${run.outputs.y}`` a flow output. Raises ColumnMappingError listing what exists."""
    cols = columns(rows)
    opt = set(optional)
    for key, value in mapping.items():
        if not isinstance(value, str):
            continue
        m = _DATA.match(value.strip())
        if m:
            col = m.group(1)
            if col not in cols:
                if key in opt:
                    continue
                raise ColumnMappingError(
                    f"{source}: column mapping {key}={value}: no column {col!r}", [col], cols
                )
            missing = [i + 1 for i, r in enumerate(rows) if col not in r]
            if missing and key not in opt:
                raise ColumnMappingError(
                    f"{source}: column mapping {key}={value}: lines {missing[:10]} lack {col!r}",
                    [col],
                    cols,
                )
            continue
        m = _RUN.match(value.strip())
        if m and outputs is not None and m.group(1) not in set(outputs):
            raise ColumnMappingError(
                f"{source}: mapping {key}={value}: the flow has no output {m.group(1)!r}",
                [m.group(1)],
                sorted(outputs),
            )
        if value.strip().startswith("${") and not (m or _DATA.match(value.strip())):
            raise ColumnMappingError(
                f"{source}: mapping {key}={value}: use ${{data.COLUMN}} or ${{run.outputs.NAME}}",
                [value],
                cols,
            )


def apply_mapping(
    mapping: dict[str, Any], row: dict[str, Any], outputs: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Values for one line; optional columns missing from the row are left out."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, str):
            m = _DATA.match(value.strip())
            if m:
                if m.group(1) in row:
                    out[key] = row[m.group(1)]
                continue
            m = _RUN.match(value.strip())
            if m:
                if outputs is not None and m.group(1) in outputs:
                    out[key] = outputs[m.group(1)]
                continue
        out[key] = value
    return out
