"""The ``ray`` line engine: a variant's lines as Ray tasks, at most ``concurrency`` in flight.

Only the execution of a line moves: each task runs :meth:`FlowExecutor.run_line` in a Ray
worker, and the result comes back to the driver, which writes ``lines.jsonl``, resumes and
scores exactly as with the local threads (:mod:`evaluation.runtime.runner`).  ``concurrency``
bounds the calls towards the gateway however large the cluster.  Workers get the driver's
settings (:func:`genaiops.ray_runtime.runtime_env`): the same gateway URL, key and
``GENAIOPS_HOME`` (the flow's retrieval reads the index there, so on a cluster it is a shared
volume).  A worker that dies makes its line an error (``--retry-errors`` reruns it), not the run.

    >>> for r in run_lines(executor, variants, [(0, {"question": "q"}, "q01")], 4):
    ...     print(r.outputs)                                              # doctest: +SKIP
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

from evaluation.runtime.executor import FlowExecutor, LineResult
from evaluation.runtime.flow import VariantSet, load_flow
from genaiops.ray_runtime import RaySettings, connect, runtime_env, worker_cause

__all__ = ["Job", "run_lines"]

Job = tuple[int, dict[str, Any], str]
"""One line to run: (index in the dataset, flow input values, line id)."""

_EXECUTORS: dict[str, FlowExecutor] = {}
"""Per worker process: one executor per run (tools and templates load once per worker)."""


def _run_line(
    run: str,
    flow_path: str,
    connections: dict[str, Any],
    choice: dict[str, str],
    job: Job,
) -> dict[str, Any]:
    """Runs in a Ray worker: one line, as :meth:`FlowExecutor.run_line` records it."""
    executor = _EXECUTORS.get(run)
    if executor is None:
        while len(_EXECUTORS) >= 4:  # older runs' executors
            _EXECUTORS.pop(next(iter(_EXECUTORS)))
        executor = _EXECUTORS[run] = FlowExecutor(load_flow(flow_path), connections)
    index, values, line_id = job
    result = executor.run_line(values, VariantSet(dict(choice)), index=index, line_id=line_id)
    return result.to_dict()


def run_lines(
    executor: FlowExecutor, variants: VariantSet, jobs: list[Job], concurrency: int
) -> Iterator[LineResult]:
    """Each job's :class:`LineResult` as its task finishes (completion order, like threads)."""
    if not jobs:
        return
    ray = connect()
    task = ray.remote(_run_line).options(
        num_cpus=RaySettings().line_cpus, runtime_env=runtime_env(), max_retries=0
    )
    run = secrets.token_hex(8)
    flow_path = str(executor.flow.path)
    connections = ray.put(executor.connections)
    pending: dict[Any, Job] = {}
    queue = list(reversed(jobs))
    try:
        while queue or pending:
            while queue and len(pending) < max(1, concurrency):
                job = queue.pop()
                ref = task.remote(run, flow_path, connections, variants.choice, job)
                pending[ref] = job
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                job = pending.pop(ref)
                try:
                    yield LineResult.from_dict(ray.get(ref))
                except ray.exceptions.RayError as e:  # the worker, not the line, failed
                    yield _worker_failure(job, variants, e)
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise


def _worker_failure(job: Job, variants: VariantSet, e: Exception) -> LineResult:
    index, values, line_id = job
    return LineResult(
        index,
        line_id,
        variants.label,
        dict(values),
        error={"node": "", "type": type(e).__name__, "message": worker_cause(e)[:500]},
    )
