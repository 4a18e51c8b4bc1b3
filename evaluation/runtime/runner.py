"""Batch runs of a flow over a dataset, for every selected variant — resumable, concurrent.

A run lives in ``$GENAIOPS_HOME/eval/runs/<run_id>/``: ``run.json`` (what was asked), one
folder per variant with ``lines.jsonl`` (one
:class:`~evaluation.runtime.executor.LineResult` per line,
appended as each finishes). Resuming (``resume=RUN_ID``) re-reads them and runs only the missing
lines; a torn last line from a killed process is cut off, nothing else is ever rewritten.

    >>> result = run_flow(RunRequest(flow="flows/rag", data="datasets/sample/qa.jsonl",
    ...                              variants="all"))                     # doctest: +SKIP
    >>> result.run_id, [v.label for v in result.variants]                 # doctest: +SKIP
"""

from __future__ import annotations

import difflib
import json
import os
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaluation.errors import ColumnMappingError
from evaluation.runtime.data import (
    apply_mapping,
    check_mapping,
    columns,
    default_mapping,
    line_id,
    load_jsonl,
)
from evaluation.runtime.executor import FlowExecutor, LineResult
from evaluation.runtime.flow import Flow, VariantSet, load_flow, select_variants
from evaluation.runtime.run_meta import (
    RunMeta,
    RunRequest,
    VariantMeta,
    read_run_meta,
    write_run_meta,
)
from genaiops.settings import get_settings

__all__ = [
    "RunRequest",
    "RunResult",
    "load_lines",
    "load_run",
    "new_run_id",
    "run_flow",
    "runs_dir",
]

Progress = Callable[[str, int, int], None]


def runs_dir() -> Path:
    return get_settings().home / "eval" / "runs"


@dataclass
class RunResult:
    """A run on disk and in memory: per-variant :class:`LineResult` lists, the rows, the flow."""

    run_id: str
    path: Path
    request: RunRequest
    variants: list[VariantSet]
    lines: dict[str, list[LineResult]]
    rows: list[dict[str, Any]]
    flow: Flow
    interrupted: bool = False

    def errors(self) -> dict[str, int]:
        return {v: sum(1 for r in ls if r.error) for v, ls in self.lines.items()}


def new_run_id(flow: Flow, name: str | None) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return f"{name or flow.path.name}-{stamp}-{secrets.token_hex(2)}"


def load_lines(path: Path) -> list[LineResult]:
    """Read ``lines.jsonl``; a torn (unparseable) final line is cut off the file."""
    if not path.exists():
        return []
    raw = path.read_bytes()
    good_end = 0
    out: list[LineResult] = []
    for chunk in raw.splitlines(keepends=True):
        try:
            d = json.loads(chunk)
        except json.JSONDecodeError:
            break
        if not chunk.endswith(b"\n"):
            break
        out.append(LineResult.from_dict(d))
        good_end += len(chunk)
    if good_end != len(raw):  # torn tail from a killed writer: drop it, keep the rest
        with open(path, "r+b") as f:
            f.truncate(good_end)
    return out


def _mapping(req: RunRequest, flow: Flow, rows: list[dict[str, Any]]) -> dict[str, Any]:
    mapping = default_mapping(flow.inputs, rows) | dict(req.column_mapping)
    unknown = sorted(set(mapping) - set(flow.inputs))
    if unknown:
        raise ColumnMappingError(
            f"{flow.dag_file}: column mapping names unknown flow inputs {unknown}",
            unknown,
            sorted(flow.inputs),
        )
    if req.index_alias is not None:
        if "alias" not in flow.inputs:
            raise ColumnMappingError(
                f"{flow.dag_file}: --index-alias given but the flow has no 'alias' input",
                ["alias"],
                sorted(flow.inputs),
            )
        mapping["alias"] = req.index_alias
    check_mapping(mapping, rows, source=str(req.data))
    cols = columns(rows)
    from_data = [k for k, v in mapping.items() if isinstance(v, str) and v.startswith("${data.")]
    if not from_data:
        raise ColumnMappingError(
            f"{req.data}: no column feeds any flow input ({', '.join(flow.inputs)}): every "
            "line would run on defaults; map one with --column-mapping INPUT='${data.COLUMN}'",
            list(flow.inputs),
            cols,
        )
    for name in flow.inputs:
        if name in mapping:
            continue
        near = difflib.get_close_matches(name, cols, n=1, cutoff=0.8)
        if near:  # a misspelt column would silently fall back to the input's default
            raise ColumnMappingError(
                f"{req.data}: column {near[0]!r} looks like flow input {name!r}, which would "
                f"silently use its default; rename the column or map {name}='${{data.{near[0]}}}'",
                [name],
                cols,
            )
    needed = [
        n
        for n, spec in flow.inputs.items()
        if spec.default is None and not spec.is_chat_history and n not in mapping
    ]
    if needed:
        raise ColumnMappingError(
            f"{req.data}: flow inputs {needed} have no default and no column; "
            f"map them with --column-mapping INPUT='${{data.COLUMN}}'",
            needed,
            columns(rows),
        )
    return mapping


def run_flow(
    req: RunRequest,
    *,
    resume: str | None = None,
    progress: Progress | None = None,
    connections: dict[str, Any] | None = None,
    retry_errors: bool = False,
) -> RunResult:
    """Run (or resume) every selected variant over the dataset. Never raises for a line."""
    if resume:
        path = runs_dir() / resume
        saved = read_run_meta(path).request
        saved.concurrency = req.concurrency  # how to run the rest is the caller's choice
        saved.engine = req.engine
        req, run_id = saved, resume
    flow = load_flow(req.flow)
    rows = load_jsonl(req.data, limit=req.limit)
    mapping = _mapping(req, flow, rows)  # fails before anything runs
    variant_sets = select_variants(flow, req.variants)
    executor = FlowExecutor(flow, connections)
    executor.check_connections(variant_sets)  # no gateway configured: fail before running
    if not resume:
        run_id = new_run_id(flow, req.name)
        path = runs_dir() / run_id
    path.mkdir(parents=True, exist_ok=True)
    meta = RunMeta(
        run_id=run_id,
        request=req,
        flow_path=str(flow.path),
        column_mapping=mapping,
        variants=variant_metas(flow, variant_sets),
        status="running",
    )
    write_run_meta(path, meta)
    result = RunResult(run_id, path, req, variant_sets, {}, rows, flow)
    try:
        for vs in variant_sets:
            result.lines[vs.label] = _run_variant(
                executor,
                vs,
                rows,
                mapping,
                path / vs.label,
                req.concurrency,
                progress,
                retry_errors,
                req.engine,
            )
    except KeyboardInterrupt:
        result.interrupted = True
        meta.status = "interrupted"
        write_run_meta(path, meta)
        raise
    meta.status = "completed"
    write_run_meta(path, meta)
    return result


def variant_metas(flow: Flow, sets: list[VariantSet]) -> list[VariantMeta]:
    """What ``run.json`` records of each variant set (both runners)."""
    return [
        VariantMeta(label=v.label, choice=v.choice, prompt_hash=flow.prompt_hash(v)) for v in sets
    ]


def _run_variant(
    executor: FlowExecutor,
    vs: VariantSet,
    rows: list[dict[str, Any]],
    mapping: dict[str, Any],
    folder: Path,
    concurrency: int,
    progress: Progress | None,
    retry_errors: bool,
    engine: str = "local",
) -> list[LineResult]:
    folder.mkdir(parents=True, exist_ok=True)
    lines_file = folder / "lines.jsonl"
    done = {r.index: r for r in load_lines(lines_file) if not (retry_errors and r.error)}
    todo = [i for i in range(len(rows)) if i not in done]
    lock = threading.Lock()
    if progress:
        progress(vs.label, len(done), len(rows))
    with open(lines_file, "a", encoding="utf-8") as out:

        def record(r: LineResult) -> LineResult:
            with lock:
                out.write(json.dumps(r.to_dict(), default=str, ensure_ascii=False) + "\n")
                out.flush()
                done[r.index] = r
                if progress:
                    progress(vs.label, len(done), len(rows))
            return r

        def one(i: int) -> LineResult:
            values = apply_mapping(mapping, rows[i])
            return record(executor.run_line(values, vs, index=i, line_id=line_id(rows[i], i)))

        if engine == "ray":  # the same lines as Ray tasks; this process still writes them
            from evaluation.runtime.ray_lines import run_lines

            jobs = [(i, apply_mapping(mapping, rows[i]), line_id(rows[i], i)) for i in todo]
            for r in run_lines(executor, vs, jobs, concurrency):
                record(r)
        elif concurrency <= 1:
            for i in todo:
                one(i)
        else:
            with ThreadPoolExecutor(max_workers=concurrency) as pool:
                futures = [pool.submit(one, i) for i in todo]
                try:
                    for f in as_completed(futures):
                        f.result()
                except KeyboardInterrupt:
                    for f in futures:
                        f.cancel()
                    raise
    # the latest record of each line wins (a retried error is superseded)
    latest = {r.index: r for r in load_lines(lines_file)}
    result = [latest[i] for i in sorted(latest)]
    if any(n.aggregation for n in executor.flow.nodes):
        _write_json(folder / "aggregates.json", executor.run_aggregation(result, vs))
    return result


def load_run(run_id: str) -> RunResult:
    """Re-open a finished (or interrupted) run from disk."""
    path = runs_dir() / run_id
    meta = read_run_meta(path)
    req = meta.request
    flow = load_flow(meta.flow_path or req.flow)
    rows = load_jsonl(req.data, limit=req.limit)
    sets = [VariantSet(dict(v.choice)) for v in meta.variants]
    lines = {}
    for vs in sets:
        latest = {r.index: r for r in load_lines(path / vs.label / "lines.jsonl")}
        lines[vs.label] = [latest[i] for i in sorted(latest)]
    return RunResult(
        run_id, path, req, sets, lines, rows, flow, interrupted=meta.status != "completed"
    )


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)
