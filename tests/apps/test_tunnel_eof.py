"""The end of data (``E``) for a stream whose local socket was reset meanwhile resets that
stream only.  ``write_eof()`` raised there (ENOTCONN: shutdown on a reset socket) out of
the session's reader, and the whole tunnel session ended: every other tunnelled
connection was reset with it (an application that closed early took down the others)."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest
from tests.apps.helpers import LIMIT, Target, echo, run, tunnel


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_fin_toward_a_local_socket_reset_meanwhile_resets_that_stream_only(loop: str) -> None:
    async def main() -> None:
        got_eof, go = asyncio.Event(), asyncio.Event()

        async def target(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            first = await reader.readexactly(1)
            if first != b"x":  # the bystander: an echo
                writer.write(first)
                await echo(reader, writer)
                return
            await reader.read()  # (up to the application's FIN)
            got_eof.set()
            await go.wait()
            writer.close()  # its FIN: an E frame to the client

        server = await Target(target).start()
        async with tunnel(server.port) as (client, _, _, _):
            session = client.session
            reader, writer = await asyncio.open_connection("127.0.0.1", client.listen_port)
            writer.write(b"still here?")
            async with asyncio.timeout(LIMIT):
                assert await reader.readexactly(11) == b"still here?"

            app = socket.create_connection(("127.0.0.1", client.listen_port))
            app.sendall(b"x")
            app.shutdown(socket.SHUT_WR)  # (the tunnel stops reading it after this EOF)
            async with asyncio.timeout(LIMIT):
                await got_eof.wait()
            app.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            app.close()  # RST: nobody reads the tunnel's local socket to see it
            go.set()  # now the target's FIN comes back as E, toward that socket
            async with asyncio.timeout(LIMIT):
                while client.stats.opened < 2 or client.stats.streams > 1:
                    await asyncio.sleep(0.01)  # (counters; no event tells the test)

            writer.write(b" yes")  # the other connection goes on, in the same session
            async with asyncio.timeout(LIMIT):
                assert await reader.readexactly(4) == b" yes"
            writer.write_eof()
            async with asyncio.timeout(LIMIT):
                assert await reader.read() == b""
            writer.close()
            assert client.session is session and session is not None and not session.closed
            # (asyncio: reset, as the socket was; uvloop's shutdown does not fail: it ends)
            assert client.stats.sessions == 1 and client.stats.resets <= 1, client.stats
        await server.close()

    run(main(), 120, loop=loop)
