"""Request bodies of the OpenAI-compatible API (validated; unknown fields pass through upstream).

>>> msg = {"role": "user", "content": "hi"}
>>> ChatCompletionRequest.model_validate({"model": "m", "messages": [msg]})  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ChatCompletionRequest",
    "ChatMessageIn",
    "EmbeddingsRequest",
    "KeyCreate",
    "RolloutStart",
    "ScoreIn",
    "StreamOptions",
]


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions``; ``documents`` is a genaiops extension (checked for
    indirect prompt attacks like Azure Prompt Shields documents)."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=256)
    messages: list[ChatMessageIn] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    n: int | None = Field(default=None, ge=1, le=1, description="only 1 is supported")
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    user: str | None = Field(default=None, max_length=256)
    documents: list[str] | None = None


class EmbeddingsRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=256)
    input: str | list[str] = Field(description="text or list of texts (token arrays unsupported)")
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = ""
    team: str | None = None
    rpm: int | None = Field(default=None, ge=0)
    tpm: int | None = Field(default=None, ge=0)
    quota: int | None = Field(default=None, ge=0)
    period: Literal["day", "month"] = "month"
    safety_policy: str | None = None


class RolloutStart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    candidate: str
    steps: list[float] = Field(default_factory=lambda: [5.0, 25.0, 50.0, 100.0], min_length=1)
    interval: str = "60s"
    stable: str | None = None
    min_samples: int | None = Field(default=None, ge=1)
    max_error_rate_increase: float | None = Field(default=None, ge=0)
    max_p95_ratio: float | None = Field(default=None, ge=1)
    max_score_drop: float | None = Field(default=None, ge=0)


class ScoreIn(BaseModel):
    """An online evaluation score for one request (``x-request-id`` of its response)."""

    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1, max_length=200)
    score: float = Field(allow_inf_nan=False)
    name: str = Field(default="online", max_length=100)
