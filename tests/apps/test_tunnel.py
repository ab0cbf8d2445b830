"""The TCP tunnel (sessionlayer.apps.tunnel) on loopback: real TCP everywhere, the fault
proxy between the tunnel's client and server.  What goes in one end of a tunnelled TCP
connection comes out of the other byte for byte, whatever happens to the link under the
session; half-close is carried; a slow stream holds up no other; refusals are resets."""

from __future__ import annotations

import asyncio
import hashlib
import socket

import pytest

import sessionlayer
from sessionlayer import Options
from sessionlayer.apps.tunnel import (
    LOCAL_HIGH,
    WINDOW,
    TunnelClient,
    TunnelError,
    TunnelService,
    parse_target,
    parse_targets,
)
from sessionlayer.recovery import Backoff
from sessionlayer.stores import MemoryStore

from .helpers import FAST, LIMIT, Exchange, Target, echo, exchange, pattern, run, tunnel, until

MIB = 1 << 20


def test_streams_arrive_byte_identical_both_ways_through_many_cuts() -> None:
    """Four tunnelled connections at once, 3 MiB up and 3 MiB down each, while the proxy
    resets or closes the session's TCP connection every 64 KiB to 1 MiB (40 cuts)."""
    up, down = 3 * MIB, 3 * MIB

    async def main() -> None:
        target = Exchange(down)
        server_side = await Target(target).start()
        async with tunnel(server_side.port, proxy_seed=11) as (client, service, server, proxy):
            assert proxy is not None
            proxy.schedule(cut_after_bytes=(64 * 1024, MIB), modes=("reset", "close"),
                           max_cuts=40)  # fmt: skip
            proxy.cut("reset")  # (the schedule applies to the connections from now on)
            async with asyncio.timeout(LIMIT):
                got = await asyncio.gather(*(exchange(client.listen_port, seed, up, down)
                                             for seed in range(4)))  # fmt: skip
            for seed, data in enumerate(got):
                assert len(data) == down and data == pattern(seed + 1000, down), seed
                assert target.received[seed] == hashlib.sha256(pattern(seed, up)).hexdigest()
            assert proxy.cuts >= 20, proxy.log
            session = client.session
            assert session is not None and session.resumes >= 20
            stats = client.stats
            assert stats.opened == 4 and stats.resets == 0 and stats.failed == 0
            assert stats.bytes_sent == 4 * (up + len(b"0\n")) and stats.bytes_received == 4 * down
            assert server.stats.resumed["resumed"] >= 20
            assert service.stats.resets == 0
        await server_side.close()

    run(main())


def test_a_line_echo_conversation_survives_cuts_with_no_line_lost_or_repeated() -> None:
    """An interactive exchange: a line, wait for its echo, the next line (3,000 lines),
    with the session's connection cut every 300 to 6,000 octets, 60 times."""

    async def main() -> None:
        target = await Target(echo).start()
        async with tunnel(target.port, proxy_seed=5) as (client, _, _, proxy):
            assert proxy is not None
            proxy.schedule(cut_after_bytes=(300, 6000), modes=("reset", "close"), max_cuts=60)
            proxy.cut("reset")
            reader, writer = await asyncio.open_connection("127.0.0.1", client.listen_port)
            async with asyncio.timeout(LIMIT):
                for i in range(3000):
                    line = b"line %d %s\n" % (i, b"x" * (i % 97))
                    writer.write(line)
                    assert await reader.readline() == line, i
                writer.write_eof()
                assert await reader.read() == b""  # the echo server's EOF, nothing more
            writer.close()
            assert proxy.cuts >= 40
            session = client.session
            assert session is not None and session.resumes >= 40
        await target.close()

    run(main())


def test_half_close_is_carried_both_ways() -> None:
    """The application half-closes first and still reads the answer; then the target
    half-closes first and still reads what the application sends after it."""

    async def answer_after_eof(reader: asyncio.StreamReader,
                               writer: asyncio.StreamWriter) -> None:  # fmt: skip
        data = await reader.read()  # until the application's FIN
        writer.write(hashlib.sha256(data).hexdigest().encode())
        writer.write_eof()
        await writer.drain()

    async def eof_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"bye\n")
        writer.write_eof()  # FIN at once
        await writer.drain()
        data = await reader.read()  # what the application sends after our FIN
        assert data == b"late data " * 1000
        eof_first.got = True  # type: ignore[attr-defined]

    async def main() -> None:
        first = await Target(answer_after_eof).start()
        second = await Target(eof_first).start()
        service = TunnelService([("127.0.0.1", first.port), ("127.0.0.1", second.port)])
        async with await sessionlayer.serve(service.handle, supported={"service": ["tunnel"]},
                                            options=FAST) as server:  # fmt: skip
            for target, check in ((first, 1), (second, 2)):
                client = TunnelClient("127.0.0.1", server.port, f"127.0.0.1:{target.port}",
                                      options=FAST)  # fmt: skip
                await client.start()
                reader, writer = await asyncio.open_connection("127.0.0.1", client.listen_port)
                async with asyncio.timeout(LIMIT):
                    if check == 1:
                        payload = pattern(3, 700_000)
                        writer.write(payload)
                        writer.write_eof()
                        answer = await reader.read()  # the target's answer, then its FIN
                        assert answer == hashlib.sha256(payload).hexdigest().encode()
                    else:
                        assert await reader.readline() == b"bye\n"
                        assert await reader.read() == b""  # the target's FIN came through
                        writer.write(b"late data " * 1000)  # our direction is still open
                        writer.write_eof()
                        await writer.drain()
                        await until(lambda c=client: not c.stats.streams)  # (both FINs)
                writer.close()
                stats = client.stats
                assert stats.resets == 0 and stats.opened == 1
                await client.close()
            assert getattr(eof_first, "got", False)
        await first.close()
        await second.close()

    run(main())


def test_a_stalled_stream_holds_up_no_other_and_its_buffers_stay_bounded() -> None:
    """One target never reads; another connection through the same session moves 8 MiB
    meanwhile.  The stalled stream holds at most its window (plus the local read buffer)
    on each side, not what the application tries to push."""

    async def never_reads(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(LIMIT)  # (cancelled at the end of the test)

    async def main() -> None:
        stalled = await Target(never_reads).start()
        flowing = await Target(echo).start()
        service = TunnelService([("127.0.0.1", stalled.port), ("127.0.0.1", flowing.port)])
        async with await sessionlayer.serve(service.handle, supported={"service": ["tunnel"]},
                                            options=FAST) as server:  # fmt: skip
            slow = TunnelClient("127.0.0.1", server.port, f"127.0.0.1:{stalled.port}",
                                options=FAST)  # fmt: skip
            await slow.start()
            _, w1 = await asyncio.open_connection("127.0.0.1", slow.listen_port)
            w1.transport.set_write_buffer_limits(high=64 * MIB)
            w1.write(b"z" * (32 * MIB))  # far more than any window: it must stall
            fast = TunnelClient("127.0.0.1", server.port, f"127.0.0.1:{flowing.port}",
                                options=FAST)  # fmt: skip
            await fast.start()
            async with asyncio.timeout(LIMIT):
                r2, w2 = await asyncio.open_connection("127.0.0.1", fast.listen_port)
                payload = pattern(9, 8 * MIB)

                async def push() -> None:
                    w2.write(payload)
                    await w2.drain()
                    w2.write_eof()

                pusher = asyncio.ensure_future(push())
                got = await r2.read(-1)
                await pusher
                assert got == payload
            # The stalled stream, on both sides: bounded by the window and LOCAL_HIGH.
            (stream,) = [s for m in service.muxes.values() for s in m.streams.values()
                         if s.target == f"127.0.0.1:{stalled.port}"]
            assert stream.outbytes <= LOCAL_HIGH + 256 * 1024  # (+ one read of the socket)
            assert stream.window >= 0 and stream.unflushed <= WINDOW
            sent = slow.stats.bytes_sent
            assert sent <= 16 * MIB, sent  # (what the target's kernel took, plus a window)
            w1.transport.abort()
            w2.close()
            await slow.close()
            await fast.close()
        await stalled.close()
        await flowing.close()

    run(main())


def test_refused_and_unreachable_targets_reset_the_application_connection() -> None:
    async def main() -> None:
        target = await Target(echo).start()
        with socket.socket() as s:  # a port nobody listens on
            s.bind(("127.0.0.1", 0))
            closed_port = s.getsockname()[1]
        service = TunnelService([("127.0.0.1", target.port), ("127.0.0.1", closed_port)])
        async with await sessionlayer.serve(service.handle, supported={"service": ["tunnel"]},
                                            options=FAST) as server:  # fmt: skip
            for to in ("127.0.0.1:1", f"127.0.0.1:{closed_port}", ""):
                client = TunnelClient("127.0.0.1", server.port, to or None, options=FAST)
                await client.start()
                reader, writer = await asyncio.open_connection("127.0.0.1", client.listen_port)
                writer.write(b"hello\n")
                async with asyncio.timeout(LIMIT):
                    with pytest.raises(ConnectionResetError):
                        await reader.read()
                writer.close()
                assert client.stats.failed == 1  # (counted before the reset was made)
                await client.close()
            assert service.stats.failed == 3
            # ... while an allowed target works on the same server.
            client = TunnelClient("127.0.0.1", server.port, f"127.0.0.1:{target.port}",
                                  options=FAST)  # fmt: skip
            await client.start()
            reader, writer = await asyncio.open_connection("127.0.0.1", client.listen_port)
            writer.write(b"ping\n")
            assert await asyncio.wait_for(reader.readline(), LIMIT) == b"ping\n"
            writer.close()
            await client.close()
        await target.close()

    run(main())


def test_a_server_that_refuses_the_tunnel_is_one_clear_error() -> None:
    async def main() -> None:
        files_only = {"service": ["files"]}
        async with await sessionlayer.serve(TunnelService([]).handle,
                                            supported=files_only) as server:  # fmt: skip
            client = TunnelClient("127.0.0.1", server.port, options=FAST)
            with pytest.raises(TunnelError, match="no common service"):
                await client.start()
            await client.close()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        client = TunnelClient("127.0.0.1", port, options=FAST)
        with pytest.raises(TunnelError, match="cannot reach"):
            await client.start()
        await client.close()

    run(main())


def test_at_most_max_streams_per_session() -> None:
    async def main() -> None:
        target = await Target(echo).start()
        async with tunnel(target.port, service_kwargs={"max_streams": 3},
                          client_kwargs={"max_streams": 100}) as (client, service, _, _):
            conns = []
            for i in range(3):
                reader, writer = await asyncio.open_connection("127.0.0.1", client.listen_port)
                writer.write(b"%d\n" % i)
                assert await asyncio.wait_for(reader.readline(), LIMIT) == b"%d\n" % i
                conns.append(writer)
            reader, writer = await asyncio.open_connection("127.0.0.1", client.listen_port)
            writer.write(b"one too many\n")
            with pytest.raises(ConnectionResetError):
                await asyncio.wait_for(reader.read(), LIMIT)
            assert service.stats.streams == 3 and service.stats.failed == 1
            for w in [*conns, writer]:
                w.close()
        await target.close()

    run(main())


def test_a_session_per_connection_works_too() -> None:
    async def main() -> None:
        target = await Target(echo).start()
        async with tunnel(target.port, client_kwargs={"shared": False}) as (client, _, server, _):
            for i in range(3):
                reader, writer = await asyncio.open_connection("127.0.0.1", client.listen_port)
                writer.write(b"x%d\n" % i)
                assert await asyncio.wait_for(reader.readline(), LIMIT) == b"x%d\n" % i
                writer.write_eof()
                assert await asyncio.wait_for(reader.read(), LIMIT) == b""
                writer.close()
            await until(lambda: not server.sessions)  # each released after its stream
            assert server.stats.accepted == 3 and client.stats.sessions == 3
        await target.close()

    run(main())


def test_a_silent_network_death_is_survived() -> None:
    """The proxy blackholes the session's connection (no FIN, no RST): the keepalive
    finds it dead, the session resumes on a new connection, the stream goes on."""
    options = Options(backoff=Backoff(first=0, cap=0.05, give_up=20.0), tpdu_size=65408,
                      keepalive_interval=0.2, idle_timeout=1.0)  # fmt: skip

    async def main() -> None:
        target = await Target(echo).start()
        async with tunnel(target.port, proxy_seed=1, options=options) as (client, _, _, proxy):
            assert proxy is not None
            reader, writer = await asyncio.open_connection("127.0.0.1", client.listen_port)
            async with asyncio.timeout(LIMIT):
                for i in range(200):
                    if i in (50, 120):
                        proxy.cut("blackhole")
                    writer.write(b"%d\n" % i)
                    assert await reader.readline() == b"%d\n" % i
            session = client.session
            assert session is not None and session.resumes >= 2
            writer.close()
        await target.close()

    run(main())


def test_a_server_restart_resets_the_tunnelled_connections_and_new_ones_work() -> None:
    """Case 2 (the server lost the session's state): the tunnel cannot know what the
    target got, so its connections are reset (an honest error); the next connection is
    carried by a new session."""

    async def main() -> None:
        target = await Target(echo).start()
        store = MemoryStore()
        service = TunnelService([("127.0.0.1", target.port)])
        first = await sessionlayer.serve(service.handle, supported={"service": ["tunnel"]},
                                         options=FAST, store=store)  # fmt: skip
        port = first.port
        client = TunnelClient("127.0.0.1", port, options=FAST)
        await client.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", client.listen_port)
        writer.write(b"before\n")
        assert await asyncio.wait_for(reader.readline(), LIMIT) == b"before\n"
        first.close(detach=True)  # a graceful stop: the session stays in the store
        await first.wait_closed()
        second = await sessionlayer.serve(TunnelService([("127.0.0.1", target.port)]).handle,
                                          port=port, supported={"service": ["tunnel"]},
                                          options=FAST, store=store)  # fmt: skip
        async with second:
            with pytest.raises(ConnectionResetError):
                await asyncio.wait_for(reader.read(), LIMIT)
            writer.close()
            assert client.stats.resets == 1
            reader, writer = await asyncio.open_connection("127.0.0.1", client.listen_port)
            writer.write(b"after\n")
            assert await asyncio.wait_for(reader.readline(), LIMIT) == b"after\n"
            writer.close()
            assert client.stats.sessions == 2
            await client.close()
        await target.close()

    run(main())


def test_parse_targets() -> None:
    assert parse_targets("127.0.0.1:22, db:5432,[::1]:80") == [
        ("127.0.0.1", 22), ("db", 5432), ("::1", 80)]
    assert parse_target("[::1]:8080") == ("::1", 8080)
    for bad in ("nohost", ":80", "h:0", "h:70000", "h:x"):
        with pytest.raises(ValueError):
            parse_target(bad)
    service = TunnelService([("DB", 5432), ("h", 1)])
    assert service.resolve("db:5432") == ("DB", 5432)
    with pytest.raises(sessionlayer.Refuse, match="several"):
        service.resolve("")
    assert TunnelService([("h", 1)]).resolve("") == ("h", 1)
