"""``genaiops monitor export``: captured records as an evaluation dataset, so the next prompt or
model change is gated on real failures.

Each line is what ``genaiops eval run`` reads (:func:`evaluation.runtime.data.load_jsonl`): ``id``
(the request id), ``question``, ``context`` (the grounding the answer had), ``answer`` (the
production answer *to review*: replace it with the correct one before using the file as ground
truth) plus where it came from (``source``: alias, deployment, variant, rating, scores).

    >>> n = export_records(state, scores, "rating=down or groundedness<3", out)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from evaluation.monitoring.sources import CaptureRecord, FeedbackRecord, GatewayState
from evaluation.monitoring.store import OnlineScore, ScoreStore
from evaluation.monitoring.where import parse_where

__all__ = ["ExportLine", "ExportSource", "export_records", "record_fields"]


class ExportSource(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: str
    ts: float
    alias: str
    deployment: str | None = None
    variant: str | None = None
    rating: str | None = None
    comment: str | None = None
    groundedness: float | None = None
    relevance: float | None = None


class ExportLine(BaseModel):
    """One evaluation-set line (``eval run`` columns: question, context, answer)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    question: str
    context: str
    answer: str
    review: str = "production answer: check it and correct it before gating on it"
    source: ExportSource


def record_fields(
    rec: CaptureRecord, score: OnlineScore | None, fb: FeedbackRecord | None
) -> dict[str, Any]:
    """The fields ``--where`` sees for one record."""
    d: dict[str, Any] = {
        "alias": rec.alias,
        "deployment": rec.deployment,
        "variant": rec.metadata.flow_variant,
        "team": rec.team,
        "finish_reason": rec.finish_reason,
        "answer_length": len((rec.completion or "").split()),
        "safety_blocked": rec.safety.blocked or rec.outcome == "filtered",
    }
    if score is not None:
        d.update(
            groundedness=score.groundedness,
            relevance=score.relevance,
            online_score=score.online_score,
            refused=score.refused,
            retrieval_score=score.retrieval_score,
        )
    if fb is not None:
        d["rating"] = fb.rating if fb.rating in ("up", "down") else float(fb.rating)
        d["tags"] = fb.tags
    return d


def export_records(
    state: GatewayState,
    scores: ScoreStore,
    where: str,
    out: Path,
    *,
    since: float | None = None,
    until: float | None = None,
) -> int:
    """Write the matching records to ``out`` (JSONL, replaced atomically); how many."""
    pred = parse_where(where)
    recs = state.records(since=since, until=until)
    by_id = {s.request_id: s for s in scores.query(since=since, until=until)}
    feedback = state.feedback()
    lines = []
    for rec in recs:
        s, fb = by_id.get(rec.request_id), feedback.get(rec.request_id)
        if not rec.question() or not pred(record_fields(rec, s, fb)):
            continue
        lines.append(
            ExportLine(
                id=rec.request_id,
                question=rec.question(),
                context="\n\n".join(rec.context()),
                answer=rec.completion or "",
                source=ExportSource(
                    request_id=rec.request_id,
                    ts=rec.ts,
                    alias=rec.alias,
                    deployment=rec.deployment,
                    variant=rec.metadata.flow_variant,
                    rating=fb.rating if fb else None,
                    comment=fb.comment if fb else None,
                    groundedness=s.groundedness if s else None,
                    relevance=s.relevance if s else None,
                ),
            )
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(json.dumps(line.model_dump(), ensure_ascii=False) + "\n")
    os.replace(tmp, out)
    return len(lines)
