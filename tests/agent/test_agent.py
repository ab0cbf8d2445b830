"""Two sans-I/O agents against each other, no sockets: the handshake and the hello, token
fetching, the answers an agent gives on its own, release, keepalive and every deadline.

``AgentPair`` moves the octets each agent writes to the other (the TCP of these tests) and
keeps the time, so a test says exactly when each thing happens.
"""

from __future__ import annotations

from typing import Any

import pytest

from sessionlayer import FunctionalUnit as FU
from sessionlayer.agent import (
    NEEDS,
    PING,
    PONG,
    Hello,
    Options,
    SessionAgent,
    TokensMissing,
    Welcome,
)  # fmt: skip
from sessionlayer.errors import AbortReason, LocalError
from sessionlayer.machine import SessionConfig
from sessionlayer.machine import events as ev
from sessionlayer.spdu import decode_tsdu
from sessionlayer.spdu.codes import ResyncType, Token, TokenSetting
from sessionlayer.spdu.types import Abort, ConnectionId
from sessionlayer.transport import Rfc1006Connection, TsduReceived

HALF = FU.HALF_DUPLEX | FU.MINOR_SYNC | FU.MAJOR_SYNC | FU.RESYNC | FU.NEGOTIATED_RELEASE
ACTIVITIES = FU.DUPLEX | FU.ACTIVITY | FU.CAPABILITY_DATA | FU.MAJOR_SYNC
HELLO = Hello()
OPTS = Options(keepalive_interval=15.0, idle_timeout=45.0, handshake_timeout=10.0)


class AgentPair:
    """An initiator and a responder agent, connected through a byte pipe."""

    def __init__(self, units: FU = FU.DUPLEX, options: Options = OPTS, *, fast: bool = False,
                 **config: Any) -> None:  # fmt: skip
        cfg = SessionConfig(functional_units=units, **config)
        self.now = 100.0
        self.client = SessionAgent("initiator", cfg, options)
        self.server = SessionAgent("responder", cfg, options)
        if fast:
            self.client.fast_connect()
        self.wire: list[tuple[str, bytes]] = []  # (who wrote, octets)
        self.events: dict[str, list[ev.Event]] = {"client": [], "server": []}
        self.client.connection_made(self.now)
        self.server.connection_made(self.now)

    def pump(self) -> None:
        """Deliver what each side wrote until both are quiet."""
        moved = True
        while moved:
            moved = False
            for name, src, dst in (("client", self.client, self.server),
                                   ("server", self.server, self.client)):  # fmt: skip
                out = src.data_to_send()
                if out:  # (one write, as the binding does: one read here)
                    moved = True
                    data = b"".join(out)
                    self.wire.append((name, data))
                    dst.heard(self.now)
                    dst.receive_data(data, self.now)
            self.events["client"] += self.client.events()
            self.events["server"] += self.server.events()

    def kinds(self, side: str) -> list[str]:
        return [type(e).__name__ for e in self.events[side]]

    def take(self, side: str, kind: type) -> Any:
        found = [e for e in self.events[side] if isinstance(e, kind)]
        assert found, f"no {kind.__name__} at the {side}: {self.kinds(side)}"
        self.events[side].remove(found[0])
        return found[0]

    def open(self, hello: Hello | None = HELLO) -> Welcome | None:
        self.pump()  # CR / CC
        self.client.connect(None if hello else b"osi", ConnectionId(common_ref=b"c" * 16), hello)
        self.pump()
        indication = self.take("server", ev.ConnectIndication)
        self.server.indication(indication)
        self.server.accept(chosen={"codec": "json"}, session_id="ab" * 16)
        self.pump()
        return self.client.confirmed(self.take("client", ev.ConnectConfirm))


def tsdus(data: bytes) -> list[bytes]:
    """The TSDUs in octets one agent wrote after the handshake."""
    rfc = Rfc1006Connection("responder")
    rfc.state = rfc.state.OPEN  # (past CR/CC: only DTs follow)
    return [e.data for e in rfc.receive_data(data) if isinstance(e, TsduReceived)]


# ------------------------------------------------------------------ handshake and hello


def test_handshake_carries_the_hello_and_the_welcome() -> None:
    pair = AgentPair()
    welcome = pair.open()
    assert pair.client.machine.state == pair.server.machine.state == "STA713"
    assert pair.client.chosen == {"codec": "json"}
    assert welcome is not None and welcome.session_id == "ab" * 16
    assert pair.client.keepalive and pair.server.keepalive
    assert pair.client.plain and pair.server.plain


def test_an_osi_peer_gets_no_hello_no_probes_and_no_idle_timeout() -> None:
    """Silence from an OSI stack is normal (an IEC 61850 client waits minutes for reports):
    no idle deadline either side (TCP keepalive finds a dead host), however long it lasts."""
    pair = AgentPair()
    pair.open(hello=None)
    assert pair.server.hello is None and pair.server.peer_data == b"osi"
    assert not pair.client.keepalive and not pair.server.keepalive
    assert pair.client.next_deadline() is None and pair.server.next_deadline() is None
    for agent in (pair.client, pair.server):
        agent.handle_timer(pair.now + 10 * OPTS.idle_timeout)
        assert agent.machine.state == "STA713" and not b"".join(agent.data_to_send())


# ------------------------------------------------------------------ tokens


def test_a_request_fetches_the_tokens_it_needs() -> None:
    """Half-duplex: the responder has no data token; its send asks for it (PT), the
    initiator's agent gives it (GT) by itself, and the send goes out on the retry."""
    pair = AgentPair(HALF)
    pair.open()
    assert not pair.server.machine.tokens_owned & Token.DATA
    with pytest.raises(TokensMissing) as info:
        pair.server.call(lambda m: m.send_data(b"x"), NEEDS["data"])
    assert info.value.tokens == Token.DATA
    pair.pump()
    assert pair.take("client", ev.TokenPleaseIndication).tokens == Token.DATA
    assert pair.server.machine.tokens_owned & Token.DATA  # given without the user
    pair.server.call(lambda m: m.send_data(b"x"), NEEDS["data"])
    pair.server.done_asking(Token.DATA)
    pair.pump()
    assert pair.take("client", ev.DataIndication).data == b"x"


def test_tokens_asked_for_are_kept_until_the_request_went_out() -> None:
    """The peer asks for the token back before our request ran: we keep it until
    done_asking(), then give it."""
    pair = AgentPair(HALF)
    pair.open()
    with pytest.raises(TokensMissing):
        pair.server.call(lambda m: m.send_data(b"1"), NEEDS["data"])
    pair.pump()
    with pytest.raises(TokensMissing):  # the initiator wants it back at once
        pair.client.call(lambda m: m.send_data(b"2"), NEEDS["data"])
    pair.pump()
    assert pair.server.machine.tokens_owned & Token.DATA  # kept: our send is pending
    pair.server.call(lambda m: m.send_data(b"1"), NEEDS["data"])
    pair.server.done_asking(Token.DATA)  # now it is given
    pair.pump()
    assert pair.client.machine.tokens_owned & Token.DATA
    pair.client.call(lambda m: m.send_data(b"2"), NEEDS["data"])
    pair.pump()
    assert pair.take("server", ev.DataIndication).data == b"2"


def gives(pair: AgentPair, side: str) -> list[ev.TokenGiveIndication]:
    return [e for e in pair.events[side] if isinstance(e, ev.TokenGiveIndication)]


def test_a_debt_for_a_token_given_away_meanwhile_is_forgotten() -> None:
    """The peer's PT crossed the GT our user sent: the peer has the token, so nothing is
    owed.  The next time we get the token (we asked for it) we keep it: the peer did not
    ask again."""
    pair = AgentPair(HALF)
    pair.open()
    with pytest.raises(TokensMissing):
        pair.server.call(lambda m: m.send_data(b"1"), NEEDS["data"])  # PT ...
    pair.client.call(lambda m: m.give_tokens(Token.DATA))  # ... crossing our GT
    pair.pump()
    assert pair.take("client", ev.TokenPleaseIndication).tokens == Token.DATA
    pair.server.call(lambda m: m.send_data(b"1"), NEEDS["data"])
    pair.server.done_asking(Token.DATA)
    pair.pump()
    with pytest.raises(TokensMissing):  # now we want it back: the server gives it
        pair.client.call(lambda m: m.send_data(b"2"), NEEDS["data"])
    pair.pump()
    pair.client.call(lambda m: m.send_data(b"2"), NEEDS["data"])
    pair.client.done_asking(Token.DATA)
    pair.events["server"].clear()
    pair.pump()
    assert pair.take("server", ev.DataIndication).data == b"2"
    assert gives(pair, "server") == []  # no GT the server never asked for
    assert pair.client.machine.tokens_owned & Token.DATA


def test_a_pt_discarded_by_the_peers_resync_is_sent_again() -> None:
    """Our PT crossed the peer's RS: the peer discards it (STA05A).  The request waiting
    for the token asks again after the resync instead of waiting for ever."""
    pair = AgentPair(HALF)
    pair.open()
    with pytest.raises(TokensMissing):
        pair.server.call(lambda m: m.send_data(b"x"), NEEDS["data"])
    pair.client.call(lambda m: m.resync(ResyncType.ABANDON))
    pair.pump()
    assert pair.take("server", ev.ResyncIndication)
    assert pair.take("client", ev.ResyncConfirm)
    assert "TokenPleaseIndication" not in pair.kinds("client")  # (discarded)
    with pytest.raises(TokensMissing):
        pair.server.call(lambda m: m.send_data(b"x"), NEEDS["data"])
    pair.pump()
    assert pair.take("client", ev.TokenPleaseIndication).tokens == Token.DATA
    pair.server.call(lambda m: m.send_data(b"x"), NEEDS["data"])
    pair.server.done_asking(Token.DATA)
    pair.pump()
    assert pair.take("client", ev.DataIndication).data == b"x"


def test_a_token_a_resync_took_back_is_asked_for_again() -> None:
    """We got the token we asked for, then the peer's resync placed it with the peer
    again before our request ran: the request asks again (and the peer, which owed
    nothing, gives it)."""
    pair = AgentPair(HALF)
    pair.open()
    with pytest.raises(TokensMissing):
        pair.server.call(lambda m: m.send_data(b"x"), NEEDS["data"])
    pair.pump()
    assert pair.server.machine.tokens_owned & Token.DATA
    taken = {Token.DATA: TokenSetting.INITIATOR}  # (the requestor's side)
    pair.client.call(lambda m: m.resync(ResyncType.ABANDON, tokens=taken))
    pair.pump()
    assert pair.client.machine.tokens_owned & Token.DATA
    with pytest.raises(TokensMissing):
        pair.server.call(lambda m: m.send_data(b"x"), NEEDS["data"])
    pair.pump()
    pair.server.call(lambda m: m.send_data(b"x"), NEEDS["data"])
    pair.server.done_asking(Token.DATA)
    pair.pump()
    assert pair.take("client", ev.DataIndication).data == b"x"


def test_a_token_asked_for_across_our_major_sync_is_given_before_the_maa() -> None:
    """The peer's PT crossed our MAP, and its application holds the MAA back
    (``defer_checkpoints``): the token goes at once (X.225 lets it be given from STA04A),
    so the peer has it while it waits, not only after its MAA."""
    pair = AgentPair(HALF)
    pair.open()
    pair.server.defer_checkpoints = True
    with pytest.raises(TokensMissing):
        pair.server.call(lambda m: m.send_data(b"x"), NEEDS["data"])  # PT ...
    pair.client.call(lambda m: m.major_sync())  # ... crossing our MAP
    pair.pump()
    assert (pair.client.machine.state, pair.server.machine.state) == ("STA04A", "STA10A")
    assert gives(pair, "server") == [ev.TokenGiveIndication(Token.DATA)]
    assert pair.server.machine.tokens_owned & Token.DATA
    pair.server.answer_checkpoint()
    pair.pump()
    assert pair.take("client", ev.MajorSyncConfirm)
    pair.server.call(lambda m: m.send_data(b"x"), NEEDS["data"])
    pair.server.done_asking(Token.DATA)
    pair.pump()
    assert pair.take("client", ev.DataIndication).data == b"x"


def test_a_request_the_peer_cannot_help_with_still_raises() -> None:
    pair = AgentPair(FU.DUPLEX)
    pair.open()
    with pytest.raises(Exception, match="not"):
        pair.client.call(lambda m: m.major_sync())  # the unit was not negotiated


# ------------------------------------------------------------------ automatic answers


def test_sync_points_are_answered_by_the_agent() -> None:
    pair = AgentPair(HALF)
    pair.open()
    pair.client.call(lambda m: m.major_sync(user_data=b"cp"))
    pair.pump()
    indication = pair.take("server", ev.MajorSyncIndication)
    assert indication.user_data == b"cp" and pair.server.last_sync == indication.serial
    assert pair.take("client", ev.MajorSyncConfirm).serial == indication.serial
    pair.client.call(lambda m: m.minor_sync(confirm=True))
    pair.pump()
    assert pair.take("client", ev.MinorSyncConfirm).serial == pair.client.last_sync


def test_resync_is_answered_by_the_agent() -> None:
    pair = AgentPair(HALF)
    pair.open()
    pair.client.call(lambda m: m.major_sync())
    pair.pump()
    pair.client.call(lambda m: m.resync(ResyncType.RESTART, serial=m.vr))
    pair.pump()
    assert pair.take("server", ev.ResyncIndication)
    assert pair.take("client", ev.ResyncConfirm).serial == pair.client.machine.vm


def test_activity_end_and_capability_data_are_answered_with_the_callback() -> None:
    pair = AgentPair(ACTIVITIES)
    pair.open()
    pair.server.on_capability_data = lambda e: bytes(e.user_data or b"")[::-1]
    pair.client.call(lambda m: m.send_capability_data(b"abc"))
    pair.pump()
    assert pair.take("client", ev.CapabilityDataConfirm).user_data == b"cba"
    pair.client.call(lambda m: m.activity_start(b"a1"))
    pair.client.call(lambda m: m.activity_end())
    pair.pump()
    assert pair.take("server", ev.ActivityEndIndication)
    assert pair.take("client", ev.ActivityEndConfirm)


# ------------------------------------------------------------------ release


def test_release_is_answered_and_both_sides_end() -> None:
    pair = AgentPair()
    pair.open()
    pair.client.call(lambda m: m.release())
    pair.pump()
    assert pair.take("server", ev.ReleaseIndication)
    assert pair.take("client", ev.ReleaseConfirm).accepted
    assert pair.client.released and pair.server.released
    assert pair.client.wants_close
    # The responder leaves the transport to the initiator, up to TIM (X.225 7.7).
    assert pair.server.next_deadline() == pair.now + pair.server.machine.config.abort_timeout


def test_release_refused_by_the_application() -> None:
    pair = AgentPair(HALF)
    pair.open()
    pair.server.on_release = lambda e: False
    pair.client.call(lambda m: m.release())
    pair.pump()
    assert not pair.take("client", ev.ReleaseConfirm).accepted
    assert not pair.server.released and pair.server.machine.state == "STA713"


# ------------------------------------------------------------------ deadlines


def test_keepalive_probe_answer_and_idle_timeout() -> None:
    pair = AgentPair()
    pair.open()
    client, server = pair.client, pair.server
    start = pair.now
    assert client.next_deadline() == start + OPTS.keepalive_interval
    pair.now = start + OPTS.keepalive_interval
    client.handle_timer(pair.now)
    (probe,) = client.data_to_send()
    assert tsdus(probe) == [PING]
    server.receive_data(probe, pair.now)
    (answer,) = server.data_to_send()
    assert tsdus(answer) == [PONG]
    assert not server.events()  # neither reaches the application
    # No answer comes: only the idle deadline is left.
    assert client.next_deadline() == start + OPTS.idle_timeout
    pair.now = start + OPTS.idle_timeout
    client.handle_timer(pair.now)
    (ab_octets,) = client.data_to_send()
    (ab,) = decode_tsdu(tsdus(ab_octets)[0])
    assert isinstance(ab, Abort)
    assert ab.transport_disconnect == AbortReason.TRANSPORT_RELEASED | AbortReason.NO_REASON
    (event,) = client.events()
    assert isinstance(event, ev.ProviderAbortIndication) and event.local
    assert client.aborting and client.wants_close


def test_heard_moves_the_deadlines() -> None:
    pair = AgentPair()
    pair.open()
    pair.client.heard(pair.now + 10)
    assert pair.client.next_deadline() == pair.now + 10 + OPTS.keepalive_interval


def test_responder_handshake_deadline() -> None:
    agent = SessionAgent("responder", SessionConfig(), OPTS)
    agent.connection_made(5.0)
    assert agent.next_deadline() == 5.0 + OPTS.handshake_timeout
    agent.handle_timer(5.0 + OPTS.handshake_timeout - 0.001)
    assert not agent.aborting
    agent.handle_timer(5.0 + OPTS.handshake_timeout)
    assert agent.aborting and agent.data_to_send() == []  # nothing to say: just closed
    (event,) = agent.events()
    assert isinstance(event, ev.ProviderAbortIndication) and "handshake" in event.message


def test_a_malformed_tpkt_fails_the_connection() -> None:
    agent = SessionAgent("responder", SessionConfig(), OPTS)
    agent.connection_made(0.0)
    agent.receive_data(b"\x04\x00\x00\x07abc", 0.0)
    assert agent.aborting
    (event,) = agent.events()
    assert isinstance(event, ev.ProviderAbortIndication) and "TPKT" in event.message


# ------------------------------------------------------------------ fast connect


def _tpkts(data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        size = int.from_bytes(data[pos + 2 : pos + 4], "big")
        out.append(data[pos : pos + size])
        pos += size
    return out


def _tpdu_codes(data: bytes) -> list[int]:
    """The TPDU codes (high nibble) of the TPKTs in ``data``."""
    return [tpkt[5] & 0xF0 for tpkt in _tpkts(data)]


def test_fast_connect_takes_one_round_trip() -> None:
    """The CR waits for the CN and goes with it; the responder reads the CN once it took
    the CR and answers CC and AC together, once the S-CONNECT response is made."""
    pair = AgentPair(fast=True)
    assert pair.client.data_to_send() == []  # the CR waits for the S-CONNECT request
    assert pair.client.cn_ready
    pair.client.connect(None, ConnectionId(common_ref=b"c" * 16), Hello(data=b"d" * 300))
    out = pair.client.data_to_send()
    codes = _tpdu_codes(b"".join(out))
    assert codes[0] == 0xE0 and set(codes[1:]) == {0xF0} and len(codes) >= 4  # CR, DTs
    # 128-octet DTs (with their TPKT headers, 132)
    assert all(len(tpkt) <= 132 for tpkt in _tpkts(b"".join(out))[1:])
    pair.server.receive_data(b"".join(out), pair.now)  # (one write, one read)
    [indication] = pair.server.events()
    assert isinstance(indication, ev.ConnectIndication)
    assert pair.server.data_to_send() == []  # the CC waits for the answer
    hello = pair.server.indication(indication)
    assert hello is not None and hello.data == b"d" * 300
    pair.server.accept(chosen={}, session_id="ab" * 16)
    answer = pair.server.data_to_send()
    assert [_tpdu_codes(a)[0] for a in answer] == [0xD0, 0xF0]  # CC, then the AC's DT
    for chunk in answer:
        pair.client.receive_data(chunk, pair.now)
    [confirm] = pair.client.events()
    welcome = pair.client.confirmed(confirm)
    assert welcome is not None and welcome.fast and welcome.session_id == "ab" * 16
    assert pair.client.machine.is_open and pair.server.machine.is_open
    assert pair.client.tpdu_size == pair.server.tpdu_size == 8192  # (the CC's, as always)


def test_a_refusal_or_an_abort_releases_the_held_cc() -> None:
    for answer in ("refuse", "abort"):
        pair = AgentPair(fast=True)
        pair.client.connect(None, ConnectionId(common_ref=b"c" * 16), HELLO)
        pair.pump()
        assert pair.kinds("server") == ["ConnectIndication"]
        assert {who for who, _ in pair.wire} == {"client"}  # nothing answered yet
        sent = len(pair.wire)
        if answer == "refuse":
            pair.server.machine.refuse(now=pair.now)
        else:
            pair.server.fail("given up", AbortReason.NO_REASON, reflect=b"")
        pair.pump()
        assert pair.wire[sent][0] == "server", answer
        assert _tpdu_codes(pair.wire[sent][1])[0] == 0xD0, answer  # the CC went first
        kinds = pair.kinds("client")
        assert kinds and kinds[-1] in ("RefuseConfirm", "ProviderAbortIndication",
                                       "UserAbortIndication"), (answer, kinds)  # fmt: skip


def test_fast_connect_only_before_the_cr() -> None:
    pair = AgentPair()
    with pytest.raises(LocalError):
        pair.client.fast_connect()  # its CR is queued already
    with pytest.raises(LocalError):
        SessionAgent("responder").fast_connect()


def test_a_server_says_whether_it_takes_a_fast_connect() -> None:
    for fast in (True, False):
        pair = AgentPair(options=Options(fast_connect=fast))
        pair.open()
        ac = [data for who, data in pair.wire if who == "server"][-1]  # (the welcome's DT)
        assert (b'"fc":true' in ac) is fast


def test_an_acknowledgement_point_that_crossed_a_checkpoint_is_settled_by_its_maa() -> None:
    """Symmetric synchronize, with journals on both ends: the server sets an
    acknowledgement point (MIP "SLK1") just as the client sets a checkpoint (MAP), neither
    having heard the other.  The client gets the MIP in STA04A, where X.225 has no
    S-SYNC-MINOR response: it does not answer it (it used to: the machine refused the MIA
    and the session ended with an internal error), and the server's MAA settles both flows
    ([64]).  The server's point is void then, its MIA never to come: what it covered stays
    held until a new point, due ``ack_interval`` later, is confirmed."""
    from sessionlayer.recovery import ACK_MARK, Journal
    from sessionlayer.spdu.codes import Version
    from sessionlayer.spdu.types import MinorSyncAck, MinorSyncPoint

    units = FU.DUPLEX | FU.SYMMETRIC_SYNC | FU.MAJOR_SYNC | FU.RESYNC
    opts = Options(keepalive_interval=None, idle_timeout=None, ack_interval=0.25)
    pair = AgentPair(units, opts, versions=Version.V2)
    pair.open()
    client, server = pair.client, pair.server
    client.journal, server.journal = Journal(1 << 20), Journal(1 << 20)
    server.machine.send_data(b"m")
    server.journal.append(b"m")
    server.journal.since = pair.now
    server.acknowledge(pair.now + 1.0)  # (due by time)
    point = server.machine.vms - 1
    assert server.journal.is_mark(point)
    major = client.machine.major_sync(b"checkpoint")
    sent = len(pair.wire)
    pair.pump()  # the MAP reaches the server after its MIP went out: they crossed
    assert pair.kinds("client") == ["DataIndication", "MajorSyncConfirm"]  # (the MIP: ours)
    assert pair.take("client", ev.MajorSyncConfirm).serial == major
    from_client = [s for who, data in pair.wire[sent:] if who == "client"
                   for t in tsdus(data) for s in decode_tsdu(t)]  # fmt: skip
    assert not any(isinstance(s, MinorSyncAck) for s in from_client)
    assert (client.machine.var, client.machine.vmr) == (server.machine.vas, server.machine.vms)
    assert server.machine.vas == server.machine.vms == point + 1
    journal = server.journal
    assert not journal.is_mark(point) and journal.held == 1  # (void, not confirmed)
    assert journal.ack_deadline(opts.ack_interval) == pair.now + opts.ack_interval
    pair.now += opts.ack_interval
    server.acknowledge(pair.now)
    sent = len(pair.wire)
    pair.pump()
    again = [s for who, data in pair.wire[sent:] if who == "server"
             for t in tsdus(data) for s in decode_tsdu(t)]  # fmt: skip
    mips = [s for s in again if isinstance(s, MinorSyncPoint)]
    assert [(m.serial_number, m.user_data) for m in mips] == [(point + 1, ACK_MARK)]
    assert journal.held == 0 and journal.size == 0  # the new point was confirmed
    assert client.machine.state == server.machine.state == "STA713"
