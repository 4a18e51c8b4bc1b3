from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation.config import EvalConfig
from evaluation.metrics import (
    BleuEvaluator,
    EvalSample,
    Evaluator,
    LatencyCostEvaluator,
    RetrievalEvaluator,
    RougeEvaluator,
    SimilarityEvaluator,
    dedupe,
)
from evaluation.scoring import skipped_metrics
from evaluation.stats import mean_ci, paired_worse_pvalue


def test_bleu_and_rouge_identical_and_disjoint() -> None:
    same = EvalSample(
        response="Lumen uses TLS 1.3 for every connection",
        ground_truth="Lumen uses TLS 1.3 for every connection",
    )
    other = EvalSample(response="bananas are yellow", ground_truth="Lumen uses TLS 1.3")
    assert BleuEvaluator()(same)["bleu"] == pytest.approx(1.0)
    assert BleuEvaluator()(other)["bleu"] == pytest.approx(0.0, abs=0.05)
    r = RougeEvaluator()(same)
    assert r["rouge1"] == r["rouge2"] == r["rougeL"] == pytest.approx(1.0)
    assert RougeEvaluator()(other)["rougeL"] == 0.0


def test_rouge_partial_overlap_value() -> None:
    s = EvalSample(response="the cat sat", ground_truth="the cat ran")
    # 2 of 3 unigrams shared both ways: P = R = F1 = 2/3
    assert RougeEvaluator()(s)["rouge1"] == pytest.approx(2 / 3)


def test_retrieval_metrics_exact() -> None:
    ev = RetrievalEvaluator(k=3)
    s = EvalSample(retrieved_ids=["a", "a", "b", "c", "d"], reference_ids=["b", "d"])
    out = ev(s)
    # dedupe -> a, b, c, d; top-3 holds b only
    assert out["recall_at_3"] == 0.5
    assert out["mrr"] == 0.5
    ideal = 1 + 1 / math.log2(3)
    assert out["ndcg_at_3"] == pytest.approx((1 / math.log2(3)) / ideal)
    assert dedupe(["x", "y", "x"]) == ["x", "y"]


def test_evaluators_skip_when_inputs_absent() -> None:
    s = EvalSample(response="x")
    assert RetrievalEvaluator()(s) == {}
    assert BleuEvaluator()(s) == {}


def test_failure_is_a_value_not_a_crash() -> None:
    class Broken(Evaluator):
        name = "broken"
        outputs = ("broken",)

        def evaluate(self, sample: EvalSample) -> dict:
            raise ValueError("boom")

    out = Broken()(EvalSample())
    assert math.isnan(out["broken"])
    assert "boom" in out["broken_error"]


class FakeEmbedder:
    """Seam: deterministic vectors for known texts."""

    model_id = "fake"
    dim = 2

    def embed(self, texts: list[str]) -> np.ndarray:
        table = {"yes": [1.0, 0.0], "also yes": [1.0, 0.0], "no": [0.0, 1.0]}
        return np.array([table[t] for t in texts], dtype=np.float32)


def test_similarity_with_embedder_seam() -> None:
    ev = SimilarityEvaluator(FakeEmbedder())
    assert ev(EvalSample(response="yes", ground_truth="also yes"))["answer_similarity"] == 1.0
    assert ev(EvalSample(response="yes", ground_truth="no"))["answer_similarity"] == 0.0
    assert ev(EvalSample(response="", ground_truth="no"))["answer_similarity"] == 0.0


def test_latency_and_cost() -> None:
    ev = LatencyCostEvaluator(prompt_price_per_1k=1.0, completion_price_per_1k=2.0)
    out = ev(EvalSample(latency_s=0.5, prompt_tokens=1000, completion_tokens=500))
    assert out["total_tokens"] == 1500 and out["cost"] == pytest.approx(2.0)
    assert out["latency_s"] == 0.5


def test_mean_ci_counts_nan() -> None:
    ci = mean_ci([1.0, 2.0, 3.0, float("nan"), None])
    assert ci.mean == 2.0 and ci.n == 3 and ci.n_nan == 2
    assert ci.low < 2.0 < ci.high
    assert math.isnan(mean_ci([float("nan")]).mean)


def test_paired_test_separates_drop_from_noise() -> None:
    base = [0.8, 0.7, 0.9, 0.6, 0.8, 0.7, 0.9, 0.8, 0.7, 0.6]
    dropped = [b - 0.3 for b in base]
    noisy = [b + (0.02 if i % 2 else -0.02) for i, b in enumerate(base)]
    assert paired_worse_pvalue(dropped, base) < 0.01
    assert paired_worse_pvalue(noisy, base) > 0.3
    assert paired_worse_pvalue(base, base) == 1.0


def test_reference_columns_are_recognised_by_their_common_names() -> None:
    cfg = EvalConfig()
    ours = cfg.resolve_mapping(["id", "question", "answer", "doc_ids"])
    assert ours["ground_truth"] == "${data.answer}" and ours["reference_ids"] == "${data.doc_ids}"
    azure = cfg.resolve_mapping(["query", "ground_truth", "answer"])  # azure-ai-evaluation
    assert azure["ground_truth"] == "${data.ground_truth}" and azure["query"] == "${data.query}"
    ragas = cfg.resolve_mapping(
        ["user_input", "reference", "reference_contexts", "reference_context_ids"]
    )
    assert ragas["ground_truth"] == "${data.reference}"
    assert ragas["reference_ids"] == "${data.reference_context_ids}"
    assert ragas["reference_contexts"] == "${data.reference_contexts}"
    assert ragas["query"] == "${data.user_input}"
    assert "ground_truth" not in cfg.resolve_mapping(["question"])
    explicit = EvalConfig(mapping={"ground_truth": "${data.gold}"})
    assert explicit.resolve_mapping(["gold", "answer"])["ground_truth"] == "${data.gold}"


def test_skipped_reference_metrics_are_named() -> None:
    cfg = EvalConfig(metrics=["bleu", "rouge", "retrieval", "groundedness"])
    rows = [{"question": "q1"}, {"question": "q2"}]
    skipped = skipped_metrics(cfg, cfg.resolve_mapping(["question"]), rows)
    assert [s.metric for s in skipped] == ["bleu", "rouge", "retrieval"]
    assert "no ground_truth mapped" in skipped[0].reason and "ground_truth, reference, answer" in (
        skipped[0].reason
    )
    assert skipped[0].n_lines_without == 2 and "evaluation.mapping.reference_ids" in (
        skipped[2].reason
    )
    partial = [{"question": "q1", "ground_truth": "a", "doc_ids": ["d"]}, {"question": "q2"}]
    mapping = cfg.resolve_mapping(["question", "ground_truth", "doc_ids"])
    out = skipped_metrics(cfg, mapping, partial)
    assert [(s.metric, s.n_lines_without) for s in out] == [
        ("bleu", 1),
        ("rouge", 1),
        ("retrieval", 1),
    ]
    assert "1 of 2 lines have no 'ground_truth'" in out[0].reason
    full = [{"question": "q", "ground_truth": "a", "doc_ids": ["d"]}]
    assert skipped_metrics(cfg, mapping, full) == []
