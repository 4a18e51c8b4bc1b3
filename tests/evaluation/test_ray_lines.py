"""``--engine ray``: the lines run as Ray tasks, the results, resume and scores are the local
runner's (a loopback fake OpenAI stands in for the gateway, as in the other runner tests)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from evaluation.config import EvalConfig
from evaluation.pipeline import evaluate
from evaluation.runtime.executor import LineResult
from evaluation.runtime.runner import RunRequest, load_run, run_flow
from tests.evaluation.fake_openai import FakeOpenAI

REPO = Path(__file__).resolve().parents[2]
QA = str(REPO / "datasets/sample/qa.jsonl")

pytestmark = pytest.mark.usefixtures("local_ray")

TIMING = {"latency_s", "node_latency_s"}


def _facts(r: LineResult) -> dict[str, Any]:
    """A line without its timings (which differ from run to run on any engine)."""
    return {k: v for k, v in r.to_dict().items() if k not in TIMING}


def test_ray_lines_give_the_local_results_and_scores(
    sample_index: Path, fake_gateway: FakeOpenAI
) -> None:
    def req(engine: str) -> RunRequest:
        return RunRequest(
            flow=str(REPO / "flows/rag"), data=QA, variants="all", limit=4, concurrency=3,
            engine=engine,  # type: ignore[arg-type]
        )  # fmt: skip

    local = evaluate(req("local"), EvalConfig(), track=False)
    sent = len(fake_gateway.requests)
    ray = evaluate(req("ray"), EvalConfig(), track=False)
    assert len(fake_gateway.requests) - sent == sent == 8  # 2 variants x 4 lines, once each
    assert (
        set(ray.run.lines)
        == set(local.run.lines)
        == {
            "answer_prompt.cited",
            "answer_prompt.terse",
        }
    )
    for label, lines in local.run.lines.items():
        assert [_facts(r) for r in ray.run.lines[label]] == [_facts(r) for r in lines]
        assert all(r.error is None and r.retrieved for r in ray.run.lines[label])
    for label, agg in local.summary.variants.items():
        got = ray.summary.variants[label]
        assert got.n_errors == agg.n_errors == 0
        assert set(got.metrics) == set(agg.metrics)
        assert {m: s.mean for m, s in got.metrics.items() if "latency" not in m} == pytest.approx(
            {m: s.mean for m, s in agg.metrics.items() if "latency" not in m}, nan_ok=True
        )
    assert set(ray.reports) == set(local.reports)
    meta = json.loads((ray.run.path / "run.json").read_text())
    assert meta["request"]["engine"] == "ray" and meta["status"] == "completed"


def test_ray_resume_runs_only_the_missing_lines(
    sample_index: Path, fake_gateway: FakeOpenAI
) -> None:
    req = RunRequest(
        flow=str(REPO / "flows/rag"), data=QA, variants="answer_prompt.terse", limit=4,
        concurrency=1,
    )  # fmt: skip
    first = run_flow(req)
    lines_file = first.path / "answer_prompt.terse" / "lines.jsonl"
    kept = lines_file.read_text().splitlines(keepends=True)[:2]
    lines_file.write_text("".join(kept) + '{"index": 2, "line_id": "q0')  # killed mid-write
    before = len(fake_gateway.requests)
    req.engine = "ray"
    resumed = run_flow(req, resume=first.run_id)
    assert len(fake_gateway.requests) - before == 2  # lines 2 and 3 only
    assert [r.index for r in resumed.lines["answer_prompt.terse"]] == [0, 1, 2, 3]
    reopened = load_run(first.run_id)
    assert not reopened.interrupted
    assert [_facts(r) for r in reopened.lines["answer_prompt.terse"][2:]] == [
        _facts(r) for r in resumed.lines["answer_prompt.terse"][2:]
    ]
    assert all(r.error is None for r in reopened.lines["answer_prompt.terse"])


def test_eval_run_refuses_an_unknown_engine_and_ray_with_pf() -> None:
    from typer.testing import CliRunner

    from genaiops.cli import app
    from genaiops.errors import ConfigError

    cli = CliRunner()
    bad = cli.invoke(app, ["eval", "run", "--engine", "spark", "--no-track"])
    assert isinstance(bad.exception, ConfigError)  # main() prints one line and exits 2
    assert "--engine must be local or ray" in str(bad.exception)
    pf = cli.invoke(app, ["eval", "run", "--engine", "ray", "--runner", "pf", "--no-track"])
    assert isinstance(pf.exception, ConfigError) and "pf runs its own lines" in str(pf.exception)
