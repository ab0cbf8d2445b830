"""Case 1 of docs/recovery.md over loopback TCP, "During the outage": a confirmed request
whose answer was lost with the connection is not made twice, and expedited data sent
during an outage, or lost with the connection, arrives once after the resume.

The answer is lost deterministically: the requester stops reading (its transport's
``pause_reading``), so the peer's answer waits unread in its socket; the test waits until
the peer's application was told of the request, then resets the connection, and the
answer goes with it.  Before, each of these requests was made again after the resume and
the peer's application was told twice (a sync point with the same user data, an
activity end, a capability data indication, on_checkpoint run twice)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import sessionlayer
from sessionlayer import FunctionalUnit as FU
from sessionlayer import SessionConfig
from sessionlayer.aio.client import RESUMABLE_CONFIG
from sessionlayer.machine import events as ev
from sessionlayer.recovery import Backoff, Interrupted, Resumed

from .helpers import FAST, LIMIT, cut, next_of, owned, reads_until_end, run

RESUMABLE_UNITS = RESUMABLE_CONFIG.functional_units
ACTIVITIES = SessionConfig(functional_units=FU.DUPLEX | FU.ACTIVITY | FU.MAJOR_SYNC
                           | FU.SYMMETRIC_SYNC | FU.CAPABILITY_DATA | FU.EXPEDITED)  # fmt: skip


class Watched:
    """A server handler that reads every message and keeps every event of its session."""

    def __init__(self) -> None:
        self.events: list[ev.Event] = []
        self.session: asyncio.Future[sessionlayer.Session] | None = None
        self.changed = asyncio.Event()
        self.setup: Callable[[sessionlayer.Session], None] | None = None
        self.body: Callable[[sessionlayer.Session], Awaitable[None]] | None = None

    async def __call__(self, session: sessionlayer.Session) -> None:
        if self.setup is not None:
            self.setup(session)
        assert self.session is not None
        self.session.set_result(session)

        async def watch() -> None:
            async for event in session.events():
                self.events.append(event)
                self.changed.set()

        watcher = asyncio.create_task(watch())
        try:
            if self.body is not None:
                await self.body(session)
            async for _ in session:
                pass
        finally:
            watcher.cancel()

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    async def until(self, test: Callable[[], bool]) -> None:
        async with asyncio.timeout(LIMIT):
            while not test():
                self.changed.clear()
                await self.changed.wait()


async def _answer_lost(client: sessionlayer.Session, told: Callable[[], Awaitable[None]],
                       request: Awaitable[Any]) -> Any:  # fmt: skip
    """Make ``request`` with the client not reading; once the peer was ``told``, reset the
    connection (the answer waits unread: it is lost), and return what ``request`` gives."""
    transport = client._conn.transport
    assert transport is not None
    transport.pause_reading()
    pending = asyncio.ensure_future(request)
    await told()
    cut(client)
    return await asyncio.wait_for(pending, LIMIT)


def test_a_checkpoint_whose_confirm_was_lost_is_set_once() -> None:
    async def main() -> None:
        watched = Watched()
        watched.session = asyncio.get_running_loop().create_future()
        async with await sessionlayer.serve(watched, options=FAST) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port, options=FAST)
            async with owned(client):
                await client.send(b"before")
                serial = await _answer_lost(
                    client, lambda: watched.until(lambda: bool(watched.of(ev.MajorSyncIndication))),
                    client.sync(major=True, user_data=b"cp-1"))  # fmt: skip
                assert isinstance(serial, int) and client.resumes == 1
                assert client.checkpoint is not None and client.checkpoint.user_data == b"cp-1"
                await client.sync(major=True, user_data=b"cp-2")  # the next one: a new one
                await watched.until(lambda: len(watched.of(ev.MajorSyncIndication)) >= 2)
                await client.release()
        assert [e.user_data for e in watched.of(ev.MajorSyncIndication)] == [b"cp-1", b"cp-2"]

    run(main())


def test_a_servers_sync_point_whose_confirm_was_lost_is_told_once() -> None:
    """The other way: the server's minor sync point, confirmed by the client's agent; the
    server is the one that does not read."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        serial: asyncio.Future[int] = loop.create_future()
        cut_done = asyncio.Event()

        async def body(session: sessionlayer.Session) -> None:
            transport = session._conn.transport
            assert transport is not None
            transport.pause_reading()
            pending = asyncio.ensure_future(session.sync(user_data=b"server point"))
            await cut_done.wait()
            serial.set_result(await asyncio.wait_for(pending, LIMIT))

        watched = Watched()
        watched.session = loop.create_future()
        watched.body = body
        async with await sessionlayer.serve(watched, options=FAST) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port, options=FAST)
            async with owned(client):
                point = await next_of(client, ev.MinorSyncIndication)
                assert point.user_data == b"server point"
                cut(client)
                cut_done.set()
                assert isinstance(await asyncio.wait_for(serial, LIMIT), int)
                await client.send(b"after")  # (the session goes on)
                await client.release()
            later = []
            while (event := client.next_event_nowait()) is not None:
                later.append(event)
            assert not any(isinstance(e, ev.MinorSyncIndication) for e in later)

    run(main())


def test_capability_data_whose_answer_was_lost_is_answered_once_with_the_same_reply() -> None:
    async def main() -> None:
        replies: list[bytes | None] = []

        def setup(session: sessionlayer.Session) -> None:
            def reply(event: ev.CapabilityDataIndication) -> bytes:
                replies.append(event.user_data)
                return b"reply %d" % len(replies)

            session.on_capability_data = reply

        watched = Watched()
        watched.session = asyncio.get_running_loop().create_future()
        watched.setup = setup
        async with await sessionlayer.serve(watched, options=FAST, config=ACTIVITIES) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port, options=FAST,
                                                config=ACTIVITIES)  # fmt: skip
            async with owned(client):
                got = await _answer_lost(
                    client, lambda: watched.until(lambda: bool(replies)),
                    client.capability_data(b"status?"))  # fmt: skip
                assert got == b"reply 1" and replies == [b"status?"]
                assert client.resumes == 1
                assert await client.capability_data(b"status?") == b"reply 2"  # a new one
                await client.release()
        assert len(watched.of(ev.CapabilityDataIndication)) == 2

    run(main())


def test_a_checkpoint_still_being_made_durable_at_the_cut_is_confirmed_once() -> None:
    """The server's ``on_checkpoint`` is still at work when the connection is lost: it runs
    once, the client's ``sync()`` returns only once it is done, and then once."""

    async def main() -> None:
        started = asyncio.Event()
        done = asyncio.Event()
        calls: list[bytes | None] = []

        def setup(session: sessionlayer.Session) -> None:
            async def on_checkpoint(checkpoint: sessionlayer.Checkpoint) -> None:
                calls.append(checkpoint.user_data)
                started.set()
                await done.wait()

            session.on_checkpoint = on_checkpoint

        watched = Watched()
        watched.session = asyncio.get_running_loop().create_future()
        watched.setup = setup
        async with await sessionlayer.serve(watched, options=FAST) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port, options=FAST)
            async with owned(client):
                sync = asyncio.ensure_future(client.sync(major=True, user_data=b"durable"))
                await asyncio.wait_for(started.wait(), LIMIT)
                cut(client)
                await next_of(client, Resumed)
                assert not sync.done()
                done.set()  # the checkpoint is durable: its confirm goes out, once
                assert isinstance(await asyncio.wait_for(sync, LIMIT), int)
                assert calls == [b"durable"]
                await client.release()
        assert len(watched.of(ev.MajorSyncIndication)) == 1

    run(main())


def test_an_activity_end_whose_confirm_was_lost_ends_it_once() -> None:
    async def main() -> None:
        watched = Watched()
        watched.session = asyncio.get_running_loop().create_future()
        async with await sessionlayer.serve(watched, options=FAST, config=ACTIVITIES) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port, options=FAST,
                                                config=ACTIVITIES)  # fmt: skip
            async with owned(client):
                await client.start_activity(b"file-1", user_data=b"name=a")
                await client.send(b"inside")
                ended = watched.of
                await _answer_lost(
                    client, lambda: watched.until(lambda: bool(ended(ev.ActivityEndIndication))),
                    client.end_activity(user_data=b"done"))  # fmt: skip
                assert not client.machine.activity_in_progress
                await client.start_activity(b"file-2")  # the next one goes as usual
                await client.send(b"second")
                await client.end_activity()
                await client.release()
        assert [e.activity_id for e in watched.of(ev.ActivityStartIndication)] == [b"file-1",
                                                                                    b"file-2"]
        assert len(watched.of(ev.ActivityEndIndication)) == 2

    run(main())


def test_give_control_whose_ack_was_lost_is_told_once() -> None:
    units = FU.DUPLEX | FU.ACTIVITY | FU.MAJOR_SYNC | FU.SYMMETRIC_SYNC
    config = SessionConfig(functional_units=units)

    async def main() -> None:
        watched = Watched()
        watched.session = asyncio.get_running_loop().create_future()
        async with await sessionlayer.serve(watched, options=FAST, config=config) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port, options=FAST,
                                                config=config)  # fmt: skip
            async with owned(client):
                peer = await watched.session
                given = watched.of
                await _answer_lost(
                    client, lambda: watched.until(lambda: bool(given(ev.ControlGiveIndication))),
                    client.give_control())  # fmt: skip
                assert not client.tokens and peer.tokens
                await client.release()
        assert len(watched.of(ev.ControlGiveIndication)) == 1

    run(main())


def test_expedited_data_during_an_outage_and_lost_with_the_connection_arrive_once() -> None:
    """Sent while detached: kept and sent after the resume.  Sent just before a reset and
    lost with it (the server was not reading): sent again.  Arrived before a reset: not
    sent again (the welcome's count says it is there)."""

    async def main() -> None:
        watched = Watched()
        watched.session = asyncio.get_running_loop().create_future()
        slow = dataclasses.replace(FAST, backoff=Backoff(first=0.2, jitter=0, give_up=10))
        async with await sessionlayer.serve(watched, options=FAST) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port, options=slow)
            async with owned(client):
                peer = await watched.session

                def got() -> list[bytes]:
                    return [e.data for e in watched.of(ev.ExpeditedDataIndication)]

                await client.send_expedited(b"x1")
                await watched.until(lambda: got() == [b"x1"])
                cut(client)  # arrived: not sent again
                await next_of(client, Interrupted)
                await client.send_expedited(b"x2 (detached)")
                await next_of(client, Resumed)
                await watched.until(lambda: len(got()) >= 2)
                transport = peer._conn.transport
                assert transport is not None
                transport.pause_reading()  # (what comes now waits unread, lost with it)
                await client.send_expedited(b"x3 (lost)")
                cut(client)
                await next_of(client, Resumed)
                await watched.until(lambda: len(got()) >= 3)
                await client.sync()  # (anything after would have come by now)
                assert got() == [b"x1", b"x2 (detached)", b"x3 (lost)"]
                journal = client._conn.journal
                assert journal is not None and journal.expedited is not None
                async with asyncio.timeout(LIMIT):
                    while journal.expedited.items:  # confirmed by an acknowledgement point
                        await asyncio.sleep(0.01)
                await client.release()

    run(main())


def test_expedited_data_waits_when_too_much_is_unconfirmed_and_is_checked_while_detached() -> None:
    """At most MAX_EXPEDITED wait unconfirmed: the next ``send_expedited()`` waits until
    the peer's confirm comes.  Expedited data the session cannot send is refused at once,
    connected or not (nothing is kept that a resume could not send)."""
    from sessionlayer.errors import EncodeError, FunctionalUnitError
    from sessionlayer.recovery.journal import MAX_EXPEDITED

    async def main() -> None:
        watched = Watched()
        watched.session = asyncio.get_running_loop().create_future()
        slow = dataclasses.replace(FAST, backoff=Backoff(first=0.3, jitter=0, give_up=10))
        async with await sessionlayer.serve(watched, options=FAST) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port, options=slow)
            async with owned(client):
                peer = await watched.session
                transport = peer._conn.transport
                assert transport is not None
                transport.pause_reading()  # (no acknowledgement point is answered)
                for i in range(MAX_EXPEDITED):
                    await client.send_expedited(b"%d" % i)
                last = asyncio.ensure_future(client.send_expedited(b"one more"))
                await asyncio.sleep(0)  # (one turn: it runs up to its wait)
                assert not last.done()
                transport.resume_reading()  # the point is answered: room again
                await asyncio.wait_for(last, LIMIT)
                await watched.until(
                    lambda: len(watched.of(ev.ExpeditedDataIndication)) == MAX_EXPEDITED + 1)
                with pytest.raises(EncodeError):
                    await client.send_expedited(b"x" * 15)
                cut(client)
                await next_of(client, Interrupted)
                with pytest.raises(EncodeError):
                    await client.send_expedited(b"x" * 15)  # (detached: refused all the same)
                await next_of(client, Resumed)
                await client.release()

        units = RESUMABLE_UNITS & ~FU.EXPEDITED
        config = SessionConfig(functional_units=units)
        handler = reads_until_end(asyncio.Event())
        async with await sessionlayer.serve(handler, options=FAST, config=config) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port, options=slow,
                                                config=config)  # fmt: skip
            async with owned(client):
                assert client.resumable
                cut(client)
                await next_of(client, Interrupted)
                with pytest.raises(FunctionalUnitError):
                    await client.send_expedited(b"no unit")
                await next_of(client, Resumed)
                await client.release()

    run(main())

