from __future__ import annotations

import json
import math
from pathlib import Path

import httpx
import pytest

from evaluation.errors import JudgeError
from evaluation.judges import (
    GatewayJudge,
    JudgedEvaluator,
    Judgement,
    OfflineJudge,
    parse_judgement,
)
from evaluation.metrics import EvalSample
from evaluation.runtime.llm import GatewayClient

CTX = "Lumen exposes Prometheus metrics on port 9464 at the /metrics path."


def test_offline_groundedness_grounded_vs_ungrounded() -> None:
    j = OfflineJudge()
    good = j.judge("groundedness", EvalSample(response="Metrics are on port 9464.", context=CTX))
    bad = j.judge("groundedness", EvalSample(response="Bananas grow in Ecuador.", context=CTX))
    added = j.judge(
        "groundedness",
        EvalSample(
            response="Metrics are on port 9464. It also needs a Northwind license key.", context=CTX
        ),
    )
    assert good.score >= 4 and bad.score <= 2 and added.score <= 2
    assert "offline heuristic" in good.reason


def test_empty_response_is_a_counted_failure_not_a_score() -> None:
    ev = JudgedEvaluator("groundedness", OfflineJudge(), repeats=3)
    out = ev(EvalSample(response="", context=CTX))
    assert math.isnan(out["groundedness"])
    assert out["groundedness_result"] == "error"
    assert out["groundedness_failed"] == 3


class ScriptedJudge:
    """Seam: returns queued scores; None means the judge failed."""

    name = "scripted"

    def __init__(self, scores: list[float | None]):
        self.scores = list(scores)

    def judge(self, metric: str, sample: EvalSample) -> Judgement:
        s = self.scores.pop(0)
        if s is None:
            raise JudgeError("unparseable")
        return Judgement(s, "scripted")


def test_repeats_give_mean_std_and_failures() -> None:
    ev = JudgedEvaluator("relevance", ScriptedJudge([2, 4, None, 3]), threshold=3, repeats=4)
    out = ev(EvalSample(query="q", response="a"))
    assert out["relevance"] == 3.0
    assert out["relevance_failed"] == 1
    assert out["relevance_std"] == pytest.approx(1.0)
    assert out["relevance_result"] == "pass" and out["relevance_threshold"] == 3


def test_azure_naming_and_threshold() -> None:
    out = JudgedEvaluator("groundedness", ScriptedJudge([2]))(EvalSample(response="a"))
    assert set(out) >= {
        "groundedness",
        "groundedness_result",
        "groundedness_reason",
        "groundedness_threshold",
    }
    assert out["groundedness_result"] == "fail"


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ("Score: 4\nReason: fine", 4.0),
        ("**Score:** 5 - great", 5.0),
        ("3", 3.0),
        ("score=2.0 reason: meh", 2.0),
    ],
)
def test_parse_judgement(text: str, score: float) -> None:
    assert parse_judgement(text).score == score


def test_parse_judgement_without_score_raises() -> None:
    with pytest.raises(JudgeError):
        parse_judgement("I think it is good")


def _transport(reply: str, seen: list[dict]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(
            200,
            json={
                "model": "genaiops-local",
                "choices": [
                    {"message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5},
            },
        )

    return httpx.MockTransport(handle)


def test_gateway_judge_over_http_seam() -> None:
    seen: list[dict] = []
    client = GatewayClient(
        "http://gw/v1",
        "k",
        client=httpx.Client(transport=_transport("Score: 5\nReason: all supported", seen)),
    )
    j = GatewayJudge("judge-model", client=client)
    out = j.judge("groundedness", EvalSample(response="port 9464", context=CTX))
    assert out == Judgement(5.0, "all supported")
    assert seen[0]["model"] == "judge-model"
    assert seen[0]["messages"][0]["role"] == "system"
    assert CTX in seen[0]["messages"][1]["content"]


def test_gateway_judge_garbage_reply_counts_as_failed() -> None:
    client = GatewayClient("http://gw/v1", client=httpx.Client(transport=_transport("hmm", [])))
    ev = JudgedEvaluator("relevance", GatewayJudge(client=client), repeats=2)
    out = ev(EvalSample(query="q", response="a"))
    assert out["relevance_failed"] == 2 and math.isnan(out["relevance"])


def test_offline_judge_agreement_does_not_regress() -> None:
    """docs/evaluation.md reports these figures; a judge change that lowers them must show."""
    from evaluation.agreement import measure_agreement

    r = measure_agreement(
        Path(__file__).resolve().parents[2] / "datasets/sample/judge_labels.jsonl", "offline"
    )
    g, rel = r["metrics"]["groundedness"], r["metrics"]["relevance"]
    assert g["failed"] == 0 and g["accuracy"] >= 0.95 and g["kappa"] >= 0.9
    assert g["accuracy_by_kind"]["added_claim"] >= 0.9
    assert rel["accuracy"] >= 0.75


def test_offline_judge_on_real_model_answers_never_fails_a_grounded_one() -> None:
    from evaluation.agreement import measure_agreement

    labels = Path(__file__).resolve().parents[2] / "datasets/sample/judge_labels_smollm2.jsonl"
    r = measure_agreement(labels, "offline")
    g = r["metrics"]["groundedness"]
    assert "relevance" not in r["metrics"]  # no relevance items in this set
    assert g["n"] == 17 and g["accuracy"] >= 0.7
    assert g["mean_score_positive"] >= 4.5  # the grounded answers all pass
