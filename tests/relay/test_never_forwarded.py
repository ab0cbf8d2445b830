"""An out-of-state SPDU from the client is never forwarded (over real TCP).

A raw client (RFC 1006 and X.225 driven by hand, tests/rawpeer.py) opens a session through
the relay to a raw upstream that records every octet it receives.  After one good S-DATA
the client sends SPDUs the state table does not allow; it must get AB with Transport
Disconnect 0x05 and a reflect parameter, and the upstream must see nothing of them: its
octets hold the CN, the good data, and an AB 0x09 from the relay, nothing else.
"""

from __future__ import annotations

import asyncio

import pytest
from tests.rawpeer import RawPeer, accept_session, raw_server
from tests.relay.helpers import run

from sessionlayer.machine import SessionConfig, SessionMachine
from sessionlayer.machine import events as ev
from sessionlayer.relay import start
from sessionlayer.spdu import Abort, Accept, GiveTokens, MajorSyncPoint, encode_tsdu
from sessionlayer.transport import TransportConnected

SECRET = b"NEVER-FORWARD-ME"
PROTOCOL_ERROR = 0x05
NO_REASON = 0x09
OFFENDING = {
    "major sync without the unit": encode_tsdu(
        GiveTokens(), MajorSyncPoint(sync_type=1, serial_number=0, user_data=SECRET)
    ),
    "an AC from the initiator": encode_tsdu(Accept(requirements=2, user_data=SECRET)),
    "a DT whose length indicator runs past the TSDU": b"\x01\x00\x01\xff\xff\xff" + SECRET,
}


async def scenario(offending: bytes) -> tuple[list[bytes], bytes, list[Abort]]:
    upstream_got: list[bytes] = []
    upstream_done = asyncio.Event()

    async def upstream(raw: RawPeer) -> None:
        try:
            await accept_session(raw, SessionConfig.kernel_duplex(), user_data=b"AC")
            while True:
                upstream_got.append(await raw.tsdu())
        finally:
            upstream_done.set()

    async with raw_server(upstream) as port:
        async with await start(("127.0.0.1", port)) as relay:
            reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
            client = RawPeer(reader, writer, "initiator")
            writer.write(client.rfc.connect())
            assert isinstance(await client.next(), TransportConnected)
            machine = SessionMachine("initiator", SessionConfig.kernel_duplex())
            machine.transport_connected()
            machine.connect(user_data=b"CN")
            for tsdu in machine.data_to_send():
                client.send_tsdu(tsdu)
            machine.receive_tsdu(await client.tsdu(), now=0.0)
            assert isinstance(machine.next_event(), ev.ConnectConfirm)
            machine.send_data(b"good data")
            for tsdu in machine.data_to_send():
                client.send_tsdu(tsdu)
            client.send_tsdu(offending)
            answered: list[Abort] = []
            try:
                while True:
                    tsdu = await asyncio.wait_for(client.tsdu(), 10)
                    answered += [s for s in _decode(tsdu) if isinstance(s, Abort)]
            except (EOFError, ConnectionError):
                pass
            writer.close()
            await asyncio.wait_for(upstream_done.wait(), 10)
            raw_upstream = b"".join(upstream_got)
    return upstream_got, raw_upstream, answered


def _decode(tsdu: bytes) -> list[object]:
    from sessionlayer.spdu import decode_tsdu

    return list(decode_tsdu(tsdu))


@pytest.mark.parametrize("name", sorted(OFFENDING))
def test_out_of_state_spdu_is_answered_with_ab_and_never_reaches_the_upstream(name: str) -> None:
    upstream_got, raw_upstream, aborts = run(scenario(OFFENDING[name]))
    assert aborts, "the client got no AB"
    assert aborts[0].transport_disconnect == PROTOCOL_ERROR and aborts[0].reflect
    assert SECRET not in raw_upstream
    kinds = [type(s).__name__ for tsdu in upstream_got for s in _decode(tsdu)]
    assert kinds == ["GiveTokens", "DataTransfer", "Abort"], kinds
    data = [s for tsdu in upstream_got for s in _decode(tsdu)]
    assert getattr(data[1], "user_data", None) == b"good data"
    assert getattr(data[2], "transport_disconnect", None) == NO_REASON
