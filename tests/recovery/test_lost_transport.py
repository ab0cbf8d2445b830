"""Sends between the moment asyncio finds the transport broken and ``connection_lost``."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket

import pytest

import sessionlayer
from sessionlayer.recovery import Resumed

from .helpers import FAST, LIMIT, next_of, owned, run


class WroteIntoALostTransport(AssertionError):
    """asyncio warned of writes into a transport it had given up."""


def test_sends_after_a_failed_write_are_not_written_into_the_dead_transport(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Our side of the socket is shut down (the next send() fails with EPIPE), then the
    application sends 20 messages in one go (no await that yields: nothing is paused), each
    followed by an acknowledgement point (ack_bytes=1).  Nothing should be written into
    the transport asyncio has given up, so asyncio has nothing to warn about; the session
    resumes and every message arrives once, in order."""

    async def main() -> None:
        got: list[bytes] = []
        all_in = asyncio.Event()

        async def handler(session: sessionlayer.Session) -> None:
            async for data in session:
                got.append(data)
                if len(got) == 21:
                    all_in.set()

        options = dataclasses.replace(FAST, ack_bytes=1)
        async with await sessionlayer.serve(handler, options=options) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port, options=options)
            async with owned(client):
                await client.send(b"first")
                assert client._conn.transport is not None
                client._conn.transport.get_extra_info("socket").shutdown(socket.SHUT_WR)
                with caplog.at_level(logging.WARNING, logger="asyncio"):
                    for i in range(20):
                        await client.send(b"%d" % i)
                    warned = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
                await next_of(client, Resumed)
                await asyncio.wait_for(all_in.wait(), LIMIT)
                assert got == [b"first", *(b"%d" % i for i in range(20))]
                await client.release()
                if warned:
                    raise WroteIntoALostTransport(warned)

    run(main())
