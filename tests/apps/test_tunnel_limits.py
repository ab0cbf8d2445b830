"""The tunnel's limits on loopback: what its own applications do during an outage never
ends the session, a window past what the protocol can carry is a clear error, a
connection past ``max_streams`` is counted and logged (not one line each), and the docs
give the limits the code has."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import struct
from dataclasses import replace
from pathlib import Path

import pytest

from sessionlayer import Options, cli
from sessionlayer.apps.tunnel import (
    INITIAL_WINDOW,
    MAX_WINDOW,
    TunnelClient,
    TunnelService,
)

from .helpers import FAST, LIMIT, Target, echo, pattern, run, tunnel, until
from .test_tunnel import frame, raw_tunnel_session

KIB, MIB = 1 << 10, 1 << 20


class Records(logging.Handler):
    """The records of the ``sessionlayer`` logger (on it: a CLI test may have stopped it
    from propagating to pytest's handlers)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def __enter__(self) -> Records:
        logger = logging.getLogger("sessionlayer")
        self._level = logger.level
        logger.addHandler(self)
        if not logger.isEnabledFor(logging.WARNING):
            logger.setLevel(logging.WARNING)
        return self

    def __exit__(self, *exc: object) -> None:
        logger = logging.getLogger("sessionlayer")
        logger.removeHandler(self)
        logger.setLevel(self._level)


def reset(writer: asyncio.StreamWriter) -> None:
    """RST the connection (SO_LINGER 0, then abort)."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def test_connections_opened_and_reset_during_an_outage_leave_the_session_alone() -> None:
    """The link is blackholed and the journal full, so the tunnel's sender waits; an
    application (a health checker) opens and resets 60 connections meanwhile, far more
    control frames than the flood limit (4 x 4 + 64).  Their OPENs never went out: each
    is taken back with its reset.  The session and its two connections go on, byte for
    byte, once the link is back, and the server never heard of the 60."""
    options = replace(FAST, retention=256 * KIB, keepalive_interval=30.0, idle_timeout=90.0)
    bulk = pattern(21, 2 * MIB)  # (more than the journal holds)

    async def main() -> None:
        target = await Target(echo).start()
        async with tunnel(target.port, proxy_seed=3, options=options,
                          client_kwargs={"max_streams": 4}) as (client, service, _,
                                                                proxy):  # fmt: skip
            assert proxy is not None
            port = client.listen_port
            r0, w0 = await asyncio.open_connection("127.0.0.1", port)
            w0.write(b"before\n")
            assert await asyncio.wait_for(r0.readline(), LIMIT) == b"before\n"
            session = client.session
            assert session is not None
            proxy.cut("blackhole")
            rb, wb = await asyncio.open_connection("127.0.0.1", port)
            wb.write(bulk)  # (kept by the transport: it holds what it cannot send)
            journal = session._conn.journal
            assert journal is not None
            await until(lambda: journal.full)  # the sender now waits in send()
            for i in range(60):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                await until(lambda n=i: client.stats.opened >= 3 + n)
                reset(writer)
                await until(lambda n=i: client.stats.resets >= 1 + n)
                assert not session.closed, i
            assert client.session is session and client.stats.streams == 2
            proxy.heal()  # the blackholed connection is reset: the session resumes
            async with asyncio.timeout(LIMIT):
                w0.write(b"after\n")
                assert await r0.readline() == b"after\n"
                assert await rb.readexactly(len(bulk)) == bulk
            assert client.session is session and session.resumes >= 1
            assert service.stats.opened == 2 and service.stats.resets == 0
            stats = client.stats
            assert stats.opened == 62 and stats.resets == 60 and stats.streams == 2
            for writer in (w0, wb):
                writer.close()
        await target.close()

    run(main())


def test_a_window_past_what_a_credit_frame_carries_is_refused() -> None:
    for window in (MAX_WINDOW + 1, 4 << 30, 1 << 40):
        with pytest.raises(ValueError, match="window"):
            TunnelClient("127.0.0.1", 1, window=window)
        with pytest.raises(ValueError, match="window"):
            TunnelService([("127.0.0.1", 1)], window=window)


@pytest.mark.parametrize("kib", ["4194304", "8388608", "255", "-1", "x"])
def test_a_window_out_of_range_is_a_usage_error(
    kib: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["tunnel", "--listen", "1", "--via", "127.0.0.1:1", "--window", kib])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "argument --window" in err and "Traceback" not in err


def test_the_largest_window_works_and_no_credit_a_peer_grants_breaks_the_sender() -> None:
    """Both ends at MAX_WINDOW: the grant at open is the largest there is.  A raw peer then
    grants 4 GiB - 1 again and again: the server's sender goes on."""

    async def main() -> None:
        target = await Target(echo).start()
        largest = {"window": MAX_WINDOW}
        async with tunnel(target.port, service_kwargs=largest,
                          client_kwargs=largest) as (client, _, server, _):  # fmt: skip
            reader, writer = await asyncio.open_connection("127.0.0.1", client.listen_port)
            payload = pattern(5, 3 * INITIAL_WINDOW)
            writer.write(payload)
            assert await asyncio.wait_for(reader.readexactly(len(payload)), LIMIT) == payload
            writer.close()
            raw = await raw_tunnel_session(server.port)
            await raw.send(frame(b"O", 1))
            for _ in range(5):
                await raw.send(frame(b"W", 1, (MAX_WINDOW).to_bytes(4, "big")))
            await raw.send(frame(b"D", 1, b"ping\n"))
            await raw.send(frame(b"E", 1))
            got = bytearray()
            async with asyncio.timeout(LIMIT):
                while (message := await raw.receive())[:1] != b"E":
                    if message[:1] == b"D":
                        got += message[5:]
            assert bytes(got) == b"ping\n"
            await raw.release()
        await target.close()

    run(main())


def test_connections_past_max_streams_are_counted_and_logged_not_one_line_each() -> None:
    async def main() -> None:
        target = await Target(echo).start()
        async with tunnel(target.port, client_kwargs={"max_streams": 2}) as (client, service,
                                                                           _, _):  # fmt: skip
            client.refusals_logged_every = 3600.0  # (the rest are held back until close)
            held = []
            for i in range(2):
                reader, writer = await asyncio.open_connection("127.0.0.1", client.listen_port)
                writer.write(b"%d\n" % i)
                assert await asyncio.wait_for(reader.readline(), LIMIT) == b"%d\n" % i
                held.append(writer)
            with Records() as records:
                for _ in range(5):
                    reader, writer = await asyncio.open_connection("127.0.0.1",
                                                                   client.listen_port)  # fmt: skip
                    with pytest.raises(ConnectionResetError):
                        await asyncio.wait_for(reader.read(), LIMIT)
                    writer.close()
                lines = [line for line in records.lines if "max_streams" in line]
                assert lines == ["sessionlayer tunnel: 1 local connection reset: 2 tunnelled"
                                 " connections are open already (max_streams; 1 reset in"
                                 " all)"]  # fmt: skip
                stats = client.stats
                assert stats.failed == 5 and stats.streams == 2 and stats.opened == 2
                assert service.stats.opened == 2
                await client.close()  # what the rate limit held back is logged now
                lines = [line for line in records.lines if "max_streams" in line]
                assert len(lines) == 2 and lines[1].startswith(
                    "sessionlayer tunnel: 4 local connections reset") and "5 reset in all" in (
                    lines[1])  # fmt: skip
            assert client.stats.failed == 5
            for writer in held:
                writer.close()
        await target.close()

    run(main())


def test_the_docs_give_the_retention_the_options_have() -> None:
    text = (Path(__file__).parents[2] / "docs" / "tunnel.md").read_text()
    figures = re.findall(r"`Options\.retention` \((\d+) MiB\)", text)
    assert figures and {int(n) for n in figures} == {Options().retention // MIB}


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_session_per_connection_keeps_to_max_streams_too(loop: str) -> None:
    """``shared=False``: ``max_streams`` bounds the connections carried at once (it
    counted only those waiting for their session: 6 of 6 were carried with 2).  Past it a
    connection is reset and counted, as with one shared session; once one ends, a new one
    is carried."""

    async def main() -> None:
        target = await Target(echo).start()
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(target.close)
            client, service, server, _ = await stack.enter_async_context(
                tunnel(target.port, client_kwargs={"shared": False, "max_streams": 2}))
            held = []
            for i in range(2):
                reader, writer = await asyncio.open_connection("127.0.0.1", client.listen_port)
                writer.write(b"%d\n" % i)
                assert await asyncio.wait_for(reader.readline(), LIMIT) == b"%d\n" % i
                held.append((reader, writer))
            for _ in range(4):
                reader, writer = await asyncio.open_connection("127.0.0.1", client.listen_port)
                writer.write(b"one too many\n")
                with pytest.raises(ConnectionResetError):  # (carried: its echo comes)
                    await asyncio.wait_for(reader.readline(), LIMIT)
                writer.close()
            stats = client.stats
            assert stats.failed == 4 and stats.streams == 2 and stats.opened == 2, stats
            assert service.stats.opened == 2 and len(server.sessions) == 2
            reader, writer = held.pop()
            writer.write_eof()  # one ends: its session is released
            assert await asyncio.wait_for(reader.read(), LIMIT) == b""
            writer.close()
            await until(lambda: client.stats.streams == 1)
            reader, writer = await asyncio.open_connection("127.0.0.1", client.listen_port)
            writer.write(b"now\n")
            assert await asyncio.wait_for(reader.readline(), LIMIT) == b"now\n"
            held.append((reader, writer))
            assert client.stats.failed == 4 and service.stats.opened == 3
            for _, writer in held:
                writer.close()

    run(main(), loop=loop)
