"""Issue 9: defects found against an independent ISO 8327 implementation (protocol core)."""

from __future__ import annotations

import pytest
from tests.machine.helpers import SessionPair, decode

from sessionlayer.errors import AbortReason, DecodeError
from sessionlayer.machine import (
    DATA_PREFIX,
    DEFAULT_FUNCTIONAL_UNITS,
    ConnectIndication,
    DataIndication,
    MinorSyncConfirm,
    ProviderAbortIndication,
    SessionConfig,
    SessionMachine,
)
from sessionlayer.spdu import (
    Abort,
    Accept,
    Connect,
    ConnectAcceptItem,
    MinorSyncAck,
    PleaseTokens,
    TypedData,
    encode_tsdu,
)
from sessionlayer.spdu import FunctionalUnit as FU

# ------------------------------------------------------------ 1. Initial Serial Number


def cn_of(config: SessionConfig) -> Connect:
    m = SessionMachine("initiator", config)
    m.transport_connected()
    m.connect(b"hi")
    (tsdu,) = m.data_to_send()
    (cn,) = decode(tsdu)
    assert isinstance(cn, Connect)
    return cn


def test_cn_carries_initial_serial_zero_with_sync_units_by_default() -> None:
    for units in (FU.DUPLEX | FU.MINOR_SYNC, FU.DUPLEX | FU.MAJOR_SYNC, FU.DUPLEX | FU.RESYNC):
        cn = cn_of(SessionConfig(functional_units=units))
        assert cn.item is not None and cn.item.initial_serial == 0, units
    tsdu = encode_tsdu(cn_of(SessionConfig()))
    assert b"\x17\x010" in tsdu  # PI 23, LI 1, "0"


def test_cn_without_sync_units_or_with_activities_has_no_initial_serial() -> None:
    for units in (FU.DUPLEX, FU.HALF_DUPLEX | FU.ACTIVITY | FU.MAJOR_SYNC | FU.MINOR_SYNC):
        cn = cn_of(SessionConfig(functional_units=units))
        assert cn.item is None or cn.item.initial_serial is None, units


def test_configured_initial_serial_is_sent_as_before() -> None:
    cn = cn_of(SessionConfig(initial_serial=19219))
    assert cn.item is not None and cn.item.initial_serial == 19219


def accept_for(cn: Connect, config: SessionConfig | None = None) -> Accept:
    m = SessionMachine("responder", config)
    m.transport_connected()
    m.receive_tsdu(encode_tsdu(cn), now=0.0)
    assert isinstance(m.next_event(), ConnectIndication)
    m.accept()
    (tsdu,) = m.data_to_send()
    (ac,) = decode(tsdu)
    assert isinstance(ac, Accept)
    return ac


def test_ac_carries_initial_serial_when_the_cn_left_it_out() -> None:
    item = ConnectAcceptItem(version=2)  # a peer that does not send PI 23
    cn = Connect(item=item, requirements=int(DEFAULT_FUNCTIONAL_UNITS))
    ac = accept_for(cn)
    assert ac.item is not None and ac.item.initial_serial == 0


def test_ac_echoes_the_cn_initial_serial() -> None:
    item = ConnectAcceptItem(version=2, initial_serial=42)
    cn = Connect(item=item, requirements=int(DEFAULT_FUNCTIONAL_UNITS))
    ac = accept_for(cn)
    assert ac.item is not None and ac.item.initial_serial == 42


def test_ac_has_no_initial_serial_with_activity_management() -> None:
    units = FU.HALF_DUPLEX | FU.ACTIVITY | FU.MAJOR_SYNC | FU.MINOR_SYNC
    cn = Connect(item=ConnectAcceptItem(version=2), requirements=int(units))
    ac = accept_for(cn, SessionConfig(functional_units=units))
    assert ac.item is None or ac.item.initial_serial is None


def test_paired_machines_start_at_zero() -> None:
    p = SessionPair()
    p.connect()
    assert p.init.initial_serial == p.resp.initial_serial == 0
    assert p.init.vm == p.resp.vm == 0


# ------------------------------------------------------------ 2. Enclosure Item on every DT


SEGMENTING = SessionConfig(tsdu_max_send=1024, tsdu_max_receive=1024)


def test_unsegmented_dt_and_td_carry_enclosure_3_once_segmenting_is_agreed() -> None:
    p = SessionPair(SEGMENTING)
    p.connect()
    assert p.init.tsdu_max_send == 1024
    p.init.send_data(b"small")
    (tsdu,) = p.init.data_to_send()
    assert tsdu == b"\x01\x00\x01\x03\x19\x01\x03small"  # GT, DT(PI 25 = 0x03), data
    p.resp.receive_tsdu(tsdu, now=0.0)
    assert p.resp.events() == [DataIndication(b"small")]
    p.init.send_typed_data(b"typed")
    (tsdu,) = p.init.data_to_send()
    (td,) = decode(tsdu)
    assert isinstance(td, TypedData) and td.enclosure == 3


def test_segmented_dt_still_marks_first_and_last() -> None:
    p = SessionPair(SEGMENTING)
    p.connect()
    p.init.send_data(bytes(3000))
    tsdus = p.init.data_to_send()
    flags = [decode(t)[-1].enclosure for t in tsdus]  # type: ignore[attr-defined]
    assert flags[0] == 1 and flags[-1] == 2 and set(flags[1:-1]) <= {0}
    assert all(len(t) <= 1024 for t in tsdus)


def test_without_segmenting_dt_has_no_enclosure() -> None:
    p = SessionPair()
    p.connect()
    p.init.send_data(b"x")
    assert p.init.data_to_send() == [DATA_PREFIX + b"x"]


def test_plain_data_is_false_whenever_a_tsdu_size_is_agreed() -> None:
    for config in (
        SessionConfig(functional_units=FU.DUPLEX, tsdu_max_send=512),
        SessionConfig(functional_units=FU.DUPLEX, tsdu_max_receive=512),
        SEGMENTING,
    ):
        p = SessionPair(config)
        p.connect()
        agreed = (p.init.tsdu_max_send, p.init.tsdu_max_receive)
        assert any(agreed), config
        assert not p.init.plain_data and not p.resp.plain_data, config


# ------------------------------------------------------------ 7a. segments: agreed, bounded


def test_enclosure_on_dt_without_segmenting_is_a_protocol_error() -> None:
    p = SessionPair()
    p.connect()
    p.resp.receive_tsdu(b"\x01\x00\x01\x03\x19\x01\x03data", now=0.0)
    (event,) = p.resp.events()
    assert isinstance(event, ProviderAbortIndication) and event.local
    assert event.reason == AbortReason.TRANSPORT_RELEASED | AbortReason.PROTOCOL_ERROR
    assert "no segmenting" in event.message
    assert p.resp.state == "STA16"


def test_reassembly_is_bounded_by_max_ssdu_size() -> None:
    config = SessionConfig(tsdu_max_send=1024, tsdu_max_receive=1024, max_ssdu_size=2000)
    p = SessionPair(config)
    p.connect()
    p.init.send_data(bytes(1900))
    p.pump()  # within the limit
    p.init.send_data(bytes(2100))
    tsdus = p.init.data_to_send()
    for tsdu in tsdus:
        p.resp.receive_tsdu(tsdu, now=0.0)
    events = p.resp.events()
    assert isinstance(events[-1], ProviderAbortIndication), events
    assert events[-1].reason == 0x11  # released | implementation restriction
    assert not any(isinstance(e, DataIndication) and len(e.data) == 2100 for e in events)
    (ab,) = decode(p.resp.data_to_send()[-1])
    assert isinstance(ab, Abort) and ab.transport_disconnect == 0x11


def test_default_max_ssdu_size_is_one_mebibyte() -> None:
    assert SessionConfig().max_ssdu_size == 1 << 20


# ------------------------------------------------------------ 3. MIA user data in PI 46

PT_MIA_46 = bytes.fromhex("0200 3208 2a0130 2e03") + b"ack"
PT_MIA_193 = bytes.fromhex("0200 3208 2a0130 c103") + b"ack"


def test_mia_user_data_is_sent_in_pi_46() -> None:
    (pt, mia) = decode(encode_tsdu(PleaseTokens(), MinorSyncAck(serial_number=0, user_data=b"ack")))
    assert encode_tsdu(pt, mia) == PT_MIA_46


def test_mia_user_data_is_accepted_in_pi_46_and_pgi_193() -> None:
    for tsdu in (PT_MIA_46, PT_MIA_193):
        (_, mia) = decode(tsdu)
        assert isinstance(mia, MinorSyncAck) and mia.user_data == b"ack"
    with pytest.raises(DecodeError, match="twice"):
        decode(bytes.fromhex("0200 3209 2a0130 2e01 61 c101 62"))


def test_minor_sync_confirm_carries_pi_46_user_data() -> None:
    p = SessionPair()
    p.connect()
    serial = p.init.minor_sync()
    p.pump()
    p.resp.minor_sync_response(serial, user_data=b"ack")
    (tsdu,) = p.resp.data_to_send()
    assert tsdu == PT_MIA_46
    p.init.receive_tsdu(PT_MIA_193, now=0.0)  # the other encoding works as well
    assert p.init.events() == [MinorSyncConfirm(0, b"ack")]
