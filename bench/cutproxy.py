"""A small TCP proxy on 127.0.0.1 that resets its connections on demand (bench only).

    proxy = await CutProxy.start(target_port)
    ...connect to 127.0.0.1:proxy.port...
    proxy.cut()          # RST both ways on every open connection, at once
    proxy.accepted[-1]   # time.perf_counter() when the last client connection was accepted

The approach of tests/faults/proxy.py, cut down to what the benchmarks need (bench/ does not
import tests/): each accepted connection gets a connection of its own to the target, made
at once; bytes go through ``asyncio.Protocol`` callbacks (what arrives from the client before
the target connection is up is held, then written), and a side whose peer's write buffer is
over 1 MiB stops reading until it drained.  ``cut()`` sets SO_LINGER 0 on both sockets of
every connection and aborts them: each peer gets an RST, as with a failing network.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import Callable

__all__ = ["CutProxy"]

_LINGER_ZERO = struct.pack("ii", 1, 0)
_HIGH = 1 << 20


def reset(transport: asyncio.BaseTransport) -> None:
    """Close ``transport`` with an RST (SO_LINGER 0, then abort)."""
    if transport.is_closing():
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
    transport.abort()  # type: ignore[attr-defined]


class _Side(asyncio.Protocol):
    """One socket of a proxied connection; what it reads goes to ``peer``."""

    def __init__(self, on_lost: Callable[[_Side, Exception | None], None]) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self.pending: list[bytes] = []  # read before the peer was connected
        self._on_lost = on_lost

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.set_write_buffer_limits(high=_HIGH)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is None or peer.transport is None:
            self.pending.append(data)
        else:
            peer.transport.write(data)

    def eof_received(self) -> bool:
        peer = self.peer
        if peer is not None and peer.transport is not None and peer.transport.can_write_eof():
            peer.transport.write_eof()
            return True  # half-close passes through
        return False

    def pause_writing(self) -> None:  # our write buffer is full: the peer stops reading
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_lost(self, exc)


class CutProxy:
    """Forward 127.0.0.1:``port`` to 127.0.0.1:``target_port``; ``cut()`` resets it all."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.accepted: list[float] = []  #: perf_counter() of each client connection accepted
        self.cuts = 0
        self._server: asyncio.AbstractServer | None = None
        self._sides: set[_Side] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    async def start(cls, target_port: int) -> CutProxy:
        proxy = cls(target_port)
        loop = asyncio.get_running_loop()
        proxy._server = await loop.create_server(proxy._accept, "127.0.0.1", 0)
        proxy.port = proxy._server.sockets[0].getsockname()[1]
        return proxy

    def _accept(self) -> _Side:
        self.accepted.append(time.perf_counter())
        client = _Side(self._lost)
        self._sides.add(client)
        task = asyncio.get_running_loop().create_task(self._connect(client))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return client

    async def _connect(self, client: _Side) -> None:
        loop = asyncio.get_running_loop()
        target = _Side(self._lost)
        try:
            await loop.create_connection(lambda: target, "127.0.0.1", self.target_port)
        except OSError:
            if client.transport is not None:
                reset(client.transport)
            return
        if client not in self._sides:  # cut (or closed) while connecting
            assert target.transport is not None
            reset(target.transport)
            return
        self._sides.add(target)
        client.peer, target.peer = target, client
        assert target.transport is not None
        for data in client.pending:
            target.transport.write(data)
        client.pending.clear()

    def _lost(self, side: _Side, exc: Exception | None) -> None:
        self._sides.discard(side)
        peer = side.peer
        if peer is not None and peer.transport is not None:
            if exc is None:
                peer.transport.close()  # closed: close the other after what it has to write
            else:
                reset(peer.transport)  # reset (or failed): reset the other too

    def cut(self) -> int:
        """Reset both sockets of every connection now; returns how many sockets."""
        sides = list(self._sides)
        self._sides.clear()
        for side in sides:
            if side.transport is not None:
                reset(side.transport)
        self.cuts += 1
        return len(sides)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
