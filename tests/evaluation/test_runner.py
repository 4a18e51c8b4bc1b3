from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluation.errors import ColumnMappingError, DataError
from evaluation.runtime.runner import RunRequest, load_run, run_flow, runs_dir
from tests.evaluation.fake_openai import FakeOpenAI

REPO = Path(__file__).resolve().parents[2]
QA = str(REPO / "datasets/sample/qa.jsonl")


def _data(tmp_path: Path, rows: list[dict]) -> str:
    p = tmp_path / "data.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(p)


def test_run_records_outputs_chunks_tokens_latency(
    sample_index: Path, fake_gateway: FakeOpenAI
) -> None:
    res = run_flow(RunRequest(flow=str(REPO / "flows/rag"), data=QA, variants="all", limit=3))
    assert set(res.lines) == {"answer_prompt.cited", "answer_prompt.terse"}
    line = res.lines["answer_prompt.cited"][0]
    assert line.error is None and line.line_id == "q01"
    assert line.outputs["answer"] and line.outputs["citations"]
    assert line.retrieved and line.retrieved[0]["doc_id"] == "guides/getting-started.md"
    assert line.prompt_tokens == 50 and line.completion_tokens > 0
    assert line.latency_s > 0 and set(line.node_latency_s) >= {"retrieve", "generate"}
    assert len(fake_gateway.requests) == 6
    assert fake_gateway.requests[0]["model"] == "genaiops-local"


def test_misspelt_column_fails_before_anything_runs(
    tmp_path: Path, sample_index: Path, fake_gateway: FakeOpenAI
) -> None:
    data = _data(tmp_path, [{"qestion": "How do I install Lumen?"}])
    with pytest.raises(ColumnMappingError) as e:
        run_flow(RunRequest(flow=str(REPO / "flows/rag"), data=data))
    assert "question" in str(e.value) and "qestion" in str(e.value)  # names the available ones
    with pytest.raises(ColumnMappingError, match="available: qestion"):
        run_flow(
            RunRequest(
                flow=str(REPO / "flows/rag"),
                data=data,
                column_mapping={"question": "${data.question}"},
            )
        )
    with pytest.raises(ColumnMappingError, match="unknown flow inputs"):
        run_flow(
            RunRequest(
                flow=str(REPO / "flows/rag"),
                data=data,
                column_mapping={"questoin": "${data.qestion}"},
            )
        )
    assert fake_gateway.requests == []
    assert not runs_dir().exists()


def test_bad_data_line_names_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.jsonl"
    p.write_text('{"question": "ok"}\n{not json\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2"):
        run_flow(RunRequest(flow=str(REPO / "flows/rag"), data=str(p)))


def test_node_error_is_recorded_on_the_line_not_raised(
    tmp_path: Path, sample_index: Path, fake_gateway: FakeOpenAI
) -> None:
    data = _data(
        tmp_path, [{"question": "ok?", "mode": "hybrid"}, {"question": "bad", "mode": "sideways"}]
    )
    res = run_flow(RunRequest(flow=str(REPO / "flows/rag"), data=data))
    good, bad = res.lines["answer_prompt.cited"]
    assert good.error is None
    assert bad.error is not None and bad.error["node"] == "retrieve"
    assert "sideways" in bad.error["message"]
    assert res.errors() == {"answer_prompt.cited": 1}


def test_column_missing_on_some_lines_is_rejected(tmp_path: Path) -> None:
    data = _data(tmp_path, [{"question": "a", "mode": "dense"}, {"question": "b"}])
    with pytest.raises(ColumnMappingError, match=r"lines \[2\] lack 'mode'"):
        run_flow(RunRequest(flow=str(REPO / "flows/rag"), data=data))


def test_resume_runs_only_missing_lines_and_repairs_torn_tail(
    sample_index: Path, fake_gateway: FakeOpenAI
) -> None:
    req = RunRequest(
        flow=str(REPO / "flows/rag"),
        data=QA,
        variants="answer_prompt.terse",
        limit=4,
        concurrency=1,
    )
    first = run_flow(req)
    lines_file = first.path / "answer_prompt.terse" / "lines.jsonl"
    kept = lines_file.read_text().splitlines(keepends=True)[:2]
    lines_file.write_text("".join(kept) + '{"index": 2, "line_id": "q0')  # killed mid-write
    before = len(fake_gateway.requests)
    resumed = run_flow(req, resume=first.run_id)
    assert len(fake_gateway.requests) - before == 2  # lines 2 and 3 only
    assert [r.index for r in resumed.lines["answer_prompt.terse"]] == [0, 1, 2, 3]
    assert all(json.loads(x) for x in lines_file.read_text().splitlines())
    reopened = load_run(first.run_id)
    assert not reopened.interrupted and len(reopened.lines["answer_prompt.terse"]) == 4


def test_missing_gateway_url_fails_before_anything_runs(
    sample_index: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from genaiops.errors import ConfigError
    from genaiops.settings import reset_settings

    monkeypatch.delenv("GENAIOPS_GATEWAY_URL", raising=False)
    reset_settings()
    with pytest.raises(ConfigError, match="GENAIOPS_GATEWAY_URL"):
        run_flow(RunRequest(flow=str(REPO / "flows/rag"), data=QA, limit=2))
    assert not runs_dir().exists()


def test_rate_limited_gateway_is_retried_after_retry_after(
    sample_index: Path, fake_gateway: FakeOpenAI
) -> None:
    """A 429 with Retry-After is waited out and retried: the line succeeds (issue 12.1)."""
    fake_gateway.upstream.fail = [429]
    fake_gateway.upstream.retry_after = "1"
    res = run_flow(RunRequest(flow=str(REPO / "flows/rag"), data=QA, limit=1))
    line = res.lines["answer_prompt.cited"][0]
    assert line.error is None, line.error
    assert line.outputs["answer"]
    arrivals = fake_gateway.upstream.arrivals
    assert len(arrivals) == 2 and arrivals[1] - arrivals[0] >= 0.9  # it waited as told


def test_one_pooled_client_serves_every_llm_call(
    sample_index: Path, fake_gateway: FakeOpenAI
) -> None:
    """Every line's LLM call reuses one kept-alive connection (no client built per call)."""
    res = run_flow(RunRequest(flow=str(REPO / "flows/rag"), data=QA, limit=4, concurrency=1))
    assert [ln.error for ln in res.lines["answer_prompt.cited"]] == [None] * 4
    assert len(fake_gateway.requests) == 4
    assert len(fake_gateway.upstream.connections) == 1


def test_run_json_is_versioned_and_old_files_load(
    sample_index: Path, fake_gateway: FakeOpenAI
) -> None:
    res = run_flow(RunRequest(flow=str(REPO / "flows/rag"), data=QA, limit=1))
    raw = json.loads((res.path / "run.json").read_text())
    assert raw["schema_version"] == 1 and raw["runner"] == "genaiops"
    from evaluation.runtime.run_meta import read_run_meta

    meta = read_run_meta(res.path)
    assert meta.status == "completed" and meta.request.limit == 1
    assert [v.label for v in meta.variants] == ["answer_prompt.cited"]
    # a run.json written before schema_version existed (the literal dict of older releases)
    old = {k: v for k, v in raw.items() if k not in ("schema_version", "runner")}
    (res.path / "run.json").write_text(json.dumps(old))
    again = load_run(res.run_id)
    assert not again.interrupted and len(again.lines["answer_prompt.cited"]) == 1


def test_unreadable_run_json_fails_with_file_and_reason(
    sample_index: Path, fake_gateway: FakeOpenAI
) -> None:
    from evaluation.errors import EvaluationError

    res = run_flow(RunRequest(flow=str(REPO / "flows/rag"), data=QA, limit=1))
    raw = json.loads((res.path / "run.json").read_text())
    (res.path / "run.json").write_text(json.dumps({**raw, "schema_version": 99}))
    with pytest.raises(EvaluationError, match=r"run.json: schema_version 99 is newer.*upgrade"):
        load_run(res.run_id)
    (res.path / "run.json").write_text(json.dumps({**raw, "status": "exploded"}))
    with pytest.raises(EvaluationError, match=r"run.json: not a genaiops run.json: status"):
        load_run(res.run_id)


def test_flows_reach_a_gateway_given_by_settings_without_touching_the_environment(
    sample_index: Path, fake_gateway: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``using_local_gateway`` relies on: settings point flows at a gateway while
    ``os.environ`` is left as it was."""
    import os

    from pydantic import SecretStr

    from genaiops.settings import override_settings, reset_settings

    monkeypatch.delenv("GENAIOPS_GATEWAY_URL")
    monkeypatch.delenv("GENAIOPS_API_KEY")
    reset_settings()
    before = dict(os.environ)
    with override_settings(gateway_url=fake_gateway.url, api_key=SecretStr("sk-test")):
        res = run_flow(RunRequest(flow=str(REPO / "flows/rag"), data=QA, limit=1))
    assert res.lines["answer_prompt.cited"][0].error is None
    assert dict(os.environ) == before
