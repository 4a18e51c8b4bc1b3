from __future__ import annotations

import math

import pytest

from evaluation.metrics import EvalSample, RougeEvaluator
from evaluation.ragas_adapter import OFFLINE_METRICS, ragas_scores, ragas_summary
from tests.evaluation.fake_openai import FakeOpenAI

SAMPLES = [
    EvalSample(
        query="Which TLS version?",
        response="Lumen uses TLS 1.3.",
        ground_truth="Lumen encrypts every connection with TLS 1.3.",
        context="Lumen encrypts every connection to the collector with TLS 1.3.",
        retrieved_ids=["guides/security.pdf", "faq-license"],
        reference_ids=["guides/security.pdf"],
    ),
    EvalSample(
        query="License?",
        response="bananas",
        ground_truth="Apache License 2.0",
        context="Lumen is released under the Apache License 2.0.",
        retrieved_ids=["guides/rotation.md"],
        reference_ids=["faq-license"],
    ),
]


def test_offline_ragas_metrics_on_our_records() -> None:
    rows = ragas_scores(SAMPLES, OFFLINE_METRICS)
    assert rows[0]["id_based_context_recall"] == 1.0
    assert rows[0]["id_based_context_precision"] == 0.5
    assert rows[1]["id_based_context_recall"] == 0.0
    assert rows[1]["rouge_score"] == 0.0 and rows[0]["rouge_score"] > 0.3
    ours = RougeEvaluator()(SAMPLES[0])["rougeL"]
    assert rows[0]["rouge_score"] == pytest.approx(ours, abs=0.15)  # same idea, other tokenizer
    summ = ragas_summary(rows, ["id_based_context_recall"])
    assert summ["id_based_context_recall"]["mean"] == 0.5


def test_llm_metric_through_the_gateway_counts_failures(fake_gateway: FakeOpenAI) -> None:
    rows = ragas_scores(SAMPLES[:1], ["faithfulness"], llm="gateway:genaiops-local")
    assert fake_gateway.requests, "ragas must call the gateway"
    assert all(r["model"] == "genaiops-local" for r in fake_gateway.requests)
    value = rows[0]["faithfulness"]
    # the fake answers in prose, not ragas' JSON: a NaN with the error kept, never a dropped line
    assert math.isnan(value) and "faithfulness_error" in rows[0]
    assert ragas_summary(rows, ["faithfulness"])["faithfulness"]["n_nan"] == 1


def test_llm_metric_without_llm_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="needs an LLM"):
        ragas_scores(SAMPLES, ["faithfulness"])
