"""Timeouts and limits over real TCP on loopback, against misbehaving raw-socket peers.

The peers here speak RFC 1006 and X.225 through the sans-I/O cores
(``Rfc1006Connection``, ``SessionMachine``) and then stop doing their part: they never
accept, never answer the CR, the CN or the FN, send a TSDU that is too big, or send an
SPDU that is not one.  Nothing sleeps: each test waits for the error, the bytes or the
end of the connection it expects.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

import sessionlayer
from sessionlayer import Options, SessionAborted, SessionConfig
from sessionlayer.aio.hello import Hello, Welcome
from sessionlayer.errors import AbortReason
from sessionlayer.machine import ConnectConfirm, ConnectIndication, SessionMachine
from sessionlayer.spdu import decode_tsdu
from sessionlayer.spdu.types import Abort, Finish
from sessionlayer.transport import (
    ConnectRequested,
    Rfc1006Connection,
    TransportConnected,
    TransportEvent,
    TsduReceived,
)

LIMIT = 4.0  # every wait in this file is bounded well under the 10 s a test may take


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 9))  # type: ignore[arg-type]


async def echo(session: sessionlayer.Session) -> None:
    async for data in session:
        await session.send(data)


class RawPeer:
    """One end of an RFC 1006 connection driven by hand from a test."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 role: str) -> None:  # fmt: skip
        self.reader = reader
        self.writer = writer
        self.rfc = Rfc1006Connection(role)  # type: ignore[arg-type]
        self.pending: collections.deque[TransportEvent] = collections.deque()

    async def next(self) -> TransportEvent:
        while not self.pending:
            data = await self.reader.read(65536)
            if not data:
                raise EOFError("the peer closed the connection")
            self.pending.extend(self.rfc.receive_data(data))
        return self.pending.popleft()

    async def tsdu(self) -> bytes:
        event = await self.next()
        assert isinstance(event, TsduReceived), event
        return event.data

    def send_tsdu(self, tsdu: bytes) -> None:
        self.writer.write(self.rfc.send_tsdu(tsdu))

    async def closed(self) -> bool:
        """Read until EOF (or a reset); True once the other side closed."""
        with contextlib.suppress(ConnectionError):
            while await self.reader.read(65536):
                pass
        return True

    @classmethod
    async def client(cls, port: int) -> tuple[RawPeer, SessionMachine]:
        """A raw initiator that completed CR/CC and CN/AC with a sessionlayer server."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        raw = cls(reader, writer, "initiator")
        writer.write(raw.rfc.connect())
        assert isinstance(await raw.next(), TransportConnected)
        machine = SessionMachine("initiator")
        machine.transport_connected()
        machine.connect(user_data=Hello().encode())
        for tsdu in machine.data_to_send():
            raw.send_tsdu(tsdu)
        machine.receive_tsdu(await raw.tsdu(), now=0.0)
        assert isinstance(machine.next_event(), ConnectConfirm)
        return raw, machine


@contextlib.asynccontextmanager
async def raw_server(
    handler: Callable[[RawPeer], Awaitable[None]],
) -> AsyncIterator[int]:
    """A TCP server running ``handler`` on each connection; yields its port."""
    tasks: set[asyncio.Task[None]] = set()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        with contextlib.suppress(EOFError, ConnectionError):
            await handler(RawPeer(reader, writer, "responder"))
        writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


async def accept_session(raw: RawPeer) -> SessionMachine:
    """Answer CR with CC and the CN with an AC, as a sessionlayer responder would."""
    assert isinstance(await raw.next(), ConnectRequested)
    raw.writer.write(raw.rfc.accept())
    machine = SessionMachine("responder")
    machine.transport_connected()
    machine.receive_tsdu(await raw.tsdu(), now=0.0)
    assert isinstance(machine.next_event(), ConnectIndication)
    machine.accept(user_data=Welcome(keepalive=False).encode())
    for tsdu in machine.data_to_send():
        raw.send_tsdu(tsdu)
    return machine


# ---------------------------------------------------------------- connect and handshake


def test_connect_to_a_backlog_nobody_accepts_times_out() -> None:
    """A listening socket that never calls accept(): the kernel completes the TCP
    handshake for the first connection (its CR then goes unanswered: handshake timeout)
    and drops the SYNs of the next ones once the backlog is full (connect timeout)."""

    async def main() -> None:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        opts = Options(connect_timeout=0.3, handshake_timeout=0.3)
        try:
            for _ in range(3):
                started = time.monotonic()
                with pytest.raises(TimeoutError):
                    await sessionlayer.connect("127.0.0.1", port, options=opts)
                assert time.monotonic() - started < 0.3 + 1.0
        finally:
            listener.close()

    run(main())


def test_server_that_never_answers_the_cr() -> None:
    async def main() -> None:
        gone: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

        async def mute(raw: RawPeer) -> None:
            assert isinstance(await raw.next(), ConnectRequested)  # and never a CC
            gone.set_result(await raw.closed())

        async with raw_server(mute) as port:
            opts = Options(connect_timeout=LIMIT, handshake_timeout=0.3)
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                await sessionlayer.connect("127.0.0.1", port, options=opts)
            assert 0.3 <= time.monotonic() - started < 0.3 + 1.0
            assert await asyncio.wait_for(gone, LIMIT)  # the client hung up

    run(main())


def test_handshake_timeout_when_the_cn_is_never_answered() -> None:
    async def main() -> None:
        gone: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        seen: list[bytes] = []

        async def no_accept(raw: RawPeer) -> None:
            assert isinstance(await raw.next(), ConnectRequested)
            raw.writer.write(raw.rfc.accept())  # CC ...
            seen.append(await raw.tsdu())  # ... but the CN gets no AC
            gone.set_result(await raw.closed())

        async with raw_server(no_accept) as port:
            opts = Options(connect_timeout=LIMIT, handshake_timeout=0.3)
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                await sessionlayer.connect("127.0.0.1", port, options=opts)
            assert time.monotonic() - started < 0.3 + 1.0
            assert await asyncio.wait_for(gone, LIMIT)
        (cn,) = decode_tsdu(seen[0])
        assert cn.kind == "CN"

    run(main())


# ---------------------------------------------------------------- release


def test_release_timeout_aborts_the_session() -> None:
    async def main() -> None:
        received: list[Any] = []
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def deaf_to_fn(raw: RawPeer) -> None:
            await accept_session(raw)
            with contextlib.suppress(EOFError):
                while True:
                    received.extend(decode_tsdu(await raw.tsdu()))
            done.set_result(None)

        async with raw_server(deaf_to_fn) as port:
            opts = Options(release_timeout=0.3)
            session = await sessionlayer.connect("127.0.0.1", port, options=opts)
            started = time.monotonic()
            with pytest.raises(SessionAborted) as info:
                await session.release()
            assert 0.3 <= time.monotonic() - started < 0.3 + 1.0
            assert "release timeout" in str(info.value)
            assert session.state == "aborted"
            with pytest.raises(SessionAborted, match="release timeout"):
                await session.receive()
            await asyncio.wait_for(done, LIMIT)
        # On the wire: FN, then (no DN came) AB with Transport Disconnect "user abort".
        assert [type(s) for s in received] == [Finish, Abort]
        assert received[1].transport_disconnect & AbortReason.USER_ABORT

    run(main())


# ---------------------------------------------------------------- limits and bad peers


def test_tsdu_above_the_limit_aborts_only_that_session(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        outcomes: dict[str, BaseException | None] = {}
        ended = asyncio.Event()

        async def handler(session: sessionlayer.Session) -> None:
            try:
                await echo(session)
                outcomes[session.id] = None
            except SessionAborted as exc:
                outcomes[session.id] = exc
                ended.set()
                raise

        server_opts = Options(max_tsdu_size=4096)
        async with await sessionlayer.serve(handler, options=server_opts) as server:
            good = await sessionlayer.connect("127.0.0.1", server.port)
            bad = await sessionlayer.connect("127.0.0.1", server.port)
            await good.send(b"a" * 4000)  # under the limit (with its SPDU header)
            assert await good.receive() == b"a" * 4000
            await bad.send(b"b" * 5000)  # over it
            with pytest.raises(SessionAborted) as refused:
                await bad.receive()
            # The server said why, in an AB SPDU: implementation restriction.
            assert refused.value.reason & AbortReason.IMPLEMENTATION_RESTRICTION
            await asyncio.wait_for(ended.wait(), LIMIT)
            assert isinstance(outcomes[bad.id], SessionAborted)
            # The other session carries on.
            await good.send(b"still here")
            assert await good.receive() == b"still here"
            assert [info.id for info in server.sessions] == [good.id]
            await good.release()
        records = [r for r in caplog.records if getattr(r, "session_id", None) == bad.id]
        assert any("TSDU" in r.getMessage() and bad.id in r.getMessage() for r in records)

    with caplog.at_level(logging.INFO, logger="sessionlayer"):
        run(main())


def test_malformed_spdu_gets_an_abort_on_the_wire(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        ids: list[str] = []

        async def handler(session: sessionlayer.Session) -> None:
            ids.append(session.id)
            await echo(session)

        config = SessionConfig(abort_timeout=0.5)  # TIM: the server hangs up after 0.5 s
        async with await sessionlayer.serve(handler, config=config) as server:
            good = await sessionlayer.connect("127.0.0.1", server.port)
            raw, _ = await RawPeer.client(server.port)
            assert len(server.sessions) == 2
            # A DATA TRANSFER SPDU whose length says 5 parameter octets; 1 follows.
            raw.send_tsdu(b"\x01\x05\x00")
            (ab,) = decode_tsdu(await asyncio.wait_for(raw.tsdu(), LIMIT))
            assert isinstance(ab, Abort)
            assert ab.transport_disconnect is not None
            assert ab.transport_disconnect & AbortReason.PROTOCOL_ERROR
            assert ab.transport_disconnect & AbortReason.TRANSPORT_RELEASED
            assert ab.reflect == b"\x01\x05\x00"
            assert await asyncio.wait_for(raw.closed(), LIMIT)  # TIM released the transport
            raw.writer.close()
            # The other session carries on.
            await good.send(b"unharmed")
            assert await good.receive() == b"unharmed"
            assert [info.id for info in server.sessions] == [good.id]
            await good.release()
        bad_id = next(i for i in ids if i != good.id)
        records = [r for r in caplog.records if getattr(r, "session_id", None) == bad_id]
        assert any(
            r.levelno == logging.WARNING and "protocol error" in r.getMessage()
            and bad_id in r.getMessage()
            for r in records
        )  # fmt: skip

    with caplog.at_level(logging.INFO, logger="sessionlayer"):
        run(main())


def test_session_log_lines_carry_the_session_id(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> str:
        async with await sessionlayer.serve(echo) as server:
            async with await sessionlayer.connect("127.0.0.1", server.port) as session:
                await session.send(b"x")
                await session.receive()
            return session.id

    with caplog.at_level(logging.DEBUG, logger="sessionlayer"):
        sid = run(main())
    about = [r for r in caplog.records if getattr(r, "session_id", None) == sid]
    assert about, caplog.records
    assert all(sid in r.getMessage() for r in about)
    assert any("accepted" in r.getMessage() for r in about)
