"""Search backends behind :class:`~indexing.store.base.SearchBackend`.

``faiss`` keeps everything in the version folder; ``azure_search`` keeps the documents in an
Azure AI Search service and a pointer file in the folder.  The catalog calls
:func:`promote_remote` when an alias moves and :func:`release_remote` before it deletes a
version folder, so a remote backend can mirror aliases and free (or refuse to free) its index.
"""

from pathlib import Path

from indexing.spec import StoreSpec
from indexing.store.base import Mode, SearchBackend, SearchIndex, rrf_fuse
from indexing.store.faiss_store import FaissBackend

__all__ = [
    "FaissBackend",
    "Mode",
    "SearchBackend",
    "SearchIndex",
    "get_backend",
    "promote_remote",
    "release_remote",
    "rrf_fuse",
]

AZURE_POINTER = "azure_search.json"  # = indexing.store.azure_search.POINTER (no SDK import here)


def get_backend(params: StoreSpec) -> SearchBackend:
    """The backend for ``params.kind``: the one place that knows the concrete classes."""
    if params.kind == "faiss":
        return FaissBackend()
    if params.kind == "azure_search":
        from indexing.store.azure_search import AzureSearchBackend

        return AzureSearchBackend()
    raise ValueError(f"unknown store kind {params.kind!r}")  # pragma: no cover (spec forbids)


def promote_remote(folder: Path, index: str, alias: str) -> None:
    """Point the service-side alias of a remote version at it; nothing for local versions."""
    if (folder / AZURE_POINTER).is_file():
        from indexing.store.azure_search import AzureSearchBackend

        AzureSearchBackend().promote(folder, index, alias)


def release_remote(folder: Path) -> None:
    """Free a remote version's service index before its folder goes (AliasError if aliased)."""
    if (folder / AZURE_POINTER).is_file():
        from indexing.store.azure_search import AzureSearchBackend

        AzureSearchBackend().delete(folder)
