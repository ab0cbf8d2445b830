"""A ``receive()`` cancelled in the instant its message came loses nothing, and neither
does ``asyncio.wait_for`` on the next message (docs/api.md, ``receive()``).

The message is fed to the client's connection as a read from TCP does it (``get_buffer``
and ``buffer_updated``, the S-DATA fast path), and the reading task is cancelled right
after, in the same turn of the loop: the message was handed to the task's future, and the
task has not run yet.  (``async for`` awaits that future bare and still drops it then, as
docs/api.md says: the fix that costs no Python call, a future subclass whose ``cancel()``
gives the message back, puts asyncio's C task on its slow path for every message.)"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

import sessionlayer
from sessionlayer import Options
from sessionlayer.transport.fastpath import frame_data

from .helpers import LIMIT, run

PLAIN = Options(resume=False)


def _arrives(session: sessionlayer.Session, message: bytes) -> None:
    """``message`` arrives from TCP now (one read, the fast path's)."""
    conn = session._conn
    frame = frame_data(message, conn.agent.tpdu_size)
    buffer = conn.get_buffer(len(frame))
    buffer[: len(frame)] = frame
    conn.buffer_updated(len(frame))


async def _receive(session: sessionlayer.Session, got: list[bytes]) -> None:
    while True:
        got.append(await session.receive())


def test_a_receive_cancelled_as_its_message_comes_leaves_it_for_the_next() -> None:
    read: Callable[[sessionlayer.Session, list[bytes]], Awaitable[None]] = _receive

    async def main() -> None:
        async def handler(session: sessionlayer.Session) -> None:
            await session.wait_closed()

        async with await sessionlayer.serve(handler, options=PLAIN) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port, options=PLAIN)
            got: list[bytes] = []
            for n in range(3):
                reader = asyncio.ensure_future(read(client, got))
                await asyncio.sleep(0)  # (one turn: the reader runs and waits for data)
                assert client._conn._data_waiter is not None
                _arrives(client, b"message %d" % n)
                reader.cancel()  # before the reader ran again
                with pytest.raises(asyncio.CancelledError):
                    await reader
                assert got == []
                assert await asyncio.wait_for(client.receive(), LIMIT) == b"message %d" % n
            # A reader cancelled while it waits leaves nothing behind either.
            reader = asyncio.ensure_future(read(client, got))
            await asyncio.sleep(0)
            reader.cancel()
            with pytest.raises(asyncio.CancelledError):
                await reader
            _arrives(client, b"later")
            assert await asyncio.wait_for(client.__anext__(), LIMIT) == b"later"
            assert got == []
            client.abort()

    run(main())


def test_wait_for_on_the_next_message_gets_it_once() -> None:
    """``asyncio.wait_for(session.__anext__(), t)`` cancelled once the message came:
    Python 3.11's wait_for then returns it (it awaits the future itself and looks at it
    first); a later one raises CancelledError and the message is left for the next reader.
    Either way it is read once."""

    async def main() -> None:
        async def handler(session: sessionlayer.Session) -> None:
            await session.wait_closed()

        async with await sessionlayer.serve(handler, options=PLAIN) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port, options=PLAIN)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(client.__anext__(), 0.01)
            waiting = asyncio.ensure_future(asyncio.wait_for(client.__anext__(), LIMIT))
            await asyncio.sleep(0)
            _arrives(client, b"one")
            waiting.cancel()
            try:
                got = [await waiting]  # (3.11)
            except asyncio.CancelledError:
                got = [await asyncio.wait_for(client.receive(), LIMIT)]
            assert got == [b"one"]
            _arrives(client, b"two")
            assert await asyncio.wait_for(client.receive(), LIMIT) == b"two"
            client.abort()

    run(main())
