"""The bridge, sans I/O: a client agent and an upstream agent (each answering as a
sessionlayer peer does) joined through a :class:`Bridge` by in-memory byte pipes.

Each X.215 service is driven from one end and must arrive at the other as the same
service with the same parameters; the answers come back the same way.  What the state
table rejects never reaches the other leg.
"""

from __future__ import annotations

import pytest
from tests.relay.helpers import Through, spdus_in

from sessionlayer import FunctionalUnit as FU
from sessionlayer.agent import SessionAgent, TokensMissing
from sessionlayer.errors import AbortReason, RefuseReason
from sessionlayer.machine import ALL_FUNCTIONAL_UNITS, SessionConfig, SessionMachine
from sessionlayer.machine import events as ev
from sessionlayer.relay import RelayOptions
from sessionlayer.relay.bridge import CLIENT, UPSTREAM, Leg
from sessionlayer.spdu import (
    Abort,
    Accept,
    Connect,
    DataTransfer,
    Finish,
    GiveTokens,
    MajorSyncPoint,
    encode_tsdu,
)
from sessionlayer.spdu.codes import ResyncType, Token, TokenSetting, Version
from sessionlayer.spdu.types import ConnectionId
from sessionlayer.transport import encode_tpkt, segment_tsdu

PROTOCOL_ERROR = AbortReason.TRANSPORT_RELEASED | AbortReason.PROTOCOL_ERROR
NO_REASON = AbortReason.TRANSPORT_RELEASED | AbortReason.NO_REASON
HALF = FU.HALF_DUPLEX | FU.MINOR_SYNC | FU.MAJOR_SYNC | FU.RESYNC | FU.NEGOTIATED_RELEASE
ACTIVITIES = FU.DUPLEX | FU.ACTIVITY | FU.CAPABILITY_DATA | FU.MAJOR_SYNC | FU.MINOR_SYNC


def framed(tsdu: bytes) -> bytes:
    return b"".join(encode_tpkt(t) for t in segment_tsdu(tsdu, 8192))


def inject(t: Through, leg: str, tsdu: bytes) -> None:
    """Octets the end peer on ``leg`` writes itself (bypassing its own machine)."""
    data = framed(tsdu)
    t.received[leg] += data
    t.bridge.receive(leg, data, t.now)  # type: ignore[arg-type]
    t.pump()


# ------------------------------------------------------------------ connect


def test_connect_carries_the_parameters_and_user_data_both_ways() -> None:
    config = SessionConfig(
        functional_units=HALF, versions=Version.V2, calling_ssel=b"\x00\x07",
        called_ssel=b"\x00\x09", initial_serial=17,
        token_setting={Token.DATA: TokenSetting.CALLED_CHOICE},
    )  # fmt: skip
    upstream = SessionConfig(functional_units=HALF, responding_ssel=b"\x00\x0a",
                             called_choice={Token.DATA: TokenSetting.RESPONDER})  # fmt: skip
    t = Through(config, upstream)
    t.open(b"hello upstream", ConnectionId(calling_ref=b"caller", common_ref=b"common"))
    cn = t.take("upstream", ev.ConnectIndication)
    assert cn.user_data == b"hello upstream"
    assert (cn.calling_ssel, cn.called_ssel) == (b"\x00\x07", b"\x00\x09")
    assert cn.connection_id == ConnectionId(calling_ref=b"caller", common_ref=b"common")
    assert cn.functional_units == HALF and cn.versions == 2 and cn.initial_serial == 17
    assert cn.token_setting[Token.DATA] == TokenSetting.CALLED_CHOICE
    ac = t.take("client", ev.ConnectConfirm)
    assert ac.user_data == b"ac-data" and ac.responding_ssel == b"\x00\x0a"
    assert ac.functional_units == HALF and ac.version == 2 and ac.initial_serial == 17
    # The upstream took the data token: so did the relay toward the client (mirrored).
    assert not ac.tokens & Token.DATA
    assert t.upstream.machine.tokens_owned & Token.DATA
    assert t.bridge.phase == "open"
    assert t.client.machine.state == t.upstream.machine.state == "STA713"


def test_the_upstream_is_connected_only_after_a_valid_cn() -> None:
    t = Through()
    t.pump()  # CR / CC with the client only
    assert not t.upstream_up and t.bridge.phase == "handshake"
    t.client.connect(b"x", ConnectionId())
    t.pump()
    assert t.upstream_up and t.bridge.phase == "open"


def test_refuse_is_carried_back_with_reason_and_user_data() -> None:
    t = Through()
    t.auto_accept = False
    t.open()
    t.take("upstream", ev.ConnectIndication)
    t.upstream.refuse(RefuseReason.USER_DATA, b"go away")
    t.pump()
    rf = t.take("client", ev.RefuseConfirm)
    assert (rf.reason, rf.user_data) == (RefuseReason.USER_DATA, b"go away")
    assert t.bridge.outcome == "refused"


def test_admit_refuses_and_the_upstream_is_never_connected() -> None:
    t = Through(admit=lambda cn: RefuseReason.SSEL_UNKNOWN)
    t.open()
    assert t.take("client", ev.RefuseConfirm).reason == RefuseReason.SSEL_UNKNOWN
    assert not t.upstream_up and t.wire["upstream"] == b""


def test_upstream_unreachable_refuses_with_user_not_attached() -> None:
    t = Through()
    t.pump()
    t.client.connect(b"x", ConnectionId())
    for data in t.client.data_to_send():
        t.bridge.receive("client", data, t.now)
    assert t.bridge.take_connect()
    t.bridge.upstream_failed("connection refused", t.now)
    t.pump()
    assert t.take("client", ev.RefuseConfirm).reason == RefuseReason.USER_NOT_ATTACHED


def test_upstream_silent_past_the_handshake_timeout_refuses() -> None:
    t = Through(options=RelayOptions(handshake_timeout=2.0))
    t.auto_accept = False
    t.open()
    t.take("upstream", ev.ConnectIndication)
    t.later(2.5)
    assert t.take("client", ev.RefuseConfirm).reason == RefuseReason.USER_NOT_ATTACHED
    assert t.bridge.wants_close("upstream") or t.upstream.machine.is_closed or (
        spdus_in(t.wire["upstream"])[-1].kind == "AB"
    )


def test_upstream_abort_instead_of_accept_aborts_the_client() -> None:
    # (Without the expedited unit: with it, a sessionlayer responder aborting in STA08 sends
    # PR before the AB, which the initiator's table does not accept in STA02A.)
    plain = SessionConfig(functional_units=FU.DUPLEX)
    t = Through(plain, plain)
    t.auto_accept = False
    t.open()
    t.take("upstream", ev.ConnectIndication)
    t.upstream.abort(b"no", t.now)
    t.pump()
    assert t.take("client", ev.UserAbortIndication).user_data == b"no"


# ------------------------------------------------------------------ data


def test_data_is_reassembled_and_segmented_again_for_each_leg() -> None:
    client = SessionConfig(functional_units=FU.DUPLEX, versions=Version.V2,
                           tsdu_max_send=4096, tsdu_max_receive=4096)  # fmt: skip
    upstream = SessionConfig(functional_units=FU.DUPLEX, tsdu_max_receive=1024,
                             tsdu_max_send=1024)  # fmt: skip
    t = Through(client, upstream)
    t.open()
    big = bytes(range(256)) * 200  # 51,200 octets
    t.client.machine.send_data(big)
    t.pump()
    assert t.take("upstream", ev.DataIndication).data == big
    sent = [s for s in spdus_in(t.wire["upstream"]) if isinstance(s, DataTransfer)]
    assert len(sent) >= 50  # segments of at most 1024 octets toward the upstream
    t.upstream.machine.send_data(big[::-1])
    t.pump()
    assert t.take("client", ev.DataIndication).data == big[::-1]
    toward_client = [s for s in spdus_in(t.wire["client"]) if isinstance(s, DataTransfer)]
    assert 12 <= len(toward_client) < 20  # 4096-octet segments toward the client


def test_typed_and_expedited_data() -> None:
    units = FU.DUPLEX | FU.TYPED_DATA | FU.EXPEDITED
    t = Through(SessionConfig(functional_units=units), SessionConfig(functional_units=units))
    t.open()
    t.client.machine.send_typed_data(b"typed")
    t.client.machine.send_expedited(b"urgent")
    t.pump()
    assert t.take("upstream", ev.TypedDataIndication).data == b"typed"
    assert t.take("upstream", ev.ExpeditedDataIndication).data == b"urgent"


# ------------------------------------------------------------------ tokens and sync


def test_half_duplex_tokens_travel_through_the_relay() -> None:
    t = Through(SessionConfig(functional_units=HALF), SessionConfig(functional_units=HALF))
    t.open()
    assert t.client.machine.tokens_owned & Token.DATA  # the initiator starts with them
    t.client.machine.send_data(b"turn 1")
    t.pump()
    assert t.take("upstream", ev.DataIndication).data == b"turn 1"
    # The upstream asks for the data token; the client's agent gives it.
    t.upstream.machine.please_tokens(Token.DATA)
    t.pump()
    assert t.take("client", ev.TokenPleaseIndication).tokens == Token.DATA
    assert t.take("upstream", ev.TokenGiveIndication).tokens == Token.DATA
    assert t.upstream.machine.tokens_owned & Token.DATA
    # Mirrored: the relay holds on the client leg what the upstream holds on its own.
    assert t.bridge.client.machine.tokens_owned & Token.DATA
    assert not t.client.machine.tokens_owned & Token.DATA
    t.upstream.machine.send_data(b"turn 2")
    t.pump()
    assert t.take("client", ev.DataIndication).data == b"turn 2"


def test_the_user_data_of_a_give_tokens_goes_through_the_relay() -> None:
    """Before, the relay gave the tokens on and dropped the GT's user data."""
    t = Through(SessionConfig(functional_units=HALF), SessionConfig(functional_units=HALF))
    t.open()
    t.client.machine.give_tokens(Token.DATA, user_data=b"your turn")
    t.pump()
    given = t.take("upstream", ev.TokenGiveIndication)
    assert (given.tokens, given.user_data) == (Token.DATA, b"your turn")


def test_sync_points_are_confirmed_by_the_far_end() -> None:
    t = Through(SessionConfig(functional_units=HALF), SessionConfig(functional_units=HALF))
    t.open()
    serial = t.client.machine.minor_sync(confirm=True, user_data=b"minor")
    t.pump()
    mip = t.take("upstream", ev.MinorSyncIndication)
    assert (mip.serial, mip.user_data) == (serial, b"minor")
    assert t.take("client", ev.MinorSyncConfirm).serial == serial
    major = t.client.machine.major_sync(b"major")
    t.pump()
    assert t.take("upstream", ev.MajorSyncIndication).serial == major
    assert t.take("client", ev.MajorSyncConfirm).serial == major
    t.client.machine.resync(ResyncType.RESTART, serial=major + 1, user_data=b"again")
    t.pump()
    rs = t.take("upstream", ev.ResyncIndication)
    assert (rs.type, rs.serial, rs.user_data) == (ResyncType.RESTART, major + 1, b"again")
    assert t.take("client", ev.ResyncConfirm).serial == major + 1
    assert t.client.machine.vm == t.upstream.machine.vm == t.bridge.client.machine.vm


def test_symmetric_synchronize_keeps_each_flow_apart() -> None:
    units = FU.DUPLEX | FU.SYMMETRIC_SYNC | FU.MAJOR_SYNC | FU.RESYNC
    config = SessionConfig(functional_units=units, versions=Version.V2,
                           initial_serial=5, second_initial_serial=500)  # fmt: skip
    t = Through(config, SessionConfig(functional_units=units))
    t.open()
    mine = t.client.machine.minor_sync(confirm=True)
    t.pump()
    assert t.take("upstream", ev.MinorSyncIndication).serial == mine == 5
    theirs = t.upstream.machine.minor_sync(confirm=True)
    t.pump()
    assert t.take("client", ev.MinorSyncIndication).serial == theirs == 500
    t.client.machine.resync(ResyncType.ABANDON)
    t.pump()
    t.take("upstream", ev.ResyncIndication)
    t.take("client", ev.ResyncConfirm)
    assert (t.client.machine.vms, t.client.machine.vmr) == (
        t.upstream.machine.vmr, t.upstream.machine.vms)


def test_activities_and_capability_data() -> None:
    config = SessionConfig(functional_units=ACTIVITIES)
    t = Through(config, config)
    t.open()
    t.client.machine.send_capability_data(b"caps?")
    t.pump()
    assert t.take("upstream", ev.CapabilityDataIndication).user_data == b"caps?"
    t.take("client", ev.CapabilityDataConfirm)
    t.client.machine.activity_start(b"act1", b"start")
    t.pump()
    assert t.take("upstream", ev.ActivityStartIndication).activity_id == b"act1"
    t.client.machine.send_data(b"inside")
    t.pump()
    assert t.take("upstream", ev.DataIndication).data == b"inside"
    serial = t.client.machine.activity_end(b"end")
    t.pump()
    assert t.take("upstream", ev.ActivityEndIndication).serial == serial
    assert t.take("client", ev.ActivityEndConfirm).serial == serial
    t.client.machine.activity_start(b"act2")
    t.pump()
    t.client.machine.activity_interrupt(0, b"later")
    t.pump()
    assert t.take("upstream", ev.ActivityInterruptIndication).user_data == b"later"
    t.take("client", ev.ActivityInterruptConfirm)
    t.client.machine.activity_resume(b"act3", b"act2", serial, ConnectionId(common_ref=b"c"))
    t.pump()
    ar = t.take("upstream", ev.ActivityResumeIndication)
    assert (ar.activity_id, ar.old_activity_id, ar.serial) == (b"act3", b"act2", serial)
    t.client.machine.activity_discard(0)
    t.pump()
    t.take("upstream", ev.ActivityDiscardIndication)
    t.take("client", ev.ActivityDiscardConfirm)


# ------------------------------------------------------------------ release and abort


def test_release_is_answered_by_the_far_end_with_its_user_data() -> None:
    t = Through()
    t.open()
    t.upstream.on_release = lambda event: b"bye from upstream"
    t.client.machine.release(b"bye from client")
    t.pump()
    assert t.take("upstream", ev.ReleaseIndication).user_data == b"bye from client"
    confirm = t.take("client", ev.ReleaseConfirm)
    assert confirm.accepted and confirm.user_data == b"bye from upstream"
    assert t.bridge.outcome == "released"
    assert t.bridge.wants_close("upstream")  # the relay closes the upstream (it got DN)


def test_release_refused_with_nf_goes_on() -> None:
    config = SessionConfig(functional_units=HALF)
    t = Through(config, config)
    t.open()
    t.upstream.on_release = lambda event: False
    t.client.machine.release()
    t.pump()
    assert not t.take("client", ev.ReleaseConfirm).accepted
    assert t.bridge.phase == "open"
    t.client.machine.send_data(b"still here")
    t.pump()
    assert t.take("upstream", ev.DataIndication).data == b"still here"


def test_release_from_the_upstream() -> None:
    t = Through()
    t.open()
    t.upstream.machine.release(b"server done")
    t.pump()
    assert t.take("client", ev.ReleaseIndication).user_data == b"server done"
    assert t.take("upstream", ev.ReleaseConfirm).accepted


def test_release_collision_is_answered_on_both_legs() -> None:
    t = Through()
    t.open()
    t.client.machine.release(b"c")
    t.upstream.machine.release(b"u")
    t.pump()
    assert t.take("client", ev.ReleaseConfirm).accepted
    assert t.take("upstream", ev.ReleaseConfirm).accepted
    assert t.bridge.outcome == "released"


@pytest.mark.parametrize("side", ["client", "upstream"])
def test_user_abort_carries_its_user_data(side: str) -> None:
    t = Through()
    t.open()
    other = "upstream" if side == "client" else "client"
    agent = t.client if side == "client" else t.upstream
    agent.abort(b"abort data", t.now)
    t.pump()
    assert t.take(other, ev.UserAbortIndication).user_data == b"abort data"
    assert t.bridge.outcome == "aborted"


def test_a_provider_reason_is_passed_on() -> None:
    t = Through()
    t.open()
    reason = AbortReason.TRANSPORT_RELEASED | AbortReason.IMPLEMENTATION_RESTRICTION
    inject(t, "upstream", encode_tsdu(Abort(transport_disconnect=int(reason))))
    assert t.take("client", ev.ProviderAbortIndication).reason == reason


@pytest.mark.parametrize("leg", ["client", "upstream"])
def test_a_lost_transport_aborts_the_other_leg_with_no_reason(leg: str) -> None:
    t = Through()
    t.open()
    t.close_transport(leg)
    other = "upstream" if leg == "client" else "client"
    assert t.take(other, ev.ProviderAbortIndication).reason == NO_REASON


# ------------------------------------------------------------------ what is never relayed


def test_an_out_of_state_spdu_is_aborted_on_its_leg_and_never_forwarded() -> None:
    t = Through()  # duplex only: no major synchronize
    t.open()
    before = t.wire["upstream"]
    offending = encode_tsdu(GiveTokens(), MajorSyncPoint(sync_type=1, serial_number=0,
                                                          user_data=b"SECRET"))  # fmt: skip
    inject(t, "client", offending)
    ab = [s for s in spdus_in(t.wire["client"]) if isinstance(s, Abort)]
    assert ab and ab[-1].transport_disconnect == PROTOCOL_ERROR and ab[-1].reflect
    after = spdus_in(t.wire["upstream"][len(before):])
    assert [type(s) for s in after] == [Abort]
    assert after[0].transport_disconnect == NO_REASON
    assert b"SECRET" not in t.wire["upstream"]
    assert not any(isinstance(e, ev.MajorSyncIndication) for e in t.events["upstream"])


@pytest.mark.parametrize("tsdu", [
    encode_tsdu(Accept(requirements=2)),  # an AC from the initiator
    encode_tsdu(Connect(requirements=2)),  # a second CN
    encode_tsdu(Finish()) + b"\xff",  # trailing garbage
    b"\x01\x00\x01\xff\xff\x00",  # a DT whose LI runs past the TSDU
])  # fmt: skip
def test_malformed_or_out_of_state_after_ac_never_reaches_the_upstream(tsdu: bytes) -> None:
    t = Through()
    t.open()
    before = len(t.wire["upstream"])
    inject(t, "client", tsdu)
    assert t.bridge.outcome == "aborted"
    after = spdus_in(t.wire["upstream"][before:])
    assert [s.kind for s in after] == ["AB"], after
    assert not t.events["upstream"][1:] or all(
        isinstance(e, ev.ProviderAbortIndication) for e in t.events["upstream"][1:]
    )


def test_a_bad_cn_never_opens_the_upstream() -> None:
    t = Through()
    t.pump()
    inject(t, "client", b"\x0d\x05\x14\x02\x00\x02\xff")  # a CN with garbage in it
    assert not t.upstream_up and t.wire["upstream"] == b""
    assert t.bridge.outcome == "closed"  # (no session was ever asked for)


def test_data_before_the_ac_is_a_protocol_error_and_never_relayed() -> None:
    t = Through()
    t.auto_accept = False
    t.open()
    inject(t, "client", b"\x01\x00\x01\x00" + b"too early")
    assert b"too early" not in t.wire["upstream"]
    assert t.bridge.outcome == "aborted"


def test_broken_framing_before_the_cc_is_closed_and_the_note_says_no_ab_was_sent() -> None:
    """A TLS ClientHello to a plain relay: broken TPKT framing before the COTP CC closes
    the connection with nothing sent, and the relay's note says so (it claimed an AB)."""
    t = Through()
    hello = bytes([0x16, 0x03, 0x01, 0x00, 0x40]) + bytes(0x40)  # a TLS handshake record
    t.bridge.receive("client", hello, t.now)
    assert t.bridge.data_to_send("client") == []
    assert t.bridge.wants_close("client")
    assert t.bridge.outcome == "closed"
    assert "TPKT version 22" in (t.bridge.ending or "")
    assert "no AB" in (t.bridge.ending or "") and "AB 0x" not in (t.bridge.ending or "")
    assert any("no AB: the connection was closed before the COTP CC" in message
               for _, message in t.bridge.notes())  # fmt: skip


def test_a_tpkt_error_after_the_cc_is_noted_with_the_relays_ab() -> None:
    t = Through()
    t.open()
    t.bridge.receive("client", bytes([0x16, 0x03, 0x01, 0x00, 0x40]), t.now)
    ab = [s for s in spdus_in(b"".join(t.bridge.data_to_send("client")))
          if isinstance(s, Abort)]  # fmt: skip
    assert ab and ab[-1].transport_disconnect == PROTOCOL_ERROR
    assert "(AB 0x05 from the relay)" in (t.bridge.ending or "")


# ------------------------------------------------------------------ limits and timeouts


def test_an_ssdu_over_max_size_aborts_that_leg_with_0x11() -> None:
    client = SessionConfig(functional_units=FU.DUPLEX, versions=Version.V2,
                           tsdu_max_send=1024, tsdu_max_receive=1024)  # fmt: skip
    t = Through(client, options=RelayOptions(max_size=10_000))
    t.open()
    t.client.machine.send_data(bytes(20_000))
    t.pump()
    restriction = AbortReason.TRANSPORT_RELEASED | AbortReason.IMPLEMENTATION_RESTRICTION
    ab = [s for s in spdus_in(t.wire["client"]) if isinstance(s, Abort)]
    assert ab[-1].transport_disconnect == restriction
    assert t.take("upstream", ev.ProviderAbortIndication).reason == NO_REASON
    assert not any(isinstance(e, ev.DataIndication) for e in t.events["upstream"])


def test_idle_timeout_aborts_both_legs() -> None:
    t = Through(options=RelayOptions(idle_timeout=30.0))
    t.open()
    t.later(20.0)
    assert t.bridge.phase == "open"
    t.client.machine.send_data(b"alive")
    t.pump()
    t.later(20.0)
    assert t.bridge.phase == "open"
    t.later(11.0)
    assert t.take("client", ev.ProviderAbortIndication).reason == NO_REASON
    assert t.take("upstream", ev.ProviderAbortIndication).reason == NO_REASON


def test_release_timeout_aborts_both_legs() -> None:
    t = Through(options=RelayOptions(release_timeout=5.0))
    t.open()
    t.upstream.auto_answer = False  # the upstream never answers the FN
    t.client.machine.release()
    t.pump()
    t.take("upstream", ev.ReleaseIndication)
    t.later(6.0)
    assert t.take("client", ev.ProviderAbortIndication).reason == NO_REASON
    assert t.bridge.outcome == "aborted"


def test_a_cn_that_never_comes_is_closed_at_the_handshake_timeout() -> None:
    t = Through(options=RelayOptions(handshake_timeout=3.0))
    t.pump()  # CR / CC, then nothing
    assert t.bridge.next_deadline() == pytest.approx(t.now + 3.0)
    t.later(3.5)
    assert t.bridge.wants_close("client") and not t.upstream_up


def test_keepalive_probes_of_sessionlayer_peers_are_answered_per_leg() -> None:
    from sessionlayer.agent import PING, Hello, Welcome

    t = Through(accept_data=Welcome(keepalive=True).encode())
    t.open(Hello(keepalive=True).encode())
    assert t.bridge.client.keepalive and t.bridge.upstream is not None
    before = len(t.wire["upstream"])
    inject(t, "client", PING)
    assert spdus_in(t.wire["client"])[-1].kind == "GT"  # PONG, from the relay
    assert len(t.wire["upstream"]) == before  # nothing relayed


class _Silent:
    """A client end that takes nothing in and sends nothing (a dead host, no FIN)."""

    def data_to_send(self) -> list[bytes]:
        return []

    def receive_data(self, data: bytes, now: float) -> None:
        pass

    def events(self) -> list[ev.Event]:
        return []

    def handle_timer(self, now: float) -> None:
        pass


def test_between_sessionlayer_peers_each_leg_is_probed_and_watched_on_its_own() -> None:
    from sessionlayer.agent import PING, Hello, Welcome

    t = Through(accept_data=Welcome(keepalive=True).encode(),
                options=RelayOptions(idle_timeout=10.0))  # fmt: skip
    t.open(Hello(keepalive=True).encode())
    t.client.keepalive = t.upstream.keepalive = True  # (the ends answer probes)
    for _ in range(3):  # each leg probed after 5 s of silence, answered: open
        t.later(6.0)
        assert t.bridge.phase == "open"
    assert [s.kind for s in spdus_in(t.wire["client"])].count("PT") == 3
    assert [s.kind for s in spdus_in(t.wire["upstream"])].count("PT") == 3
    # The upstream alone goes on (its probe answered by the relay); the client is silent.
    t.client = _Silent()  # type: ignore[assignment]
    inject(t, "upstream", PING)
    t.later(6.0)
    assert t.bridge.phase == "open"
    inject(t, "upstream", PING)
    t.later(4.5)  # 10.5 s since the client's last answer
    assert t.bridge.outcome == "aborted" and "from the client" in (t.bridge.ending or "")
    assert t.take("upstream", ev.ProviderAbortIndication).reason == NO_REASON


def test_a_resumable_session_whose_client_goes_silent_closes_both_legs_with_no_ab() -> None:
    from sessionlayer.agent import Hello, Welcome

    t = Through(accept_data=Welcome(keepalive=True, token="ab" * 16).encode(),
                options=RelayOptions(idle_timeout=10.0))  # fmt: skip
    t.open(Hello(keepalive=True, recovery=True).encode())
    assert t.bridge.resumable
    sent = {leg: len(t.wire[leg]) for leg in ("client", "upstream")}
    t.bridge.handle_timer(t.now + 10.5)  # (nobody answered the probes)
    assert t.bridge.outcome == "interrupted"
    for leg in (CLIENT, UPSTREAM):
        assert t.bridge.wants_close(leg)
        assert not [s for s in spdus_in(b"".join(t.bridge.data_to_send(leg))) if s.kind == "AB"]
    assert all(len(t.wire[leg]) == sent[leg] for leg in sent)


def test_all_units_negotiate_through_the_relay() -> None:
    t = Through(SessionConfig(functional_units=ALL_FUNCTIONAL_UNITS),
                SessionConfig(functional_units=ALL_FUNCTIONAL_UNITS))  # fmt: skip
    t.open()
    ac = t.take("client", ev.ConnectConfirm)
    assert ac.functional_units == t.upstream.machine.functional_units
    assert t.bridge.client.machine.tokens_owned == t.upstream.machine.tokens_owned


# ------------------------------------------------------------------ the S-DATA fast path


def test_plain_data_takes_the_fast_path_and_arrives_framed_for_the_other_leg() -> None:
    t = Through(SessionConfig.kernel_duplex(), SessionConfig.kernel_duplex())
    t.open()
    relay_upstream = t.bridge.upstream
    assert relay_upstream is not None and relay_upstream.plain and t.bridge.client.plain
    for size in (1, 64, 8000, 30_000):  # one TPDU, and several
        t.client.machine.send_data(bytes([size % 251]) * size)
        t.pump()
        assert t.take("upstream", ev.DataIndication).data == bytes([size % 251]) * size
    t.upstream.machine.send_data(b"back")
    t.pump()
    assert t.take("client", ev.DataIndication).data == b"back"
    assert t.bridge.plain_messages == 5  # none went through the two machines


def test_fast_path_octet_by_octet_then_something_else_in_the_same_stream() -> None:
    t = Through(SessionConfig.kernel_duplex(), SessionConfig.kernel_duplex())
    t.open()
    t.client.machine.send_data(b"first")
    t.client.machine.release(b"then FN")
    stream = b"".join(t.client.data_to_send())
    for i in range(len(stream)):  # every read one octet: TPDUs and TSDUs cut anywhere
        t.bridge.receive("client", stream[i : i + 1], t.now)
    t.pump()
    assert t.take("upstream", ev.DataIndication).data == b"first"
    assert t.bridge.plain_messages == 1
    assert t.take("upstream", ev.ReleaseIndication).user_data == b"then FN"
    assert t.take("client", ev.ReleaseConfirm).accepted


def test_fast_path_over_max_size_relays_what_came_before_then_ab_0x11() -> None:
    t = Through(SessionConfig.kernel_duplex(), SessionConfig.kernel_duplex(),
                options=RelayOptions(max_size=4096))  # fmt: skip
    t.open()
    t.client.machine.send_data(b"small")
    t.client.machine.send_data(bytes(5000))
    stream = b"".join(t.client.data_to_send())
    t.bridge.receive("client", stream, t.now)
    t.pump()
    assert t.take("upstream", ev.DataIndication).data == b"small"
    restriction = AbortReason.TRANSPORT_RELEASED | AbortReason.IMPLEMENTATION_RESTRICTION
    assert [s.transport_disconnect for s in spdus_in(t.wire["client"])
            if isinstance(s, Abort)] == [restriction]  # fmt: skip
    assert t.take("upstream", ev.ProviderAbortIndication).reason == NO_REASON


@pytest.mark.parametrize("kind", [ResyncType.SET, ResyncType.RESTART, ResyncType.ABANDON])
def test_symmetric_resync_arrives_as_it_would_directly(kind: ResyncType) -> None:
    """The relay swaps a resync's two flows between the legs' points of view: what the
    upstream sees, and what the client gets back, is what they would see without it."""
    from tests.agent.test_agent import AgentPair

    units = FU.DUPLEX | FU.SYMMETRIC_SYNC | FU.MAJOR_SYNC | FU.RESYNC
    config = SessionConfig(functional_units=units, versions=Version.V2, initial_serial=10,
                           second_initial_serial=700)  # fmt: skip

    def drive(client: object, pump: object) -> None:
        machine = client.machine  # type: ignore[attr-defined]
        machine.minor_sync(confirm=True)
        pump()  # type: ignore[operator]
        serials = {ResyncType.SET: (100, 900), ResyncType.RESTART: (10, 700),
                   ResyncType.ABANDON: (None, None)}[kind]  # fmt: skip
        machine.resync(kind, serials[0], second_type=kind, second_serial=serials[1])
        pump()  # type: ignore[operator]

    pair = AgentPair(units, versions=Version.V2, initial_serial=10, second_initial_serial=700)
    pair.open(hello=None)
    drive(pair.client, pair.pump)
    direct = (pair.take("server", ev.ResyncIndication), pair.take("client", ev.ResyncConfirm))

    t = Through(config, SessionConfig(functional_units=units, versions=Version.V2))
    t.open()
    drive(t.client, t.pump)
    relayed = (t.take("upstream", ev.ResyncIndication), t.take("client", ev.ResyncConfirm))
    assert relayed == direct


# ------------------------------------------------------------------ what cannot be relayed


def test_a_resync_collision_resolved_on_one_leg_goes_through() -> None:
    """Both ends resynchronize at once; the relay's machine on the upstream leg settles the
    collision as X.225 says (the initiator's wins), as it would without the relay."""
    config = SessionConfig(functional_units=HALF)
    t = Through(config, config)
    t.open()
    t.client.machine.resync(ResyncType.ABANDON)
    t.upstream.machine.resync(ResyncType.ABANDON)
    t.pump()
    assert t.take("upstream", ev.ResyncIndication).collision
    assert isinstance(t.take("client", ev.ResyncConfirm), ev.ResyncConfirm)
    assert t.bridge.phase == "open"


def test_a_resync_collision_across_the_relay_aborts_both_legs() -> None:
    config = SessionConfig(functional_units=HALF)
    t = Through(config, config)
    t.open()
    # The upstream's RS reaches the relay, which sends it on to the client; before the
    # client sees it, the client's own RS reaches the relay and wins there (X.225 7.24: the
    # initiator's): the relay's RS on the client's behalf is lost, the upstream's waits.
    t.upstream.machine.resync(ResyncType.ABANDON)
    for data in t.upstream.data_to_send():
        t.bridge.receive("upstream", data, t.now)
    t.client.machine.resync(ResyncType.ABANDON)
    for data in t.client.data_to_send():
        t.bridge.receive("client", data, t.now)
    t.pump()
    assert t.bridge.outcome == "aborted", t.bridge.ending
    assert "collided" in (t.bridge.ending or "")
    assert t.take("client", ev.ProviderAbortIndication).reason == NO_REASON
    assert t.take("upstream", ev.ProviderAbortIndication).reason == NO_REASON


def test_a_resync_leaving_a_token_to_the_peers_choice() -> None:
    config = SessionConfig(functional_units=HALF)
    t = Through(config, SessionConfig(functional_units=HALF,
                                      called_choice={Token.DATA: TokenSetting.RESPONDER}))
    t.open()
    t.client.machine.resync(ResyncType.ABANDON, tokens={Token.DATA: TokenSetting.CALLED_CHOICE})
    t.pump()
    rs = t.take("upstream", ev.ResyncIndication)
    assert rs.tokens[Token.DATA] == TokenSetting.CALLED_CHOICE
    t.take("client", ev.ResyncConfirm)
    # The upstream's agent takes none of the tokens left to it: the client keeps the data
    # token, and the relay mirrors that on both legs.
    assert bool(t.client.machine.tokens_owned & Token.DATA) != bool(
        t.upstream.machine.tokens_owned & Token.DATA)
    assert t.bridge.client.machine.tokens_owned == t.upstream.machine.tokens_owned


def test_an_exception_report_from_a_peer_aborts_both_legs() -> None:
    from sessionlayer.spdu import ExceptionReport, PleaseTokens

    units = FU.HALF_DUPLEX | FU.EXCEPTIONS
    t = Through(SessionConfig(functional_units=units), SessionConfig(functional_units=units))
    t.open()
    inject(t, "upstream", encode_tsdu(PleaseTokens(), ExceptionReport(reflect=b"\x01")))
    assert t.bridge.outcome == "aborted"
    assert t.take("client", ev.ProviderAbortIndication).reason == NO_REASON


def test_a_hello_that_does_not_decode_gets_no_keepalive() -> None:
    from sessionlayer.agent import Welcome

    t = Through(accept_data=Welcome(keepalive=True).encode())
    t.open(b"SLH1{not json")
    assert t.bridge.phase == "open" and not t.bridge.client.keepalive


def test_fast_path_hands_a_tsdu_spanning_tpdus_to_the_agent_and_takes_over_after() -> None:
    """In one read: plain data, typed data in three TPDUs (not plain: the agent takes it,
    and the rest of the read with it while RFC 1006 holds part of that TSDU), plain data;
    everything arrives in order, and the next read takes the fast path again."""
    units = FU.DUPLEX | FU.TYPED_DATA
    t = Through(SessionConfig(functional_units=units), SessionConfig(functional_units=units))
    t.open()
    t.events["upstream"].clear()
    t.client.machine.send_data(b"one")
    t.client.machine.send_typed_data(bytes(20_000))
    t.client.machine.send_data(b"two")
    t.client.machine.send_data(b"three")
    t.bridge.receive("client", b"".join(t.client.data_to_send()), t.now)
    t.pump()
    got = [(type(e).__name__, e.data) for e in t.events["upstream"]]  # type: ignore[attr-defined]
    assert got == [("DataIndication", b"one"), ("TypedDataIndication", bytes(20_000)),
                   ("DataIndication", b"two"), ("DataIndication", b"three")]  # fmt: skip
    before = t.bridge.plain_messages
    t.client.machine.send_data(b"four")
    t.pump()
    assert t.events["upstream"][-1] == ev.DataIndication(b"four")
    assert t.bridge.plain_messages == before + 1


# ------------------------------------------------------------------ what crosses a major sync

SYMMETRIC = FU.DUPLEX | FU.SYMMETRIC_SYNC | FU.MAJOR_SYNC | FU.RESYNC | FU.TYPED_DATA
MINOR_MAJOR = FU.DUPLEX | FU.MINOR_SYNC | FU.MAJOR_SYNC | FU.RESYNC


def crossing(units: FU, setter: str, options: RelayOptions | None = None) -> Through:
    """An open session through the relay whose ``setter`` end holds the tokens a major sync
    point needs (the client gives them to the upstream first when it is the setter)."""
    versions = Version.V2 if units & FU.SYMMETRIC_SYNC else Version.V1 | Version.V2
    config = SessionConfig(functional_units=units, versions=versions, initial_serial=40,
                           second_initial_serial=900 if units & FU.SYMMETRIC_SYNC else None)
    t = Through(config, SessionConfig(functional_units=units, versions=versions), options)
    t.open()
    if setter == "upstream":
        t.client.machine.give_tokens(t.client.machine.tokens_owned)
        t.pump()
    t.events = {"client": [], "upstream": []}
    return t


def ends(t: Through, setter: str) -> tuple[SessionAgent, SessionAgent, Leg]:
    """(the near end: the setter's agent, the far end's agent, the far end's leg)."""
    if setter == "client":
        return t.client, t.upstream, "upstream"
    return t.upstream, t.client, "client"


def flows(m: SessionMachine, mine: bool = True, restart: bool = True) -> tuple[int, ...]:
    """A machine's V(A), V(M) (and V(R)) of its sending flow, then of its receiving flow
    (``mine=False``: the other way round, as its peer numbers them)."""
    send = (m.vas, m.vms) + ((m.vrs,) if restart else ())
    receive = (m.var, m.vmr) + ((m.vrr,) if restart else ())
    return send + receive if mine else receive + send


def assert_serials_agree(t: Through, restart: bool = True) -> None:
    """Each end's flows as the relay's machine on its leg sees them (each end's sending
    flow is that machine's receiving flow), and the two ends' numbering alike (V(R), the
    lowest restart point, too unless ``restart`` is False)."""
    upstream = t.bridge.upstream
    assert upstream is not None
    assert flows(t.client.machine) == flows(t.bridge.client.machine, False)
    assert flows(t.upstream.machine) == flows(upstream.machine, False)
    assert flows(t.client.machine, restart=restart) == flows(t.upstream.machine, False, restart)


@pytest.mark.parametrize("setter", ["client", "upstream"])
@pytest.mark.parametrize("units", [SYMMETRIC, MINOR_MAJOR], ids=["symmetric", "minor"])
def test_a_minor_sync_ack_that_crossed_a_major_sync_is_confirmed_by_its_maa(
    units: FU, setter: str
) -> None:
    """One end sets a minor sync point and then a major one (recovery's acknowledgement
    point, then a checkpoint).  The far end answers the MIP before it sees the MAP; its
    MIA reaches the relay while the relay's machine on the near leg waits to answer that
    MAP (STA10A), where X.225 lets no S-SYNC-MINOR response be sent.  The relay does not
    relay that MIA: the MAA right behind it confirms both points (Table A-4), as it does
    at the near end, and the serial numbers stay the same everywhere.  (The old bridge
    aborted both legs: "SSYNmrsp is not allowed in state STA10A".)"""
    t = crossing(units, setter)
    near, _, far_leg = ends(t, setter)
    minor = near.machine.minor_sync(confirm=True, user_data=b"ack")
    major = near.machine.major_sync(b"checkpoint")
    t.pump()
    assert t.bridge.phase == "open", t.bridge.ending
    assert t.kinds(far_leg) == ["MinorSyncIndication", "MajorSyncIndication"]
    assert t.take(far_leg, ev.MinorSyncIndication).serial == minor
    assert t.take(far_leg, ev.MajorSyncIndication).serial == major
    # (Its MIA never came: the MAA confirms it, and the minor point's own confirm says so.)
    assert t.kinds(setter) == ["MinorSyncConfirm", "MajorSyncConfirm"]
    assert t.take(setter, ev.MinorSyncConfirm).serial == minor
    assert t.take(setter, ev.MajorSyncConfirm).serial == major
    # The far end did answer the MIP, ahead of its MAA; only the MAA went on.
    answers = [type(s).__name__ for s in spdus_in(t.received[far_leg])]
    assert answers.count("MinorSyncAck") == 1 and answers.count("MajorSyncAck") == 1
    relayed = [type(s).__name__ for s in spdus_in(t.wire[setter])]
    assert "MinorSyncAck" not in relayed and relayed.count("MajorSyncAck") == 1
    assert_serials_agree(t)
    assert near.machine.vas == near.machine.vms == major + 1
    # And on it goes: the next minor sync point is confirmed as usual.
    again = near.machine.minor_sync(confirm=True)
    t.pump()
    assert again == major + 1
    assert t.take(far_leg, ev.MinorSyncIndication).serial == again
    assert t.take(setter, ev.MinorSyncConfirm).serial == again
    assert_serials_agree(t)


@pytest.mark.parametrize("setter", ["client", "upstream"])
def test_what_crossed_a_major_sync_waits_for_its_maa_and_comes_right_after_it(
    setter: str,
) -> None:
    """The far end sends data, typed data and a minor sync point of its own (symmetric
    synchronize), then data, before it sees the near end's MAP.  The relay's machine on
    the near leg waits to answer that MAP (STA10A): it may send the data and typed data
    there (version 2: SDTreq, STDreq), which reach the near end ahead of the MAA, as
    without the relay, but not the minor sync point: that waits for the far end's MAA, and
    so does the data behind it, in order, and they follow the MAA to the near end.  The
    near end's MIA for that point is not relayed back: the far end's MAA settled it there
    already ([64]).  (The data used to wait for the MAA too: SDTreq raised in STA10A.)"""
    t = crossing(SYMMETRIC, setter)
    near, far, far_leg = ends(t, setter)
    major = near.machine.major_sync(b"checkpoint")
    for data in near.data_to_send():
        t.received[setter] += data  # the MAP reaches the relay first, then the far end's
        t.bridge.receive(CLIENT if setter == "client" else UPSTREAM, data, t.now)
    far.machine.send_data(b"one")
    far.machine.send_typed_data(b"two")
    theirs = far.machine.minor_sync(confirm=True, user_data=b"theirs")
    far.machine.send_data(b"three")
    t.pump()
    assert t.bridge.phase == "open", t.bridge.ending
    assert t.kinds(setter) == ["DataIndication", "TypedDataIndication", "MajorSyncConfirm",
                               "MinorSyncIndication", "DataIndication"]  # fmt: skip
    assert t.take(setter, ev.DataIndication).data == b"one"
    assert t.take(setter, ev.TypedDataIndication).data == b"two"
    assert t.take(setter, ev.MajorSyncConfirm).serial == major
    mip = t.take(setter, ev.MinorSyncIndication)
    assert (mip.serial, mip.user_data) == (theirs, b"theirs")
    assert t.take(setter, ev.DataIndication).data == b"three"
    # (No MIA: the near end's MAP, relayed, superseded it, and its MAA settles it.)
    assert t.kinds(far_leg) == ["MinorSyncSuperseded", "MajorSyncIndication"]
    assert t.take(far_leg, ev.MinorSyncSuperseded) == ev.MinorSyncSuperseded(theirs, major)
    # On the near leg the data went ahead of the MAA, what had waited for it behind.
    order = [type(s).__name__ for s in spdus_in(t.wire[setter])
             if type(s).__name__ in ("MajorSyncAck", "DataTransfer", "TypedData",
                                     "MinorSyncPoint")]  # fmt: skip
    assert order[-5:] == ["DataTransfer", "TypedData", "MajorSyncAck", "MinorSyncPoint",
                          "DataTransfer"]  # fmt: skip
    assert "MinorSyncAck" not in [type(s).__name__ for s in spdus_in(t.wire[far_leg])]
    assert t.bridge.held_octets_max == 2 * 64 + len(b"theirs" b"three")
    # Every leg agrees with its end, and both ends on V(A) and V(M).  Only the far flow's
    # lowest restart point differs: the far end's MAA settled its point (V(R) past it),
    # which the near end received after its MAA (V(R) at it, as for any point after the
    # major one): X.225 allows the relay no other order.  A resync restarting there would
    # be refused on the far leg (both legs aborted, as any request the other leg refuses).
    assert_serials_agree(t, restart=False)
    assert (near.machine.vrr, far.machine.vrs) == (theirs, theirs + 1)
    # Both ends go on: data both ways, and the far end's next point is confirmed.
    far.machine.send_data(b"four")
    near.machine.send_data(b"back")
    nxt = far.machine.minor_sync(confirm=True)
    t.pump()
    assert t.take(setter, ev.DataIndication).data == b"four"
    assert t.take(far_leg, ev.DataIndication).data == b"back"
    assert t.take(far_leg, ev.MinorSyncConfirm).serial == nxt == theirs + 1
    assert_serials_agree(t, restart=False)


def test_a_minor_sync_point_the_far_ends_major_sync_crossed_is_superseded_at_both_ends() -> None:
    """Symmetric synchronize: the client sets a confirmed minor sync point as the upstream
    sets a major one.  The relay's point on the upstream leg (the client's, relayed) is
    superseded by the MAP, and there is nothing to relay for that (it used to abort both
    legs); the client sees the MAP relayed behind its own point, which is superseded there
    too, and the upstream's MAA settles both."""
    t = crossing(SYMMETRIC, "upstream")
    minor = t.client.machine.minor_sync(confirm=True, user_data=b"mine")
    major = t.upstream.machine.major_sync(b"checkpoint")
    t.pump()
    assert t.bridge.phase == "open", t.bridge.ending
    assert t.events["client"] == [ev.MinorSyncSuperseded(minor, major),
                                  ev.MajorSyncIndication(major, b"checkpoint")]  # fmt: skip
    assert t.take("upstream", ev.MajorSyncConfirm).serial == major
    assert_serials_agree(t)


def test_more_than_max_held_while_a_major_sync_waits_aborts_both_legs() -> None:
    t = crossing(SYMMETRIC, "client", RelayOptions(max_held=4096))
    t.client.machine.major_sync(b"checkpoint")
    t.upstream.machine.minor_sync(confirm=True)  # (held: what follows waits behind it)
    t.upstream.machine.send_data(b"a" * 4000)
    t.upstream.machine.send_data(b"b" * 4000)
    t.pump()
    assert t.bridge.outcome == "aborted"
    assert "waited for the answer to its major sync point" in (t.bridge.ending or "")
    assert t.take("client", ev.ProviderAbortIndication).reason == NO_REASON
    assert t.take("upstream", ev.ProviderAbortIndication).reason == NO_REASON
    assert not any(isinstance(e, ev.DataIndication) for e in t.events["client"])


@pytest.mark.parametrize("setter", ["client", "upstream"])
def test_a_token_asked_for_across_a_major_sync_is_relayed(setter: str) -> None:
    """The far end asks for a token before it sees the near end's MAP.  The relay's
    machine on the near leg waits to answer that MAP (STA10A), where X.225 (version 2)
    lets it ask for tokens too: the PT is relayed, the near end (STA04A) gives the token at
    once, and that GT is relayed back the same way, across the major sync (both legs were
    aborted: please_tokens and give_tokens raised there)."""
    t = crossing(MINOR_MAJOR, setter)
    near, far, far_leg = ends(t, setter)
    near.machine.major_sync(b"checkpoint")
    for data in near.data_to_send():
        t.received[setter] += data  # the MAP reaches the relay first, then the far end's
        t.bridge.receive(CLIENT if setter == "client" else UPSTREAM, data, t.now)
    with pytest.raises(TokensMissing):
        far.call(lambda m: m.minor_sync(), Token.MINOR_SYNC)  # (a PT)
    t.pump()
    assert t.bridge.phase == "open", t.bridge.ending
    assert t.take(setter, ev.TokenPleaseIndication).tokens == Token.MINOR_SYNC
    assert t.take(setter, ev.MajorSyncConfirm)
    assert t.take(far_leg, ev.MajorSyncIndication)
    assert t.take(far_leg, ev.TokenGiveIndication).tokens == Token.MINOR_SYNC
    assert far.machine.tokens_owned & Token.MINOR_SYNC
    assert not near.machine.tokens_owned & Token.MINOR_SYNC
    assert near.machine.state == far.machine.state == "STA713"
