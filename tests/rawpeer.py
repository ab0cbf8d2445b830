"""A peer driven by hand from a test: RFC 1006 and X.225 through the sans-I/O cores
(``Rfc1006Connection``, ``SessionMachine``), over a real TCP connection, so a test can make
it stop doing its part or send what no sessionlayer peer would."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from sessionlayer import SessionConfig
from sessionlayer.agent.hello import Hello, Welcome
from sessionlayer.machine import ConnectConfirm, ConnectIndication, SessionMachine
from sessionlayer.transport import (
    ConnectRequested,
    Rfc1006Connection,
    TransportConnected,
    TransportEvent,
    TsduReceived,
)

__all__ = ["RawPeer", "raw_server", "accept_session"]


class RawPeer:
    """One end of an RFC 1006 connection driven by hand from a test."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 role: str, *, expedited: bool = False) -> None:  # fmt: skip
        self.reader = reader
        self.writer = writer
        self.rfc = Rfc1006Connection(role, expedited=expedited)  # type: ignore[arg-type]
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
    handler: Callable[[RawPeer], Awaitable[None]], *, expedited: bool = False
) -> AsyncIterator[int]:
    """A TCP server running ``handler`` on each connection; yields its port."""
    tasks: set[asyncio.Task[None]] = set()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            with contextlib.suppress(EOFError, ConnectionError):
                await handler(RawPeer(reader, writer, "responder", expedited=expedited))
        finally:
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


async def accept_session(raw: RawPeer, config: SessionConfig | None = None,
                         user_data: bytes | None = None) -> SessionMachine:  # fmt: skip
    """Answer CR with CC and the CN with an AC, as a sessionlayer responder would (or, with
    ``user_data``, as an OSI responder that answers with those octets)."""
    assert isinstance(await raw.next(), ConnectRequested)
    raw.writer.write(raw.rfc.accept())
    machine = SessionMachine("responder", config)
    machine.transport_connected(expedited=raw.rfc.expedited)
    machine.receive_tsdu(await raw.tsdu(), now=0.0)
    assert isinstance(machine.next_event(), ConnectIndication)
    if user_data is None:
        user_data = Welcome(keepalive=False).encode()
    machine.accept(user_data=user_data)
    for tsdu in machine.data_to_send():
        raw.send_tsdu(tsdu)
    return machine
