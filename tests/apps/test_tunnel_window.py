"""The tunnel's windows grow where the link needs them (``tunnel_flow: auto``): over a long
link (bench/delayproxy.py: 50 ms each way, loopback's speed otherwise) a stream's window
grows from its start toward ``max_window``, within the session's ``window_budget``; a
local socket that does not take the data keeps its window as it is; a server that did
not agree (an older one) gets fixed windows and never sees a ``B`` frame."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from bench.delayproxy import DelayProxy

import sessionlayer
from sessionlayer.apps.tunnel import (
    INITIAL_WINDOW,
    SUPPORTED,
    TunnelClient,
    TunnelService,
)

from .helpers import FAST, LIMIT, Exchange, Target, exchange, pattern, run, until

MIB = 1 << 20
#: Each way: a 100 ms round trip, over which a window of 512 KiB moves about 5 MB/s, far
#: below what this process moves on loopback even under coverage: the window is what
#: holds a stream back until it grew.
DELAY = 0.05


@asynccontextmanager
async def long_link(
    target_port: int, *, supported: dict[str, list[str]] = SUPPORTED, **kwargs: Any
) -> AsyncIterator[tuple[TunnelClient, TunnelService]]:
    """A tunnel whose session runs through a 100 ms round trip; ``kwargs`` go to both
    ends (window, max_window, window_budget)."""
    service = TunnelService([("127.0.0.1", target_port)], **kwargs)
    async with await sessionlayer.serve(service.handle, "127.0.0.1", 0, supported=supported,
                                        options=FAST) as server:  # fmt: skip
        proxy = await DelayProxy.start(server.port, DELAY)
        client = TunnelClient("127.0.0.1", proxy.port, options=FAST, **kwargs)
        try:
            await client.start()
            yield client, service
        finally:
            await client.close()
            await proxy.close()


def test_windows_grow_on_a_long_link_both_ways() -> None:
    """From 256 KiB, both directions' windows grow (the server's for what goes up, the
    client's for what comes down), to at most ``max_window``; every octet arrives."""
    up, down = 8 * MIB, 8 * MIB

    async def main() -> None:
        target = Exchange(down)
        server_side = await Target(target).start()
        async with long_link(server_side.port, window=INITIAL_WINDOW,
                             max_window=4 * MIB) as (client, service):  # fmt: skip
            async with asyncio.timeout(LIMIT):
                got = await exchange(client.listen_port, 7, up, down)
            assert got == pattern(1007, down)
            await until(lambda: 7 in target.received)  # (its EOF may come after ours)
            assert target.received[7] == hashlib.sha256(pattern(7, up)).hexdigest()
            for stats in (service.stats, client.stats):
                assert stats.peer_blocked >= 2 and stats.window_grows >= 2, stats
                assert MIB <= stats.largest_window <= 4 * MIB, stats
        await server_side.close()

    run(main())


def test_the_growth_of_a_sessions_windows_stays_within_its_budget() -> None:
    """``window_budget`` 512 KiB: a stream that starts at 256 KiB grows by 256 KiB, then by
    the 256 KiB left, and no more, however often the sender runs out of credit."""

    async def main() -> None:
        target = Exchange(0)
        server_side = await Target(target).start()
        async with long_link(server_side.port, window=INITIAL_WINDOW, max_window=64 * MIB,
                             window_budget=512 * 1024) as (client, service):  # fmt: skip
            async with asyncio.timeout(LIMIT):
                await exchange(client.listen_port, 1, 8 * MIB, 0)
            stats = service.stats
            assert stats.window_grows == 2 and stats.largest_window == 768 * 1024, stats
            assert stats.peer_blocked > stats.window_grows  # (blocked again, at the budget)
        await server_side.close()

    run(main())


def test_a_window_stops_growing_where_the_local_socket_does_not_take_the_data() -> None:
    """The target reads nothing for a while: the client runs out of credit and says so.
    While the kernel takes what comes (its buffers on that connection: the target's is
    small here, the server's send buffer grows to a few MiB) the window may grow; once the
    target's socket takes no more, a ``B`` no longer makes the window larger: the target
    is what holds the data up.  Then it reads, and all of it is there."""
    up = 32 * MIB
    reading = asyncio.Event()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reading.wait()
        digest = hashlib.sha256()
        seed = int((await reader.readline()).decode())
        while block := await reader.read(65536):
            digest.update(block)
        assert digest.hexdigest() == hashlib.sha256(pattern(seed, up)).hexdigest()
        writer.write(b"ok")
        await writer.drain()
        writer.close()

    async def main() -> None:
        server_side = await Target(slow).start()
        assert server_side.server is not None
        for sock in server_side.server.sockets:  # (inherited by the connections accepted:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # no autotuning)
        async with long_link(server_side.port, window=INITIAL_WINDOW) as (client, service):
            async with asyncio.timeout(LIMIT):
                task = asyncio.ensure_future(exchange(client.listen_port, 3, up, 0))
                await until(lambda: len(service.muxes) == 1)
                mux = next(iter(service.muxes.values()))
                await until(lambda: len(mux.streams) == 1)
                stream = next(iter(mux.streams.values()))

                def stalled() -> bool:
                    # (the client is out of credit, no grant is on its way, and the server
                    # read every B the client sent: the last one made nothing larger)
                    return (stream.write_paused and stream.window == 0 and client.stats.blocked
                            == service.stats.peer_blocked >= 1)  # fmt: skip

                await until(stalled)
                stats = service.stats
                assert stats.window_grows < stats.peer_blocked, stats
                assert stats.largest_window < 16 * MIB, stats
                reading.set()
                assert await task == b"ok"
        await server_side.close()

    run(main())


def test_a_server_that_did_not_agree_keeps_fixed_windows() -> None:
    """A server whose ``supported`` does not name ``tunnel_flow`` (an older one): no ``B``
    frame either way, windows as configured, and the stream goes through as before."""

    async def main() -> None:
        target = Exchange(2 * MIB)
        server_side = await Target(target).start()
        async with long_link(server_side.port, supported={"service": ["tunnel"]},
                             window=INITIAL_WINDOW) as (client, service):  # fmt: skip
            session = client.session
            assert session is not None and "tunnel_flow" not in session.chosen
            async with asyncio.timeout(LIMIT):
                got = await exchange(client.listen_port, 2, 2 * MIB, 2 * MIB)
            assert got == pattern(1002, 2 * MIB)
            for stats in (service.stats, client.stats):
                assert (stats.peer_blocked, stats.window_grows) == (0, 0), stats
                assert stats.largest_window == INITIAL_WINDOW
        await server_side.close()

    run(main())
