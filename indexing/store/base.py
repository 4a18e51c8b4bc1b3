"""The search-store seam: one ``Protocol``, one contract-test suite for every backend.

A backend writes a version's search structures from chunks and their vectors into a staging
folder (the catalog renames that folder into place atomically), and later opens them for search.
Rows are the 0-based positions of ``chunks`` as given to :meth:`SearchBackend.write`; chunk
metadata lives in the catalog, not in the backend.  A remote backend (Azure AI Search, in a later
issue) creates its remote index in ``write`` and leaves a pointer file in the folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from indexing.spec import StoreSpec

__all__ = ["Mode", "SearchBackend", "SearchIndex", "rrf_fuse"]

Mode = Literal["dense", "lexical", "hybrid"]


@runtime_checkable
class SearchIndex(Protocol):
    """One opened version's search structures; the retriever knows only this protocol."""

    @property
    def size(self) -> int:
        """Number of rows (chunks)."""
        ...

    def search(
        self,
        text: str,
        vector: np.ndarray | None,
        k: int,
        mode: Mode,
        allowed: Sequence[int] | None = None,
    ) -> list[tuple[int, float]]:
        """Best ``k`` rows as (row, score), best first; ``allowed`` restricts rows (filters)."""
        ...


@runtime_checkable
class SearchBackend(Protocol):
    """Writes and opens search structures; every backend passes ``indexing.testing``."""

    name: str

    def write(
        self, folder: Path, texts: Sequence[str], vectors: np.ndarray, params: StoreSpec
    ) -> None:
        """Build the structures for ``texts`` (row i = texts[i]) into the staging ``folder``."""
        ...

    def open(self, folder: Path, params: StoreSpec) -> SearchIndex:
        """Open what :meth:`write` left in ``folder``, for search."""
        ...

    def delete(self, folder: Path) -> None:
        """Free anything held outside ``folder`` (nothing for local backends)."""
        ...


def rrf_fuse(
    rankings: Sequence[Sequence[tuple[int, float]]], k: int, rrf_k: int = 60
) -> list[tuple[int, float]]:
    """Reciprocal-rank fusion: score(row) = sum over rankings of 1 / (rrf_k + rank)."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, (row, _) in enumerate(ranking, start=1):
            scores[row] = scores.get(row, 0.0) + 1.0 / (rrf_k + rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
