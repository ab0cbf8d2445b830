"""The relay between sessionlayer peers that negotiated keepalive (the hello and the
welcome say so), in the test's event loop over real TCP: the probes it answers on a leg
are bounded by that leg's flow control, and a client that dies silently is found."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from tests.rawpeer import RawPeer
from tests.relay.helpers import run, spdus_in
from tests.tools import echo

import sessionlayer
from sessionlayer import SessionAborted
from sessionlayer.errors import AbortReason
from sessionlayer.relay import RelayOptions, start

NO_REASON = AbortReason.TRANSPORT_RELEASED | AbortReason.NO_REASON
#: A keepalive probe as a sessionlayer peer sends it: an empty PLEASE TOKENS in one TPKT.
PING = bytes.fromhex("0300000902f0800200")


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait (bounded) until the relay's state says so."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)  # (polls the relay's own state; bounded)


def test_a_client_flooding_probes_without_reading_is_held_back_on_its_own_leg() -> None:
    """The relay answers each probe on the client's leg; a client that never reads those
    answers is no longer read once that leg is full, so what the relay buffers for it stays
    bounded (before, only reading from the other leg paused: 121 MiB buffered after 128 MiB
    of probes).  The relay goes on serving other sessions meanwhile."""
    high = 64 * 1024
    bound = 4 * high + (256 << 10)  # (a few high-water marks, and the answers to one read)
    flood = 32 << 20

    async def main() -> None:
        options = RelayOptions(write_buffer_high=high, abort_timeout=1.0)
        async with await sessionlayer.serve(echo) as up:  # (default options: keepalive)
            async with await start(("127.0.0.1", up.port), options=options) as relay:
                raw, _ = await RawPeer.client(relay.port)
                (session,) = relay.live.values()
                assert session.bridge.client.keepalive  # the relay answers its probes
                sock = raw.writer.get_extra_info("socket")
                for size in (socket.SO_RCVBUF, socket.SO_SNDBUF):  # (less in the kernel)
                    sock.setsockopt(socket.SOL_SOCKET, size, 16384)
                raw.writer.transport.pause_reading()  # it reads nothing from now on
                chunk = PING * 4096
                sent = most = 0
                stalled = False
                while sent < flood and not stalled:
                    raw.writer.write(chunk)
                    sent += len(chunk)
                    drain = asyncio.ensure_future(raw.writer.drain())
                    # Until the relay took it; or, once the relay stopped reading from this
                    # client, 0.5 s more (the kernel's buffers fill: the flood stalls).
                    waited = 0
                    async with asyncio.timeout(20):
                        while not drain.done() and waited < 10:
                            await asyncio.wait({drain}, timeout=0.05)
                            waited += "client" in session.paused
                    if not drain.done():
                        drain.cancel()
                        stalled = True
                    most = max(most, session.info().client.buffered)
                    assert most <= bound, f"{most} octets buffered after {sent} sent"
                assert stalled and sent < flood
                # Another session through the same relay is served meanwhile.
                async with await sessionlayer.connect("127.0.0.1", relay.port) as other:
                    await other.send(b"still served")
                    assert await other.receive() == b"still served"
                assert session.info().client.buffered <= bound
                raw.writer.transport.abort()  # (a reset: the relay's writes to it fail)
                await until(lambda: session.id not in relay.live)
                assert relay.stats.ended["aborted"] == 1 and relay.stats.ended["released"] == 1

    run(main(), timeout=120)


def test_a_client_that_goes_silent_is_aborted_after_the_idle_timeout() -> None:
    """The upstream probes its leg every half second and the relay answers: that kept the
    relay's idle clock from ever running out (a client that died with no FIN held its
    session open for good).  The relay probes the client itself; no answer within its idle
    timeout: AB 0x09 to both, counted as aborted."""
    idle = 2.0

    async def main() -> None:
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[BaseException] = loop.create_future()

        async def upstream_handler(session: sessionlayer.Session) -> None:
            try:
                async for _ in session:
                    pass
            except SessionAborted as exc:
                ended.set_result(exc)

        up_options = sessionlayer.Options(keepalive_interval=0.5, idle_timeout=1.5)
        async with await sessionlayer.serve(upstream_handler, options=up_options) as up:
            options = RelayOptions(idle_timeout=idle, abort_timeout=1.0)
            async with await start(("127.0.0.1", up.port), options=options) as relay:
                raw, _ = await RawPeer.client(relay.port)  # then nothing: no read, no FIN
                opened = loop.time()
                (session,) = relay.sessions
                assert session.phase == "open"
                upstream_saw = await asyncio.wait_for(ended, idle + 3.0)
                assert loop.time() - opened >= idle - 0.1
                assert isinstance(upstream_saw, SessionAborted)
                assert upstream_saw.reason == NO_REASON  # (an AB from the relay)
                # The client was probed (the relay's PT), then got AB 0x09 and was closed.
                octets = await asyncio.wait_for(raw.reader.read(), 5)
                spdus = spdus_in(octets)
                assert [s.kind for s in spdus] == ["PT", "AB"], spdus
                assert spdus[-1].transport_disconnect == NO_REASON
                await until(lambda: not relay.live)
                assert relay.stats.ended["aborted"] == 1
                raw.writer.close()

    run(main(), timeout=30)
