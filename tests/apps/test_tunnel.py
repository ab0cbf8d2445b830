"""The TCP tunnel (sessionlayer.apps.tunnel) on loopback: real TCP everywhere, the fault
proxy between the tunnel's client and server.  What goes in one end of a tunnelled TCP
connection comes out of the other byte for byte, whatever happens to the link under the
session; half-close is carried; a slow stream holds up no other; refusals are resets."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import struct

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


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_half_close_is_carried_both_ways(loop: str) -> None:
    """(On both loops: uvloop's transports are not asyncio.Transport subclasses.)  The
    application half-closes first and still reads the answer; then the target
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

    run(main(), loop=loop)


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


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_at_most_max_streams_per_session(loop: str) -> None:
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

    run(main(), loop=loop)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_session_per_connection_works_too(loop: str) -> None:
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

    run(main(), loop=loop)


def test_a_session_per_connection_knows_at_start_a_server_that_is_not_there() -> None:
    """``shared=False`` (``--per-connection``) opened no session at start: a server that is
    not there, or refuses, was found out by every connection, each reset, the command
    running on as if all were well."""

    async def main() -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            closed = sock.getsockname()[1]  # (bound, not listening: refused)
            client = TunnelClient("127.0.0.1", closed, shared=False, options=FAST)
            with pytest.raises(TunnelError, match=f"cannot reach 127.0.0.1:{closed}"):
                await client.start()
            await client.close()

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
    # ("[::1]22" was port 22; "h:²" Python's "invalid literal for int()"; "h:\u0663" 3)
    for bad in ("nohost", ":80", "h:0", "h:70000", "h:x", "[::1]22", "[::1", "h:\u00b2",
                "h:\u0663"):  # fmt: skip
        with pytest.raises(ValueError, match="not HOST:PORT"):
            parse_target(bad)
    # (an IPv6 address not in brackets: "2001:db8::22" was the target ("2001:db8:", 22))
    for bad in ("2001:db8::22", "fe80::1", "::1:8080", "::1"):
        with pytest.raises(ValueError, match=r"not HOST:PORT: .* \(write an IPv6 one as"):
            parse_target(bad)
    for bad in ("[::1]:22,", ",h:1", "h:1,,h:2", "h:1, ", ""):  # (a list: entries are not optional)
        with pytest.raises(ValueError, match="an empty entry"):
            parse_targets(bad)
    service = TunnelService([("DB", 5432), ("h", 1)])
    assert service.resolve("db:5432") == ("DB", 5432)
    with pytest.raises(sessionlayer.Refuse, match="several"):
        service.resolve("")
    assert TunnelService([("h", 1)]).resolve("") == ("h", 1)


def test_a_target_the_server_does_not_serve_is_refused_at_connect() -> None:
    """A TunnelClient names its target in the connect request, and the service's check
    (what ``sessionlayer serve --allow-tunnel`` runs on every connect) refuses a target it
    does not allow, or none where it allows several: one clear error at start, not a
    listener whose every connection is reset (docs/tunnel.md, ``--to``)."""

    async def main() -> None:
        async with await sessionlayer.serve(service.handle, supported={"service": ["tunnel"]},
                                            authenticate=service.check,  # (as it is: True)
                                            options=FAST) as server:  # fmt: skip
            for to, why in ((None, "allows several"), ("127.0.0.1:1", "not an allowed")):
                client = TunnelClient("127.0.0.1", server.port, to, options=FAST)
                with pytest.raises(TunnelError, match=f"refused the tunnel: .*{why}"):
                    await client.start()
                await client.close()
            client = TunnelClient("127.0.0.1", server.port, "127.0.0.1:2", options=FAST)
            await client.start()  # (an allowed one: the session opens)
            await client.close()

    service = TunnelService([("127.0.0.1", 2), ("127.0.0.1", 3)])
    run(main())


async def raw_tunnel_session(port: int) -> sessionlayer.Session:
    """A session speaking the tunnel's frames by hand (docs/tunnel.md, "Framing")."""
    return await sessionlayer.connect("127.0.0.1", port, offers={"service": ["tunnel"]},
                                      options=FAST)  # fmt: skip


def frame(kind: bytes, sid: int, payload: bytes = b"") -> bytes:
    return kind + sid.to_bytes(4, "big") + payload


def test_the_frames_on_the_wire_and_data_sent_before_the_target_answered() -> None:
    """O, D and E in one go (the server holds the data until the target accepted); the
    echo comes back as K, D..., E; credit is granted back with W."""

    async def main() -> None:
        target = await Target(echo).start()
        service = TunnelService([("127.0.0.1", target.port)])
        async with await sessionlayer.serve(service.handle, supported={"service": ["tunnel"]},
                                            options=FAST) as server:  # fmt: skip
            raw = await raw_tunnel_session(server.port)
            payload = pattern(4, 200_000)
            await raw.send(frame(b"O", 1, f"127.0.0.1:{target.port}".encode()))
            for i in range(0, len(payload), 50_000):
                await raw.send(frame(b"D", 1, payload[i:i + 50_000]))
            await raw.send(frame(b"E", 1))
            kinds: list[bytes] = []
            got = bytearray()
            async with asyncio.timeout(LIMIT):
                while not kinds or kinds[-1] != b"E":
                    message = await raw.receive()
                    assert message[1:5] == (1).to_bytes(4, "big")
                    kinds.append(message[:1])
                    if message[:1] == b"D":
                        got += message[5:]
            assert kinds.index(b"K") < kinds.index(b"D") and bytes(got) == payload
            assert kinds[0] == b"W"  # (at open: the window past the protocol's 256 KiB)
            # Frames for a stream that is gone, or never was, are dropped.
            await raw.send(frame(b"W", 1, (5).to_bytes(4, "big")))
            await raw.send(frame(b"R", 9, b"nothing"))
            await raw.send(frame(b"E", 9))
            await raw.send(frame(b"D", 9, b"x"))
            await raw.send(frame(b"W", 9, b"bad"))
            # A stream whose sender ignores its credit is reset.
            await raw.send(frame(b"O", 2, f"127.0.0.1:{target.port}".encode()))
            big = b"y" * 65536
            for _ in range(20):  # 1.25 MiB: past the 1 MiB window
                await raw.send(frame(b"D", 2, big))
            async with asyncio.timeout(LIMIT):
                while (message := await raw.receive())[:1] != b"R":
                    pass
            assert message[1:5] == (2).to_bytes(4, "big") and b"credit" in message[5:]
            await raw.release()
        await target.close()

    run(main())


@pytest.mark.parametrize("bad", [b"Dxx", frame(b"Z", 1), "twice"])
def test_a_frame_that_breaks_the_protocol_aborts_the_session(bad: bytes | str) -> None:
    async def main() -> None:
        target = await Target(echo).start()
        service = TunnelService([("127.0.0.1", target.port)])
        async with await sessionlayer.serve(service.handle, supported={"service": ["tunnel"]},
                                            options=FAST) as server:  # fmt: skip
            raw = await raw_tunnel_session(server.port)
            if bad == "twice":
                await raw.send(frame(b"O", 3, b""))
                await raw.send(frame(b"O", 3, b""))
            else:
                assert isinstance(bad, bytes)
                await raw.send(bad)
            with pytest.raises(sessionlayer.SessionAborted):
                async with asyncio.timeout(LIMIT):
                    while True:
                        await raw.receive()
        await target.close()

    run(main())


def test_a_reset_by_the_application_resets_the_target_connection() -> None:
    resets: list[str] = []

    async def reads_until_reset(reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> None:  # fmt: skip
        writer.write(b"ready\n")
        try:
            while await reader.read(65536):
                pass
            resets.append("eof")
        except ConnectionResetError:
            resets.append("reset")

    async def main() -> None:
        target = await Target(reads_until_reset).start()
        async with tunnel(target.port) as (client, service, _, _):
            reader, writer = await asyncio.open_connection("127.0.0.1", client.listen_port)
            assert await asyncio.wait_for(reader.readline(), LIMIT) == b"ready\n"
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()  # RST
            await until(lambda: bool(resets))
            assert resets == ["reset"]
            await until(lambda: service.stats.resets == 1 and client.stats.resets == 1)
            assert client.stats.as_dict()["opened"] == 1
        await target.close()

    run(main())


def test_a_service_without_targets_refuses_tunnel_sessions() -> None:
    with pytest.raises(sessionlayer.Refuse, match="allows no tunnel"):
        TunnelService([]).check(None)  # type: ignore[arg-type]
    assert TunnelService([("h", 1)]).progress("no such session") is None
    with pytest.raises(ValueError):
        TunnelClient("127.0.0.1", 1, "not a target")


def test_after_its_session_ends_the_tunnel_opens_a_new_one_for_new_connections() -> None:
    """The server goes away (its sessions aborted): a connection made meanwhile is reset
    (the server cannot be reached); once the server is back, the next one is carried by a
    new session."""

    async def main() -> None:
        target = await Target(echo).start()
        service = TunnelService([("127.0.0.1", target.port)])
        tunnel_only = {"service": ["tunnel"]}
        first = await sessionlayer.serve(service.handle, supported=tunnel_only, options=FAST)
        port = first.port
        async with TunnelClient("127.0.0.1", port, options=FAST) as client:
            await client.start()
            first.close()
            await first.wait_closed()
            await until(lambda: client.session is None)
            reader, writer = await asyncio.open_connection("127.0.0.1", client.listen_port)
            with pytest.raises(ConnectionResetError):
                await asyncio.wait_for(reader.read(), LIMIT)
            writer.close()
            async with await sessionlayer.serve(service.handle, port=port, options=FAST,
                                                supported=tunnel_only):  # fmt: skip
                reader, writer = await asyncio.open_connection("127.0.0.1", client.listen_port)
                writer.write(b"back\n")
                assert await asyncio.wait_for(reader.readline(), LIMIT) == b"back\n"
                writer.close()
                assert client.stats.sessions == 2
        await target.close()

    run(main())
