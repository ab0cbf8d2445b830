"""SQLiteStore on its own: kill -9 durability, two writers on one file, locks, the schema."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from tests.stores.helpers import TIMEOUT, make_record, run

from sessionlayer.stores import Checkpoint, SQLiteStore, StoreUnavailable
from sessionlayer.stores.records import decode
from sessionlayer.stores.sqlite import SCHEMA_VERSION

SRC = Path(__file__).resolve().parents[2] / "src"

# Runs in a child: put a record, checkpoint it, print it, then SIGKILL itself: no close(),
# no atexit, no checkpoint of the WAL into the main file.
WRITER = """
import asyncio, os, signal, sys
from sessionlayer.stores import Checkpoint, SQLiteStore
from sessionlayer.stores.records import encode
from tests.stores.helpers import make_record

async def main():
    store = SQLiteStore(sys.argv[1])
    record = make_record()
    await store.put(record)
    await store.update(record.id, checkpoint=Checkpoint(serial=12, user_data=b"\\x00after"))
    print(encode(record), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


def test_a_put_survives_kill_9_of_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "sessions.db"
    root = SRC.parent
    done = subprocess.run(
        [sys.executable, "-c", WRITER, str(path)],
        capture_output=True, text=True, timeout=60, cwd=root,
        env={"PYTHONPATH": f"{SRC}:{root}", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == -signal.SIGKILL, done.stderr
    written = decode(done.stdout.strip())
    # Killed before any checkpoint: the commits are in the write-ahead log only.
    assert Path(f"{path}-wal").stat().st_size > 0

    async def main() -> None:
        store = SQLiteStore(path)
        try:
            got = await store.get(written.id)
            point = Checkpoint(serial=12, user_data=b"\x00after")
            assert got == replace(written, checkpoint=point)
        finally:
            await store.close()

    run(main())


def test_two_writers_on_one_file_advance_exactly_once(tmp_path: Path) -> None:
    """Two connections in two threads (sqlite3 lets go of the GIL), as two processes on
    one host would: for every session exactly one advance wins."""
    path = tmp_path / "sessions.db"
    records = [make_record() for _ in range(30)]

    async def fill() -> None:
        store = SQLiteStore(path)
        for record in records:
            await store.put(record)
        await store.close()

    run(fill())
    barrier = threading.Barrier(2, timeout=TIMEOUT)
    wins: dict[str, list[str]] = {r.id: [] for r in records}
    errors: list[BaseException] = []

    def node(name: str) -> None:
        async def main() -> None:
            store = SQLiteStore(path, timeout=10.0)
            try:
                for record in records:
                    barrier.wait()
                    if await store.advance(record.id, 0, node=name, expires_at=None):
                        wins[record.id].append(name)
            finally:
                await store.close()

        try:
            asyncio.run(main())
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=node, args=(n,)) for n in ("node-a", "node-b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors
    assert all(len(names) == 1 for names in wins.values()), wins

    async def check() -> None:
        store = SQLiteStore(path)
        for record in records:
            got = await store.get(record.id)
            assert got is not None and got.generation == 1 and got.node == wins[record.id][0]
        await store.close()

    run(check())


def test_a_held_write_lock_raises_store_unavailable_after_the_timeout(tmp_path: Path) -> None:
    path = tmp_path / "sessions.db"

    async def main() -> None:
        store = SQLiteStore(path, timeout=0.2)
        record = make_record()
        await store.put(record)
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holding the write lock
        try:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="locked"):
                await store.put(make_record())
            assert time.monotonic() - started < 2.0
            with pytest.raises(StoreUnavailable):
                await store.advance(record.id, 0, node="x", expires_at=None)
            assert await store.get(record.id) == record  # WAL: readers are not blocked
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert await store.advance(record.id, 0, node="x", expires_at=None) is not None
        await store.close()

    run(main())


def test_wal_synchronous_and_schema_version(tmp_path: Path) -> None:
    for synchronous, level in (("NORMAL", 1), ("FULL", 2)):
        store = SQLiteStore(tmp_path / f"{synchronous}.db", synchronous=synchronous)
        try:
            db = store._connection()  # synchronous is a setting of each connection
            assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            assert db.execute("PRAGMA synchronous").fetchone() == (level,)
            assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        finally:
            run(store.close())
    with pytest.raises(ValueError, match="synchronous"):
        SQLiteStore(tmp_path / "x.db", synchronous="OFF")


def test_a_newer_schema_or_a_foreign_file_is_refused(tmp_path: Path) -> None:
    newer = tmp_path / "newer.db"
    db = sqlite3.connect(newer)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StoreUnavailable, match="schema version"):
        SQLiteStore(newer)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not an sqlite file" * 100)
    with pytest.raises(StoreUnavailable, match="not a database") as raised:
        SQLiteStore(garbage)
    assert raised.value.store == f"sqlite:{garbage}"
    with pytest.raises(StoreUnavailable):
        SQLiteStore(tmp_path / "no" / "such" / "folder.db")


def test_a_corrupt_record_or_secret_raises_store_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "sessions.db"

    async def main() -> None:
        store = SQLiteStore(path)
        record = make_record()
        await store.put(record)
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("UPDATE sessions SET record = '{\"id\": 1}'")
        db.close()
        with pytest.raises(StoreUnavailable, match="corrupt") as raised:
            await store.get(record.id)
        assert raised.value.corrupt == record.id  # (it will not heal: a final refusal)
        with pytest.raises(StoreUnavailable, match="corrupt") as raised:
            await store.advance(record.id, record.generation, node="b", expires_at=None)
        assert raised.value.corrupt == record.id
        assert await store.list() == []  # (skipped: test_a_corrupt_record_is_skipped...)
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("INSERT INTO meta (key, value) VALUES ('secret', x'00')")
        db.close()
        with pytest.raises(StoreUnavailable, match="32 octets") as raised:
            await store.secret()
        assert raised.value.corrupt is None
        await store.close()

    run(main())


@pytest.mark.parametrize("text", [
    "[" * 100_000 + "]" * 100_000,  # (RecursionError in json)
    '{"id": 1}',
    "not json",
])  # fmt: skip
def test_a_corrupt_record_is_skipped_by_list_and_renew_and_logged_once(
    tmp_path: Path, text: str, caplog: pytest.LogCaptureFixture
) -> None:
    """One record that is not one (nested too deep, the wrong types) does not fail a whole
    listing or a node's whole renewal (one transaction): it is skipped, with one WARNING
    however often it is met; ``get`` of it says it is corrupt (before: list() and renew()
    raised for them all, and a deep one raised RecursionError, not StoreUnavailable)."""
    path = tmp_path / "sessions.db"

    async def main() -> None:
        store = SQLiteStore(path)
        try:
            good = make_record(node="a", expires_at=1.0)
            bad = make_record(node="a", expires_at=1.0)
            await store.put(good)
            await store.put(bad)
            db = sqlite3.connect(path, isolation_level=None)
            db.execute("UPDATE sessions SET record = ? WHERE id = ?", (text, bad.id))
            db.close()
            with pytest.raises(StoreUnavailable, match=f"record {bad.id} is corrupt"):
                await store.get(bad.id)
            for _ in range(3):
                assert [r.id for r in await store.list()] == [good.id]
                assert await store.renew("a", [good.id, bad.id], 2.0) == [good.id]
            assert await store.get(good.id) == replace(good, expires_at=2.0)
        finally:
            await store.close()

    with caplog.at_level(logging.WARNING, logger="sessionlayer.stores"):
        run(main())
    skipped = [r for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 1 and "is corrupt" in skipped[0].getMessage()


def test_a_new_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    """It holds the server secret, the key of every resume token: with umask 022 it was
    0644, and any local user could read the secret and forge tokens."""
    old = os.umask(0o022)
    try:
        path = tmp_path / "sessions.db"
        store = SQLiteStore(path)
        try:
            run(store.secret())
            run(store.put(make_record()))
        finally:
            run(store.close())
    finally:
        os.umask(old)
    made = [p for p in tmp_path.iterdir() if p.name.startswith("sessions.db")]
    assert path in made
    for p in made:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, (p, oct(p.stat().st_mode))



@pytest.mark.parametrize(("mode", "warned"), [(0o644, True), (0o600, False)])
def test_a_file_others_may_read_is_warned_of(tmp_path: Path, mode: int, warned: bool,
                                             caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    """A file made before new ones were 0600 keeps its mode; now it is said, once, at open."""
    path = tmp_path / "sessions.db"
    run(SQLiteStore(path).close())
    path.chmod(mode)
    with caplog.at_level(logging.WARNING, logger="sessionlayer.stores"):
        store = SQLiteStore(path)
        run(store.close())
    said = [r.getMessage() for r in caplog.records if "can be read by other users" in
            r.getMessage()]  # fmt: skip
    assert said == ([f"session store {path} can be read by other users (mode 0644): it holds"
                     " the secret that signs resume tokens; chmod 600 it"] if warned else [])
    assert stat.S_IMODE(path.stat().st_mode) == mode  # (its mode is its owner's choice)


def _open_at_once(path: str, barrier: Any, results: Any) -> None:
    """(A child process) Open ``path`` when every child is ready; put what happened."""
    try:
        barrier.wait(TIMEOUT)
        store = SQLiteStore(path)
        secret = asyncio.run(store.secret())
        asyncio.run(store.close())
        results.put(("ok", secret.hex()))
    except BaseException as exc:  # (whatever it is, the parent says it)
        results.put(("fail", f"{type(exc).__name__}: {exc}"))


def test_processes_opening_one_new_file_at_once_all_open_it(tmp_path: Path) -> None:
    """Four processes open one file that does not exist yet, at the same moment, over
    bounded trials: every one opens it and they share one secret (before: now and then
    one failed at once with "database is locked", its change to WAL mode answered
    SQLITE_BUSY without the busy handler while another process set the file up)."""
    context = multiprocessing.get_context("fork")
    for trial in range(25):
        path = str(tmp_path / f"{trial}.db")
        barrier = context.Barrier(4)
        results = context.Queue()
        children = [context.Process(target=_open_at_once, args=(path, barrier, results))
                    for _ in range(4)]  # fmt: skip
        for child in children:
            child.start()
        got = [results.get(timeout=TIMEOUT * 4) for _ in children]
        for child in children:
            child.join(TIMEOUT)
        assert all(kind == "ok" for kind, _ in got), (trial, got)
        assert len({secret for _, secret in got}) == 1, (trial, got)


def test_a_file_set_up_by_another_past_the_timeout_says_how_long_it_waited(
    tmp_path: Path,
) -> None:
    """A new file another connection holds locked while it is being set up: the open tries
    again until its timeout, then says how long it waited (its own time, not a call's)."""
    path = tmp_path / "sessions.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match=r"held it 0\.[2-9]\d*s after the call"):
            SQLiteStore(path, timeout=0.25)
        assert time.monotonic() - started >= 0.25
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    store = SQLiteStore(path)
    run(store.close())


@pytest.mark.parametrize("form", ["file:{}", "file://{}", "file://localhost{}?cache=shared",
                                  "file:{}?mode=rwc"])  # fmt: skip
def test_a_new_file_named_by_a_file_uri_is_readable_by_its_owner_only(
    tmp_path: Path, form: str
) -> None:
    """A ``file:`` URI (``sqlite:file:...``) names the same file as a plain path, percent
    escapes decoded: it is created 0600 too (before: left to SQLite, 0644 with umask
    022, the server secret readable by every local user)."""
    old = os.umask(0o022)
    try:
        path = tmp_path / "my sessions.db"
        store = SQLiteStore(form.format(str(path).replace(" ", "%20")))
        try:
            run(store.secret())
            run(store.put(make_record()))
        finally:
            run(store.close())
    finally:
        os.umask(old)
    assert sorted(p.name for p in tmp_path.iterdir())[0] == "my sessions.db"
    for file in tmp_path.iterdir():
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
    with pytest.raises(StoreUnavailable, match="local file"):
        SQLiteStore(f"file://elsewhere{path}")
