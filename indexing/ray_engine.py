"""The ``ray`` build engine: the build's parse, chunk and embed stages on Ray Data.

Discovery (file hashes → version id), the embedding cache, the store, the manifest and the
crash-safe publish stay in :func:`indexing.build.build_index`; this module only executes the
heavy stages elsewhere, with the same stage functions:

    files ──map(parse_source_file)──▶ items ──map(Chunker.split)──▶ chunks   (Ray tasks)
    driver: collect() in source order (duplicate ids quarantined as locally)
    embed_plan() parts ──map_batches(_EmbedActor)──▶ vectors                  (Ray actors)
    driver: EmbeddingCache.put_many per finished part, vector_matrix()

Each embedding actor loads the model once and embeds whole parts of :func:`embed_plan`, which
sorts texts by length and gives every missing hash to exactly one part; so a text is embedded
once across all workers, in the same company as on the local engine, and gets the same vector.
Only the driver writes the cache and the catalog: workers need the corpus path and the model,
never ``GENAIOPS_HOME``'s files.  A killed build keeps every part already cached, like locally.

    >>> build_index(spec, engine="ray")                                   # doctest: +SKIP
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from genaiops.errors import IndexingError
from genaiops.providers.embeddings import Embedder, EmbedderConfig, make_embedder
from genaiops.ray_runtime import RaySettings, cluster_cpus, connect, runtime_env, worker_errors
from indexing.build import (
    EmbedPart,
    Parsed,
    Progress,
    collect,
    embed_through_cache,
    parse_source_file,
)
from indexing.chunking import Chunk, Chunker
from indexing.embedcache import EmbeddingCache
from indexing.sources import Document, Quarantined, SourceFile
from indexing.spec import IndexSpec

__all__ = ["RayEngine"]


# -- stage functions, run in Ray workers ---------------------------------------------------
# Rows carry pickled dataclasses: Ray ships them between its own processes only.
def _parse_row(row: dict[str, Any], spec: IndexSpec) -> list[dict[str, Any]]:
    """One source file → one row per document or quarantined item, keyed (file, position)."""
    f: SourceFile = pickle.loads(row["file"])
    return [
        {"i": row["i"], "j": j, "item": pickle.dumps(item)}
        for j, item in enumerate(parse_source_file(spec, f))
    ]


def _chunk_row(row: dict[str, Any], spec: IndexSpec) -> dict[str, Any]:
    """One document → its chunks (a quarantined item passes through with none)."""
    item = pickle.loads(row["item"])
    chunks = Chunker(spec.chunker).split(item) if isinstance(item, Document) else []
    return row | {"chunks": pickle.dumps(chunks)}


def _already(chunks: list[Chunk]) -> Callable[[Document], list[Chunk]]:
    """The splitter :func:`collect` calls, for a document a worker has chunked already."""
    return lambda _doc: chunks


class _EmbedActor:
    """Holds one embedder (the model loads once per actor) and embeds whole parts."""

    def __init__(self, embedder: bytes | EmbedderConfig):
        self.embedder: Embedder = (
            pickle.loads(embedder) if isinstance(embedder, bytes) else make_embedder(embedder)
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        hashes: list[str] = []
        vecs: list[np.ndarray] = []
        for payload in batch["part"]:
            part: EmbedPart = json.loads(payload)
            hashes.extend(h for h, _ in part)
            vecs.append(self.embedder.embed([t for _, t in part]))
        return {"hash": np.array(hashes, dtype=object), "vec": np.concatenate(vecs)}


# -- the engine, on the driver ---------------------------------------------------------------
class RayEngine:
    """Parse + chunk as Ray tasks, embedding in Ray actors; see the module docstring."""

    def __init__(self, settings: RaySettings | None = None):
        self.settings = settings or RaySettings()

    def parse_and_chunk(
        self,
        spec: IndexSpec,
        files: list[SourceFile],
        quarantined: list[Quarantined],
        progress: Progress | None,
    ) -> Parsed:
        out = Parsed({}, [], list(quarantined))
        if not files:
            return out
        ray = connect()
        env = runtime_env()
        rows = [{"i": i, "file": pickle.dumps(f)} for i, f in enumerate(files)]
        blocks = max(1, min(len(rows), 4 * cluster_cpus()))
        ds = (
            ray.data.from_items(rows, override_num_blocks=blocks)
            .flat_map(_parse_row, fn_kwargs={"spec": spec}, runtime_env=env)
            .map(_chunk_row, fn_kwargs={"spec": spec}, runtime_env=env)
        )
        results: dict[tuple[int, int], tuple[Document | Quarantined, list[Chunk]]] = {}
        seen_files: set[int] = set()
        with worker_errors("parse/chunk", IndexingError):
            for r in ds.iter_rows():
                key = (int(r["i"]), int(r["j"]))
                results[key] = (pickle.loads(r["item"]), pickle.loads(r["chunks"]))
                if progress and key[0] not in seen_files:
                    seen_files.add(key[0])
                    progress("parse", len(seen_files), len(files))
        for key in sorted(results):  # source order: the first of two equal ids wins, as locally
            item, chunks = results[key]
            collect(out, item, _already(chunks))
        if progress:
            progress("parse", len(files), len(files))
        return out

    def embed(
        self,
        spec: IndexSpec,
        chunks: list[Chunk],
        embedder: Embedder,
        home: Path,
        progress: Progress | None,
    ) -> tuple[np.ndarray, int]:
        cache = EmbeddingCache(home / "cache" / "embeddings.sqlite")
        try:  # the driver alone writes the cache, block by block as the actors finish
            batch = spec.embedder.batch_size

            def run(parts: list[EmbedPart]) -> Iterator[tuple[list[str], np.ndarray]]:
                return self._embed_parts(spec, embedder, parts)

            return embed_through_cache(chunks, embedder, cache, progress, batch, run)
        finally:
            cache.close()

    def _embed_parts(
        self, spec: IndexSpec, embedder: Embedder, parts: list[EmbedPart]
    ) -> Iterator[tuple[list[str], np.ndarray]]:
        """(hashes, vectors) per finished block of parts, as the actors finish them."""
        if not parts:
            return
        ray = connect()
        s = self.settings
        actors = s.actors or max(1, int(cluster_cpus() // s.actor_cpus))
        # the driver's embedder travels to each actor and loads its model there, once
        try:
            shipped: bytes | EmbedderConfig = ray.cloudpickle.dumps(embedder)
        except (pickle.PicklingError, TypeError, AttributeError):  # holds a client: rebuild it
            shipped = spec.embedder
        ds = ray.data.from_items(
            [{"part": json.dumps(p)} for p in parts], override_num_blocks=len(parts)
        ).map_batches(
            _EmbedActor,
            fn_constructor_kwargs={"embedder": shipped},
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=min(actors, len(parts))),
            num_cpus=s.actor_cpus,
            num_gpus=s.actor_gpus or None,
            runtime_env=runtime_env(),
        )
        with worker_errors("embedding", IndexingError):
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                yield [str(h) for h in batch["hash"]], np.asarray(batch["vec"], dtype=np.float32)
