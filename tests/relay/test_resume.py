"""Recovery through the relay (docs/recovery.md case 1, docs/relay.md): a resumable session
between two sessionlayer peers whose connection to the relay, or the relay's to the
server, is lost resumes through the relay: every message once and in order, both ways."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from tests.recovery.helpers import FAST, cut, echo_keeping, echo_with_checkpoints, messages
from tests.relay.helpers import run

import sessionlayer
from sessionlayer.recovery import Resumed
from sessionlayer.recovery.journal import OVERHEAD
from sessionlayer.relay import start


@pytest.mark.parametrize("where", ["client leg", "upstream leg"])
def test_a_lost_leg_resumes_through_the_relay_exactly_once(where: str) -> None:
    n = 400
    up, down = messages(n, 1, b"up"), messages(n, 2, b"down")
    cuts_at = set(range(n // 9, n, n // 9))  # (client's message counts: 8 cuts)

    async def main() -> None:
        got_up: list[bytes] = []
        server_side: list[sessionlayer.Session] = []
        done = asyncio.Event()

        async def handler(session: sessionlayer.Session) -> None:
            server_side.append(session)
            task = asyncio.create_task(_send_all(session, down))
            async for data in session:
                got_up.append(data)
                if len(got_up) == n:
                    done.set()
                    break
            await task
            await session.wait_closed()

        async with await sessionlayer.serve(handler, options=FAST) as server:
            async with await start(("127.0.0.1", server.port)) as relay:
                client = await sessionlayer.connect("127.0.0.1", relay.port, options=FAST)
                assert client.resumable
                resumed = asyncio.Queue[Resumed]()
                watch = asyncio.create_task(_resumes(client, resumed))
                task = asyncio.create_task(_send_all(client, up))
                got_down: list[bytes] = []
                async with asyncio.timeout(60):
                    async for data in client:
                        got_down.append(data)
                        if len(got_down) in cuts_at:
                            cut(client if where == "client leg" else server_side[-1])
                            await resumed.get()  # (each cut on a connection of its own)
                        if len(got_down) == n:
                            break
                    await task
                    await done.wait()
                watch.cancel()
                assert got_down == down and got_up == up
                assert client.resumes == client.interruptions == len(cuts_at)
                assert server.stats.resumed["resumed"] == client.resumes
                assert relay.stats.ended["interrupted"] == len(cuts_at)
                await client.release()

    run(main())


async def _resumes(session: sessionlayer.Session, out: asyncio.Queue[Resumed]) -> None:
    async for event in session.events():
        if isinstance(event, Resumed):
            out.put_nowait(event)


async def _send_all(session: sessionlayer.Session, items: list[bytes]) -> None:
    for m in items:
        await session.send(m)


# ------------------------------------------------------------------ checkpoints (major syncs)


def _numbered(n: int, size: int = 65536) -> list[bytes]:
    return [b"%06d" % i + b"q" * (size - 6) for i in range(n)]


@pytest.mark.parametrize("every", [1, 3, 8])
def test_checkpoints_through_the_relay_every_message_once_and_retention_bounded(
    every: int,
) -> None:
    """The tester's case: a major sync point every ``every`` messages of 64 KiB through the
    relay.  At 8 MiB (``Options.ack_bytes``) the client's agent sets its acknowledgement
    point, a minor sync point, right before a checkpoint; the server's MIA comes back
    while the relay's machine toward the client waits to answer the MAP (STA10A), where
    X.225 allows no MIA.  The old relay aborted both legs there (message 127); now the
    MAA that follows confirms the point, and the client's journal lets go of what it
    covered: every message arrives once and in order, and what the client keeps never
    grows past one acknowledgement interval."""
    n = 200
    items = _numbered(n)

    async def main() -> None:
        got: list[bytes] = []
        done = asyncio.Event()

        async def handler(session: sessionlayer.Session) -> None:
            async for data in session:
                got.append(data)
                if len(got) == n:
                    done.set()

        async with await sessionlayer.serve(handler) as server:
            async with await start(("127.0.0.1", server.port)) as relay:
                client = await sessionlayer.connect("127.0.0.1", relay.port)
                assert client.resumable
                journal = client._conn.journal
                assert journal is not None
                bound = sessionlayer.Options().ack_bytes + 2 * (len(items[0]) + 64)
                most = 0
                async with asyncio.timeout(60):
                    for i, item in enumerate(items):
                        await client.send(item)
                        if i % every == every - 1:
                            await client.sync(major=True, user_data=b"%d" % i)
                            most = max(most, journal.size)
                    await done.wait()
                assert got == items
                assert most <= bound, (most, bound)
                assert client.checkpoint is not None
                assert client.checkpoint.user_data == b"%d" % (n - n % every - 1)
                assert relay.stats.ended.get("aborted", 0) == 0
                await client.release()

    run(main())


@pytest.mark.parametrize("where", ["client leg", "upstream leg"])
def test_checkpoints_through_the_relay_resume_after_cuts(where: str) -> None:
    """The same checkpointed stream (a major sync every 3 messages, the client's
    acknowledgement point every 3 too, right before it) with the client's, or the
    server's, connection to the relay cut six times, each time right before a checkpoint
    (which waits for the resume and is made again): it resumes through the relay each
    time, and the server gets every message once and in order."""
    n = 360
    items = _numbered(n)
    opts = dataclasses.replace(FAST, ack_bytes=3 * (len(items[0]) + OVERHEAD))
    cuts_at = set(range(n // 7, n, n // 7))  # (message counts: 6 cuts)

    async def main() -> None:
        got: list[bytes] = []
        server_side: list[sessionlayer.Session] = []
        done = asyncio.Event()

        async def handler(session: sessionlayer.Session) -> None:
            server_side.append(session)
            async for data in session:
                got.append(data)
                if len(got) == n:
                    done.set()
            await session.wait_closed()

        async with await sessionlayer.serve(handler, options=FAST) as server:
            async with await start(("127.0.0.1", server.port)) as relay:
                client = await sessionlayer.connect("127.0.0.1", relay.port, options=opts)
                resumed = asyncio.Queue[Resumed]()
                watch = asyncio.create_task(_resumes(client, resumed))
                async with asyncio.timeout(60):
                    for i, item in enumerate(items):
                        await client.send(item)
                        if i + 1 in cuts_at:
                            cut(client if where == "client leg" else server_side[-1])
                        if i % 3 == 2:
                            await client.sync(major=True)
                        if i + 1 in cuts_at:
                            await resumed.get()  # (each cut on a connection of its own)
                    await done.wait()
                watch.cancel()
                assert got == items
                assert client.resumes == client.interruptions == len(cuts_at)
                assert server.stats.resumed["resumed"] == client.resumes
                assert relay.stats.ended["interrupted"] == len(cuts_at)
                assert relay.stats.ended.get("aborted", 0) == 0
                await client.release()

    run(main())


@pytest.mark.parametrize("every", [1, 3, 8])
def test_checkpoints_through_the_relay_while_data_flows_both_ways(every: int) -> None:
    """As tests/recovery/test_resume.py's test of the same name, through the relay: the
    server's data and acknowledgement points that crossed the client's MAP wait in the
    relay for the server's MAA, the client's MIA for such a point is not relayed back (the
    MAA settled it on that leg), and the server sets a new point for what it covered."""

    async def main() -> None:
        served: list[sessionlayer.Session] = []
        async with await sessionlayer.serve(echo_keeping(served)) as server:
            async with await start(("127.0.0.1", server.port)) as relay:
                await echo_with_checkpoints(relay.port, every, served)
                assert relay.stats.ended.get("aborted", 0) == 0

    run(main())
