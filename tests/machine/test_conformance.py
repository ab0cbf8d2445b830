"""Issue 9: defects found against an independent ISO 8327 implementation (protocol core)."""

from __future__ import annotations

import pytest
from tests.machine.helpers import SessionPair, decode

from sessionlayer.errors import AbortReason, DecodeError
from sessionlayer.machine import (
    DATA_PREFIX,
    DEFAULT_FUNCTIONAL_UNITS,
    CapabilityDataConfirm,
    CapabilityDataIndication,
    ConnectIndication,
    DataIndication,
    MinorSyncConfirm,
    ParameterError,
    ProviderAbortIndication,
    RefuseConfirm,
    ResyncConfirm,
    ResyncIndication,
    SessionConfig,
    SessionMachine,
)
from sessionlayer.spdu import (
    Abort,
    Accept,
    CapabilityDataAck,
    Connect,
    ConnectAcceptItem,
    GiveTokens,
    MinorSyncAck,
    MinorSyncPoint,
    PleaseTokens,
    Resynchronize,
    ResyncType,
    Token,
    TokenSetting,
    TypedData,
    Version,
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
    with pytest.raises(DecodeError, match="46 and 193 both appear"):
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


# ------------------------------------------------------------ 4. resync collisions


def test_a_winning_rs_is_flagged_as_a_collision() -> None:
    p = SessionPair()
    p.connect()
    p.init.resync(ResyncType.RESTART, serial=0)
    p.resp.resync(ResyncType.ABANDON)
    ev = p.pump()  # the two RS cross
    (ind,) = [e for e in ev["init"] if isinstance(e, ResyncIndication)]
    assert ind.collision and ind.type == ResyncType.ABANDON
    assert not any(isinstance(e, ResyncIndication) for e in ev["resp"])  # ours lost there
    p.init.resync_response()
    ev = p.pump()
    assert [type(e) for e in ev["resp"]] == [ResyncConfirm]
    assert p.init.state == p.resp.state == "STA713"


def test_an_rs_without_collision_is_not_flagged() -> None:
    p = SessionPair()
    p.connect()
    p.resp.resync(ResyncType.ABANDON)
    (ind,) = p.pump()["init"]
    assert isinstance(ind, ResyncIndication) and not ind.collision


HALF = SessionConfig(functional_units=FU.HALF_DUPLEX | FU.MINOR_SYNC | FU.RESYNC)


def test_rs_token_setting_00_is_the_session_initiator() -> None:
    p = SessionPair(HALF)
    p.connect()
    assert p.init.tokens_owned & Token.DATA
    # The session responder asks for a resync that gives it the data token: in the API
    # INITIATOR is the requestor; on the wire 01 is the session responder's side.
    p.resp.resync(ResyncType.SET, serial=5, tokens={Token.DATA: TokenSetting.INITIATOR})
    (tsdu,) = p.resp.data_to_send()
    rs = decode(tsdu)[-1]
    assert isinstance(rs, Resynchronize) and rs.token_setting is not None
    assert rs.token_setting & 0x03 == 0x01  # data token: the session responder
    p.init.receive_tsdu(tsdu, now=0.0)
    (ind,) = p.init.events()
    assert isinstance(ind, ResyncIndication)
    assert ind.tokens[Token.DATA] == TokenSetting.INITIATOR  # the requestor's side
    p.init.resync_response()
    p.pump()
    assert p.resp.tokens_owned & Token.DATA and not p.init.tokens_owned & Token.DATA


def test_ra_token_setting_00_is_the_session_initiator() -> None:
    p = SessionPair(HALF)
    p.connect()
    choice = {Token.DATA: TokenSetting.CALLED_CHOICE, Token.MINOR_SYNC: TokenSetting.INITIATOR}
    p.resp.resync(ResyncType.SET, serial=5, tokens=choice)
    p.pump()
    p.init.resync_response(tokens=Token.DATA)  # the session initiator takes the data token
    (tsdu,) = p.init.data_to_send()
    ra = decode(tsdu)[-1]
    assert ra.token_setting is not None and ra.token_setting & 0x03 == 0x00  # type: ignore[attr-defined]
    p.resp.receive_tsdu(tsdu, now=0.0)
    (cnf,) = p.resp.events()
    assert isinstance(cnf, ResyncConfirm)
    assert p.init.tokens_owned & Token.DATA and not p.resp.tokens_owned & Token.DATA
    assert p.resp.tokens_owned & Token.MINOR_SYNC


# ------------------------------------------------------------ 5. CDA with user data


def test_capability_data_is_answered_with_user_data() -> None:
    units = FU.HALF_DUPLEX | FU.ACTIVITY | FU.CAPABILITY_DATA | FU.MAJOR_SYNC | FU.MINOR_SYNC
    p = SessionPair(SessionConfig(functional_units=units))
    p.connect()
    p.init.send_capability_data(b"q")
    (ind,) = p.pump()["resp"]
    assert isinstance(ind, CapabilityDataIndication)
    reply = bytes(512)
    p.resp.capability_data_response(user_data=reply)
    (tsdu,) = p.resp.data_to_send()
    cda = decode(tsdu)[-1]
    assert isinstance(cda, CapabilityDataAck) and cda.user_data == reply
    assert tsdu.find(b"\xc1\xff\x02\x00") > 0  # PGI 193, LI 512
    p.init.receive_tsdu(tsdu, now=0.0)
    assert p.init.events() == [CapabilityDataConfirm(reply)]
    # Version 2: more than 512 (ISODE's SX_CDASIZE applies below version 2 only); version 1
    # keeps 512.
    p.init.send_capability_data(bytes(600))
    assert p.pump()["resp"] == [CapabilityDataIndication(bytes(600))]
    p.resp.capability_data_response(user_data=bytes(2000))
    assert p.pump()["init"] == [CapabilityDataConfirm(bytes(2000))]
    v1 = SessionPair(SessionConfig(functional_units=units, versions=Version.V1))
    v1.connect()
    assert v1.init.version == 1
    with pytest.raises(ParameterError, match="at most 512 in version 1"):
        v1.init.send_capability_data(bytes(513))
    v1.init.send_capability_data(b"q")
    v1.pump()
    with pytest.raises(ParameterError, match="at most 512 in version 1"):
        v1.resp.capability_data_response(user_data=bytes(513))


# ------------------------------------------------------------ 6. AC without OA


def test_ac_instead_of_oa_is_a_clear_provider_abort() -> None:
    m = SessionMachine("initiator")
    m.transport_connected()
    m.connect(bytes(12000))  # over 10240: CN with Data Overflow, then wait for OA
    (cn_tsdu,) = m.data_to_send()
    (cn,) = decode(cn_tsdu)
    assert isinstance(cn, Connect) and cn.data_overflow and m.state == "STA02B"
    ac = Accept(item=ConnectAcceptItem(version=2), requirements=int(DEFAULT_FUNCTIONAL_UNITS))
    m.receive_tsdu(encode_tsdu(ac), now=0.0)  # a responder that ignores PI 60
    (event,) = m.events()
    assert isinstance(event, ProviderAbortIndication) and event.local
    assert "does not implement connect data overflow" in event.message
    assert "without OA" in event.message
    assert m.state == "STA16" and m.get_timer() == m.config.abort_timeout
    (ab,) = decode(m.data_to_send()[-1])
    assert isinstance(ab, Abort)


# ------------------------------------------------------------ 7b. CDO collection bounded


def test_connect_data_over_the_limit_is_refused_with_implementation_restriction() -> None:
    p = SessionPair(SessionConfig(), SessionConfig(max_connect_data=15000))
    p.init.transport_connected()
    p.resp.transport_connected()
    p.init.connect(bytes(20000))
    ev = p.pump()
    assert ev["resp"] == []  # no S-CONNECT indication
    (refused,) = ev["init"]
    assert isinstance(refused, RefuseConfirm) and refused.reason == 0x86
    assert p.resp.state == "STA16"


def test_connect_data_within_the_limit_is_indicated_whole() -> None:
    p = SessionPair(SessionConfig(), SessionConfig(max_connect_data=20000))
    p.init.transport_connected()
    p.resp.transport_connected()
    p.init.connect(bytes(range(200)) * 100)
    (ind,) = p.pump()["resp"]
    assert isinstance(ind, ConnectIndication) and ind.user_data == bytes(range(200)) * 100


def test_max_connect_data_default_and_floor() -> None:
    assert SessionConfig().max_connect_data == 10240 + 65536
    with pytest.raises(ValueError):
        SessionConfig(max_connect_data=10000)


# ------------------------------------------------------------ 7c. serial number checks


def rs(kind: ResyncType, serial: int) -> bytes:
    return encode_tsdu(GiveTokens(), Resynchronize(resync_type=int(kind), serial_number=serial))


def test_restart_past_vm_is_accepted() -> None:
    """Table A-4, RS SPDU restart: sn >= V(R) only (the sender may have set points this end
    discarded, see test_resync_serials.py)."""
    p = SessionPair()
    p.connect()
    p.init.minor_sync()
    p.pump()  # V(M) = 1 on both sides
    p.resp.receive_tsdu(rs(ResyncType.RESTART, 2), now=0.0)
    (event,) = p.resp.events()
    assert isinstance(event, ResyncIndication) and event.serial == 2
    assert p.resp.state == "STA11A"


def test_restart_within_vr_and_vm_is_accepted() -> None:
    p = SessionPair()
    p.connect()
    p.init.minor_sync()
    p.pump()
    p.resp.receive_tsdu(rs(ResyncType.RESTART, 1), now=0.0)
    (event,) = p.resp.events()
    assert isinstance(event, ResyncIndication) and event.serial == 1


def at_the_top() -> SessionPair:
    p = SessionPair()
    p.connect()
    p.init.resync(ResyncType.SET, serial=999999)
    p.pump()
    p.resp.resync_response()
    p.pump()
    assert p.init.vm == p.resp.vm == 999999
    return p


def test_a_peer_pushing_vm_past_999999_gets_a_protocol_error_ab() -> None:
    p = at_the_top()
    mip = encode_tsdu(GiveTokens(), MinorSyncPoint(serial_number=999999))
    p.resp.receive_tsdu(mip, now=0.0)
    (event,) = p.resp.events()
    assert isinstance(event, ProviderAbortIndication)
    assert event.reason == AbortReason.TRANSPORT_RELEASED | AbortReason.PROTOCOL_ERROR
    assert p.resp.vm == 999999


def test_a_local_sync_past_999999_is_a_parameter_error() -> None:
    p = at_the_top()
    with pytest.raises(ParameterError):
        p.init.minor_sync()
    with pytest.raises(ParameterError):
        p.init.major_sync()
    with pytest.raises(ParameterError):
        p.init.resync(ResyncType.SET, serial=1000000)
    assert p.init.vm == 999999 and p.init.data_to_send() == []
