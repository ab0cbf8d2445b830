"""An ACCEPT that selects protocol version 1 carries at most 512 octets of user data (X.225
8.3.2; version 2 lifts the limit).  The initiator decodes the AC before it knows the version
chosen, so the version-2 limits applied and a version-1 AC with 600 octets was taken; it is a
protocol error now: AB with Transport Disconnect 0x05.
"""

from __future__ import annotations

import pytest

from sessionlayer.errors import AbortReason
from sessionlayer.machine import (
    ConnectConfirm,
    ProviderAbortIndication,
    SessionConfig,
    SessionMachine,
)
from sessionlayer.spdu import FunctionalUnit, decode_tsdu
from sessionlayer.spdu.codec import encode_tsdu
from sessionlayer.spdu.types import Abort, Accept, ConnectAcceptItem

FU = FunctionalUnit


def initiator() -> SessionMachine:
    m = SessionMachine("initiator", SessionConfig(functional_units=FU.DUPLEX))
    m.transport_connected()
    m.connect(user_data=b"hi")
    m.data_to_send()
    return m


def accept(version: int, size: int) -> bytes:
    item = ConnectAcceptItem(version=version)
    ac = Accept(item=item, requirements=int(FU.DUPLEX), user_data=b"u" * size)
    return encode_tsdu(ac, version=2)


def test_version_one_accept_over_512_octets_is_a_protocol_error() -> None:
    m = initiator()
    m.receive_tsdu(accept(1, 600), now=0)
    (event,) = m.events()
    assert isinstance(event, ProviderAbortIndication) and event.local
    assert event.reason == AbortReason.TRANSPORT_RELEASED | AbortReason.PROTOCOL_ERROR
    sent = [s for t in m.data_to_send() for s in decode_tsdu(t)]
    assert [s.transport_disconnect for s in sent if isinstance(s, Abort)] == [0x05]
    assert m.state == "STA16"


@pytest.mark.parametrize(("version", "size"), [(1, 512), (2, 600)])
def test_accept_within_its_version_limit(version: int, size: int) -> None:
    m = initiator()
    m.receive_tsdu(accept(version, size), now=0)
    (event,) = m.events()
    assert isinstance(event, ConnectConfirm) and event.version == version
    assert event.user_data == b"u" * size
