"""What the server tells its store, and what it tells the client about it, is true
(docs/recovery.md, "Case 2", "Session stores", "Several nodes"), on real SQLite files,
over real TCP on loopback:

- a checkpoint the store cannot keep is not confirmed: the session is aborted, and the
  client's pending ``sync()`` is told why;
- a session the store could not record at its accept is recorded whole by its next write
  (a checkpoint) or the node's next lease renewal, and resumes after a restart;
- several nodes on one store: a node's stale copy of a session that another node took
  over never removes that node's record, and a client back on the stale node resumes
  from the store instead of being refused;
- the records of a node killed with SIGKILL expire after its lease; a live node's never;
- every session's end is logged once (INFO), released or aborted, with why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import sessionlayer
from sessionlayer import CheckpointRestored, Options, SessionAborted
from sessionlayer.recovery import Backoff, Resumed
from sessionlayer.stores import SessionRecord, SQLiteStore

from .balancer import Balancer
from .helpers import LIMIT, next_of, run
from .test_restart import start_server

#: The client: reconnects at once, a few times a second, gives up after ten seconds.
CLIENT = Options(backoff=Backoff(first=0.02, cap=0.1, give_up=10.0))


async def echo(session: sessionlayer.Session) -> None:
    with contextlib.suppress(sessionlayer.SessionLayerError):
        async for data in session:
            await session.send(data)


async def roundtrip(session: sessionlayer.Session, tag: bytes) -> list[CheckpointRestored]:
    """Send ``tag`` and read until its echo; the CheckpointRestored raised on the way."""
    told: list[CheckpointRestored] = []
    async with asyncio.timeout(LIMIT):
        while True:
            try:
                await session.send(tag)
                break
            except CheckpointRestored as exc:
                told.append(exc)
        while True:
            try:
                if await session.receive() == tag:
                    return told
            except CheckpointRestored as exc:
                told.append(exc)


async def unrecorded(port: int, path: Path, lines: Any) -> sessionlayer.Session:
    """A session accepted while its server's SQLite file was write-locked past the store's
    timeout: its record could not be written at accept (the server said so)."""
    with write_locked(path):
        client = await sessionlayer.connect("127.0.0.1", port, options=CLIENT)
        await lines.wait_for(f"session {client.id} is not durable yet")
    return client


async def resumed_from(session: sessionlayer.Session, user_data: bytes) -> None:
    """The session resumed from the checkpoint with ``user_data`` (case 2), and goes on."""
    event = await next_of(session, Resumed)
    assert event.outcome == "checkpoint", event
    assert event.checkpoint is not None and event.checkpoint.user_data == user_data
    told = await roundtrip(session, b"after the resume")
    assert [exc.user_data for exc in told][:1] == [user_data]


async def record_of(path: Path, session_id: str) -> SessionRecord | None:
    store = SQLiteStore(path)
    try:
        return await store.get(session_id)
    finally:
        await store.close()


async def until(condition: object, what: str, limit: float = LIMIT) -> None:
    """Wait (bounded) until ``condition()`` (a coroutine function or a function) is true."""
    async with asyncio.timeout(limit):
        while True:
            got = condition()  # type: ignore[operator]
            if asyncio.iscoroutine(got):
                got = await got
            if got:
                return
            await asyncio.sleep(0.02)  # (a poll of the condition, not a wait for a race)
    raise AssertionError(what)


@contextlib.contextmanager
def write_locked(path: Path) -> Iterator[None]:
    """Another process's view of the file: its write lock held for the block."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        yield
        db.execute("ROLLBACK")
    finally:
        db.close()


class Lines(logging.Handler):
    """The ``sessionlayer`` logger's lines (INFO and up) while in use; ``seen`` is set at
    each."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        self.seen.set()

    async def wait_for(self, text: str) -> str:
        async with asyncio.timeout(LIMIT):
            while True:
                found = [line for line in self.lines if text in line]
                if found:
                    return found[0]
                self.seen.clear()
                await self.seen.wait()


@contextlib.contextmanager
def logged() -> Iterator[Lines]:
    logger = logging.getLogger("sessionlayer")
    lines = Lines()
    level = logger.level
    logger.addHandler(lines)
    logger.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)


@contextlib.asynccontextmanager
async def node(path: Path, name: str, *, resume_timeout: float = 30.0, lease: float | None = None,
               timeout: float = 2.0) -> AsyncIterator[sessionlayer.Server]:  # fmt: skip
    server = await sessionlayer.serve(
        echo, store=SQLiteStore(path, timeout=timeout), node=name, lease=lease,
        options=Options(resume_timeout=resume_timeout),
    )  # fmt: skip
    try:
        yield server
    finally:
        server.close()
        await server.wait_closed()
        await server.store.close()


# ---------------------------------------------------------------- 1. checkpoints


def test_a_checkpoint_the_store_cannot_keep_is_not_confirmed(tmp_path: Path) -> None:
    path = tmp_path / "sessions.db"

    async def main() -> None:
        with logged() as lines:
            async with node(path, "a", timeout=0.3) as server:
                client = await sessionlayer.connect("127.0.0.1", server.port, options=CLIENT)
                await client.sync(major=True, user_data=b"cp1")
                with write_locked(path):  # the store cannot write: locked past its timeout
                    with pytest.raises(SessionAborted) as raised:
                        async with asyncio.timeout(LIMIT):
                            await client.sync(major=True, user_data=b"cp2")
                    # (read while the lock is held: the session is over, and once the store
                    # can write again its record goes)
                    record = await record_of(path, client.id)
                assert b"store could not keep checkpoint" in (raised.value.user_data or b"")
                assert client.closed
                assert record is not None and record.checkpoint is not None
                assert record.checkpoint.user_data == b"cp1"  # the one confirmed
                await lines.wait_for("is not confirmed; aborting the session")
                await until(lambda: not server.sessions, "the session ended on the server")

    run(main())


def test_a_session_not_recorded_at_accept_is_recorded_whole_by_its_checkpoint(
    tmp_path: Path,
) -> None:
    """Its accept's put failed; its first checkpoint writes the record whole (and only
    then is confirmed), so that the server restarted resumes it from there."""
    path = tmp_path / "sessions.db"

    async def main() -> None:
        with logged() as lines:
            async with contextlib.AsyncExitStack() as stack:
                a = await stack.enter_async_context(node(path, "a", timeout=0.3))
                balancer = await stack.enter_async_context(Balancer(a.port))
                client = await unrecorded(balancer.port, path, lines)
                assert await record_of(path, client.id) is None
                await roundtrip(client, b"on a")
                await client.sync(major=True, user_data=b"cp1")
                record = await record_of(path, client.id)
                assert record is not None and record.checkpoint is not None
                assert record.checkpoint.user_data == b"cp1"
                assert (record.node, record.generation) == ("a", 0)
                # A restart: node a stops (its sessions left to the store), then comes back.
                a.close(detach=True)
                await a.wait_closed()
                again = await stack.enter_async_context(node(path, "a"))
                balancer.switch(again.port)
                await resumed_from(client, b"cp1")
                await client.release()

    run(main())


def test_a_session_not_recorded_at_accept_is_recorded_by_the_lease_renewal(
    tmp_path: Path,
) -> None:
    path = tmp_path / "sessions.db"

    async def main() -> None:
        with logged() as lines:
            async with node(path, "a", timeout=0.3, lease=0.3) as server:
                client = await unrecorded(server.port, path, lines)

                async def recorded() -> bool:
                    return await record_of(path, client.id) is not None

                await until(recorded, "the renewal wrote the missing record")
                record = await record_of(path, client.id)
                assert record is not None and (record.node, record.generation) == ("a", 0)
                await lines.wait_for(f"session {client.id} recorded again")
                await client.release()

    run(main())


# ---------------------------------------------------------------- 2. several nodes


def test_a_stale_copy_that_expires_leaves_the_record_of_the_node_that_took_over(
    tmp_path: Path,
) -> None:
    path = tmp_path / "sessions.db"

    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            a = await stack.enter_async_context(node(path, "a", resume_timeout=0.3))
            b = await stack.enter_async_context(node(path, "b"))
            balancer = await stack.enter_async_context(Balancer(a.port))
            client = await sessionlayer.connect("127.0.0.1", balancer.port, options=CLIENT)
            await client.sync(major=True, user_data=b"cp1")
            await roundtrip(client, b"on a")
            balancer.switch(b.port)  # the balancer sends the client to node b
            await resumed_from(client, b"cp1")
            # Node a's copy (detached since the cut) expires, and node a goes.
            await until(lambda: a.stats.expired == 1, "node a's stale copy expired")
            a.close()
            await a.wait_closed()  # (its store writes done)
            record = await record_of(path, client.id)
            assert record is not None, "node a's stale copy removed node b's record"
            assert (record.node, record.generation) == ("b", 1)
            assert record.checkpoint is not None and record.checkpoint.user_data == b"cp1"
            await roundtrip(client, b"still on b")
            await client.release()

    run(main())


def test_a_client_back_on_the_node_of_a_stale_copy_resumes_from_the_store(
    tmp_path: Path,
) -> None:
    """a -> b -> a while a still holds its copy: the token from b is newer than a's copy,
    which is dropped; the session resumes from b's last checkpoint in the store."""
    path = tmp_path / "sessions.db"

    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            a = await stack.enter_async_context(node(path, "a"))
            b = await stack.enter_async_context(node(path, "b"))
            balancer = await stack.enter_async_context(Balancer(a.port))
            client = await sessionlayer.connect("127.0.0.1", balancer.port, options=CLIENT)
            await client.sync(major=True, user_data=b"cp1")
            balancer.switch(b.port)
            await resumed_from(client, b"cp1")
            await client.sync(major=True, user_data=b"cp2")
            assert [s.id for s in a.detached] == [client.id]  # a's copy: still there
            balancer.switch(a.port)  # the balancer flaps back
            await resumed_from(client, b"cp2")
            record = await record_of(path, client.id)
            assert record is not None and (record.node, record.generation) == ("a", 2)
            assert a.stats.resume_refused == {}
            await roundtrip(client, b"back on a")
            await client.release()

    run(main())


def test_a_client_back_on_a_node_where_its_stale_copy_ended_resumes_from_the_store(
    tmp_path: Path,
) -> None:
    """a -> b, a's copy expires there (a remembers it as over), then the client is sent
    back to a: its token from b is newer than what a knows, so it resumes from the store
    instead of being told the session is over."""
    path = tmp_path / "sessions.db"

    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            a = await stack.enter_async_context(node(path, "a", resume_timeout=0.3))
            b = await stack.enter_async_context(node(path, "b"))
            balancer = await stack.enter_async_context(Balancer(a.port))
            client = await sessionlayer.connect("127.0.0.1", balancer.port, options=CLIENT)
            await client.sync(major=True, user_data=b"cp1")
            balancer.switch(b.port)
            await resumed_from(client, b"cp1")
            await until(lambda: a.stats.expired == 1, "node a's stale copy expired")
            balancer.switch(a.port)
            await resumed_from(client, b"cp1")
            record = await record_of(path, client.id)
            assert record is not None and (record.node, record.generation) == ("a", 2)
            assert a.stats.resume_refused == {}
            await client.release()

    run(main())


# ---------------------------------------------------------------- 3. leases


def test_the_records_of_a_killed_node_expire_after_its_lease(tmp_path: Path) -> None:
    path = tmp_path / "sessions.db"
    lease, resume_timeout = 0.6, 0.4

    async def main() -> None:
        proc, port = await start_server(f"sqlite:{path}", tmp_path, 0, "dies", "--lease",
                                        str(lease), "--resume-timeout", str(resume_timeout))
        clients: list[sessionlayer.Session] = []
        try:
            gives_up = Options(backoff=Backoff(first=0.05, cap=0.2, give_up=2.0))
            for _ in range(5):
                client = await sessionlayer.connect("127.0.0.1", port, options=gives_up)
                clients.append(client)
                # (recorded, attached; a ledger server's checkpoint says how many it has)
                await client.sync(major=True, user_data=b"0")
            store = SQLiteStore(path)
            try:
                held = await store.list()
                assert sorted(r.id for r in held) == sorted(c.id for c in clients)
                proc.kill()  # SIGKILL: nothing renews the lease any more
                killed = time.time()
                await asyncio.wait_for(proc.wait(), LIMIT)
                for record in held:
                    assert record.node == "dies" and record.expires_at is not None
                    # (a client has at least resume_timeout from the death to come back)
                    assert record.expires_at >= killed + resume_timeout
                    assert record.expires_at <= killed + resume_timeout + lease + 0.5
                async with node(path, "survives", resume_timeout=resume_timeout):

                    async def gone() -> bool:
                        return await store.list() == []

                    await until(gone, "the dead node's records were removed")
                assert time.time() - killed <= resume_timeout + lease + LIMIT / 2
            finally:
                await store.close()
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGKILL)
            await asyncio.wait_for(proc.wait(), LIMIT)
            for client in clients:
                client.abort()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.wait_closed(), LIMIT)

    run(main())


def test_a_live_nodes_records_do_not_expire(tmp_path: Path) -> None:
    """Renewed every lease / 3, while another node sweeps the file all the time."""
    path = tmp_path / "sessions.db"

    async def main() -> None:
        async with (node(path, "a", resume_timeout=0.2, lease=0.6) as a,
                    node(path, "sweeper", resume_timeout=0.2)):  # fmt: skip
            client = await sessionlayer.connect("127.0.0.1", a.port, options=CLIENT)
            await client.sync(major=True, user_data=b"cp")
            store = SQLiteStore(path)
            try:
                seen = set()
                end = time.monotonic() + 3.0  # five leases and more
                while time.monotonic() < end:
                    record = await store.get(client.id)
                    assert record is not None, "a live node's record expired"
                    assert record.expires_at is not None
                    seen.add(record.expires_at)
                    await asyncio.sleep(0.05)
                assert len(seen) >= 5  # renewed
            finally:
                await store.close()
            await roundtrip(client, b"still here")
            assert client.resumes == 0
            await client.release()

    run(main())


# ---------------------------------------------------------------- 4. the end, logged


def test_every_session_end_is_logged_once_with_why() -> None:
    async def main() -> None:
        with logged() as lines:
            async with await sessionlayer.serve(echo) as server:
                released = await sessionlayer.connect("127.0.0.1", server.port)
                await roundtrip(released, b"x")
                await released.release()
                await lines.wait_for(f"session {released.id} ended: released")
                aborted = await sessionlayer.connect("127.0.0.1", server.port)
                await roundtrip(aborted, b"y")
                aborted.abort()
                await lines.wait_for(f"session {aborted.id} ended: aborted by the peer")
                await until(lambda: not server.sessions, "both sessions ended")
            for session in (released, aborted):
                ended = [line for line in lines.lines if f"session {session.id} ended" in line]
                assert len(ended) == 1, ended

    run(main())
