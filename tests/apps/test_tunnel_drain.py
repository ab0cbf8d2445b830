"""A stream that ended cleanly both ways reaches its target whole when its session ends.

The target had sent its FIN first and reads slowly, so the server still held what the
client had sent (the session acknowledged it) when the client released the session: with
a session per connection as soon as the local side was done, and in either mode when the
tunnel was closed.  The server reset every stream still listed at the release, and
without SO_LINGER 0 on a socket already closing: the target got a cut stream, then a
clean FIN (8036352 of 8388608 octets, and 24576 in shared mode), and took it as whole."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from sessionlayer.apps.tunnel import TunnelService

from .helpers import LIMIT, Target, pattern, run, tunnel, until

MIB = 1 << 20
#: A window toward the target that holds the whole stream: the application can finish
#: while the target reads nothing, and the server holds what its socket has not taken.
BIG = {"window": 16 * MIB, "max_window": 16 * MIB}


class SlowTarget:
    """Sends its FIN at once, then reads nothing until ``go``; then reads in small
    chunks until EOF.  ``ended`` is "eof" or "reset", ``got`` what came."""

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.done = asyncio.Event()
        self.got = bytearray()
        self.ended = ""

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write_eof()  # (FIN first: the application reads its EOF at once)
        await writer.drain()
        await self.go.wait()
        try:
            while chunk := await reader.read(16 * 1024):
                self.got += chunk
            self.ended = "eof"
        except ConnectionError:
            self.ended = "reset"
        finally:
            self.done.set()


async def app(port: int, data: bytes) -> None:
    """Send ``data``, shut down writing, read the target's EOF, close."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    writer.write_eof()
    await writer.drain()
    assert await reader.read() == b""
    writer.close()
    await writer.wait_closed()


def the_mux(service: TunnelService) -> Any:
    """The service's one tunnel session (its multiplexer)."""
    (mux,) = service.muxes.values()
    return mux


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("mode", ["per-connection", "per-connection, closed", "shared, closed"])
def test_a_stream_that_ended_both_ways_reaches_a_slow_target_whole(mode: str,
                                                                   loop: str) -> None:
    data = pattern(7, 8 * MIB)

    async def main() -> None:
        slow = SlowTarget()
        target = await Target(slow).start()
        client_kwargs = {"shared": mode.startswith("shared"), **BIG}
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(target.close)
            client, service, _, _ = await stack.enter_async_context(
                tunnel(target.port, service_kwargs=BIG, client_kwargs=client_kwargs))
            await until(lambda: len(service.muxes) == 1)
            mux = the_mux(service)
            async with asyncio.timeout(LIMIT):
                await app(client.listen_port, data)
            if mode.endswith("closed"):
                await client.close()  # (right after the application finished)
            await until(lambda: mux.over)  # the session was released
            slow.go.set()
            async with asyncio.timeout(LIMIT):
                await slow.done.wait()
            assert (slow.ended, len(slow.got)) == ("eof", len(data))
            assert slow.got == data
            await until(lambda: not service.muxes)
            assert service.stats.resets == 0 and client.stats.resets == 0

    run(main(), loop=loop)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_stream_its_target_does_not_take_in_time_is_reset_not_cut_clean(loop: str) -> None:
    """Past ``drain_timeout`` the stream is reset: the target sees an RST, never a clean
    end of a stream cut short."""
    data = pattern(8, 8 * MIB)

    async def main() -> None:
        slow = SlowTarget()
        target = await Target(slow).start()
        service_kwargs = {"drain_timeout": 0.2, **BIG}
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(target.close)
            client, service, _, _ = await stack.enter_async_context(
                tunnel(target.port, service_kwargs=service_kwargs,
                       client_kwargs={"shared": False, **BIG}))
            await until(lambda: len(service.muxes) == 1)
            async with asyncio.timeout(LIMIT):
                await app(client.listen_port, data)
            await until(lambda: not service.muxes)  # drained for 0.2 s, then reset
            slow.go.set()
            async with asyncio.timeout(LIMIT):
                await slow.done.wait()
            assert slow.ended == "reset", (slow.ended, len(slow.got))
            assert service.stats.resets == 1

    run(main(), loop=loop)
