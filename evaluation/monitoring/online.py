"""Online evaluation: score captured production answers with the evaluation package's judges.

For each captured record not scored yet: groundedness against the context the answer had (the
``documents`` / tool messages the caller sent), relevance of the answer to the question (both
1-5 through :class:`~evaluation.judges.JudgedEvaluator`, the same judges ``eval run`` uses), the
safety verdicts the gateway recorded, answer length and refusal.  Each request's 0-1 ``online``
score goes into the gateway ledger's ``scores`` table, so the rollout judge compares a canary's
own answers with stable's; every metric goes to :class:`~evaluation.monitoring.store.ScoreStore`,
and the run's aggregates per deployment and prompt variant to MLflow.

    >>> result = evaluate_online(state, scores, cfg, since=time.time() - 3600)  # doctest: +SKIP
    >>> [g.deployment for g in result.groups]                                   # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import random
import re
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from evaluation.judges import GatewayJudge, JudgedEvaluator, OfflineJudge
from evaluation.metrics import CachingEmbedder, EvalSample
from evaluation.monitoring.config import Breach, MonitoringConfig, Thresholds
from evaluation.monitoring.sources import CaptureRecord, GatewayState
from evaluation.monitoring.store import OnlineScore, ScoreStore

__all__ = [
    "EvaluateResult",
    "GroupStats",
    "evaluate_online",
    "group_scores",
    "is_refusal",
    "score_breaches",
    "score_record",
]

log = logging.getLogger(__name__)

# No kept library detects refusals in free text; these are the stock phrasings of chat models
# (and the gateway's withheld completions), matched at the start of a sentence.
_REFUSAL = re.compile(
    r"(^|[.!?]\s+)(i'?m sorry|sorry, (but )?i|i (cannot|can ?not|can'?t|won'?t|am unable to|"
    r"am not able to)|i do(n'?| no)t (know|have (enough )?information)|as an ai\b|"
    r"unfortunately,? i (cannot|can'?t)|the (provided |given )?context does not (contain|say|"
    r"mention))",
    re.IGNORECASE,
)


def is_refusal(answer: str, finish_reason: str | None = None) -> bool:
    """The answer declines (or was withheld by the content filter).

    >>> is_refusal("I'm sorry, I can't help with that."), is_refusal("Use logrotate.")
    (True, False)
    """
    if finish_reason == "content_filter":
        return True
    return bool(_REFUSAL.search(answer.strip()))


def _nan_to_none(x: Any) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def score_record(
    rec: CaptureRecord,
    groundedness: JudgedEvaluator,
    relevance: JudgedEvaluator,
) -> OnlineScore:
    """Every measurement of one record (judge failures are recorded, never raised)."""
    question, answer, context = rec.question(), rec.completion or "", rec.context()
    sample = EvalSample(
        query=question, response=answer or None, context="\n\n".join(context) or None
    )
    errors: dict[str, str] = {}
    scores: dict[str, float | None] = {}
    for ev in (groundedness, relevance):
        if not answer:
            errors[ev.metric] = "no answer (withheld or empty)"
            scores[ev.metric] = None
            continue
        out = ev(sample)
        scores[ev.metric] = _nan_to_none(out.get(ev.metric))
        if scores[ev.metric] is None:
            errors[ev.metric] = str(out.get(f"{ev.metric}_reason") or "judge failed")
    judged = [(s - 1) / 4 for s in scores.values() if s is not None]
    doc_scores = [d.score for d in rec.documents if d.score is not None]
    return OnlineScore(
        request_id=rec.request_id,
        ts=rec.ts,
        evaluated_at=time.time(),
        alias=rec.alias,
        deployment=rec.deployment,
        variant=rec.metadata.flow_variant,
        team=rec.team,
        judge=groundedness.judge.name,
        groundedness=scores["groundedness"],
        relevance=scores["relevance"],
        online_score=sum(judged) / len(judged) if judged else None,
        refused=is_refusal(answer, rec.finish_reason),
        safety_blocked=rec.safety.blocked or rec.outcome == "filtered",
        safety_flagged=sorted(
            set(rec.safety.flagged) | ({"attack"} if rec.safety.attack else set())
        ),
        answer_length=len(answer.split()),
        index=rec.metadata.index,
        index_version=rec.metadata.index_version,
        retrieval_score=max(doc_scores) if doc_scores else None,
        errors=errors,
    )


class GroupStats(BaseModel):
    """Aggregates of one (deployment, prompt variant) over the scored records."""

    model_config = ConfigDict(extra="forbid")

    deployment: str | None
    variant: str | None
    n: int
    groundedness_mean: float | None = None
    relevance_mean: float | None = None
    online_score_mean: float | None = None
    refusal_rate: float = 0.0
    safety_block_rate: float = 0.0
    answer_length_mean: float = 0.0
    judge_failures: int = 0

    @property
    def scope(self) -> str:
        return f"deployment={self.deployment or '-'} variant={self.variant or '-'}"


def _mean(xs: Iterable[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return sum(vals) / len(vals) if vals else None


def group_scores(rows: list[OnlineScore]) -> list[GroupStats]:
    """Per (deployment, variant) aggregates, sorted by deployment then variant."""
    groups: dict[tuple[str | None, str | None], list[OnlineScore]] = defaultdict(list)
    for r in rows:
        groups[(r.deployment, r.variant)].append(r)
    out = []
    for (dep, var), rs in sorted(groups.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1]))):
        n = len(rs)
        out.append(
            GroupStats(
                deployment=dep,
                variant=var,
                n=n,
                groundedness_mean=_mean(r.groundedness for r in rs),
                relevance_mean=_mean(r.relevance for r in rs),
                online_score_mean=_mean(r.online_score for r in rs),
                refusal_rate=sum(r.refused for r in rs) / n,
                safety_block_rate=sum(r.safety_blocked for r in rs) / n,
                answer_length_mean=sum(r.answer_length for r in rs) / n,
                judge_failures=sum(len(r.errors) for r in rs),
            )
        )
    return out


def score_breaches(groups: list[GroupStats], t: Thresholds) -> list[Breach]:
    """Thresholds a group with at least ``min_samples`` records crossed."""
    out: list[Breach] = []
    checks: list[tuple[str, str, float | None, Literal["min", "max"]]] = [
        ("groundedness", "groundedness_mean", t.groundedness_min, "min"),
        ("relevance", "relevance_mean", t.relevance_min, "min"),
        ("online_score", "online_score_mean", t.online_score_min, "min"),
        ("refusal_rate", "refusal_rate", t.refusal_rate_max, "max"),
        ("safety_block_rate", "safety_block_rate", t.safety_block_rate_max, "max"),
    ]
    for g in groups:
        if g.n < t.min_samples:
            continue
        for check, attr, limit, direction in checks:
            breach = Breach.crossed(check, g.scope, getattr(g, attr), limit, direction)
            if breach is not None:
                out.append(breach)
    return out


class EvaluateResult(BaseModel):
    """What one ``monitor evaluate`` run did (``--json`` prints it)."""

    model_config = ConfigDict(extra="forbid")

    since: float
    until: float
    judge: str
    captured: int = Field(description="records in the window")
    already_scored: int
    scored: int
    ledger_scores: int = Field(description="online scores written to the ledger")
    groups: list[GroupStats]
    breaches: list[Breach]
    mlflow_run_id: str | None = None


def _judges(cfg: MonitoringConfig, embedder: Any) -> tuple[JudgedEvaluator, JudgedEvaluator]:
    spec = cfg.evaluate.judge
    judge: Any = (
        OfflineJudge(embedder) if spec == "offline" else GatewayJudge(spec.split(":", 1)[1])
    )
    th = cfg.evaluate.judge_threshold
    return JudgedEvaluator("groundedness", judge, th), JudgedEvaluator("relevance", judge, th)


def evaluate_online(
    state: GatewayState,
    scores: ScoreStore,
    cfg: MonitoringConfig,
    *,
    since: float,
    until: float | None = None,
    alias: str | None = None,
    sample: int | None = None,
    rescore: bool = False,
    embedder: Any = None,
    seed: int = 0,
    track: bool = True,
) -> EvaluateResult:
    """Score the window's unscored records (a random ``sample`` of them), write the ledger's
    online scores, aggregate every scored record of the window and judge the thresholds."""
    until = until if until is not None else time.time()
    recs = [r for r in state.records(since=since, until=until, alias=alias)]
    done = set() if rescore else scores.scored_ids([r.request_id for r in recs])
    todo = [r for r in recs if r.request_id not in done]
    n = sample if sample is not None else cfg.evaluate.sample
    if n is not None and len(todo) > n:
        todo = random.Random(seed).sample(todo, n)
    g_ev, r_ev = _judges(cfg, embedder or CachingEmbedder())
    new = [score_record(r, g_ev, r_ev) for r in todo]
    scores.put(new)
    written = sum(
        1
        for s in new
        if s.online_score is not None and state.record_score(s.request_id, s.online_score)
    )
    window = [
        s for s in scores.query(since=since, until=until) if alias is None or s.alias == alias
    ]
    groups = group_scores(window)
    result = EvaluateResult(
        since=since,
        until=until,
        judge=g_ev.judge.name,
        captured=len(recs),
        already_scored=len(done),
        scored=len(new),
        ledger_scores=written,
        groups=groups,
        breaches=score_breaches(groups, cfg.thresholds),
    )
    if track:
        from evaluation.monitoring.tracking import log_online_run

        result.mlflow_run_id = log_online_run(result, alias=alias)
    return result
