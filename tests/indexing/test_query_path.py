"""The query path's caches: the alias is re-read only when its file changes; FAISS thread scope."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from genaiops.errors import VersionNotFound
from indexing import Catalog, IndexSpec, Retriever, build_index, load_index_spec
from indexing.store.faiss_store import single_thread


def _count_resolves(r: Retriever) -> list[str]:
    """Record each alias resolution the retriever makes (the real resolve still runs)."""
    calls: list[str] = []
    real = r.catalog.resolve

    def spy(ref: str) -> str:
        calls.append(ref)
        return real(ref)

    r.catalog.resolve = spy  # type: ignore[method-assign]
    return calls


def _tiny_spec(tmp_path: Path) -> tuple[IndexSpec, Path]:
    """Two short documents: builds in well under a second once the model is loaded."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "ports.md").write_text("# Ports\n\nThe admin API listens on port 7700.\n")
    (docs / "rotation.md").write_text("# Rotation\n\nLogs rotate daily at midnight.\n")
    path = tmp_path / "tiny.yaml"
    path.write_text(
        f"name: tiny\nsources:\n  - path: {docs}\n    glob: '*.md'\n"
        "chunker: {size: 64, overlap: 0}\nembedder: {provider: local}\n"
        "store: {kind: faiss, dense: flat}\n"
    )
    return load_index_spec(path), docs


def test_alias_is_resolved_once_until_it_moves(tmp_path: Path) -> None:
    spec, docs = _tiny_spec(tmp_path)
    v1 = build_index(spec, promote="current").version_id
    (docs / "ports.md").write_text("# Ports\n\nThe admin API listens on port 7701.\n")
    v2 = build_index(spec).version_id
    r = Retriever("tiny", "current")
    calls = _count_resolves(r)
    for _ in range(3):
        assert r.retrieve("admin port", k=1, mode="lexical")[0].version_id == v1
    assert calls == ["current"]  # the alias file did not change: no second read

    cat = Catalog("tiny")
    cat.promote(v2, "current")
    assert r.retrieve("admin port", k=1, mode="lexical")[0].version_id == v2
    assert r.version_id == v2
    cat.rollback("current")  # same alias, back to v1: a new file again
    assert r.retrieve("admin port", k=1, mode="lexical")[0].version_id == v1
    assert len(calls) == 3

    cat.alias_file("current").unlink()
    with pytest.raises(VersionNotFound):
        r.retrieve("admin port", k=1, mode="lexical")

    pinned = Retriever("tiny", v2)  # a version id is resolved once: versions never change
    pinned_calls = _count_resolves(pinned)
    for _ in range(3):
        assert pinned.retrieve("admin port", k=1)[0].version_id == v2
    assert pinned_calls == [v2]


def test_single_thread_scopes_faiss_threads_to_the_block() -> None:
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(2)
    try:
        with single_thread():
            assert faiss.omp_get_max_threads() == 1
        assert faiss.omp_get_max_threads() == 2
        with pytest.raises(RuntimeError), single_thread():
            raise RuntimeError("a failed search still restores the setting")
        assert faiss.omp_get_max_threads() == 2

        seen: list[int] = []  # another thread's setting is its own

        def other_thread() -> None:
            t = threading.Thread(target=lambda: seen.append(faiss.omp_get_max_threads()))
            t.start()
            t.join()

        other_thread()
        with single_thread():
            other_thread()
        assert seen[1] == seen[0]
    finally:
        faiss.omp_set_num_threads(before)


def test_single_thread_search_matches_default_threads() -> None:
    import faiss

    rng = np.random.default_rng(0)
    base = rng.standard_normal((2000, 32)).astype(np.float32)
    q = rng.standard_normal((1, 32)).astype(np.float32)
    flat = faiss.IndexFlatIP(32)
    flat.add(base)
    want = flat.search(q, 10)
    with single_thread():
        got = flat.search(q, 10)
    assert np.array_equal(want[1], got[1]) and np.allclose(want[0], got[0])
