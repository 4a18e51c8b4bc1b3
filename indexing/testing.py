"""Reusable contract tests for :class:`~indexing.store.base.SearchBackend` implementations.

Every backend (FAISS today, Azure AI Search later) runs the same suite by subclassing::

    class TestFaissContract(SearchBackendContract):
        @pytest.fixture
        def backend(self):
            return FaissBackend()

The suite uses small hand-made vectors so it checks ranking semantics, not model quality.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from indexing.spec import StoreSpec
from indexing.store.base import SearchBackend

__all__ = ["SearchBackendContract"]

TEXTS = [
    "apples and pears are fruit",
    "the rotation of log files",
    "kernel panic on boot",
    "fruit salad with apples",
    "network timeout while shipping logs",
]


def _vectors() -> np.ndarray:
    rng = np.random.default_rng(7)
    v = rng.normal(size=(len(TEXTS), 16)).astype(np.float32)
    v[3] = v[0] + 0.1 * rng.normal(size=16)  # row 3 is the dense neighbour of row 0
    return v / np.linalg.norm(v, axis=1, keepdims=True)


class SearchBackendContract:
    """Subclass and provide a ``backend`` fixture (and optionally ``params``)."""

    @pytest.fixture
    def params(self) -> StoreSpec:
        return StoreSpec()

    @pytest.fixture
    def written(self, backend: SearchBackend, params: StoreSpec, tmp_path: Path) -> Path:
        backend.write(tmp_path, TEXTS, _vectors(), params)
        return tmp_path

    def test_size(self, backend: SearchBackend, params: StoreSpec, written: Path) -> None:
        assert backend.open(written, params).size == len(TEXTS)

    def test_dense_exact_match_first(
        self, backend: SearchBackend, params: StoreSpec, written: Path
    ) -> None:
        index = backend.open(written, params)
        vecs = _vectors()
        hits = index.search("", vecs[2], 3, "dense")
        assert hits[0][0] == 2
        assert hits[0][1] == pytest.approx(1.0, abs=1e-4)
        assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
        assert index.search("", vecs[0], 2, "dense")[1][0] == 3

    def test_lexical(self, backend: SearchBackend, params: StoreSpec, written: Path) -> None:
        index = backend.open(written, params)
        hits = index.search("rotating logs", None, 3, "lexical")
        assert hits and hits[0][0] == 1
        assert index.search("zzzz unknownword", None, 3, "lexical") == []

    def test_hybrid_fuses_both(
        self, backend: SearchBackend, params: StoreSpec, written: Path
    ) -> None:
        index = backend.open(written, params)
        vecs = _vectors()
        # lexical finds only row 1, dense ranks row 2 first: both lead the fused ranking
        hits = index.search("rotation", vecs[2], 2, "hybrid")
        assert {r for r, _ in hits} == {1, 2}

    def test_k_larger_than_corpus(
        self, backend: SearchBackend, params: StoreSpec, written: Path
    ) -> None:
        index = backend.open(written, params)
        assert len(index.search("", _vectors()[0], 50, "dense")) == len(TEXTS)

    def test_allowed_rows_filter(
        self, backend: SearchBackend, params: StoreSpec, written: Path
    ) -> None:
        index = backend.open(written, params)
        vecs = _vectors()
        for mode in ("dense", "lexical", "hybrid"):
            hits = index.search("apples fruit", vecs[0], 5, mode, allowed=[3, 4])
            assert hits and {r for r, _ in hits} <= {3, 4}, mode
            assert index.search("apples", vecs[0], 5, mode, allowed=[]) == []

    def test_empty_store(self, backend: SearchBackend, params: StoreSpec, tmp_path: Path) -> None:
        backend.write(tmp_path, [], np.zeros((0, 16), dtype=np.float32), params)
        index = backend.open(tmp_path, params)
        assert index.size == 0
        assert index.search("anything", _vectors()[0], 5, "hybrid") == []
