"""Retrieval quality on BEIR SciFact (train qrels): nDCG@10 and recall@100 per mode, one run.

The SciFact spec (``indexing/specs/scifact.yaml``: 512-token chunks, no overlap, so about one
chunk per abstract) is built into ``bench/results/retrieval_quality/home`` and queried through
the public ``Retriever`` for every train query in each mode (dense, lexical, hybrid).  Doc ids are
the corpus ``_id``s; to score per document the best chunk per doc id is kept (dedupe, rank
order) before computing nDCG@10 (graded gains from the qrels, log2 discount, ideal from the
qrels) and recall@100.  nDCG@10 comes from a ``k=20`` call (top 10 distinct documents),
recall@100 from a ``k=120`` call (top 100 distinct documents; the fewest found is reported); for
hybrid the store fuses ``max(k, hybrid_depth)`` candidates per side, as in production.

The train queries are split deterministically by ``sha1(query id)`` into a dev half and a
held-out half; figures are reported for all queries and for each half.  With ``--tune`` the
RRF parameters (rrf_k, hybrid_depth) are searched on the **dev** half only, by fusing the
dense and lexical rankings offline with the store's own ``rrf_fuse`` (exactly what the store does
for a given depth), and the best setting is reported on the held-out half.

    python bench/retrieval_quality.py [--quick] [--tune]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sqlite3
import time
from pathlib import Path

from _common import RESULTS, log, machine, scifact_dir, torch_threads, write_result

SPEC = Path(__file__).resolve().parent.parent / "indexing" / "specs" / "scifact.yaml"
MODES = ("dense", "lexical", "hybrid")
K_NDCG = 20  # chunks asked for to fill the top 10 documents after deduping
K_RECALL = 120  # chunks asked for to fill the top 100 documents after deduping
K_TUNE = 200  # depth of the dense / lexical rankings kept for offline RRF tuning


def load_qrels(folder: Path) -> dict[str, dict[str, int]]:
    """qrels/train.tsv: header line, tab separated, CRLF line ends."""
    qrels: dict[str, dict[str, int]] = {}
    with (folder / "qrels" / "train.tsv").open(newline="") as f:
        next(f)
        for line in f:
            parts = line.strip().split("\t")
            if len(parts) == 3 and int(parts[2]) > 0:
                qrels.setdefault(parts[0], {})[parts[1]] = int(parts[2])
    return qrels


def load_queries(folder: Path) -> dict[str, str]:
    with (folder / "queries.jsonl").open() as f:
        return {r["_id"]: r["text"] for r in map(json.loads, f)}


def is_dev(qid: str) -> bool:
    return int(hashlib.sha1(qid.encode()).hexdigest(), 16) % 2 == 0


def dedupe(doc_ids: list[str]) -> list[str]:
    return list(dict.fromkeys(doc_ids))


def ndcg(ranked: list[str], rel: dict[str, int], k: int = 10) -> float:
    dcg = sum(rel.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted(rel.values(), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall(ranked: list[str], rel: dict[str, int], k: int = 100) -> float:
    return len(set(ranked[:k]) & set(rel)) / len(rel)


def score(
    top10: dict[str, list[str]], top100: dict[str, list[str]], qrels: dict, qids: list[str]
) -> dict:
    n = len(qids)
    return {
        "ndcg@10": round(sum(ndcg(top10[q], qrels[q]) for q in qids) / n, 4),
        "recall@100": round(sum(recall(top100[q], qrels[q]) for q in qids) / n, 4),
        "queries": n,
    }


def build(home: Path):  # type: ignore[no-untyped-def]
    from indexing import build_index, load_index_spec

    t = time.perf_counter()
    res = build_index(load_index_spec(SPEC), home=home, promote="current")
    log(f"built {res.message} in {time.perf_counter() - t:.1f} s")
    return res


def run(retriever, queries: dict, qids: list[str], mode: str, k: int) -> dict[str, list]:  # type: ignore[no-untyped-def]
    """Per query: [(chunk_id, doc_id), ...] as the Retriever returns them."""
    out = {}
    for q in qids:
        out[q] = [(h.chunk_id, h.doc_id) for h in retriever.retrieve(queries[q], k=k, mode=mode)]
    return out


def docs(chunk_run: dict[str, list]) -> dict[str, list[str]]:
    return {q: dedupe([d for _, d in hits]) for q, hits in chunk_run.items()}


def fuse(
    dense: dict, lexical: dict, rows: dict[str, int], rrf_k: int, depth: int, k: int
) -> dict[str, list[str]]:
    """Offline replica of the store's hybrid search: rrf_fuse of each side's top max(k, depth).

    ``rows`` maps chunk ids to the store's rows: rrf_fuse breaks score ties by row, and RRF
    ties are common (rank r on one side only == rank r on the other side only)."""
    from indexing.store.base import rrf_fuse

    d = max(k, depth)
    out = {}
    for q in dense:
        doc_of = {rows[c]: doc for c, doc in dense[q][:d] + lexical[q][:d]}
        ranks = [[(rows[c], 0.0) for c, _ in side[:d]] for side in (dense[q], lexical[q])]
        out[q] = dedupe([doc_of[r] for r, _ in rrf_fuse(ranks, k, rrf_k)])
    return out


def chunk_rows(folder: Path) -> dict[str, int]:
    db = sqlite3.connect(f"file:{folder / 'chunks.sqlite'}?mode=ro", uri=True)
    try:
        return {c: int(r) for r, c in db.execute("SELECT row, chunk_id FROM chunks")}
    finally:
        db.close()


def tune(
    dense: dict, lexical: dict, rows: dict, qrels: dict, dev: list[str], test: list[str], k: int
) -> dict:
    """Grid over rrf_k x hybrid_depth on dev; the best by dev nDCG@10 is scored on held-out."""
    grid = []
    for rrf_k in (1, 5, 10, 20, 30, 60, 100, 200):
        for depth in (10, 20, 50, 100, 200):
            top10 = fuse(dense, lexical, rows, rrf_k, depth, K_NDCG)
            top100 = fuse(dense, lexical, rows, rrf_k, depth, k)
            grid.append(
                {"rrf_k": rrf_k, "hybrid_depth": depth, "dev": score(top10, top100, qrels, dev)}
            )
    best = max(grid, key=lambda g: (g["dev"]["ndcg@10"], g["dev"]["recall@100"]))
    top10 = fuse(dense, lexical, rows, best["rrf_k"], best["hybrid_depth"], K_NDCG)
    top100 = fuse(dense, lexical, rows, best["rrf_k"], best["hybrid_depth"], k)
    best = {**best, "held_out": score(top10, top100, qrels, test)}
    return {"tuned_on": "dev half (sha1(query id) even)", "best": best, "grid": grid}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="first 100 train queries only")
    ap.add_argument("--tune", action="store_true", help="grid-search RRF params on the dev half")
    args = ap.parse_args()

    import os

    os.environ.setdefault("SCIFACT_DIR", str(scifact_dir()))
    from indexing import Catalog, Retriever

    home = RESULTS / "retrieval_quality" / "home"
    threads = torch_threads()
    res = build(home)
    store = Catalog("scifact", home=home).manifest(res.version_id).spec.store.model_dump()
    qrels = load_qrels(scifact_dir())
    queries = load_queries(scifact_dir())
    qids = sorted(q for q in qrels if q in queries)[: 100 if args.quick else None]
    dev = [q for q in qids if is_dev(q)]
    test = [q for q in qids if not is_dev(q)]
    k = K_RECALL
    retriever = Retriever("scifact", res.version_id, home=home)
    retriever.retrieve("warm up", k=1, mode="hybrid")

    k_deep = max(k, K_TUNE) if args.tune else k  # dense/lexical prefixes == asking for k
    figures, kept, distinct = {}, {}, {}
    for mode in MODES:
        t = time.perf_counter()
        top10 = {q: d[:10] for q, d in docs(run(retriever, queries, qids, mode, K_NDCG)).items()}
        deep = run(retriever, queries, qids, mode, k_deep if mode != "hybrid" else k)
        kept[mode] = deep
        top100 = {q: d[:100] for q, d in docs({q: h[:k] for q, h in deep.items()}).items()}
        distinct[mode] = min(len(d) for d in top100.values())
        figures[mode] = {
            "all": score(top10, top100, qrels, qids),
            "dev": score(top10, top100, qrels, dev),
            "held_out": score(top10, top100, qrels, test),
        }
        log(f"{mode:8s} {figures[mode]['all']} ({time.perf_counter() - t:.1f} s)")
    hybrid = figures["hybrid"]["all"]
    goals = {
        f"hybrid_beats_both_{m}": all(
            hybrid[m] > figures[o]["all"][m] for o in ("dense", "lexical")
        )
        for m in ("ndcg@10", "recall@100")
    }
    result = {
        "machine": machine(),
        "quick": args.quick,
        "torch_threads": threads,
        "index": {
            "documents": res.documents,
            "chunks": res.chunks,
            "k_ndcg": K_NDCG,
            "k_recall": k,
            "fewest_distinct_docs_in_k_recall": distinct,
            "store": {
                key: store[key]
                for key in ("dense", "bm25_k1", "bm25_b", "stemming", "rrf_k", "hybrid_depth")
            },
        },
        "queries": {"all": len(qids), "dev": len(dev), "held_out": len(test)},
        "figures": figures,
        "goals": goals,
    }
    if args.tune:
        rows = chunk_rows(Catalog("scifact", home=home).version_dir(res.version_id))
        result["tuning"] = tune(kept["dense"], kept["lexical"], rows, qrels, dev, test, k)
        log(f"best on dev: {json.dumps(result['tuning']['best'])}")
    path = write_result("retrieval_quality_quick" if args.quick else "retrieval_quality", result)
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
