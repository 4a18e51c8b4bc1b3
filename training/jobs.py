"""Run a job spec end to end: seed, train, evaluate, track in MLflow, register a challenger.

    >>> from training import load_spec, run_job
    >>> report = run_job(load_spec("training/specs/prompt_attack.yaml"))    # doctest: +SKIP
    >>> report.version, report.metrics["f1"]                                  # doctest: +SKIP
    ('1', 0.97)

Everything a run produces is logged to its MLflow run: the flattened spec as params, per-step
metrics, the environment (package versions, device, git commit) and data hashes as tags and in
``report.json``, the model folder (registered as a new version with alias ``challenger``) and
the held-out evaluation data that promotion re-scores.
"""

from __future__ import annotations

import hashlib
import logging
import random
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from genaiops.settings import get_settings
from training.errors import RunNotFound
from training.kinds import TrainContext, get_kind
from training.report import RunReport, capture_environment, read_report, write_report
from training.spec import AnySpec, resolve_device
from training.tracking import Tracker

__all__ = ["flatten", "list_runs", "run_job", "seed_everything", "show_run"]

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Python, NumPy and torch RNGs, and deterministic torch kernels where they exist."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}`` (lists stay values): MLflow params."""
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        for k, v in data.items():
            out |= flatten(v, f"{prefix}{k}.")
        return out
    out[prefix.rstrip(".")] = data
    return out


def _noop(*_: Any, **__: Any) -> None:
    return None


def run_job(
    spec: AnySpec,
    *,
    spec_path: str | Path = "<memory>",
    progress: Callable[..., None] | None = None,
    tracker: Tracker | None = None,
) -> RunReport:
    """Train ``spec``; returns the report of the tracked run and its registered version."""
    progress = progress or _noop
    tracker = tracker or Tracker()
    device = resolve_device(spec.device)
    seed_everything(spec.seed)
    spec_dump = spec.model_dump(mode="json")
    spec_text = yaml.safe_dump(spec_dump, sort_keys=True)
    spec_sha = hashlib.sha256(spec_text.encode()).hexdigest()
    env = capture_environment(device)
    tags = {
        "genaiops.kind": spec.kind,
        "genaiops.model": spec.name,
        "genaiops.spec": str(spec_path),
        "genaiops.spec_sha256": spec_sha,
        "genaiops.device": device,
        "mlflow.source.git.commit": env.git_commit,
        "mlflow.runName": f"{spec.name}-{datetime.now(UTC):%Y%m%d-%H%M%S}",
    }
    run_id = tracker.start_run(spec.name, tags)
    out = get_settings().home / "training" / "staging" / run_id
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    started, t0 = datetime.now(UTC), time.perf_counter()
    try:
        tracker.log_params(run_id, flatten(spec_dump))
        ctx = TrainContext(
            run_id=run_id,
            out_dir=out,
            device=device,
            progress=progress,
            log_metrics=lambda m, step: tracker.log_metrics(run_id, m, step),
        )
        result = get_kind(spec.kind).train(spec, ctx)
        tracker.log_metrics(run_id, result.metrics)
        for k, v in result.data_digest.items():
            tracker.client.set_tag(run_id, f"genaiops.data.{k}_sha256", v)
        for rec in result.data:
            tracker.client.set_tag(
                run_id,
                f"genaiops.source.{rec.name}",
                f"{rec.version or ''} sha256:{rec.sha256[:16]}",
            )
        (out / "spec.yaml").write_text(spec_text)
        report = RunReport(
            run_id=run_id,
            kind=spec.kind,
            model=spec.name,
            spec_path=str(spec_path),
            spec_sha256=spec_sha,
            seed=spec.seed,
            device=device,
            started_at=started,
            duration_s=round(time.perf_counter() - t0, 3),
            metrics=result.metrics,
            per_source=result.per_source,
            data=result.data,
            data_digest=result.data_digest,
            environment=env,
            tracking_uri=tracker.uri,
            extra=result.extra,
        )
        write_report(report, out / "report.json")
        progress("log artifacts", 0, 1)
        tracker.log_artifacts(run_id, out)
        version = tracker.register(
            spec.name, run_id, "model", {"kind": spec.kind, "spec_sha256": spec_sha}
        )
        report.version = version
        write_report(report, out / "report.json")
        tracker.log_file(run_id, out / "report.json")  # now with the registered version
        progress("log artifacts", 1, 1)
    except BaseException:
        tracker.end_run(run_id, "FAILED")
        raise
    tracker.end_run(run_id)
    shutil.rmtree(out, ignore_errors=True)
    return report


def list_runs(
    model: str | None = None, limit: int = 50, tracker: Tracker | None = None
) -> list[dict[str, Any]]:
    """Tracked training runs, newest first, with their key metrics and registered version."""
    tracker = tracker or Tracker()
    rows = []
    versions: dict[str, dict[str, Any]] = {}
    for run in tracker.runs(model, limit):
        name = run.data.tags.get("genaiops.model", "")
        if name and name not in versions:
            try:
                aliases = tracker.aliases(name)
            except RunNotFound:  # a run that failed before it registered anything
                aliases = {}
            by_run = {str(v.run_id): str(v.version) for v in tracker.versions(name)}
            versions[name] = {"aliases": aliases, "by_run": by_run}
        info = versions.get(name, {"aliases": {}, "by_run": {}})
        version = info["by_run"].get(run.info.run_id)
        rows.append(
            {
                "run_id": run.info.run_id,
                "model": name,
                "kind": run.data.tags.get("genaiops.kind"),
                "status": run.info.status,
                "started": datetime.fromtimestamp(run.info.start_time / 1000, UTC).isoformat(),
                "version": version,
                "aliases": sorted(a for a, v in info["aliases"].items() if v == version),
                "metrics": {
                    k: run.data.metrics[k]
                    for k in ("f1", "roc_auc", "recall", "fpr", "ndcg_at_10_hybrid", "rougeL")
                    if k in run.data.metrics
                },
            }
        )
    return rows


def show_run(run_id: str, tracker: Tracker | None = None) -> dict[str, Any]:
    """One run: params, final metrics, tags and its ``report.json``."""
    tracker = tracker or Tracker()
    run = tracker.get_run(run_id)
    report = None
    try:
        report = read_report(tracker.download(run_id, "report.json")).model_dump(mode="json")
    except (OSError, ValueError) as e:
        log.debug("no report for %s: %s", run_id, e)
    return {
        "run_id": run_id,
        "status": run.info.status,
        "experiment_id": run.info.experiment_id,
        "artifact_uri": run.info.artifact_uri,
        "params": dict(run.data.params),
        "metrics": dict(run.data.metrics),
        "tags": {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.log")},
        "report": report,
    }
