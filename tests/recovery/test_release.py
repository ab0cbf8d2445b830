"""Releasing a resumable session while an acknowledgement point is in flight."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

import sessionlayer

from .helpers import FAST, LIMIT, cut, owned, reads_until_end, run


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
