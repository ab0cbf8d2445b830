"""Issue 9, on the wire: what a complete, independent ISO 8327 peer expects of us.

Each test here failed before its fix: the transport expedited flow negotiated in COTP
CR/CC and used for EX (X.225 7.12, RFC 1006 5.2), capability data answered with the
application's data (X.215 S-CAPABILITY-DATA response), TIM honoured after DN (X.225 7.7,
A.4.1: the responder waits for the initiator to release the transport), no keepalive
probe to a peer whose AC merely echoed our hello, and a clear error when the responder
closes the connection on our CN.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any

import pytest
from tests.rawpeer import RawPeer, accept_session, raw_server

import sessionlayer
from sessionlayer import FunctionalUnit as FU
from sessionlayer import Options, SessionAborted, SessionConfig
from sessionlayer.agent.hello import Hello, Welcome
from sessionlayer.errors import DecodeError
from sessionlayer.machine import (
    CapabilityDataIndication,
    ExpeditedDataIndication,
    SessionMachine,
)
from sessionlayer.transport import ConnectRequested
from sessionlayer.transport.cotp import (
    ConnectionConfirm,
    ConnectionRequest,
    ExpeditedData,
    decode_tpdu,
)
from sessionlayer.transport.tpkt import TpktParser

LIMIT = 4.0


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 9))  # type: ignore[arg-type]


class Wire:
    """Every TPDU one side wrote, decoded (from ``connect(trace=...)``)."""

    def __init__(self) -> None:
        self.parser = TpktParser()
        self.sent: list[Any] = []

    def __call__(self, direction: str, data: bytes) -> None:
        if direction == "out":
            self.sent.extend(decode_tpdu(p) for p in self.parser.feed(data))


async def next_event(session: sessionlayer.Session, kind: type) -> Any:
    async def first() -> Any:
        async for event in session.events():
            if isinstance(event, kind):
                return event
        raise AssertionError(f"the session ended before a {kind.__name__}")

    return await asyncio.wait_for(first(), LIMIT)


# ---------------------------------------------------------------- 5: transport expedited


def _expedited_option(tpdu: ConnectionRequest | ConnectionConfirm) -> bool:
    return any(p.code == 0xC6 and p.value[-1] & 1 for p in tpdu.other_params)


def test_expedited_unit_negotiates_the_transport_expedited_flow() -> None:
    """Proposing the expedited unit asks for the RFC 1006 expedited option in CR; the
    server grants it in CC; EX then travels in an ED TPDU and arrives as an indication."""

    async def main() -> None:
        got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        async def handler(session: sessionlayer.Session) -> None:
            event = await next_event(session, ExpeditedDataIndication)
            got.set_result(event.data)
            async for _ in session:
                pass

        wire = Wire()
        async with await sessionlayer.serve(handler) as server:
            async with await sessionlayer.connect(
                "127.0.0.1", server.port, trace=wire
            ) as session:
                await session.send_expedited(b"urgent")
                assert await asyncio.wait_for(got, LIMIT) == b"urgent"
        cr = wire.sent[0]
        assert isinstance(cr, ConnectionRequest) and _expedited_option(cr)
        eds = [t for t in wire.sent if isinstance(t, ExpeditedData)]
        assert [ed.user_data for ed in eds] == [b"\x05\x00urgent"]  # EX SPDU, SI 5, LI 0

    run(main())


def test_without_the_transport_option_ex_travels_in_band() -> None:
    """A responder whose COTP does not grant the expedited option (but whose session layer
    accepts the expedited unit) gets EX on the normal flow, in a DT."""

    async def main() -> None:
        received: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        async def responder(raw: RawPeer) -> None:
            machine = await accept_session(raw)
            assert not raw.rfc.expedited
            assert machine.functional_units & FU.EXPEDITED
            machine.receive_tsdu(await raw.tsdu(), now=0.0)
            received.set_result(machine.next_event())
            await raw.closed()

        wire = Wire()
        async with raw_server(responder, expedited=False) as port:
            session = await sessionlayer.connect("127.0.0.1", port, trace=wire)
            await session.send_expedited(b"in band")
            event = await asyncio.wait_for(received, LIMIT)
            session.abort()
            await asyncio.wait_for(session.wait_closed(), LIMIT)
        assert isinstance(event, ExpeditedDataIndication) and event.data == b"in band"
        assert not any(isinstance(t, ExpeditedData) for t in wire.sent)

    run(main())


# ---------------------------------------------------------------- 6: capability data reply


def test_capability_data_answered_with_the_applications_data() -> None:
    async def main() -> None:
        units = FU.DUPLEX | FU.ACTIVITY | FU.CAPABILITY_DATA
        config = SessionConfig(functional_units=units)

        async def handler(session: sessionlayer.Session) -> None:
            session.on_capability_data = lambda event: bytes(event.user_data or b"")[::-1]
            async for _ in session:
                pass

        async with await sessionlayer.serve(handler, config=config) as server:
            async with await sessionlayer.connect(
                "127.0.0.1", server.port, config=config
            ) as session:
                assert await session.capability_data(b"echo me" * 64) == b"em ohce" * 64
                # The default answer stays: no callback, no user data.
                session.on_capability_data = None

    run(main())


def test_capability_data_default_answer_has_no_user_data() -> None:
    async def main() -> None:
        units = FU.DUPLEX | FU.ACTIVITY | FU.CAPABILITY_DATA
        config = SessionConfig(functional_units=units)
        seen: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        async def handler(session: sessionlayer.Session) -> None:
            seen.set_result(await next_event(session, CapabilityDataIndication))
            async for _ in session:
                pass

        async with await sessionlayer.serve(handler, config=config) as server:
            async with await sessionlayer.connect(
                "127.0.0.1", server.port, config=config
            ) as session:
                assert await session.capability_data(b"caps") is None
                assert (await asyncio.wait_for(seen, LIMIT)).user_data == b"caps"

    run(main())


# ---------------------------------------------------------------- 7: TIM after DN


def test_responder_waits_for_the_initiator_to_disconnect_after_dn() -> None:
    """X.225 7.7: after DN the responder leaves the transport to the initiator, and
    releases it itself only when TIM expires.  Before the fix TIM was armed at loop time
    0 + 30 s, long past, and TCP closed 0.1 ms after the DN."""

    async def main() -> None:
        tim = 0.5
        config = SessionConfig(abort_timeout=tim)
        async with await sessionlayer.serve(lambda s: s.wait_closed(), config=config) as server:
            raw, machine = await RawPeer.client(server.port)
            machine.release()
            for tsdu in machine.data_to_send():
                raw.send_tsdu(tsdu)
            dn = await raw.tsdu()
            assert dn[0] == 10  # DISCONNECT
            started = time.monotonic()
            assert await asyncio.wait_for(raw.closed(), LIMIT)  # the initiator stays silent
            waited = time.monotonic() - started
            assert tim * 0.8 <= waited < tim + 2.0, waited
            raw.writer.close()

    run(main())


def test_initiator_closes_first_after_dn_and_nothing_is_reset() -> None:
    async def main() -> None:
        async with await sessionlayer.serve(lambda s: s.wait_closed()) as server:
            session = await sessionlayer.connect("127.0.0.1", server.port)
            await session.release()
            await asyncio.wait_for(session.wait_closed(), LIMIT)
            assert session.state == "released"

    run(main())


# ---------------------------------------------------------------- 8: echoed hello


def test_an_echoed_hello_is_not_a_welcome() -> None:
    with pytest.raises(DecodeError):
        Welcome.decode(Hello().encode())
    assert Welcome.decode(Welcome(session_id="ab" * 16).encode()).session_id == "ab" * 16


def test_no_keepalive_probe_to_a_responder_that_echoes_the_hello() -> None:
    """A test responder that answers the CN with its own user data echoed: no PT probe
    ever reaches it (a conforming peer aborts on an empty PT in a tokenless duplex)."""

    async def main() -> None:
        heard: list[bytes] = []

        async def echoing(raw: RawPeer) -> None:
            assert isinstance(await raw.next(), ConnectRequested)
            raw.writer.write(raw.rfc.accept())
            machine = SessionMachine("responder")
            machine.transport_connected()
            cn = await raw.tsdu()
            machine.receive_tsdu(cn, now=0.0)
            indication = machine.next_event()
            machine.accept(user_data=indication.user_data)  # type: ignore[union-attr]
            for tsdu in machine.data_to_send():
                raw.send_tsdu(tsdu)
            while True:
                heard.append(await raw.tsdu())

        async with raw_server(echoing) as port:
            opts = Options(keepalive_interval=0.05, idle_timeout=None)
            session = await sessionlayer.connect("127.0.0.1", port, options=opts)
            assert session.chosen == {}
            # Ten keepalive intervals of silence (absence has no event to wait on).
            await asyncio.sleep(0.5)
            session.abort()
            await asyncio.wait_for(session.wait_closed(), LIMIT)
        assert all(tsdu[0] == 0x19 for tsdu in heard), heard  # only the AB at the end

    run(main())


# ---------------------------------------------------------------- also: a CN closed on


def test_a_responder_that_closes_on_the_cn_gets_a_clear_error() -> None:
    async def main() -> None:
        async def closes(raw: RawPeer) -> None:
            assert isinstance(await raw.next(), ConnectRequested)
            raw.writer.write(raw.rfc.accept())
            await raw.tsdu()  # the CN: closed on, without RF
            raw.writer.close()

        async with raw_server(closes) as port:
            with pytest.raises(SessionAborted, match="closed the connection without answering"):
                await sessionlayer.connect("127.0.0.1", port)

    run(main())

