"""Releasing a resumable session: while an acknowledgement point is in flight, and across
an outage (``release_timeout`` counts only while the session is attached)."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from tests.faults.proxy import FaultProxy

import sessionlayer
from sessionlayer.errors import ResumeRefused
from sessionlayer.recovery import Backoff, Interrupted

from .helpers import FAST, LIMIT, cut, next_of, owned, reads_until_end, run

#: release() gives up on a missing DN after 0.3 s of an attached session; the outages below
#: last several times that (the reconnect retries every 50 ms, each refused by the proxy).
SHORT = dataclasses.replace(FAST, release_timeout=0.3)


def test_a_release_right_after_an_acknowledgement_point_completes() -> None:
    """ack_bytes=1: every message is followed at once by an acknowledgement point (MIP);
    release() goes out behind it, before the MIA can have come back (no await between)."""

    async def main() -> None:
        async def handler(session: sessionlayer.Session) -> None:
            async for _ in session:
                pass

        options = dataclasses.replace(FAST, ack_bytes=1)
        async with await sessionlayer.serve(handler, options=options) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port, options=options)
            async with owned(client):
                await client.send(b"one")
                journal = client._conn.journal
                assert journal is not None and journal.held == 1  # the MIP is out, unconfirmed
                await client.release()
                assert client.state == "released"

    run(main())


def test_a_release_whose_dn_was_lost_with_the_connection_returns() -> None:
    """The FN reached the server, which answered DN and ended the session; the DN was lost
    with the connection. On the resume the server says "released": the client's release()
    returns and the session ends as released (it raised ResumeRefused "ended")."""

    async def main() -> None:
        ended = asyncio.Event()
        async with await sessionlayer.serve(reads_until_end(ended), options=FAST) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port, options=FAST)
            await client.send(b"x")
            await client.sync()
            transport = client._conn.transport
            assert transport is not None
            transport.pause_reading()  # (the DN will wait unread in the socket ...)
            release = asyncio.ensure_future(client.release())
            await asyncio.wait_for(ended.wait(), LIMIT)
            cut(client)  # (... and go with it)
            assert await asyncio.wait_for(release, LIMIT) is None
            assert client.closed and client.state == "released"
            with pytest.raises(sessionlayer.SessionClosed):
                await client.receive()
            assert server.stats.ended["released"] == 1

    run(main())


async def hold_outage(proxy: FaultProxy, release: asyncio.Future[object]) -> None:
    """Keep the client's reconnects refused until three release timeouts have passed (each
    refusal is a wake-up: no sleep), with release() still waiting all along."""
    loop = asyncio.get_running_loop()
    until = loop.time() + 3 * SHORT.release_timeout
    async with asyncio.timeout(LIMIT):
        while loop.time() < until:
            seen = proxy.refused
            refused = asyncio.ensure_future(
                proxy._wait(lambda seen=seen: proxy.refused > seen, LIMIT))  # fmt: skip
            await asyncio.wait((refused, release), return_when=asyncio.FIRST_COMPLETED)
            refused.cancel()
            assert not release.done(), release
    assert proxy.refused >= 3


def test_a_release_during_an_outage_longer_than_the_release_timeout_completes() -> None:
    """The connection is cut, and reconnects refused, before release(): the FN waits for the
    resume (the outage's time is not the release timeout's), goes out on the new connection
    and is answered: release() returns and both sides end released."""

    async def main() -> None:
        ended = asyncio.Event()
        async with await sessionlayer.serve(reads_until_end(ended), options=SHORT) as server:
            async with FaultProxy("127.0.0.1", server.port, seed=1) as proxy:
                client = await sessionlayer.connect("127.0.0.1", proxy.port, options=SHORT)
                async with owned(client):
                    await client.send(b"x")
                    await client.sync()
                    proxy.refuse(True)  # (every reconnect is reset until let through)
                    assert proxy.cut("reset") == 1
                    await next_of(client, Interrupted)
                    assert client.state == "detached"
                    release = asyncio.ensure_future(client.release(b"bye"))
                    await hold_outage(proxy, release)
                    assert client.state == "detached"
                    proxy.refuse(False)
                    assert await asyncio.wait_for(release, LIMIT) is None
                    assert client.state == "released" and client.resumes == 1
                    await asyncio.wait_for(ended.wait(), LIMIT)
                    assert server.stats.ended["released"] == 1
                    assert server.sessions == [] and server.detached == []

    run(main())


def test_a_release_whose_dn_was_lost_returns_after_an_outage_longer_than_the_timeout() -> None:
    """The FN reached the server, which answered DN and ended the session; the DN was lost
    with the connection and reconnects are refused for longer than the release timeout.
    Once through, the server says "released": release() returns, the session is released."""

    async def main() -> None:
        ended = asyncio.Event()
        async with await sessionlayer.serve(reads_until_end(ended), options=SHORT) as server:
            async with FaultProxy("127.0.0.1", server.port, seed=1) as proxy:
                client = await sessionlayer.connect("127.0.0.1", proxy.port, options=SHORT)
                async with owned(client):
                    await client.send(b"x")
                    await client.sync()
                    transport = client._conn.transport
                    assert transport is not None
                    transport.pause_reading()  # (the DN will wait unread in the socket ...)
                    release = asyncio.ensure_future(client.release())
                    await asyncio.wait_for(ended.wait(), LIMIT)
                    assert server.stats.ended["released"] == 1
                    proxy.refuse(True)
                    cut(client)  # (... and go with it)
                    await hold_outage(proxy, release)
                    proxy.refuse(False)
                    assert await asyncio.wait_for(release, LIMIT) is None
                    assert client.closed and client.state == "released"
                    with pytest.raises(sessionlayer.SessionClosed):
                        await client.receive()

    run(main())


def test_a_release_during_an_outage_ends_with_the_reconnects_give_up() -> None:
    """Reconnects refused until the client's backoff gives up (after several release
    timeouts): release() raises that, ResumeRefused "gave_up", not a release timeout."""

    async def main() -> None:
        options = dataclasses.replace(
            SHORT, backoff=Backoff(first=0, cap=0.05, give_up=4 * SHORT.release_timeout))
        async with await sessionlayer.serve(reads_until_end(asyncio.Event()),
                                            options=SHORT) as server:  # fmt: skip
            async with FaultProxy("127.0.0.1", server.port, seed=1) as proxy:
                client = await sessionlayer.connect("127.0.0.1", proxy.port, options=options)
                async with owned(client):
                    await client.send(b"x")
                    proxy.refuse(True)
                    assert proxy.cut("reset") == 1
                    await next_of(client, Interrupted)
                    with pytest.raises(ResumeRefused) as info:
                        await asyncio.wait_for(client.release(), LIMIT)
                    assert info.value.code == "gave_up", info.value
                    assert client.state == "aborted"
                    assert proxy.refused >= 3

    run(main())
