"""Promotion hand-offs: what a promoted model must pass, and where it goes, beyond its own eval.

* **generator** (kind 3) — :func:`generator_gate`: the first version must beat the base model on
  its validation split (later ones beat the champion in ``promote``); then the project's
  evaluation gate (``evaluation/gate.yaml``: thresholds + regression vs the baseline) runs
  with the candidate served by a throw-away gateway (its own config, state and key, on
  loopback) whose ``genaiops-local`` alias points at the merged model.  :func:`deploy_generator`
  then writes a ``local`` deployment ``<model>-v<N>`` (``model: models:/<model>/<N>``) into the
  gateway config file the gateway reads, and starts a rollout of the alias with it as the
  candidate: through ``POST /admin/rollouts/<alias>`` when a gateway is reachable
  (``GENAIOPS_GATEWAY_URL`` + ``GENAIOPS_ADMIN_KEY``; it must have been started with that config
  file), else with ``genaiops gateway rollout start`` on the shared state store, which a gateway
  started with ``--config <file>`` follows.
* **embedder** (kind 2, when its spec has ``index:``) — :func:`embedder_index_gate`: build a new
  version of the named index with ``embedder: {provider: local, model: <model>}``, score the
  gate's retrieval metrics (``recall_at_k``/``mrr``/``ndcg_at_k``, ``k`` from the gate) on the
  job's dev queries against it and against the version the alias points at now, and move the
  alias only if none regressed by more than the gate's ``max_drop`` with paired p < ``alpha``.

    >>> deploy_generator("generator-faq", "2", folder)                 # doctest: +SKIP
    {'deployment': 'generator-faq-v2', 'config': '...', 'rollout': {...}}
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from genaiops.settings import get_settings
from training.errors import PromotionRefused, TrainingError
from training.report import read_report

__all__ = ["deploy_generator", "embedder_index_gate", "generator_gate", "gateway_config_path"]

REPO = Path(__file__).resolve().parents[1]


def _handoff(folder: Path, key: str) -> dict[str, Any]:
    return dict(read_report(folder / "report.json").extra.get(key) or {})


def gateway_config_path(configured: str | None) -> Path:
    """The spec's ``gateway.config``, else ``$GENAIOPS_GATEWAY_CONFIG``, else
    ``$GENAIOPS_HOME/gateway/config.yaml``."""
    if configured:
        return Path(configured)
    env = os.environ.get("GENAIOPS_GATEWAY_CONFIG")
    return Path(env) if env else get_settings().home / "gateway" / "config.yaml"


def _from_repo(path: str) -> str:
    p = Path(path)
    return str(p if p.is_absolute() or p.exists() else REPO / p)


# -- generator ------------------------------------------------------------------------------
def generator_gate(model: str, version: str, folder: Path, champion: str | None) -> dict:
    """Refuse (with numbers) unless v1 beats the base model and the evaluation gate passes."""
    report = read_report(folder / "report.json")
    spec = yaml.safe_load((folder / "spec.yaml").read_text())
    h = _handoff(folder, "gateway")
    out: dict[str, Any] = {}
    if champion is None:  # nothing to beat but the base model the gateway serves now
        metric = (spec.get("promotion") or {}).get("metric", "rougeL")
        min_delta = float((spec.get("promotion") or {}).get("min_delta", 0.0))
        got, base = report.metrics[metric], report.metrics[f"base_{metric}"]
        out["vs_base"] = {"metric": metric, "challenger": got, "base": base}
        if not got > base + min_delta:
            raise PromotionRefused(
                f"{model} v{version} does not beat the base model on its validation split: "
                f"{metric} {got:.4f} vs {base:.4f}",
                {"metric": metric, "challenger": got, "champion": base, "champion_version": "base"},
            )
    if not h.get("gate"):
        return out | {"gate": "skipped (gateway.gate: null)"}
    result = _run_generator_gate(folder / "model", h)
    out["gate"] = result
    if not result["passed"]:
        raise PromotionRefused(
            f"{model} v{version} fails the evaluation gate ({h['gate']}): "
            + "; ".join(result["failures"][:6]),
            {"metric": "evaluation gate", "challenger": 0.0, "champion": 1.0, **result},
        )
    return out


def _run_generator_gate(model_dir: Path, h: dict[str, Any]) -> dict[str, Any]:
    from evaluation.config import load_gate_config
    from evaluation.pipeline import run_gate
    from evaluation.runtime.local_gateway import using_local_gateway
    from gateway.config import DeploymentConfig, WeightedDeployment, default_config

    cfg = load_gate_config(h["gate"])
    cfg.run.flow, cfg.run.data = _from_repo(cfg.run.flow), _from_repo(cfg.run.data)
    if h.get("gate_limit"):
        cfg.run.limit = int(h["gate_limit"])
    if h.get("gate_variants"):
        cfg.run.variants = str(h["gate_variants"])
    gw = default_config()
    gw.deployments.append(
        DeploymentConfig(name="candidate", backend="local", model=str(model_dir.resolve()))
    )
    alias = gw.alias(h.get("alias") or "genaiops-local")
    if alias is None:
        raise TrainingError(f"gateway.alias {h.get('alias')!r} is not a chat alias")
    alias.deployments = [WeightedDeployment(deployment="candidate")]
    with tempfile.TemporaryDirectory(prefix="genaiops-gate-") as tmp:
        gw.state.path = Path(tmp) / "state.db"  # its own keys and no rollouts from the real one
        gw.state.ledger_path = Path(tmp) / "ledger.db"
        path = Path(tmp) / "gateway.yaml"
        path.write_text(yaml.safe_dump(gw.model_dump(mode="json", exclude_none=True)))
        with using_local_gateway(config=str(path), warm_up=alias.name, log_dir=Path(tmp)):
            outcome = run_gate(cfg, baseline=h.get("baseline"), track=False)
    assert outcome.gate is not None
    return {
        "passed": outcome.gate.passed,
        "failures": [c.describe() for c in outcome.gate.failures],
        "checks": len(outcome.gate.checks),
        "run_id": outcome.run.run_id,
        "means": {
            label: {k: round(float(v.mean), 4) for k, v in agg.metrics.items()}
            for label, agg in outcome.summary.variants.items()
        },
    }


def deploy_generator(model: str, version: str, folder: Path) -> dict[str, Any]:
    """Add deployment ``<model>-v<N>`` to the gateway config file and roll it out."""
    from gateway.config import DeploymentConfig, default_config, load_config

    h = _handoff(folder, "gateway")
    path = gateway_config_path(h.get("config"))
    cfg = load_config(path) if path.is_file() else default_config()
    alias = h.get("alias") or "genaiops-local"
    if cfg.alias(alias) is None:
        raise TrainingError(f"{path}: no model alias {alias!r} to roll the generator out behind")
    name = f"{model}-v{version}"
    cfg.deployments = [d for d in cfg.deployments if d.name != name]
    cfg.deployments.append(
        DeploymentConfig(name=name, backend="local", model=f"models:/{model}/{version}")
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump(cfg.model_dump(mode="json", exclude_none=True), sort_keys=False))
    load_config(tmp)  # what the gateway will read validates
    tmp.replace(path)
    body = {
        "candidate": name,
        "steps": list(h.get("steps") or [5.0, 25.0, 50.0, 100.0]),
        "interval": str(h.get("interval") or "5m"),
    }
    return {"deployment": name, "config": str(path), "rollout": _start_rollout(alias, body, path)}


def _start_rollout(alias: str, body: dict[str, Any], config: Path) -> dict[str, Any]:
    import httpx

    s = get_settings()
    if s.gateway_url and s.admin_key:
        root = s.gateway_url.rstrip("/").removesuffix("/v1")
        try:
            r = httpx.post(
                f"{root}/admin/rollouts/{alias}",
                json=body,
                headers={"Authorization": f"Bearer {s.admin_key.get_secret_value()}"},
                timeout=30,
            )
        except httpx.HTTPError as e:
            return {"started": False, "via": "admin api", "reason": f"{root}: {e}"}
        if r.status_code < 300:
            return {"started": True, "via": f"admin api {root}", "state": r.json()}
        return {
            "started": False,
            "via": f"admin api {root}",
            "reason": f"{r.status_code} {r.text[:300]}",
            "next": f"restart the gateway with --config {config}, then "
            f"genaiops gateway rollout start {alias} --candidate {body['candidate']}",
        }
    cmd = [sys.executable, "-m", "genaiops.cli", "gateway", "rollout", "start", alias]
    cmd += ["--candidate", body["candidate"], "--steps", ",".join(f"{x:g}" for x in body["steps"])]
    cmd += ["--interval", body["interval"], "--config", str(config), "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        return {"started": False, "via": "state store", "reason": done.stderr.strip()[-400:]}
    state: Any = done.stdout
    with contextlib.suppress(ValueError):
        state = json.loads(done.stdout)
    via = f"state store (gateway serve --config {config})"
    return {"started": True, "via": via, "state": state}


# -- embedder --------------------------------------------------------------------------------
def _embedder_of(catalog: Any, version_id: str) -> Any:
    """The embedder an index version was built with, pinned to its registered version when it
    is a fine-tune (``genaiops/<name>@v<N>``): the champion pointer may have moved since."""
    from genaiops.providers import make_embedder
    from genaiops.providers.embeddings import config_for_model_id

    m = catalog.manifest(version_id)
    cfg = config_for_model_id(m.spec.embedder, m.model_id)
    if m.model_id.startswith("genaiops/") and "@v" in m.model_id:
        name, n = m.model_id.removeprefix("genaiops/").rsplit("@v", 1)
        cfg = cfg.model_copy(update={"model": f"{name}@{n}"})
    return make_embedder(cfg)


def embedder_index_gate(model: str, version: str, folder: Path) -> dict[str, Any]:
    """Build the index with the (already published) embedder; check the gate's retrieval
    metrics against the alias's current version; promote the alias or refuse."""
    import numpy as np

    from evaluation.config import load_gate_config
    from evaluation.metrics import EvalSample, RetrievalEvaluator
    from evaluation.stats import paired_worse_pvalue
    from genaiops.errors import GenAIOpsError
    from indexing import Catalog, Retriever, build_index, load_index_spec

    h = _handoff(folder, "index")
    gate = load_gate_config(h["gate"])
    spec = load_index_spec(h["spec"])
    # pinned (name@N): the version's model id either way, and it stays queryable after the
    # champion moves on
    spec.embedder.provider, spec.embedder.model = "local", f"{model}@{version}"
    alias, k = h.get("alias") or "current", gate.evaluation.k
    catalog = Catalog(spec.name)
    try:
        current: str | None = catalog.resolve(alias)
    except GenAIOpsError:
        current = None
    built = build_index(spec).version_id
    dev = json.loads((folder / "eval" / "dev.json").read_text())["queries"]
    names = [f"recall_at_{k}", "mrr", f"ndcg_at_{k}"]

    def per_query(version_id: str) -> dict[str, list[float]]:
        r = Retriever(spec.name, version_id, embedder=_embedder_of(catalog, version_id))
        ev = RetrievalEvaluator(k=k)
        out: dict[str, list[float]] = {n: [] for n in names}
        for q in dev:
            hits = r.retrieve(q["text"], k=max(k, 10), mode="hybrid")
            got = ev.evaluate(
                EvalSample(retrieved_ids=[x.doc_id for x in hits], reference_ids=q["relevant"])
            )
            for n in names:
                out[n].append(float(got[n]))
        return out

    cand = per_query(built)
    base = per_query(current) if current and current != built else None
    checks = []
    for n in names:
        c_mean = float(np.mean(cand[n])) if cand[n] else 0.0
        bound = gate.thresholds.get(n) if h.get("thresholds") else None
        if bound is not None and bound.min is not None:
            checks.append((n, c_mean, f">= {bound.min}", c_mean >= bound.min))
        max_drop = gate.regression.max_drop.get(n)
        if base is not None and max_drop is not None:
            b_mean = float(np.mean(base[n]))
            p = paired_worse_pvalue(cand[n], base[n])
            ok = not (b_mean - c_mean > max_drop and p < gate.regression.alpha)
            checks.append((n, c_mean, f"baseline {b_mean:.4f}, drop <= {max_drop}, p={p:.3g}", ok))
    lines = [f"{'ok  ' if ok else 'FAIL'} {n} = {v:.4f} {limit}" for n, v, limit, ok in checks]
    result: dict[str, Any] = {
        "index": spec.name,
        "built": built,
        "baseline": current,
        "queries": len(dev),
        "metrics": {n: round(float(np.mean(v)), 4) if v else 0.0 for n, v in cand.items()},
        "baseline_metrics": (
            {n: round(float(np.mean(v)), 4) for n, v in base.items()} if base else None
        ),
        "checks": lines,
    }
    failed = [c for c in checks if not c[3]]
    if failed:
        raise PromotionRefused(
            f"{model} v{version}: index {spec.name} built with it ({built}) fails the gate's "
            "retrieval checks: " + "; ".join(x for x in lines if x.startswith("FAIL")),
            {"metric": failed[0][0], "challenger": failed[0][1], "champion": None, **result},
        )
    catalog.promote(built, alias)
    return result
