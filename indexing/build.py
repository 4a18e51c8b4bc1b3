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
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from genaiops.errors import ConfigError
from genaiops.providers.embeddings import Embedder, make_embedder
from genaiops.settings import get_settings
from indexing.catalog import Catalog, write_chunks
from indexing.chunking import Chunk, Chunker
from indexing.embedcache import EmbeddingCache
from indexing.records import (
    DocumentEntry,
    IndexManifest,
    ManifestCounts,
    QuarantineEntry,
    write_record,
)
from indexing.sources import Document, Quarantined, SourceFile, discover, parse_file
from indexing.spec import IndexSpec
from indexing.store import get_backend

__all__ = [
    "BuildResult",
    "EmbedPart",
    "Engine",
    "LocalEngine",
    "Parsed",
    "PartRunner",
    "Progress",
    "build_index",
    "collect",
    "compute_version_id",
    "embed_plan",
    "embed_through_cache",
    "get_engine",
    "parse_source_file",
    "vector_matrix",
]

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``; stages: parse, embed."""


@dataclass
class BuildResult:
    """What one build did, for the CLI (``message``, ``--json``) and for callers' checks."""

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
    engine: str = "local"  # who ran parse/chunk/embed (the content does not depend on it)

    def to_dict(self) -> dict[str, Any]:
        """Plain fields, for ``--json``."""
        return asdict(self)

    @property
    def message(self) -> str:
        """The one-line summary the CLI prints (quarantine and over-window warnings included)."""
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
    """The content address of a build: spec fingerprint, model id and every file's hash."""
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


EmbedPart = list[tuple[str, str]]
"""One embedder call's worth of (chunk hash, text): the unit both engines embed and cache."""


def embed_plan(
    chunks: list[Chunk], cache: EmbeddingCache, model: str, batch: int
) -> tuple[dict[str, np.ndarray], list[EmbedPart]]:
    """The cached vectors, and the missing texts in parts (longest first, each hash once).

    Both engines embed exactly these parts, so a text meets the same neighbours in the same
    embedder call on either engine and gets the same vector.
    """
    found = cache.get_many(model, (c.hash for c in chunks))
    todo: dict[str, str] = {}
    for c in chunks:
        if c.hash not in found and c.hash not in todo:
            todo[c.hash] = c.embed_text()
    order = sorted(todo, key=lambda h: len(todo[h]), reverse=True)
    step = max(batch * 8, 256)  # several model batches per cache write: progress + crash-safety
    return found, [[(h, todo[h]) for h in order[i : i + step]] for i in range(0, len(order), step)]


def vector_matrix(chunks: list[Chunk], found: dict[str, np.ndarray], dim: int) -> np.ndarray:
    """One row per chunk, in chunk order, from the vectors by hash."""
    dim = next(iter(found.values())).shape[0] if found else dim
    mat = np.zeros((len(chunks), dim), dtype=np.float32)
    for row, c in enumerate(chunks):
        mat[row] = found[c.hash]
    return mat


PartRunner = Callable[[list[EmbedPart]], Iterator[tuple[list[str], np.ndarray]]]
"""Embeds parts somewhere and yields (hashes, vectors) as each block of them finishes."""


def embed_through_cache(
    chunks: list[Chunk],
    embedder: Embedder,
    cache: EmbeddingCache,
    progress: Progress | None,
    batch: int,
    run_parts: PartRunner,
) -> tuple[np.ndarray, int]:
    """Vectors for all chunks; only hashes the cache lacks are embedded (by ``run_parts``), and
    each finished block is cached at once, so a killed build keeps it."""
    model = embedder.model_id
    found, parts = embed_plan(chunks, cache, model, batch)
    total, done = sum(len(p) for p in parts), 0
    for hashes, vecs in run_parts(parts):
        new = dict(zip(hashes, vecs, strict=True))
        cache.put_many(model, new)
        found.update(new)
        done += len(new)
        if progress:
            progress("embed", done, total)
    if progress and not parts:
        progress("embed", 0, 0)
    return vector_matrix(chunks, found, embedder.dim), total


def _embed_here(embedder: Embedder) -> PartRunner:
    def run(parts: list[EmbedPart]) -> Iterator[tuple[list[str], np.ndarray]]:
        for part in parts:
            yield [h for h, _ in part], embedder.embed([t for _, t in part])

    return run


@dataclass
class Parsed:
    """What the parse stage hands on: unique documents, their chunks, and what it skipped."""

    docs: dict[str, Document]
    chunks: list[Chunk]
    quarantined: list[Quarantined]


def collect(
    out: Parsed, item: Document | Quarantined, split: Callable[[Document], list[Chunk]]
) -> None:
    """Add one parse result to ``out`` in source order: quarantined items are recorded, a
    second document with an id already seen is quarantined (not merged), others are chunked."""
    if isinstance(item, Quarantined):
        out.quarantined.append(item)
    elif item.doc_id in out.docs:
        first = out.docs[item.doc_id].source
        reason = f"duplicate document id {item.doc_id!r} (first seen in {first})"
        out.quarantined.append(Quarantined(item.source, reason))
    else:
        out.docs[item.doc_id] = item
        out.chunks.extend(split(item))


def parse_source_file(spec: IndexSpec, f: SourceFile) -> list[Document | Quarantined]:
    """Everything one source file yields (problems are quarantined, never raised)."""
    return list(parse_file(f, spec.sources[f.source_index], spec.max_file_size))


def _parse_and_chunk(
    spec: IndexSpec,
    files: list[SourceFile],
    quarantined: list[Quarantined],
    progress: Progress | None,
) -> Parsed:
    """Parse every file and chunk each document once, in file order (see :func:`collect`)."""
    chunker = Chunker(spec.chunker)
    out = Parsed({}, [], list(quarantined))
    for n, f in enumerate(files, start=1):
        for item in parse_source_file(spec, f):
            collect(out, item, chunker.split)
        if progress:
            progress("parse", n, len(files))
    return out


def _embed_all(
    spec: IndexSpec, chunks: list[Chunk], embedder: Embedder, home: Path, progress: Progress | None
) -> tuple[np.ndarray, int]:
    """Vectors for ``chunks`` through the shared embedding cache (closed again afterwards)."""
    cache = EmbeddingCache(home / "cache" / "embeddings.sqlite")
    try:
        batch = spec.embedder.batch_size
        return embed_through_cache(chunks, embedder, cache, progress, batch, _embed_here(embedder))
    finally:
        cache.close()


class Engine(Protocol):
    """Who executes the two heavy stages; discovery, store, manifest and publish are shared.

    ``local`` runs them in this process; ``ray`` (:mod:`indexing.ray_engine`) runs the same
    stage functions on Ray Data.  Either must give the same chunks and vectors.
    """

    def parse_and_chunk(
        self,
        spec: IndexSpec,
        files: list[SourceFile],
        quarantined: list[Quarantined],
        progress: Progress | None,
    ) -> Parsed: ...

    def embed(
        self,
        spec: IndexSpec,
        chunks: list[Chunk],
        embedder: Embedder,
        home: Path,
        progress: Progress | None,
    ) -> tuple[np.ndarray, int]: ...


class LocalEngine:
    """Both stages in this process (the default engine)."""

    parse_and_chunk = staticmethod(_parse_and_chunk)
    embed = staticmethod(_embed_all)


def get_engine(name: str) -> Engine:
    """The engine called ``name`` (``local`` or ``ray``; ``ray`` needs the ``[ray]`` extra)."""
    if name == "local":
        return LocalEngine()
    if name == "ray":
        from indexing.ray_engine import RayEngine

        return RayEngine()
    raise ConfigError(f"unknown engine {name!r}: use local or ray")


def _manifest(
    spec: IndexSpec,
    version_id: str,
    files: list[SourceFile],
    parsed: Parsed,
    model: tuple[str, int | None, str],
    embedded: int,
    over_window: int,
    timings: dict[str, float],
) -> IndexManifest:
    """The manifest of a new version (``model``: embedder model id, vector dim, backend)."""
    model_id, dim, backend = model
    per_doc: dict[str, int] = {}
    for c in parsed.chunks:
        per_doc[c.doc_id] = per_doc.get(c.doc_id, 0) + 1
    q = [QuarantineEntry(path=x.path, reason=x.reason) for x in parsed.quarantined]
    return IndexManifest(
        version_id=version_id,
        index=spec.name,
        created_at=time.time(),
        status="completed_with_quarantine" if q else "completed",
        spec=spec,
        model_id=model_id,
        dim=dim,
        backend=backend,
        counts=ManifestCounts(
            documents=len(parsed.docs),
            chunks=len(parsed.chunks),
            embedded=embedded,
            reused=len(parsed.chunks) - embedded,
            quarantined=len(q),
            files=len(files),
            over_window=over_window,
        ),
        sources={f"{f.source_index}:{f.rel}": f.sha256 for f in files},
        documents={
            d.doc_id: DocumentEntry(
                hash=d.content_hash,
                source=d.source,
                chunks=per_doc.get(d.doc_id, 0),
                encoding=d.encoding,
            )
            for d in parsed.docs.values()
        },
        quarantine=q,
        timings=timings,
        git_commit=_git_commit(Path(spec.base_dir)),
    )


def _store(staging: Path, spec: IndexSpec, parsed: Parsed, vectors: np.ndarray) -> str:
    """Search structures and chunk table into ``staging``; returns the backend's name."""
    backend = get_backend(spec.store)
    write_chunks(staging / "chunks.sqlite", parsed.chunks)  # first: a remote store reads metadata
    backend.write(staging, [c.embed_text() for c in parsed.chunks], vectors, spec.store)
    return backend.name


def _result(
    m: IndexManifest, *, embedded: int, reused_version: bool, promote: str | None, t0: float
) -> BuildResult:
    return BuildResult(
        index=m.index,
        version_id=m.version_id,
        status=m.status,
        documents=m.counts.documents,
        chunks=m.counts.chunks,
        embedded=embedded,
        reused=m.counts.chunks - embedded,
        quarantined=[q.model_dump() for q in m.quarantine],
        reused_version=reused_version,
        promoted=promote,
        seconds=time.perf_counter() - t0,
        timings=dict(m.timings),
        over_window=m.counts.over_window,
    )


def build_index(
    spec: IndexSpec,
    *,
    promote: str | None = None,
    progress: Progress | None = None,
    embedder: Embedder | None = None,
    home: Path | None = None,
    engine: str | None = None,
) -> BuildResult:
    """Build the version of ``spec`` over the current files, or find it already published.

    Stages: discover (hash files → version id) → parse + chunk → embed (cache first) → store +
    publish; each is a function above.  Because the version id is content-addressed, an
    unchanged corpus costs one discovery pass.  ``promote`` points that alias at the result.
    ``engine`` (default: the spec's ``engine``) executes parse + chunk and embed; the version
    id, chunks and vectors do not depend on it.
    """
    t0 = time.perf_counter()
    engine = engine or spec.engine
    stages = get_engine(engine)
    home = home or get_settings().home
    catalog = Catalog(spec.name, home=home)
    catalog.clean_leftovers()
    embedder = embedder or make_embedder(spec.embedder)

    files, quarantined = discover(spec)
    file_hashes = [(f.source_index, f.rel, f.sha256) for f in files]
    version_id = compute_version_id(spec, embedder.model_id, file_hashes)
    timings = {"discover": time.perf_counter() - t0}

    if catalog.has_version(version_id):
        if promote:
            catalog.promote(version_id, promote)
        m = catalog.manifest(version_id)
        result = _result(m, embedded=0, reused_version=True, promote=promote, t0=t0)
        result.timings = timings
        result.engine = engine
        return result

    t = time.perf_counter()
    parsed = stages.parse_and_chunk(spec, files, quarantined, progress)
    timings["parse_chunk"] = time.perf_counter() - t
    over_window = _count_over_window(embedder, parsed.chunks)

    t = time.perf_counter()
    vectors, embedded = stages.embed(spec, parsed.chunks, embedder, home, progress)
    timings["embed"] = time.perf_counter() - t

    # a crash anywhere in here leaves only a staging folder that the next build removes
    t = time.perf_counter()
    with catalog.staging() as staging:
        backend = _store(staging, spec, parsed, vectors)
        timings["store"] = time.perf_counter() - t
        dim = int(vectors.shape[1]) if parsed.chunks else None
        model = (embedder.model_id, dim, backend)
        manifest = _manifest(spec, version_id, files, parsed, model, embedded, over_window, timings)
        write_record(staging / "manifest.json", manifest)
        catalog.publish(staging, version_id)
    if promote:
        catalog.promote(version_id, promote)
    result = _result(manifest, embedded=embedded, reused_version=False, promote=promote, t0=t0)
    result.engine = engine
    return result
