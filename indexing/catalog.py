"""Versions and aliases of one named index, on disk under ``$GENAIOPS_HOME/indexes/<name>``.

    <name>/versions/<version_id>/   immutable once renamed into place:
        manifest.json                spec, model id, counts, source hashes, timings, quarantine
        chunks.sqlite                chunk metadata + text (row = position in the search store)
        dense.faiss, lexical/        search structures (written by the backend)
    <name>/versions/.tmp-*/          a build in progress (owner.json names its pid)
    <name>/aliases/<alias>.json      {"version": ..., "history": [...]}, replaced atomically

A build works only in its own ``.tmp-*`` folder and publishes it with one ``rename``; aliases
change by temp file + ``os.replace`` under an exclusive ``flock``.  A killed build therefore
never damages a published version; its leftover folder is removed by the next build or ``gc``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from genaiops.errors import AliasError, GenAIOpsError, VersionNotFound
from genaiops.settings import get_settings
from indexing.chunking import Chunk
from indexing.spec import NAME_RE
from indexing.store import promote_remote, release_remote

__all__ = ["Catalog", "prune_embedding_cache", "read_chunks", "write_chunks"]


def _atomic_write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


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
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def write_chunks(path: Path, chunks: Sequence[Chunk]) -> None:
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
    if rows is None:
        cur = db.execute("SELECT * FROM chunks ORDER BY row")
    else:
        marks = ",".join("?" * len(rows))
        cur = db.execute(f"SELECT * FROM chunks WHERE row IN ({marks})", list(rows))
    return {int(r[0]): _row_to_chunk(r) for r in cur}


class Catalog:
    """The versions and aliases of one named index."""

    def __init__(self, name: str = "default", home: Path | None = None):
        if not NAME_RE.match(name):
            raise AliasError(f"bad index name {name!r}")
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
            if NAME_RE.match(d.name) and ((d / "versions").is_dir() or (d / "aliases").is_dir())
        )

    # -- versions -----------------------------------------------------------------------
    def version_dir(self, version_id: str) -> Path:
        return self.versions_dir / version_id

    def has_version(self, version_id: str) -> bool:
        return (self.version_dir(version_id) / "manifest.json").is_file()

    def manifest(self, version_id: str) -> dict[str, Any]:
        path = self.version_dir(version_id) / "manifest.json"
        try:
            return dict(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError as e:
            raise VersionNotFound(f"index {self.name!r} has no version {version_id!r}") from e

    def versions(self) -> list[dict[str, Any]]:
        """Manifests of all published versions, oldest first."""
        if not self.versions_dir.is_dir():
            return []
        out = []
        for d in self.versions_dir.iterdir():
            if d.name.startswith(".") or not (d / "manifest.json").is_file():
                continue
            out.append(self.manifest(d.name))
        return sorted(out, key=lambda m: (m.get("created_at", 0), m["version_id"]))

    def staging_dir(self) -> Path:
        """A fresh private folder for one build, tagged with our pid for later cleanup."""
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        d = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.versions_dir))
        (d / "owner.json").write_text(json.dumps({"pid": os.getpid(), "started": time.time()}))
        return d

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
            try:
                owner = json.loads((d / "owner.json").read_text())
                alive = _pid_alive(int(owner["pid"]))
            except (OSError, ValueError, KeyError):
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
        if not NAME_RE.match(alias):
            raise AliasError(f"bad alias name {alias!r}")
        return self.aliases_dir / f"{alias}.json"

    def _lock(self) -> contextlib.AbstractContextManager[None]:
        return file_lock(self.root / ".lock")

    def aliases(self) -> dict[str, str]:
        out = {}
        if self.aliases_dir.is_dir():
            for p in sorted(self.aliases_dir.glob("*.json")):
                if p.name.startswith("."):
                    continue
                out[p.stem] = json.loads(p.read_text())["version"]
        return out

    def alias_record(self, alias: str) -> dict[str, Any]:
        try:
            return dict(json.loads(self._alias_path(alias).read_text()))
        except FileNotFoundError as e:
            raise VersionNotFound(f"index {self.name!r} has no alias {alias!r}") from e

    def resolve(self, ref: str) -> str:
        """A version id, or the version an alias points at."""
        if self.has_version(ref):
            return ref
        with contextlib.suppress(AliasError):
            if self._alias_path(ref).is_file():
                return str(self.alias_record(ref)["version"])
        matches = [m["version_id"] for m in self.versions() if m["version_id"].startswith(ref)]
        if len(matches) == 1 and len(ref) >= 4:
            return matches[0]
        raise VersionNotFound(f"index {self.name!r} has no version or alias {ref!r}")

    def promote(self, version_id: str, alias: str) -> dict[str, Any]:
        if not self.has_version(version_id):
            raise VersionNotFound(f"index {self.name!r} has no version {version_id!r}")
        path = self._alias_path(alias)
        with self._lock():
            try:
                rec = json.loads(path.read_text())
            except FileNotFoundError:
                rec = {"version": None, "history": []}
            if rec["version"] == version_id:
                return dict(rec)
            promote_remote(self.version_dir(version_id), self.name, alias)  # service alias too
            if rec["version"]:
                rec["history"].append(rec["version"])
            rec.update(version=version_id, updated_at=time.time())
            _atomic_write_json(path, rec)
            return dict(rec)

    def rollback(self, alias: str) -> dict[str, Any]:
        path = self._alias_path(alias)
        with self._lock():
            rec = self.alias_record(alias)
            history = [v for v in rec["history"] if self.has_version(v)]
            if not history:
                raise AliasError(f"alias {alias!r} has no earlier version to roll back to")
            rec["version"] = history.pop()
            promote_remote(self.version_dir(rec["version"]), self.name, alias)
            rec["history"] = history
            rec["updated_at"] = time.time()
            _atomic_write_json(path, rec)
            return dict(rec)

    def protected(self) -> set[str]:
        """Versions that aliases point at now or could roll back to."""
        keep: set[str] = set()
        if self.aliases_dir.is_dir():
            for p in self.aliases_dir.glob("*.json"):
                if not p.name.startswith("."):
                    keep.add(json.loads(p.read_text())["version"])
        return keep

    def gc(self, keep: int) -> dict[str, list[str]]:
        """Delete all but the newest ``keep`` versions; never an aliased one."""
        with self._lock():
            leftovers = self.clean_leftovers()
            protected = self.protected()
            versions = [m["version_id"] for m in self.versions()]
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
            for p in self.aliases_dir.glob("*.json") if self.aliases_dir.is_dir() else []:
                rec = json.loads(p.read_text())
                hist = [v for v in rec.get("history", []) if self.has_version(v)]
                if hist != rec.get("history", []):
                    rec["history"] = hist
                    _atomic_write_json(p, rec)
            return {
                "deleted": deleted,
                "kept": [v for v in versions if v not in deleted],
                "cleaned": leftovers,
            }

    def diff(self, v1: str, v2: str) -> dict[str, Any]:
        a, b = self.manifest(self.resolve(v1)), self.manifest(self.resolve(v2))
        da, db = a["documents"], b["documents"]
        ca, cb = self._chunk_hashes(a["version_id"]), self._chunk_hashes(b["version_id"])
        return {
            "from": a["version_id"],
            "to": b["version_id"],
            "docs_added": sorted(set(db) - set(da)),
            "docs_removed": sorted(set(da) - set(db)),
            "docs_changed": sorted(d for d in set(da) & set(db) if da[d]["hash"] != db[d]["hash"]),
            "chunks_added": len(cb - ca),
            "chunks_removed": len(ca - cb),
            "chunks_unchanged": len(ca & cb),
        }

    def chunk_keys(self) -> set[tuple[str, str]]:
        """(model id, chunk hash) of every chunk in every published version."""
        keys: set[tuple[str, str]] = set()
        for m in self.versions():
            model = m["model_id"]
            keys.update((model, h) for h in self._chunk_hashes(m["version_id"]))
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
