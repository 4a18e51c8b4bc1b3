"""Promotion hand-offs of kinds 1 and 2: ``make demo`` trains and promotes the classifier once;
an embedder's promotion builds a new index version with it and moves the index alias only when
the gate's retrieval checks hold (else the serving pointer goes back, with the numbers)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from genaiops.cli.demo import ensure_classifier
from genaiops.serving import read_pointer
from tests.training.fixtures import write_spec
from tests.training.test_embedder import write_beir
from training import PromotionRefused, Tracker, load_spec, promote, run_job


def test_demo_trains_and_promotes_the_classifier_once(train_home: Path, tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    said = ensure_classifier(say=lambda _: None, spec=spec)
    assert said.startswith("prompt-attack classifier v1 promoted"), said
    pointer = read_pointer("prompt-attack")  # what a gateway started with no config loads
    assert pointer is not None and pointer.version == "1"
    assert Tracker().alias_version("prompt-attack", "champion") == "1"
    assert ensure_classifier(say=lambda _: None, spec=spec).endswith("already promoted")
    assert len(Tracker().versions("prompt-attack")) == 1


@pytest.mark.slow  # two fine-tunes and two index builds
def test_embedder_promotion_builds_index_and_gates_its_alias(
    train_home: Path, tmp_path: Path
) -> None:
    from indexing import Catalog

    spec_path = write_beir(tmp_path / "beir")
    index_spec = tmp_path / "beir" / "index.yaml"
    index_spec.write_text(
        yaml.safe_dump(
            {
                "name": "tiny-beir",
                "sources": [
                    {
                        "path": str(tmp_path / "beir" / "corpus.jsonl"),
                        "format": "jsonl",
                        "jsonl": {"id": "_id", "title": "title", "text": "text", "url": None},
                    }
                ],
                "chunker": {"size": 512, "overlap": 0, "header_aware": False},
                "embedder": {"provider": "local"},
                "store": {"kind": "faiss", "dense": "flat"},
            }
        )
    )
    for name, floor in (("impossible", 1.01), ("floor", 0.0)):
        (tmp_path / f"{name}.yaml").write_text(
            yaml.safe_dump({"thresholds": {"recall_at_4": {"min": floor}}, "evaluation": {"k": 4}})
        )
    raw = yaml.safe_load(spec_path.read_text())
    raw["index"] = {"spec": str(index_spec), "gate": str(tmp_path / "impossible.yaml")}
    raw["index"]["thresholds"] = True
    spec_path.write_text(yaml.safe_dump(raw))

    run_job(load_spec(spec_path))
    with pytest.raises(PromotionRefused) as e:
        promote("embedder-test")
    c = e.value.comparison
    assert c["metric"] == "recall_at_4" and c["challenger"] < 1.01 and c["queries"] == 12
    assert any(x.startswith("FAIL recall_at_4") for x in c["checks"])
    assert read_pointer("embedder-test") is None  # the serving copy went back
    assert Tracker().alias_version("embedder-test", "champion") is None
    assert "current" not in Catalog("tiny-beir").aliases()

    run_job(load_spec(spec_path, [f"index.gate={tmp_path / 'floor.yaml'}"]))
    out = promote("embedder-test")
    h = out["handoff"]
    assert out["version"] == "2" and h["index"] == "tiny-beir"
    assert Catalog("tiny-beir").resolve("current") == h["built"] != c["built"]
    assert 0.0 <= h["metrics"]["recall_at_4"] <= 1.0 and h["checks"][0].startswith("ok")
    pointer = read_pointer("embedder-test")
    assert pointer is not None and pointer.version == "2"
