"""Request bodies of the OpenAI-compatible API (validated; unknown fields pass through upstream).

Booleans and numbers are strict, as the OpenAI API is: ``"stream": "yes"`` or ``"max_tokens":
"5"`` is a 400, never silently coerced.  :func:`invalid_text` finds text no model can read
(lone UTF-16 surrogates, which JSON allows) anywhere in a body, so it is refused at admission.

>>> msg = {"role": "user", "content": "hi"}
>>> ChatCompletionRequest.model_validate({"model": "m", "messages": [msg]})  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, StrictBool, StrictInt, field_validator

from gateway.errors import InvalidRequest

__all__ = [
    "ChatCompletionRequest",
    "ChatMessageIn",
    "DocumentIn",
    "FeedbackIn",
    "EmbeddingsRequest",
    "KeyCreate",
    "RetrievalIn",
    "RolloutStart",
    "ScoreIn",
    "StreamOptions",
    "invalid_text",
    "require_valid_text",
]

Number = Annotated[float, Strict()]  # an int or a float, never a string or a boolean


def invalid_text(value: Any, path: str = "") -> str | None:
    """Dotted path (``messages.3.content``) of the first string in ``value`` that is not valid
    Unicode (a lone surrogate from ``"\\ud800"``), or None.  Such text made the tokenizer fail
    the whole local batch and leaked its internals; refusing it up front names the culprit."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path or "body"
        return None
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    else:
        return None
    for k, v in items:
        bad = invalid_text(k, path) if isinstance(k, str) else None
        bad = bad or invalid_text(v, f"{path}.{k}" if path else str(k))
        if bad:
            return bad
    return None


def require_valid_text(body: BaseModel) -> None:
    """400 naming the field (``messages.3.content``) when any text of ``body`` is not Unicode."""
    bad = invalid_text(body.model_dump(exclude_none=True))
    if bad:
        raise InvalidRequest(
            f"{bad} is not valid Unicode text (it contains a lone surrogate such as \\ud800)",
            param=bad,
        )


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: StrictBool = False


class DocumentIn(BaseModel):
    """One grounding document with its provenance (the object form of ``documents``)."""

    model_config = ConfigDict(extra="forbid")

    text: str
    id: str | None = Field(default=None, max_length=512)
    score: Number | None = Field(default=None, allow_inf_nan=False)


class RetrievalIn(BaseModel):
    """Which index served the ``documents`` (stored with a captured request)."""

    model_config = ConfigDict(extra="forbid")

    index: str | None = Field(default=None, max_length=256)
    index_version: str | None = Field(default=None, max_length=256)
    alias: str | None = Field(default=None, max_length=256)


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions``; ``documents`` and ``retrieval`` are genaiops extensions,
    never sent upstream.  ``documents`` (strings, or ``{text, id, score}`` objects) are checked
    for indirect prompt attacks like Azure Prompt Shields documents and are the grounding a
    captured request keeps; ``retrieval`` names the index (and version, alias) they came from."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=256)
    messages: list[ChatMessageIn] = Field(min_length=1)
    max_tokens: StrictInt | None = Field(default=None, ge=1)
    max_completion_tokens: StrictInt | None = Field(default=None, ge=1)
    temperature: Number | None = Field(default=None, ge=0, le=2)
    top_p: Number | None = Field(default=None, ge=0, le=1)
    n: StrictInt | None = Field(default=None, ge=1, le=1, description="only 1 is supported")
    stream: StrictBool | None = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    user: str | None = Field(default=None, max_length=256)
    documents: list[str | DocumentIn] | None = None
    retrieval: RetrievalIn | None = None

    def document_texts(self) -> list[str]:
        return [d if isinstance(d, str) else d.text for d in self.documents or []]


class EmbeddingsRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=256)
    input: str | list[str] = Field(description="text or list of texts (token arrays unsupported)")
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: StrictInt | None = Field(default=None, ge=1)
    user: str | None = None


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = ""
    team: str | None = None
    rpm: StrictInt | None = Field(default=None, ge=0)
    tpm: StrictInt | None = Field(default=None, ge=0)
    quota: StrictInt | None = Field(default=None, ge=0)
    period: Literal["day", "month"] = "month"
    safety_policy: str | None = None


class RolloutStart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    candidate: str
    steps: list[Number] = Field(default_factory=lambda: [5.0, 25.0, 50.0, 100.0], min_length=1)
    interval: str = "60s"
    stable: str | None = None
    min_samples: StrictInt | None = Field(default=None, ge=1)
    max_error_rate_increase: Number | None = Field(default=None, ge=0)
    max_p95_ratio: Number | None = Field(default=None, ge=1)
    max_score_drop: Number | None = Field(default=None, ge=0)


class FeedbackIn(BaseModel):
    """``POST /v1/feedback``: an end user's rating of one answer (``x-request-id``)."""

    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1, max_length=200)
    rating: Literal["up", "down", 1, 2, 3, 4, 5]
    comment: str | None = Field(default=None, max_length=4000)
    tags: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=20
    )

    @field_validator("rating", mode="before")
    @classmethod
    def _rating(cls, v: Any) -> Any:
        if v in ("up", "down") or (type(v) is int and 1 <= v <= 5):
            return v
        raise ValueError("must be 'up', 'down' or an integer from 1 to 5")


class ScoreIn(BaseModel):
    """An online evaluation score for one request (``x-request-id`` of its response)."""

    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1, max_length=200)
    score: Number = Field(allow_inf_nan=False)
    name: str = Field(default="online", max_length=100)
