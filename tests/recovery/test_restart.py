"""Case 2 of docs/recovery.md: the server process is killed (SIGKILL) mid-stream and
restarted on its SQLite store.  The session resumes from its last checkpoint; both sides
are told; checked message by message: the server's ledger holds every message exactly
once, in order."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import sessionlayer
from sessionlayer import CheckpointRestored, Options
from sessionlayer.recovery import Backoff, Checkpoint, Interrupted, Resumed
from sessionlayer.stores import MemoryStore

from .helpers import FAST, LIMIT, next_of, run

REPO = Path(__file__).resolve().parents[2]
N = 3000
EVERY = 200  # a checkpoint every this many messages


Server = tuple[asyncio.subprocess.Process, int]


async def start_server(store: str, ledgers: Path, port: int = 0,
                       node: str | None = None, *more: str) -> Server:  # fmt: skip
    """A ledger server (tests/recovery/ledger_server.py) in a process of its own; ``more``:
    its other arguments (``--lease``, ``--resume-timeout``)."""
    argv = [sys.executable, "-m", "tests.recovery.ledger_server", "--store", store,
            "--dir", str(ledgers), "--port", str(port), *more]  # fmt: skip
    if node is not None:
        argv += ["--node", node]
    env = dict(os.environ, PYTHONPATH=f"{REPO / 'src'}:{REPO}")
    proc = await asyncio.create_subprocess_exec(*argv, cwd=REPO, env=env,
                                                stdout=asyncio.subprocess.PIPE)  # fmt: skip
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), LIMIT)
    if not line:
        raise RuntimeError("the server process ended before listening")
    return proc, int(json.loads(line)["port"])


async def stop(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    await asyncio.wait_for(proc.wait(), LIMIT)


def message(i: int) -> bytes:
    return b"m%06d" % i


async def stream(session: sessionlayer.Session, kill_at: int,
                 kill: object) -> tuple[int, list[CheckpointRestored]]:  # fmt: skip
    """Send m0..m(N-1) with a checkpoint every EVERY messages; on CheckpointRestored send
    again from the checkpoint.  ``kill()`` (a coroutine function) runs once at ``kill_at``."""
    restored: list[CheckpointRestored] = []
    count = 0
    killed = False
    while count < N:
        try:
            await session.send(message(count))
            count += 1
            if count % EVERY == 0:
                await session.sync(major=True, user_data=b"%d" % count)
            if count == kill_at and not killed:
                killed = True
                await kill()  # type: ignore[operator]
        except CheckpointRestored as exc:
            restored.append(exc)
            count = int(exc.user_data or b"0")
    await session.sync(major=True, user_data=b"%d" % count)  # all of it durable
    return count, restored


def test_sigkill_and_restart_resume_from_the_last_checkpoint(tmp_path: Path) -> None:
    store = f"sqlite:{tmp_path / 'sessions.db'}"

    async def main() -> None:
        proc, port = await start_server(store, tmp_path)
        procs = [proc]
        try:
            opts = Options(backoff=Backoff(first=0.05, cap=0.2, give_up=30))
            session = await sessionlayer.connect("127.0.0.1", port, options=opts)

            async def kill() -> None:
                os.kill(procs[0].pid, signal.SIGKILL)
                await procs[0].wait()
                again, _ = await start_server(store, tmp_path, port)
                procs.append(again)

            async with asyncio.timeout(LIMIT * 3):
                count, restored = await stream(session, N // 2 + 37, kill)
            assert count == N
            assert len(restored) == 1
            serial = restored[0].serial
            assert serial is not None and restored[0].user_data is not None
            assert int(restored[0].user_data) % EVERY == 0  # one of the checkpoints
            assert int(restored[0].user_data) <= N // 2 + 37
            events = []
            while (event := session.next_event_nowait()) is not None:
                events.append(event)
            resumed = [e for e in events if isinstance(e, Resumed)]
            assert [r.outcome for r in resumed] == ["checkpoint"]
            assert resumed[0].checkpoint is not None and resumed[0].checkpoint.serial == serial
            ledger = (tmp_path / f"{session.id}.ledger").read_bytes().split(b"\n")[:-1]
            assert ledger == [message(i) for i in range(N)]  # exactly once, in order
            await session.release()
        finally:
            for p in procs:
                await stop(p)

    run(main())


@contextlib.asynccontextmanager
async def two_nodes(backoff: Backoff) -> AsyncIterator[
        tuple[MemoryStore, asyncio.Future[object], sessionlayer.Session,
              sessionlayer.Server]]:  # fmt: skip
    """Two echo servers in one process sharing a store (nodes "a" and "b"), and a client
    connected to "a" with "b" as its next address: (store, the first ``session.restored``
    a handler saw, the client, server a)."""
    store = MemoryStore()
    restored: asyncio.Future[object] = asyncio.get_running_loop().create_future()

    async def handler(session: sessionlayer.Session) -> None:
        if session.restored is not None and not restored.done():
            restored.set_result(session.restored)
        async for data in session:
            await session.send(data)

    a = await sessionlayer.serve(handler, options=FAST, store=store, node="a")
    b = await sessionlayer.serve(handler, options=FAST, store=store, node="b")
    async with a, b:
        client = await sessionlayer.connect("127.0.0.1", a.port, options=Options(
            backoff=backoff), addresses=[("127.0.0.1", b.port)])  # fmt: skip
        yield store, restored, client, a


def test_a_server_stopping_gracefully_hands_its_sessions_to_another_node() -> None:
    """Two servers in one process share a store; the one holding the session stops with
    close(detach=True): no AB, the record stays; the client's next address resumes it
    from its checkpoint, and a new handler there sees session.restored."""

    async def main() -> None:
        async with two_nodes(Backoff(first=0, cap=0.05, give_up=10)) as (
                store, restored, client, a):  # fmt: skip
            await client.send(b"one")
            assert await client.receive() == b"one"
            serial = await client.sync(major=True, user_data=b"after one")
            await client.send(b"two")
            assert await client.receive() == b"two"
            a.close(detach=True)
            with pytest.raises(CheckpointRestored) as info:
                await asyncio.wait_for(client.receive(), LIMIT)
            assert (info.value.serial, info.value.user_data) == (serial, b"after one")
            checkpoint = await asyncio.wait_for(restored, LIMIT)
            assert checkpoint == Checkpoint(serial, b"after one")
            record = await store.get(client.id)
            assert record is not None and record.node == "b" and record.expires_at is not None
            # Attached on b: under b's lease (renewed while b runs), past a resume's wait.
            assert record.expires_at > time.time() + FAST.resume_timeout
            with pytest.raises(CheckpointRestored):
                await client.send(b"three")  # the sender is told too, once
            await client.send(b"three")
            assert await asyncio.wait_for(client.receive(), LIMIT) == b"three"
            await client.release()

    run(main())


def test_a_request_pending_across_a_checkpoint_resume_and_the_sender_are_both_told() -> None:
    """A sync(major=True) made while detached raises CheckpointRestored (what it was about
    is gone), and the sender's next send() still does, once (the pending request used to
    take the sender's notice); the client's checkpoint carries its MAP's user data (it took
    the MAA's: None), as the server's does."""

    async def main() -> None:
        async with two_nodes(Backoff(first=0.2, jitter=0, cap=0.2, give_up=10)) as (
                _, restored, client, a):  # fmt: skip
            serial = await client.sync(major=True, user_data=b"cp1")
            assert client.checkpoint == Checkpoint(serial, b"cp1")
            await client.sync()
            a.close(detach=True)
            await a.wait_closed()
            await next_of(client, Interrupted)
            pending = asyncio.ensure_future(client.sync(major=True, user_data=b"cp2"))
            with pytest.raises(CheckpointRestored):
                await asyncio.wait_for(pending, LIMIT)
            assert await asyncio.wait_for(restored, LIMIT) == Checkpoint(serial, b"cp1")
            assert client.checkpoint == Checkpoint(serial, b"cp1")
            with pytest.raises(CheckpointRestored):
                await client.send(b"again")  # the sender is told too, once
            await client.send(b"again")
            await client.release()

    run(main())


@contextlib.asynccontextmanager
async def handed_over() -> AsyncIterator[tuple[sessionlayer.Session, sessionlayer.Server,
                                               asyncio.Queue[str]]]:  # fmt: skip
    """Two echo nodes sharing a store, a client on "a" (then "b", after 0.2 s: a window
    while detached), each handler's end put in the queue ("released" / "aborted")."""
    store = MemoryStore()
    ends: asyncio.Queue[str] = asyncio.Queue()

    async def handler(session: sessionlayer.Session) -> None:
        try:
            async for data in session:
                await session.send(data)
            ends.put_nowait("released")
        except sessionlayer.SessionAborted:
            ends.put_nowait("aborted")

    a = await sessionlayer.serve(handler, options=FAST, store=store, node="a")
    b = await sessionlayer.serve(handler, options=FAST, store=store, node="b")
    async with a, b:
        client = await sessionlayer.connect(
            "127.0.0.1", a.port, addresses=[("127.0.0.1", b.port)],
            options=Options(backoff=Backoff(first=0.2, jitter=0, cap=0.2, give_up=10)))
        yield client, a, ends


def test_messages_sent_while_detached_and_dropped_by_a_restore_are_told() -> None:
    """send() returns for the messages it keeps while the session is detached; the resume
    from the checkpoint drops them: the next receive() and the next send() raise
    CheckpointRestored (nothing is dropped silently), and they never reach the peer."""

    async def main() -> None:
        async with handed_over() as (client, a, _):
            await client.send(b"one")
            assert await client.receive() == b"one"
            await client.sync(major=True)
            a.close(detach=True)
            await next_of(client, Interrupted)
            await client.send(b"two")  # (kept for the replay: it returns)
            await client.send(b"three")
            with pytest.raises(CheckpointRestored):
                await asyncio.wait_for(client.receive(), LIMIT)
            with pytest.raises(CheckpointRestored):
                await client.send(b"four")  # the sender is told too, once
            await client.send(b"four")
            assert await asyncio.wait_for(client.receive(), LIMIT) == b"four"  # (not "two")
            await client.release()

    run(main())


def test_leaving_async_with_after_a_restore_releases_and_says_so() -> None:
    """The block ends normally after a resume from a checkpoint that nothing told yet:
    __aexit__'s release() raised CheckpointRestored and left the session open (STA713,
    live on the server); now the session is released on both sides, and the error is
    raised after (what the block sent after the checkpoint was dropped)."""

    async def main() -> None:
        async with handed_over() as (client, a, ends):
            with pytest.raises(CheckpointRestored):
                async with client:
                    await client.send(b"one")
                    assert await client.receive() == b"one"
                    await client.sync(major=True)
                    await client.send(b"after the checkpoint")
                    assert await client.receive() == b"after the checkpoint"
                    a.close(detach=True)
                    await next_of(client, Resumed)
            assert client.state == "released"
            await asyncio.wait_for(client.wait_closed(), LIMIT)
            # The first node's handler was cancelled with its close; the restored one's:
            assert await asyncio.wait_for(ends.get(), LIMIT) == "released"

    run(main())
