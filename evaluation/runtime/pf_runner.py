"""The one module outside ``flows/`` that imports promptflow (it retires 2027-04: keep the seam).

* :func:`configure_promptflow` makes later ``pf`` commands work on a headless machine too: it
  selects ``keyrings.alt``'s file keyring in keyring's own config file (``keyringrc.cfg``) when
  no system keyring works (promptflow encrypts connection secrets with a key kept in the
  keyring: ``StoreConnectionEncryptionKeyError`` otherwise), and turns promptflow's telemetry
  off in its user config (``pf.yaml``, as ``pf config set telemetry.enabled=false`` does).
* :func:`ensure_connection` creates/updates the ``genaiops_gateway`` OpenAI connection from
  genaiops settings, so ``pf flow test`` and the VS Code extension reach the gateway.
* :func:`pf_batch` runs a variant with ``pf run`` and returns :class:`LineResult` records (each
  line's latency from promptflow's own line records), so the same scoring, reports and gate
  work on promptflow's runs.
* promptflow's local service (waitress on 127.0.0.1:23333) outlives the command that started
  it: :func:`stopping_service` stops it when genaiops started it, never a service the user had.

Only public promptflow API is used (``promptflow.client``, ``promptflow.entities``, the run's
``output_path`` property and the files promptflow documents there).

    >>> ensure_connection()                                             # doctest: +SKIP
    >>> lines = pf_batch("flows/rag", "datasets/sample/qa.jsonl",
    ...                  {"question": "${data.question}"}, "answer_prompt.terse")  # doctest: +SKIP
"""

from __future__ import annotations

import configparser
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import keyring
import keyring.util.platform_
import yaml
from keyring.backends import fail
from keyrings.alt.file import PlaintextKeyring

from evaluation.errors import EvaluationError
from evaluation.runtime.data import default_mapping, line_id, load_jsonl
from evaluation.runtime.executor import LineResult, retrieved_chunks
from evaluation.runtime.flow import load_flow, select_variants
from evaluation.runtime.llm import CONNECTION_NAME
from evaluation.runtime.run_meta import RunMeta, RunRequest, write_run_meta
from evaluation.runtime.runner import new_run_id, runs_dir, variant_metas
from genaiops.errors import ConfigError
from genaiops.settings import get_settings

__all__ = [
    "FILE_KEYRING",
    "configure_promptflow",
    "ensure_connection",
    "pf_batch",
    "pf_run_flow",
    "stop_service",
    "stopping_service",
]

#: keyrings.alt's file keyring (the secret file is mode 0600 under keyring's data dir)
FILE_KEYRING = f"{PlaintextKeyring.__module__}.{PlaintextKeyring.__name__}"
SERVICE_PORT = 23333  # promptflow's default; the port it picked is kept under <pf home>/pfs/
#: for the processes promptflow starts: quiet and offline (passed explicitly, never exported)
PF_RUN_ENV = {"PF_DISABLE_TRACING": "true", "PF_DISABLE_TELEMETRY": "true"}


def pf_home(env: Mapping[str, str] | None = None) -> Path:
    """promptflow's home: ``$PF_HOME_DIRECTORY`` or ``~/.promptflow``."""
    env = os.environ if env is None else env
    return Path(env.get("PF_HOME_DIRECTORY") or Path.home() / ".promptflow")


def configure_promptflow() -> dict[str, str]:
    """Leave promptflow usable by later ``pf`` commands; returns what was changed (file → what).

    Nothing is exported: the keyring choice goes to keyring's ``keyringrc.cfg`` (only when the
    machine has no working keyring and no such file), telemetry to promptflow's ``pf.yaml``.
    """
    done: dict[str, str] = {}
    rc = Path(keyring.util.platform_.config_root()) / "keyringrc.cfg"
    current = keyring.get_keyring()
    no_system_keyring = isinstance(current, fail.Keyring) or type(current).__module__.startswith(
        "keyrings.alt"
    )
    if not rc.exists() and no_system_keyring:
        cfg = configparser.ConfigParser()
        cfg["backend"] = {"default-keyring": FILE_KEYRING}
        rc.parent.mkdir(parents=True, exist_ok=True)
        with open(rc, "w", encoding="utf-8") as f:
            cfg.write(f)
        keyring.set_keyring(PlaintextKeyring())
        done[str(rc)] = f"default-keyring = {FILE_KEYRING}"
    pf_yaml = pf_home() / "pf.yaml"
    try:
        conf = yaml.safe_load(pf_yaml.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        conf = {}
    if not isinstance(conf, dict):
        raise ConfigError(f"{pf_yaml}: expected a mapping (promptflow's user config)")
    telemetry = conf.setdefault("telemetry", {})
    if isinstance(telemetry, dict) and telemetry.get("enabled") is not False:
        telemetry["enabled"] = False
        pf_yaml.parent.mkdir(parents=True, exist_ok=True)
        pf_yaml.write_text(yaml.safe_dump(conf, sort_keys=False), encoding="utf-8")
        done[str(pf_yaml)] = "telemetry.enabled = false"
    return done


def _client() -> Any:
    configure_promptflow()
    # promptflow is heavy (seconds to import) and optional for the genaiops runner: import late
    from promptflow.client import PFClient

    return PFClient()


def _service_ports() -> set[int]:
    ports = {SERVICE_PORT}
    for f in (pf_home() / "pfs").glob("*.port"):
        with contextlib.suppress(OSError, ValueError, AttributeError, TypeError, yaml.YAMLError):
            ports.add(int(yaml.safe_load(f.read_text())["service"]["port"]))
    return ports


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def stopping_service() -> Iterator[None]:
    """Run promptflow operations; stop promptflow's local service afterwards if it was not
    running before (it outlives the command that started it)."""
    before = {p for p in _service_ports() if _listening(p)}
    try:
        yield
    finally:
        if {p for p in _service_ports() if _listening(p)} - before:
            stop_service()


def stop_service() -> None:
    """``pf service stop``: stop promptflow's local service."""
    pf = Path(sys.executable).parent / "pf"
    env = {**os.environ, **PF_RUN_ENV}
    subprocess.run(
        [str(pf), "service", "stop"], capture_output=True, check=False, timeout=60, env=env
    )


def ensure_connection(
    name: str = CONNECTION_NAME, base_url: str | None = None, api_key: str | None = None
) -> dict[str, Any]:
    """Create or update the OpenAI connection ``name`` pointing at the gateway, after
    :func:`configure_promptflow`; returns the connection and the files configured (nothing is
    written when the gateway URL is missing)."""
    s = get_settings()
    base_url = base_url or s.gateway_url
    if not base_url:
        raise ConfigError("GENAIOPS_GATEWAY_URL is not set: where is the gateway?")
    key = api_key or (s.api_key.get_secret_value() if s.api_key else None) or "none"
    configured = configure_promptflow()
    with stopping_service():
        pf = _client()
        from promptflow.entities import OpenAIConnection  # with PFClient: heavy, optional

        conn = pf.connections.create_or_update(
            OpenAIConnection(name=name, api_key=key, base_url=base_url)
        )
    return {"name": conn.name, "base_url": str(conn.base_url), "configured": configured}


def line_latencies(output_path: str | Path) -> dict[int, float]:
    """Seconds per line index from promptflow's line records (``flow_artifacts/*.jsonl`` in
    the run's ``output_path``: one ``{"run_info": {...}}`` per line)."""
    out: dict[int, float] = {}
    for f in sorted((Path(output_path) / "flow_artifacts").glob("*.jsonl")):
        for raw in f.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                info = json.loads(raw)["run_info"]
                index = int(info["index"])
                duration = (info.get("system_metrics") or {}).get("duration")
                if duration is None:
                    start = datetime.fromisoformat(info["start_time"])
                    duration = (datetime.fromisoformat(info["end_time"]) - start).total_seconds()
                out[index] = float(duration)
    return out


def pf_batch(
    flow: str | Path,
    data: str | Path,
    column_mapping: dict[str, Any],
    variant: str | None = None,
    *,
    concurrency: int = 2,
) -> list[LineResult]:
    """Run ``pf run`` for one variant (``node.variant``) and read back per-line results."""
    kwargs: dict[str, Any] = {}
    if variant and variant != "default":
        node, _, vid = variant.partition(".")
        kwargs["variant"] = f"${{{node}.{vid}}}"
    retrieved_output = load_flow(flow).retrieved_output
    with stopping_service():
        pf = _client()
        run = pf.run(
            flow=str(flow),
            data=str(data),
            column_mapping=dict(column_mapping),
            stream=False,
            environment_variables={**PF_RUN_ENV, "PF_WORKER_COUNT": str(concurrency)},
            **kwargs,
        )
        if str(run.status).lower() not in ("completed", "failed"):
            raise EvaluationError(f"pf run {run.name} ended with status {run.status}")
        records = pf.get_details(run, all_results=True).to_dict(orient="records")
        latency = line_latencies(run.properties["output_path"])
    label = variant or "default"
    out = []
    for i, rec in enumerate(records):
        inputs = {k[7:]: v for k, v in rec.items() if k.startswith("inputs.")}
        outputs = {k[8:]: v for k, v in rec.items() if k.startswith("outputs.")}
        line_no = int(inputs.pop("line_number", i))
        failed = all(v is None or v != v for v in outputs.values())  # NaN/None: the line failed
        usage: dict[str, Any] = u if isinstance(u := outputs.get("usage"), dict) else {}
        error = None
        if failed:
            error = {"node": "", "type": "PromptflowLineError", "message": f"pf run {run.name}"}
        out.append(
            LineResult(
                index=line_no,
                line_id=str(line_no),
                variant=label,
                inputs=inputs,
                outputs={} if failed else outputs,
                retrieved=[] if failed else retrieved_chunks(retrieved_output, outputs),
                latency_s=latency.get(line_no, 0.0),
                prompt_tokens=int(usage.get("prompt_tokens", 0)),
                completion_tokens=int(usage.get("completion_tokens", 0)),
                error=error,
            )
        )
    return sorted(out, key=lambda r: r.index)


def pf_run_flow(req: RunRequest) -> str:
    """Run every selected variant of ``req`` with ``pf run``; store the lines in a genaiops run
    folder (same layout and ``run.json`` as the genaiops runner) and return its run id."""
    flow = load_flow(req.flow)
    rows = load_jsonl(req.data, limit=req.limit)
    mapping = default_mapping(flow.inputs, rows) | dict(req.column_mapping)
    run_id = new_run_id(flow, "pf")
    path = runs_dir() / run_id
    sets = select_variants(flow, req.variants)
    meta = RunMeta(
        run_id=run_id,
        runner="pf",
        request=req,
        flow_path=str(flow.path),
        column_mapping=mapping,
        variants=variant_metas(flow, sets),
        created=time.time(),
        status="running",
    )
    write_run_meta(path, meta)
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
    meta.status = "completed"
    write_run_meta(path, meta)
    return run_id
