"""FaultProxy against plain TCP peers on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from tests.faults.peers import Recorder, Target, connect
from tests.faults.proxy import Cut, FaultProxy


@contextlib.asynccontextmanager
async def proxied(seed: int = 0, **options: bool) -> AsyncIterator[tuple[Target, FaultProxy]]:
    """A `Target` with `options` and a `FaultProxy` in front of it."""
    async with Target(**options) as target:
        async with FaultProxy("127.0.0.1", target.port, seed=seed) as proxy:
            yield target, proxy


def run(main: Callable[[], Awaitable[None]]) -> None:
    """Run `main` bounded; fail on anything passed to the loop's exception handler and on
    any task left behind."""
    handled: list[dict[str, Any]] = []

    async def wrapper() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _, context: handled.append(context))
        async with asyncio.timeout(15):
            await main()
        assert asyncio.all_tasks() == {asyncio.current_task()}

    asyncio.run(wrapper())
    assert handled == []


async def settled(proxy: FaultProxy) -> None:
    """Wait (bounded poll: a closed socket has no notification) until no connection is left."""
    for _ in range(500):
        if proxy.active == 0:
            break
        await asyncio.sleep(0.01)
    assert proxy.active == 0
    assert proxy.errors == []


def test_forwards_both_ways_with_half_close() -> None:
    async def main() -> None:
        payload = bytes(range(256)) * 4096  # 1 MiB
        async with proxied(echo=True) as (target, proxy):
            client = await connect(proxy.port)
            for start in range(0, len(payload), 100_000):
                client.write(payload[start : start + 100_000])
            await client.until(lambda: len(client.data) == len(payload))
            assert client.data == payload
            assert client.transport is not None
            client.transport.write_eof()  # the target sees EOF, closes; the client sees EOF
            assert await client.ended() == "eof"
            assert (await target.peer(0)).end == "eof"
            assert (proxy.connections, proxy.cuts, proxy.refused) == (1, 0, 0)
            assert proxy.bytes_up == proxy.bytes_down == len(payload)
            await settled(proxy)

    run(main)


def test_backpressure_bounds_what_is_in_flight() -> None:
    async def main() -> None:
        total = 16 * 2**20
        async with Target(pause=True) as target:
            async with FaultProxy(
                "127.0.0.1", target.port, seed=0, chunk=16384, sockbuf=32768
            ) as proxy:
                _, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
                writer.get_extra_info("socket").setsockopt(
                    socket.SOL_SOCKET, socket.SO_SNDBUF, 32768
                )
                sink = await target.peer(0)
                written = 0

                async def send() -> None:
                    nonlocal written
                    piece = b"x" * 65536
                    while written < total:
                        writer.write(piece)
                        await writer.drain()
                        written += len(piece)

                sender = asyncio.create_task(send())
                # Bounded poll for the stall: no progress for 0.3 s.
                last, still = -1, 0
                for _ in range(300):
                    await asyncio.sleep(0.02)
                    still = still + 1 if written == last else 0
                    last = written
                    if still >= 15:
                        break
                # The kernel buffers (a few 100 KiB here) plus about a chunk per direction:
                # nowhere near the 16 MiB the client wants to send.
                assert still >= 15 and written < 2 * 2**20, written
                assert sink.transport is not None
                sink.transport.resume_reading()
                await sender
                await sink.until(lambda: len(sink.data) == total)
                assert sink.data == b"x" * total and proxy.bytes_up == total
                writer.close()
                await writer.wait_closed()
                await settled(proxy)

    run(main)


@pytest.mark.parametrize("mode", ["reset", "close"])
def test_cut_reaches_both_sides(mode: str) -> None:
    async def main() -> None:
        async with proxied(echo=True) as (target, proxy):
            client = await connect(proxy.port)
            client.write(b"hello")
            await client.until(lambda: client.data == b"hello")
            server = await target.peer(0)
            assert proxy.cut(mode) == 1
            expected = "reset" if mode == "reset" else "eof"
            assert await client.ended() == expected
            assert await server.ended() == expected
            assert proxy.log == [Cut(connection=1, mode=mode, after_bytes=10, reason="manual")]
            await proxy.wait_cuts(1)
            await settled(proxy)

    run(main)


def test_close_discards_what_comes_after_the_fin() -> None:
    async def main() -> None:
        async with proxied(keep_open=True) as (target, proxy):
            client = await connect(proxy.port, keep_open=True)
            client.write(b"before")
            server = await target.peer(0)
            await server.until(lambda: server.data == b"before")
            proxy.cut("close")
            await client.until(lambda: client.end == "eof")
            await server.until(lambda: server.end == "eof")
            client.write(b"after")  # half-open: the proxy reads it and drops it
            server.write(b"after")
            assert proxy.active == 1
            assert server.transport is not None and client.transport is not None
            server.transport.close()
            client.transport.close()
            await settled(proxy)
            assert server.data == b"before" and client.data == b""
            assert (proxy.bytes_up, proxy.bytes_down) == (6, 0)

    run(main)


def test_blackhole_is_silent_until_heal() -> None:
    async def main() -> None:
        async with proxied(echo=True) as (target, proxy):
            client = await connect(proxy.port)
            client.write(b"a")
            await client.until(lambda: client.data == b"a")
            server = await target.peer(0)
            assert proxy.cut("blackhole") == 1
            client.write(b"lost" * 1000)
            # Nothing to wait for: bytes vanish, so check for 0.3 s that nothing happens.
            with pytest.raises(TimeoutError):
                await client.until(lambda: client.data != b"a" or client.end is not None, 0.3)
            assert server.data == b"a" and server.end is None
            # New connections are forwarded meanwhile.
            other = await connect(proxy.port)
            other.write(b"b")
            await other.until(lambda: other.data == b"b")
            assert proxy.heal() == 1
            assert await client.ended() == "reset"
            assert await server.ended() == "reset"
            # A blackholed connection is also reset by the next cut, whatever its mode.
            assert proxy.cut("blackhole") == 1
            third = await connect(proxy.port)
            third.write(b"c")
            await third.until(lambda: third.data == b"c")
            assert proxy.cut("close") == 1
            assert await other.ended() == "reset"
            assert await third.ended() == "eof"
            assert [(cut.connection, cut.mode) for cut in proxy.log] == [
                (1, "blackhole"), (2, "blackhole"), (3, "close")
            ]
            await settled(proxy)

    run(main)


def test_refuse_resets_new_connections() -> None:
    async def main() -> None:
        async with proxied(echo=True) as (target, proxy):
            proxy.refuse(True)
            refused = await connect(proxy.port)
            assert await refused.ended() == "reset"
            assert (proxy.refused, proxy.connections, len(target.peers)) == (1, 0, 0)
            proxy.refuse(False)
            client = await connect(proxy.port)
            client.write(b"up again")
            await client.until(lambda: client.data == b"up again")
            await proxy.wait_connections(1)
            client.abort()
            await settled(proxy)

    run(main)


def test_unreachable_target_resets_the_client() -> None:
    async def main() -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]  # nothing listens there once it is closed
        async with FaultProxy("127.0.0.1", port, seed=0) as proxy:
            client = await connect(proxy.port)
            assert await client.ended() == "reset"
            await settled(proxy)

    run(main)


async def one_way(proxy: FaultProxy, target: Target, index: int, payload: bytes) -> Recorder:
    """Send `payload` through the proxy on a new connection; the target's side once ended."""
    client = await connect(proxy.port)
    client.write(payload)
    server = await target.peer(index)
    await server.until(lambda: server.end is not None or len(server.data) == len(payload))
    client.abort()
    await server.ended()
    return server


@pytest.mark.parametrize("mode", ["reset", "close"])
def test_scheduled_byte_cuts_are_exact(mode: str) -> None:
    async def main() -> None:
        payload = bytes(range(256)) * 16
        async with proxied(seed=3) as (target, proxy):
            proxy.schedule(cut_after_bytes=(1, len(payload) - 1), modes=(mode,), max_cuts=5)
            for index in range(5):
                server = await one_way(proxy, target, index, payload)
                cut = proxy.log[index]
                assert (cut.connection, cut.mode, cut.reason) == (index + 1, mode, "bytes")
                # What the server got (observed apart from the proxy's log) ends inside the
                # payload, exactly where the log says the cut was.
                assert 0 < len(server.data) < len(payload)
                assert server.data == payload[: cut.after_bytes]
                assert server.end == ("reset" if mode == "reset" else "eof")
            # Drawn at random in the range: not one fixed offset (seed 3 gives five apart).
            assert len({c.after_bytes for c in proxy.log}) == 5
            server = await one_way(proxy, target, 5, payload)  # max_cuts reached: faithful
            assert server.data == payload and proxy.cuts == 5
            await settled(proxy)

    run(main)


def test_byte_budget_counts_both_directions() -> None:
    async def main() -> None:
        message = b"m" * 1000
        async with proxied(seed=5, echo=True) as (target, proxy):
            proxy.schedule(cut_after_bytes=(1001, 1999), modes=("close",))
            for index in range(3):
                client = await connect(proxy.port)
                client.write(message)
                assert await client.ended() == "eof"
                server = await target.peer(index)
                await server.ended()
                cut = proxy.log[index]
                # All of the message went up; the echo was cut short on its way down.
                assert server.data == message
                assert len(client.data) == cut.after_bytes - len(message)
            assert proxy.bytes_up + proxy.bytes_down == sum(c.after_bytes for c in proxy.log)
            await settled(proxy)

    run(main)


def test_schedule_is_reproducible_from_the_seed() -> None:
    async def cuts(seed: int) -> list[tuple[int, str]]:
        payload = b"z" * 5000
        async with proxied(seed=seed) as (target, proxy):
            proxy.schedule(cut_after_bytes=(0, 4999), modes=("reset", "close"))
            for index in range(4):
                await one_way(proxy, target, index, payload)
            await settled(proxy)
            return [(cut.after_bytes, cut.mode) for cut in proxy.log]

    async def main() -> None:
        first = await cuts(42)
        assert len(first) == 4
        assert await cuts(42) == first
        assert await cuts(43) != first

    run(main)


def test_scheduled_time_cut_and_max_cuts() -> None:
    async def main() -> None:
        async with proxied(seed=1, echo=True) as (target, proxy):
            proxy.schedule(cut_after_seconds=(0.05, 0.1), modes=("reset",), max_cuts=1)
            first, second = await connect(proxy.port), await connect(proxy.port)
            await proxy.wait_cuts(1, timeout=2)
            assert proxy.log[0].reason == "seconds"
            cut = (first, second)[proxy.log[0].connection - 1]
            alive = second if cut is first else first
            assert await cut.ended() == "reset"
            # The other one's timer fires too but finds max_cuts reached: it lives on.
            with pytest.raises(TimeoutError):
                await alive.until(lambda: alive.end is not None, 0.2)
            alive.write(b"still here")
            await alive.until(lambda: alive.data == b"still here")
            assert proxy.cuts == 1
            alive.abort()
            await settled(proxy)
            assert len(target.peers) == 2

    run(main)


def test_close_resets_everything_and_leaves_no_task() -> None:
    async def main() -> None:
        async with Target(echo=True, keep_open=True) as target:
            proxy = FaultProxy("127.0.0.1", target.port, seed=0)
            await proxy.start()
            closing = await connect(proxy.port, keep_open=True)
            await proxy.wait_connections(1)
            proxy.cut("close")  # both ends stay half-open: the proxy keeps discarding
            await closing.until(lambda: closing.end == "eof")
            holes = [await connect(proxy.port) for _ in range(2)]
            await proxy.wait_connections(3)
            proxy.cut("blackhole")
            opened = await connect(proxy.port)
            opened.write(b"y")
            await opened.until(lambda: opened.data == b"y")
            assert proxy.active == 4
            await proxy.close()
            assert proxy.active == 0 and proxy.errors == []
            for client in [*holes, opened]:
                assert await client.ended() == "reset"
            for server in target.peers:
                assert await server.ended() in ("reset", "eof")
            closing.abort()  # half-open on our side: the proxy's reset is not read

    run(main)


def test_cut_while_connecting_to_the_target() -> None:
    async def main() -> None:
        async with proxied(echo=True) as (target, proxy):
            client = await connect(proxy.port)
            await proxy.wait_connections(1)  # accepted; the target connection is under way
            assert [link.state for link in proxy._links] == ["connecting"]
            assert proxy.cut("reset") == 1
            assert await client.ended() == "reset"
            assert await (await target.peer(0)).ended() == "reset"
            assert proxy.log == [Cut(1, "reset", 0, "manual")]
            await settled(proxy)

    run(main)


def test_zero_byte_budget_cuts_before_the_first_byte() -> None:
    async def main() -> None:
        async with proxied(keep_open=False) as (target, proxy):
            proxy.schedule(cut_after_bytes=(0, 0), modes=("close",), max_cuts=1)
            client = await connect(proxy.port)
            client.write(b"never")
            assert await client.ended() == "eof"
            server = await target.peer(0)
            assert await server.ended() == "eof" and server.data == b""
            assert proxy.log == [Cut(1, "close", 0, "bytes")]
            await settled(proxy)

    run(main)


def test_schedule_checks_its_arguments() -> None:
    proxy = FaultProxy("127.0.0.1", 1, seed=0)
    with pytest.raises(ValueError, match="mode"):
        proxy.schedule(cut_after_bytes=(1, 2), modes=("drop",))
    with pytest.raises(ValueError, match="range"):
        proxy.schedule(cut_after_bytes=(5, 2))
    with pytest.raises(ValueError, match="empty"):
        proxy.schedule(cut_after_seconds=(1, 2), modes=())
    with pytest.raises(ValueError, match="mode"):
        proxy.cut("drop")


def test_scheduled_blackhole_holds_until_heal() -> None:
    async def main() -> None:
        async with proxied(echo=True) as (target, proxy):
            proxy.schedule(cut_after_bytes=(3, 3), modes=("blackhole",), max_cuts=1)
            client = await connect(proxy.port)
            client.write(b"0123456789")
            server = await target.peer(0)
            await server.until(lambda: server.data == b"012")
            await proxy.wait_cuts(1)
            with pytest.raises(TimeoutError):  # the echo of "012" never comes back
                await client.until(lambda: client.data != b"" or client.end is not None, 0.2)
            assert server.end is None and proxy.heal() == 1
            assert await client.ended() == "reset"
            assert await server.ended() == "reset"
            assert proxy.log == [Cut(1, "blackhole", 3, "bytes")]
            await settled(proxy)

    run(main)


def test_max_cuts_reached_meanwhile_means_faithful() -> None:
    async def main() -> None:
        async with proxied(echo=True) as (target, proxy):
            # Both connections draw a plan at accept; only the first to reach it cuts.
            proxy.schedule(cut_after_bytes=(0, 0), modes=("reset",), max_cuts=1)
            first, second = await connect(proxy.port), await connect(proxy.port)
            await proxy.wait_connections(2)
            await proxy.wait_cuts(1)
            cut, alive = (first, second) if proxy.log[0].connection == 1 else (second, first)
            assert await cut.ended() == "reset"
            alive.write(b"through")
            await alive.until(lambda: alive.data == b"through")
            assert proxy.cuts == 1 and len(target.peers) == 2
            alive.abort()
            await settled(proxy)

    run(main)
