"""``connect()``'s S-CONNECT path (``Connection.open``): the CN goes out in the read that
brought COTP CC, the request is made at once when the CC came before ``open``, and TCP
closing before the CC is a clear error.  On a fake transport (no sockets) where the order
of callbacks matters, over TCP otherwise."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from typing import Any

import pytest
from bench.setup_sides import FakeTransport, feed
from tests.rawpeer import RawPeer, raw_server

import sessionlayer
from sessionlayer import Options, SessionAborted
from sessionlayer.agent import Hello, SessionAgent
from sessionlayer.aio import fast_connect
from sessionlayer.aio.client import _CONFIG, _OPTIONS, RESUMABLE_CONFIG
from sessionlayer.aio.connection import Connection
from sessionlayer.aio.endpoint import Endpoint
from sessionlayer.machine import SessionMachine
from sessionlayer.spdu.types import ConnectionId
from sessionlayer.transport import ConnectRequested, Rfc1006Connection, TsduReceived

LIMIT = 4.0


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 9))  # type: ignore[arg-type]


class Transport(FakeTransport):
    """Keeps what is written; closing it is only noted (bench/setup_sides.py's)."""

    def __init__(self) -> None:
        super().__init__(peer=("127.0.0.1", 1))


def initiator() -> tuple[Connection, Transport, Rfc1006Connection]:
    """A client connection that sent its CR, and the responder's RFC 1006 end that read it."""
    agent = SessionAgent("initiator", options=Options(keepalive_interval=None))
    conn = Connection(agent, Endpoint(agent.options))
    transport = Transport()
    conn.connection_made(transport)
    peer = Rfc1006Connection("responder")
    assert [type(e) for e in peer.receive_data(transport.out.pop())] == [ConnectRequested]
    return conn, transport, peer


def request(machine: SessionMachine) -> None:
    machine.connect(user_data=Hello().encode(), connection_id=ConnectionId(common_ref=b"r"))


def cn_in(peer: Rfc1006Connection, written: list[bytes]) -> bool:
    events = [e for data in written for e in peer.receive_data(data)]
    return len(events) == 1 and isinstance(events[0], TsduReceived) and (
        events[0].data[0] == 0x0D  # SI 13: CONNECT
    )


def test_the_cn_goes_out_in_the_read_that_brought_the_cc() -> None:
    async def main() -> None:
        conn, transport, peer = initiator()
        waiting = asyncio.ensure_future(conn.open(request))
        await asyncio.sleep(0)  # open() waits for the CC
        assert transport.out == []
        feed(conn, peer.accept())
        assert cn_in(peer, transport.out)  # no loop iteration in between
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting

    run(main())


def test_open_after_the_cc_came_sends_the_cn_at_once() -> None:
    async def main() -> None:
        conn, transport, peer = initiator()
        feed(conn, peer.accept())
        assert transport.out == []
        waiting = asyncio.ensure_future(conn.open(request))
        await asyncio.sleep(0)
        assert cn_in(peer, transport.out)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting

    run(main())


def test_open_fails_with_connection_error_when_tcp_closed_before_the_cc() -> None:
    async def main() -> None:
        for before in (True, False):  # closed before open(), or while it waits
            conn, transport, _ = initiator()
            if before:
                conn.connection_lost(None)
            waiting = asyncio.ensure_future(conn.open(request))
            await asyncio.sleep(0)
            if not before:
                conn.connection_lost(None)
            with pytest.raises(ConnectionError):
                await waiting
            assert transport.out == []

    run(main())


def test_a_request_that_raises_fails_open() -> None:
    async def main() -> None:
        conn, _, peer = initiator()

        def bad(machine: SessionMachine) -> None:
            raise sessionlayer.LocalError("no")

        waiting = asyncio.ensure_future(conn.open(bad))
        await asyncio.sleep(0)
        feed(conn, peer.accept())
        with pytest.raises(sessionlayer.LocalError, match="no"):
            await waiting

    run(main())


def test_a_bug_in_connection_made_is_logged_and_the_connection_dropped(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An exception of ours in ``connection_made`` does not reach asyncio's handler: it is
    logged as an internal error and the transport is aborted."""

    def broken(self: SessionAgent, now: float, *tsaps: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(SessionAgent, "connection_made", broken)

    async def main() -> None:
        agent = SessionAgent("initiator", options=Options(keepalive_interval=None))
        conn = Connection(agent, Endpoint(agent.options))
        transport = Transport()
        conn.connection_made(transport)
        assert transport.closing

    run(main())
    assert any("internal error" in r.getMessage() and r.exc_info for r in caplog.records)


@pytest.mark.parametrize("fast", [False, True])
def test_a_responder_that_is_not_rfc_1006_gets_one_clear_error(
    caplog: pytest.LogCaptureFixture, fast: bool
) -> None:
    """An HTTP server (or a TLS one) answering the COTP CR: connect() says what came and
    what it may mean, and nothing else is logged beside it; also where a sessionlayer
    server took a fast connect on that port before (the CN went right behind the CR: the
    suite met it when a port came round again, and a WARNING was logged)."""

    async def main() -> None:
        async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(100)
            writer.write(b"HTTP/1.0 400 Bad Request\r\n\r\n")
            await reader.read(100)  # (until the client closes)
            writer.close()

        server = await asyncio.start_server(http, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        if fast:
            fast_connect.learn("127.0.0.1", port, False, True)
        async with server:
            with pytest.raises(SessionAborted, match=r"not RFC 1006 / COTP \(transport "
                               r"protocol error: TPKT version 72.*does it expect TLS"):
                await sessionlayer.connect("127.0.0.1", port)

    run(main())
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_responder_that_closes_on_the_cr_gets_a_clear_error() -> None:
    async def main() -> None:
        async def closes(raw: RawPeer) -> None:
            assert isinstance(await raw.next(), ConnectRequested)
            raw.writer.close()

        async with raw_server(closes) as port:
            with pytest.raises(SessionAborted, match="without answering the COTP CR"):
                await sessionlayer.connect("127.0.0.1", port)

    run(main())


@pytest.mark.parametrize("fast", [False, True])
def test_a_malformed_spdu_that_comes_with_the_cc_is_the_error_said(
    caplog: pytest.LogCaptureFixture, fast: bool
) -> None:
    """CC and a DT TPDU with a broken SPDU in one read: connect() fails with the protocol
    error found, and the responder gets an AB.  Before, without a fast connect, the
    S-CONNECT request was made after the abort and the error was "SCONreq is not allowed
    in state STA16"."""
    got: list[bytes] = []

    async def main() -> None:
        read_all = asyncio.Event()

        async def answers_garbage(raw: RawPeer) -> None:
            assert isinstance(await raw.next(), ConnectRequested)
            raw.writer.write(raw.rfc.accept() + raw.rfc.send_tsdu(b"\xff\xff\xff\xff"))
            try:
                with contextlib.suppress(EOFError, ConnectionError):
                    while True:
                        got.append(await raw.tsdu())
            finally:
                read_all.set()

        async with raw_server(answers_garbage) as port:
            if fast:
                fast_connect.learn("127.0.0.1", port, False, True)
            with pytest.raises(SessionAborted, match="SI 255 claims 65535") as caught:
                await sessionlayer.connect("127.0.0.1", port)
            assert caught.value.reason == 0x05 and not caught.value.by_peer
            await read_all.wait()  # (the client closed the connection)

    run(main())
    assert got[-1][0] == 25  # SI 25: the AB (after the CN, with a fast connect)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_connect_without_options_or_config_uses_the_defaults() -> None:
    assert Options() == _OPTIONS
    assert sessionlayer.SessionConfig() == _CONFIG

    async def main() -> None:
        async def handler(session: sessionlayer.Session) -> None:
            async for data in session:
                await session.send(data)

        async with await sessionlayer.serve(handler) as server:
            session = await sessionlayer.connect("127.0.0.1", server.port)
            # (a resumable session's default: symmetric synchronize added, see recovery.md)
            assert session.machine.config is RESUMABLE_CONFIG
            assert session.resumable
            await session.send(b"x")
            assert await asyncio.wait_for(session.receive(), LIMIT) == b"x"
            await session.release()

    run(main())


# ---------------------------------------------------------------- the one timer of connect()


def mute_after_cc() -> Any:
    async def no_accept(raw: RawPeer) -> None:
        assert isinstance(await raw.next(), ConnectRequested)
        raw.writer.write(raw.rfc.accept())  # CC, then the CN is never answered
        await raw.closed()

    return raw_server(no_accept)


def test_the_handshake_gets_its_own_time_after_a_shorter_connect_timeout() -> None:
    async def main() -> None:
        async with mute_after_cc() as port:
            opts = Options(connect_timeout=0.1, handshake_timeout=0.5)
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                await sessionlayer.connect("127.0.0.1", port, options=opts)
            assert 0.5 <= time.monotonic() - started < 0.5 + 1.0

    run(main())


def test_a_cancelled_connect_is_cancelled_not_timed_out() -> None:
    async def main() -> None:
        async with mute_after_cc() as port:
            opts = Options(connect_timeout=LIMIT, handshake_timeout=LIMIT)
            task = asyncio.ensure_future(sessionlayer.connect("127.0.0.1", port, options=opts))
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    run(main())


def test_no_timer_outlives_a_connect() -> None:
    """The task that connected is not cancelled when connect()'s time limits pass later."""

    async def main() -> None:
        async def handler(session: sessionlayer.Session) -> None:
            async for _ in session:
                pass

        async with await sessionlayer.serve(handler) as server:
            opts = Options(connect_timeout=0.1, handshake_timeout=0.2, keepalive_interval=None)
            session = await sessionlayer.connect("127.0.0.1", server.port, options=opts)
            await asyncio.sleep(0.4)  # past both limits
            session.abort()
            # A connect whose handshake times out leaves no cancellation behind either.
            with pytest.raises(TimeoutError):
                await sessionlayer.connect("127.0.0.1", server.port, options=Options(
                    connect_timeout=0.1, handshake_timeout=1e-6))  # fmt: skip
            await asyncio.sleep(0.3)

    run(main())


# ---------------------------------------------------------------- what a client session keeps


def test_client_connections_share_an_endpoint_and_keep_no_waiters() -> None:
    async def main() -> None:
        async def handler(session: sessionlayer.Session) -> None:
            async for _ in session:
                pass

        async with await sessionlayer.serve(handler) as server:
            opts = Options(keepalive_interval=None)
            a = await sessionlayer.connect("127.0.0.1", server.port, options=opts)
            b = await sessionlayer.connect("127.0.0.1", server.port, options=opts)
            traced: list[tuple[str, bytes]] = []
            c = await sessionlayer.connect("127.0.0.1", server.port, options=opts,
                                           trace=lambda d, o: traced.append((d, o)))  # fmt: skip
            d = await sessionlayer.connect("127.0.0.1", server.port, options=opts,
                                           called_tsel=b"\x00\x01")  # fmt: skip
            ends = [s._conn._ep for s in (a, b, c, d)]
            assert ends[0] is ends[1]  # same loop, options, selectors, no tap
            assert ends[2] is not ends[0] and ends[2].tap is not None and traced
            assert ends[3] is not ends[0] and ends[3].tsaps == (None, b"\x00\x01")
            for s in (a, b, c, d):
                x = s._conn._x
                assert x is None or (x.waiters is None and x.connecting is None)
                s.abort()

    run(main())


def test_a_connect_cancelled_once_its_cn_is_answered_aborts_the_servers_session() -> None:
    """connect() cancelled in the read that brings the AC (the server's session is live,
    the client never took its token): the client sends an AB before it closes, and the
    server's session ends at once (a reset left it detached, waiting resume_timeout for a
    resume nobody can make)."""

    async def main() -> None:
        ended: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

        async def handler(session: sessionlayer.Session) -> None:
            try:
                async for _ in session:
                    pass
                ended.set_result(None)
            except SessionAborted as exc:
                ended.set_result(exc)

        async with await sessionlayer.serve(handler) as server:
            task: asyncio.Task[sessionlayer.Session] | None = None

            def trace(direction: str, data: bytes) -> None:
                if direction == "in" and server.stats.accepted and task is not None:
                    task.cancel()  # (the AC is in this read: cancelled before it is taken)

            task = asyncio.ensure_future(
                sessionlayer.connect("127.0.0.1", server.port, trace=trace))
            with pytest.raises(asyncio.CancelledError):
                await task
            outcome = await asyncio.wait_for(ended, LIMIT)
            assert isinstance(outcome, SessionAborted) and outcome.by_peer, outcome
            assert server.detached == [] and server.sessions == []

    run(main())
