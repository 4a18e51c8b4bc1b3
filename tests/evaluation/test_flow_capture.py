"""flows/rag through a real gateway with capture on: the captured records carry the grounding
(retrieved chunks as ``documents`` with their scores, the index, its version and alias)."""

from __future__ import annotations

from pathlib import Path

import pytest

from evaluation.runtime.runner import RunRequest, run_flow
from gateway.config import GatewayConfig
from gateway.testing import MockUpstream
from genaiops.settings import reset_settings
from tests.evaluation.fake_openai import grounded_answer
from tests.gateway.support import ADMIN_KEY, UPSTREAM, serve

REPO = Path(__file__).resolve().parents[2]
QA = str(REPO / "datasets/sample/qa.jsonl")


def test_rag_flow_sends_its_context_and_the_capture_keeps_it(
    sample_index: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GENAIOPS_ADMIN_KEY", ADMIN_KEY)
    upstream = MockUpstream(answer=grounded_answer, prompt_tokens=50)
    cfg = GatewayConfig.model_validate(
        {
            "deployments": [
                {
                    "name": "up",
                    "backend": "openai_compatible",
                    "base_url": UPSTREAM,
                    "max_retries": 0,
                },
            ],  # fmt: skip
            "models": [{"name": "genaiops-local", "deployments": [{"deployment": "up"}]}],
            "capture": {"enabled": True},
        }
    )
    with serve(cfg, upstream.client()) as gw:
        monkeypatch.setenv("GENAIOPS_GATEWAY_URL", gw.url + "/v1")
        monkeypatch.setenv("GENAIOPS_API_KEY", gw.create_key())
        reset_settings()
        res = run_flow(RunRequest(flow=str(REPO / "flows/rag"), data=QA, limit=2))
        gw.gw.capture.flush_sync()
        recs = gw.gw.capture.store.query()
    reset_settings()
    (lines,) = res.lines.values()
    assert [ln.error for ln in lines] == [None, None]
    by_question = {r.question(): r for r in recs}  # lines run concurrently: match by question
    assert sorted(by_question) == sorted(ln.inputs["question"] for ln in lines)
    for line in lines:
        rec, chunks = by_question[line.inputs["question"]], line.retrieved
        assert [d.text for d in rec.documents] == [c["text"] for c in chunks]
        assert [d.score for d in rec.documents] == pytest.approx([c["score"] for c in chunks])
        assert [d.id for d in rec.documents] == [c["chunk_id"] for c in chunks]
        assert rec.metadata.index == "sample" and rec.metadata.index_alias == "current"
        assert rec.metadata.index_version == chunks[0]["version_id"]
        assert rec.completion == line.outputs["answer"]
        assert rec.context()[: len(chunks)] == [c["text"] for c in chunks]
    # the extensions stop at the gateway
    assert all("documents" not in r and "retrieval" not in r for r in upstream.requests)
