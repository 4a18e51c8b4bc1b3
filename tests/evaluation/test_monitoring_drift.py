"""Question drift on real data: SciFact claims against Python FAQ questions are flagged, a
random same-distribution split of the FAQ questions is not (fixed seeds), and the out-of-domain
rate and grounding drift do what they say."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from evaluation.metrics import CachingEmbedder
from evaluation.monitoring.config import Thresholds
from evaluation.monitoring.drift import (
    DriftReport,
    drift_breaches,
    grounding_drift,
    out_of_domain,
    question_drift,
    reference_questions,
)
from evaluation.monitoring.errors import ReferenceError_
from evaluation.monitoring.store import OnlineScore
from tests.conftest import REPO, SHARED

FAQ = SHARED / "python-docs" / "faq_qa.jsonl"
SCIFACT = SHARED / "scifact" / "queries.jsonl"
pytestmark = pytest.mark.skipif(
    not (FAQ.exists() and SCIFACT.exists()), reason="shared datasets not present"
)


@pytest.fixture(scope="module")
def embedder() -> CachingEmbedder:
    return CachingEmbedder()


def _scifact(n: int, seed: int = 0) -> list[str]:
    rows = [json.loads(x)["text"] for x in SCIFACT.read_text().splitlines() if x.strip()]
    return random.Random(seed).sample(rows, n)


def test_scifact_questions_drift_from_the_faq_reference(embedder: CachingEmbedder) -> None:
    faq = reference_questions(FAQ)
    assert len(faq) == 115
    qd = question_drift(_scifact(60), faq, embedder, permutations=200, seed=0)
    assert qd.p_value < 0.01 and qd.statistic > 0
    breaches = drift_breaches(DriftReport(question=qd), Thresholds(drift_p_min=0.01))
    assert [b.check for b in breaches] == ["question_drift_p"]


def test_a_same_distribution_split_does_not_drift(embedder: CachingEmbedder) -> None:
    faq = reference_questions(FAQ)
    random.Random(7).shuffle(faq)
    qd = question_drift(faq[:57], faq[57:], embedder, permutations=200, seed=0)
    assert qd.p_value > 0.05
    assert drift_breaches(DriftReport(question=qd), Thresholds(drift_p_min=0.01)) == []
    again = question_drift(faq[:57], faq[57:], embedder, permutations=200, seed=0)
    assert again.p_value == qd.p_value  # the seed fixes the permutations


def test_out_of_domain_rate_on_the_sample_index(sample_index: Path) -> None:
    from indexing import Retriever

    ref = reference_questions(REPO / "datasets/sample/qa.jsonl")
    retriever = Retriever("sample")
    inside = out_of_domain(ref[:8], ref, "sample", retriever=retriever)
    shifted = out_of_domain(_scifact(20), ref, "sample", retriever=retriever)
    assert inside.rate <= 0.125 and shifted.rate >= 0.8
    assert shifted.version.startswith("v-") and shifted.n_reference == len(ref)


def test_grounding_drop_after_the_alias_moved_is_flagged() -> None:
    def rows(version: str, score: float, t0: float) -> list[OnlineScore]:
        return [
            OnlineScore(
                request_id=f"{version}-{i}",
                ts=t0 + i,
                alias="chat",
                index="docs",
                index_version=version,
                retrieval_score=score + (i % 5) * 0.01,
            )
            for i in range(20)
        ]

    ok = grounding_drift(rows("v-aa", 0.62, 0) + rows("v-bb", 0.60, 100))
    assert [v.version for v in ok[0].versions] == ["v-aa", "v-bb"]
    assert drift_breaches(DriftReport(grounding=ok), Thresholds()) == []
    bad = grounding_drift(rows("v-aa", 0.62, 0) + rows("v-cc", 0.40, 100))
    (b,) = drift_breaches(DriftReport(grounding=bad), Thresholds(grounding_drop_max=0.1))
    assert b.check == "grounding_drop" and "v-cc" in b.scope and b.value == pytest.approx(0.22)


def test_bad_references_are_one_line_errors(tmp_path: Path, embedder: CachingEmbedder) -> None:
    with pytest.raises(ReferenceError_, match="not found"):
        reference_questions(tmp_path / "missing.jsonl")
    (tmp_path / "x.jsonl").write_text('{"prompt": "q"}\n')
    with pytest.raises(ReferenceError_, match="no 'question' column"):
        reference_questions(tmp_path / "x.jsonl")
    with pytest.raises(ReferenceError_, match="at least 5"):
        question_drift(["a", "b"], ["c"] * 10, embedder)
