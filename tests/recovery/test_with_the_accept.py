"""What comes in the read that brings a resume's AC, before the client's reconnect task has
applied the outcome: the server's expedited replay (it goes right behind the AC) and the
first messages of a handler restored from a checkpoint.  Before: the expedited message
was delivered but not counted (the try's agent had no journal yet), so the next loss
before an acknowledgement point delivered it again; the restored handler's first message
reached the reader before CheckpointRestored, and was counted in the journal that the
restart then emptied (the next resume was refused: "the peer says it received 1 messages
but had confirmed 2").  Also: a checkpoint resume kept the activity of before the loss,
and the next plain resume started it again."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from tests.faults.proxy import FaultProxy

import sessionlayer
from sessionlayer import FunctionalUnit as FU
from sessionlayer import SessionConfig
from sessionlayer.machine import events as ev
from sessionlayer.recovery import Interrupted, Resumed
from sessionlayer.stores import MemoryStore

from .helpers import FAST, LIMIT, cut, next_of, run

#: No acknowledgement point by time within a test: a message is confirmed only by the next
#: resume, so that a second loss finds it unconfirmed.
SLOW_ACKS = dataclasses.replace(FAST, ack_interval=60.0)


def greeter(node: str, *, typed: bool) -> Any:
    """A handler that greets (S-DATA, or typed data) with its node's name, then echoes."""

    async def handler(session: sessionlayer.Session) -> None:
        if typed:
            await session.send_typed(b"typed from " + node.encode())
        else:
            await session.send(b"greeting from " + node.encode())
        async for data in session:
            await session.send(b"echo " + data)

    return handler


async def reads_into(client: sessionlayer.Session, read: asyncio.Queue[Any]) -> None:
    """Wait in receive() all through the outages: each message, each rollback (its serial),
    and the error that ended the session, in order."""
    while True:
        try:
            await read.put(await client.receive())
        except sessionlayer.CheckpointRestored as exc:
            await read.put(("restored", exc.serial))
        except sessionlayer.SessionLayerError as exc:
            await read.put(exc)
            return


def test_an_expedited_message_replayed_with_the_accept_comes_once() -> None:
    async def main() -> None:
        served: asyncio.Queue[sessionlayer.Session] = asyncio.Queue()

        async def handler(session: sessionlayer.Session) -> None:
            await served.put(session)
            async for data in session:
                await session.send(data)

        async with await sessionlayer.serve(handler, options=SLOW_ACKS) as server:
            async with FaultProxy("127.0.0.1", server.port, seed=1) as proxy:
                client = await sessionlayer.connect("127.0.0.1", proxy.port, options=SLOW_ACKS)
                peer = await asyncio.wait_for(served.get(), LIMIT)
                got: asyncio.Queue[Any] = asyncio.Queue()

                async def watch() -> None:
                    async for event in client.events():
                        await got.put(event)

                async def resumed() -> list[Any]:
                    seen = []
                    while not seen or not isinstance(seen[-1], Resumed):
                        seen.append(await asyncio.wait_for(got.get(), LIMIT))
                    return seen

                watching = asyncio.ensure_future(watch())
                proxy.refuse(True)
                proxy.cut("reset")
                await next_of(peer, Interrupted)
                await peer.send_expedited(b"E1")  # (detached: it goes first at the resume)
                proxy.refuse(False)
                events = await resumed()
                cut(client)  # again, before any acknowledgement point
                events += await resumed()
                await client.send(b"ping")  # (a replayed E1 would come before its echo)
                assert await asyncio.wait_for(client.receive(), LIMIT) == b"ping"
                while not got.empty():
                    events.append(got.get_nowait())
                watching.cancel()
                expedited = [e.data for e in events if isinstance(e, ev.ExpeditedDataIndication)]
                assert expedited == [b"E1"], events
                await client.release()

    run(main())


@contextlib.asynccontextmanager
async def two_nodes(handler_of: Callable[[str], Any],
                    **kw: Any) -> AsyncIterator[tuple[sessionlayer.Server, sessionlayer.Server]]:
    """Nodes A and B sharing one store, each serving ``handler_of(its name)``."""
    store = MemoryStore()
    a = await sessionlayer.serve(handler_of("A"), options=FAST, store=store, node="A", **kw)
    b = await sessionlayer.serve(handler_of("B"), options=FAST, store=store, node="B", **kw)
    try:
        yield a, b
    finally:
        for server in (a, b):
            server.close()
            await server.wait_closed()


def test_a_restored_handlers_first_message_comes_after_the_rollback() -> None:
    async def main() -> None:
        async with two_nodes(lambda node: greeter(node, typed=False)) as (a, b):
            client = await sessionlayer.connect(
                "127.0.0.1", a.port, options=FAST,
                addresses=[("127.0.0.1", a.port), ("127.0.0.1", b.port)])  # fmt: skip
            assert await client.receive() == b"greeting from A"
            read: asyncio.Queue[Any] = asyncio.Queue()

            reading = asyncio.ensure_future(reads_into(client, read))
            a.close(detach=True)  # node A is gone: B restores the session from the store
            await a.wait_closed()
            first = await asyncio.wait_for(read.get(), LIMIT)
            assert first == ("restored", None), first  # (no major sync: the session's start)
            assert await asyncio.wait_for(read.get(), LIMIT) == b"greeting from B"
            with pytest.raises(sessionlayer.CheckpointRestored):  # (this task is told too)
                await client.send(b"m1")
            await client.send(b"m1")
            assert await asyncio.wait_for(read.get(), LIMIT) == b"echo m1"
            cut(client)  # a plain loss now: B still has the session; the counts agree
            await next_of(client, Resumed)
            await client.send(b"m2")
            assert await asyncio.wait_for(read.get(), LIMIT) == b"echo m2"
            assert read.empty()
            reading.cancel()
            client.abort()

    run(main())


ACTIVITIES = SessionConfig(functional_units=FU.DUPLEX | FU.ACTIVITY | FU.MAJOR_SYNC
                           | FU.SYMMETRIC_SYNC | FU.RESYNC)  # fmt: skip


def test_an_activity_of_before_a_checkpoint_resume_is_not_started_again() -> None:
    async def main() -> None:
        seen: dict[str, asyncio.Queue[str]] = {"A": asyncio.Queue(), "B": asyncio.Queue()}

        def watched(node: str) -> Any:
            async def handler(session: sessionlayer.Session) -> None:
                async def watch() -> None:
                    async for event in session.events():
                        await seen[node].put(type(event).__name__)

                watching = asyncio.ensure_future(watch())
                try:
                    async for data in session:
                        await session.send(data)
                finally:
                    watching.cancel()

            return handler

        async with two_nodes(watched, config=ACTIVITIES) as (a, b):
            client = await sessionlayer.connect(
                "127.0.0.1", a.port, options=FAST, config=ACTIVITIES,
                addresses=[("127.0.0.1", a.port), ("127.0.0.1", b.port)])  # fmt: skip
            await client.start_activity(b"act1")
            await client.send(b"in act1")
            assert await client.receive() == b"in act1"
            a.close(detach=True)
            await a.wait_closed()
            assert (await next_of(client, Resumed)).outcome == "checkpoint"
            with pytest.raises(sessionlayer.CheckpointRestored):  # (its first request: void)
                await client.send(b"void")
            with pytest.raises(sessionlayer.CheckpointRestored):  # (and the reader's news)
                await client.receive()
            await client.start_activity(b"act2")
            await client.send(b"in act2")
            assert await asyncio.wait_for(client.receive(), LIMIT) == b"in act2"
            cut(client)
            assert (await next_of(client, Resumed)).outcome == "resumed"
            await client.send(b"after")
            assert await asyncio.wait_for(client.receive(), LIMIT) == b"after"
            assert client._conn.machine.activity_id == b"act2"
            names = [await asyncio.wait_for(seen["B"].get(), LIMIT) for _ in range(4)]
            # (B: its restore, act2's start, one loss and one resume; before, the client's
            # first try started act1 again, which failed, and B saw two losses and resumes)
            assert names == ["Resumed", "ActivityStartIndication", "Interrupted", "Resumed"], (
                names)
            assert seen["B"].empty(), names
            client.abort()

    run(main())


def test_typed_data_from_a_restored_handler_comes_after_the_rollback() -> None:
    """Typed data (counted with S-DATA in the journal) that comes with the AC waits too:
    counted before the restart emptied the journal, the next plain resume was refused."""

    async def main() -> None:
        async with two_nodes(lambda node: greeter(node, typed=True)) as (a, b):
            client = await sessionlayer.connect(
                "127.0.0.1", a.port, options=FAST,
                addresses=[("127.0.0.1", a.port), ("127.0.0.1", b.port)])  # fmt: skip
            got: asyncio.Queue[Any] = asyncio.Queue()

            async def watch() -> None:
                async for event in client.events():
                    await got.put(event)

            async def next_event(kind: type[Any]) -> Any:  # (events() has one reader)
                while True:
                    event = await asyncio.wait_for(got.get(), LIMIT)
                    if isinstance(event, kind):
                        return event

            async def next_typed() -> bytes:
                return bytes((await next_event(ev.TypedDataIndication)).data)

            watching = asyncio.ensure_future(watch())
            assert await next_typed() == b"typed from A"
            read: asyncio.Queue[Any] = asyncio.Queue()

            reading = asyncio.ensure_future(reads_into(client, read))
            a.close(detach=True)
            await a.wait_closed()
            assert await asyncio.wait_for(read.get(), LIMIT) == ("restored", None)
            assert await next_typed() == b"typed from B"
            with pytest.raises(sessionlayer.CheckpointRestored):
                await client.send(b"m1")
            await client.send(b"m1")
            assert await asyncio.wait_for(read.get(), LIMIT) == b"echo m1"
            cut(client)  # a plain loss: the counts agree, typed data included
            assert (await next_event(Resumed)).outcome == "resumed"
            await client.send(b"m2")
            assert await asyncio.wait_for(read.get(), LIMIT) == b"echo m2"
            assert read.empty()
            reading.cancel()
            watching.cancel()
            client.abort()

    run(main())
