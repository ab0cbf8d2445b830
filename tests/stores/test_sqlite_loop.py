"""SQLiteStore off the event loop: another process holding the file's write lock makes a
call wait (then fail with StoreUnavailable, or succeed once the lock is let go) while the
loop goes on; close() ends the store's worker thread."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from tests.stores.helpers import make_record, run

import sessionlayer
from sessionlayer.stores import SQLiteStore, StoreUnavailable

#: The largest gap allowed between two ticks of a 10 ms ticker (generous: 2 shared cores).
MAX_GAP = 0.25

# Runs in a child: takes the write lock of the file, says so, holds it until its stdin
# says (or closes), then lets go and exits.
HOLDER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
db.execute("ROLLBACK")
db.close()
"""


class Holder:
    """Another process holding the write lock of ``path``."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def release(self) -> None:
        """Returns once the process has let go of the lock and exited."""
        if self.proc.returncode is None:
            await asyncio.wait_for(self.proc.communicate(b"\n"), 10)


@asynccontextmanager
async def locked(path: Path) -> AsyncIterator[Holder]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, str(path),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    holder = Holder(proc)
    try:
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), 10) == b"locked\n"
        yield holder
    finally:
        await holder.release()


class Ticker:
    """Ticks every 10 ms on the loop and keeps the largest gap between two ticks."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.ticks = 0
        self.max_gap = 0.0
        self._last = self.loop.time()  # (a stall before its first tick counts too)
        self._task = asyncio.ensure_future(self._tick())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.01)
            now = self.loop.time()
            self.max_gap = max(self.max_gap, now - self._last)
            self.ticks += 1
            self._last = now

    def worst(self) -> float:
        """The largest gap so far, the one running now included."""
        return max(self.max_gap, self.loop.time() - self._last)

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def until(self, ticks: int) -> None:
        """Until ``ticks`` more ticks (the loop ran meanwhile)."""
        target = self.ticks + ticks
        while self.ticks < target:
            await asyncio.sleep(0.01)


def loop_errors() -> list[dict[str, Any]]:
    """What reaches the running loop's exception handler, from now on."""
    seen: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, context: seen.append(context))
    return seen


async def timed(call: Awaitable[Any]) -> tuple[float, BaseException | None]:
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        await call
    except StoreUnavailable as exc:
        return loop.time() - started, exc
    return loop.time() - started, None


def store_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("sessionlayer-sqlite")}


def test_a_locked_database_fails_the_call_in_time_and_the_loop_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "sessions.db"

    async def main() -> None:
        errors = loop_errors()
        store = SQLiteStore(path, timeout=1.0)
        record = make_record()
        await store.put(record)
        async with locked(path):
            ticker = Ticker()
            took, failed = await timed(store.put(make_record()))
            assert ticker.worst() < MAX_GAP, ticker.worst()  # (it was the whole timeout)
            assert isinstance(failed, StoreUnavailable), failed
            assert "locked" in str(failed) and "1s" in str(failed)
            assert 0.9 <= took < 3.0
            # Every kind of write fails the same way; reads go on (WAL).
            for call in (
                store.advance(record.id, 0, node="x", expires_at=None),
                store.update(record.id, expires_at=None),
                store.delete(record.id),
                store.expire(record.created + 1e6),
            ):
                _, failed = await timed(call)
                assert isinstance(failed, StoreUnavailable), failed
            assert await store.get(record.id) == record
            assert [r.id for r in await store.list()] == [record.id]
            await ticker.stop()
            assert ticker.ticks >= 100  # the loop ran all along: 5 calls of 1 s
            assert ticker.worst() < MAX_GAP, ticker.worst()
        await store.close()
        assert not errors

    run(main())


def test_calls_queued_behind_a_lock_fail_within_their_own_timeout(tmp_path: Path) -> None:
    """Eight calls made at once while the file is locked: each fails within ``timeout``
    of its call, not one after the other (8 x 0.5 s)."""
    path = tmp_path / "sessions.db"

    async def main() -> None:
        store = SQLiteStore(path, timeout=0.5)
        async with locked(path):
            ticker = Ticker()
            started = ticker.loop.time()
            results = await asyncio.gather(*(timed(store.put(make_record())) for _ in range(8)))
            took = ticker.loop.time() - started
            await ticker.stop()
        assert all(isinstance(failed, StoreUnavailable) for _, failed in results), results
        assert took < 2.0, (took, results)
        assert ticker.worst() < MAX_GAP, ticker.worst()
        assert await store.list() == []
        await store.close()

    run(main())


def test_a_call_waiting_for_the_lock_succeeds_once_it_is_let_go(tmp_path: Path) -> None:
    path = tmp_path / "sessions.db"

    async def main() -> None:
        errors = loop_errors()
        store = SQLiteStore(path, timeout=10.0)
        record = make_record()
        await store.put(record)
        later, dropped = make_record(), make_record()
        async with locked(path) as holder:
            ticker = Ticker()
            advance = asyncio.ensure_future(store.advance(record.id, 0, node="b", expires_at=None))
            queued = asyncio.ensure_future(store.put(dropped))  # (behind the advance)
            await ticker.until(20)  # the loop goes on; the advance waits for the lock
            assert not advance.done()
            queued.cancel()  # a call cancelled before its turn never runs
            await holder.release()
            new = await advance
            assert new is not None and new.generation == 1 and new.node == "b"
            await store.put(later)
            await ticker.stop()
            assert ticker.worst() < MAX_GAP, ticker.worst()
        assert queued.cancelled()
        assert await store.get(record.id) == new
        assert await store.get(later.id) == later
        assert await store.get(dropped.id) is None
        await store.close()
        assert not errors

    run(main())


def test_close_waits_for_the_calls_made_and_ends_the_worker(tmp_path: Path) -> None:
    path = tmp_path / "sessions.db"
    before = store_threads()

    async def main() -> None:
        errors = loop_errors()
        store = SQLiteStore(path, timeout=0.5)
        await store.put(make_record())
        assert store_threads() - before  # the worker, started by the first call
        async with locked(path):
            waiting = asyncio.ensure_future(store.put(make_record()))
            abandoned = asyncio.ensure_future(store.put(make_record()))
            await asyncio.sleep(0)  # (both calls made)
            abandoned.cancel()  # its caller gave up: the result goes nowhere, quietly
            ticker = Ticker()
            await store.close()  # after the waiting call failed, within its timeout
            await ticker.stop()
            assert ticker.worst() < MAX_GAP, ticker.worst()
            with pytest.raises(StoreUnavailable, match="locked"):
                await waiting  # (done: it had its turn before the close)
        assert not store_threads() - before
        with pytest.raises(StoreUnavailable, match="closed"):
            await store.get(make_record().id)
        with pytest.raises(StoreUnavailable, match="closed"):
            await store.secret()
        await store.close()  # twice: harmless
        assert not errors

    run(main())


def test_close_cancelled_still_closes(tmp_path: Path) -> None:
    path = tmp_path / "sessions.db"
    before = store_threads()

    async def main() -> None:
        store = SQLiteStore(path, timeout=10.0)
        await store.put(make_record())
        async with locked(path) as holder:
            waiting = asyncio.ensure_future(store.put(make_record()))
            closing = asyncio.ensure_future(store.close())
            await asyncio.sleep(0)  # (both made: the close is queued behind the put)
            closing.cancel()
            await asyncio.gather(closing, return_exceptions=True)
            with pytest.raises(StoreUnavailable, match="closed"):
                await store.get(make_record().id)
            await holder.release()
            await waiting  # it had its turn, then the close
        # The worker ends after the queued close; join it (bounded) off the loop.
        for thread in store_threads() - before:
            await asyncio.to_thread(thread.join, 10)
        assert not store_threads() - before
        assert store._db is None

    run(main())


async def _echo(session: sessionlayer.Session) -> None:
    async for data in session:
        await session.send(data)


def test_a_server_accepts_promptly_while_its_store_is_locked(tmp_path: Path) -> None:
    """The defect at the server: every accept (a put) froze the loop for the store's
    timeout; now the clients connect at once, and the sessions go on."""
    path = tmp_path / "sessions.db"

    async def main() -> None:
        store = SQLiteStore(path, timeout=2.0)
        server = await sessionlayer.serve(_echo, store=store)
        first = await sessionlayer.connect("127.0.0.1", server.port)
        clients = [first]
        try:
            async with locked(path):
                ticker = Ticker()
                loop = asyncio.get_running_loop()
                started = loop.time()
                for _ in range(3):
                    clients.append(await sessionlayer.connect("127.0.0.1", server.port))
                assert loop.time() - started < 1.5  # it was 3 x 2 s
                await first.send(b"ping")
                assert await first.receive() == b"ping"
                await ticker.stop()
                assert ticker.worst() < MAX_GAP, ticker.worst()
        finally:
            for client in clients:
                client.abort()
            server.close()
            await server.wait_closed()
            await store.close()

    run(main())


def test_opening_an_existing_file_does_not_wait_for_its_lock(tmp_path: Path) -> None:
    """Opening is not a coroutine: on a file that has its tables it takes no lock (WAL
    reads), so a server starting beside a busy writer does not freeze its loop."""
    path = tmp_path / "sessions.db"

    async def main() -> None:
        store = SQLiteStore(path)
        record = make_record()
        await store.put(record)
        await store.close()
        async with locked(path):
            loop = asyncio.get_running_loop()
            started = loop.time()
            reopened = SQLiteStore(path, timeout=5.0)
            assert loop.time() - started < MAX_GAP
            try:
                assert await reopened.get(record.id) == record
            finally:
                await reopened.close()

    run(main())
