"""Query latency (embed + search) per mode, and HNSW recall@10 against exact (flat) search.

1. **SciFact index** (built by ``retrieval_quality.py`` into bench/results; built here if
   missing): p50/p99 of ``Retriever.retrieve(query, k=10, mode)`` over SciFact queries, i.e.
   query embedding (all-MiniLM-L6-v2 on the CPU) + store search + chunk metadata read; the embed
   and the store search are also timed on their own.
2. **Synthetic 100k-chunk index**, store level (``FaissBackend.write`` / ``open`` / ``search``,
   no catalog): 100,000 384-d vectors drawn from a Gaussian fitted to the real SciFact chunk
   embeddings (mean + covariance), L2-normalised, and synthetic texts of 150 words sampled from
   SciFact's unigram distribution.  Latency = embedding the real SciFact query text + searching,
   for flat and HNSW (M=32, efConstruction=80, efSearch=64: the StoreSpec defaults).  The vectors
   are synthetic, so the hits are meaningless: only the timings are.  The store is written once
   with HNSW (timed: HNSW build + bm25 indexing); the flat variant reuses its lexical files.
3. **HNSW recall@10 vs flat**: the store's own HNSW index of the 100k Gaussian set (1,000
   held-out draws as queries), the real SciFact vectors with the real query embeddings, and 100k
   isotropic random unit vectors (the worst case for graph indexes); for efSearch 16..256.

    python bench/query_latency.py [--quick]     # --quick: 20k synthetic chunks, 100 queries

Full runs time 200 queries per figure.  torch runs with 1 thread (see ``_common.torch_threads``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from _common import RESULTS, log, machine, percentiles, scifact_dir, torch_threads, write_result

MODES = ("dense", "lexical", "hybrid")
EF_SEARCH = (16, 32, 64, 128, 256)


def timed(fn, items) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for x in items:
        t = time.perf_counter()
        fn(x)
        out.append(time.perf_counter() - t)
    return out


def scifact_latency(queries: list[str]) -> tuple[dict, np.ndarray, object]:
    """Retriever latency per mode on the SciFact index; returns its vectors and the embedder."""
    import faiss

    from genaiops.providers import make_embedder
    from indexing import Catalog, Retriever, build_index, load_index_spec
    from indexing.spec import StoreSpec
    from indexing.store import get_backend

    home = RESULTS / "retrieval_quality" / "home"
    spec = load_index_spec(Path(__file__).resolve().parent.parent / "indexing/specs/scifact.yaml")
    version = build_index(spec, home=home).version_id  # no-op when retrieval_quality built it
    folder = Catalog("scifact", home=home).version_dir(version)
    retriever = Retriever("scifact", version, home=home)
    embedder = make_embedder()
    index = get_backend(StoreSpec()).open(folder, StoreSpec())
    for q in queries[:20]:  # warm up: model, faiss, bm25, sqlite
        for mode in MODES:
            retriever.retrieve(q, k=10, mode=mode)
    vecs = {q: embedder.embed([q])[0] for q in queries}
    out: dict = {"embed_only": percentiles(timed(lambda q: embedder.embed([q]), queries))}
    for mode in MODES:
        out[mode] = {
            "retrieve": percentiles(
                timed(lambda q, m=mode: retriever.retrieve(q, k=10, mode=m), queries)
            ),
            "search_only": percentiles(
                timed(lambda q, m=mode: index.search(q, vecs[q], 10, m), queries)
            ),
        }
    flat = faiss.read_index(str(folder / "dense.faiss"))
    return out, flat.reconstruct_n(0, flat.ntotal), embedder


def unit(v: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(v / np.linalg.norm(v, axis=1, keepdims=True), dtype=np.float32)


def gaussian_like(real: np.ndarray, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mean, cov = real.mean(axis=0), np.cov(real, rowvar=False)
    return unit(rng.multivariate_normal(mean, cov, size=n, method="cholesky").astype(np.float32))


def scifact_unigrams() -> tuple[np.ndarray, np.ndarray]:
    """SciFact's words and their probabilities (lower-cased alphanumeric runs of the corpus)."""
    counts: Counter[str] = Counter()
    with (scifact_dir() / "corpus.jsonl").open() as f:
        for rec in map(json.loads, f):
            counts.update(re.findall(r"[a-z0-9]+", rec["text"].lower()))
    p = np.array(list(counts.values()), dtype=np.float64)
    return np.array(list(counts)), p / p.sum()


def synthetic_texts(n: int, words: int, seed: int) -> list[str]:
    vocab, p = scifact_unigrams()
    draws = np.random.default_rng(seed).choice(len(vocab), size=(n, words), p=p)
    return [" ".join(vocab[row]) for row in draws]


def hnsw_recall(base: np.ndarray, queries: np.ndarray, hnsw=None, k: int = 10) -> dict:  # type: ignore[no-untyped-def]
    """recall@10 of HNSW against exact search, for each efSearch in EF_SEARCH.

    ``hnsw``: an index the store already built over ``base``; else one is built here with the
    StoreSpec defaults for M and efConstruction."""
    import faiss

    from indexing.spec import StoreSpec

    flat = faiss.IndexFlatIP(base.shape[1])
    flat.add(base)
    _, truth = flat.search(queries, k)
    out: dict = {"n": len(base), "queries": len(queries), "build_s": None}
    if hnsw is None:
        s = StoreSpec()
        hnsw = faiss.IndexHNSWFlat(base.shape[1], s.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = s.hnsw_ef_construction
        t = time.perf_counter()
        hnsw.add(base)
        out["build_s"] = round(time.perf_counter() - t, 1)
    for ef in EF_SEARCH:
        hnsw.hnsw.efSearch = ef
        t = time.perf_counter()
        _, got = hnsw.search(queries, k)
        per_q = (time.perf_counter() - t) / len(queries) * 1000
        hits = sum(len(set(g) & set(r)) for g, r in zip(got, truth, strict=True))
        out[f"ef{ef}"] = {"recall@10": round(hits / truth.size, 4), "ms_per_query": round(per_q, 3)}
    return out


def synthetic_latency(  # type: ignore[no-untyped-def]
    vectors: np.ndarray, texts: list[str], queries: list[str], embedder, held_out: np.ndarray
) -> tuple[dict, dict]:
    """Store-level latency, flat and HNSW; plus HNSW recall of the store's own HNSW index."""
    import faiss

    from indexing.spec import StoreSpec
    from indexing.store import get_backend

    out: dict = {}
    recall: dict = {}
    tmp = Path(tempfile.mkdtemp(prefix="genaiops-bench-"))
    try:
        for dense in ("hnsw", "flat"):
            params = StoreSpec(dense=dense)
            backend = get_backend(params)
            folder = tmp / dense
            folder.mkdir()
            t = time.perf_counter()
            if dense == "hnsw":
                backend.write(folder, texts, vectors, params)
            else:  # same lexical files (bm25 indexing is slow); a flat index like the store's
                shutil.copytree(tmp / "hnsw" / "lexical", folder / "lexical")
                flat = faiss.IndexFlatIP(vectors.shape[1])
                flat.add(vectors)
                faiss.write_index(flat, str(folder / "dense.faiss"))
            write_s = time.perf_counter() - t
            index = backend.open(folder, params)
            log(f"  {dense}: store written in {write_s:.1f} s")
            for q in queries[:20]:
                for mode in MODES:
                    index.search(q, embedder.embed([q])[0], 10, mode)
            res: dict = {"store_write_s": round(write_s, 1)}
            for mode in MODES:

                def one(q: str, m: str = mode, index=index) -> None:  # type: ignore[no-untyped-def]
                    vec = None if m == "lexical" else embedder.embed([q])[0]
                    index.search(q, vec, 10, m)

                res[mode] = percentiles(timed(one, queries))
            out[dense] = res
            if dense == "hnsw":
                built = faiss.read_index(str(folder / "dense.faiss"))
                recall = hnsw_recall(vectors, held_out, built)
                recall["build_s"] = f"{write_s:.0f} (store write, incl. bm25)"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out, recall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n_synth, n_queries = (20_000, 100) if args.quick else (100_000, 200)
    os.environ.setdefault("SCIFACT_DIR", str(scifact_dir()))
    with (scifact_dir() / "queries.jsonl").open() as f:
        all_queries = [r["text"] for r in map(json.loads, f)]
    queries = all_queries[:n_queries]
    name = "query_latency_quick" if args.quick else "query_latency"
    threads = torch_threads()

    log(f"SciFact latency, {len(queries)} queries")
    sci, real_vecs, embedder = scifact_latency(queries)
    log(f"  {json.dumps(sci)}")

    log(f"synthetic {n_synth} chunks")
    vectors = gaussian_like(real_vecs, n_synth + 1000, seed=0)
    base, held_out = vectors[:n_synth], vectors[n_synth:]
    texts = synthetic_texts(n_synth, 150, seed=1)
    synth, gauss = synthetic_latency(base, texts, queries, embedder, held_out)
    log(f"  {json.dumps(synth)}")
    result = {
        "machine": machine(),
        "quick": args.quick,
        "torch_threads": threads,
        "synthetic_chunks": n_synth,
        "scifact": sci,
        "synthetic": synth,
        "hnsw_recall": {"gaussian": gauss},
    }
    write_result(name, result)  # partial: the recall runs below take a while

    log("HNSW recall@10 vs flat")
    real_q = embedder.embed(all_queries)  # type: ignore[attr-defined]
    result["hnsw_recall"]["scifact_real"] = hnsw_recall(real_vecs, real_q)
    write_result(name, result)
    result["hnsw_recall"]["isotropic"] = hnsw_recall(
        unit(np.random.default_rng(2).standard_normal((n_synth, 384)).astype(np.float32)),
        unit(np.random.default_rng(3).standard_normal((1000, 384)).astype(np.float32)),
    )
    log(f"  {json.dumps(result['hnsw_recall'])}")
    result["machine"] = machine()
    path = write_result(name, result)
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
