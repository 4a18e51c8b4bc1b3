"""Small evaluators in the pydantic_evals style: one ``evaluate(sample)`` returning a flat dict.

A failure is a value, not a crash: calling an evaluator (``evaluator(sample)``) catches the error
and returns NaN for its metrics plus ``{name}_error``, so one bad line never loses the others.
An evaluator whose inputs are absent (no ground truth, no reference ids) returns ``{}``: it does
not apply to that dataset, which is different from failing.

    >>> s = EvalSample(query="q", response="Lumen uses TLS 1.3", ground_truth="TLS 1.3 is used")
    >>> round(RougeEvaluator()(s)["rougeL"], 2)
    0.6
    >>> RetrievalEvaluator(k=3)(EvalSample(retrieved_ids=["a", "b"], reference_ids=["b"]))["mrr"]
    0.5
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from genaiops.errors import GenAIOpsError

__all__ = [
    "BleuEvaluator",
    "CachingEmbedder",
    "EvalSample",
    "Evaluator",
    "LatencyCostEvaluator",
    "RetrievalEvaluator",
    "RougeEvaluator",
    "SimilarityEvaluator",
    "dedupe",
]


@dataclass
class EvalSample:
    """What evaluators see for one line (azure-ai-evaluation input names)."""

    query: str = ""
    response: str | None = None
    context: str | None = None
    ground_truth: str | None = None
    retrieved_ids: list[str] | None = None
    reference_ids: list[str] | None = None
    latency_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reference_contexts: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Evaluator:
    """Base class: subclasses set ``name``, ``outputs`` and implement :meth:`evaluate`.

    ``outputs`` lists the numeric metric names it produces (NaN-filled on failure).
    """

    name: str = "evaluator"
    outputs: tuple[str, ...] = ()

    def applies(self, sample: EvalSample) -> bool:
        return True

    def evaluate(self, sample: EvalSample) -> dict[str, Any]:
        raise NotImplementedError

    def __call__(self, sample: EvalSample) -> dict[str, Any]:
        if not self.applies(sample):
            return {}
        try:
            return self.evaluate(sample)
        except (GenAIOpsError, ValueError, TypeError, KeyError, ZeroDivisionError, OSError) as e:
            out: dict[str, Any] = dict.fromkeys(self.outputs, math.nan)
            out[f"{self.name}_error"] = f"{type(e).__name__}: {e}"
            return out

    def to_dict(self) -> dict[str, Any]:
        return {"type": type(self).__name__, **{k: v for k, v in vars(self).items() if k[0] != "_"}}


def dedupe(ids: Sequence[str]) -> list[str]:
    """Doc ids in first-seen order (several chunks of one document count once)."""
    return list(dict.fromkeys(ids))


class BleuEvaluator(Evaluator):
    """Sentence BLEU (sacrebleu) against the ground truth, scaled to 0–1."""

    name = "bleu"
    outputs = ("bleu",)

    def applies(self, sample: EvalSample) -> bool:
        return sample.ground_truth is not None

    def evaluate(self, sample: EvalSample) -> dict[str, Any]:
        import sacrebleu

        hyp = sample.response or ""
        score = sacrebleu.sentence_bleu(hyp, [sample.ground_truth or ""]).score / 100.0
        return {"bleu": score}


class RougeEvaluator(Evaluator):
    """ROUGE-1/2/L F1 (rouge-score, Porter stemming) against the ground truth, 0–1."""

    name = "rouge"
    outputs = ("rouge1", "rouge2", "rougeL")

    def __init__(self) -> None:
        self._scorer: Any = None

    def applies(self, sample: EvalSample) -> bool:
        return sample.ground_truth is not None

    def evaluate(self, sample: EvalSample) -> dict[str, Any]:
        if self._scorer is None:
            from rouge_score import rouge_scorer

            self._scorer = rouge_scorer.RougeScorer(list(self.outputs), use_stemmer=True)
        scores = self._scorer.score(sample.ground_truth or "", sample.response or "")
        return {k: float(scores[k].fmeasure) for k in self.outputs}


class RetrievalEvaluator(Evaluator):
    """recall@k, MRR and nDCG@k (binary relevance) of retrieved doc ids vs reference ids."""

    name = "retrieval"

    def __init__(self, k: int = 5):
        if k < 1:
            raise ValueError("k must be at least 1")
        self.k = k
        self.outputs = (f"recall_at_{k}", "mrr", f"ndcg_at_{k}")

    def applies(self, sample: EvalSample) -> bool:
        return bool(sample.reference_ids) and sample.retrieved_ids is not None

    def evaluate(self, sample: EvalSample) -> dict[str, Any]:
        ref = set(sample.reference_ids or [])
        ranked = dedupe(sample.retrieved_ids or [])
        top = ranked[: self.k]
        recall = len(ref.intersection(top)) / len(ref)
        mrr = next((1.0 / (i + 1) for i, d in enumerate(ranked) if d in ref), 0.0)
        dcg = sum(1.0 / math.log2(i + 2) for i, d in enumerate(top) if d in ref)
        idcg = sum(1.0 / math.log2(i + 2) for i in range(min(len(ref), self.k)))
        return {f"recall_at_{self.k}": recall, "mrr": mrr, f"ndcg_at_{self.k}": dcg / idcg}


class CachingEmbedder:
    """Wraps an embedder (default: local MiniLM) with a text → vector cache; :meth:`prefetch`
    embeds many texts in one batch so per-line evaluators do not pay one model call each."""

    def __init__(self, embedder: Any = None):
        self._inner = embedder
        self._cache: dict[str, Any] = {}

    def _embedder(self) -> Any:
        if self._inner is None:
            from genaiops.providers import EmbedderConfig, make_embedder

            self._inner = make_embedder(EmbedderConfig())
        return self._inner

    def prefetch(self, texts: Sequence[str]) -> None:
        todo = list(dict.fromkeys(t for t in texts if t not in self._cache))
        for i in range(0, len(todo), 256):
            batch = todo[i : i + 256]
            for t, v in zip(batch, self._embedder().embed(batch), strict=True):
                self._cache[t] = v

    def embed(self, texts: list[str]) -> Any:
        import numpy as np

        self.prefetch(texts)
        return np.stack([self._cache[t] for t in texts])


class SimilarityEvaluator(Evaluator):
    """Cosine similarity of response and ground-truth embeddings (local MiniLM by default), 0–1."""

    name = "answer_similarity"
    outputs = ("answer_similarity",)

    def __init__(self, embedder: Any = None):
        self._embedder = embedder

    def applies(self, sample: EvalSample) -> bool:
        return sample.ground_truth is not None

    def evaluate(self, sample: EvalSample) -> dict[str, Any]:
        if not (sample.response or "").strip():
            return {"answer_similarity": 0.0}
        if self._embedder is None:
            self._embedder = CachingEmbedder()
        a, b = self._embedder.embed([sample.response or "", sample.ground_truth or ""])
        return {"answer_similarity": max(0.0, float((a * b).sum()))}


class LatencyCostEvaluator(Evaluator):
    """Latency and token use of the line; cost from per-1k-token prices (0 for local models)."""

    name = "cost"
    outputs = ("latency_s", "prompt_tokens", "completion_tokens", "total_tokens", "cost")

    def __init__(self, prompt_price_per_1k: float = 0.0, completion_price_per_1k: float = 0.0):
        self.prompt_price_per_1k = prompt_price_per_1k
        self.completion_price_per_1k = completion_price_per_1k

    def evaluate(self, sample: EvalSample) -> dict[str, Any]:
        p = sample.prompt_tokens or 0
        c = sample.completion_tokens or 0
        cost = p / 1000 * self.prompt_price_per_1k + c / 1000 * self.completion_price_per_1k
        latency = math.nan if sample.latency_s is None else float(sample.latency_s)
        return {
            "latency_s": latency,
            "prompt_tokens": p,
            "completion_tokens": c,
            "total_tokens": p + c,
            "cost": cost,
        }
