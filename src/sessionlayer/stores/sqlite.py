"""``SQLiteStore``: session records in one SQLite file, shared by the processes of one host.

The file is in WAL mode with ``synchronous=NORMAL``: a commit is in the write-ahead log
(the operating system's cache) when the call returns, so a record survives the writing
process being killed (``kill -9``: tests/stores/test_sqlite_durability.py); after a power
loss or an OS crash the last commits may be missing, never half there.
``synchronous="FULL"`` syncs the log to disk on every commit, which survives those too,
at the cost of one fsync per write.

Calls run the standard :mod:`sqlite3` right on the event loop: each is one short local
transaction.  Two processes may use one file; a call waits up to ``timeout`` seconds for
the other's write lock, then raises :class:`~sessionlayer.errors.StoreUnavailable`.

Two tables: ``meta`` (the server secret) and ``sessions`` (the id, the detach deadline
for :meth:`SQLiteStore.expire`, and the record as JSON, :mod:`.records`).  The schema
version is the file's ``PRAGMA user_version``.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import secrets
import sqlite3
from collections.abc import Iterator
from dataclasses import replace

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


class SQLiteStore:
    """Records in the SQLite file at ``path`` (created with its tables if absent).

    ``timeout``: seconds a call waits for another process's lock.  ``synchronous``:
    ``"NORMAL"`` (survives the process being killed) or ``"FULL"`` (survives power loss
    too).  Opening raises :class:`~sessionlayer.errors.StoreUnavailable` when the file
    cannot be opened or was written by a newer schema.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, timeout: float = 2.0, synchronous: str = "NORMAL"
    ) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous is 'NORMAL' or 'FULL', not {synchronous!r}")
        self.path = os.fspath(path)
        self.name = f"sqlite:{self.path}"
        self._secret: bytes | None = None
        self._db: sqlite3.Connection | None = None
        with self._guard():
            # timeout= is SQLite's busy timeout: how long a statement waits for a lock.
            self._db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
            try:
                self._db.execute("PRAGMA journal_mode = WAL")
                self._db.execute(f"PRAGMA synchronous = {synchronous}")
                self._create()
            except BaseException:
                self._db.close()
                self._db = None
                raise

    def _create(self) -> None:
        with self._transaction() as db:
            (version,) = db.execute("PRAGMA user_version").fetchone()
            if version == 0:
                for statement in _SCHEMA:
                    db.execute(statement)
            elif version != SCHEMA_VERSION:
                raise StoreUnavailable(
                    self.name, f"schema version {version}, this code knows {SCHEMA_VERSION}"
                )

    async def secret(self) -> bytes:
        if self._secret is None:
            with self._guard(), self._transaction() as db:
                db.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('secret', ?)",
                    (secrets.token_bytes(32),),
                )
                (value,) = db.execute("SELECT value FROM meta WHERE key = 'secret'").fetchone()
            if not (isinstance(value, bytes) and len(value) == 32):
                raise StoreUnavailable(self.name, "the stored secret is not 32 octets")
            self._secret = value
        return self._secret

    async def put(self, record: SessionRecord) -> None:
        with self._guard():
            self._write(self._connection(), record)

    async def get(self, session_id: str) -> SessionRecord | None:
        with self._guard():
            return self._read(self._connection(), session_id)

    async def advance(
        self, session_id: str, generation: int, *, node: str | None, expires_at: float | None
    ) -> SessionRecord | None:
        with self._guard(), self._transaction() as db:
            record = self._read(db, session_id)
            if record is None or record.generation != generation:
                return None
            record = replace(record, generation=generation + 1, node=node, expires_at=expires_at)
            self._write(db, record)
            return record

    async def update(
        self,
        session_id: str,
        *,
        expires_at: float | Keep | None = KEEP,
        checkpoint: Checkpoint | Keep | None = KEEP,
        node: str | Keep | None = KEEP,
    ) -> bool:
        with self._guard(), self._transaction() as db:
            record = self._read(db, session_id)
            if record is None:
                return False
            if expires_at is not KEEP:
                record = replace(record, expires_at=expires_at)
            if checkpoint is not KEEP:
                record = replace(record, checkpoint=checkpoint)
            if node is not KEEP:
                record = replace(record, node=node)
            self._write(db, record)
            return True

    async def delete(self, session_id: str) -> bool:
        with self._guard():
            cursor = self._connection().execute("DELETE FROM sessions WHERE id = ?", (session_id,))
            return cursor.rowcount > 0

    async def list(self) -> builtins.list[SessionRecord]:
        with self._guard():
            rows = self._connection().execute("SELECT id, record FROM sessions").fetchall()
            found = [self._decode(session_id, text) for session_id, text in rows]
        return sorted(found, key=lambda r: (r.created, r.id))

    async def expire(self, now: float) -> builtins.list[str]:
        where = "FROM sessions WHERE expires_at IS NOT NULL AND expires_at <= ?"
        with self._guard(), self._transaction() as db:
            gone = [session_id for (session_id,) in db.execute(f"SELECT id {where}", (now,))]
            db.execute(f"DELETE {where}", (now,))
        return gone

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            db.close()

    # -- helpers (synchronous)

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreUnavailable(self.name, "the store was closed")
        return self._db

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """SQLite's errors (locked past the timeout, I/O, a corrupt file) as
        StoreUnavailable."""
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreUnavailable(self.name, f"{type(exc).__name__}: {exc}") from exc

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: the write lock from its first statement, so that a
        read-then-write (advance, update, expire) is atomic across processes too."""
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            raise

    def _read(self, db: sqlite3.Connection, session_id: str) -> SessionRecord | None:
        row = db.execute("SELECT record FROM sessions WHERE id = ?", (session_id,)).fetchone()
        return None if row is None else self._decode(session_id, row[0])

    def _decode(self, session_id: str, text: str) -> SessionRecord:
        try:
            return records.decode(text)
        except ValueError as exc:
            raise StoreUnavailable(self.name, f"record {session_id} is corrupt: {exc}") from None

    @staticmethod
    def _write(db: sqlite3.Connection, record: SessionRecord) -> None:
        db.execute(
            "INSERT OR REPLACE INTO sessions (id, expires_at, record) VALUES (?, ?, ?)",
            (record.id, record.expires_at, records.encode(record)),
        )
