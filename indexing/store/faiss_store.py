"""Local backend: FAISS (flat or HNSW, inner product on normalised vectors) + bm25s lexical.

Files in the version folder: ``dense.faiss`` (written by ``faiss.write_index`` into the staging
folder, never over a live file) and ``lexical/`` (bm25s arrays and JSON vocab, no pickle).

A search is one query, and FAISS runs it with **one** OpenMP thread: splitting a single query's
scan across threads saves little at these sizes and, when other processes hold the cores, every
parallel region waits for its slowest thread.  On the shared 2-core benchmark machine a 10k flat
search took p50 100 ms with FAISS's default (2 threads) and 0.34 ms with one, and one thread was
still 1.7x faster at 1M (docs/benchmarks.md, "Query path changes and cost curves").  The
thread count is set for the calling thread only (OpenMP keeps it per thread) and restored after
the search, so batch work elsewhere in the process keeps its threads.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from indexing.spec import StoreSpec
from indexing.store.base import Mode, rrf_fuse

__all__ = ["FaissBackend", "FaissIndex", "single_thread"]


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """FAISS (OpenMP) work in the ``with`` block runs on one thread (this thread's setting)."""
    import faiss

    prev = faiss.omp_get_max_threads()
    if prev == 1:
        yield
        return
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(prev)


def _stemmer(params: StoreSpec) -> Any:
    if not params.stemming:
        return None
    import Stemmer

    return Stemmer.Stemmer("english")


def _tokenize(texts: Sequence[str], params: StoreSpec) -> list[list[str]]:
    import bm25s

    out = bm25s.tokenize(
        list(texts), stopwords="en", stemmer=_stemmer(params), return_ids=False, show_progress=False
    )
    return [list(t) for t in out]


class FaissIndex:
    """An opened local version: FAISS for dense, bm25s for lexical, RRF for hybrid."""

    def __init__(self, folder: Path, params: StoreSpec):
        import bm25s
        import faiss

        self.params = params
        dense: Any = faiss.read_index(str(folder / "dense.faiss"))
        if params.dense == "hnsw":
            dense.hnsw.efSearch = params.hnsw_ef_search
        self._dense = dense
        self._n = int(self._dense.ntotal)
        lex = folder / "lexical"
        self._lex = bm25s.BM25.load(str(lex), show_progress=False) if self._n else None

    @property
    def size(self) -> int:
        """Number of rows (chunks)."""
        return self._n

    def _dense_search(
        self, vector: np.ndarray, k: int, allowed: Sequence[int] | None
    ) -> list[tuple[int, float]]:
        import faiss

        if self._n == 0 or k <= 0:
            return []
        q = np.ascontiguousarray(np.asarray(vector, dtype=np.float32).reshape(1, -1))
        kwargs: dict[str, Any] = {}
        if allowed is not None:
            if not allowed:
                return []
            sel = faiss.IDSelectorBatch(np.asarray(sorted(set(allowed)), dtype=np.int64))
            fx: Any = faiss  # the stubs lack the SearchParameters keyword constructors
            if self.params.dense == "hnsw":
                sp = fx.SearchParametersHNSW(sel=sel, efSearch=self.params.hnsw_ef_search)
            else:
                sp = fx.SearchParameters(sel=sel)
            kwargs["params"] = sp
        with single_thread():
            scores, ids = self._dense.search(q, min(k, self._n), **kwargs)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]

    def _lexical_search(
        self, text: str, k: int, allowed: Sequence[int] | None
    ) -> list[tuple[int, float]]:
        if self._lex is None or k <= 0:
            return []
        tokens = _tokenize([text], self.params)[0]
        vocab = self._lex.vocab_dict
        tokens = [t for t in tokens if t in vocab]
        if not tokens:
            return []
        scores = np.asarray(self._lex.get_scores(tokens), dtype=np.float32)
        if allowed is not None:
            mask = np.full(scores.shape, -np.inf, dtype=np.float32)
            idx = np.asarray(list(allowed), dtype=np.int64)
            mask[idx] = scores[idx]
            scores = mask
        k = min(k, scores.shape[0])
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(i), float(scores[i])) for i in top if scores[i] > 0]

    def search(
        self,
        text: str,
        vector: np.ndarray | None,
        k: int,
        mode: Mode,
        allowed: Sequence[int] | None = None,
    ) -> list[tuple[int, float]]:
        """Best ``k`` rows as (row, score), best first; ``allowed`` restricts rows (filters)."""
        if mode == "lexical":
            return self._lexical_search(text, k, allowed)
        if vector is None:
            raise ValueError(f"mode {mode!r} needs a query vector")
        if mode == "dense":
            return self._dense_search(vector, k, allowed)
        depth = max(k, self.params.hybrid_depth)
        return rrf_fuse(
            [
                self._dense_search(vector, depth, allowed),
                self._lexical_search(text, depth, allowed),
            ],
            k,
            self.params.rrf_k,
        )


class FaissBackend:
    """The local backend: everything lives in the version folder, nothing outside it."""

    name = "faiss"

    def write(
        self, folder: Path, texts: Sequence[str], vectors: np.ndarray, params: StoreSpec
    ) -> None:
        """Write ``dense.faiss`` and ``lexical/`` into the staging ``folder``."""
        import bm25s
        import faiss

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        dim = int(vectors.shape[1]) if vectors.ndim == 2 and vectors.shape[1] else 1
        index: Any
        if params.dense == "hnsw":
            index = faiss.IndexHNSWFlat(dim, params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = params.hnsw_ef_construction
        else:
            index = faiss.IndexFlatIP(dim)
        if len(texts):
            index.add(vectors)
        faiss.write_index(index, str(folder / "dense.faiss"))
        if len(texts):
            lex = bm25s.BM25(k1=params.bm25_k1, b=params.bm25_b)
            lex.index(_tokenize(texts, params), show_progress=False)
            lex.save(str(folder / "lexical"), show_progress=False)

    def open(self, folder: Path, params: StoreSpec) -> FaissIndex:
        """Open a written version for search."""
        return FaissIndex(folder, params)

    def delete(self, folder: Path) -> None:
        """Nothing to free: deleting the folder deletes everything."""
        return None
