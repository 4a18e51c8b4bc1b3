"""Versions and aliases of one named index, on disk under ``$GENAIOPS_HOME/indexes/<name>``.

    <name>/versions/<version_id>/   immutable once renamed into place:
        manifest.json                spec, model id, counts, source hashes, timings, quarantine
        chunks.sqlite                chunk metadata + text (row = position in the search store)
        dense.faiss, lexical/        search structures (written by the backend)
    <name>/versions/.tmp-*/          a build in progress (owner.json names its pid)
    <name>/aliases/<alias>.json      {"version": ..., "history": [...]}, replaced atomically

The JSON files are the models of :mod:`indexing.records`.  A build works only in its own
``.tmp-*`` folder and publishes it with one ``rename``; aliases change by temp file +
``os.replace`` under an exclusive ``flock``.  A killed build therefore never damages a published
version; its leftover folder is removed by the next build or ``gc``.

Names and version ids given by users are checked before they touch a path: index and alias
names match :data:`~indexing.spec.NAME_RE`, version ids ``v-`` + 16 hex digits, and a version
folder that is a symlink is not a version -- only folders inside the index folder load.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from genaiops.errors import AliasError, GenAIOpsError, IndexingError, VersionNotFound
from genaiops.settings import get_settings
from indexing.chunking import Chunk
from indexing.records import (
    VERSION_RE,
    AliasRecord,
    IndexManifest,
    StagingOwner,
    read_record,
    write_record,
)
from indexing.spec import is_name, shown
from indexing.store import promote_remote, release_remote

__all__ = ["Catalog", "prune_embedding_cache", "read_chunks", "write_chunks"]

_PREFIX_RE = re.compile(r"v-[0-9a-f]{2,16}")
_STAGING_RE = re.compile(r"\.tmp-([0-9]+)-.+")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` for the ``with`` block (held across processes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def write_chunks(path: Path, chunks: Sequence[Chunk]) -> None:
    """Chunk metadata and text in SQLite; the row number is the chunk's position in the store."""
    db = sqlite3.connect(path)
    try:
        db.execute(
            "CREATE TABLE chunks (row INTEGER PRIMARY KEY, chunk_id TEXT, doc_id TEXT, title TEXT,"
            " url TEXT, source TEXT, headings TEXT, start INTEGER, end_ INTEGER, hash TEXT,"
            " text TEXT)"
        )
        db.executemany(
            "INSERT INTO chunks VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            [
                (
                    i,
                    c.chunk_id,
                    c.doc_id,
                    c.title,
                    c.url,
                    c.source,
                    json.dumps(c.headings),
                    c.start,
                    c.end,
                    c.hash,
                    c.text,
                )
                for i, c in enumerate(chunks)
            ],
        )
        db.execute("CREATE INDEX chunks_doc ON chunks(doc_id)")
        db.commit()
    finally:
        db.close()


def _row_to_chunk(r: Sequence[Any]) -> Chunk:
    return Chunk(
        chunk_id=r[1],
        doc_id=r[2],
        title=r[3],
        url=r[4],
        source=r[5],
        headings=json.loads(r[6]),
        start=r[7],
        end=r[8],
        hash=r[9],
        text=r[10],
    )


def read_chunks(db: sqlite3.Connection, rows: Sequence[int] | None = None) -> dict[int, Chunk]:
    """The chunks at ``rows`` (all when None), keyed by row: search hits name rows."""
    if rows is None:
        cur = db.execute("SELECT * FROM chunks ORDER BY row")
    else:
        marks = ",".join("?" * len(rows))
        cur = db.execute(f"SELECT * FROM chunks WHERE row IN ({marks})", list(rows))
    return {int(r[0]): _row_to_chunk(r) for r in cur}


class Catalog:
    """The versions and aliases of one named index.

    >>> cat = Catalog("sample")                                          # doctest: +SKIP
    >>> cat.promote(cat.resolve("v-1a2b"), "prod")                        # doctest: +SKIP
    """

    def __init__(self, name: str = "default", home: Path | None = None):
        if not is_name(name):
            raise AliasError(
                f"bad index name {shown(name)}: use 1-64 letters, digits, '_', '.', '-'"
                " (starting with a letter or digit)"
            )
        self.name = name
        self.root = (home or get_settings().home) / "indexes" / name
        self.versions_dir = self.root / "versions"
        self.aliases_dir = self.root / "aliases"

    @staticmethod
    def names(home: Path | None = None) -> list[str]:
        """Names of the indexes under ``home`` that have at least one version or alias."""
        root = (home or get_settings().home) / "indexes"
        if not root.is_dir():
            return []
        return sorted(
            d.name
            for d in root.iterdir()
            if is_name(d.name) and ((d / "versions").is_dir() or (d / "aliases").is_dir())
        )

    # -- versions -----------------------------------------------------------------------
    def version_dir(self, version_id: str) -> Path:
        """The folder of ``version_id``; refuses anything that is not a version id."""
        if not isinstance(version_id, str) or not VERSION_RE.fullmatch(version_id):
            raise VersionNotFound(f"{shown(version_id)} is not a version id (v- and 16 hex digits)")
        return self.versions_dir / version_id

    def has_version(self, version_id: str) -> bool:
        """A published version: a real folder (not a symlink) inside the index with a manifest."""
        if not isinstance(version_id, str) or not VERSION_RE.fullmatch(version_id):
            return False
        d = self.versions_dir / version_id
        return d.is_dir() and not d.is_symlink() and (d / "manifest.json").is_file()

    def manifest(self, version_id: str) -> IndexManifest:
        """The manifest of a published version (it must name the folder it lies in)."""
        d = self.version_dir(version_id)
        if not self.has_version(version_id):
            raise VersionNotFound(f"index {self.name!r} has no version {version_id!r}")
        path = d / "manifest.json"
        try:
            m = read_record(path, IndexManifest)
        except FileNotFoundError as e:
            raise VersionNotFound(f"index {self.name!r} has no version {version_id!r}") from e
        if m.version_id != version_id:
            raise IndexingError(f"{path}: manifest is for {m.version_id}, not {version_id}")
        return m

    def versions(self) -> list[IndexManifest]:
        """Manifests of all published versions, oldest first."""
        if not self.versions_dir.is_dir():
            return []
        out = [
            self.manifest(d.name) for d in self.versions_dir.iterdir() if self.has_version(d.name)
        ]
        return sorted(out, key=lambda m: (m.created_at, m.version_id))

    def staging_dir(self) -> Path:
        """A fresh private folder for one build, named and tagged with our pid for cleanup.

        The pid is in the name (``.tmp-<pid>-<random>``) so that a build killed before it
        wrote ``owner.json`` still leaves debris the next build can recognise.
        """
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        prefix = f".tmp-{os.getpid()}-"
        d = Path(tempfile.mkdtemp(prefix=prefix, dir=self.versions_dir))
        write_record(d / "owner.json", StagingOwner(pid=os.getpid(), started=time.time()))
        return d

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A fresh staging folder for the ``with`` block, removed if the block raises
        (:meth:`publish` inside the block moves it into place)."""
        d = self.staging_dir()
        try:
            yield d
        except BaseException:
            shutil.rmtree(d, ignore_errors=True)
            raise

    def publish(self, staging: Path, version_id: str) -> bool:
        """Rename ``staging`` into place. False (and staging removed) if it already exists."""
        (staging / "owner.json").unlink(missing_ok=True)
        target = self.version_dir(version_id)
        try:
            os.rename(staging, target)
            return True
        except OSError:
            if self.has_version(version_id):  # a concurrent identical build won
                shutil.rmtree(staging, ignore_errors=True)
                return False
            raise

    def clean_leftovers(self) -> list[str]:
        """Remove staging folders whose builder is gone (killed builds)."""
        removed: list[str] = []
        if not self.versions_dir.is_dir():
            return removed
        for d in self.versions_dir.glob(".tmp-*"):
            pid = _STAGING_RE.fullmatch(d.name)
            try:
                owner = (
                    int(pid.group(1)) if pid else read_record(d / "owner.json", StagingOwner).pid
                )
                alive = _pid_alive(owner)
            except (OSError, IndexingError):
                alive = time.time() - d.stat().st_mtime < 3600
            if not alive:
                try:
                    release_remote(d)  # a remote store frees what the killed build made
                except GenAIOpsError:
                    continue  # keep the folder (and its pointer) for the next cleanup
                shutil.rmtree(d, ignore_errors=True)
                removed.append(d.name)
        # a version folder without a manifest cannot be published by us: it is debris too
        for d in self.versions_dir.iterdir():
            if not d.name.startswith(".") and not (d / "manifest.json").exists():
                shutil.rmtree(d, ignore_errors=True)
                removed.append(d.name)
        return removed

    # -- aliases ------------------------------------------------------------------------
    def _alias_path(self, alias: str) -> Path:
        if not is_name(alias):
            raise AliasError(
                f"bad alias name {shown(alias)}: use 1-64 letters, digits, '_', '.', '-'"
                " (starting with a letter or digit)"
            )
        return self.aliases_dir / f"{alias}.json"

    def alias_file(self, alias: str) -> Path:
        """The file behind ``alias`` (it may not exist); readers cache by its ``stat``."""
        return self._alias_path(alias)

    def _lock(self) -> contextlib.AbstractContextManager[None]:
        return file_lock(self.root / ".lock")

    def _alias_files(self) -> list[Path]:
        if not self.aliases_dir.is_dir():
            return []
        return [p for p in sorted(self.aliases_dir.glob("*.json")) if is_name(p.stem)]

    def aliases(self) -> dict[str, str]:
        """Every alias and the version it points at."""
        return {p.stem: read_record(p, AliasRecord).version for p in self._alias_files()}

    def alias_record(self, alias: str) -> AliasRecord:
        """An alias's target and rollback history."""
        try:
            return read_record(self._alias_path(alias), AliasRecord)
        except FileNotFoundError as e:
            raise VersionNotFound(f"index {self.name!r} has no alias {alias!r}") from e

    def resolve(self, ref: str) -> str:
        """A version id, the version an alias points at, or the one version id starting with
        ``ref`` (``v-`` and at least 2 hex digits); nothing else -- a path never resolves."""
        if self.has_version(ref):
            return ref
        if is_name(ref) and self._alias_path(ref).is_file():
            return self.alias_record(ref).version
        if _PREFIX_RE.fullmatch(ref):
            matches = [m.version_id for m in self.versions() if m.version_id.startswith(ref)]
            if len(matches) == 1:
                return matches[0]
        raise VersionNotFound(f"index {self.name!r} has no version or alias {shown(ref)}")

    def promote(self, version_id: str, alias: str) -> AliasRecord:
        """Point ``alias`` at ``version_id`` atomically; the old target joins the history."""
        if not self.has_version(version_id):
            self.version_dir(version_id)  # a non-id gets its own message
            raise VersionNotFound(f"index {self.name!r} has no version {version_id!r}")
        path = self._alias_path(alias)
        with self._lock():
            try:
                old: AliasRecord | None = read_record(path, AliasRecord)
            except FileNotFoundError:
                old = None
            if old is not None and old.version == version_id:
                return old
            history = [*old.history, old.version] if old is not None else []
            promote_remote(self.version_dir(version_id), self.name, alias)  # service alias too
            rec = AliasRecord(version=version_id, history=history, updated_at=time.time())
            write_record(path, rec)
            return rec

    def rollback(self, alias: str) -> AliasRecord:
        """Point ``alias`` back at the newest earlier version that still exists."""
        path = self._alias_path(alias)
        with self._lock():
            rec = self.alias_record(alias)
            history = [v for v in rec.history if self.has_version(v)]
            if not history:
                raise AliasError(f"alias {alias!r} has no earlier version to roll back to")
            version = history.pop()
            promote_remote(self.version_dir(version), self.name, alias)
            rec = AliasRecord(version=version, history=history, updated_at=time.time())
            write_record(path, rec)
            return rec

    def protected(self) -> set[str]:
        """Versions that aliases point at now or could roll back to."""
        return {read_record(p, AliasRecord).version for p in self._alias_files()}

    def gc(self, keep: int) -> dict[str, list[str]]:
        """Delete all but the newest ``keep`` versions; never an aliased one."""
        with self._lock():
            leftovers = self.clean_leftovers()
            protected = self.protected()
            versions = [m.version_id for m in self.versions()]
            newest = set(versions[-keep:]) if keep > 0 else set()
            deleted = []
            for v in versions:
                if v in protected or v in newest:
                    continue
                try:
                    release_remote(self.version_dir(v))  # a remote store deletes its index
                except AliasError:
                    continue  # aliased on the service (by anyone): the version stays
                trash = self.versions_dir / f".del-{v}"
                os.rename(self.version_dir(v), trash)  # vanish atomically, then delete
                shutil.rmtree(trash, ignore_errors=True)
                deleted.append(v)
            for d in self.versions_dir.glob(".del-*"):
                shutil.rmtree(d, ignore_errors=True)
            # drop rollback history that points at deleted versions
            for p in self._alias_files():
                rec = read_record(p, AliasRecord)
                hist = [v for v in rec.history if self.has_version(v)]
                if hist != rec.history:
                    write_record(p, rec.model_copy(update={"history": hist}))
            return {
                "deleted": deleted,
                "kept": [v for v in versions if v not in deleted],
                "cleaned": leftovers,
            }

    def diff(self, v1: str, v2: str) -> dict[str, Any]:
        """Documents added, removed and changed, and chunk counts, from ``v1`` to ``v2``."""
        a, b = self.manifest(self.resolve(v1)), self.manifest(self.resolve(v2))
        da, db = a.documents, b.documents
        ca, cb = self._chunk_hashes(a.version_id), self._chunk_hashes(b.version_id)
        return {
            "from": a.version_id,
            "to": b.version_id,
            "docs_added": sorted(set(db) - set(da)),
            "docs_removed": sorted(set(da) - set(db)),
            "docs_changed": sorted(d for d in set(da) & set(db) if da[d].hash != db[d].hash),
            "chunks_added": len(cb - ca),
            "chunks_removed": len(ca - cb),
            "chunks_unchanged": len(ca & cb),
        }

    def chunk_keys(self) -> set[tuple[str, str]]:
        """(model id, chunk hash) of every chunk in every published version."""
        keys: set[tuple[str, str]] = set()
        for m in self.versions():
            keys.update((m.model_id, h) for h in self._chunk_hashes(m.version_id))
        return keys

    def _chunk_hashes(self, version_id: str) -> set[str]:
        db = sqlite3.connect(
            f"file:{self.version_dir(version_id) / 'chunks.sqlite'}?mode=ro", uri=True
        )
        try:
            return {r[0] for r in db.execute("SELECT hash FROM chunks")}
        finally:
            db.close()


def prune_embedding_cache(home: Path | None = None) -> dict[str, int]:
    """Drop cached vectors that no published version of any index uses.

    A build running at the same time only loses cache hits for chunks it has not published yet
    (it keeps its own vectors in memory), so this is safe but best run between builds.
    """
    from indexing.embedcache import EmbeddingCache

    home = home or get_settings().home
    path = home / "cache" / "embeddings.sqlite"
    if not path.exists():
        return {"removed": 0, "kept": 0}
    keep: set[tuple[str, str]] = set()
    for name in Catalog.names(home):
        keep |= Catalog(name, home=home).chunk_keys()
    cache = EmbeddingCache(path)
    try:
        removed = cache.prune(keep)
        return {"removed": removed, "kept": cache.count()}
    finally:
        cache.close()
