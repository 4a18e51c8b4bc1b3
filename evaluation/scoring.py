"""Score a run: evaluators on every line of every variant, then per-variant aggregates.

The summary (``summary.json`` in the run folder) is self-contained — per-line metric values by
line id, aggregates with confidence intervals, error and judge-failure counts, lineage params —
so a committed copy can serve as a baseline file.

Evaluator inputs come from :meth:`EvalConfig.resolve_mapping`: the config's ``mapping`` over the
recognised column names (``ground_truth`` / ``reference`` / ``answer`` for the reference answer,
``doc_ids`` / ``reference_context_ids`` for reference ids). A reference-based metric that cannot
run because no reference is mapped is listed in ``summary.skipped`` (and so in the reports).

    >>> summary = score_run(run_result, EvalConfig())                   # doctest: +SKIP
    >>> summary.variants["answer_prompt.cited"].metrics["rougeL"].mean  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Any

from evaluation.config import COLUMN_ALIASES, OPTIONAL_MAPPING, REFERENCE_METRICS, EvalConfig
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
from evaluation.runtime.flow import VariantSet
from evaluation.runtime.runner import RunResult
from evaluation.stats import is_nan, mean_ci
from evaluation.summary import (
    EvalSummary,
    LineErrorRecord,
    MetricStats,
    ScoredLine,
    SkippedMetric,
    VariantAggregate,
    VariantParams,
    write_scores,
    write_summary,
)

__all__ = [
    "build_evaluators",
    "default_evaluators",
    "line_sample",
    "sample_from",
    "score_run",
    "skipped_metrics",
]

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
    """Every metric with the default config (what the flows' evaluation node runs)."""
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
    reference_contexts: list[str] | None = None,
) -> EvalSample:
    """An :class:`EvalSample` from one line's values (context chunks give the retrieved ids)."""
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
        reference_contexts=reference_contexts,
    )


def line_sample(cfg: EvalConfig, row: dict[str, Any], line: LineResult) -> EvalSample:
    """The sample evaluators see for one line; ``cfg.mapping`` is used as resolved (the summary
    records the resolved mapping; :func:`score_run` resolves it against the data first)."""
    vals = apply_mapping(cfg.resolve_mapping(row), row, line.outputs)
    context = vals.get("context", line.retrieved or None)
    response = vals.get("response")
    return sample_from(
        str(vals.get("query", "")),
        None if line.error else (str(response) if response is not None else ""),
        vals.get("ground_truth"),
        context,
        vals.get("reference_ids"),
        line,
        _texts(vals.get("reference_contexts")),
    )


def _texts(value: Any) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except OSError:
        return None
    return out.stdout.strip() or None


def _data_column(value: Any) -> str | None:
    text = str(value or "").strip()
    if text.startswith("${data.") and text.endswith("}"):
        return text[len("${data.") : -1]
    return None


def skipped_metrics(
    cfg: EvalConfig, mapping: dict[str, str], rows: list[dict[str, Any]]
) -> list[SkippedMetric]:
    """Reference-based metrics in ``cfg.metrics`` that cannot run (no reference mapped) or run on
    fewer lines (some lines lack the reference column) — said on the console and in reports."""
    out = []
    for metric in cfg.metrics:
        key = REFERENCE_METRICS.get(metric)
        if key is None:
            continue
        value = mapping.get(key)
        col = _data_column(value)
        if value is not None and col is None:
            continue  # a flow output or a literal: present on every line
        names = ", ".join(COLUMN_ALIASES.get(key, ()))
        if col is None or not any(col in r for r in rows):
            where = f"column {col!r} is in no line" if col else f"no column named {names}"
            out.append(
                SkippedMetric(
                    metric=metric,
                    reason=f"skipped: no {key} mapped ({where}); add the column or set "
                    f"evaluation.mapping.{key}",
                    n_lines_without=len(rows),
                )
            )
            continue
        without = sum(1 for r in rows if r.get(col) in (None, "", []))
        if without:
            out.append(
                SkippedMetric(
                    metric=metric,
                    reason=f"{without} of {len(rows)} lines have no {col!r}: {metric} is "
                    "computed on the others",
                    n_lines_without=without,
                )
            )
    return out


def score_run(run: RunResult, cfg: EvalConfig, *, write: bool = True) -> EvalSummary:
    """Score every line, aggregate per variant; writes ``scores.jsonl`` + ``summary.json``."""
    mapping = cfg.resolve_mapping({c for r in run.rows for c in r})
    cfg = cfg.model_copy(update={"mapping": mapping})
    check_mapping(
        mapping,
        run.rows,
        source=f"evaluation mapping for {run.request.data}",
        outputs=list(run.flow.outputs),
        optional=OPTIONAL_MAPPING,
    )
    embedder = CachingEmbedder()
    evaluators = build_evaluators(cfg, embedder)
    data_path = Path(str(run.request.data))
    data_hash = (
        hashlib.sha256(data_path.read_bytes()).hexdigest()[:16] if data_path.exists() else None
    )
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
    variants: dict[str, VariantAggregate] = {}
    all_lines: dict[str, list[ScoredLine]] = {}
    for vs in run.variants:
        scored = []
        for line, sample in samples[vs.label]:
            scores: dict[str, Any] = {}
            if line.error is None:
                for ev in evaluators:
                    scores.update(ev(sample))
            scored.append(
                ScoredLine(
                    line_id=line.line_id,
                    index=line.index,
                    question=sample.query,
                    answer=sample.response,
                    ground_truth=sample.ground_truth,
                    retrieved_ids=sample.retrieved_ids,
                    reference_ids=sample.reference_ids,
                    error=line.error,
                    scores=scores,
                )
            )
        all_lines[vs.label] = scored
        variants[vs.label] = _aggregate(run, vs, scored, cfg, commit, data_hash)
    summary = EvalSummary(
        run_id=run.run_id,
        flow=_display_path(run.flow.path),
        data=str(run.request.data),
        n_rows=len(run.rows),
        interrupted=run.interrupted,
        evaluation=cfg,
        skipped=skipped_metrics(cfg, mapping, run.rows),
        variants=variants,
        lines=all_lines,
    )
    if write:
        for label, lines in all_lines.items():
            write_scores(lines, run.path / label / "scores.jsonl")
        write_summary(summary, run.path / "summary.json")
    return summary


def _aggregate(
    run: RunResult,
    vs: VariantSet,
    scored: list[ScoredLine],
    cfg: EvalConfig,
    commit: str | None,
    data_hash: str | None,
) -> VariantAggregate:
    label = vs.label
    lines = run.lines.get(label, [])
    numeric = sorted(
        {
            k
            for s in scored
            for k, v in s.scores.items()
            if isinstance(v, int | float)
            and not isinstance(v, bool)
            and not k.endswith(("_threshold", "_failed", "_std"))
        }
    )
    ok = [s for s in scored if s.error is None]
    judged = [m for m in JUDGED if any(m in s.scores for s in ok)]
    metrics = {k: MetricStats.of(mean_ci([s.scores.get(k) for s in ok])) for k in numeric}
    judge_failures = {m: int(sum(_num(s.scores.get(f"{m}_failed")) for s in ok)) for m in judged}
    pass_rates = {
        m: sum(s.scores.get(f"{m}_result") == "pass" for s in ok) / len(ok) for m in judged
    }
    judge_std = {m: mean_ci([s.scores.get(f"{m}_std") for s in ok]).mean for m in judged}
    versions = sorted(
        {str(c["version_id"]) for ln in lines for c in ln.retrieved if c.get("version_id")}
    )
    model_alias = None
    for node in run.flow.resolved_nodes(vs):
        for key in ("model", "deployment_name"):
            if isinstance(node.inputs.get(key), str):
                model_alias = node.inputs[key]
    errors = [LineErrorRecord(line_id=s.line_id, **(s.error or {})) for s in scored if s.error]
    return VariantAggregate(
        n_lines=len(scored),
        n_missing=len(run.rows) - len(scored),
        n_errors=len(errors),
        errors=errors,
        metrics=metrics,
        judge_failures=judge_failures,
        judge_std={k: (None if is_nan(v) else v) for k, v in judge_std.items()},
        pass_rates=pass_rates,
        params=VariantParams(
            variant=label,
            variant_choice=vs.choice,
            prompt_hash=run.flow.prompt_hash(vs),
            index_version_ids=versions,
            model_alias=model_alias,
            model_deployments=sorted({ln.model for ln in lines if ln.model}),
            judge=cfg.judge,
            repeats=cfg.repeats,
            data=str(run.request.data),
            data_sha256_16=data_hash,
            flow=_display_path(run.flow.path),
            git_commit=commit,
            run_id=run.run_id,
        ),
    )


def _num(v: Any) -> float:
    return 0.0 if is_nan(v) else float(v)
