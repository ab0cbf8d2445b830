"""Every primitive of every functional unit, through two paired machines."""

from __future__ import annotations

import pytest

from sessionlayer.errors import AbortReason
from sessionlayer.machine import (
    ALL_FUNCTIONAL_UNITS,
    DEFAULT_FUNCTIONAL_UNITS,
    ActivityDiscardConfirm,
    ActivityDiscardIndication,
    ActivityEndConfirm,
    ActivityEndIndication,
    ActivityInterruptConfirm,
    ActivityInterruptIndication,
    ActivityResumeIndication,
    ActivityStartIndication,
    CapabilityDataConfirm,
    CapabilityDataIndication,
    ConnectIndication,
    ControlGiveIndication,
    DataIndication,
    ExpeditedDataIndication,
    MajorSyncConfirm,
    MajorSyncIndication,
    MinorSyncConfirm,
    MinorSyncIndication,
    RefuseConfirm,
    ReleaseConfirm,
    ReleaseIndication,
    ResyncConfirm,
    ResyncIndication,
    SessionConfig,
    SessionMachine,
    TokenGiveIndication,
    TokenPleaseIndication,
    TypedDataIndication,
    UserAbortIndication,
    UserExceptionReportIndication,
)
from sessionlayer.spdu import (
    ConnectionId,
    DataTransfer,
    FunctionalUnit,
    GiveTokens,
    Prepare,
    ResyncType,
    Token,
    TokenSetting,
    Version,
    decode_tsdu,
    encode_tsdu,
)
from sessionlayer.spdu.types import Resynchronize

from .helpers import BASIC, SessionPair, kinds, pair

FU = FunctionalUnit
ALL_TOKENS = Token.DATA | Token.MINOR_SYNC | Token.MAJOR_ACTIVITY | Token.RELEASE


# ---------------------------------------------------------------- kernel


def test_connect_negotiates_defaults() -> None:
    p = pair(initial_serial=7, functional_units=ALL_FUNCTIONAL_UNITS)
    assert p.init.functional_units == p.resp.functional_units
    assert p.init.version == p.resp.version == 2
    assert p.init.tokens_owned == ALL_TOKENS and p.resp.tokens_owned == 0
    assert p.init.vm == p.resp.vm == 7


def test_refuse_and_connection_ids() -> None:
    p = SessionPair()
    p.init.transport_connected()
    p.init.connect(user_data=b"x", connection_id=ConnectionId(calling_ref=b"me"))
    ev = p.pump()["resp"][0]
    assert isinstance(ev, ConnectIndication) and ev.connection_id is not None
    assert p.resp.peer_connection_id == ConnectionId(calling_ref=b"me")
    p.resp.refuse(user_data=b"no", now=0.0)
    ev2 = p.pump()["init"]
    assert ev2 == [RefuseConfirm(2, b"no")]
    assert p.init.is_closed and p.init.wants_transport_disconnect
    assert p.resp.state == "STA16"
    p.resp.handle_timer(p.resp.get_timer() or 0.0)
    assert p.resp.wants_transport_disconnect and p.resp.is_closed


def test_connect_before_transport_waits_for_it() -> None:
    m = SessionMachine("initiator")
    m.connect()
    assert m.state == "STA01B" and m.data_to_send() == []
    m.transport_connected()
    assert m.state == "STA02A" and kinds(m.data_to_send()[0]) == ["CN"]


def test_version_mismatch_is_refused_by_the_spm() -> None:
    p = SessionPair(SessionConfig(versions=Version.V1), SessionConfig(versions=Version.V2))
    p.init.transport_connected()
    p.init.connect()
    ev = p.pump()
    assert ev["resp"] == []
    assert ev["init"] == [RefuseConfirm(0x84, None)]


def test_duplex_data_both_ways_and_orderly_release() -> None:
    p = pair(functional_units=FU.DUPLEX)
    p.init.send_data(b"a")
    p.resp.send_data(b"b")
    ev = p.pump()
    assert ev == {"init": [DataIndication(b"b")], "resp": [DataIndication(b"a")]}
    p.init.release(b"bye")
    assert p.pump()["resp"] == [ReleaseIndication(b"bye")]
    p.resp.release_response(True, b"ok", now=0.0)
    assert p.pump()["init"] == [ReleaseConfirm(True, b"ok")]
    assert p.init.wants_transport_disconnect and p.init.is_closed
    assert p.resp.state == "STA16"
    p.resp.transport_disconnected()
    assert p.resp.is_closed and p.resp.events() == []


def test_user_abort() -> None:
    p = pair()
    p.resp.abort(b"stop", now=0.0)
    ev = p.pump()
    assert ev["init"] == [UserAbortIndication(b"stop")]
    assert p.init.is_closed and p.resp.state == "STA16"
    t = p.resp.get_timer()
    assert t is not None
    p.resp.handle_timer(t - 1)
    assert not p.resp.wants_transport_disconnect
    p.resp.handle_timer(t)
    assert p.resp.wants_transport_disconnect and p.resp.is_closed


def test_transport_loss_is_a_provider_abort() -> None:
    p = pair()
    p.init.transport_disconnected()
    (ev,) = p.init.events()
    assert type(ev).__name__ == "ProviderAbortIndication"
    assert p.init.is_closed


# ---------------------------------------------------------------- half-duplex, tokens


def test_half_duplex_data_token_and_please() -> None:
    p = pair()
    p.init.send_data(b"x" * 1000)
    assert p.pump()["resp"] == [DataIndication(b"x" * 1000)]
    p.resp.please_tokens(Token.DATA, b"pls")
    assert p.pump()["init"] == [TokenPleaseIndication(Token.DATA, b"pls")]
    p.init.give_tokens(Token.DATA)
    assert p.pump()["resp"] == [TokenGiveIndication(Token.DATA)]
    assert p.resp.tokens_owned == Token.DATA
    p.resp.send_data(b"back")
    assert p.pump()["init"] == [DataIndication(b"back")]


def test_crossing_token_requests() -> None:
    p = pair()
    p.init.give_tokens(Token.MINOR_SYNC)
    p.pump()
    # Each side asks for what the other holds, at the same time.
    p.init.please_tokens(Token.MINOR_SYNC)
    p.resp.please_tokens(Token.DATA)
    ev = p.pump()
    assert ev["init"] == [TokenPleaseIndication(Token.DATA, None)]
    assert ev["resp"] == [TokenPleaseIndication(Token.MINOR_SYNC, None)]
    p.init.give_tokens(Token.DATA)
    p.resp.give_tokens(Token.MINOR_SYNC)
    p.pump()
    assert p.init.tokens_owned == ALL_TOKENS & ~Token.DATA
    assert p.resp.tokens_owned == Token.DATA


def test_give_control() -> None:
    p = pair(functional_units=ALL_FUNCTIONAL_UNITS)
    p.init.give_control()
    assert p.init.state == "STA18"
    ev = p.pump()
    assert ev["resp"] == [ControlGiveIndication()]
    assert p.resp.tokens_owned == ALL_TOKENS and p.init.tokens_owned == 0
    assert p.init.state == "STA713"


def test_negotiated_release_refused_with_nf() -> None:
    p = pair()
    p.init.release()
    p.pump()
    p.resp.release_response(False, b"not yet", now=0.0)
    assert p.pump()["init"] == [ReleaseConfirm(False, b"not yet")]
    assert p.init.state == p.resp.state == "STA713"


def test_release_collision_duplex() -> None:
    p = pair(functional_units=FU.DUPLEX)
    p.init.release(b"i")
    p.resp.release(b"r")
    ev = p.pump()
    assert ev["init"] == [ReleaseIndication(b"r")]
    assert ev["resp"] == []
    p.init.release_response(True, b"i-ok", now=0.0)
    ev = p.pump()
    assert ev["resp"] == [ReleaseConfirm(True, b"i-ok"), ReleaseIndication(b"i")]
    p.resp.release_response(True, b"r-ok", now=0.0)
    ev = p.pump()
    assert ev["init"] == [ReleaseConfirm(True, b"r-ok")]
    assert p.init.is_closed and p.resp.state == "STA16"


def test_abort_during_release() -> None:
    p = pair()
    p.init.release()
    p.pump()
    assert p.resp.state == "STA09"
    p.resp.abort(now=0.0)
    ev = p.pump()
    assert ev["init"] == [UserAbortIndication(None)]
    assert p.init.is_closed


# ---------------------------------------------------------------- expedited, typed, capability


def test_expedited_and_typed_data() -> None:
    p = pair()
    p.resp.send_expedited(b"urgent")
    p.resp.send_typed_data(b"typed")  # without the data token
    assert p.pump()["init"] == [ExpeditedDataIndication(b"urgent"), TypedDataIndication(b"typed")]


def test_expedited_over_transport_expedited_flow() -> None:
    p = pair(transport_expedited=True)
    p.init.send_expedited(b"e")
    assert p.init.data_to_send() == []
    (tsdu,) = p.init.expedited_to_send()
    p.resp.receive_expedited(tsdu, now=0.0)
    assert p.resp.events() == [ExpeditedDataIndication(b"e")]


def test_capability_data() -> None:
    p = pair(functional_units=ALL_FUNCTIONAL_UNITS)
    p.init.send_capability_data(b"cap?")
    assert p.init.state == "STA21"
    assert p.pump()["resp"] == [CapabilityDataIndication(b"cap?")]
    p.resp.capability_data_response(b"cap!")
    assert p.pump()["init"] == [CapabilityDataConfirm(b"cap!")]


# ---------------------------------------------------------------- synchronization


def test_minor_sync_with_and_without_confirmation() -> None:
    p = pair(functional_units=FU.HALF_DUPLEX | FU.MINOR_SYNC, initial_serial=10)
    sn = p.init.minor_sync(confirm=True, user_data=b"m1")
    sn2 = p.init.minor_sync(confirm=False)
    assert (sn, sn2) == (10, 11)
    assert p.pump()["resp"] == [
        MinorSyncIndication(10, True, b"m1"),
        MinorSyncIndication(11, False, None),
    ]
    assert p.resp.vsc and not p.init.vsc
    p.resp.minor_sync_response(11, b"ok")
    # (The MIA for 11 confirms 10 too, which asked for it: tests/machine/test_minor_confirms.py)
    assert p.pump()["init"] == [MinorSyncConfirm(10, None), MinorSyncConfirm(11, b"ok")]
    assert p.init.va == p.resp.va == 12 and p.init.vm == p.resp.vm == 12


def test_major_sync() -> None:
    p = pair(functional_units=FU.HALF_DUPLEX | FU.MAJOR_SYNC | FU.MINOR_SYNC, initial_serial=1)
    assert p.init.major_sync(b"M") == 1
    assert p.init.state == "STA04A"
    assert p.pump()["resp"] == [MajorSyncIndication(1, b"M")]
    assert p.resp.state == "STA10A"
    p.resp.major_sync_response(b"A")
    assert p.pump()["init"] == [MajorSyncConfirm(1, b"A")]
    for m in (p.init, p.resp):
        assert (m.va, m.vm, m.vr, m.state) == (2, 2, 2, "STA713")


def test_typed_data_that_crossed_a_major_sync_is_delivered() -> None:
    """The responder's TD (no token needed), sent before our MAP reached it, arrives while
    we wait for the MAA (STA04A): it is data, not a protocol error (as DT is)."""
    p = pair(functional_units=FU.DUPLEX | FU.MAJOR_SYNC | FU.TYPED_DATA, initial_serial=1)
    p.init.major_sync(b"M")
    p.resp.send_typed_data(b"crossed")
    assert p.init.state == "STA04A"
    got = p.pump()
    assert got["init"] == [TypedDataIndication(b"crossed")]
    assert got["resp"] == [MajorSyncIndication(1, b"M")]
    p.resp.major_sync_response()
    assert p.pump()["init"] == [MajorSyncConfirm(1, None)]


@pytest.mark.parametrize("symmetric", [False, True])
def test_a_resync_restart_that_crossed_the_peers_major_sync_ack(symmetric: bool) -> None:
    """The responder answered the MAP (V(R) moved on) while the initiator's RS restart to
    the V(R) of before was on its way: the responder takes it, the initiator discards the
    MAA, and both end at the restart point."""
    fu = FU.DUPLEX | FU.MAJOR_SYNC | FU.MINOR_SYNC | FU.RESYNC
    p = pair(functional_units=fu | FU.SYMMETRIC_SYNC if symmetric else fu, initial_serial=1)
    p.init.major_sync(b"M")
    old = p.init.vr
    assert isinstance(p.pump()["resp"][0], MajorSyncIndication)
    p.resp.major_sync_response()  # the MAA is out ...
    p.init.resync(ResyncType.RESTART, serial=old)  # ... and so is the RS, crossing it
    got = p.pump()
    assert [type(e) for e in got["resp"]] == [ResyncIndication]
    p.resp.resync_response()
    (confirm,) = p.pump()["init"]
    assert isinstance(confirm, ResyncConfirm) and confirm.serial == old
    assert p.init.state == p.resp.state == "STA713" and p.init.vm == p.resp.vm == old


ACTIVITY_UNITS = FU.DUPLEX | FU.MAJOR_SYNC | FU.MINOR_SYNC | FU.RESYNC | FU.ACTIVITY


@pytest.mark.parametrize("request_", ["resync", "interrupt", "discard"])
def test_a_request_that_crossed_the_peers_activity_end_ack(request_: str) -> None:
    """The responder answered the AE (its activity is over) while the initiator's RS, AI
    or AD, sent from STA04B, was on its way: the request takes precedence (7.24), so the
    responder takes the activity up again and meets it, the initiator discards the AEA."""
    p = pair(functional_units=ACTIVITY_UNITS)
    p.init.activity_start(b"act")
    p.pump()
    p.init.major_sync(b"M")
    p.pump()
    p.resp.major_sync_response()
    p.pump()
    old = p.init.vr
    p.init.activity_end(b"E")
    assert isinstance(p.pump()["resp"][0], ActivityEndIndication)
    p.resp.activity_end_response()  # the AEA is out: no activity here ...
    assert not p.resp.activity_in_progress
    if request_ == "resync":  # ... and the request too, crossing it
        p.init.resync(ResyncType.RESTART, serial=old)
        expected: type = ResyncIndication
    elif request_ == "interrupt":
        p.init.activity_interrupt()
        expected = ActivityInterruptIndication
    else:
        p.init.activity_discard()
        expected = ActivityDiscardIndication
    got = p.pump()
    assert [type(e) for e in got["resp"]] == [expected] and got["init"] == []
    assert p.resp.activity_in_progress
    if request_ == "resync":
        p.resp.resync_response()
        (confirm,) = p.pump()["init"]
        assert isinstance(confirm, ResyncConfirm) and confirm.serial == old
        for m in (p.init, p.resp):  # the activity goes on from the restart point
            assert (m.state, m.vm, m.activity_in_progress) == ("STA713", old, True)
        p.init.activity_end()  # and ends as any other
        p.pump()
        p.resp.activity_end_response()
        assert [type(e) for e in p.pump()["init"]] == [ActivityEndConfirm]
    else:
        if request_ == "interrupt":
            p.resp.activity_interrupt_response()
        else:
            p.resp.activity_discard_response()
        (confirm,) = p.pump()["init"]
        assert isinstance(confirm, ActivityInterruptConfirm | ActivityDiscardConfirm)
    assert p.init.state == p.resp.state == "STA713"
    assert not p.init.activity_in_progress and not p.resp.activity_in_progress


def test_an_rs_outside_an_activity_is_still_an_error_once_the_peer_went_on() -> None:
    """Only a request that crossed our AEA takes the activity up again: an activity that
    ended otherwise (here interrupted, after our MAA) leaves an RS outside one an error."""
    p = pair(functional_units=ACTIVITY_UNITS)
    p.init.activity_start(b"one")
    p.pump()
    p.init.activity_end()
    p.pump()
    p.resp.activity_end_response()
    assert [type(e) for e in p.pump()["init"]] == [ActivityEndConfirm]
    p.init.activity_start(b"two")
    p.pump()
    p.init.major_sync()
    p.pump()
    p.resp.major_sync_response()
    p.pump()
    p.init.activity_interrupt()
    p.pump()
    p.resp.activity_interrupt_response()
    p.pump()
    assert not p.resp.activity_in_progress
    p.resp.receive_tsdu(encode_tsdu(GiveTokens(), Resynchronize(resync_type=1, serial_number=9)),
                        now=1.0)  # fmt: skip
    (abort,) = p.resp.events()
    assert abort.reason & AbortReason.PROTOCOL_ERROR and "STA713" in abort.message


@pytest.mark.parametrize("kind", list(ResyncType))
def test_resync_types(kind: ResyncType) -> None:
    p = pair(functional_units=FU.HALF_DUPLEX | FU.MINOR_SYNC | FU.RESYNC, initial_serial=5)
    p.init.minor_sync()
    p.init.minor_sync()
    p.pump()
    serial = {ResyncType.RESTART: 6, ResyncType.ABANDON: None, ResyncType.SET: 40}[kind]
    p.init.resync(kind, serial, tokens={Token.DATA: TokenSetting.RESPONDER}, user_data=b"rs")
    ev = p.pump()["resp"]
    assert isinstance(ev[0], ResyncIndication) and ev[0].type == kind
    p.resp.resync_response(user_data=b"ra")
    (cnf,) = p.pump()["init"]
    assert isinstance(cnf, ResyncConfirm)
    expected = {ResyncType.RESTART: 6, ResyncType.ABANDON: 7, ResyncType.SET: 40}[kind]
    assert cnf.serial == expected
    for m in (p.init, p.resp):
        assert m.vm == m.va == expected and m.state == "STA713"
    assert p.resp.tokens_owned == Token.DATA
    assert p.init.tokens_owned == Token.MINOR_SYNC


def test_resync_called_choice_tokens() -> None:
    p = pair(functional_units=FU.HALF_DUPLEX | FU.RESYNC)
    p.init.resync(ResyncType.SET, 3, tokens={Token.DATA: TokenSetting.CALLED_CHOICE})
    p.pump()
    p.resp.resync_response(tokens=Token.DATA)
    (cnf,) = p.pump()["init"]
    assert isinstance(cnf, ResyncConfirm) and cnf.tokens == 0
    assert p.resp.tokens_owned == Token.DATA


@pytest.mark.parametrize(
    ("i_kind", "r_kind", "winner"),
    [
        (ResyncType.RESTART, ResyncType.RESTART, "init"),
        (ResyncType.SET, ResyncType.RESTART, "init"),
        (ResyncType.RESTART, ResyncType.ABANDON, "resp"),
        (ResyncType.SET, ResyncType.SET, "init"),
    ],
)
def test_resync_collision(i_kind: ResyncType, r_kind: ResyncType, winner: str) -> None:
    p = pair(functional_units=FU.HALF_DUPLEX | FU.MINOR_SYNC | FU.RESYNC, initial_serial=1)
    p.init.resync(i_kind, 1)
    p.resp.resync(r_kind, 1)
    ev = p.pump()
    loser = "resp" if winner == "init" else "init"
    assert ev[winner] == []
    assert isinstance(ev[loser][0], ResyncIndication)
    getattr(p, loser).resync_response()
    ev = p.pump()
    assert isinstance(ev[winner][0], ResyncConfirm)
    assert p.init.state == p.resp.state == "STA713"
    assert p.init.vm == p.resp.vm


def test_resync_against_major_sync() -> None:
    p = pair(functional_units=FU.HALF_DUPLEX | FU.MAJOR_SYNC | FU.RESYNC, initial_serial=1)
    p.init.major_sync()
    p.resp.resync(ResyncType.ABANDON)  # before the MAP arrives
    ev = p.pump()
    assert isinstance(ev["init"][0], ResyncIndication)
    assert p.init.state == "STA11A"
    p.init.resync_response()
    ev = p.pump()
    assert isinstance(ev["resp"][-1], ResyncConfirm)
    assert p.init.state == p.resp.state == "STA713" and p.init.vm == p.resp.vm


def test_exception_report_and_recovery_by_giving_the_data_token() -> None:
    p = pair()
    p.resp.exception_report(3, b"oops")
    assert p.resp.state == "STA20"
    assert p.pump()["init"] == [UserExceptionReportIndication(3, b"oops")]
    assert p.init.state == "STA19"
    p.init.give_tokens(Token.DATA)
    assert p.pump()["resp"] == [TokenGiveIndication(Token.DATA)]
    assert p.init.state == p.resp.state == "STA713"


def test_provider_exception_report_received() -> None:
    p = pair()
    p.init.give_tokens(Token.DATA)
    p.pump()
    p.init.receive_tsdu(bytes.fromhex("0200") + bytes.fromhex("0003310100"), now=0.0)  # PT + ER
    (ev,) = p.init.events()
    assert type(ev).__name__ == "ProviderExceptionReportIndication"
    assert p.init.state == "STA19"


# ---------------------------------------------------------------- activities


def test_activity_start_end() -> None:
    p = pair(functional_units=ALL_FUNCTIONAL_UNITS)
    p.init.activity_start(b"A1", b"go")
    assert p.pump()["resp"] == [ActivityStartIndication(b"A1", b"go")]
    assert p.resp.activity_in_progress and p.resp.activity_id == b"A1"
    p.init.send_data(b"in activity")
    p.init.minor_sync()
    assert p.init.activity_end(b"end") == 2
    ev = p.pump()["resp"]
    assert ev[-1] == ActivityEndIndication(2, b"end")
    p.resp.activity_end_response(b"ended")
    # (The AEA confirms the minor point 1 too, which was never answered on its own.)
    assert p.pump()["init"] == [MinorSyncConfirm(1, None), ActivityEndConfirm(2, b"ended")]
    assert not p.init.activity_in_progress and not p.resp.activity_in_progress
    assert p.init.vm == p.resp.vm == 3


def test_activity_interrupt_and_resume() -> None:
    p = pair(functional_units=ALL_FUNCTIONAL_UNITS)
    p.init.activity_start(b"A1")
    p.init.minor_sync()
    p.pump()
    p.init.activity_interrupt(0, b"later")
    assert p.pump()["resp"] == [ActivityInterruptIndication(0, b"later")]
    p.resp.activity_interrupt_response()
    assert p.pump()["init"] == [ActivityInterruptConfirm(None)]
    assert p.init.tokens_owned == ALL_TOKENS
    p.init.activity_resume(b"A2", b"A1", 1, ConnectionId(common_ref=b"c"))
    (ev,) = p.pump()["resp"]
    assert isinstance(ev, ActivityResumeIndication)
    assert (ev.activity_id, ev.old_activity_id, ev.serial) == (b"A2", b"A1", 1)
    assert ev.linking.common_ref == b"c"
    assert p.init.vm == p.resp.vm == 2


def test_activity_discard() -> None:
    p = pair(functional_units=ALL_FUNCTIONAL_UNITS)
    p.init.activity_start(b"A1")
    p.init.activity_discard(5)
    assert p.pump()["resp"][-1] == ActivityDiscardIndication(5, None)
    p.resp.activity_discard_response()
    assert p.pump()["init"] == [ActivityDiscardConfirm(None)]
    assert not p.resp.activity_in_progress


# ---------------------------------------------------------------- segmenting, negotiation


def test_segmenting_when_a_tsdu_maximum_size_is_agreed() -> None:
    p = pair(tsdu_max_send=100, tsdu_max_receive=100)
    assert p.init.tsdu_max_send == p.resp.tsdu_max_receive == 100
    p.init.send_data(bytes(range(256)) * 2)
    tsdus = p.init.data_to_send()
    assert len(tsdus) > 5 and all(len(t) <= 100 for t in tsdus)
    for t in tsdus:
        p.resp.receive_tsdu(t, now=0.0)
    assert p.resp.events() == [DataIndication(bytes(range(256)) * 2)]


def test_called_users_choice_of_tokens() -> None:
    cfg = SessionConfig(
        functional_units=BASIC,
        token_setting={
            Token.DATA: TokenSetting.CALLED_CHOICE,
            Token.RELEASE: TokenSetting.RESPONDER,
        },
    )
    p = SessionPair(cfg)
    p.connect(tokens=Token.DATA)
    assert p.resp.tokens_owned == Token.DATA | Token.RELEASE
    assert p.init.tokens_owned == Token.MINOR_SYNC | Token.MAJOR_ACTIVITY
    ac = next(t for d, t in p.wire if d == "r->i")
    assert decode_tsdu(ac)[0].tokens == Token.DATA  # type: ignore[attr-defined]


def test_requirements_are_intersected() -> None:
    p = SessionPair(
        SessionConfig(functional_units=BASIC),
        SessionConfig(functional_units=FU.HALF_DUPLEX | FU.EXPEDITED),
    )
    p.connect()
    assert p.init.functional_units == p.resp.functional_units == FU.HALF_DUPLEX | FU.EXPEDITED
    assert p.init.tokens_owned == Token.DATA


def test_default_units_are_duplex_with_sync() -> None:
    p = SessionPair()
    p.connect()
    assert p.init.functional_units == DEFAULT_FUNCTIONAL_UNITS
    p.init.send_data(b"a")
    p.resp.send_data(b"b")
    p.init.minor_sync()
    ev = p.pump()
    assert ev["init"] == [DataIndication(b"b")]
    assert ev["resp"][0] == DataIndication(b"a")


def test_version_one_only() -> None:
    p = SessionPair(SessionConfig(versions=Version.V1))
    p.connect()
    assert p.init.version == p.resp.version == 1


# ---------------------------------------------------------------- PREPARE (transport expedited)


def test_prepare_precedes_maa_rs_ra_and_ab_on_the_expedited_flow() -> None:
    units = FU.HALF_DUPLEX | FU.MAJOR_SYNC | FU.RESYNC | FU.EXPEDITED
    p = pair(functional_units=units, transport_expedited=True, initial_serial=1)
    p.init.major_sync()
    p.pump()
    p.resp.major_sync_response()
    assert [kinds(t) for t in p.resp.expedited_to_send()] == [["PR"]]
    p.init.receive_expedited(encode_tsdu(Prepare(prepare_type=1)), now=0.0)
    assert p.init.state == "STA15A"
    p.pump()
    assert p.init.state == "STA713"
    p.resp.resync(ResyncType.SET, 9)
    (pr,) = p.resp.expedited_to_send()
    p.init.receive_expedited(pr, now=0.0)
    assert p.init.state == "STA15B"
    p.init.receive_tsdu(encode_tsdu(GiveTokens(), DataTransfer(user_data=b"late")), now=0.0)
    assert p.init.events() == []  # discarded while waiting for the RS
    ev = p.pump()
    assert isinstance(ev["init"][0], ResyncIndication)
    p.init.resync_response()
    p.pump()
    assert p.init.state == p.resp.state == "STA713" and p.init.vm == 9
    p.init.abort(now=0.0)
    assert [kinds(t) for t in p.init.expedited_to_send()] == [["PR"]]
    p.resp.receive_tsdu(encode_tsdu(Prepare(prepare_type=4)), now=0.0)
    assert p.resp.state == "STA15D"
    p.pump()
    assert p.resp.is_closed
