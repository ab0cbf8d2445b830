"""A plain client connection whose ``connection_made`` runs after ``Relay.close()`` (asyncio
accepts in one loop turn and makes the protocol's connection in a later one: a SIGTERM may
land between) is closed at once.  Before, it was relayed: its CN got an AC through a new
upstream connection, and ``wait_closed()`` waited for a session begun after the close."""

from __future__ import annotations

import asyncio
import socket

from tests.relay.helpers import run

from sessionlayer.relay import start
from sessionlayer.relay.server import CLIENT, _LegProtocol, _Session


def test_a_connection_made_after_close_is_not_relayed() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        upstream_hits: list[int] = []

        async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            upstream_hits.append(1)
            writer.close()

        server = await asyncio.start_server(upstream, "127.0.0.1", 0)
        async with server:
            relay = await start(("127.0.0.1", server.sockets[0].getsockname()[1]))
            ours, theirs = socket.socketpair()
            relay.close()  # (then the connection it had accepted is made)
            await loop.connect_accepted_socket(lambda: _LegProtocol(_Session(relay), CLIENT),
                                               theirs)  # fmt: skip
            reader, writer = await asyncio.open_connection(sock=ours)
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, nothing said
            writer.close()
            await asyncio.wait_for(relay.wait_closed(), 5)
            assert relay.sessions == [] and upstream_hits == []

    run(main())
