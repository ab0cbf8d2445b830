"""Indications waiting unread in ``events()`` are bounded (``Options.max_queued_events``):

- an application that never read ``events()`` (a handler that only reads data, as the
  README's echo does) does not stall its session there: the oldest of the events the
  session answered itself are dropped, and a WARNING says so once.  Before, reading paused
  for good at the limit: the peer's next checkpoint was never confirmed;
- data on ``events()`` (typed data here) is never dropped: reading pauses until it is read;
- an application that reads ``events()`` keeps every event: reading pauses at the limit
  and goes on once it read half of them.

Real TCP on loopback, both loops' asyncio.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import pytest

import sessionlayer
from sessionlayer import FunctionalUnit, Options
from sessionlayer.machine import SessionConfig
from sessionlayer.machine import events as ev
from sessionlayer.spdu import MinorSyncAck

LIMIT = 20.0
SERVER = Options(max_queued_events=20, resume=False)
CLIENT = Options(resume=False)


async def _until(condition: object) -> None:
    """Wait (bounded) until ``condition()`` holds, looking on each turn of the loop."""
    async with asyncio.timeout(LIMIT):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0)


def _paused(session: sessionlayer.Session) -> bool:
    return bool(session._conn._paused)


def test_a_handler_that_never_reads_events_keeps_its_session_going(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        done = asyncio.Event()
        seen: list[ev.Event] = []

        async def handler(session: sessionlayer.Session) -> None:
            async for _ in session:  # (data only: events() is never read ...)
                pass
            seen.extend([e async for e in session.events()])  # (... until the end)
            done.set()

        async with await sessionlayer.serve(handler, options=SERVER) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port, options=CLIENT)
            for n in range(60):  # three times the limit, each confirmed
                assert await asyncio.wait_for(client.sync(major=True), LIMIT) == n
                await client.send(b"after %d" % n)
            await client.release()
            await asyncio.wait_for(done.wait(), LIMIT)
        serials = [e.serial for e in seen if isinstance(e, ev.MajorSyncIndication)]
        assert serials and len(serials) < 20 and serials == list(range(60 - len(serials), 60))
        warned = [r for r in caplog.records if "reads no events()" in r.getMessage()]
        assert len(warned) == 1 and warned[0].levelno == logging.WARNING, warned

    with caplog.at_level(logging.WARNING, logger="sessionlayer"):
        asyncio.run(main())


def test_typed_data_unread_on_events_pauses_reading_and_is_never_dropped() -> None:
    async def main() -> None:
        go, done = asyncio.Event(), asyncio.Event()
        got: list[bytes] = []
        sessions: list[sessionlayer.Session] = []

        async def handler(session: sessionlayer.Session) -> None:
            sessions.append(session)
            await go.wait()
            async for event in session.events():
                if isinstance(event, ev.TypedDataIndication):
                    got.append(event.data)
            done.set()

        async with await sessionlayer.serve(handler, options=SERVER) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port, options=CLIENT)
            for n in range(30):
                await client.send_typed(b"typed %d" % n)
            await _until(lambda: sessions and _paused(sessions[0]))
            releasing = asyncio.create_task(client.release())
            go.set()
            await asyncio.wait_for(releasing, LIMIT)
            await asyncio.wait_for(done.wait(), LIMIT)
        assert got == [b"typed %d" % n for n in range(30)]

    asyncio.run(main())


def test_an_application_that_reads_events_keeps_every_one() -> None:
    async def main() -> None:
        first, go, done = asyncio.Event(), asyncio.Event(), asyncio.Event()
        serials: list[int] = []
        sessions: list[sessionlayer.Session] = []

        async def handler(session: sessionlayer.Session) -> None:
            sessions.append(session)
            events = session.events()
            async for event in events:  # (one event read: this application reads them)
                if isinstance(event, ev.MajorSyncIndication):
                    serials.append(event.serial)
                    first.set()
                    break
            await go.wait()
            async for event in session.events():
                if isinstance(event, ev.MajorSyncIndication):
                    serials.append(event.serial)
            done.set()

        async with await sessionlayer.serve(handler, options=SERVER) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port, options=CLIENT)
            assert await asyncio.wait_for(client.sync(major=True), LIMIT) == 0
            await asyncio.wait_for(first.wait(), LIMIT)
            syncs = asyncio.create_task(_syncs(client, 40))
            await _until(lambda: _paused(sessions[0]))
            assert not syncs.done()  # (the checkpoint past the limit waits to be read)
            go.set()
            assert await asyncio.wait_for(syncs, LIMIT) == list(range(1, 41))
            await client.release()
            await asyncio.wait_for(done.wait(), LIMIT)
        assert serials == list(range(41))

    asyncio.run(main())


async def _syncs(client: sessionlayer.Session, n: int) -> list[int]:
    return [await client.sync(major=True) for _ in range(n)]


def test_a_peer_that_never_reads_the_answers_is_held_back_by_them() -> None:
    """The handler never reads events(), so the MINOR SYNC indications are dropped; what
    holds a flood of GT+MIP back is then the MIA answers: past twice write_buffer_high
    written and unread, the server reads no more until the peer has read.  Once the peer
    reads, every MIP is answered, once (a small SO_SNDBUF on the server's socket keeps
    the answers in the server, where the limit counts them, not in its kernel)."""
    from tests.hostile import harness as H
    from tests.hostile.test_battery_baseline import _minor_syncs

    config = SessionConfig(functional_units=FunctionalUnit.DUPLEX | FunctionalUnit.MINOR_SYNC)
    count = 3000
    flood = b"".join(H.dt(t) for t in _minor_syncs(config, count, 0))
    options = Options(write_buffer_high=4096, resume=False)

    async def main() -> None:
        sessions: list[sessionlayer.Session] = []

        async def handler(session: sessionlayer.Session) -> None:
            sock = session._conn.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            sessions.append(session)
            async for _ in session:
                pass

        async with await sessionlayer.serve(handler, options=options) as server:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
            reader, writer = await asyncio.open_connection(sock=sock)
            out = H.Outcome()
            parse = H.Reader(out)

            async def until(done: Any) -> None:
                async with asyncio.timeout(LIMIT):
                    while not done():
                        data = await reader.read(65536)
                        assert data, "the server closed the connection"
                        parse.feed(data)

            writer.write(H.cr())
            await until(lambda: out.connected)
            writer.write(H.dt(H.cn(config)))
            await until(lambda: out.accepted)
            await _until(lambda: sessions)
            writer.write(flood)  # (asyncio buffers what the kernel does not take)
            conn = sessions[0]._conn
            await _until(lambda: conn._paused & 2)  # (_WRITING: the answers backed up)
            assert out.error is None and not out.aborted
            answered = lambda: sum(isinstance(s, MinorSyncAck) for s in out.spdus)  # noqa: E731
            await until(lambda: answered() >= count)  # (reading from it, all are answered)
            assert answered() == count and not out.aborted and out.error is None
            writer.close()

    asyncio.run(main())
