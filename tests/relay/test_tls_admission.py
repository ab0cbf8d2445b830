"""A TLS relay counts a client connection from its TCP accept, its TLS handshake included
(as ``serve()`` does, aio/tls_accept.py): silent TCP connections to its TLS port take the
handshake slots (``max_handshakes``), then the queue, unread, and the rest are closed at
once; one deadline (``handshake_timeout``) runs from the accept over the wait and the TLS
handshake; nothing reaches asyncio's exception handler (``run`` fails the test if anything
does).  asyncio's own TLS server held every one in a TLS handshake of its own, uncounted:
a flood of them was bounded by the file descriptors only."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable

import pytest
from tests.relay.helpers import CONFIG, run, upstream
from tests.tools import tls_contexts

import sessionlayer
from sessionlayer import Options
from sessionlayer.relay import Policy, RelayOptions, Rule, start
from sessionlayer.relay.server import Relay

LIMIT = 10.0  # s: a bound on every wait of these tests (far above what each takes)


@pytest.fixture(scope="module")
def contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    return tls_contexts()




async def tls_client(relay: Relay, client_tls: ssl.SSLContext) -> sessionlayer.Session:
    options = Options(keepalive_interval=None, idle_timeout=None, resume=False,
                      connect_timeout=LIMIT, handshake_timeout=LIMIT)  # fmt: skip
    return await sessionlayer.connect(
        "127.0.0.1", relay.port, tls=client_tls, server_hostname="localhost",
        user_data=b"hi", config=CONFIG, options=options,
    )  # fmt: skip


async def until(condition: Callable[[], bool]) -> None:
    """Wait (bounded) until the relay has taken in what the test did."""
    async with asyncio.timeout(LIMIT):
        while not condition():
            await asyncio.sleep(0.01)


async def closed(reader: asyncio.StreamReader) -> bool:
    try:
        return await reader.read() == b""
    except ConnectionError:
        return True


async def silent(relay: Relay, n: int) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """``n`` TCP connections to the relay's TLS port that never send a ClientHello."""
    return [await asyncio.open_connection("127.0.0.1", relay.port) for _ in range(n)]


async def echoed(session: sessionlayer.Session) -> None:
    await session.send(b"ping")
    assert await asyncio.wait_for(session.receive(), LIMIT) == b"ping"
    await asyncio.wait_for(session.release(), LIMIT)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_connections_in_their_tls_handshake_count_against_max_handshakes(
    loop: str, contexts: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    """Two silent connections hold both slots, three more wait, and a good TLS client
    waits behind them, unread; forty more are closed at once (long before the handshake
    timeout).  When the silent ones go, the queued ones are admitted in turn and the good
    client's session is relayed."""
    relay_tls, client_tls = contexts

    async def main() -> None:
        async with await upstream() as up:  # type: ignore[attr-defined]
            options = RelayOptions(max_handshakes=2, handshake_timeout=LIMIT * 3)
            async with await start(("127.0.0.1", up.port), tls=relay_tls,
                                   options=options) as relay:  # fmt: skip
                relay.max_waiting = 4
                held = await silent(relay, 2)
                await until(lambda: relay.handshakes == 2)
                held += await silent(relay, 3)
                await until(lambda: len(relay.waiting) == 3)
                good = asyncio.ensure_future(tls_client(relay, client_tls))
                await until(lambda: len(relay.waiting) == 4)
                excess = await silent(relay, 40)
                async with asyncio.timeout(LIMIT):  # (not the handshake timeout: at once)
                    assert all(await asyncio.gather(*(closed(r) for r, _ in excess)))
                assert relay.stats.rejected["handshake_limit"] == 40
                assert relay.handshakes == 2 and len(relay.waiting) == 4
                assert relay.stats.connections == 0 and not good.done()
                for _, writer in held + excess:
                    writer.transport.abort()  # the counted ones leave: their slots free up
                session = await asyncio.wait_for(good, LIMIT)
                await echoed(session)
                await until(lambda: relay.handshakes == 0 and not relay.waiting)
                assert relay.stats.connections == 1 and relay.stats.relayed == 1
                # (the five silent ones that were counted: their TLS handshakes failed)
                assert dict(relay.stats.rejected) == {"handshake_limit": 40, "tls": 5}

    run(main(), loop=loop)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_the_handshake_deadline_of_a_tls_connection_runs_from_its_accept(
    loop: str, contexts: tuple[ssl.SSLContext, ssl.SSLContext],
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """One deadline, ``handshake_timeout`` from the TCP accept, over the wait for a slot
    and the TLS handshake: silent connections, in a slot or queued, are all closed when it
    passes (a queued one admitted late does not start a deadline of its own), and a good
    TLS client is relayed afterwards."""
    relay_tls, client_tls = contexts
    timeout = 1.0

    async def main() -> None:
        async with await upstream() as up:  # type: ignore[attr-defined]
            options = RelayOptions(max_handshakes=2, handshake_timeout=timeout)
            async with await start(("127.0.0.1", up.port), tls=relay_tls,
                                   options=options) as relay:  # fmt: skip
                relay.max_waiting = 4
                running = asyncio.get_running_loop()
                started = running.time()
                held = await silent(relay, 6)
                await until(lambda: relay.handshakes == 2 and len(relay.waiting) == 4)
                async with asyncio.timeout(LIMIT):
                    assert all(await asyncio.gather(*(closed(r) for r, _ in held)))
                took = running.time() - started
                # (a deadline started again at admission would close the queued ones
                # ``timeout`` after the first ones: at twice the timeout)
                assert timeout <= took < timeout * 1.9, took
                await until(lambda: relay.handshakes == 0 and not relay.waiting)
                rejected = relay.stats.rejected
                assert rejected["tls"] >= 2 and rejected["tls"] + rejected["handshake_limit"] == 6
                for _, writer in held:
                    writer.close()
                await echoed(await tls_client(relay, client_tls))
                assert relay.stats.connections == 1 and relay.stats.relayed == 1

    with caplog.at_level(logging.DEBUG, logger="sessionlayer.relay"):
        run(main(), loop=loop)
    # (one line each, at DEBUG: connections that never sent a CN, docs/relay.md)
    timeouts = [r for r in caplog.records if "within the handshake timeout" in r.getMessage()]
    assert len(timeouts) == 6 and {r.levelno for r in timeouts} == {logging.DEBUG}, caplog.text


def test_a_denied_address_is_closed_before_its_tls_handshake(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    """The rules on the client's address are applied at the TCP accept: no TLS handshake,
    no handshake slot."""
    relay_tls, _ = contexts

    async def main() -> None:
        policy = Policy.from_rules([Rule.parse("deny", "peer=127.0.0.0/8")])
        async with await start(("127.0.0.1", 9), tls=relay_tls, policy=policy) as relay:
            reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
            async with asyncio.timeout(LIMIT):
                assert await closed(reader)
            writer.close()
            assert relay.stats.rejected == {"denied": 1}
            assert relay.handshakes == 0 and relay.stats.connections == 0

    run(main())


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_tls_relay_closed_with_connections_in_their_tls_handshake(
    loop: str, contexts: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    """close() closes the listening sockets and the connections in their TLS handshake or
    queued for one; wait_closed() returns; nothing is counted as a failed handshake."""
    relay_tls, _ = contexts

    async def main() -> None:
        options = RelayOptions(max_handshakes=2, handshake_timeout=LIMIT * 3)
        relay = await start(("127.0.0.1", 9), tls=relay_tls, options=options)
        port = relay.port
        assert relay.addresses == [("127.0.0.1", port)]
        held = await silent(relay, 5)
        await until(lambda: relay.handshakes == 2 and len(relay.waiting) == 3)
        relay.close()
        await asyncio.wait_for(relay.wait_closed(), LIMIT)
        async with asyncio.timeout(LIMIT):
            assert all(await asyncio.gather(*(closed(r) for r, _ in held)))
        assert relay.handshakes == 0 and not relay.waiting and not relay.stats.rejected
        assert relay.addresses == []
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", port)
        for _, writer in held:
            writer.close()

    run(main(), loop=loop)
