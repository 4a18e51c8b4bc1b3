"""Typed records of captured traffic and end-user feedback (what the capture store holds).

Every record is a pydantic model with a ``schema_version``: the SQLite store keeps the whole
record as its JSON (plus a few indexed columns), and the offline half of issue 10 (``genaiops
monitor``) reads them back through :class:`~gateway.capture.store.CaptureStore` only.

    >>> rec = CaptureRecord(request_id="req_1", ts=0.0, alias="chat", completion="Hi")
    >>> rec.question()
    ''
    >>> fb = FeedbackRecord.from_rating("req_1", "k1", "up")
    >>> (fb.rating, fb.score, fb.positive)
    ('up', 1.0, True)
    >>> FeedbackRecord.from_rating("req_1", "k1", 4).score
    0.75
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CAPTURE_SCHEMA_VERSION",
    "CaptureMetadata",
    "CaptureRecord",
    "CapturedDocument",
    "CaptureCounts",
    "FeedbackRecord",
    "Rating",
    "SafetySummary",
    "Usage",
    "rating_score",
]

CAPTURE_SCHEMA_VERSION = 1
Rating = Literal["up", "down", "1", "2", "3", "4", "5"]


class _Record(BaseModel):
    # extra="forbid": a record written by a newer gateway with fields this reader does not
    # know fails loudly instead of being silently truncated
    model_config = ConfigDict(extra="forbid")


class Usage(_Record):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class CapturedDocument(_Record):
    """One grounding document the caller sent (the ``documents`` extension of a chat request)."""

    text: str
    id: str | None = Field(default=None, description="the caller's id (chunk or doc id)")
    score: float | None = Field(default=None, description="its retrieval score, if sent")


class CaptureMetadata(_Record):
    """What the app attached to the request (all optional)."""

    user: str | None = Field(default=None, description="the OpenAI ``user`` field")
    session: str | None = Field(default=None, description="header x-genaiops-session")
    flow_variant: str | None = Field(default=None, description="header x-genaiops-flow-variant")
    index: str | None = Field(default=None, description="retrieval.index of the request")
    index_version: str | None = Field(default=None, description="retrieval.index_version")
    index_alias: str | None = Field(default=None, description="retrieval.alias")


class SafetySummary(_Record):
    """The safety engine's verdicts in brief (the full Azure-shaped results stay in the ledger).

    ``flagged``: harm categories at severity low or above, prompt or completion; ``pii``: the
    PII types found (and redacted before capture); ``attack``: a jailbreak or indirect attack
    was detected (whether or not the policy blocked it)."""

    checked: bool = False
    blocked: bool = False
    flagged: list[str] = Field(default_factory=list)
    pii: list[str] = Field(default_factory=list)
    attack: bool = False


class CaptureRecord(_Record):
    """One captured chat request and its answer, after PII redaction by the safety engine.

    ``messages`` are the messages as sent upstream (redacted), ``documents`` the grounding the
    caller supplied (redacted), ``completion`` the answer text as the client received it
    (streamed or not; empty when the content filter withheld it)."""

    schema_version: int = CAPTURE_SCHEMA_VERSION
    request_id: str
    ts: float = Field(description="unix time the request finished")
    key_id: str | None = None
    team: str | None = None
    alias: str
    deployment: str | None = None
    stream: bool = False
    outcome: str = "ok"  # ok | filtered (the completion was withheld)
    messages: list[dict[str, Any]] = Field(default_factory=list)
    documents: list[CapturedDocument] = Field(default_factory=list)
    completion: str = ""
    tool_calls: list[dict[str, Any]] | None = None
    finish_reason: str | None = None
    usage: Usage = Field(default_factory=Usage)
    latency_ms: float | None = None
    safety: SafetySummary = Field(default_factory=SafetySummary)
    metadata: CaptureMetadata = Field(default_factory=CaptureMetadata)
    redacted: bool = Field(
        default=False, description="the policy redacted PII (pii: redact) before capture"
    )
    truncated: bool = Field(default=False, description="text was cut to capture.max_chars")

    def question(self) -> str:
        """The last user message's text (what an evaluation set calls the question)."""
        for m in reversed(self.messages):
            if m.get("role") == "user":
                return _text(m.get("content"))
        return ""

    def context(self) -> list[str]:
        """The grounding the answer had: supplied documents, then tool / function messages."""
        out = [d.text for d in self.documents]
        out += [_text(m.get("content")) for m in self.messages if m.get("role") in _TOOL_ROLES]
        return [t for t in out if t]


_TOOL_ROLES = ("tool", "function")


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("text")
        )
    return ""


def rating_score(rating: str) -> float:
    """``up`` 1.0, ``down`` 0.0, stars 1..5 → 0.0, 0.25, … 1.0."""
    if rating == "up":
        return 1.0
    if rating == "down":
        return 0.0
    return (int(rating) - 1) / 4


class FeedbackRecord(_Record):
    """An end user's rating of one answer; one per (request_id, key_id), the latest wins.

    ``alias``/``deployment``/``team``/``flow_variant`` are copied from the request's ledger row
    (or capture) when the feedback arrives, so reports group feedback without a join."""

    schema_version: int = CAPTURE_SCHEMA_VERSION
    request_id: str
    key_id: str
    rating: Rating
    score: float = Field(ge=0, le=1, description="numeric form: up 1, down 0, stars (n-1)/4")
    comment: str | None = None
    tags: list[str] = Field(default_factory=list)
    ts: float = Field(default_factory=time.time, description="unix time of the latest rating")
    created: float = Field(default_factory=time.time, description="unix time of the first")
    alias: str | None = None
    deployment: str | None = None
    team: str | None = None
    flow_variant: str | None = None

    @property
    def positive(self) -> bool:
        """Counted as a thumbs-up: ``up``, 4 or 5 stars."""
        return self.score > 0.5

    @classmethod
    def from_rating(
        cls, request_id: str, key_id: str, rating: str | int, **kw: Any
    ) -> FeedbackRecord:
        r = str(rating)
        return cls(request_id=request_id, key_id=key_id, rating=r, score=rating_score(r), **kw)  # type: ignore[arg-type]


class CaptureCounts(_Record):
    """How much the store holds (``since``: only records at or after that time)."""

    captures: int = 0
    feedback: int = 0
    oldest_ts: float | None = None
    newest_ts: float | None = None
    by_alias: dict[str, int] = Field(default_factory=dict)
    by_rating: dict[str, int] = Field(default_factory=dict)
