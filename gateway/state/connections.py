"""Per-thread SQLite connections in WAL mode (shared by the state store and the ledger).

Short statements run inline on the event loop when they cannot wait: :meth:`ThreadConnections.
inline` hands out this thread's *no-wait* connection (``busy_timeout=0``) only while no other
thread of this process is writing, and a database locked by another process fails at once with
``SQLITE_BUSY`` (:func:`is_busy`) instead of sleeping; the caller then retries in a worker thread
on the ordinary connection, which waits.  A thread hop costs more than the statement itself.
The no-wait connection never checkpoints inside a commit (a checkpoint calls ``fsync``, which
must not stall the loop): every ``CHECKPOINT_EVERY`` inline write transactions a passive
checkpoint runs in a worker thread instead.

>>> conns = ThreadConnections("state.db", synchronous="NORMAL")    # doctest: +SKIP
>>> conns.get().execute("SELECT 1")                                 # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["CHECKPOINT_EVERY", "ThreadConnections", "immediate", "is_busy"]

log = logging.getLogger(__name__)
CHECKPOINT_EVERY = 200  # inline write transactions between two checkpoints (in a thread)


def is_busy(e: sqlite3.Error) -> bool:
    """The database was locked (by another process): retry where waiting is allowed."""
    code = getattr(e, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One ``BEGIN IMMEDIATE`` write transaction: committed on exit, rolled back on any error
    (cancellation included)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


class ThreadConnections:
    """One connection per thread (``asyncio.to_thread`` workers), closed together."""

    def __init__(self, path: str | Path, synchronous: str = "NORMAL"):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.synchronous = synchronous
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        # Writers in this process take turns here instead of in SQLite's busy handler, whose
        # back-off sleeps (up to 100 ms each) made the p99 of concurrent requests ~300 ms.
        # Other processes still serialise on the database lock as before.
        self.write_lock = threading.Lock()
        self._inline_writes = 0
        self._checkpointing: asyncio.Future[None] | None = None
        self.checkpoints = 0  # checkpoints run in a thread (tests)

    def get(self, *, nowait: bool = False) -> sqlite3.Connection:
        """This thread's connection; ``nowait``: the one that never waits for a lock."""
        attr = "nowait" if nowait else "conn"
        conn: sqlite3.Connection | None = getattr(self._local, attr, None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, timeout=0 if nowait else 30, isolation_level=None,
                check_same_thread=False,
            )  # fmt: skip
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.execute(f"PRAGMA busy_timeout={0 if nowait else 30000}")
            if nowait:
                conn.execute("PRAGMA wal_autocheckpoint=0")  # see _wrote_inline
            setattr(self._local, attr, conn)
            with self._lock:
                self._conns.append(conn)
        return conn

    @contextmanager
    def inline(self, write: bool = True) -> Iterator[sqlite3.Connection | None]:
        """The no-wait connection (holding :attr:`write_lock` when ``write``), or None when
        another thread of this process holds the lock: then run the work in a thread."""
        if write and not self.write_lock.acquire(blocking=False):
            yield None
            return
        try:
            yield self.get(nowait=True)
        finally:
            if write:
                self.write_lock.release()
        if write:
            self._wrote_inline()

    def _wrote_inline(self) -> None:
        """Count an inline write; every :data:`CHECKPOINT_EVERY`, checkpoint in a thread."""
        self._inline_writes += 1
        if self._inline_writes < CHECKPOINT_EVERY or self._checkpointing is not None:
            return
        self._inline_writes = 0
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous caller): checkpoint here
            self._checkpoint()
            return
        self._checkpointing = loop.run_in_executor(None, self._checkpoint)
        self._checkpointing.add_done_callback(self._checkpoint_done)

    def _checkpoint(self) -> None:
        # Holding the write lock, so that no writer of this process appends meanwhile and the
        # checkpoint can complete: the next write then starts the WAL over instead of growing
        # it.  (Writers arriving meanwhile wait in a thread; once every CHECKPOINT_EVERY.)
        with self.write_lock:
            self.get().execute("PRAGMA wal_checkpoint(PASSIVE)")
        self.checkpoints += 1

    def _checkpoint_done(self, fut: asyncio.Future[None]) -> None:
        self._checkpointing = None
        err = None if fut.cancelled() else fut.exception()
        if err is not None:  # tried again after the next inline write
            log.warning("checkpoint of %s failed: %s: %s", self.path, type(err).__name__, err)
            self._inline_writes = CHECKPOINT_EVERY

    async def run(self, op: Callable[..., T], *args: Any, write: bool = True) -> T:
        """``op(conn, *args)`` inline when it cannot wait (:meth:`inline`), else in a worker
        thread that waits for the lock; ``op`` must roll back what it began if it fails."""
        with self.inline(write) as c:
            if c is not None:
                try:
                    return op(c, *args)
                except sqlite3.OperationalError as e:
                    if not is_busy(e):
                        raise
        return await asyncio.to_thread(self._in_thread, op, args, write)

    def _in_thread(self, op: Callable[..., T], args: tuple[Any, ...], write: bool) -> T:
        if not write:
            return op(self.get(), *args)
        with self.write_lock:
            return op(self.get(), *args)

    def close(self) -> None:
        with self._lock:
            for c in self._conns:
                c.close()
            self._conns.clear()
        self._local = threading.local()
