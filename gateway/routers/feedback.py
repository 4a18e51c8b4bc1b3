"""``POST /v1/feedback``: an app's end user rates one answer (thumbs or 1..5 stars).

A key may rate only its own requests: the request id must be in the usage ledger under the
same key, else 404 (exactly as for an id that does not exist, so nothing leaks about other keys'
traffic).  Idempotent per (request_id, key): a repeat replaces the rating, comment and tags of
the one stored record (the latest opinion counts; ``created_at`` stays the first time) and
answers 200 with ``"updated": true``; the first answers 200 with ``"updated": false``.  A comment
is stored after the safety policy's PII redaction.

    curl -H "Authorization: Bearer $KEY" localhost:8080/v1/feedback \
         -d '{"request_id": "req_...", "rating": "down", "comment": "wrong version"}'
"""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from gateway.capture import FeedbackRecord
from gateway.deps import GW, ApiKey
from gateway.errors import NotFound
from gateway.schemas import FeedbackIn

__all__ = ["router"]

router = APIRouter(tags=["feedback"])

# ledger rows that are not a client's answer: fallback attempts and mirrored shadow calls
_NOT_ANSWERS = ("shadow", "attempt_error")


@router.post("/v1/feedback")
async def post_feedback(body: FeedbackIn, gw: GW, key: ApiKey) -> JSONResponse:
    row = await asyncio.to_thread(gw.ledger.get, body.request_id)
    if row is None or row.get("key_id") != key.id or row.get("outcome") in _NOT_ANSWERS:
        raise NotFound(
            f"No request {body.request_id!r} was made with this key.", param="request_id"
        )
    assert gw.capture is not None  # built by create_app
    store = gw.capture.store
    comment = body.comment
    if comment and gw.safety is not None and gw.config.safety.enabled:
        comment = await gw.safety.redact_text(comment, key.safety_policy)
    captured = await asyncio.to_thread(store.get, body.request_id, key.id)
    rec = FeedbackRecord.from_rating(
        body.request_id,
        key.id,
        body.rating,
        comment=comment,
        tags=body.tags,
        ts=time.time(),
        alias=row.get("alias"),
        deployment=row.get("deployment"),
        team=row.get("team"),
        flow_variant=captured.metadata.flow_variant if captured else None,
    )
    stored, created = await asyncio.to_thread(store.put_feedback, rec)
    gw.metrics.feedback.labels(stored.alias or "", stored.deployment or "", stored.rating).inc()
    return JSONResponse(
        {
            "object": "feedback",
            "request_id": stored.request_id,
            "rating": body.rating,
            "score": stored.score,
            "comment": stored.comment,
            "tags": stored.tags,
            "created_at": int(stored.created),
            "updated": not created,
        }
    )
