"""The one module outside ``flows/`` that imports promptflow (it retires 2027-04: keep the seam).

* :func:`ensure_connection` creates/updates the ``genaiops_gateway`` OpenAI connection from
  genaiops settings, so ``pf flow test`` and the VS Code extension reach the gateway.
* :func:`pf_batch` runs a variant with ``pf run`` and returns :class:`LineResult` records, so
  the same scoring, reports and gate work on promptflow's runs.

Headless machines have no system keyring, which promptflow needs to encrypt connection secrets;
:func:`configure_environment` selects :mod:`evaluation.runtime.pf_keyring` then, and turns
telemetry and
tracing off. promptflow's local service (waitress on 127.0.0.1:23333) outlives ``pf run``:
:func:`stop_service` stops it.

    >>> ensure_connection()                                             # doctest: +SKIP
    >>> lines = pf_batch("flows/rag", "datasets/sample/qa.jsonl",
    ...                  {"question": "${data.question}"}, "answer_prompt.terse")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from evaluation.errors import EvaluationError
from evaluation.runtime.executor import LineResult
from evaluation.runtime.flowtools import CONNECTION_NAME
from evaluation.runtime.pf_keyring import BACKEND

__all__ = [
    "configure_environment",
    "ensure_connection",
    "pf_batch",
    "pf_run_flow",
    "stop_service",
]


def configure_environment() -> None:
    """Quiet, offline-safe promptflow: no tracing, no telemetry, a working keyring."""
    os.environ.setdefault("PF_DISABLE_TRACING", "true")
    os.environ.setdefault("PF_DISABLE_TELEMETRY", "true")
    if "PYTHON_KEYRING_BACKEND" not in os.environ:
        import keyring
        from keyring.backends import fail

        if isinstance(keyring.get_keyring(), fail.Keyring):
            os.environ["PYTHON_KEYRING_BACKEND"] = BACKEND
            keyring.set_keyring(_file_keyring())


def _file_keyring() -> Any:
    from evaluation.runtime.pf_keyring import FileKeyring

    return FileKeyring()


def _client() -> Any:
    configure_environment()
    from promptflow._sdk._configuration import Configuration
    from promptflow.client import PFClient

    with contextlib.suppress(AttributeError, OSError):  # = pf config set telemetry.enabled=false
        Configuration.get_instance().set_config("telemetry.enabled", False)
    return PFClient()


def ensure_connection(
    name: str = CONNECTION_NAME, base_url: str | None = None, api_key: str | None = None
) -> dict[str, str]:
    """Create or update the OpenAI connection ``name`` pointing at the gateway."""
    from promptflow.entities import OpenAIConnection

    from genaiops.errors import ConfigError
    from genaiops.settings import get_settings

    s = get_settings()
    base_url = base_url or s.gateway_url
    if not base_url:
        raise ConfigError("GENAIOPS_GATEWAY_URL is not set: where is the gateway?")
    key = api_key or (s.api_key.get_secret_value() if s.api_key else None) or "none"
    pf = _client()
    conn = pf.connections.create_or_update(
        OpenAIConnection(name=name, api_key=key, base_url=base_url)
    )
    return {"name": conn.name, "base_url": str(conn.base_url)}


def pf_batch(
    flow: str | Path,
    data: str | Path,
    column_mapping: dict[str, Any],
    variant: str | None = None,
    *,
    concurrency: int = 2,
) -> list[LineResult]:
    """Run ``pf run`` for one variant (``node.variant``) and read back per-line results."""
    pf = _client()
    t0 = time.perf_counter()
    kwargs: dict[str, Any] = {}
    if variant and variant != "default":
        node, _, vid = variant.partition(".")
        kwargs["variant"] = f"${{{node}.{vid}}}"
    mapping = {k: v for k, v in column_mapping.items()}
    run = pf.run(
        flow=str(flow),
        data=str(data),
        column_mapping=mapping,
        stream=False,
        environment_variables={"PF_WORKER_COUNT": str(concurrency)},
        **kwargs,
    )
    elapsed = time.perf_counter() - t0
    if str(run.status).lower() not in ("completed", "failed"):
        raise EvaluationError(f"pf run {run.name} ended with status {run.status}")
    details = pf.get_details(run, all_results=True)
    records = details.to_dict(orient="records")
    label = variant or "default"
    out = []
    for i, rec in enumerate(records):
        inputs = {k[7:]: v for k, v in rec.items() if k.startswith("inputs.")}
        outputs = {k[8:]: v for k, v in rec.items() if k.startswith("outputs.")}
        line_no = int(inputs.pop("line_number", i))
        failed = all(v is None or v != v for v in outputs.values())  # NaN/None: the line failed
        usage: dict[str, Any] = u if isinstance(u := outputs.get("usage"), dict) else {}
        ctx = outputs.get("context")
        out.append(
            LineResult(
                index=line_no,
                line_id=str(line_no),
                variant=label,
                inputs=inputs,
                outputs={} if failed else outputs,
                retrieved=ctx if isinstance(ctx, list) else [],
                latency_s=elapsed / max(1, len(records)),
                prompt_tokens=int(usage.get("prompt_tokens", 0)),
                completion_tokens=int(usage.get("completion_tokens", 0)),
                error={"node": "", "type": "PromptflowLineError", "message": f"pf run {run.name}"}
                if failed
                else None,
            )
        )
    return sorted(out, key=lambda r: r.index)


def pf_run_flow(req: Any) -> str:
    """Run every selected variant of ``req`` (a RunRequest) with ``pf run``; store the lines in a
    genaiops run folder (same layout as the genaiops runner) and return its run id."""
    import json

    from evaluation.runtime.data import default_mapping, line_id, load_jsonl
    from evaluation.runtime.flow import load_flow, select_variants
    from evaluation.runtime.runner import new_run_id, runs_dir

    flow = load_flow(req.flow)
    rows = load_jsonl(req.data, limit=req.limit)
    mapping = default_mapping(flow.inputs, rows) | dict(req.column_mapping)
    run_id = new_run_id(flow, "pf")
    path = runs_dir() / run_id
    sets = select_variants(flow, req.variants)
    try:
        for vs in sets:
            lines = pf_batch(
                flow.path,
                Path(req.data).resolve(),
                mapping,
                vs.label if vs.choice else None,
                concurrency=req.concurrency,
            )
            (path / vs.label).mkdir(parents=True, exist_ok=True)
            with open(path / vs.label / "lines.jsonl", "w", encoding="utf-8") as f:
                for ln in lines:
                    ln.line_id, ln.variant = line_id(rows[ln.index], ln.index), vs.label
                    f.write(json.dumps(ln.to_dict(), default=str) + "\n")
    finally:
        stop_service()
    meta = {
        "run_id": run_id,
        "request": req.to_dict(),
        "flow_path": str(flow.path),
        "column_mapping": mapping,
        "runner": "pf",
        "created": time.time(),
        "status": "completed",
        "variants": [
            {"label": v.label, "choice": v.choice, "prompt_hash": flow.prompt_hash(v)} for v in sets
        ],
    }
    (path / "run.json").write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
    return run_id


def stop_service() -> None:
    """Stop promptflow's local service (it keeps running after ``pf run``)."""
    pf = Path(sys.executable).parent / "pf"
    subprocess.run([str(pf), "service", "stop"], capture_output=True, check=False, timeout=60)
