"""The build pipeline: discover → parse (quarantine) → chunk → embed (cached) → store → publish.

The version id is content-addressed: a hash of the spec's content-deciding parts, the embedder's
model id and every source file's bytes.  Rebuilding an unchanged corpus finds the version already
published and embeds nothing; editing one document re-embeds only its chunks (the embedding cache
has the rest).

    >>> result = build_index(load_index_spec("indexing/specs/sample.yaml"), promote="current")
    ...                                                                  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genaiops.providers.embeddings import Embedder, make_embedder
from genaiops.settings import get_settings
from indexing.catalog import Catalog, write_chunks
from indexing.chunking import Chunk, Chunker
from indexing.embedcache import EmbeddingCache
from indexing.sources import Document, Quarantined, discover, parse_file
from indexing.spec import IndexSpec
from indexing.store import get_backend

__all__ = ["BuildResult", "Progress", "build_index", "compute_version_id"]

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``; stages: parse, embed."""


@dataclass
class BuildResult:
    index: str
    version_id: str
    status: str  # "completed" | "completed_with_quarantine"
    documents: int
    chunks: int
    embedded: int
    reused: int
    quarantined: list[dict[str, str]]
    reused_version: bool
    promoted: str | None
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    over_window: int = 0  # chunks longer than the embedder's input window (tails not embedded)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def message(self) -> str:
        q = len(self.quarantined)
        head = f"completed with {q} quarantined" if q else "completed"
        return (
            f"{head}: index {self.index} version {self.version_id}: {self.documents} documents,"
            f" {self.chunks} chunks ({self.embedded} embedded, {self.reused} reused)"
        ) + (
            f"; warning: {self.over_window} chunks exceed the embedder's input window and are"
            " embedded truncated (lower chunker.size)"
            if self.over_window
            else ""
        )


def compute_version_id(
    spec: IndexSpec,
    model_id: str,
    file_hashes: list[tuple[int, str, str]],
) -> str:
    payload = json.dumps(
        {"spec": spec.fingerprint(), "model": model_id, "files": sorted(file_hashes)},
        sort_keys=True,
    )
    return "v-" + hashlib.sha256(payload.encode()).hexdigest()[:16]


def _git_commit(path: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _count_over_window(embedder: Embedder, chunks: list[Chunk]) -> int:
    """Chunks whose embedded text the model would cut (sizes are in project tokens, the model
    counts its own); 0 when the embedder cannot tell (remote APIs reject instead of cutting)."""
    counts = getattr(embedder, "input_token_counts", None)
    window = getattr(embedder, "max_input_tokens", None)
    if counts is None or window is None or not chunks:
        return 0
    over = 0
    for i in range(0, len(chunks), 1024):
        over += sum(n > window for n in counts([c.embed_text() for c in chunks[i : i + 1024]]))
    return over


def _embed_missing(
    chunks: list[Chunk],
    embedder: Embedder,
    cache: EmbeddingCache,
    progress: Progress | None,
    batch: int,
) -> tuple[np.ndarray, int]:
    """Vectors for all chunks; embeds only hashes the cache lacks, longest texts first."""
    model = embedder.model_id
    found = cache.get_many(model, (c.hash for c in chunks))
    todo: dict[str, str] = {}
    for c in chunks:
        if c.hash not in found and c.hash not in todo:
            todo[c.hash] = c.embed_text()
    order = sorted(todo, key=lambda h: len(todo[h]), reverse=True)
    step = max(batch * 8, 256)  # several model batches per cache write: progress + crash-safety
    for i in range(0, len(order), step):
        part = order[i : i + step]
        vecs = embedder.embed([todo[h] for h in part])
        new = dict(zip(part, vecs, strict=True))
        cache.put_many(model, new)
        found.update(new)
        if progress:
            progress("embed", min(i + step, len(order)), len(order))
    if progress and not order:
        progress("embed", 0, 0)
    dim = next(iter(found.values())).shape[0] if found else embedder.dim
    mat = np.zeros((len(chunks), dim), dtype=np.float32)
    for row, c in enumerate(chunks):
        mat[row] = found[c.hash]
    return mat, len(order)


def build_index(
    spec: IndexSpec,
    *,
    promote: str | None = None,
    progress: Progress | None = None,
    embedder: Embedder | None = None,
    home: Path | None = None,
) -> BuildResult:
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    home = home or get_settings().home
    catalog = Catalog(spec.name, home=home)
    catalog.clean_leftovers()
    embedder = embedder or make_embedder(spec.embedder)

    files, quarantined = discover(spec)
    file_hashes = [(f.source_index, f.rel, f.sha256) for f in files]
    version_id = compute_version_id(spec, embedder.model_id, file_hashes)
    timings["discover"] = time.perf_counter() - t0

    if catalog.has_version(version_id):
        m = catalog.manifest(version_id)
        if promote:
            catalog.promote(version_id, promote)
        return BuildResult(
            spec.name,
            version_id,
            m["status"],
            m["counts"]["documents"],
            m["counts"]["chunks"],
            0,
            m["counts"]["chunks"],
            m["quarantine"],
            True,
            promote,
            time.perf_counter() - t0,
            timings,
            m["counts"].get("over_window", 0),
        )

    # parse + chunk
    t = time.perf_counter()
    chunker = Chunker(spec.chunker)
    docs: dict[str, Document] = {}
    chunks: list[Chunk] = []
    for n, f in enumerate(files, start=1):
        for item in parse_file(f, spec.sources[f.source_index]):
            if isinstance(item, Quarantined):
                quarantined.append(item)
            elif item.doc_id in docs:
                quarantined.append(
                    Quarantined(
                        item.source,
                        f"duplicate document id {item.doc_id!r}"
                        f" (first seen in {docs[item.doc_id].source})",
                    )
                )
            else:
                docs[item.doc_id] = item
                chunks.extend(chunker.split(item))
        if progress:
            progress("parse", n, len(files))
    timings["parse_chunk"] = time.perf_counter() - t
    over_window = _count_over_window(embedder, chunks)

    # embed (cache first)
    t = time.perf_counter()
    cache = EmbeddingCache(home / "cache" / "embeddings.sqlite")
    try:
        vectors, embedded = _embed_missing(
            chunks, embedder, cache, progress, spec.embedder.batch_size
        )
    finally:
        cache.close()
    timings["embed"] = time.perf_counter() - t

    # store into a private staging folder, then publish with one rename
    t = time.perf_counter()
    staging = catalog.staging_dir()
    try:
        backend = get_backend(spec.store)
        write_chunks(staging / "chunks.sqlite", chunks)  # first: a remote store reads metadata
        backend.write(staging, [c.embed_text() for c in chunks], vectors, spec.store)
        per_doc: dict[str, int] = {}
        for c in chunks:
            per_doc[c.doc_id] = per_doc.get(c.doc_id, 0) + 1
        timings["store"] = time.perf_counter() - t
        q = [{"path": x.path, "reason": x.reason} for x in quarantined]
        status = "completed_with_quarantine" if q else "completed"
        manifest = {
            "version_id": version_id,
            "index": spec.name,
            "created_at": time.time(),
            "status": status,
            "spec": spec.model_dump(mode="json"),
            "model_id": embedder.model_id,
            "dim": int(vectors.shape[1]) if len(chunks) else None,
            "backend": backend.name,
            "counts": {
                "documents": len(docs),
                "chunks": len(chunks),
                "embedded": embedded,
                "reused": len(chunks) - embedded,
                "quarantined": len(q),
                "files": len(files),
                "over_window": over_window,
            },
            "sources": {f"{f.source_index}:{f.rel}": f.sha256 for f in files},
            "documents": {
                d.doc_id: {
                    "hash": d.content_hash,
                    "source": d.source,
                    "chunks": per_doc.get(d.doc_id, 0),
                }
                for d in docs.values()
            },
            "quarantine": q,
            "timings": timings,
            "git_commit": _git_commit(Path(spec.base_dir)),
        }
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2))
        catalog.publish(staging, version_id)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if promote:
        catalog.promote(version_id, promote)
    return BuildResult(
        spec.name,
        version_id,
        status,
        len(docs),
        len(chunks),
        embedded,
        len(chunks) - embedded,
        q,
        False,
        promote,
        time.perf_counter() - t0,
        timings,
        over_window,
    )
