from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from evaluation.metrics import EvalSample, RougeEvaluator
from evaluation.ragas_adapter import OFFLINE_METRICS, ragas_scores, ragas_summary
from tests.evaluation import fake_openai
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
    assert summ["id_based_context_recall"].mean == 0.5


def test_llm_metric_through_the_gateway_counts_failures(fake_gateway: FakeOpenAI) -> None:
    rows = ragas_scores(SAMPLES[:1], ["faithfulness"], llm="gateway:genaiops-local")
    assert fake_gateway.requests, "ragas must call the gateway"
    assert all(r["model"] == "genaiops-local" for r in fake_gateway.requests)
    value = rows[0]["faithfulness"]
    # the fake answers in prose, not ragas' JSON: a NaN with the error kept, never a dropped line
    assert math.isnan(value) and "faithfulness_error" in rows[0]
    assert ragas_summary(rows, ["faithfulness"])["faithfulness"].n_nan == 1


def test_llm_metric_without_llm_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="needs an LLM"):
        ragas_scores(SAMPLES, ["faithfulness"])


def _ragas_upstream(messages: list[dict[str, str]]) -> str:
    """What a capable model replies to ragas' two faithfulness prompts (its JSON schemas)."""
    text = "\n".join(m.get("content", "") for m in messages)
    if "Break down each sentence into one or more fully understandable statements" in text:
        return json.dumps({"statements": ["Lumen uses TLS 1.3.", "Lumen needs a paid license."]})
    if "judge the faithfulness of a series of statements" in text:
        verdicts = [
            {"statement": "Lumen uses TLS 1.3.", "reason": "stated in the context", "verdict": 1},
            {"statement": "Lumen needs a paid license.", "reason": "not in context", "verdict": 0},
        ]
        return json.dumps({"statements": verdicts})
    return "unexpected prompt"


def test_llm_metric_through_the_gateway_success_path(
    fake_gateway: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same HTTP seam answering in ragas' JSON: the metric is a number, not a NaN."""
    if hasattr(fake_gateway, "upstream"):  # the suite's consolidated fake (gateway.testing)
        monkeypatch.setattr(fake_gateway.upstream, "answer", _ragas_upstream)
    else:
        monkeypatch.setattr(fake_openai, "_answer", _ragas_upstream)
    rows = ragas_scores(SAMPLES[:1], ["faithfulness"], llm="gateway:genaiops-local")
    assert rows == [{"faithfulness": 0.5}]  # one of two statements supported
    assert len(fake_gateway.requests) == 2  # statements, then verdicts
    assert all(r["model"] == "genaiops-local" for r in fake_gateway.requests)
    summ = ragas_summary(rows, ["faithfulness"])["faithfulness"]
    assert summ.mean == 0.5 and summ.n_nan == 0


def test_ragas_imports_without_a_planted_module() -> None:
    """ragas 0.4.3 imports langchain_community.chat_models.vertexai: the pinned
    langchain-community ships it, so the real module is what gets imported."""
    import importlib.metadata
    import sys

    import evaluation.ragas_adapter as adapter

    adapter._import_ragas()
    mod = sys.modules["langchain_community.chat_models.vertexai"]
    assert mod.__file__ and mod.__file__.endswith("langchain_community/chat_models/vertexai.py")
    assert mod.ChatVertexAI.__module__ == "langchain_community.chat_models.vertexai"
    assert importlib.metadata.version("langchain-community") == "0.4.1"
    source = Path(adapter.__file__).read_text()
    assert "sys.modules" not in source and "ModuleType" not in source
