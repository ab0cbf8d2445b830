"""X.215 services between two sessionlayer peers through the relay, over real TCP: the
Session API on both ends (plain X.225 user data, no hello), the relay in between.

What one end requests must reach the other as the same indication, and the other's answer
(given by its own agent) must come back as the confirm; half-duplex tokens move through
the relay; each leg segments to its own TSDU size; the relay holds only a bounded number of
octets for a peer that does not read.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TypeVar

import pytest
from tests.relay.helpers import run

import sessionlayer
from sessionlayer import FunctionalUnit as FU
from sessionlayer import Options, ReleaseRefused, SessionAborted, SessionConfig, Token
from sessionlayer.machine import events as ev
from sessionlayer.relay import Relay, RelayOptions, start

E = TypeVar("E", bound=ev.Event)
PLAIN = Options(keepalive_interval=None, idle_timeout=None, resume=False)
HALF = (FU.HALF_DUPLEX | FU.TYPED_DATA | FU.MINOR_SYNC | FU.MAJOR_SYNC | FU.RESYNC
        | FU.NEGOTIATED_RELEASE)  # fmt: skip
ACTIVITIES = FU.DUPLEX | FU.MINOR_SYNC | FU.MAJOR_SYNC | FU.ACTIVITY | FU.CAPABILITY_DATA


@contextlib.asynccontextmanager
async def through_relay(client_config: SessionConfig, server_config: SessionConfig,
                        options: RelayOptions | None = None,
                        ) -> AsyncIterator[tuple[sessionlayer.Session, sessionlayer.Session,
                                                 Relay]]:  # fmt: skip
    """(client's session, server's session, the relay)."""
    accepted: asyncio.Future[sessionlayer.Session] = asyncio.get_running_loop().create_future()

    async def handler(session: sessionlayer.Session) -> None:
        accepted.set_result(session)
        await session.wait_closed()

    async with await sessionlayer.serve(handler, config=server_config, options=PLAIN,
                                        accept_data=lambda request: b"ac") as server:  # fmt: skip
        async with await start(("127.0.0.1", server.port), options=options) as relay:
            client = await sessionlayer.connect("127.0.0.1", relay.port, user_data=b"cn",
                                                config=client_config, options=PLAIN)  # fmt: skip
            peer = await asyncio.wait_for(accepted, 5)
            try:
                yield client, peer, relay
            finally:
                client.abort()


async def next_event(session: sessionlayer.Session, kind: type[E]) -> E:
    async for event in session.events():
        if isinstance(event, kind):
            return event
    raise AssertionError(f"the session ended before a {kind.__name__}")


def test_half_duplex_tokens_sync_resync_and_segmenting() -> None:
    client_config = SessionConfig(functional_units=HALF, tsdu_max_send=4096,
                                  tsdu_max_receive=4096)  # fmt: skip
    server_config = SessionConfig(functional_units=HALF, tsdu_max_send=1024,
                                  tsdu_max_receive=1024)  # fmt: skip

    async def main() -> None:
        async with through_relay(client_config, server_config) as (client, peer, relay):
            assert client.tokens & Token.DATA and not peer.tokens & Token.DATA
            big = bytes(range(256)) * 300
            await client.send(big)
            assert await peer.receive() == big
            await peer.send(b"my turn")  # the responder asks for the data token first
            assert await client.receive() == b"my turn"
            assert peer.tokens & Token.DATA and not client.tokens & Token.DATA
            await client.send(b"and mine")  # ... and the client asks it back
            assert await peer.receive() == b"and mine"
            serial = await client.sync(user_data=b"minor")
            assert (await next_event(peer, ev.MinorSyncIndication)).serial == serial
            major = await client.sync(major=True, user_data=b"major")
            assert (await next_event(peer, ev.MajorSyncIndication)).serial == major
            restart = await client.resync(serial=major + 1)
            assert (await next_event(peer, ev.ResyncIndication)).serial == restart
            await client.send_typed(b"typed")
            assert (await next_event(peer, ev.TypedDataIndication)).data == b"typed"
            (info,) = relay.sessions
            assert info.client.state == info.upstream.state == "STA713"  # type: ignore[union-attr]
            peer.on_release = lambda event: False
            with pytest.raises(ReleaseRefused):
                await client.release()
            peer.on_release = lambda event: b"bye"
            assert await client.release(b"done") == b"bye"

    run(main())


def test_activities_capability_data_and_control() -> None:
    config = SessionConfig(functional_units=ACTIVITIES)

    async def main() -> None:
        async with through_relay(config, config) as (client, peer, _relay):
            peer.on_capability_data = lambda event: b"caps: " + (event.user_data or b"")
            assert await client.capability_data(b"yours?") == b"caps: yours?"
            async with client.activity(b"act-1", b"start"):
                start_event = await next_event(peer, ev.ActivityStartIndication)
                assert start_event.activity_id == b"act-1"
                await client.send(b"in the activity")
                assert await peer.receive() == b"in the activity"
            assert isinstance(await next_event(peer, ev.ActivityEndIndication),
                              ev.ActivityEndIndication)  # fmt: skip
            await client.give_control()
            await next_event(peer, ev.ControlGiveIndication)
            assert peer.tokens & Token.MAJOR_ACTIVITY and not client.tokens

    run(main())


@pytest.mark.parametrize("side", ["client", "server"])
def test_abort_reaches_the_other_end_with_its_user_data(side: str) -> None:
    config = SessionConfig.kernel_duplex()

    async def main() -> None:
        async with through_relay(config, config) as (client, peer, _relay):
            aborting, other = (client, peer) if side == "client" else (peer, client)
            aborting.abort(b"why: tests")
            with pytest.raises(SessionAborted) as info:
                await asyncio.wait_for(other.receive(), 5)
            assert info.value.by_peer and info.value.user_data == b"why: tests"

    run(main())


def test_a_peer_that_does_not_read_holds_back_the_other_leg() -> None:
    """The upstream does not read; the client sends ~47 MiB (more than the kernel's socket
    buffers on the way take).  Reading from the client pauses
    once the upstream leg buffers ``write_buffer_high``, so what the relay holds stays
    under it plus one read and one TSDU; when the upstream reads again, everything
    arrives."""
    config = SessionConfig.kernel_duplex()
    high = 64 * 1024
    # (abort_timeout: should the test fail, the leg that is not read is reset after 1 s)
    options = RelayOptions(write_buffer_high=high, max_size=256 * 1024, abort_timeout=1.0)
    total, chunk = 48 * 200 * 1024 * 5, bytes(200 * 1024)

    async def main() -> None:
        async with through_relay(config, config, options) as (client, peer, relay):
            session = next(iter(relay.live.values()))
            upstream = session.transports["upstream"]
            assert upstream is not None
            sent = 0

            async def push() -> None:
                nonlocal sent
                while sent < total:
                    await client.send(chunk)
                    sent += len(chunk)

            pusher = asyncio.ensure_future(push())
            async with asyncio.timeout(10):
                while "client" not in session.paused:  # reading from the client paused
                    await asyncio.sleep(0.01)
            # The bound: the high-water mark, plus what the read that crossed it produced:
            # a TSDU held from before (max_size) and whole messages in the rest of that read
            # (asyncio reads at most 256 KiB at a time).
            bound = high + options.max_size + 256 * 1024
            for _ in range(20):  # while paused, the upstream leg's buffer does not grow
                assert upstream.get_write_buffer_size() <= bound
                await asyncio.sleep(0.01)
            assert "client" in session.paused and sent < total
            (info,) = relay.sessions
            assert info.upstream is not None and info.upstream.buffered > high
            received = 0
            async with asyncio.timeout(20):
                while received < total:  # the upstream reads again: all of it arrives
                    received += len(await peer.receive())
            await asyncio.wait_for(pusher, 10)
            assert received == sent == total and not session.paused

    run(main(), 40)
