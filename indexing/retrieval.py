"""The retrieval API flows and evaluation call.

    >>> from indexing import retrieve
    >>> hits = retrieve("How do I open a file?", k=5, mode="hybrid", index="sample")
    ...                                                                  # doctest: +SKIP
    >>> hits[0].doc_id, hits[0].score, hits[0].version_id               # doctest: +SKIP

A :class:`Retriever` loads the version an alias points at once per process and checks the alias
file on every call with one ``stat``: while its (inode, size, times) stay the same the resolved
version is reused, so a query reads no JSON and lists no folder; when the alias moves (an atomic
replace makes a new file) the next call resolves it again and loads the new version.  A pinned
version id is resolved once: published versions never change.
Each call is an ``indexing.retrieve`` span (:mod:`genaiops.tracing`: index, alias, version,
mode, k, hits).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from genaiops import tracing
from genaiops.errors import ConfigError
from genaiops.providers.embeddings import (
    Embedder,
    EmbedderConfig,
    config_for_model_id,
    make_embedder,
)
from indexing.catalog import Catalog, read_chunks
from indexing.spec import StoreSpec, is_name
from indexing.store import Mode, SearchIndex, get_backend

__all__ = ["RetrievedChunk", "Retriever", "retrieve"]

FILTER_KEYS = {"doc_id", "source", "title", "url", "doc_id_prefix"}


@dataclass(frozen=True)
class RetrievedChunk:
    """One hit with its provenance (version, document, offsets), so answers can cite it."""

    text: str
    score: float
    version_id: str
    doc_id: str
    chunk_id: str
    title: str
    url: str
    source: str
    headings: tuple[str, ...]
    start: int
    end: int

    def to_dict(self) -> dict[str, Any]:
        """Plain fields, for JSON output."""
        d = asdict(self)
        d["headings"] = list(self.headings)
        return d


class _Loaded:
    """One opened version: search structures, chunk table and the embedder it was built with."""

    def __init__(self, catalog: Catalog, version_id: str):
        self.version_id = version_id
        folder = catalog.version_dir(version_id)
        manifest = catalog.manifest(version_id)
        self.params: StoreSpec = manifest.spec.store
        self.model_id = manifest.model_id
        # query with the backend the version was built with (its model id), whatever ``auto``
        # means today: versions from before backends existed say nothing and were torch
        self.embedder_config: EmbedderConfig = config_for_model_id(
            manifest.spec.embedder, self.model_id
        )
        self.index: SearchIndex = get_backend(self.params).open(folder, self.params)
        self.db = sqlite3.connect(
            f"file:{folder / 'chunks.sqlite'}?mode=ro", uri=True, check_same_thread=False
        )
        self.lock = threading.Lock()

    def allowed_rows(self, filters: dict[str, Any]) -> list[int]:
        unknown = set(filters) - FILTER_KEYS
        if unknown:
            raise ConfigError(f"unknown filter keys {sorted(unknown)}; use {sorted(FILTER_KEYS)}")
        where, args = [], []
        for key, value in filters.items():
            if key == "doc_id_prefix":
                where.append("doc_id LIKE ? ESCAPE '\\'")
                esc = str(value).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                args.append(esc + "%")
            elif isinstance(value, list | tuple | set):
                where.append(f"{key} IN ({','.join('?' * len(value))})")
                args.extend(str(v) for v in value)
            else:
                where.append(f"{key} = ?")
                args.append(str(value))
        sql = "SELECT row FROM chunks WHERE " + " AND ".join(where)
        with self.lock:
            return [int(r[0]) for r in self.db.execute(sql, args)]


class Retriever:
    """Retrieval over ``index`` at ``alias`` (or a pinned version id)."""

    def __init__(
        self,
        index: str = "default",
        alias: str = "current",
        home: Path | None = None,
        embedder: Embedder | None = None,
    ):
        self.catalog = Catalog(index, home=home)
        self.alias = alias
        self._embedder = embedder
        self._loaded: _Loaded | None = None
        self._stamp: tuple[int, ...] | None = None  # alias file stat when _loaded was resolved
        self._lock = threading.Lock()

    def _alias_stamp(self) -> tuple[int, ...] | None:
        """(device, inode, size, mtime, ctime) of the alias file; None when there is none."""
        if not is_name(self.alias):
            return None
        try:
            st = os.stat(self.catalog.alias_file(self.alias))
        except OSError:
            return None
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def _current(self) -> _Loaded:
        loaded = self._loaded
        if loaded is not None and loaded.version_id == self.alias:
            return loaded  # pinned to a published version: immutable
        stamp = self._alias_stamp()
        if loaded is not None and stamp is not None and stamp == self._stamp:
            return loaded
        # stat first, read after: the version read is at least as new as the stamp kept
        version = self.catalog.resolve(self.alias)
        with self._lock:
            if self._loaded is None or self._loaded.version_id != version:
                self._loaded = _Loaded(self.catalog, version)
            self._stamp = stamp
            return self._loaded

    def _embed(self, loaded: _Loaded, query: str) -> Any:
        if self._embedder is None or self._embedder.model_id != loaded.model_id:
            self._embedder = make_embedder(loaded.embedder_config)
        if self._embedder.model_id != loaded.model_id:
            raise ConfigError(
                f"index was embedded with {loaded.model_id}, "
                f"but the configured embedder is {self._embedder.model_id}"
            )
        return self._embedder.embed([query])[0]

    @property
    def version_id(self) -> str:
        """The version the alias points at now (loading it if the alias moved)."""
        return self._current().version_id

    def retrieve(
        self, query: str, k: int = 5, mode: Mode = "hybrid", filters: dict[str, Any] | None = None
    ) -> list[RetrievedChunk]:
        """The best ``k`` chunks for ``query``; ``filters`` restrict by metadata first."""
        attrs = {"genaiops.index": self.catalog.name, "genaiops.index_alias": self.alias}
        with tracing.span("indexing.retrieve", {**attrs, "genaiops.retrieval.k": k}) as sp:
            hits = self._retrieve(query, k, mode, filters)
            if sp.is_recording():
                sp.set_attribute("genaiops.retrieval.mode", str(mode))
                sp.set_attribute("genaiops.retrieval.hits", len(hits))
                if hits:
                    sp.set_attribute("genaiops.index_version", hits[0].version_id)
            return hits

    def _retrieve(
        self, query: str, k: int, mode: Mode, filters: dict[str, Any] | None
    ) -> list[RetrievedChunk]:
        if mode not in ("dense", "lexical", "hybrid"):
            raise ConfigError(f"mode must be dense, lexical or hybrid, not {mode!r}")
        if k < 1:
            raise ConfigError("k must be at least 1")
        loaded = self._current()
        allowed = loaded.allowed_rows(filters) if filters else None
        vector = None if mode == "lexical" else self._embed(loaded, query)
        hits = loaded.index.search(query, vector, k, mode, allowed)
        with loaded.lock:
            chunks = read_chunks(loaded.db, [r for r, _ in hits]) if hits else {}
        return [
            RetrievedChunk(
                text=c.text,
                score=s,
                version_id=loaded.version_id,
                doc_id=c.doc_id,
                chunk_id=c.chunk_id,
                title=c.title,
                url=c.url,
                source=c.source,
                headings=tuple(c.headings),
                start=c.start,
                end=c.end,
            )
            for r, s in hits
            if (c := chunks.get(r)) is not None
        ]


_RETRIEVERS: dict[tuple[str, str, str], Retriever] = {}
_RLOCK = threading.Lock()


def retrieve(
    query: str,
    k: int = 5,
    mode: Mode = "hybrid",
    filters: dict[str, Any] | None = None,
    *,
    index: str = "default",
    alias: str = "current",
) -> list[RetrievedChunk]:
    """Module-level convenience: one cached :class:`Retriever` per (home, index, alias)."""
    from genaiops.settings import get_settings

    key = (str(get_settings().home), index, alias)
    with _RLOCK:
        r = _RETRIEVERS.get(key)
        if r is None:
            r = _RETRIEVERS[key] = Retriever(index, alias)
    return r.retrieve(query, k=k, mode=mode, filters=filters)
