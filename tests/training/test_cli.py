"""``genaiops train``: run / list / show / promote (exit 1 + numbers) / export, all with --json;
bad input is one line and exit 2 with nothing written."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from genaiops.cli import app, main
from tests.training.fixtures import write_spec

runner = CliRunner()


def _json(args: list[str], code: int = 0) -> dict | list:
    r = runner.invoke(app, args)
    assert r.exit_code == code, r.output
    return json.loads(r.stdout)


def test_cli_run_list_show_promote(train_home: Path, tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    rep = _json(["train", "run", str(spec), "--device", "cpu", "--json"])
    assert rep["version"] == "1" and rep["metrics"]["f1"] > 0.5
    rows = _json(["train", "list", "--json"])
    assert [(r["run_id"], r["version"]) for r in rows] == [(rep["run_id"], "1")]
    shown = _json(["train", "show", rep["run_id"], "--json"])
    assert shown["report"]["data_digest"] == rep["data_digest"]
    assert shown["params"]["seed"] == "7"
    out = _json(["train", "promote", "prompt-attack", "--json"])
    assert out["promoted"] and out["version"] == "1"
    assert _json(["train", "list", "--json"])[0]["aliases"] == ["champion"]

    _json(["train", "run", str(spec), "--set", "params.lexical_n_features=64", "--json"])
    refused = _json(["train", "promote", "prompt-attack", "--json"], code=1)
    assert not refused["promoted"]
    c = refused["comparison"]
    assert c["metric"] == "f1" and c["challenger"] <= c["champion"]
    r = runner.invoke(app, ["train", "promote", "prompt-attack"])
    assert r.exit_code == 1 and "does not beat champion v1" in r.output


def test_cli_bad_input_exits_2(
    train_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    spec = write_spec(tmp_path)
    for args, needle in (
        (["run", str(spec), "--set", "params.nope=1"], f"{spec}: params.nope: unknown key"),
        (["run", str(spec), "--set", "novalue"], "expected KEY=VALUE"),
        (["run", str(tmp_path / "missing.yaml")], "file not found"),
        (["run", str(spec), "--device", "tpu"], "--device 'tpu'"),
        (["show", "0123456789abcdef"], "no tracked run"),
        (["promote", "no-such-model"], "no registered model 'no-such-model'"),
        (["export", str(spec), "--target", "sagemaker"], "only azureml"),
    ):
        monkeypatch.setattr(sys, "argv", ["genaiops", "train", *args])
        with pytest.raises(SystemExit) as e:
            main()
        err = capsys.readouterr().err
        assert e.value.code == 2, (args, err)
        assert needle in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert not (train_home / "training").exists()


def test_export_azureml_loads_with_the_sdk(tmp_path: Path) -> None:
    from azure.ai.ml import load_job
    from azure.ai.ml.entities import Command

    spec = write_spec(tmp_path)
    out = tmp_path / "job.yaml"
    _json(["train", "export", str(spec), "--target", "azureml", "-o", str(out), "--json"])
    job = load_job(out)
    assert isinstance(job, Command)
    assert "genaiops train run" in job.command and "--json" in job.command
    assert Path(job.code).resolve() == Path(__file__).resolve().parents[2]  # the repository
    assert job.compute in ("cpu-cluster", "azureml:cpu-cluster")  # the SDK strips the prefix
    assert job.environment_variables["GENAIOPS_HOME"] == "${{outputs.genaiops_home}}"
    raw = yaml.safe_load(out.read_text())
    assert raw["type"] == "command" and raw["inputs"]["data_0"]["type"] == "uri_folder"
