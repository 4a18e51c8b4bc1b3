"""Kind 3's records: Python FAQ questions, retrieved context, the official answer with a citation.

Each FAQ pair (``faq_qa.jsonl``: id, question, answer, page) becomes one chat example in the
shape the RAG flow sends the gateway (``flows/rag/answer_cited.jinja2``: a system message with
the sources as ``[doc_id] text``, then the question), so what the LoRA learns is what the
evaluation gate and the gateway serve.  The target is the first sentences of the official
answer followed by the id of the retrieved source that shares most words with it, in brackets.

Context comes from the ``python-docs`` index (alias ``current``) when one is built, else from
BM25 over the corpus pages cut into paragraphs (``data.retrieval: auto``); the run records
which (``context_source``).  The FAQ pages are not in the corpus, so the answer is never
copied from the context verbatim.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from training.errors import DataSourceError
from training.report import DataSourceRecord
from training.spec import GeneratorSpec, expand_path

__all__ = ["Example", "build_examples", "messages_for", "short_answer"]

# the system prompt of flows/rag/answer_cited.jinja2 (the gate's "cited" variant)
SYSTEM = (
    "You answer questions using only the sources below.\n"
    "Answer in one or two sentences and cite the source id in brackets, like "
    "[guides/rotation.md].\n"
    "If the sources do not contain the answer, say you do not know."
)
_SENT = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[a-z0-9_]{3,}")


@dataclass(frozen=True)
class Example:
    """One FAQ pair with its retrieved context and the training target."""

    id: str
    question: str
    context: list[dict[str, str]]  # [{doc_id, text}], best first
    answer: str  # the ground truth: the official answer's first sentences
    target: str  # answer + " [doc_id]"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def messages_for(question: str, context: list[dict[str, str]]) -> list[dict[str, str]]:
    """The chat the RAG flow sends: system (instructions + sources) and the question."""
    sources = "\n".join(f"[{c['doc_id']}] {c['text']}" for c in context)
    return [
        {"role": "system", "content": f"{SYSTEM}\n\n{sources}"},
        {"role": "user", "content": question},
    ]


def short_answer(text: str, sentences: int, max_chars: int) -> str:
    """The first ``sentences`` sentences of ``text`` (whitespace squeezed), cut at a word."""
    flat = " ".join(text.split())
    out = " ".join(_SENT.split(flat)[:sentences])
    if len(out) > max_chars:
        out = out[:max_chars].rsplit(" ", 1)[0].rstrip(",;:") + "…"
    return out


def _record(name: str, path: Path, examples: int) -> DataSourceRecord:
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    return DataSourceRecord(
        name=name, kind="file", location=str(path), sha256=sha, examples=examples
    )


def _read_jsonl(path: Path, key: str) -> list[dict[str, Any]]:
    if not path.is_file():
        raise DataSourceError(f"{key}: no file {path}")
    try:
        return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    except (OSError, json.JSONDecodeError) as e:
        raise DataSourceError(f"{key}: {path}: {e}") from e


def _paragraphs(pages: list[dict[str, Any]], chunk_chars: int) -> list[dict[str, str]]:
    """Pages cut at blank lines into chunks of about ``chunk_chars`` characters."""
    out: list[dict[str, str]] = []
    for page in pages:
        buf = ""
        for para in re.split(r"\n\s*\n", str(page.get("text") or "")):
            para = " ".join(para.split())
            if not para:
                continue
            if buf and len(buf) + len(para) > chunk_chars:
                out.append({"doc_id": str(page["id"]), "text": buf[: chunk_chars * 2]})
                buf = ""
            buf = f"{buf} {para}".strip()
        if buf:
            out.append({"doc_id": str(page["id"]), "text": buf[: chunk_chars * 2]})
    return out


def _bm25_context(
    questions: list[str], pages: list[dict[str, Any]], spec: GeneratorSpec
) -> list[list[dict[str, str]]]:
    import bm25s
    import Stemmer

    chunks = _paragraphs(pages, spec.data.chunk_chars)
    if not chunks:
        raise DataSourceError("data.corpus: no text to retrieve context from")
    stem = Stemmer.Stemmer("english")

    def tok(texts: list[str]) -> Any:
        return bm25s.tokenize(texts, stopwords="en", stemmer=stem, show_progress=False)

    index = bm25s.BM25()
    index.index(tok([c["text"] for c in chunks]), show_progress=False)
    k = min(spec.data.k, len(chunks))
    docs, _ = index.retrieve(tok(questions), k=k, show_progress=False)
    return [[chunks[int(j)] for j in row] for row in docs]


def _index_context(questions: list[str], spec: GeneratorSpec) -> list[list[dict[str, str]]]:
    from indexing import retrieve

    return [
        [
            {"doc_id": h.doc_id, "text": h.text}
            for h in retrieve(q, k=spec.data.k, index=spec.data.index, alias=spec.data.index_alias)
        ]
        for q in questions
    ]


def _index_available(spec: GeneratorSpec) -> str | None:
    """The version id the index alias points at, or None when no such index is built."""
    from genaiops.errors import GenAIOpsError
    from indexing import Catalog

    try:
        return str(Catalog(spec.data.index).resolve(spec.data.index_alias))
    except (GenAIOpsError, OSError):
        return None


def _cite(answer: str, context: list[dict[str, str]]) -> str:
    words = set(_WORD.findall(answer.lower()))
    best = max(context, key=lambda c: len(words & set(_WORD.findall(c["text"].lower()))))
    return best["doc_id"]


def _cut(context: list[dict[str, str]], chars: int) -> list[dict[str, str]]:
    return [{"doc_id": c["doc_id"], "text": c["text"][:chars]} for c in context]


def build_examples(
    spec: GeneratorSpec,
) -> tuple[list[Example], list[Example], list[DataSourceRecord], str]:
    """(train, validation, data records, context source) — seeded, the validation split by
    FAQ entry."""
    d = spec.data
    faq_path = expand_path(d.faq, spec.base_dir, key="data.faq")
    corpus_path = expand_path(d.corpus, spec.base_dir, key="data.corpus")
    faq = [r for r in _read_jsonl(faq_path, "data.faq") if r.get("question") and r.get("answer")]
    if len(faq) < 2:
        raise DataSourceError(f"data.faq: {faq_path} has fewer than 2 question/answer pairs")
    faq.sort(key=lambda r: str(r.get("id") or r["question"]))
    random.Random(spec.seed).shuffle(faq)
    n_val = max(1, round(len(faq) * d.validation_fraction))
    val_rows, train_rows = faq[:n_val][: d.max_validation], faq[n_val:][: d.max_train]
    if not train_rows:
        raise DataSourceError("data: no training pairs left after the validation split")
    rows = train_rows + val_rows
    questions = [str(r["question"]) for r in rows]
    records = [_record("python FAQ pairs", faq_path, len(faq))]
    version = _index_available(spec) if d.retrieval in ("auto", "index") else None
    if d.retrieval == "index" and version is None:
        raise DataSourceError(
            f"data.retrieval: index {d.index!r} has no alias {d.index_alias!r}; build it "
            f"(genaiops index build --spec indexing/specs/{d.index}.yaml --promote current)"
        )
    if version is not None:
        contexts = _index_context(questions, spec)
        source = f"index {d.index}@{d.index_alias} ({version})"
    else:
        pages = _read_jsonl(corpus_path, "data.corpus")
        records.append(_record("python-docs pages", corpus_path, len(pages)))
        contexts = _bm25_context(questions, pages, spec)
        source = f"bm25 over {corpus_path.name} paragraphs ({d.chunk_chars} chars)"
    examples = []
    for r, ctx in zip(rows, contexts, strict=True):
        ctx = _cut(ctx, d.chunk_chars)
        answer = short_answer(str(r["answer"]), d.answer_sentences, d.answer_chars)
        cite = _cite(answer, ctx) if ctx else None
        examples.append(
            Example(
                id=str(r.get("id") or r["question"]),
                question=str(r["question"]),
                context=ctx,
                answer=answer,
                target=f"{answer} [{cite}]" if cite else answer,
            )
        )
    return examples[: len(train_rows)], examples[len(train_rows) :], records, source
