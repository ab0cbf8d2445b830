"""Issue 9 over TCP: the protocol-core defects, seen on the wire between sessionlayer peers.

Each test runs a real client and server on loopback; ``trace=`` records what the client
wrote, and the SPDUs are read back with the stream dissector.  Nothing sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import sessionlayer
from sessionlayer import ResyncCollisionLost, ResyncType, SessionConfig
from sessionlayer.dissect import StreamDissector
from sessionlayer.spdu import SPDU, DataTransfer


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 8))  # type: ignore[arg-type]


class Trace:
    """Everything one side wrote to TCP, as SPDUs."""

    def __init__(self) -> None:
        self.out = bytearray()

    def __call__(self, direction: str, data: bytes) -> None:
        if direction == "out":
            self.out += data

    def spdus(self) -> list[SPDU]:
        records = StreamDissector().feed(bytes(self.out))
        assert not [r.error for r in records if r.error], records
        return [r.spdu for r in records if r.spdu is not None]


@contextlib.asynccontextmanager
async def pair(
    config: SessionConfig, trace: Trace | None = None
) -> AsyncIterator[tuple[sessionlayer.Session, sessionlayer.Session]]:
    """(client's session, server's session) over loopback TCP."""
    accepted: asyncio.Future[sessionlayer.Session] = asyncio.get_running_loop().create_future()

    async def handler(session: sessionlayer.Session) -> None:
        accepted.set_result(session)
        await session.wait_closed()

    async with await sessionlayer.serve(handler, config=config) as server:
        client = await sessionlayer.connect(
            "127.0.0.1", server.port, config=config, trace=trace
        )
        peer = await accepted
        try:
            yield client, peer
        finally:
            client.abort()


# ------------------------------------------------------------ 2. Enclosure Item on DT


def test_dt_carries_enclosure_3_when_a_tsdu_size_is_agreed() -> None:
    config = SessionConfig(tsdu_max_send=8192, tsdu_max_receive=8192)
    message = bytes(range(256)) * 12  # 3 KiB: one TSDU, so not segmented

    async def main() -> None:
        trace = Trace()
        async with pair(config, trace) as (client, peer):
            assert client.machine.tsdu_max_send == 8192
            assert not client.machine.plain_data and not client._conn.plain
            await client.send(message)
            assert await peer.receive() == message
            await peer.send(message)
            assert await client.receive() == message
            await client.release()
        dts = [s for s in trace.spdus() if isinstance(s, DataTransfer)]
        assert dts, trace.spdus()
        assert all(dt.enclosure == 0x03 for dt in dts), dts
        assert message in bytes(trace.out)

    run(main())


# ------------------------------------------------------------ 4. a resync that loses


def test_resync_that_loses_a_collision_raises_with_the_outcome() -> None:
    async def main() -> None:
        async with pair(SessionConfig()) as (client, peer):
            await client.sync(major=True)  # serial 0 confirmed: V(R) = V(M) = 1
            # Both requests leave before either side reads: they cross on the wire.
            ours, theirs = await asyncio.gather(
                client.resync(ResyncType.RESTART, serial=1, user_data=b"mine"),
                peer.resync(ResyncType.ABANDON, user_data=b"theirs"),
                return_exceptions=True,
            )
            assert isinstance(ours, ResyncCollisionLost), ours  # abandon beats restart
            assert theirs == ours.serial == client.machine.vm == peer.machine.vm
            assert ours.type == ResyncType.ABANDON and ours.user_data == b"theirs"
            assert ours.tokens == int(client.machine.tokens_owned)
            assert "won" in str(ours)
            # The session goes on.
            await client.send(b"still here")
            assert await peer.receive() == b"still here"
            assert await client.sync() == ours.serial
            await client.release()

    run(main())
