"""Kind 3 (generator LoRA) on tiny hand-written FAQ data: records with retrieved context and
citations, the ``model:`` seam the gateway serves it through, the gateway hand-off (deployment
+ rollout), and — slow, a real LoRA on the CPU — a tracked, merged, served and reproducible run,
a deliberately worse challenger refused with numbers (exit 1), and the evaluation gate run with
the candidate served by its own gateway."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from genaiops.cli import app
from genaiops.errors import ProviderUnavailable, SpecError
from tests.evaluation.fixtures import sample_index, sample_index_home  # noqa: F401
from training import PromotionRefused, Tracker, load_spec, run_job
from training.kinds.generator_data import build_examples, messages_for, short_answer

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()

FAQ = [
    ("What is a list?", "A list is a mutable sequence. It holds items in order. Lists grow."),
    ("How do I open a file?", "Use the built-in open() function. It returns a file object."),
    ("What is a tuple?", "A tuple is an immutable sequence. It is written with commas."),
    ("How do I sort a list?", "Call list.sort() or the sorted() built-in. Both take key=."),
    ("What is a dict?", "A dict maps keys to values. Keys must be hashable."),
    ("How do I read input?", "Call input() to read a line from standard input as a string."),
]
PAGES = {
    "tutorial/datastructures.html": [
        "Lists are mutable sequences that hold items in order and can grow or shrink.",
        "Tuples are immutable sequences written with commas, often inside parentheses.",
        "A dictionary maps hashable keys to values; dict literals use braces.",
        "The list.sort() method sorts in place; sorted() returns a new sorted list.",
    ],
    "tutorial/inputoutput.html": [
        "The open() built-in returns a file object; use it in a with statement.",
        "input() reads one line from standard input and returns it as a string.",
    ],
    "glossary.html": ["An iterable is an object able to return its members one at a time."],
}


def write_faq(folder: Path, name: str = "gen-test", **params: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "faq.jsonl").open("w") as f:
        for i, (q, a) in enumerate(FAQ):
            f.write(json.dumps({"id": f"faq/{i}", "question": q, "answer": a, "page": "faq"}))
            f.write("\n")
    with (folder / "corpus.jsonl").open("w") as f:
        for pid, paras in PAGES.items():
            f.write(json.dumps({"id": pid, "title": pid, "text": "\n\n".join(paras)}) + "\n")
    spec = {
        "kind": "generator",
        "name": name,
        "seed": 5,
        "device": "cpu",
        "data": {
            "faq": "faq.jsonl",
            "corpus": "corpus.jsonl",
            "retrieval": "bm25",
            "k": 2,
            "chunk_chars": 160,
            "validation_fraction": 0.34,
            "max_train": 3,
        },
        "params": {
            "max_steps": 2,
            "batch_size": 1,
            "max_length": 160,
            "max_new_tokens": 12,
            "lora_r": 4,
            "lora_alpha": 8,
            "learning_rate": 1.0e-3,
            **params,
        },
        "gateway": {"gate": None},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_records_cite_retrieved_context_and_split_by_seed(tmp_path: Path) -> None:
    spec = load_spec(write_faq(tmp_path))
    train, val, records, source = build_examples(spec)
    assert (len(train), len(val)) == (3, 2) and source.startswith("bm25 over corpus.jsonl")
    assert not {e.id for e in train} & {e.id for e in val}
    for e in train + val:
        ids = [c["doc_id"] for c in e.context]
        assert len(ids) == 2 and all(len(c["text"]) <= 160 for c in e.context)
        assert e.target.startswith(e.answer) and e.target.endswith("]")
        assert e.target.rsplit("[", 1)[1].rstrip("]") in ids
    by_q = {e.question: e for e in train + val}
    for q, page in (
        ("How do I open a file?", "tutorial/inputoutput.html"),  # BM25 finds the page that
        ("How do I read input?", "tutorial/inputoutput.html"),  # answers it, and the target
        ("What is a tuple?", "tutorial/datastructures.html"),  # cites it
    ):
        assert by_q[q].context[0]["doc_id"] == page and by_q[q].target.endswith(f"[{page}]")
    again = build_examples(load_spec(write_faq(tmp_path)))
    assert [e.to_dict() for e in again[0] + again[1]] == [e.to_dict() for e in train + val]
    assert [r.name for r in records] == ["python FAQ pairs", "python-docs pages"]
    # the chat is the RAG flow's "cited" prompt: sources as [doc_id] text, then the question
    msgs = messages_for("Q?", [{"doc_id": "a.html", "text": "alpha"}])
    assert msgs[0]["role"] == "system" and "[a.html] alpha" in msgs[0]["content"]
    assert "cite the source id in brackets" in msgs[0]["content"] and msgs[1]["content"] == "Q?"
    assert short_answer("One. Two. Three.", 2, 400) == "One. Two."
    with pytest.raises(SpecError) as e:
        load_spec(write_faq(tmp_path), ["params.lora_rank=4"])
    assert "params.lora_rank: unknown key" in str(e.value)
    shipped = load_spec(REPO / "training/specs/generator_faq.yaml")
    assert shipped.kind == "generator" and shipped.promotion.metric == "rougeL"


def test_local_model_refs_and_gateway_deployments(tmp_path: Path) -> None:
    from gateway.backends import build_backends
    from gateway.config import DeploymentConfig, GatewayConfig
    from genaiops.providers.generator import get_local_generator, resolve_model
    from genaiops.serving import ServingPointer, serving_dir, write_pointer

    for ref, needle in (
        (str(tmp_path / "nope"), "no transformers folder"),
        ("models:/gen@challenger", "only @champion"),
        ("models:/gen@champion", "no promoted generator 'gen'"),
        ("models:/gen/3", "version 3 of 'gen' is not published"),
        ("models:/", "expected models:/NAME"),
    ):
        with pytest.raises(ProviderUnavailable, match=needle):
            resolve_model(ref)
    folder = serving_dir("gen") / "v2"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    write_pointer(
        ServingPointer(
            model="gen", kind="generator", version="2", path=str(folder),
            promoted_at=datetime.now(UTC),
        )
    )  # fmt: skip
    assert resolve_model("models:/gen@champion") == folder == resolve_model("models:/gen/2")
    # one generator per (device, model), none loaded until used
    a, b = get_local_generator(model="models:/gen/2"), get_local_generator()
    assert a is get_local_generator(model="models:/gen/2") and a is not b
    assert a.model_id == "models:/gen/2" and b.model_id.startswith("HuggingFaceTB/")
    cfg = GatewayConfig.model_validate(
        {
            "deployments": [{"name": "ft", "backend": "local", "model": "models:/gen/2"}],
            "models": [{"name": "chat", "deployments": [{"deployment": "ft"}]}],
        }
    )
    backend = build_backends(cfg, None)["ft"]  # type: ignore[arg-type]
    assert getattr(backend, "model", None) == "models:/gen/2"
    with pytest.raises(ValueError, match="model: is for local chat"):
        DeploymentConfig(name="e", backend="local", kind="embeddings", model="x")


def _fake_run_folder(folder: Path, handoff: dict) -> Path:
    """A promoted run's report.json as ``run_job`` writes it (typed), for the hand-off."""
    from training.report import RunReport, capture_environment, write_report

    write_report(
        RunReport(
            run_id="r1", kind="generator", model="gen", spec_path="x.yaml", spec_sha256="0",
            seed=1, device="cpu", started_at=datetime.now(UTC), duration_s=1.0,
            metrics={"rougeL": 0.1, "base_rougeL": 0.3}, data=[], data_digest={},
            environment=capture_environment("cpu"), tracking_uri="sqlite://",
            extra={"gateway": handoff},
        ),
        folder / "report.json",
    )  # fmt: skip
    (folder / "spec.yaml").write_text(yaml.safe_dump({"kind": "generator", "promotion": {}}))
    return folder


def test_generator_handoff_deployment_rollout_and_base_refusal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.config import load_config
    from training.handoff import deploy_generator, generator_gate

    monkeypatch.delenv("GENAIOPS_GATEWAY_URL", raising=False)
    cfg_path = tmp_path / "gw" / "gateway.yaml"
    folder = _fake_run_folder(
        tmp_path, {"gate": None, "config": str(cfg_path), "steps": [10, 100], "interval": "1m"}
    )
    with pytest.raises(PromotionRefused) as e:  # v1 must beat the base model it replaces
        generator_gate("gen", "1", folder, champion=None)
    assert e.value.comparison == {
        "metric": "rougeL", "challenger": 0.1, "champion": 0.3, "champion_version": "base",
    }  # fmt: skip
    assert generator_gate("gen", "2", folder, champion="1") == {
        "gate": "skipped (gateway.gate: null)"
    }
    out = deploy_generator("gen", "2", folder)
    assert out["deployment"] == "gen-v2" and out["config"] == str(cfg_path)
    cfg = load_config(cfg_path)  # the file the gateway reads: the default models + the new one
    dep = {d.name: d for d in cfg.deployments}["gen-v2"]
    assert dep.backend == "local" and dep.model == "models:/gen/2"
    assert cfg.alias("genaiops-local") is not None
    ro = out["rollout"]
    assert ro["started"], ro
    assert ro["state"]["candidate"] == "gen-v2" and ro["state"]["stable"] == "local-smollm2"
    assert ro["state"]["steps"] == [10.0, 100.0] and ro["state"]["status"] == "running"
    again = deploy_generator("gen", "2", folder)  # one rollout at a time, said, not raised
    assert not again["rollout"]["started"] and "already running" in again["rollout"]["reason"]
    assert [d.name for d in load_config(cfg_path).deployments].count("gen-v2") == 1


# -- slow: a real LoRA on the CPU (minutes on a busy 2-core machine) ------------------------
@pytest.mark.slow
def test_generator_job_tracked_merged_served_and_reproducible(
    train_home: Path, tmp_path: Path
) -> None:
    from genaiops.providers import ChatMessage
    from genaiops.providers.generator import LocalGenerator

    spec = write_faq(tmp_path)
    a = run_job(load_spec(spec))
    m = a.metrics
    for k in ("rougeL", "answer_similarity", "base_rougeL", "base_answer_similarity"):
        assert 0.0 <= m[k] <= 1.0, k
    assert 1.0 <= m["groundedness"] <= 5.0 and 1.0 <= m["base_groundedness"] <= 5.0
    assert m["train_steps"] == 2 and m["train_tokens_per_s"] > 0 and m["val_loss"] > 0
    assert m["base_val_loss"] > 0 and m["trainable_params"] > 0
    assert a.extra["context_source"].startswith("bm25")
    tracker = Tracker()
    assert [h.step for h in tracker.client.get_metric_history(a.run_id, "train_loss")] == [1, 2]
    assert tracker.aliases("gen-test") == {"challenger": "1"}
    # the registered version holds the merged weights the gateway's local backend loads
    model_dir = tracker.download(a.run_id, "model", tmp_path / "dl")
    assert (model_dir / "config.json").is_file()
    assert not (model_dir / "adapter_config.json").exists()  # merged, not an adapter
    doc = json.loads(tracker.download(a.run_id, "eval/validation.json", tmp_path / "e").read_text())
    gen = LocalGenerator("cpu", model=str(model_dir))
    convs = [[ChatMessage(x["role"], x["content"]) for x in r["messages"]] for r in doc["rows"]]
    served = gen.generate_batch(convs, max_tokens=doc["max_new_tokens"])  # as evaluated
    assert [g.text.strip() for g in served] == [r["lora_response"] for r in doc["rows"]]
    b = run_job(load_spec(spec))  # same spec, same CPU: same data, same numbers
    assert b.data_digest == a.data_digest
    for k, v in a.metrics.items():
        if k not in ("train_runtime_s", "train_tokens_per_s", "time_per_epoch_s"):
            assert b.metrics[k] == pytest.approx(v, abs=1e-4), k


@pytest.mark.slow
def test_worse_generator_refused_with_numbers_exit_1(train_home: Path, tmp_path: Path) -> None:
    spec = write_faq(tmp_path, learning_rate=0.5, max_steps=3)  # wrecks the weights
    rep = run_job(load_spec(spec))
    assert rep.metrics["rougeL"] < rep.metrics["base_rougeL"]
    r = runner.invoke(app, ["train", "promote", "gen-test", "--json"])
    assert r.exit_code == 1, r.output
    out = json.loads(r.stdout)
    assert not out["promoted"] and out["comparison"]["champion_version"] == "base"
    assert out["comparison"]["challenger"] < out["comparison"]["champion"]
    assert Tracker().alias_version("gen-test", "champion") is None
    r = runner.invoke(app, ["train", "promote", "gen-test"])
    assert r.exit_code == 1 and "does not beat the base model" in r.output


@pytest.mark.slow
@pytest.mark.usefixtures("sample_index")
def test_evaluation_gate_serves_the_candidate(tmp_path: Path) -> None:
    """The gate runs flows/rag through a gateway whose genaiops-local is the candidate; an
    impossible floor refuses it with the gate's own lines."""
    from genaiops.providers.generator import base_model_dir
    from training.handoff import generator_gate

    gate = yaml.safe_load((REPO / "evaluation/gate.yaml").read_text())
    gate["thresholds"] = {"rougeL": {"min": 1.01}}
    (tmp_path / "gate.yaml").write_text(yaml.safe_dump(gate))
    folder = _fake_run_folder(
        tmp_path,
        {
            "gate": str(tmp_path / "gate.yaml"),
            "baseline": None,
            "gate_limit": 1,
            "gate_variants": "answer_prompt.cited",
            "alias": "genaiops-local",
        },
    )
    shutil.copytree(base_model_dir(), folder / "model")  # stands in for merged weights
    with pytest.raises(PromotionRefused) as e:
        generator_gate("gen", "2", folder, champion="1")
    c = e.value.comparison
    assert c["failures"] == [f for f in c["failures"] if "rougeL" in f] and c["failures"]
    assert 0.0 <= c["means"]["answer_prompt.cited"]["rougeL"] <= 1.0
