"""One RAG request traced end to end: flows/rag (genaiops runner) → a real gateway (uvicorn on
loopback) → the mock upstream, every span into the SDK's in-memory exporter."""

from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from evaluation.runtime.executor import FlowExecutor
from evaluation.runtime.flow import load_flow
from genaiops import tracing
from genaiops.settings import reset_settings
from tests.evaluation.fake_openai import grounded_answer
from tests.gateway.support import ADMIN_KEY, FakeUpstream, serve, upstream_config

REPO = Path(__file__).resolve().parents[2]


def _one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, (name, [s.name for s in spans])
    return found[0]


def _parent(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def test_rag_request_is_one_trace_joined_to_the_ledger_by_request_id(
    spans: InMemorySpanExporter, sample_index: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GENAIOPS_ADMIN_KEY", ADMIN_KEY)
    upstream = FakeUpstream(answer=grounded_answer)
    local = {"name": "genaiops-local", "deployments": [{"deployment": "up"}]}  # the flow's model
    with serve(upstream_config(models=[local]), upstream.client()) as gw:
        monkeypatch.setenv("GENAIOPS_GATEWAY_URL", f"{gw.url}/v1")
        monkeypatch.setenv("GENAIOPS_API_KEY", gw.create_key())
        reset_settings()
        line = FlowExecutor(load_flow(REPO / "flows/rag")).run_line(
            {"question": "Which TLS version does Lumen use?"}
        )
        ledger = gw.gw.ledger.rows()
    assert line.error is None, line.error
    done = list(spans.get_finished_spans())
    # the admin call that made the key is a trace of its own; the rest is the line's one trace
    line_span = _one(done, "evaluation.line")
    trace_id = line_span.context.trace_id
    traced = [s for s in done if s.context.trace_id == trace_id]
    assert line_span.parent is None
    assert line.trace_id == format(trace_id, "032x")

    nodes = {s.attributes["genaiops.node"]: s for s in traced if s.name == "flow.node"}
    assert set(nodes) == {"retrieve", "answer_prompt", "generate", "format_answer"}
    assert all(_parent(n) == line_span.context.span_id for n in nodes.values())
    retrieval = _one(traced, "indexing.retrieve")
    assert _parent(retrieval) == nodes["retrieve"].context.span_id
    assert retrieval.attributes["genaiops.index"] == "sample"
    assert retrieval.attributes["genaiops.retrieval.hits"] == len(line.retrieved) > 0
    llm = _one(traced, "llm.chat")
    assert llm.kind == SpanKind.CLIENT
    assert _parent(llm) == nodes["generate"].context.span_id

    # the gateway's server span continues the flow's trace (traceparent over real HTTP)
    server = _one([s for s in traced if s.kind == SpanKind.SERVER], "POST /v1/chat/completions")
    assert _parent(server) == llm.context.span_id
    request_id = server.attributes[tracing.REQUEST_ID]
    assert llm.attributes[tracing.REQUEST_ID] == request_id
    assert line.request_ids == [request_id]
    (row,) = [r for r in ledger if r["request_id"] == request_id]
    assert row["outcome"] == "ok" and row["alias"] == "genaiops-local"

    for name in ("gateway.safety.input", "gateway.quota", "gateway.upstream"):
        assert _parent(_one(traced, name)) == server.context.span_id, name
    up = _one(traced, "gateway.upstream")
    assert up.kind == SpanKind.CLIENT
    assert up.attributes["http.response.status_code"] == 200
    # ... and the upstream got the upstream span's own traceparent
    (sent,) = upstream.headers
    assert sent["traceparent"] == f"00-{trace_id:032x}-{up.context.span_id:016x}-01"
