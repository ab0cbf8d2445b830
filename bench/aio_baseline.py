"""The raw-asyncio baseline that bench/aio.py measures sessionlayer against.

Length-prefixed messages (a 4-octet big-endian length, then the payload) over an
:class:`asyncio.Protocol` on TCP: one ``transport.write`` per message, and a receiver
that parses the prefix and slices each message out of what TCP delivered.  The sender
honours the transport's high-water mark (``pause_writing``/``resume_writing``) the way
``StreamWriter.drain`` does, so a fast sender cannot buffer without bound -- the same
backpressure contract as ``Session.send``.

Only the standard library: this is what a developer writes without sessionlayer.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable

__all__ = ["HEADER", "FrameProtocol", "frame"]

HEADER = struct.Struct(">I")
_pack = HEADER.pack
_unpack_from = HEADER.unpack_from


def frame(payload: bytes) -> bytes:
    """One message on the wire: length prefix and payload."""
    return _pack(len(payload)) + payload


class FrameProtocol(asyncio.Protocol):
    """One TCP connection carrying length-prefixed messages in both directions.

    ``on_message(payload)`` is called for every whole message received (``payload`` is
    ``bytes``); ``on_lost()`` when the connection closes.
    """

    def __init__(
        self,
        on_message: Callable[[bytes], None] | None = None,
        *,
        write_buffer_high: int | None = None,
        on_made: Callable[[FrameProtocol], None] | None = None,
        on_lost: Callable[[FrameProtocol], None] | None = None,
    ) -> None:
        self.on_message = on_message or _ignore
        self.transport: asyncio.Transport | None = None
        self._high = write_buffer_high
        self._on_made = on_made
        self._on_lost = on_lost
        self._buffer = b""
        self._paused = False
        self._drain_waiter: asyncio.Future[None] | None = None

    # ------------------------------------------------------------ asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # No isinstance check: uvloop's transports do not derive from asyncio.Transport.
        self.transport = transport  # type: ignore[assignment]
        if self._high is not None:
            transport.set_write_buffer_limits(high=self._high)  # type: ignore[attr-defined]
        if self._on_made is not None:
            self._on_made(self)

    def data_received(self, data: bytes) -> None:
        if self._buffer:
            data = self._buffer + data
        on_message = self.on_message
        pos = 0
        end = len(data)
        while end - pos >= 4:
            (size,) = _unpack_from(data, pos)
            stop = pos + 4 + size
            if stop > end:
                break
            on_message(data[pos + 4 : stop])
            pos = stop
        self._buffer = data[pos:] if pos < end else b""

    def connection_lost(self, exc: Exception | None) -> None:
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self._on_lost is not None:
            self._on_lost(self)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ------------------------------------------------------------ sending

    def write(self, payload: bytes) -> None:
        """Queue one message (one ``transport.write``) without waiting."""
        assert self.transport is not None
        self.transport.write(_pack(len(payload)) + payload)

    async def send(self, payload: bytes) -> None:
        """Write one message; wait while the transport is above its high-water mark."""
        assert self.transport is not None
        self.transport.write(_pack(len(payload)) + payload)
        if self._paused:
            await self._drain()

    async def _drain(self) -> None:
        assert self.transport is not None
        while self._paused and not self.transport.is_closing():
            self._drain_waiter = asyncio.get_running_loop().create_future()
            await self._drain_waiter
            self._drain_waiter = None


def _ignore(payload: bytes) -> None:
    pass
