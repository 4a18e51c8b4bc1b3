from __future__ import annotations

import json
from pathlib import Path

import pytest
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
    out = json.loads(res.stdout)
    g, rel = out["metrics"]["groundedness"], out["metrics"]["relevance"]
    # fixed labels, deterministic judge: the figures docs/evaluation.md reports
    assert g["n"] == 51 and g["failed"] == 0 and g["accuracy"] == pytest.approx(49 / 51)
    assert g["kappa"] == pytest.approx(0.9143, abs=1e-4)
    assert g["accuracy_by_kind"] == pytest.approx(
        {"positive": 1.0, "swapped": 16 / 17, "added_claim": 16 / 17}
    )
    assert rel["n"] == 34 and rel["accuracy"] == pytest.approx(27 / 34)


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


def _qa_lines(tmp_path: Path, name: str, rename: dict[str, str], drop: tuple[str, ...]) -> Path:
    rows = [json.loads(x) for x in (REPO / "datasets/sample/qa.jsonl").read_text().splitlines()]
    out = tmp_path / name
    with out.open("w") as f:
        for r in rows[:2]:
            r = {rename.get(k, k): v for k, v in r.items() if k not in drop}
            f.write(json.dumps(r) + "\n")
    return out


def test_reference_columns_by_other_names_and_skipped_metrics_said(
    tmp_path: Path, sample_index: Path, fake_gateway: FakeOpenAI
) -> None:
    base = ["eval", "run", "--flow", str(REPO / "flows/rag"), "--variants", "answer_prompt.terse"]
    # azure-ai-evaluation's ground_truth and ragas' reference_context_ids: scored, nothing skipped
    azure = _qa_lines(
        tmp_path, "azure.jsonl", {"answer": "ground_truth", "doc_ids": "reference_context_ids"}, ()
    )
    res = runner.invoke(app, [*base, "--data", str(azure), "--no-track", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    metrics = out["variants"]["answer_prompt.terse"]["metrics"]
    assert {"bleu", "rougeL", "answer_similarity", "recall_at_4"} <= set(metrics)
    assert out["skipped"] == []
    summary = json.loads(Path(out["reports"]["summary"]).read_text())
    assert summary["evaluation"]["mapping"]["ground_truth"] == "${data.ground_truth}"
    # the same recognised columns reach ragas (reference answer and reference ids)
    metrics_arg = "rouge_score,id_based_context_recall"
    res = runner.invoke(app, ["eval", "ragas", "--run", out["run_id"], "--metrics", metrics_arg])
    assert res.exit_code == 0, res.output
    ragas = json.loads((sample_index / "eval/runs" / out["run_id"] / "ragas.json").read_text())
    terse = ragas["answer_prompt.terse"]
    assert terse["id_based_context_recall"]["n"] == 2 and terse["rouge_score"]["mean"] > 0
    # no reference at all: the run still scores, and says what it skipped and why
    bare = _qa_lines(tmp_path, "bare.jsonl", {}, ("answer", "doc_ids"))
    res = runner.invoke(app, [*base, "--data", str(bare), "--no-track"])
    assert res.exit_code == 0, res.output
    said = " ".join(res.output.split())  # the console wraps long lines
    assert "Skipped metrics" in said
    for metric in ("bleu", "rouge", "similarity", "retrieval"):
        assert f"- {metric}: skipped: no " in said
    assert "no column named ground_truth, reference, answer" in said
    run_id = said.split("run `", 1)[1].split("`", 1)[0]
    run_dir = sample_index / "eval/runs" / run_id
    assert "- bleu: skipped: no ground_truth mapped" in (run_dir / "report.md").read_text()
    assert "skipped: no ground_truth mapped" in (run_dir / "report.html").read_text()
