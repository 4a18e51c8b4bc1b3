"""The logic behind the flow tools in ``flows/`` (the tool files are one-line wrappers).

Kept here so the genaiops runner, ``pf``, and tests all run the same code, and so the flows
survive promptflow's retirement: nothing in this module imports promptflow.

    >>> format_answer("Use TLS 1.3 [guides/security.pdf].",
    ...               [{"doc_id": "guides/security.pdf", "url": "file:///s.pdf"}])["citations"]
    [{'doc_id': 'guides/security.pdf', 'url': 'file:///s.pdf'}]
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from evaluation.metrics import dedupe
from evaluation.runtime.llm import GatewayClient, parse_chat_prompt

__all__ = [
    "GatewayConnection",
    "tool",
    "aggregate_scores",
    "format_answer",
    "generate",
    "retrieve_context",
    "rewrite_question",
    "score_line",
]

CONNECTION_NAME = "genaiops_gateway"


def tool(fn: Any) -> Any:
    """Stand-in for ``promptflow.core.tool`` when a flow runs under the genaiops runner."""
    setattr(fn, "__tool", True)  # noqa: B010  (the same marker promptflow sets)
    return fn


@dataclass(frozen=True)
class GatewayConnection:
    """What the genaiops runner passes where promptflow passes an ``OpenAIConnection``."""

    base_url: str
    api_key: str | None = None
    name: str = CONNECTION_NAME

    @classmethod
    def from_settings(cls) -> GatewayConnection:
        client = GatewayClient.from_settings()
        return cls(client.base_url, client.api_key)


def retrieve_context(
    question: str, index: str = "sample", alias: str = "current", k: int = 4, mode: str = "hybrid"
) -> list[dict[str, Any]]:
    """Chunks for ``question`` as plain dicts (JSON-serialisable: every runner records them)."""
    from indexing import retrieve

    return [c.to_dict() for c in retrieve(question, k=int(k), mode=mode, index=index, alias=alias)]  # type: ignore[arg-type]


def _client(connection: Any) -> GatewayClient:
    base = getattr(connection, "base_url", None) or getattr(connection, "api_base", None)
    if not base:
        return GatewayClient.from_settings()
    return GatewayClient(str(base), getattr(connection, "api_key", None) or None)


def generate(
    connection: Any,
    prompt: str,
    model: str = "genaiops-local",
    max_tokens: int = 96,
    temperature: float = 0.0,
) -> dict[str, Any]:
    """Send a chat-format prompt through the gateway; returns text, usage and model."""
    client = _client(connection)
    try:
        r = client.chat(
            parse_chat_prompt(prompt),
            model=model,
            max_tokens=int(max_tokens),
            temperature=float(temperature),
        )
    finally:
        client.close()
    return {
        "text": r.text.strip(),
        "model": r.model,
        "finish_reason": r.finish_reason,
        "usage": {"prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens},
    }


_CITE = re.compile(r"\[([^\[\]]+)\]")


def format_answer(completion: Any, context: list[dict[str, Any]]) -> dict[str, Any]:
    """The answer plus citations: the context documents it cites as ``[doc_id]``, or else all
    documents it was given (so a reader can always check the sources)."""
    text = completion["text"] if isinstance(completion, dict) else str(completion)
    by_id = {c["doc_id"]: c.get("url", "") for c in context}
    cited = [m.strip() for m in _CITE.findall(text)]
    ids = dedupe([c for c in cited if c in by_id]) or dedupe([c["doc_id"] for c in context])
    return {"answer": text, "citations": [{"doc_id": d, "url": by_id[d]} for d in ids]}


REWRITE_PROMPT = (
    "# system:\nRewrite the user's last question so it can be understood without the "
    "conversation. Reply with the question only.\n# user:\n{history}\nLast question: {question}"
)


def rewrite_question(
    connection: Any,
    question: str,
    chat_history: list[dict[str, Any]] | None = None,
    model: str = "genaiops-local",
    max_tokens: int = 48,
) -> str:
    """A standalone question: unchanged without history, else rewritten by the model."""
    if not chat_history:
        return question
    lines = []
    for turn in chat_history[-3:]:
        lines.append(f"User: {turn.get('inputs', {}).get('question', '')}")
        lines.append(f"Assistant: {turn.get('outputs', {}).get('answer', '')}")
    prompt = REWRITE_PROMPT.format(history="\n".join(lines), question=question)
    out = generate(connection, prompt, model=model, max_tokens=max_tokens)["text"]
    first = out.strip().splitlines()[0].strip() if out.strip() else ""
    return first or question


def score_line(
    question: str,
    answer: str,
    ground_truth: str | None = None,
    context: list[dict[str, Any]] | None = None,
    doc_ids: list[str] | None = None,
) -> dict[str, Any]:
    """Every offline evaluator on one line (what ``flows/eval_rag`` runs per line)."""
    from evaluation.scoring import default_evaluators, sample_from

    sample = sample_from(question, answer, ground_truth, context, doc_ids)
    out: dict[str, Any] = {}
    for ev in default_evaluators():
        out.update(ev(sample))
    return out


def aggregate_scores(scores: list[dict[str, Any]]) -> dict[str, float]:
    """Mean of each numeric metric over lines (NaNs counted under ``<metric>_nan``)."""
    from evaluation.stats import is_nan

    keys = sorted({k for s in scores for k, v in s.items() if isinstance(v, int | float)})
    out: dict[str, float] = {}
    for k in keys:
        vals = [s.get(k) for s in scores]
        valid = [float(v) for v in vals if not is_nan(v)]  # type: ignore[arg-type]
        out[k] = sum(valid) / len(valid) if valid else math.nan
        out[f"{k}_nan"] = float(len(vals) - len(valid))
    return out
