"""Drift of production traffic: the questions (vs a reference) and the grounding (per index
version).

* **Question drift**: MiniLM embeddings of the window's captured questions against a reference
  (an evaluation dataset, or an earlier window), compared with the energy-distance two-sample
  test of ``hyppo`` (``hyppo.ksample.Energy``) and its permutation p-value.  Chosen by
  measurement (``bench/drift_tests.py``, ``docs/benchmarks.md``): same verdicts as hyppo's MMD
  and a scikit-learn classifier two-sample test, about 5x faster than the classifier test, and
  deterministic for a fixed seed (hyppo's MMD was not).
* **Out-of-domain rate**: the share of questions whose best dense retrieval score on the index
  falls below the 5th percentile of the reference questions' best scores.
* **Grounding drift**: best retrieval score of each scored record, per index version; a drop of
  the mean after the alias moved to a newer version is flagged.

    >>> qd = question_drift(recent, reference, embedder)                # doctest: +SKIP
    >>> qd.p_value < 0.01                                               # doctest: +SKIP
"""

from __future__ import annotations

import logging
import warnings
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from evaluation.monitoring.config import Breach, Thresholds
from evaluation.monitoring.errors import ReferenceError_
from evaluation.monitoring.store import OnlineScore

__all__ = [
    "DriftReport",
    "GroundingDrift",
    "OutOfDomain",
    "QuestionDrift",
    "VersionGrounding",
    "drift_breaches",
    "grounding_drift",
    "out_of_domain",
    "question_drift",
    "reference_questions",
]

log = logging.getLogger(__name__)
TEST_NAME = "hyppo.ksample.Energy (permutation p-value)"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QuestionDrift(_Model):
    test: str = TEST_NAME
    statistic: float
    p_value: float
    n_current: int
    n_reference: int
    permutations: int
    reference: str


class OutOfDomain(_Model):
    index: str
    version: str
    threshold_score: float  # the reference's 5th percentile of best retrieval scores
    rate: float
    n_current: int
    n_reference: int


class VersionGrounding(_Model):
    version: str
    n: int
    mean: float
    p5: float
    first_ts: float
    last_ts: float


class GroundingDrift(_Model):
    index: str
    versions: list[VersionGrounding]  # in the order the alias served them
    drop: float | None = None  # previous version's mean minus the latest's


class DriftReport(_Model):
    question: QuestionDrift | None = None
    out_of_domain: OutOfDomain | None = None
    grounding: list[GroundingDrift] = []
    notes: list[str] = []
    breaches: list[Breach] = []


def reference_questions(path: str | Path, field: str = "question") -> list[str]:
    """Questions of an evaluation dataset (JSONL, ``eval run``'s format)."""
    from evaluation.errors import DataError
    from evaluation.runtime.data import load_jsonl

    try:
        rows = load_jsonl(path)
    except DataError as e:
        raise ReferenceError_(f"drift reference: {e}") from e
    out = [str(r[field]) for r in rows if isinstance(r.get(field), str) and r[field].strip()]
    if not out:
        raise ReferenceError_(f"drift reference {path}: no {field!r} column with text")
    return out


def _embed(embedder: Any, texts: Sequence[str]) -> np.ndarray:
    return np.asarray(embedder.embed(list(texts)), dtype=np.float64)


def question_drift(
    current: Sequence[str],
    reference: Sequence[str],
    embedder: Any,
    *,
    permutations: int = 200,
    seed: int = 0,
    reference_name: str = "reference",
) -> QuestionDrift:
    """Energy-distance two-sample test of the two question sets' embeddings."""
    from hyppo.ksample import Energy

    if len(current) < 5 or len(reference) < 5:
        raise ReferenceError_(
            f"question drift needs at least 5 questions on each side "
            f"(have {len(current)} current, {len(reference)} reference)"
        )
    x, y = _embed(embedder, current), _embed(embedder, reference)
    # auto=False: always the permutation test (hyppo otherwise switches to a chi-square
    # approximation above 20 samples)
    with warnings.catch_warnings():
        # hyppo warns below 1000 permutations; the count is the caller's choice (monitoring.yaml)
        warnings.filterwarnings("ignore", "The number of replications is low", RuntimeWarning)
        stat, p = Energy().test(x, y, reps=permutations, workers=1, auto=False, random_state=seed)
    return QuestionDrift(
        statistic=float(stat),
        p_value=float(p),
        n_current=len(current),
        n_reference=len(reference),
        permutations=permutations,
        reference=reference_name,
    )


def _best_scores(retriever: Any, questions: Sequence[str]) -> list[float]:
    out = []
    for q in questions:
        hits = retriever.retrieve(q, k=1, mode="dense")
        out.append(float(hits[0].score) if hits else 0.0)
    return out


def out_of_domain(
    current: Sequence[str],
    reference: Sequence[str],
    index: str,
    alias: str = "current",
    retriever: Any = None,
) -> OutOfDomain:
    """Share of ``current`` questions whose best dense score is below the reference's 5th
    percentile (on ``index`` at ``alias``)."""
    from indexing import Retriever

    r = retriever or Retriever(index, alias)
    ref = _best_scores(r, reference)
    threshold = float(np.percentile(ref, 5))
    cur = _best_scores(r, current)
    return OutOfDomain(
        index=index,
        version=r.version_id,
        threshold_score=threshold,
        rate=sum(s < threshold for s in cur) / len(cur) if cur else 0.0,
        n_current=len(cur),
        n_reference=len(ref),
    )


def grounding_drift(rows: Sequence[OnlineScore]) -> list[GroundingDrift]:
    """Best-retrieval-score distribution per index version, versions in serving order."""
    by: dict[str, dict[str, list[OnlineScore]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r.index and r.index_version and r.retrieval_score is not None:
            by[r.index][r.index_version].append(r)
    out = []
    for index, versions in sorted(by.items()):
        stats = []
        for version, rs in versions.items():
            s = np.array([r.retrieval_score for r in rs], dtype=np.float64)
            ts = [r.ts for r in rs]
            stats.append(
                VersionGrounding(
                    version=version,
                    n=len(rs),
                    mean=float(s.mean()),
                    p5=float(np.percentile(s, 5)),
                    first_ts=min(ts),
                    last_ts=max(ts),
                )
            )
        stats.sort(key=lambda v: v.first_ts)
        drop = stats[-2].mean - stats[-1].mean if len(stats) > 1 else None
        out.append(GroundingDrift(index=index, versions=stats, drop=drop))
    return out


def drift_breaches(report: DriftReport, t: Thresholds) -> list[Breach]:
    found: list[Breach | None] = []
    q = report.question
    if q is not None:
        found.append(
            Breach.crossed("question_drift_p", f"vs {q.reference}", q.p_value, t.drift_p_min, "min")
        )
    o = report.out_of_domain
    if o is not None:
        found.append(
            Breach.crossed("out_of_domain_rate", f"index={o.index}", o.rate, t.ood_rate_max, "max")
        )
    for g in report.grounding:
        last = g.versions[-1] if g.versions else None
        if (
            last is not None
            and last.n >= t.min_samples
            and len(g.versions) > 1
            and g.versions[-2].n >= t.min_samples
        ):
            scope = f"index={g.index} version={last.version}"
            found.append(
                Breach.crossed("grounding_drop", scope, g.drop, t.grounding_drop_max, "max")
            )
    return [b for b in found if b is not None]


GROUNDING_LOOKBACK_S = 30 * 86400  # versions compared: those served in the last 30 days


def compute_drift(
    state: Any,
    scores: Any,
    cfg: Any,
    *,
    since: float,
    until: float,
    reference: str | Path | None = None,
    reference_window: tuple[float, float] | None = None,
    index: str | None = None,
    embedder: Any = None,
) -> DriftReport:
    """Question drift, out-of-domain rate and grounding drift of the window's captured records
    against ``reference`` (a dataset file), an earlier window, or ``cfg.drift.reference``."""
    from collections import Counter

    from evaluation.metrics import CachingEmbedder

    d = cfg.drift
    recs = state.records(since=since, until=until)
    current = [q for r in recs if (q := r.question())]
    report = DriftReport()
    ref: list[str] = []
    name = ""
    if reference_window is not None:
        s, u = reference_window
        ref = [q for r in state.records(since=s, until=u) if (q := r.question())]
        name = "earlier window"
    elif reference is not None or d.reference is not None:
        path = reference if reference is not None else d.reference
        ref, name = reference_questions(path, d.question_field), Path(path).name
    if not ref:
        report.notes.append("question drift: no reference (--reference FILE or --reference-since)")
    elif len(current) < d.min_questions or len(ref) < d.min_questions:
        report.notes.append(
            f"question drift: {len(current)} current / {len(ref)} reference questions, "
            f"fewer than drift.min_questions={d.min_questions}"
        )
    else:
        emb = embedder or CachingEmbedder()
        report.question = question_drift(
            current, ref, emb, permutations=d.permutations, seed=d.seed, reference_name=name
        )
    named = Counter(r.metadata.index for r in recs if r.metadata.index)
    idx = index or d.index or (named.most_common(1)[0][0] if named else None)
    if idx and ref and current:
        report.out_of_domain = out_of_domain(current, ref, idx, d.alias)
    elif not idx:
        report.notes.append("out-of-domain rate: no index (--index, drift.index, or records')")
    report.grounding = grounding_drift(
        scores.query(since=until - GROUNDING_LOOKBACK_S, until=until)
    )
    report.breaches = drift_breaches(report, cfg.thresholds)
    return report
