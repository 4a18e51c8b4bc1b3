"""Cost curves of the local store: write time, peak memory, disk and query latency vs index size.

For each size (default 10k, 100k, 1M chunks) and dense kind (flat, HNSW with the StoreSpec
defaults M=32, efConstruction=80, efSearch=64) one **fresh subprocess** generates the data,
writes the store with ``FaissBackend.write`` (FAISS index + bm25s lexical index, exactly what a
build's store stage does), and times single-query searches on the opened ``FaissIndex``:

* vectors: 384-d draws from a Gaussian fitted (mean + covariance) to the real SciFact chunk
  embeddings of the ``bench/query_path.py`` torch index when it exists (isotropic unit vectors
  otherwise; the result says which), L2-normalised; texts: ``--words`` words sampled from
  SciFact's unigram distribution.  The hits are meaningless: only costs are measured.
* ``store_write_s``: wall time of ``FaissBackend.write``; ``peak_rss_mb``: the process's peak
  RSS (``ru_maxrss``), ``data_rss_mb``: its RSS just before the write (the generated inputs),
  so ``peak - data`` is what the write itself needed; ``disk_mb``: the written folder.
* query latency p50/p99 over ``--queries`` searches per mode (held-out draws as query vectors,
  real SciFact query texts for lexical), plus ``dense_default_omp``: the same dense searches
  with FAISS's default OpenMP thread count (the store before it pinned one thread per query).

HNSW is skipped above ``--hnsw-max`` chunks (building it at 1M takes hours on two shared
cores); the result extrapolates its write time from the measured sizes (n log n) and marks it.
PNGs are drawn from the result file into ``docs/img/``.

    nice python bench/cost_curves.py [--sizes 10000 100000 1000000] [--plot-only]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import RESULTS, ROOT, log, machine, peak_rss_mb, percentiles, scifact_dir, write_result

IMG = ROOT / "docs" / "img"
MODES = ("dense", "lexical", "hybrid")
DIM = 384
GEN_BLOCK = 50_000


def real_vectors() -> np.ndarray | None:
    """The SciFact chunk embeddings of bench/query_path.py's torch index, if it was built."""
    import faiss

    from indexing import Catalog

    home = RESULTS / "query_path" / "home"
    try:
        cat = Catalog("scifact-torch", home=home)
        folder = cat.version_dir(cat.resolve("current"))
    except Exception:  # noqa: BLE001 - any missing piece means: no real vectors here
        return None
    flat = faiss.read_index(str(folder / "dense.faiss"))
    return flat.reconstruct_n(0, flat.ntotal)


def vectors(n: int, seed: int, real: np.ndarray | None) -> np.ndarray:
    """``n`` unit vectors, generated in blocks so 1M draws never hold float64 copies at once."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, DIM), dtype=np.float32)
    chol = None
    if real is not None:
        mean = real.mean(axis=0)
        chol = np.linalg.cholesky(np.cov(real, rowvar=False) + 1e-6 * np.eye(DIM))
    for s in range(0, n, GEN_BLOCK):
        z = rng.standard_normal((min(GEN_BLOCK, n - s), DIM))
        block = z if chol is None else mean + z @ chol.T
        out[s : s + len(block)] = block
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def texts(n: int, words: int, seed: int) -> list[str]:
    """``n`` texts of ``words`` words drawn from SciFact's unigram distribution, in blocks."""
    from query_latency import scifact_unigrams

    vocab, p = scifact_unigrams()
    rng = np.random.default_rng(seed)
    out: list[str] = []
    for s in range(0, n, GEN_BLOCK):
        draws = rng.choice(len(vocab), size=(min(GEN_BLOCK, n - s), words), p=p)
        out.extend(" ".join(row) for row in vocab[draws])
    return out


def rss_mb() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss / 1024**2)


def child(n: int, dense: str, words: int, n_queries: int) -> dict:
    """One size x dense kind, in this (fresh) process: write, measure, search."""
    import bm25s  # noqa: F401 - imported before the timed write, as a long-running build has
    import faiss
    import Stemmer  # noqa: F401

    from indexing.spec import StoreSpec
    from indexing.store import get_backend

    real = real_vectors()
    vecs = vectors(n + n_queries, 0, real)
    base, qvecs = vecs[:n], vecs[n:]
    docs = texts(n, words, 1)
    with (scifact_dir() / "queries.jsonl").open() as f:
        qtexts = [r["text"] for r in map(json.loads, f)][:n_queries]
    params = StoreSpec(dense=dense)  # type: ignore[arg-type]
    backend = get_backend(params)
    tmp = Path(tempfile.mkdtemp(prefix="genaiops-cost-"))
    try:
        data_rss = rss_mb()
        t = time.perf_counter()
        backend.write(tmp, docs, base, params)
        write_s = time.perf_counter() - t
        peak = peak_rss_mb()
        disk = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file()) / 1024**2
        del docs
        index: object = backend.open(tmp, params)
        search = index.search  # type: ignore[attr-defined]
        for i in range(20):  # warm up
            for mode in MODES:
                search(qtexts[i], qvecs[i], 10, mode)
        res: dict = {
            "n": n,
            "kind": dense,
            "vectors": "gaussian fitted to SciFact" if real is not None else "isotropic",
            "store_write_s": round(write_s, 2),
            "data_rss_mb": round(data_rss),
            "peak_rss_mb": round(peak),
            "disk_mb": round(disk, 1),
        }
        for mode in MODES:
            ts = []
            for q, v in zip(qtexts, qvecs, strict=True):
                t = time.perf_counter()
                search(q, v, 10, mode)
                ts.append(time.perf_counter() - t)
            res[mode] = percentiles(ts)
        raw = index._dense  # type: ignore[attr-defined]
        ts = []
        for v in qvecs:  # the old behaviour: FAISS's default thread count for one query
            q = np.ascontiguousarray(v.reshape(1, -1))
            t = time.perf_counter()
            raw.search(q, 10)
            ts.append(time.perf_counter() - t)
        res["dense_default_omp"] = {**percentiles(ts), "omp_threads": faiss.omp_get_max_threads()}
        return res
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def child_dense_only(n: int, n_queries: int) -> dict:
    """Above ``--lexical-max``: the flat FAISS part alone (what ``FaissBackend.write`` does for
    dense: ``IndexFlatIP.add`` + ``write_index``), then single-query search on one thread (the
    store's way) and on FAISS's default thread count."""
    import faiss

    from indexing.store.faiss_store import single_thread

    real = real_vectors()
    vecs = vectors(n + n_queries, 0, real)
    base, qvecs = vecs[:n], vecs[n:]
    tmp = Path(tempfile.mkdtemp(prefix="genaiops-cost-"))
    try:
        data_rss = rss_mb()
        t = time.perf_counter()
        index = faiss.IndexFlatIP(DIM)
        index.add(base)
        faiss.write_index(index, str(tmp / "dense.faiss"))
        write_s = time.perf_counter() - t
        del index
        peak = peak_rss_mb()
        disk = (tmp / "dense.faiss").stat().st_size / 1024**2
        index = faiss.read_index(str(tmp / "dense.faiss"))
        res: dict = {
            "n": n,
            "kind": "flat",
            "dense_only": True,
            "vectors": "gaussian fitted to SciFact" if real is not None else "isotropic",
            "store_write_s": round(write_s, 2),
            "data_rss_mb": round(data_rss),
            "peak_rss_mb": round(peak),
            "disk_mb": round(disk, 1),
        }
        for key, one in (("dense", True), ("dense_default_omp", False)):
            ts = []
            for v in qvecs:
                q = np.ascontiguousarray(v.reshape(1, -1))
                t = time.perf_counter()
                if one:
                    with single_thread():
                        index.search(q, 10)
                else:
                    index.search(q, 10)
                ts.append(time.perf_counter() - t)
            res[key] = percentiles(ts)
        res["dense_default_omp"]["omp_threads"] = faiss.omp_get_max_threads()
        return res
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def extrapolate(rows: list[dict], sizes: list[int]) -> list[dict]:
    """Store write time at sizes not measured in full, from the largest measured size ``m``:
    flat (bm25-dominated) scaled linearly, HNSW = that + its graph part (HNSW write - flat
    write at ``m``) scaled n log n.  Marked ``extrapolated``."""
    full = [r for r in rows if not r.get("dense_only") and not r.get("extrapolated")]
    flat = {r["n"]: r["store_write_s"] for r in full if r["kind"] == "flat"}
    hnsw = {r["n"]: r["store_write_s"] for r in full if r["kind"] == "hnsw"}
    both = sorted(set(flat) & set(hnsw))
    if not both:
        return []
    m = both[-1]
    graph = hnsw[m] - flat[m]
    out = []
    for n in sizes:
        flat_n = flat.get(n, flat[m] * n / m)
        if n not in flat:
            out.append(
                {"n": n, "kind": "flat", "extrapolated": True, "store_write_s": round(flat_n)}
            )
        if n not in hnsw:
            est = flat_n + graph * (n * math.log(n)) / (m * math.log(m))
            out.append({"n": n, "kind": "hnsw", "extrapolated": True, "store_write_s": round(est)})
    return out


def plot(result: dict) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    IMG.mkdir(parents=True, exist_ok=True)
    rows = result["rows"]
    paths = []

    def series(dense: str, key: str, measured_only: bool = True) -> tuple[list, list]:
        pts = sorted(
            (r["n"], r[key])
            for r in rows
            if r["kind"] == dense
            and key in r
            and not r.get("dense_only")
            and not (measured_only and r.get("extrapolated"))
        )
        return [p[0] for p in pts], [p[1] for p in pts]

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for dense, style in (("flat", "o-"), ("hnsw", "s-")):
        axes[0].plot(*series(dense, "store_write_s"), style, label=f"{dense} (dense + bm25)")
        axes[1].plot(*series(dense, "peak_rss_mb"), style, label=f"{dense}: peak RSS")
    for dense, mk, color, how in (
        ("flat", "o", "tab:blue", "linear"),
        ("hnsw", "s", "tab:orange", "n log n"),
    ):
        est = [r for r in rows if r.get("extrapolated") and r["kind"] == dense]
        if est:
            axes[0].plot(
                [r["n"] for r in est], [r["store_write_s"] for r in est], mk, mfc="none",
                color=color, label=f"{dense}, extrapolated ({how})",
            )  # fmt: skip
    only = sorted((r["n"], r) for r in rows if r.get("dense_only"))
    if only:
        for ax, key in ((axes[0], "store_write_s"), (axes[1], "peak_rss_mb")):
            ax.plot(
                [n for n, _ in only], [r[key] for _, r in only], "D", color="tab:blue",
                mfc="none", label="flat, dense part only (no bm25)",
            )  # fmt: skip
    axes[1].plot(*series("flat", "data_rss_mb"), "k:", label="inputs in memory (before write)")
    axes[0].set(title="Store write time", xlabel="chunks", ylabel="seconds")
    axes[1].set(title="Peak memory of the writing process", xlabel="chunks", ylabel="MiB")
    paths.append(finish(fig, axes, result["caption"], "cost_build.png"))

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for i, pct in enumerate(("p50_ms", "p99_ms")):
        ax = axes[i]
        for dense, style in (("flat", "-"), ("hnsw", "--")):
            for mode, mk in (("dense", "o"), ("lexical", "^"), ("hybrid", "s")):
                if mode == "lexical" and dense == "hnsw":
                    continue  # the same bm25 index: one line
                pts = sorted(
                    (r["n"], r[mode][pct]) for r in rows if r["kind"] == dense and mode in r
                )
                if pts:
                    label = mode if mode == "lexical" else f"{mode}, {dense}"
                    ax.plot(*zip(*pts, strict=True), mk + style, label=label)
        pts = sorted(
            (r["n"], r["dense_default_omp"][pct])
            for r in rows
            if r["kind"] == "flat" and "dense_default_omp" in r
        )
        if pts:
            ax.plot(*zip(*pts, strict=True), "x:", color="grey", label="dense, flat, default OMP")
        ax.set(title=f"Single-query search {pct[:3]}", xlabel="chunks", ylabel="ms")
    paths.append(finish(fig, axes, result["caption"], "cost_query.png"))
    return paths


def finish(fig: Any, axes: Any, caption: str, name: str) -> Path:
    """Log-log axes with a grid and legend, the machine caption, saved under docs/img."""
    import matplotlib.pyplot as plt

    for ax in axes:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(caption, fontsize=8)
    fig.tight_layout()
    path = IMG / name
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--hnsw-max", type=int, default=100_000)
    ap.add_argument("--lexical-max", type=int, default=100_000, help="above: dense flat only")
    ap.add_argument("--words", type=int, default=100)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--plot-only", action="store_true")
    ap.add_argument("--child", nargs=2, metavar=("N", "DENSE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ.setdefault("SCIFACT_DIR", str(scifact_dir()))
    os.environ.setdefault("GENAIOPS_HOME", str(RESULTS / "cost_curves" / "home"))
    if args.child:
        n, kind = int(args.child[0]), args.child[1]
        if kind == "flat-dense-only":
            print(json.dumps(child_dense_only(n, args.queries)))
        else:
            print(json.dumps(child(n, kind, args.words, args.queries)))
        return

    path = RESULTS / "cost_curves.json"
    result: dict = json.loads(path.read_text()) if path.exists() else {"rows": []}
    if not args.plot_only:
        for n in args.sizes:
            for dense in ("flat", "hnsw"):
                if dense == "hnsw" and n > args.hnsw_max:
                    continue
                t = time.perf_counter()
                kind = "flat-dense-only" if n > args.lexical_max else dense
                cmd = [sys.executable, __file__, "--child", str(n), kind]
                cmd += ["--words", str(args.words), "--queries", str(args.queries)]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode:
                    log(f"{n} {dense}: failed ({proc.returncode}): {proc.stderr[-500:]}")
                    continue
                row = json.loads(proc.stdout.strip().splitlines()[-1])
                row["load_after"] = machine()["load"]
                result["rows"] = [
                    r for r in result["rows"] if (r["n"], r["kind"]) != (n, dense)
                ] + [row]
                log(f"{n} {dense}: {time.perf_counter() - t:.0f} s {json.dumps(row)}")
                write_result("cost_curves", result)
        result["rows"] = [r for r in result["rows"] if not r.get("extrapolated")]
        result["rows"] += extrapolate(result["rows"], sorted({r["n"] for r in result["rows"]}))
        m = machine()
        result["machine"] = m
        result["words_per_chunk"] = args.words
        result["caption"] = (
            f"{m['cpu']}, {m['cores']} cores (shared, load {m['load'][0]}), {m['ram']}; "
            f"{args.words}-word synthetic chunks, 384-d vectors; python bench/cost_curves.py"
        )
        write_result("cost_curves", result)
    for p in plot(result):
        log(f"wrote {p}")


if __name__ == "__main__":
    main()
