from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from genaiops.cli import app
from tests.evaluation.fake_openai import FakeOpenAI

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_eval_run_json_and_mlflow_lineage(
    sample_index: Path, fake_gateway: FakeOpenAI, monkeypatch: object
) -> None:
    res = runner.invoke(
        app,
        [
            "eval",
            "run",
            "--flow",
            str(REPO / "flows/rag"),
            "--data",
            str(REPO / "datasets/sample/qa.jsonl"),
            "--variants",
            "all",
            "--limit",
            "3",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert set(out["variants"]) == {"answer_prompt.cited", "answer_prompt.terse"}
    params = out["variants"]["answer_prompt.terse"]["params"]
    assert params["index_version_ids"][0].startswith("v-")
    assert params["model_alias"] == "genaiops-local" and len(params["prompt_hash"]) == 16
    assert Path(out["reports"]["markdown"]).exists()

    import mlflow

    from evaluation.tracking import tracking_uri

    assert tracking_uri().startswith(f"sqlite:///{sample_index.resolve()}")
    mlflow.set_tracking_uri(tracking_uri())
    run = mlflow.get_run(out["mlflow_runs"]["answer_prompt.terse"])
    assert run.data.params["prompt_hash"] == params["prompt_hash"]
    assert run.data.params["index_version_ids"] == params["index_version_ids"][0]
    assert "rougeL" in run.data.metrics and run.data.metrics["n_errors"] == 0
    assert not (Path.cwd() / "mlruns").exists()


def test_eval_gate_exit_codes(tmp_path: Path, sample_index: Path, fake_gateway: FakeOpenAI) -> None:
    cfg = yaml.safe_load((REPO / "evaluation/gate.yaml").read_text())
    cfg["run"].update(
        flow=str(REPO / "flows/rag"),
        data=str(REPO / "datasets/sample/qa.jsonl"),
        limit=3,
        variants="answer_prompt.terse",
    )
    cfg["evaluation"]["metrics"] = ["retrieval", "groundedness"]
    cfg["thresholds"] = {"groundedness": {"min": 3}}
    ok = tmp_path / "ok.yaml"
    ok.write_text(yaml.safe_dump(cfg))
    res = runner.invoke(
        app,
        [
            "eval",
            "gate",
            "--config",
            str(ok),
            "--no-track",
            "--report-dir",
            str(tmp_path / "reports"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "PASSED" in res.output and (tmp_path / "reports" / "junit.xml").exists()
    cfg["thresholds"] = {"groundedness": {"min": 5.1}}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    res = runner.invoke(app, ["eval", "gate", "--config", str(bad), "--no-track", "--json"])
    assert res.exit_code == 1
    assert json.loads(res.stdout)["gate"]["passed"] is False


def test_eval_run_misspelt_mapping_is_a_clear_error(sample_index: Path) -> None:
    res = runner.invoke(
        app,
        [
            "eval",
            "run",
            "--flow",
            str(REPO / "flows/rag"),
            "--data",
            str(REPO / "datasets/sample/qa.jsonl"),
            "-m",
            "question=${data.qustion}",
        ],
    )
    assert res.exit_code != 0
    assert "qustion" in str(res.exception) and "available" in str(res.exception)


def test_flow_validate_and_test(sample_index: Path, fake_gateway: FakeOpenAI) -> None:
    res = runner.invoke(app, ["flow", "validate", str(REPO / "flows/chat"), "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["valid"]
    res = runner.invoke(
        app,
        [
            "flow",
            "test",
            str(REPO / "flows/chat"),
            "--json",
            "-i",
            "question=Which TLS version does Lumen use?",
        ],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["outputs"]["standalone_question"] == "Which TLS version does Lumen use?"
    assert out["outputs"]["citations"][0]["doc_id"] == "guides/security.pdf"


def test_offline_judge_agreement_command() -> None:
    labels = str(REPO / "datasets/sample/judge_labels.jsonl")
    res = runner.invoke(app, ["eval", "agreement", "--labels", labels, "--json"])
    assert res.exit_code == 0, res.output
    g = json.loads(res.stdout)["metrics"]["groundedness"]
    assert g["n"] == 51 and g["failed"] == 0 and 0.0 <= g["accuracy"] <= 1.0


def test_gateway_judge_with_repeats_reports_mean_ci_and_failures(
    sample_index: Path, fake_gateway: FakeOpenAI
) -> None:
    res = runner.invoke(
        app,
        [
            "eval",
            "run",
            "--flow",
            str(REPO / "flows/rag"),
            "--data",
            str(REPO / "datasets/sample/qa.jsonl"),
            "--variants",
            "answer_prompt.terse",
            "--limit",
            "3",
            "--judge",
            "gateway:judge-model",
            "--repeats",
            "3",
            "--no-track",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    v = out["variants"]["answer_prompt.terse"]
    assert v["metrics"]["groundedness"] == 4.0 and v["judge_failures"] == {
        "groundedness": 0,
        "relevance": 0,
    }
    judge_calls = [r for r in fake_gateway.requests if r["model"] == "judge-model"]
    assert len(judge_calls) == 3 * 3 * 2  # lines x repeats x (groundedness, relevance)
    assert all(r["temperature"] == 0.7 for r in judge_calls)  # repeats sample
    summary = json.loads(Path(out["reports"]["summary"]).read_text())
    g = summary["variants"]["answer_prompt.terse"]["metrics"]["groundedness"]
    assert g["n"] == 3 and g["n_nan"] == 0 and g["low"] == g["high"] == 4.0
