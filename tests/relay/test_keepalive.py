"""The relay between sessionlayer peers that negotiated keepalive (the hello and the
welcome say so), in the test's event loop over real TCP: the probes it answers on a leg
are bounded by that leg's flow control."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from tests.rawpeer import RawPeer
from tests.relay.helpers import run
from tests.tools import echo

import sessionlayer
from sessionlayer.relay import RelayOptions, start

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

