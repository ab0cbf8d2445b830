"""Case 1 of docs/recovery.md: the connection is lost, both processes live.  Every
message either side sent reaches the other application exactly once and in order, a
pending sync() or release() completes after the resume, and the application is told."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest

import sessionlayer
from sessionlayer import FunctionalUnit, Options, SessionAborted, SessionConfig
from sessionlayer.aio.client import RESUMABLE_CONFIG
from sessionlayer.errors import FunctionalUnitError
from sessionlayer.machine import events as ev
from sessionlayer.recovery import ACK_MARK, Backoff, Interrupted, Resumed

from .helpers import (
    FAST,
    LIMIT,
    cut,
    echo_into,
    echo_keeping,
    echo_with_checkpoints,
    messages,
    next_of,
    owned,
    reads_until_end,
    run,
)

RESUMABLE_UNITS = sessionlayer.aio.client.RESUMABLE_CONFIG.functional_units


def test_both_directions_exactly_once_in_order_across_cuts_from_either_side() -> None:
    """Mixed sizes both ways at once; the connection is reset 24 times, alternately from
    the client's and the server's side, at moments the client's reading decides."""
    n = 1500
    up, down = messages(n, 1, b"up"), messages(n, 2, b"down")
    cuts_at = {i * (n // 25): i % 2 for i in range(1, 25)}  # message count -> 0 client, 1 server

    async def main() -> None:
        got_up: list[bytes] = []
        server_side: list[sessionlayer.Session] = []

        async def handler(session: sessionlayer.Session) -> None:
            server_side.append(session)

            async def sender() -> None:
                for m in down:
                    await session.send(m)

            task = asyncio.create_task(sender())
            async for data in session:
                got_up.append(data)
                if len(got_up) == n:
                    break
            await task
            await session.wait_closed()

        async with await sessionlayer.serve(handler, options=FAST) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port, options=FAST)
            assert client.resumable

            async def sender() -> None:
                for m in up:
                    await client.send(m)

            task = asyncio.create_task(sender())
            got_down: list[bytes] = []
            async with asyncio.timeout(LIMIT * 3):
                async for data in client:
                    got_down.append(data)
                    side = cuts_at.pop(len(got_down), None)
                    if side is not None:
                        cut(client if side == 0 else server_side[0])
                    if len(got_down) == n:
                        break
                await task
                while len(got_up) < n:
                    await asyncio.sleep(0.01)  # (the server's reader: bounded by the timeout)
            assert got_down == down
            assert got_up == up
            assert client.interruptions >= 10 and client.resumes == client.interruptions
            assert server.stats.resumed["resumed"] == client.resumes
            await client.release()

    run(main())


def test_the_application_is_told_of_each_interruption_and_resume() -> None:
    async def main() -> None:
        async def handler(session: sessionlayer.Session) -> None:
            async for data in session:
                await session.send(data)

        async with await sessionlayer.serve(handler, options=FAST) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port, options=FAST)
            await client.send(b"one")
            assert await client.receive() == b"one"
            cut(client)
            interrupted = await next_of(client, Interrupted)
            assert "lost" in interrupted.reason
            await client.send(b"two")  # while detached: kept, replayed on resume
            resumed = await next_of(client, Resumed)
            assert resumed.outcome == "resumed" and resumed.downtime >= 0
            assert resumed.attempts >= 1
            assert await asyncio.wait_for(client.receive(), LIMIT) == b"two"
            assert client.state == "STA713"
            await client.release()

    run(main())


def test_data_that_came_with_the_accept_is_not_read_twice_after_a_resume() -> None:
    """A handler that greets at once: its messages may arrive in the read that brings the
    AC, before connect() returns; they count as received, so a resume does not replay them
    (the client read them twice)."""

    async def main() -> None:
        async def handler(session: sessionlayer.Session) -> None:
            await session.send(b"greeting")
            await session.send(b"second")
            async for data in session:
                await session.send(data)

        async with await sessionlayer.serve(handler, options=FAST) as server:
            for _ in range(5):  # (the greeting came with the AC in 10 of 10 tries before)
                client = await sessionlayer.connect("127.0.0.1", server.port, options=FAST)
                assert [await client.receive(), await client.receive()] == [b"greeting",
                                                                            b"second"]  # fmt: skip
                await client.sync()
                cut(client)
                await next_of(client, Resumed)
                await client.send(b"ping")
                assert await asyncio.wait_for(client.receive(), LIMIT) == b"ping"
                await client.release()

    run(main())


@pytest.mark.parametrize("request_", ["sync", "release"])
def test_a_request_made_during_the_outage_waits_behind_the_replay(request_: str) -> None:
    """More queued in the journal than the transport takes at once (a small write buffer):
    a sync(major=True) or release() made while detached goes out after the whole replay,
    not in the middle of it (the checkpoint covered 61 of 101 messages, the release lost the
    rest, and the replay died on a StateError that reached asyncio's handler)."""
    count = 100

    async def main() -> None:
        got: list[bytes] = []
        at_checkpoint: list[int] = []
        errors: list[dict[str, Any]] = []
        asyncio.get_running_loop().set_exception_handler(lambda _, c: errors.append(c))

        async def handler(session: sessionlayer.Session) -> None:
            session.on_checkpoint = lambda _: at_checkpoint.append(len(got))
            async for data in session:
                got.append(data)

        opts = dataclasses.replace(FAST, write_buffer_high=16 * 1024,
                                   backoff=Backoff(first=0.2, jitter=0, cap=0.2, give_up=10))
        async with await sessionlayer.serve(handler, options=FAST) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port, options=opts)
            await client.send(b"first")
            await client.sync()
            cut(client)
            await next_of(client, Interrupted)
            for i in range(count):
                await client.send(b"%d:" % i + bytes(64 * 1024))
            if request_ == "sync":
                await asyncio.wait_for(client.sync(major=True, user_data=b"cp"), LIMIT)
                assert at_checkpoint == [count + 1]  # (every message before it)
                await client.release()
            else:
                await asyncio.wait_for(client.release(), LIMIT)
        assert len(got) == count + 1 and got[-1].startswith(b"%d:" % (count - 1))
        assert not errors, errors

    run(main())


def test_a_send_during_the_outage_waits_in_the_journal_and_arrives_once() -> None:
    """S-DATA, S-TYPED-DATA and S-EXPEDITED-DATA sent while detached wait in the journal
    and arrive once (expedited data in a count of its own: it may overtake the others)."""

    async def main() -> None:
        got: list[bytes] = []
        typed: list[bytes] = []
        expedited: list[bytes] = []
        done = asyncio.Event()

        async def handler(session: sessionlayer.Session) -> None:
            async def events() -> None:
                async for event in session.events():
                    if isinstance(event, ev.TypedDataIndication):
                        typed.append(event.data)
                    elif isinstance(event, ev.ExpeditedDataIndication):
                        expedited.append(event.data)

            watcher = asyncio.create_task(events())
            async for data in session:
                got.append(data)
                if len(got) == 3:
                    done.set()
            watcher.cancel()

        # The client cannot come back for a while: its backoff's first wait is long.
        slow = dataclasses.replace(FAST, backoff=Backoff(first=0.3, jitter=0, give_up=10))
        async with await sessionlayer.serve(handler, options=FAST) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port, options=slow)
            await client.send(b"a")
            cut(client)
            await next_of(client, Interrupted)
            assert client.state == "detached"
            await client.send(b"b")
            await client.send_typed(b"typed, kept")
            await client.send(b"c")
            await client.send_expedited(b"kept too")
            resumed = await next_of(client, Resumed)
            assert resumed.replayed_messages >= 3
            await asyncio.wait_for(done.wait(), LIMIT)
            assert got == [b"a", b"b", b"c"]
            await client.release()
            assert typed == [b"typed, kept"] and expedited == [b"kept too"]

    run(main())


def test_a_pending_sync_and_release_complete_after_the_resume() -> None:
    async def main() -> None:
        ended = asyncio.Event()
        async with await sessionlayer.serve(reads_until_end(ended), options=FAST) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port, options=FAST)
            pending = asyncio.create_task(client.sync())
            await asyncio.sleep(0)  # (one turn of the loop: the MIP is on its way)
            cut(client)
            serial = await asyncio.wait_for(pending, LIMIT)
            assert isinstance(serial, int)
            assert client.resumes == 1
            cut(client)
            await asyncio.wait_for(client.release(), LIMIT)  # waits for the resume first
            assert client.state == "released"
            await asyncio.wait_for(ended.wait(), LIMIT)

    run(main())


def test_without_recovery_a_lost_connection_ends_the_session() -> None:
    async def main() -> None:
        async def handler(session: sessionlayer.Session) -> None:
            async for _ in session:
                pass

        off = Options(resume=False)
        async with await sessionlayer.serve(handler, options=off) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port, options=off)
            assert not client.resumable
            cut(client)
            with pytest.raises(SessionAborted):
                await asyncio.wait_for(client.receive(), LIMIT)

    run(main())


def test_a_server_without_recovery_gives_plain_sessions() -> None:
    async def main() -> None:
        async def handler(session: sessionlayer.Session) -> None:
            assert not session.resumable
            async for data in session:
                await session.send(data)

        async with await sessionlayer.serve(handler, options=Options(resume=False)) as server:
            async with await sessionlayer.connect("127.0.0.1", server.port) as client:
                assert not client.resumable
                await client.send(b"x")
                assert await client.receive() == b"x"

    run(main())


def test_acknowledgements_go_in_batches_and_trim_the_journal() -> None:
    """8 MiB in 64 KiB messages with ack_bytes = 1 MiB: a handful of acknowledgement
    points (MIPs), not one per message; afterwards nothing is held."""

    async def main() -> None:
        received = asyncio.Event()
        count = 0

        async def handler(session: sessionlayer.Session) -> None:
            nonlocal count
            async for _ in session:
                count += 1
                if count == 128:
                    received.set()

        opts = dataclasses.replace(FAST, ack_bytes=1 << 20, ack_interval=0.05)
        async with await sessionlayer.serve(handler, options=opts) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port, options=opts)
            for _ in range(128):
                await client.send(b"x" * 65536)
            await asyncio.wait_for(received.wait(), LIMIT)
            journal = client._conn.journal
            assert journal is not None
            async with asyncio.timeout(LIMIT):
                while journal.held:  # the last point is set after ack_interval
                    await asyncio.sleep(0.01)
            points = client.machine.vms  # the next serial on our flow: points set so far
            assert 8 <= points <= 14, points
            assert journal.size == 0
            await client.release()

    run(main())


def test_the_peers_acknowledgement_points_never_reach_the_application() -> None:
    async def main() -> None:
        seen: list[object] = []

        async def handler(session: sessionlayer.Session) -> None:
            async for _ in session:
                pass

        opts = dataclasses.replace(FAST, ack_interval=0.01)
        async with await sessionlayer.serve(handler, options=opts) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port, options=opts)
            for i in range(50):
                await client.send(b"%d" % i)
                await asyncio.sleep(0.002)
            serial = await client.sync(user_data=b"mine")  # a user's sync point still works
            assert isinstance(serial, int)
            while (event := client.next_event_nowait()) is not None:
                seen.append(event)
            assert all(getattr(e, "user_data", None) != ACK_MARK for e in seen)
            await client.release()

    run(main())


def test_retention_blocks_the_sender_until_the_peer_confirms() -> None:
    """The server's application does not read: its buffer fills, its reading pauses, no
    acknowledgement comes back; the client's journal reaches the retention limit and
    send() waits until the server reads again."""

    async def main() -> None:
        go = asyncio.Event()
        got = 0

        async def handler(session: sessionlayer.Session) -> None:
            nonlocal got
            await go.wait()
            async for _ in session:
                got += 1

        server_opts = dataclasses.replace(FAST, max_buffered_bytes=64 * 1024)
        opts = dataclasses.replace(FAST, retention=256 * 1024, ack_bytes=16 * 1024,
                                   write_buffer_high=16 * 1024)  # fmt: skip
        async with await sessionlayer.serve(handler, options=server_opts) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port, options=opts)
            journal = client._conn.journal
            assert journal is not None
            sender = asyncio.create_task(_send_many(client, 400, 4096))
            async with asyncio.timeout(LIMIT):
                while not journal.full:
                    await asyncio.sleep(0.01)
            assert not sender.done()
            assert journal.size <= opts.retention + 4096 + 64  # one message past, at most
            go.set()
            await asyncio.wait_for(sender, LIMIT)
            await client.sync()  # everything before it has arrived
            assert got == 400
            await client.release()

    run(main())


async def _send_many(session: sessionlayer.Session, n: int, size: int) -> None:
    for i in range(n):
        await session.send(b"%05d" % i + bytes(size - 5))


def test_retention_overflow_can_end_the_session_instead() -> None:
    async def main() -> None:
        async def handler(session: sessionlayer.Session) -> None:
            await session.wait_closed()  # never reads

        server_opts = dataclasses.replace(FAST, max_buffered_bytes=64 * 1024)
        opts = dataclasses.replace(FAST, retention=128 * 1024, retention_overflow="fail",
                                   write_buffer_high=16 * 1024)  # fmt: skip
        async with await sessionlayer.serve(handler, options=server_opts) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port, options=opts)
            with pytest.raises(SessionAborted) as info:
                await asyncio.wait_for(_send_many(client, 10_000, 4096), LIMIT)
            assert "retention" in str(info.value)
            assert client.state == "aborted"

    run(main())


def test_retention_overflow_while_detached_says_the_session_cannot_resume() -> None:
    """retention_overflow='fail' reached during an outage, on the server's side: it ends
    the session with ResumeRefused code retention_overflow (the code was never produced),
    and the client coming back is told that code."""

    async def main() -> None:
        failures: list[BaseException] = []

        async def handler(session: sessionlayer.Session) -> None:
            await next_of(session, Interrupted)
            try:
                for _ in range(100):
                    await session.send(bytes(4096))
            except SessionAborted as exc:
                failures.append(exc)

        server_opts = dataclasses.replace(FAST, retention=64 * 1024, retention_overflow="fail")
        opts = dataclasses.replace(FAST, backoff=Backoff(first=0.3, jitter=0, cap=0.3,
                                                         give_up=10))  # fmt: skip
        async with await sessionlayer.serve(handler, options=server_opts) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port, options=opts)
            await client.sync()
            cut(client)  # (the server sees the reset: detached, its handler sends on)
            with pytest.raises(sessionlayer.ResumeRefused) as info:
                await asyncio.wait_for(client.receive(), LIMIT)
            assert info.value.code == "retention_overflow", info.value
            assert len(failures) == 1 and isinstance(failures[0], sessionlayer.ResumeRefused)
            assert failures[0].code == "retention_overflow"

    run(main())


def test_an_activity_in_progress_is_resumed_on_the_new_connection() -> None:
    """With activity management data flows only inside an activity: after a cut the client
    resumes it first (S-ACTIVITY-RESUME, linking information), then both sides replay."""
    from sessionlayer import FunctionalUnit as FU
    from sessionlayer import SessionConfig
    from sessionlayer.machine import events as ev

    units = FU.DUPLEX | FU.ACTIVITY | FU.MAJOR_SYNC | FU.SYMMETRIC_SYNC | FU.RESYNC
    config = SessionConfig(functional_units=units)

    async def main() -> None:
        got: list[bytes] = []
        seen: list[object] = []
        done = asyncio.Event()

        async def handler(session: sessionlayer.Session) -> None:
            async def watch() -> None:
                async for event in session.events():
                    seen.append(event)
            watcher = asyncio.create_task(watch())
            async for data in session:
                got.append(data)
                await session.send(data)
                if len(got) == 200:
                    done.set()
            watcher.cancel()

        async with await sessionlayer.serve(handler, config=config, options=FAST) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port, config=config,
                                                options=FAST)  # fmt: skip
            assert client.resumable
            back: list[bytes] = []
            async with client.activity(b"file-1", user_data=b"name=a.bin"):
                for i in range(200):
                    await client.send(b"%d" % i)
                    if i in (50, 120, 180):
                        cut(client)
                    if i % 40 == 0:
                        await client.sync(major=True, user_data=b"%d" % i)
                await asyncio.wait_for(done.wait(), LIMIT)
                async with asyncio.timeout(LIMIT):
                    while len(back) < 200:
                        back.append(await client.receive())
            assert got == [b"%d" % i for i in range(200)]
            assert back == got
            assert client.resumes >= 3
            assert not any(isinstance(e, ev.ActivityResumeIndication) for e in seen)
            assert any(isinstance(e, ev.ActivityEndIndication) for e in seen)
            await client.release()

    run(main())


def test_serial_numbers_near_their_end_renew_the_connection_both_ways() -> None:
    """Serial numbers end at 999999 and every acknowledgement point takes one: from
    RENEW_SERIAL on, a side gives its transport connection up and the session resumes on a
    new one, where they start again (here each connection starts one point short of it, so
    both sides renew at their second point on each).  An echo, message by message: every
    message arrives once and in order, both ways."""
    from sessionlayer.agent.agent import RENEW_SERIAL
    from sessionlayer.aio.client import RESUMABLE_CONFIG

    config = dataclasses.replace(RESUMABLE_CONFIG, initial_serial=RENEW_SERIAL - 1,
                                 second_initial_serial=RENEW_SERIAL - 1)  # fmt: skip
    up = messages(200, 1, b"up")

    async def main() -> None:
        got_up: list[bytes] = []

        opts = dataclasses.replace(FAST, ack_bytes=1, ack_interval=0.01)
        async with await sessionlayer.serve(echo_into(got_up), options=opts) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port, options=opts,
                                                config=config)  # fmt: skip
            async with owned(client), asyncio.timeout(LIMIT * 3):
                got_down = []
                for m in up:
                    await client.send(m)
                    got_down.append(await client.receive())
                assert got_down == up and got_up == up
                assert client.machine.vms <= RENEW_SERIAL  # never past it on a connection
                journal = client._conn.journal
                assert journal is not None and journal.held <= 2  # acknowledged all along
                assert client.resumes >= 20 and client.resumes == client.interruptions
                assert server.stats.resumed["resumed"] == client.resumes
                await client.release()

    run(main())


def test_a_full_server_lets_its_own_sessions_resume() -> None:
    """``max_sessions`` 1, that one session cut: its resume adds no session, so the limit
    does not refuse it (a new session still gets RF 0x83)."""

    async def main() -> None:
        async def handler(session: sessionlayer.Session) -> None:
            async for data in session:
                await session.send(data)

        async with await sessionlayer.serve(handler, options=FAST, max_sessions=1) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port, options=FAST)
            async with owned(client), asyncio.timeout(LIMIT):
                await client.send(b"a")
                assert await client.receive() == b"a"
                cut(client)
                await client.send(b"b")
                assert await client.receive() == b"b"
                assert client.resumes == 1
                with pytest.raises(sessionlayer.ConnectRefused) as refused:
                    await sessionlayer.connect("127.0.0.1", server.port, options=FAST)
                assert refused.value.reason == 0x83
                await client.release()

    run(main())


@pytest.mark.parametrize("where", ["in an activity", "configured initial serial"])
def test_no_renewal_where_a_new_connection_would_start_as_high(where: str) -> None:
    """Inside an activity S-ACTIVITY-RESUME carries the serial number over, and a
    configured initial serial number at or past RENEW_SERIAL starts every connection
    there: renewing would only loop, so the connection stays."""
    from sessionlayer import FunctionalUnit as FU
    from sessionlayer import SessionConfig
    from sessionlayer.agent.agent import RENEW_SERIAL

    units = FU.DUPLEX | FU.ACTIVITY | FU.MAJOR_SYNC | FU.SYMMETRIC_SYNC | FU.RESYNC
    if where == "in an activity":
        config = SessionConfig(functional_units=units)
    else:
        config = SessionConfig(functional_units=units & ~FU.ACTIVITY,  # (data outside one)
                               initial_serial=RENEW_SERIAL + 10,
                               second_initial_serial=RENEW_SERIAL + 10)  # fmt: skip

    async def main() -> None:
        async with _echo(config) as (_, client):
            async with owned(client), asyncio.timeout(LIMIT):
                if where == "in an activity":
                    await client.resume_activity(b"a2", b"a1", RENEW_SERIAL - 3)
                for i in range(60):
                    await client.send(b"%d" % i)
                    assert await client.receive() == b"%d" % i
                assert client.resumes == 0 and client.machine.vms > RENEW_SERIAL
                journal = client._conn.journal
                assert journal is not None and journal.held <= 2  # still acknowledged
                if where == "in an activity":
                    await client.end_activity()
                await client.release()

    run(main())


def test_the_last_serial_number_ends_the_session_with_a_clear_error() -> None:
    """Where renewing does not help (here: an initial serial number a few short of 999999),
    the session ends when none is left for an acknowledgement point, saying why: it does not
    stall with its journal filling up."""
    from sessionlayer import SessionConfig
    from sessionlayer.machine.sync import MAX_SERIAL

    config = SessionConfig(functional_units=RESUMABLE_UNITS, initial_serial=MAX_SERIAL - 3,
                           second_initial_serial=MAX_SERIAL - 3)  # fmt: skip

    async def main() -> None:
        async with _echo(config) as (_, client):
            async with asyncio.timeout(LIMIT):
                with pytest.raises(SessionAborted, match="no sync serial number left"):
                    for i in range(100):
                        await client.send(b"%d" % i)
                        await client.receive()
            assert client.resumes == 0

    run(main())


@contextlib.asynccontextmanager
async def _echo(config: Any) -> AsyncIterator[tuple[sessionlayer.Server, sessionlayer.Session]]:
    """An echo server and a client session with ``config``, an acknowledgement point after
    every message (ack_bytes 1)."""

    async def handler(session: sessionlayer.Session) -> None:
        async for data in session:
            await session.send(data)

    opts = dataclasses.replace(FAST, ack_bytes=1, ack_interval=0.01)
    async with await sessionlayer.serve(handler, config=config, options=opts) as server:
        yield server, await sessionlayer.connect("127.0.0.1", server.port, config=config,
                                                 options=opts)  # fmt: skip


def test_typed_data_and_data_arrive_exactly_once_in_order_across_cuts() -> None:
    """Typed data shares the journal's count with S-DATA: cut while both kinds are in
    flight (in the write buffer, on the wire, unconfirmed), each kind arrives exactly once
    and in order.  (A side that left typed data out of its count would report fewer
    messages than it had: the other would replay too many, and they would arrive twice.)"""

    async def main() -> None:
        count = 40
        got: list[bytes] = []
        typed: list[bytes] = []
        done = asyncio.Event()

        def check() -> None:
            if len(got) == len(typed) == count:
                done.set()

        async def handler(session: sessionlayer.Session) -> None:
            async def events() -> None:
                async for event in session.events():
                    if isinstance(event, ev.TypedDataIndication):
                        typed.append(event.data)
                        check()

            watcher = asyncio.create_task(events())
            async for data in session:
                got.append(data)
                check()
            watcher.cancel()

        async with await sessionlayer.serve(handler, options=FAST) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port, options=FAST)
            cuts = 0
            for i in range(count):
                await client.send(b"d%d" % i)
                await client.send_typed(b"t%d" % i)
                if i % 8 == 3:  # (the sends after a cut go while detached or replaying)
                    while client.resumes < cuts:  # (a cut while detached cuts nothing)
                        await next_of(client, Resumed)
                    cut(client)
                    cuts += 1
            await asyncio.wait_for(done.wait(), LIMIT)
            assert got == [b"d%d" % i for i in range(count)]
            assert typed == [b"t%d" % i for i in range(count)]
            assert client.resumes == cuts
            await client.release()

    run(main())


def test_typed_data_without_its_unit_is_refused_even_while_detached() -> None:
    """Without the typed data unit, ``send_typed()`` raises at once, connected or not: a
    detached session keeps nothing it could not send once resumed."""

    async def main() -> None:
        units = (RESUMABLE_CONFIG.functional_units & ~FunctionalUnit.TYPED_DATA)
        config = SessionConfig(functional_units=units)
        slow = dataclasses.replace(FAST, backoff=Backoff(first=0.3, jitter=0, give_up=10))
        async with await sessionlayer.serve(echo_into([]), options=FAST) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port, options=slow,
                                                config=config)  # fmt: skip
            assert client.resumable
            with pytest.raises(FunctionalUnitError):
                await client.send_typed(b"no unit")
            cut(client)
            await next_of(client, Interrupted)
            with pytest.raises(FunctionalUnitError):
                await client.send_typed(b"no unit, detached")
            await next_of(client, Resumed)
            assert client._conn.journal is not None and client._conn.journal.held == 0
            await client.release()

    run(main())


def test_give_control_across_a_cut_ends_with_the_tokens_at_the_peer() -> None:
    """give_control(), and the connection is lost before the GIVE TOKENS ACK: it returns
    only once the peer holds the tokens (it returned at once, and the resumed session
    still had every token on this side)."""
    units = RESUMABLE_UNITS | FunctionalUnit.ACTIVITY | FunctionalUnit.MAJOR_SYNC
    config = SessionConfig(functional_units=units)

    async def main() -> None:
        accepted: asyncio.Future[sessionlayer.Session] = asyncio.get_running_loop(
            ).create_future()  # fmt: skip

        async def handler(session: sessionlayer.Session) -> None:
            accepted.set_result(session)
            async for _ in session:
                pass

        async with await sessionlayer.serve(handler, options=FAST, config=config) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port, options=FAST,
                                                config=config)  # fmt: skip
            peer = await accepted
            assert client.tokens and not peer.tokens
            give = asyncio.ensure_future(client.give_control())
            await asyncio.sleep(0)  # (the GTC is out)
            cut(client)
            await asyncio.wait_for(give, LIMIT)
            assert not client.tokens
            assert peer.tokens  # (it took them before its GTA)
            await client.release()  # (the tokens a release needs are fetched back)

    run(main())


def test_wait_closed_waits_across_cuts_until_the_session_is_over() -> None:
    """A handler that keeps its session with ``await session.wait_closed()`` keeps it
    through every cut: ``wait_closed()`` ends with the session, not with each TCP
    connection (it used to return at the first cut; the handler's return then ended the
    session, and the client's resume was refused)."""

    async def main() -> None:
        ended: list[tuple[bool, bool]] = []
        returned = asyncio.Event()

        async def handler(session: sessionlayer.Session) -> None:
            await session.wait_closed()
            ended.append((session.closed, session.resumes == 3))
            returned.set()

        async with await sessionlayer.serve(handler, options=FAST) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port, options=FAST)
            async with owned(client):
                for _ in range(3):
                    cut(client)
                    resumed = await next_of(client, Resumed)
                    assert resumed.outcome == "resumed"
                    await client.sync()  # the server's session answers: it is still there
                assert not ended
                await client.release()
            await asyncio.wait_for(returned.wait(), LIMIT)
        assert ended == [(True, True)]
        assert server.stats.ended["released"] == 1

    run(main())


@pytest.mark.parametrize("every", [4, 8, 16])
def test_checkpoints_while_data_flows_both_ways(every: int) -> None:
    """A checkpoint every ``every`` messages while the server echoes each one: the
    server's acknowledgement points (MIP), set as it echoes the messages before a MAP,
    cross that MAP.  The client does not
    answer a MIP that reaches it in STA04A (X.225 has no S-SYNC-MINOR response there; it
    used to, and the session ended with an internal error), the server's MAA settles it,
    and the server sets a new point for what it covered."""

    async def main() -> None:
        served: list[sessionlayer.Session] = []
        async with await sessionlayer.serve(echo_keeping(served)) as server:
            await echo_with_checkpoints(server.port, every, served)

    run(main())


def test_the_servers_octet_count_takes_in_the_resumes_connect() -> None:
    """A resume's CR and CN count in the session's octets in (sessionlayer_bytes_total):
    before, they stayed counted on the connection the session took over, and were lost."""

    async def main() -> None:
        served: asyncio.Queue[sessionlayer.Session] = asyncio.Queue()

        async def handler(session: sessionlayer.Session) -> None:
            await served.put(session)
            async for data in session:
                await session.send(data)

        async with await sessionlayer.serve(handler, options=FAST) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port, options=FAST)
            peer = await asyncio.wait_for(served.get(), LIMIT)
            await client.send(b"x")
            assert await client.receive() == b"x"
            before = peer.info().bytes_in
            cut(client)
            await next_of(client, Resumed)
            await next_of(peer, Resumed)
            # (nothing sent since: what came in is the resume's CR and CN, 100 octets or so)
            assert peer.info().bytes_in - before >= 50, (before, peer.info().bytes_in)
            await client.release()

    run(main())
