"""Versioned, promotable document indexes and the retrieval API flows use.

>>> from indexing import build_index, load_index_spec, retrieve
"""

from indexing.build import BuildResult, build_index, compute_version_id
from indexing.catalog import Catalog
from indexing.retrieval import RetrievedChunk, Retriever, retrieve
from indexing.spec import IndexSpec, adhoc_spec, load_index_spec

__all__ = [
    "BuildResult",
    "Catalog",
    "IndexSpec",
    "RetrievedChunk",
    "Retriever",
    "adhoc_spec",
    "build_index",
    "compute_version_id",
    "load_index_spec",
    "retrieve",
]
