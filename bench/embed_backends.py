"""Embedder backends torch vs onnx vs onnx-int8 on the same texts, in one run.

What is measured, for each backend in turn (interleaved rounds, so load drifts hit all three):

1. **Encode throughput**: texts/s embedding the same SciFact abstracts (title + text, cut at the
   model's 256 wordpieces as in production) with ``LocalEmbedder(backend=...).embed``, batch 64,
   ``--batch-threads`` intra-op threads (torch and ONNX Runtime alike).
2. **Single-query latency**: p50/p99 of embedding one SciFact claim at a time (the query path),
   ``--query-threads`` threads.
3. **Quality**: dense nDCG@10 on a SciFact *subset* (the relevant documents of ``--queries``
   train queries plus the first abstracts of the corpus up to ``--docs`` in all; exact inner
   product search in numpy) and the mean overlap of each backend's top-10 with torch's top-10.
   The full 5,183-abstract nDCG@10 is not run here: three full encodes do not fit in a few
   minutes on the shared 2-core machine.

The ONNX exports are made (once) under ``bench/results/embed_backends/home`` before timing.

    SCIFACT_DIR=../shared/datasets/scifact python bench/embed_backends.py [--docs 600]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from _common import RESULTS, log, machine, percentiles, scifact_dir, write_result
from retrieval_quality import load_qrels, load_queries, ndcg

BACKENDS = ("torch", "onnx", "onnx-int8")


def subset(docs: int, queries: int) -> tuple[list[str], list[str], list[str], list[dict]]:
    """(doc ids, doc texts, query texts, qrels per query) for a SciFact subset."""
    folder = scifact_dir()
    qrels = load_qrels(folder)
    qtext = load_queries(folder)
    qids = sorted(qrels, key=int)[:queries]
    wanted = {d for q in qids for d in qrels[q]}
    ids: list[str] = []
    texts: list[str] = []
    with (folder / "corpus.jsonl").open() as f:
        for row in map(json.loads, f):
            if row["_id"] in wanted or len(ids) < docs - len(wanted):
                ids.append(row["_id"])
                texts.append(f"{row['title']}\n{row['text']}")
    return ids, texts, [qtext[q] for q in qids], [qrels[q] for q in qids]


def make(backend: str, threads: int):  # -> LocalEmbedder (imports after env is set)
    import torch

    from genaiops.providers import onnx as onnx_mod
    from genaiops.providers.embeddings import LocalEmbedder
    from genaiops.settings import reset_settings

    os.environ["GENAIOPS_TORCH_THREADS"] = str(threads)
    reset_settings()
    torch.set_num_threads(threads)
    onnx_mod._SESSIONS.clear()  # a session is sized at creation: make one for these threads
    emb = LocalEmbedder(batch_size=64, backend=backend)  # type: ignore[arg-type]
    emb.embed(["warm up"])
    return emb


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=600)
    ap.add_argument("--queries", type=int, default=150)
    ap.add_argument("--rounds", type=int, default=2, help="encode rounds per backend (best kept)")
    ap.add_argument("--batch-threads", type=int, default=2)
    ap.add_argument("--query-threads", type=int, default=1)
    args = ap.parse_args()

    home = RESULTS / "embed_backends" / "home"
    os.environ["GENAIOPS_HOME"] = str(home)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    ids, docs, queries, rels = subset(args.docs, args.queries)
    log(f"{len(docs)} abstracts, {len(queries)} queries; load {machine()['load']}")
    for b in BACKENDS[1:]:  # export outside the timings
        make(b, 1)

    load_before = machine()["load"]
    enc: dict[str, list[float]] = {b: [] for b in BACKENDS}
    doc_vecs: dict[str, np.ndarray] = {}
    for r in range(args.rounds):
        for b in BACKENDS:
            emb = make(b, args.batch_threads)
            t0 = time.perf_counter()
            doc_vecs[b] = emb.embed(docs)
            enc[b].append(time.perf_counter() - t0)
            log(f"round {r} {b}: encode {len(docs) / enc[b][-1]:.1f} texts/s")

    lat: dict[str, dict] = {}
    q_vecs: dict[str, np.ndarray] = {}
    for b in BACKENDS:
        emb = make(b, args.query_threads)
        times, rows = [], []
        for q in queries:
            t0 = time.perf_counter()
            rows.append(emb.embed([q])[0])
            times.append(time.perf_counter() - t0)
        lat[b] = percentiles(times)
        q_vecs[b] = np.vstack(rows)
        log(f"{b}: query p50 {lat[b]['p50_ms']} ms p99 {lat[b]['p99_ms']} ms")
    load_after = machine()["load"]

    top = {b: np.argsort(-(q_vecs[b] @ doc_vecs[b].T), axis=1)[:, :10] for b in BACKENDS}
    out: dict[str, dict] = {}
    for b in BACKENDS:
        ranked = [[ids[j] for j in row] for row in top[b]]
        overlap = np.mean(
            [len(set(a) & set(t)) / 10 for a, t in zip(top[b], top["torch"], strict=True)]
        )
        cos = float(np.mean((doc_vecs[b] * doc_vecs["torch"]).sum(axis=1)))
        best = min(enc[b])
        out[b] = {
            "encode_texts_per_s": round(len(docs) / best, 1),
            "encode_s_all_rounds": [round(x, 2) for x in enc[b]],
            "query": lat[b],
            "ndcg10_subset": round(
                float(np.mean([ndcg(r, q) for r, q in zip(ranked, rels, strict=True)])), 4
            ),
            "top10_overlap_vs_torch": round(float(overlap), 4),
            "mean_doc_cosine_vs_torch": round(cos, 5),
        }
    t = out["torch"]
    for b in BACKENDS[1:]:
        out[b]["encode_speedup_vs_torch"] = round(
            out[b]["encode_texts_per_s"] / t["encode_texts_per_s"], 2
        )
        out[b]["query_p50_speedup_vs_torch"] = round(
            t["query"]["p50_ms"] / out[b]["query"]["p50_ms"], 2
        )
    res = {
        "machine": machine(),
        "load_before": load_before,
        "load_after": load_after,
        "docs": len(docs),
        "queries": len(queries),
        "batch_threads": args.batch_threads,
        "query_threads": args.query_threads,
        "backends": out,
    }
    path = write_result("embed_backends", res)
    log(f"wrote {path}")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
