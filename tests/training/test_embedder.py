"""Kind 2 on a tiny BEIR-shaped set: a tracked, registered fine-tune with sane dev metrics,
a deliberately worse challenger refused, and an index spec naming the promoted embedder builds a
new index version queried with the same model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from training import PromotionRefused, Tracker, load_spec, promote, run_job

TOPICS = {
    "vitamin": ("Vitamin D levels and bone fractures", "vitamin D supplementation bone density"),
    "statin": ("Statin therapy and cholesterol", "statins lower LDL cholesterol cardiovascular"),
    "sleep": ("Sleep loss and memory", "sleep deprivation impairs working memory recall"),
    "smoking": ("Tobacco and lung cancer", "cigarette smoking raises lung carcinoma incidence"),
    "exercise": ("Exercise and insulin", "aerobic training improves insulin sensitivity"),
    "gut": ("Microbiome in obesity", "gut bacteria diversity lower in obese adults"),
    "aspirin": ("Aspirin and infarction", "low dose aspirin prevents myocardial infarction"),
    "coffee": ("Coffee and liver", "coffee drinking linked to less liver cirrhosis"),
    "antibiotic": ("Antibiotics and viruses", "antibiotics do not treat viral infections"),
    "mindful": ("Mindfulness for anxiety", "mindfulness training reduces anxiety symptoms"),
    "salt": ("Sodium and blood pressure", "high salt intake raises blood pressure"),
    "vaccine": ("Vaccination and measles", "measles vaccine prevents outbreaks in children"),
}
QUERIES = [
    ("vitamin", "Vitamin D reduces fracture risk."),
    ("vitamin", "Bone density improves with D3."),
    ("statin", "Statins reduce LDL."),
    ("statin", "Cholesterol drugs protect the heart."),
    ("sleep", "Lack of sleep hurts memory."),
    ("sleep", "Sleep deprivation affects recall."),
    ("smoking", "Smoking causes lung cancer."),
    ("smoking", "Tobacco use raises cancer rates."),
    ("exercise", "Exercise improves insulin response."),
    ("exercise", "Training helps diabetes."),
    ("gut", "Obese people have less diverse gut flora."),
    ("gut", "Microbiota differ in obesity."),
    ("aspirin", "Aspirin prevents heart attacks."),
    ("aspirin", "Low-dose aspirin is protective."),
    ("coffee", "Coffee protects the liver."),
    ("coffee", "Cirrhosis is rarer in coffee drinkers."),
    ("antibiotic", "Antibiotics do not cure flu."),
    ("antibiotic", "Viral infections resist antibiotics."),
    ("mindful", "Mindfulness lowers anxiety."),
    ("mindful", "Meditation helps worried patients."),
    ("salt", "Salt raises blood pressure."),
    ("salt", "Sodium causes hypertension."),
    ("vaccine", "Vaccines stop measles."),
    ("vaccine", "Measles outbreaks fall after vaccination."),
]


def write_beir(folder: Path, name: str = "embedder-test") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "corpus.jsonl").open("w") as f:
        for i, (key, (title, text)) in enumerate(TOPICS.items()):
            f.write(json.dumps({"_id": key, "title": title, "text": f"{text}. Study {i}."}) + "\n")
            for j in range(2):  # distractors sharing words with the topic
                f.write(
                    json.dumps(
                        {
                            "_id": f"{key}-x{j}",
                            "title": f"Review {i}.{j}",
                            "text": f"A survey of methods; {text.split()[0]} noted.",
                        }
                    )
                    + "\n"
                )
    with (folder / "queries.jsonl").open("w") as f:
        for i, (_, q) in enumerate(QUERIES):
            f.write(json.dumps({"_id": str(i), "text": q}) + "\n")
    (folder / "qrels.tsv").write_text(
        "query-id\tcorpus-id\tscore\n"
        + "".join(f"{i}\t{k}\t1\n" for i, (k, _) in enumerate(QUERIES))
    )
    spec = {
        "kind": "embedder",
        "name": name,
        "seed": 3,
        "device": "cpu",
        "data": {
            "corpus": "corpus.jsonl",
            "queries": "queries.jsonl",
            "qrels": "qrels.tsv",
            "dev_fraction": 0.5,
        },
        "params": {
            "max_steps": 3,
            "batch_size": 4,
            "learning_rate": 2.0e-5,
            "max_seq_length": 64,
            "bm25_depth": 5,
        },
    }
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_embedder_tracked_registered_promoted_and_indexed(train_home: Path, tmp_path: Path) -> None:
    spec = write_beir(tmp_path / "beir")
    first = run_job(load_spec(spec))
    m = first.metrics
    for k in (
        "ndcg_at_10_dense",
        "recall_at_100_dense",
        "ndcg_at_10_hybrid",
        "base_ndcg_at_10_dense",
        "base_ndcg_at_10_hybrid",
    ):
        assert 0.0 <= m[k] <= 1.0, k
    assert m["base_ndcg_at_10_dense"] > 0.3  # MiniLM already ranks these topics
    assert m["train_pairs"] >= 8 and m["dev_queries"] == 12
    tracker = Tracker()
    hist = tracker.client.get_metric_history(first.run_id, "train_loss")
    assert [h.step for h in hist] == [1, 2, 3]
    assert tracker.aliases("embedder-test") == {"challenger": "1"}
    assert promote("embedder-test")["version"] == "1"

    from indexing import build_index, load_index_spec, retrieve

    docs = tmp_path / "docs"
    docs.mkdir()
    for key, (title, text) in TOPICS.items():
        (docs / f"{key}.md").write_text(f"# {title}\n\n{text}.\n")
    versions = {}
    for model in ("all-MiniLM-L6-v2", "embedder-test"):
        ispec = tmp_path / f"{model}.yaml"
        ispec.write_text(
            yaml.safe_dump(
                {
                    "name": "tiny",
                    "sources": [{"path": str(docs)}],
                    "embedder": {"provider": "local", "model": model},
                }
            )
        )
        versions[model] = build_index(load_index_spec(ispec), promote="current").version_id
    assert versions["embedder-test"] != versions["all-MiniLM-L6-v2"]
    hits = retrieve("Does smoking cause lung cancer?", k=1, mode="dense", index="tiny")
    assert hits[0].doc_id == "smoking.md" and hits[0].version_id == versions["embedder-test"]


@pytest.mark.slow  # three fine-tunes and two re-evaluations: minutes on a busy 2-core CPU
def test_embedder_worse_challenger_refused(train_home: Path, tmp_path: Path) -> None:
    spec = write_beir(tmp_path / "beir")
    first = run_job(load_spec(spec))
    promote("embedder-test")
    worse = run_job(load_spec(spec, ["params.learning_rate=0.05", "params.max_steps=6"]))
    assert worse.metrics["ndcg_at_10_hybrid"] < first.metrics["ndcg_at_10_hybrid"]
    with pytest.raises(PromotionRefused) as e:
        promote("embedder-test")
    assert e.value.comparison["metric"] == "ndcg_at_10_hybrid"
    assert e.value.comparison["challenger"] < e.value.comparison["champion"]
    again = run_job(load_spec(spec))  # reproducible on CPU: same data, same metrics
    assert again.data_digest == first.data_digest
    for k, v in first.metrics.items():
        if not k.startswith("train_runtime") and k != "train_samples_per_s":
            assert again.metrics[k] == pytest.approx(v, abs=1e-6), k
