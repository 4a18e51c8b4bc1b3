"""The logic behind the RAG and chat flow tools in ``flows/`` (the tool files are thin wrappers).

Scoring is not here: ``flows/eval_rag`` imports :mod:`evaluation.scoring` itself (a flow tool
may), so the runtime never depends on the scoring package that reads its runs.

Kept here so the genaiops runner, ``pf``, and tests all run the same code, and so the flows
survive promptflow's retirement: nothing in this module imports promptflow.

    >>> format_answer("Use TLS 1.3 [guides/security.pdf].",
    ...               [{"doc_id": "guides/security.pdf", "url": "file:///s.pdf"}])["citations"]
    [{'doc_id': 'guides/security.pdf', 'url': 'file:///s.pdf'}]
"""

from __future__ import annotations

import re
from typing import Any

from evaluation.metrics import dedupe
from evaluation.runtime.llm import (
    CONNECTION_NAME,
    GatewayClient,
    GatewayConnection,
    gateway_client,
    gateway_target,
    parse_chat_prompt,
)
from indexing import retrieve

__all__ = [
    "CONNECTION_NAME",
    "GatewayConnection",
    "tool",
    "format_answer",
    "generate",
    "grounding",
    "retrieve_context",
    "rewrite_question",
]


def tool(fn: Any) -> Any:
    """Stand-in for ``promptflow.core.tool`` when a flow runs under the genaiops runner."""
    setattr(fn, "__tool", True)  # noqa: B010  (the same marker promptflow sets)
    return fn


def retrieve_context(
    question: str, index: str = "sample", alias: str = "current", k: int = 4, mode: str = "hybrid"
) -> list[dict[str, Any]]:
    """Chunks for ``question`` as plain dicts (JSON-serialisable: every runner records them)."""
    return [c.to_dict() for c in retrieve(question, k=int(k), mode=mode, index=index, alias=alias)]  # type: ignore[arg-type]


def _client(connection: Any) -> GatewayClient:
    """The shared client for a genaiops or promptflow connection (``base_url`` + ``api_key``)."""
    base = getattr(connection, "base_url", None) or getattr(connection, "api_base", None)
    if not base:
        return gateway_client(*gateway_target())
    return gateway_client(str(base), getattr(connection, "api_key", None) or None)


def grounding(
    context: list[dict[str, Any]] | None, index: str | None = None, alias: str | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The gateway's ``documents`` (text, chunk id, retrieval score) and ``retrieval`` (index,
    the version every chunk came from, alias) extensions for retrieved ``context``.

    >>> grounding([{"text": "t", "chunk_id": "a.md#0", "score": 0.5, "version_id": "v1"}], "ix")
    ([{'text': 't', 'id': 'a.md#0', 'score': 0.5}], {'index': 'ix', 'index_version': 'v1'})
    """
    docs = [
        {"text": str(c["text"]), "id": c.get("chunk_id") or c.get("doc_id"),
         "score": float(c["score"]) if c.get("score") is not None else None}
        for c in context or []
        if c.get("text")
    ]  # fmt: skip
    versions = {str(c["version_id"]) for c in context or [] if c.get("version_id")}
    info = {
        "index": index or None,
        "index_version": versions.pop() if len(versions) == 1 else None,
        "alias": alias or None,
    }
    retrieval = {k: v for k, v in info.items() if v is not None}
    return docs, retrieval or None


def generate(
    connection: Any,
    prompt: str,
    model: str = "genaiops-local",
    max_tokens: int = 96,
    temperature: float = 0.0,
    context: list[dict[str, Any]] | None = None,
    index: str | None = None,
    index_alias: str | None = None,
) -> dict[str, Any]:
    """Send a chat-format prompt through the gateway; returns text, usage and model.

    ``context`` (the retrieved chunks) goes along as the gateway's ``documents`` extension, so
    a captured request keeps the grounding its answer had (see :func:`grounding`)."""
    docs, retrieval = grounding(context, index, index_alias)
    r = _client(connection).chat(
        parse_chat_prompt(prompt),
        model=model,
        max_tokens=int(max_tokens),
        temperature=float(temperature),
        documents=docs or None,
        retrieval=retrieval,
    )
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
