"""Version-2 functional units through two paired machines: symmetric synchronize, data
separation, connect data overflow (CDO/OA), and exception reports (ER) sent by the SPM."""

from __future__ import annotations

import pytest

from sessionlayer.machine import (
    ALL_FUNCTIONAL_UNITS,
    SYMMETRIC_FUNCTIONAL_UNITS,
    ConnectConfirm,
    ConnectIndication,
    DataIndication,
    FunctionalUnitError,
    MajorSyncConfirm,
    MajorSyncIndication,
    MinorSyncConfirm,
    MinorSyncIndication,
    MinorSyncSuperseded,
    ParameterError,
    ProviderAbortIndication,
    ProviderExceptionReportIndication,
    RefuseConfirm,
    ResyncConfirm,
    ResyncIndication,
    SessionConfig,
    SessionMachine,
    TokenGiveIndication,
    UserAbortIndication,
)
from sessionlayer.spdu import (
    Abort,
    Accept,
    Connect,
    ConnectDataOverflow,
    DataTransfer,
    ExceptionReport,
    FunctionalUnit,
    GiveTokens,
    MinorSyncPoint,
    OverflowAccept,
    PleaseTokens,
    Prepare,
    Resynchronize,
    ResynchronizeAck,
    ResyncType,
    Token,
    Version,
    decode_tsdu,
    encode,
    encode_tsdu,
)

from .helpers import SessionPair, decode, kinds

FU = FunctionalUnit
SS = SYMMETRIC_FUNCTIONAL_UNITS
#: Half-duplex with exceptions, without activities: where the SPM may send ER.
HALF = ALL_FUNCTIONAL_UNITS & ~FU.ACTIVITY & ~FU.CAPABILITY_DATA


def pair(**kw: object) -> SessionPair:
    kw.setdefault("functional_units", SS)
    kw.setdefault("initial_serial", 5)
    kw.setdefault("second_initial_serial", 50)
    p = SessionPair(SessionConfig(**kw))  # type: ignore[arg-type]
    p.connect()
    return p


def flows(m: SessionMachine) -> tuple[int, int, int, int, int, int]:
    return (m.vas, m.vms, m.vrs, m.var, m.vmr, m.vrr)


def assert_flows_agree(p: SessionPair) -> None:
    i, r = flows(p.init), flows(p.resp)
    assert i[:3] == r[3:] and i[3:] == r[:3], (i, r)


def sent_by(p: SessionPair, direction: str) -> list[object]:
    return [s for d, t in p.wire if d == direction for s in decode(t)]


# ---------------------------------------------------------------- negotiation


def test_symmetric_sync_is_negotiated_with_both_initial_serials() -> None:
    p = pair()
    assert p.init.functional_units == p.resp.functional_units == SS
    assert p.init.version == 2
    cn = next(s for s in sent_by(p, "i->r") if isinstance(s, Connect))
    ac = next(s for s in sent_by(p, "r->i") if isinstance(s, Accept))
    assert cn.item is not None and ac.item is not None
    assert (cn.item.initial_serial, cn.item.second_initial_serial) == (5, 50)
    assert (ac.item.initial_serial, ac.item.second_initial_serial) == (5, 50)
    # PI 23 numbers the initiator's sending flow, PI 55 the responder's.
    assert (p.init.vms, p.init.vmr) == (5, 50) and (p.resp.vms, p.resp.vmr) == (50, 5)
    assert p.resp.second_initial_serial == p.init.second_initial_serial == 50
    assert p.init.tokens_available == Token.MAJOR_ACTIVITY  # no minor-sync token
    assert_flows_agree(p)


@pytest.mark.parametrize(
    ("proposed", "responder", "versions", "selected"),
    [
        # Version 1 only: neither unit exists.
        (SS, SS, Version.V1, SS & ~FU.SYMMETRIC_SYNC & ~FU.DATA_SEPARATION),
        # Data separation only with symmetric synchronize.
        (FU.DUPLEX | FU.DATA_SEPARATION, FU.DUPLEX | FU.DATA_SEPARATION, Version.V2, FU.DUPLEX),
        # The responder may drop them.
        (SS, SS & ~FU.SYMMETRIC_SYNC, Version.V2, SS & ~FU.SYMMETRIC_SYNC & ~FU.DATA_SEPARATION),
        (SS, SS & ~FU.DATA_SEPARATION, Version.V2, SS & ~FU.DATA_SEPARATION),
        # Symmetric synchronize replaces minor synchronize.
        (SS | FU.MINOR_SYNC, SS | FU.MINOR_SYNC, Version.V2, SS),
    ],
)
def test_negotiation_rules(
    proposed: FunctionalUnit, responder: FunctionalUnit, versions: Version, selected: FU
) -> None:
    p = SessionPair(
        SessionConfig(functional_units=proposed, versions=versions),
        SessionConfig(functional_units=responder, versions=versions),
    )
    p.connect()
    assert p.init.functional_units == p.resp.functional_units == selected


def test_responder_user_may_narrow_away_symmetric_sync() -> None:
    p = SessionPair(SessionConfig(functional_units=SS))
    p.connect(functional_units=SS & ~FU.SYMMETRIC_SYNC)
    assert not p.init.functional_units & (FU.SYMMETRIC_SYNC | FU.DATA_SEPARATION)
    assert p.init.functional_units == p.resp.functional_units


# ---------------------------------------------------------------- symmetric synchronize


def test_each_side_sets_and_confirms_its_own_minor_sync_points() -> None:
    p = pair()
    assert p.init.minor_sync(user_data=b"i") == 5
    assert p.resp.minor_sync() == 50  # no token needed, at the same time
    assert p.resp.minor_sync(confirm=False) == 51
    ev = p.pump()
    assert ev["resp"] == [MinorSyncIndication(5, True, b"i")]
    assert ev["init"] == [MinorSyncIndication(50, True, None), MinorSyncIndication(51, False, None)]
    mips = [s for s in sent_by(p, "r->i") if isinstance(s, MinorSyncPoint)]
    assert [m.serial_number for m in mips] == [50, 51]  # PI 42: the sender's V(Ms)
    p.init.minor_sync_response(51, b"ok")
    p.resp.minor_sync_response(5)
    ev = p.pump()
    # (The MIA for 51 confirms 50 too, which asked for it.)
    assert ev == {"init": [MinorSyncConfirm(5, None)],
                  "resp": [MinorSyncConfirm(50, None), MinorSyncConfirm(51, b"ok")]}  # fmt: skip
    assert flows(p.init) == (6, 6, 0, 52, 52, 0)
    assert_flows_agree(p)


def test_minor_sync_response_checks_the_receiving_flow() -> None:
    p = pair()
    p.resp.minor_sync()
    p.pump()
    with pytest.raises(ParameterError):
        p.init.minor_sync_response(5)  # a point of our own sending flow
    assert p.init.data_to_send() == []


def test_major_sync_confirms_both_flows_even_across_a_minor_sync() -> None:
    p = pair()
    p.resp.minor_sync()
    assert p.init.major_sync(b"M") == 5
    ev = p.pump()  # the MIP and the MAP crossed
    assert ev["init"] == [MinorSyncIndication(50, True, None)]
    # (the MAP settles the responder's point: no MIA will come for it)
    assert ev["resp"] == [MinorSyncSuperseded(50, 5), MajorSyncIndication(5, b"M")]
    p.resp.major_sync_response()
    assert p.pump()["init"] == [MajorSyncConfirm(5, None)]
    assert flows(p.init) == (6, 6, 6, 51, 51, 51)
    assert_flows_agree(p)


def resync_pair() -> SessionPair:
    p = pair()
    p.init.minor_sync()
    p.resp.minor_sync()
    p.resp.minor_sync()
    p.pump()
    return p


@pytest.mark.parametrize(
    ("kind", "serial", "second", "expected"),
    [
        (ResyncType.RESTART, 5, 50, (5, 50)),
        (ResyncType.ABANDON, None, None, (6, 52)),
        (ResyncType.SET, 100, 200, (100, 200)),
    ],
)
def test_resync_carries_both_serial_numbers(
    kind: ResyncType, serial: int | None, second: int | None, expected: tuple[int, int]
) -> None:
    p = resync_pair()
    p.init.resync(kind, serial, second_serial=second)
    (rs,) = [s for s in decode(p.init.data_to_send()[0]) if isinstance(s, Resynchronize)]
    assert (rs.resync_type, rs.second_resync_type) == (kind, kind)  # PI 27, PI 53
    assert (rs.serial_number, rs.second_serial_number) == expected  # PI 42, PI 54
    p.resp.receive_tsdu(encode_tsdu(GiveTokens(), rs), now=0.0)
    (ind,) = p.resp.events()
    # Seen from the responder: its sending flow is the requestor's receiving flow.
    assert isinstance(ind, ResyncIndication)
    assert (ind.serial, ind.second_serial) == (expected[1], expected[0])
    p.resp.resync_response()
    (ra,) = [s for s in decode(p.resp.data_to_send()[0]) if isinstance(s, ResynchronizeAck)]
    assert (ra.serial_number, ra.second_serial_number) == (expected[1], expected[0])
    p.init.receive_tsdu(encode_tsdu(PleaseTokens(), ra), now=0.0)
    assert p.init.events() == [ResyncConfirm(expected[0], Token.MAJOR_ACTIVITY, None, expected[1])]
    assert (p.init.vms, p.init.vmr) == expected
    assert p.init.vrs == p.init.vrr == 0  # restart keeps V(R), abandon and set clear it
    assert_flows_agree(p)


def test_resync_may_treat_each_flow_differently() -> None:
    p = resync_pair()
    p.init.resync(ResyncType.RESTART, 5, second_type=ResyncType.ABANDON)
    p.pump()
    p.resp.resync_response()
    (cnf,) = p.pump()["init"]
    assert isinstance(cnf, ResyncConfirm) and (cnf.serial, cnf.second_serial) == (5, 52)
    assert_flows_agree(p)


def test_second_serial_numbers_need_symmetric_sync() -> None:
    p = SessionPair()
    p.connect()
    with pytest.raises(ParameterError):
        p.init.resync(ResyncType.SET, 1, second_serial=3)


@pytest.mark.parametrize(
    ("i_kind", "r_kind", "winner"),
    [
        (ResyncType.RESTART, ResyncType.RESTART, "init"),
        (ResyncType.SET, ResyncType.ABANDON, "resp"),
        (ResyncType.ABANDON, ResyncType.SET, "init"),
    ],
)
def test_symmetric_resync_collision(i_kind: ResyncType, r_kind: ResyncType, winner: str) -> None:
    p = resync_pair()
    p.init.resync(i_kind, 5, second_serial=50)
    p.resp.resync(r_kind, 50, second_serial=5)
    ev = p.pump()
    loser = "resp" if winner == "init" else "init"
    assert ev[winner] == [] and isinstance(ev[loser][0], ResyncIndication)
    getattr(p, loser).resync_response()
    assert isinstance(p.pump()[winner][0], ResyncConfirm)
    assert p.init.state == p.resp.state == "STA713"
    assert_flows_agree(p)


# ---------------------------------------------------------------- data separation


def test_data_separation_sync_point() -> None:
    p = pair()
    assert p.init.minor_sync(data_separation=True) == 5
    (mip,) = [s for s in decode(p.init.data_to_send()[0]) if isinstance(s, MinorSyncPoint)]
    assert mip.sync_type == 0x02  # Sync Type Item bit 2: data separation
    p.resp.receive_tsdu(encode_tsdu(GiveTokens(), mip), now=0.0)
    assert p.resp.events() == [MinorSyncIndication(5, True, None, data_separation=True)]


def test_data_separation_needs_the_unit() -> None:
    p = pair(functional_units=SS & ~FU.DATA_SEPARATION)
    with pytest.raises(FunctionalUnitError):
        p.init.minor_sync(data_separation=True)
    mip_d = MinorSyncPoint(sync_type=2, serial_number=5)
    p.resp.receive_tsdu(encode_tsdu(GiveTokens(), mip_d), now=0.0)
    assert p.resp.state == "STA16"  # MIP-d without the unit: a protocol error


def test_prepare_does_not_discard_after_an_unconfirmed_separation_point() -> None:
    p = pair(transport_expedited=True)
    p.init.minor_sync(data_separation=True)
    p.pump()
    p.init.resync(ResyncType.ABANDON)
    (pr,) = p.init.expedited_to_send()
    p.resp.receive_expedited(pr, now=0.0)
    assert p.resp.state == "STA713"  # p80: nothing discarded (STA15B without the point)
    p.pump()
    assert p.resp.state == "STA11A"  # the RS itself arrives as usual


def test_data_received_during_resync_is_kept_after_our_separation_point() -> None:
    p = pair()
    p.resp.minor_sync(data_separation=True)
    p.resp.resync(ResyncType.ABANDON)
    p.resp.receive_tsdu(encode_tsdu(GiveTokens(), DataTransfer(user_data=b"keep")), now=0.0)
    assert p.resp.events() == [DataIndication(b"keep")]  # p81: V(Ado) >= V(As)
    q = pair()
    q.resp.resync(ResyncType.ABANDON)
    q.resp.receive_tsdu(encode_tsdu(GiveTokens(), DataTransfer(user_data=b"drop")), now=0.0)
    assert q.resp.events() == []  # discarded, as without data separation


# ---------------------------------------------------------------- connect data overflow


def overflow_pair(data: bytes, **kw: object) -> SessionPair:
    p = SessionPair(SessionConfig(**kw))  # type: ignore[arg-type]
    p.init.transport_connected()
    p.resp.transport_connected()
    p.init.connect(user_data=data)
    return p


def test_connect_data_overflow_segmented() -> None:
    data = bytes(range(256)) * 120  # 30720 octets
    p = overflow_pair(data, tsdu_max_send=4096, tsdu_max_receive=4096)
    assert p.init.state == "STA02B"
    (cn_tsdu,) = p.init.data_to_send()
    (cn,) = decode_tsdu(cn_tsdu)
    assert isinstance(cn, Connect) and cn.data_overflow == 1
    assert cn.user_data == data[:10240]
    assert b"\x3c\x01\x01" in cn_tsdu  # PI 60 Data Overflow = 1
    assert b"\xc2\xff\x28\x00" in cn_tsdu  # PGI 194, 10240 octets
    p.resp.receive_tsdu(cn_tsdu, now=0.0)
    assert p.resp.state == "STA01D" and p.resp.events() == []
    (oa_tsdu,) = p.resp.data_to_send()
    (oa,) = decode_tsdu(oa_tsdu)
    assert isinstance(oa, OverflowAccept) and oa.version == 2 and oa.tsdu_max_size == (4096, 4096)
    p.init.receive_tsdu(oa_tsdu, now=0.0)
    assert p.init.state == "STA02A"
    cdos = p.init.data_to_send()
    assert len(cdos) == 6 and all(len(t) <= 4096 for t in cdos)
    pieces = [decode_tsdu(t)[0] for t in cdos]
    assert all(isinstance(c, ConnectDataOverflow) for c in pieces)
    assert [c.enclosure for c in pieces] == [1, 0, 0, 0, 0, 2]  # type: ignore[attr-defined]
    for tsdu in cdos:
        p.resp.receive_tsdu(tsdu, now=0.0)
    (ind,) = p.resp.events()
    assert isinstance(ind, ConnectIndication) and ind.user_data == data
    assert p.resp.state == "STA08" and p.resp.peer_user_data == data
    p.resp.accept(b"welcome")
    assert isinstance(p.pump()["init"][0], ConnectConfirm)
    assert p.init.state == p.resp.state == "STA713"


def test_connect_data_overflow_in_one_cdo_and_before_the_transport() -> None:
    data = b"x" * 12000
    p = SessionPair()
    p.init.connect(user_data=data)
    assert p.init.state == "STA01B"
    p.init.transport_connected()
    assert p.init.state == "STA02B"
    ev = p.pump()
    assert isinstance(ev["resp"][0], ConnectIndication) and ev["resp"][0].user_data == data
    (cdo,) = [s for s in sent_by(p, "i->r") if isinstance(s, ConnectDataOverflow)]
    assert cdo.enclosure == 3 and cdo.user_data == data[10240:]


def test_connect_data_overflow_needs_version_2() -> None:
    m = SessionMachine("initiator", SessionConfig(versions=Version.V1))
    m.transport_connected()
    with pytest.raises(ParameterError):
        m.connect(user_data=bytes(11000))
    assert m.state == "STA01" and m.data_to_send() == []
    p = overflow_pair(bytes(11000), versions=Version.V1 | Version.V2)
    p.resp = SessionMachine("responder", SessionConfig(versions=Version.V1))
    assert p.pump()["init"] == [RefuseConfirm(0x84, None)]


def test_refuse_or_abort_while_overflowing() -> None:
    p = overflow_pair(bytes(20000))
    p.pump()
    p.resp.refuse(user_data=b"too much", now=0.0)
    assert p.pump()["init"] == [RefuseConfirm(2, b"too much")]
    q = overflow_pair(bytes(20000))
    q.init.abort(b"never mind", now=0.0)
    assert q.init.state == "STA16"
    q.pump()
    assert q.resp.is_closed and q.resp.events() == []


def test_data_before_the_last_cdo_is_a_protocol_error() -> None:
    p = overflow_pair(bytes(20000), tsdu_max_send=2048)
    p.resp.receive_tsdu(p.init.data_to_send()[0], now=0.0)
    p.init.receive_tsdu(p.resp.data_to_send()[0], now=0.0)
    first = p.init.data_to_send()[0]
    p.resp.receive_tsdu(first, now=0.0)
    p.resp.receive_tsdu(encode_tsdu(GiveTokens(), DataTransfer(user_data=b"x")), now=0.0)
    assert p.resp.state == "STA16"
    (ab,) = decode(p.resp.data_to_send()[0])
    assert isinstance(ab, Abort) and ab.transport_disconnect == 0x05


# ---------------------------------------------------------------- exception reports (ER)


def er_pair(**kw: object) -> SessionPair:
    """Half-duplex with exceptions; the initiator holds every token, the responder reports."""
    kw.setdefault("functional_units", HALF)
    kw.setdefault("exception_reports", True)
    kw.setdefault("initial_serial", 1)
    p = SessionPair(SessionConfig(**kw))  # type: ignore[arg-type]
    p.connect()
    return p


def bad_mip(p: SessionPair) -> bytes:
    """A MIP with the wrong serial number, as if the initiator had sent it."""
    return encode_tsdu(GiveTokens(), MinorSyncPoint(serial_number=99))


def report(p: SessionPair) -> None:
    p.resp.receive_tsdu(bad_mip(p), now=0.0)
    assert p.resp.state == "STA20"
    (ev,) = p.resp.events()
    assert ev == ProviderExceptionReportIndication(
        encode(MinorSyncPoint(serial_number=99))[:9], True
    )
    (tsdu,) = p.resp.data_to_send()
    pt, er = decode(tsdu)
    assert isinstance(pt, PleaseTokens) and isinstance(er, ExceptionReport)
    assert er.reflect == ev.reflect
    p.init.receive_tsdu(tsdu, now=0.0)
    assert p.init.state == "STA19"
    (ind,) = p.init.events()
    assert isinstance(ind, ProviderExceptionReportIndication) and not ind.local


def test_er_then_recovery_by_resync() -> None:
    p = er_pair()
    report(p)
    p.init.resync(ResyncType.ABANDON)
    ev = p.pump()
    assert isinstance(ev["resp"][0], ResyncIndication)
    p.resp.resync_response()
    assert isinstance(p.pump()["init"][0], ResyncConfirm)
    assert p.init.state == p.resp.state == "STA713" and p.init.vm == p.resp.vm


def test_er_then_recovery_by_the_reporting_side_resync() -> None:
    p = er_pair()
    report(p)
    p.resp.resync(ResyncType.SET, 7)
    p.pump()
    p.init.resync_response()
    p.pump()
    assert p.init.state == p.resp.state == "STA713" and p.init.vm == p.resp.vm == 7


def test_er_then_recovery_by_abort() -> None:
    p = er_pair()
    report(p)
    p.resp.abort(b"give up", now=0.0)
    assert p.pump()["init"] == [UserAbortIndication(b"give up")]
    assert p.init.is_closed and p.resp.state == "STA16"


def test_er_then_recovery_by_giving_the_data_token() -> None:
    p = er_pair()
    report(p)
    p.init.give_tokens(Token.DATA)
    assert p.pump()["resp"] == [TokenGiveIndication(Token.DATA)]
    assert p.init.state == p.resp.state == "STA713"


def test_er_is_off_by_default_and_never_sent_by_the_data_token_holder() -> None:
    p = er_pair(exception_reports=False)
    p.resp.receive_tsdu(bad_mip(p), now=0.0)
    assert p.resp.state == "STA16"
    (ab,) = decode(p.resp.data_to_send()[0])
    assert isinstance(ab, Abort) and ab.transport_disconnect == 0x05
    q = er_pair()
    q.init.receive_tsdu(encode_tsdu(PleaseTokens(), ResynchronizeAck(serial_number=0)), now=0.0)
    assert q.init.state == "STA16"  # the initiator holds the data token: AB
    assert isinstance(q.init.events()[0], ProviderAbortIndication)


def test_er_in_discarding_state_and_prepare() -> None:
    p = er_pair(transport_expedited=True)
    report(p)
    p.resp.receive_tsdu(encode_tsdu(GiveTokens(), DataTransfer(user_data=b"late")), now=0.0)
    assert p.resp.events() == [] and p.resp.state == "STA20"  # waiting: data discarded
    p.init.resync(ResyncType.ABANDON)
    (pr,) = p.init.expedited_to_send()
    assert kinds(pr) == ["PR"]
    p.resp.receive_expedited(encode_tsdu(Prepare(prepare_type=2)), now=0.0)
    assert p.resp.state == "STA15B"
