"""Embedding cache keyed by (model id + revision, chunk hash), in SQLite (WAL).

Shared by every index and version under ``$GENAIOPS_HOME/cache``: an unchanged chunk is never
embedded twice.  Vectors are stored as raw float32 bytes (never pickled).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

import numpy as np

__all__ = ["EmbeddingCache"]


class EmbeddingCache:
    """Vectors by (model id, chunk hash), shared by all indexes so nothing is embedded twice.

    >>> cache = EmbeddingCache(home / "cache" / "embeddings.sqlite")     # doctest: +SKIP
    >>> cache.get_many(model_id, hashes)                                  # doctest: +SKIP
    """

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS emb (model TEXT NOT NULL, hash TEXT NOT NULL, "
            "dim INTEGER NOT NULL, vec BLOB NOT NULL, PRIMARY KEY (model, hash))"
        )

    def get_many(self, model: str, hashes: Iterable[str]) -> dict[str, np.ndarray]:
        """The cached vectors among ``hashes`` (missing ones are simply absent)."""
        found: dict[str, np.ndarray] = {}
        unique = list(dict.fromkeys(hashes))
        for i in range(0, len(unique), 500):
            part = unique[i : i + 500]
            marks = ",".join("?" * len(part))
            rows = self._db.execute(
                f"SELECT hash, dim, vec FROM emb WHERE model=? AND hash IN ({marks})",
                [model, *part],
            )
            for h, dim, blob in rows:
                vec = np.frombuffer(blob, dtype=np.float32)
                if vec.shape[0] == dim:
                    found[h] = vec
        return found

    def put_many(self, model: str, items: dict[str, np.ndarray]) -> None:
        """Store vectors in one transaction (a killed build keeps every finished batch)."""
        rows = [
            (model, h, int(v.shape[0]), np.asarray(v, dtype=np.float32).tobytes())
            for h, v in items.items()
        ]
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany("INSERT OR REPLACE INTO emb VALUES (?, ?, ?, ?)", rows)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def prune(self, keep: Iterable[tuple[str, str]]) -> int:
        """Delete every vector whose (model, hash) is not in ``keep``; returns how many."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute("CREATE TEMP TABLE IF NOT EXISTS keep (model TEXT, hash TEXT)")
            self._db.execute("DELETE FROM keep")
            self._db.executemany("INSERT INTO keep VALUES (?, ?)", keep)
            cur = self._db.execute(
                "DELETE FROM emb WHERE NOT EXISTS (SELECT 1 FROM keep k "
                "WHERE k.model = emb.model AND k.hash = emb.hash)"
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return int(cur.rowcount)

    def count(self, model: str | None = None) -> int:
        """How many vectors are cached (for one model, or all)."""
        if model is None:
            return int(self._db.execute("SELECT COUNT(*) FROM emb").fetchone()[0])
        q = "SELECT COUNT(*) FROM emb WHERE model=?"
        return int(self._db.execute(q, [model]).fetchone()[0])

    def close(self) -> None:
        """Close the SQLite connection."""
        self._db.close()
