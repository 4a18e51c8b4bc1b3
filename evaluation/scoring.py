"""Score a run: evaluators on every line of every variant, then per-variant aggregates.

The summary (``summary.json`` in the run folder) is self-contained — per-line metric values by
line id, aggregates with confidence intervals, error and judge-failure counts, lineage params —
so a committed copy can serve as a baseline file.

    >>> summary = score_run(run_result, EvalConfig())                   # doctest: +SKIP
    >>> summary["variants"]["answer_prompt.cited"]["metrics"]["rougeL"]["mean"]  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

from evaluation.config import OPTIONAL_MAPPING, EvalConfig
from evaluation.judges import GatewayJudge, JudgedEvaluator, OfflineJudge
from evaluation.metrics import (
    BleuEvaluator,
    CachingEmbedder,
    EvalSample,
    Evaluator,
    LatencyCostEvaluator,
    RetrievalEvaluator,
    RougeEvaluator,
    SimilarityEvaluator,
)
from evaluation.runtime.data import apply_mapping, check_mapping
from evaluation.runtime.executor import LineResult
from evaluation.runtime.runner import RunResult
from evaluation.stats import is_nan, mean_ci

__all__ = ["build_evaluators", "default_evaluators", "line_sample", "sample_from", "score_run"]

JUDGED = ("groundedness", "relevance")


def _display_path(path: Any) -> str:
    """The flow folder relative to the working directory when inside it (no machine paths in
    committed summaries and baselines), else absolute."""
    p = Path(path).resolve()
    try:
        return p.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(p)


def build_evaluators(cfg: EvalConfig, embedder: Any = None) -> list[Evaluator]:
    """Evaluators for ``cfg.metrics``; ``embedder`` is shared by similarity and the offline
    relevance judge. With ``repeats > 1`` a gateway judge samples (temperature 0.7) so the
    interval reflects judge variance."""
    embedder = embedder or CachingEmbedder()
    judge: Any = (
        OfflineJudge(embedder)
        if cfg.judge == "offline"
        else GatewayJudge(cfg.judge.split(":", 1)[1], temperature=0.7 if cfg.repeats > 1 else 0.0)
    )
    table: dict[str, Any] = {
        "bleu": BleuEvaluator,
        "rouge": RougeEvaluator,
        "retrieval": lambda: RetrievalEvaluator(k=cfg.k),
        "similarity": lambda: SimilarityEvaluator(embedder),
        "cost": lambda: LatencyCostEvaluator(cfg.prompt_price_per_1k, cfg.completion_price_per_1k),
        "groundedness": lambda: JudgedEvaluator(
            "groundedness", judge, cfg.judge_threshold, cfg.repeats
        ),
        "relevance": lambda: JudgedEvaluator("relevance", judge, cfg.judge_threshold, cfg.repeats),
    }
    return [table[m]() for m in cfg.metrics]


def default_evaluators() -> list[Evaluator]:
    return build_evaluators(EvalConfig())


def _context_text(chunks: Any) -> str | None:
    if chunks is None:
        return None
    if isinstance(chunks, str):
        return chunks
    return "\n\n".join(str(c.get("text", "")) if isinstance(c, dict) else str(c) for c in chunks)


def _ids(chunks: Any) -> list[str] | None:
    if not isinstance(chunks, list):
        return None
    return [str(c["doc_id"]) for c in chunks if isinstance(c, dict) and "doc_id" in c]


def sample_from(
    question: str,
    answer: str | None,
    ground_truth: str | None = None,
    context: Any = None,
    doc_ids: list[str] | None = None,
    line: LineResult | None = None,
) -> EvalSample:
    return EvalSample(
        query=question,
        response=answer,
        context=_context_text(context),
        ground_truth=ground_truth,
        retrieved_ids=_ids(context),
        reference_ids=list(doc_ids) if doc_ids else None,
        latency_s=line.latency_s if line else None,
        prompt_tokens=line.prompt_tokens if line else None,
        completion_tokens=line.completion_tokens if line else None,
    )


def line_sample(cfg: EvalConfig, row: dict[str, Any], line: LineResult) -> EvalSample:
    vals = apply_mapping(cfg.mapping, row, line.outputs)
    context = vals.get("context", line.retrieved or None)
    response = vals.get("response")
    return sample_from(
        str(vals.get("query", "")),
        None if line.error else (str(response) if response is not None else ""),
        vals.get("ground_truth"),
        context,
        vals.get("reference_ids"),
        line,
    )


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except OSError:
        return None
    return out.stdout.strip() or None


def score_run(run: RunResult, cfg: EvalConfig, *, write: bool = True) -> dict[str, Any]:
    """Score every line, aggregate per variant; writes ``scores.jsonl`` + ``summary.json``."""
    flow_outputs = list(run.flow.outputs)
    check_mapping(
        cfg.mapping,
        run.rows,
        source=f"evaluation mapping for {run.request.data}",
        outputs=flow_outputs,
        optional=OPTIONAL_MAPPING,
    )
    embedder = CachingEmbedder()
    evaluators = build_evaluators(cfg, embedder)
    data_hash = (
        hashlib.sha256(Path(str(run.request.data)).read_bytes()).hexdigest()[:16]
        if Path(str(run.request.data)).exists()
        else None
    )
    variants: dict[str, Any] = {}
    all_lines: dict[str, list[dict[str, Any]]] = {}
    commit = _git_commit()
    samples = {
        vs.label: [
            (ln, line_sample(cfg, run.rows[ln.index], ln)) for ln in run.lines.get(vs.label, [])
        ]
        for vs in run.variants
    }
    if {"similarity", "relevance"} & set(cfg.metrics):  # one batched embedding pass
        embedder.prefetch(
            [
                t
                for pairs in samples.values()
                for _, s in pairs
                for t in (s.response, s.ground_truth, s.query)
                if t
            ]
        )
    for vs in run.variants:
        label = vs.label
        scored = []
        for line, sample in samples[vs.label]:
            scores: dict[str, Any] = {}
            if line.error is None:
                for ev in evaluators:
                    scores.update(ev(sample))
            scored.append(
                {
                    "line_id": line.line_id,
                    "index": line.index,
                    "question": sample.query,
                    "answer": sample.response,
                    "ground_truth": sample.ground_truth,
                    "retrieved_ids": sample.retrieved_ids,
                    "reference_ids": sample.reference_ids,
                    "error": line.error,
                    "scores": scores,
                }
            )
        all_lines[label] = scored
        variants[label] = _aggregate(run, vs, scored, cfg, commit, data_hash)
    summary = {
        "run_id": run.run_id,
        "flow": _display_path(run.flow.path),
        "data": str(run.request.data),
        "n_rows": len(run.rows),
        "interrupted": run.interrupted,
        "evaluation": cfg.model_dump(),
        "variants": variants,
        "lines": all_lines,
    }
    if write:
        for label, scored in all_lines.items():
            with open(run.path / label / "scores.jsonl", "w", encoding="utf-8") as f:
                for s in scored:
                    f.write(json.dumps(s, default=str, ensure_ascii=False) + "\n")
        (run.path / "summary.json").write_text(
            json.dumps(summary, indent=2, default=_json_default), encoding="utf-8"
        )
    return summary


def _json_default(x: Any) -> Any:
    return str(x)


def _aggregate(
    run: RunResult,
    vs: Any,
    scored: list[dict[str, Any]],
    cfg: EvalConfig,
    commit: str | None,
    data_hash: str | None,
) -> dict[str, Any]:
    label = vs.label
    lines = run.lines.get(label, [])
    numeric = sorted(
        {
            k
            for s in scored
            for k, v in s["scores"].items()
            if isinstance(v, int | float)
            and not isinstance(v, bool)
            and not k.endswith(("_threshold", "_failed", "_std"))
        }
    )
    ok_lines = [s for s in scored if s["error"] is None]
    metrics = {k: mean_ci([s["scores"].get(k) for s in ok_lines]).to_dict() for k in numeric}
    judge_failures = {
        m: int(sum(s["scores"].get(f"{m}_failed", 0) for s in ok_lines))
        for m in JUDGED
        if any(m in s["scores"] for s in ok_lines)
    }
    pass_rates = {
        m: sum(s["scores"].get(f"{m}_result") == "pass" for s in ok_lines) / len(ok_lines)
        for m in JUDGED
        if ok_lines and any(m in s["scores"] for s in ok_lines)
    }
    judge_std = {
        m: mean_ci([s["scores"].get(f"{m}_std") for s in ok_lines]).mean
        for m in JUDGED
        if any(m in s["scores"] for s in ok_lines)
    }
    versions = sorted(
        {str(c["version_id"]) for ln in lines for c in ln.retrieved if c.get("version_id")}
    )
    models = sorted({ln.model for ln in lines if ln.model})
    model_alias = None
    for node in run.flow.resolved_nodes(vs):
        for key in ("model", "deployment_name"):
            if isinstance(node.inputs.get(key), str):
                model_alias = node.inputs[key]
    errors = [{"line_id": s["line_id"], **(s["error"] or {})} for s in scored if s["error"]]
    missing = len(run.rows) - len(scored)
    return {
        "n_lines": len(scored),
        "n_missing": missing,
        "n_errors": len(errors),
        "errors": errors,
        "metrics": metrics,
        "judge_failures": judge_failures,
        "judge_std": {k: (None if is_nan(v) else v) for k, v in judge_std.items()},
        "pass_rates": pass_rates,
        "params": {
            "variant": label,
            "variant_choice": vs.choice,
            "prompt_hash": run.flow.prompt_hash(vs),
            "index_version_ids": versions,
            "model_alias": model_alias,
            "model_deployments": models,
            "judge": cfg.judge,
            "repeats": cfg.repeats,
            "data": str(run.request.data),
            "data_sha256_16": data_hash,
            "flow": _display_path(run.flow.path),
            "git_commit": commit,
            "run_id": run.run_id,
        },
    }
