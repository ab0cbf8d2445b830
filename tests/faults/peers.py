"""Plain TCP peers for the fault tools' own tests: a recording protocol and a target server.

`Recorder` keeps every byte it receives and how its connection ended: "eof" (FIN from the
peer), "reset" (RST), "closed" (closed from this side), or None while open. Protocol-level
(not streams) so that the bytes that arrived before a reset are all seen.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from types import TracebackType


class Recorder(asyncio.Protocol):
    """Records what arrives; `echo` sends it back; `pause` stops reading from the start;
    `keep_open` leaves the connection half-open on EOF instead of closing it."""

    def __init__(self, *, echo: bool = False, pause: bool = False, keep_open: bool = False):
        self.echo = echo
        self.pause = pause
        self.keep_open = keep_open
        self.data = bytearray()
        self.end: str | None = None
        self.transport: asyncio.Transport | None = None
        self._changed = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.pause:
            transport.pause_reading()
        self._changed.set()

    def data_received(self, data: bytes) -> None:
        self.data += data
        if self.echo and self.transport is not None:
            self.transport.write(data)
        self._changed.set()

    def eof_received(self) -> bool:
        self.end = "eof"
        self._changed.set()
        return self.keep_open

    def connection_lost(self, exc: Exception | None) -> None:
        if isinstance(exc, ConnectionResetError):
            self.end = "reset"
        elif self.end is None:
            self.end = "closed" if exc is None else type(exc).__name__
        self._changed.set()

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    async def until(self, done: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until `done()` holds (it is checked after every event)."""
        async with asyncio.timeout(timeout):
            while not done():
                self._changed.clear()
                await self._changed.wait()

    async def ended(self, timeout: float = 5.0) -> str:
        """Wait for the end of the connection; returns how it ended."""
        await self.until(lambda: self.end is not None, timeout)
        assert self.end is not None
        return self.end

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


async def connect(port: int, **options: bool) -> Recorder:
    """A recording client connected to 127.0.0.1:`port`."""
    loop = asyncio.get_running_loop()
    _, peer = await loop.create_connection(lambda: Recorder(**options), "127.0.0.1", port)
    return peer


class Target:
    """A TCP server on 127.0.0.1 whose connections are `Recorder`s, in `peers` (accept
    order). `async with Target(echo=True) as target: target.port`."""

    def __init__(self, **options: bool) -> None:
        self.options = options
        self.peers: list[Recorder] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._changed = asyncio.Event()

    def _make(self) -> Recorder:
        peer = Recorder(**self.options)
        self.peers.append(peer)
        self._changed.set()
        return peer

    async def __aenter__(self) -> Target:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._make, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for peer in self.peers:
            peer.abort()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), 5)

    async def peer(self, index: int, timeout: float = 5.0) -> Recorder:
        """The `index`-th accepted connection (0-based), once it exists."""
        async with asyncio.timeout(timeout):
            while len(self.peers) <= index:
                self._changed.clear()
                await self._changed.wait()
        return self.peers[index]
