"""``SQLiteStore``: session records in one SQLite file, shared by the processes of one host.

The file is in WAL mode with ``synchronous=NORMAL``: a commit is in the write-ahead log
(the operating system's cache) when the call returns, so a record survives the writing
process being killed (``kill -9``: tests/stores/test_sqlite.py); after a power
loss or an OS crash the last commits may be missing, never half there.
``synchronous="FULL"`` syncs the log to disk on every commit, which survives those too,
at the cost of one fsync per write.

Calls run the standard :mod:`sqlite3` off the event loop, on one worker thread of the
store's own, one after the other in the order they were made: each is one short local
transaction.  Two processes may use one file; a call waits up to ``timeout`` seconds
(counted from the call, its wait behind the store's earlier calls included) for the
other's write lock, then raises :class:`~sessionlayer.errors.StoreUnavailable`.  The loop
goes on meanwhile (tests/stores/test_sqlite_loop.py).

Two tables: ``meta`` (the server secret) and ``sessions`` (the id, the deadline for
:meth:`SQLiteStore.expire`: a detached session's, or an attached one's lease, and the
record as JSON, :mod:`.records`).  The schema
version is the file's ``PRAGMA user_version``.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import os
import secrets
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TypeVar

from ..errors import StoreUnavailable
from . import records
from .base import KEEP, Checkpoint, Keep, SessionRecord

__all__ = ["SQLiteStore", "SCHEMA_VERSION"]

#: ``PRAGMA user_version`` of a file this code created (0: a new, empty file).
SCHEMA_VERSION = 1

_SCHEMA = [
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL)",
    "CREATE TABLE sessions (id TEXT PRIMARY KEY, expires_at REAL, record TEXT NOT NULL)",
    "CREATE INDEX sessions_detached ON sessions (expires_at) WHERE expires_at IS NOT NULL",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
]

_BUSY = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
_PAUSE = 0.005  #: seconds between two tries to set a file up while another process does


def _is_busy(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF in _BUSY

T = TypeVar("T")


class _Corrupt(StoreUnavailable):
    """(What the store raises for a record it cannot read: a StoreUnavailable.)"""


class SQLiteStore:
    """Records in the SQLite file at ``path`` (created with its tables if absent).

    ``timeout``: seconds a call waits for another process's lock.  ``synchronous``:
    ``"NORMAL"`` (survives the process being killed) or ``"FULL"`` (survives power loss
    too).  Opening raises :class:`~sessionlayer.errors.StoreUnavailable` when the file
    cannot be opened or was written by a newer schema.

    Opening runs on the calling thread (it is not a coroutine): it waits for another
    process (up to ``timeout`` from the call, trying again while that one sets the file
    up) only to set up a new file: WAL mode and the tables.  Every other call runs on the
    store's worker thread, which :meth:`close` ends.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, timeout: float = 2.0, synchronous: str = "NORMAL"
    ) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous is 'NORMAL' or 'FULL', not {synchronous!r}")
        records.check_timeout(timeout)  # (before the file is made)
        self.path = os.fspath(path)
        self.name = f"sqlite:{self.path}"
        self._timeout = timeout
        self._secret: bytes | None = None
        self._db: sqlite3.Connection | None = None
        self._closed = False
        self._skipped = records.Skipped(self.name)
        self._create_private()
        started = time.monotonic()
        with self._guard(started):
            # timeout= is SQLite's busy timeout: how long a statement waits for a lock
            # (each call sets it to what is left of its own timeout).  The connection is
            # made here and then used by the worker thread only, one call at a time.
            self._db = sqlite3.connect(
                self.path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
            try:
                self._set_up(self._db, synchronous, started + timeout)
            except BaseException:
                self._db.close()
                self._db = None
                raise
        # One thread (started by the first call): the calls keep their order, and the
        # connection is never used by two threads at once.
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sessionlayer-sqlite")

    def _create_private(self) -> None:
        """A new file is made readable by its owner only (0600, whatever the umask): it
        holds the server secret, the key of every resume token.  SQLite makes its -wal and
        -shm files with the main file's mode.  A file that exists keeps its mode (its owner
        chose it), but one that other users may read is a WARNING: they can forge tokens."""
        path, create = self._file()
        if path is None:
            return
        try:
            if not create:
                raise FileExistsError  # (mode=ro or rw: SQLite creates nothing)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            with contextlib.suppress(OSError):
                mode = os.stat(path).st_mode
                if mode & 0o044:
                    logging.getLogger("sessionlayer.stores").warning(
                        "session store %s can be read by other users (mode %04o): it holds"
                        " the secret that signs resume tokens; chmod 600 it", self.path,
                        mode & 0o7777)  # fmt: skip
            return
        except OSError as exc:
            raise StoreUnavailable(self.name, os.strerror(exc.errno or 0)) from None
        os.close(fd)

    def _set_up(self, db: sqlite3.Connection, synchronous: str, deadline: float) -> None:
        """WAL mode and the tables, tried again while another connection is busy with the
        file (until ``deadline``): a process opening a new file at the same time as this
        one may be setting it up, and SQLite answers a change of journal mode then with
        SQLITE_BUSY at once, without its busy handler."""
        while True:
            left = deadline - time.monotonic()
            db.execute(f"PRAGMA busy_timeout = {max(1, round(left * 1000))}")
            try:
                db.execute("PRAGMA journal_mode = WAL")
                db.execute(f"PRAGMA synchronous = {synchronous}")
                self._create(db)
                return
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() + _PAUSE >= deadline:
                    raise
            time.sleep(_PAUSE)  # (what SQLite's own busy handler would have waited)

    def _file(self) -> tuple[str | None, bool]:
        """The file SQLite opens at ``path`` (None: none, a database in memory) and whether
        it may create it.  A ``file:`` URI names its file in its path (percent-decoded),
        created unless its ``mode`` is ``ro`` or ``rw``; one naming another host is
        refused (SQLite refuses it too)."""
        if self.path in ("", ":memory:"):
            return None, False
        if not self.path.startswith("file:"):
            return self.path, True
        uri = urllib.parse.urlsplit(self.path)
        mode = urllib.parse.parse_qs(uri.query).get("mode", ["rwc"])[-1]
        path = urllib.parse.unquote(uri.path)
        if uri.netloc not in ("", "localhost"):
            raise StoreUnavailable(self.name, f"a file: URI names a local file, not one on"
                                              f" {uri.netloc!r}")  # fmt: skip
        if mode == "memory" or path in ("", ":memory:"):
            return None, False
        return path, mode == "rwc"

    def _create(self, db: sqlite3.Connection) -> None:
        # A read first (WAL: not blocked by another process's write lock); the write lock
        # only for a new file, whose version is read again under it.
        (version,) = db.execute("PRAGMA user_version").fetchone()
        if version == 0:
            with self._transaction(db):
                (version,) = db.execute("PRAGMA user_version").fetchone()
                if version == 0:
                    for statement in _SCHEMA:
                        db.execute(statement)
                    version = SCHEMA_VERSION
        if version != SCHEMA_VERSION:
            raise StoreUnavailable(
                self.name, f"schema version {version}, this code knows {SCHEMA_VERSION}"
            )

    async def secret(self) -> bytes:
        if self._secret is None:
            self._secret = await self._call(self._do_secret)
        return self._secret

    async def refresh_secret(self) -> tuple[bytes, ...]:
        # The file keeps its secret as it keeps its records: nothing to assert again.
        return (await self.secret(),)

    async def put(self, record: SessionRecord) -> None:
        await self._call(self._write, record)

    async def put_unless_taken(self, record: SessionRecord) -> SessionRecord | None:
        def work(db: sqlite3.Connection) -> SessionRecord | None:
            with self._transaction(db):  # (the check and the write: one transaction)
                stored = self._read(db, record.id)
                if stored is not None and stored.bars(record):
                    return stored
                self._write(db, record)
                return None

        return await self._call(work)

    async def get(self, session_id: str) -> SessionRecord | None:
        return await self._call(self._read, session_id)

    async def advance(
        self, session_id: str, generation: int, *, node: str | None, expires_at: float | None
    ) -> SessionRecord | None:
        def work(db: sqlite3.Connection) -> SessionRecord | None:
            with self._transaction(db):
                record = self._read(db, session_id)
                if record is None or record.generation != generation:
                    return None
                record = record.advanced(node, expires_at)
                self._write(db, record)
                return record

        return await self._call(work)

    async def update(
        self,
        session_id: str,
        *,
        expires_at: float | Keep | None = KEEP,
        checkpoint: Checkpoint | Keep | None = KEEP,
        node: str | Keep | None = KEEP,
        if_generation: int | None = None,
        if_node: str | None = None,
        detached: bool | Keep = KEEP,
        heard_at: int | Keep | None = KEEP,
    ) -> bool:
        def work(db: sqlite3.Connection) -> bool:
            with self._transaction(db):
                record = self._read(db, session_id)
                if record is None or not record.held(if_generation, if_node):
                    return False
                self._write(db, record.changed(expires_at, checkpoint, node, detached, heard_at))
                return True

        return await self._call(work)

    async def delete(
        self, session_id: str, *, if_generation: int | None = None, if_node: str | None = None
    ) -> bool:
        def work(db: sqlite3.Connection) -> bool:
            if if_generation is None and if_node is None:
                cursor = db.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
                return cursor.rowcount > 0
            with self._transaction(db):  # (the check and the removal: one transaction)
                record = self._read(db, session_id)
                if record is None or not record.held(if_generation, if_node):
                    return False
                db.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
                return True

        return await self._call(work)

    async def renew(
        self, node: str, session_ids: Sequence[str], expires_at: float
    ) -> builtins.list[str]:
        ids = list(session_ids)

        def work(db: sqlite3.Connection) -> builtins.list[str]:
            renewed = []
            with self._transaction(db):  # (one transaction for them all)
                for session_id in ids:
                    try:
                        record = self._read(db, session_id)
                    except _Corrupt as exc:  # (the others are renewed all the same)
                        self._skipped.skip(session_id, exc.why)
                        continue
                    if record is not None and record.renewable(node):
                        self._write(db, replace(record, expires_at=expires_at))
                        renewed.append(session_id)
            return renewed

        return await self._call(work)

    async def list(self) -> builtins.list[SessionRecord]:
        def work(db: sqlite3.Connection) -> builtins.list[SessionRecord]:
            rows = db.execute("SELECT id, record FROM sessions").fetchall()
            found = []
            for session_id, text in rows:
                try:
                    found.append(self._decode(session_id, text))
                except _Corrupt as exc:  # (one record does not hide the others)
                    self._skipped.skip(session_id, exc.why)
            return sorted(found, key=lambda r: (r.created, r.id))

        return await self._call(work)

    async def expire(self, now: float) -> builtins.list[str]:
        where = "FROM sessions WHERE expires_at IS NOT NULL AND expires_at <= ?"

        def work(db: sqlite3.Connection) -> builtins.list[str]:
            with self._transaction(db):
                gone = [session_id for (session_id,) in db.execute(f"SELECT id {where}", (now,))]
                db.execute(f"DELETE {where}", (now,))
            return gone

        return await self._call(work)

    async def close(self) -> None:
        """After the calls already made (each within its timeout): the connection is
        closed and the worker thread has ended when this returns.  Cancelled, it still
        happens, in the background."""
        if self._closed:
            return
        self._closed = True  # (calls from now on raise StoreUnavailable)
        loop = asyncio.get_running_loop()
        closing = loop.run_in_executor(self._worker, self._close_connection)
        try:
            failure = await asyncio.shield(closing)
        finally:
            # Done: the worker is idle and ends at once (the join is immediate).  Cancelled:
            # it ends after the close, which stays queued.
            self._worker.shutdown(wait=closing.done())
        if failure is not None:
            raise StoreUnavailable(self.name, f"closing: {failure}") from failure

    # -- helpers (synchronous, on the worker thread but for opening)

    async def _call(self, work: Callable[..., T], *args: object) -> T:
        """``work(connection, *args)`` on the worker thread, within the store's timeout
        from now."""
        if self._closed:
            raise StoreUnavailable(self.name, "the store was closed")
        deadline = time.monotonic() + self._timeout
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._worker, self._run, deadline, work, args)

    def _run(self, deadline: float, work: Callable[..., T], args: tuple[object, ...]) -> T:
        db = self._connection()
        left = deadline - time.monotonic()
        if left <= 0:
            raise StoreUnavailable(
                self.name,
                f"the database is locked: {self._timeout:g}s passed while this call waited"
                " behind the store's earlier calls",
            )
        with self._guard():
            db.execute(f"PRAGMA busy_timeout = {max(1, round(left * 1000))}")
            return work(db, *args)

    def _close_connection(self) -> sqlite3.Error | None:
        db, self._db = self._db, None
        if db is not None:
            try:
                db.close()
            except sqlite3.Error as exc:
                return exc
        return None

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreUnavailable(self.name, "the store was closed")
        return self._db

    @contextlib.contextmanager
    def _guard(self, started: float | None = None) -> Iterator[None]:
        """SQLite's errors (locked past the timeout, I/O, a corrupt file) as
        StoreUnavailable; one locked says how long was waited (from ``started``, if
        given, else the timeout, what a call waits)."""
        try:
            yield
        except sqlite3.Error as exc:
            reason = f"{type(exc).__name__}: {exc}"
            if _is_busy(exc):
                waited = self._timeout if started is None else time.monotonic() - started
                reason = f"{reason}: another connection held it {waited:.3g}s after the call"
            raise StoreUnavailable(self.name, reason) from exc

    @contextlib.contextmanager
    def _transaction(self, db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        """One write transaction: the write lock from its first statement, so that a
        read-then-write (advance, update, put_unless_taken, expire) is atomic across
        processes too."""
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            raise

    def _do_secret(self, db: sqlite3.Connection) -> bytes:
        with self._transaction(db):
            db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('secret', ?)",
                (secrets.token_bytes(32),),
            )
            (value,) = db.execute("SELECT value FROM meta WHERE key = 'secret'").fetchone()
        if not (isinstance(value, bytes) and len(value) == 32):
            raise StoreUnavailable(self.name, "the stored secret is not 32 octets")
        return value

    def _read(self, db: sqlite3.Connection, session_id: str) -> SessionRecord | None:
        row = db.execute("SELECT record FROM sessions WHERE id = ?", (session_id,)).fetchone()
        return None if row is None else self._decode(session_id, row[0])

    def _decode(self, session_id: str, text: object) -> SessionRecord:
        try:
            if not isinstance(text, str | bytes):
                raise ValueError(f"a record is text, not {type(text).__name__}")
            return records.decode(text)
        except ValueError as exc:
            raise _Corrupt(self.name, f"record {session_id} is corrupt: {exc}",
                           corrupt=session_id) from None

    @staticmethod
    def _write(db: sqlite3.Connection, record: SessionRecord) -> None:
        db.execute(
            "INSERT OR REPLACE INTO sessions (id, expires_at, record) VALUES (?, ?, ?)",
            (record.id, record.expires_at, records.encode(record)),
        )
