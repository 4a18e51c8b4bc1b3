"""Search backends behind :class:`~indexing.store.base.SearchBackend`."""

from indexing.spec import StoreSpec
from indexing.store.base import Mode, SearchBackend, SearchIndex, rrf_fuse
from indexing.store.faiss_store import FaissBackend

__all__ = ["FaissBackend", "Mode", "SearchBackend", "SearchIndex", "get_backend", "rrf_fuse"]


def get_backend(params: StoreSpec) -> SearchBackend:
    """The backend for ``params.kind``: the one place that knows the concrete classes."""
    if params.kind == "faiss":
        return FaissBackend()
    raise ValueError(f"unknown store kind {params.kind!r}")  # pragma: no cover (spec forbids)
