"""``SessionAgent``: what one end of a session does on its own, sans I/O.

The protocol machine (:mod:`sessionlayer.machine`) does what X.225 prescribes and nothing
more: it tells its user about a sync point and waits for the user's answer.  The agent is
that user's reflexes, the part every application would otherwise write the same way:

* it answers what only has one sensible answer (sync points, activity ends, interrupts,
  discards, resyncs, capability data, releases, requests for tokens: ``_answer``);
* it fetches the tokens a request needs (:meth:`call` raises :class:`TokensMissing`
  after sending PLEASE TOKENS; try again after the peer's next input) and gives the
  tokens the peer asked for as soon as it may;
* it speaks RFC 1006 underneath (CR/CC, TSDUs, the expedited option) and the sessionlayer
  hello in the CN/AC user data (application parameters, keepalive, the session id);
* it keeps the connection's deadlines: the handshake (responder), the machine's TIM, the
  keepalive probe and the idle timeout (:meth:`next_deadline`, :meth:`handle_timer`).

Bytes and the time go in (:meth:`receive_data`, :meth:`heard`, :meth:`handle_timer`);
bytes to write (:meth:`data_to_send`), events for the application (:meth:`events`) and
the next deadline come out.  It opens no socket and reads no clock.  The S-DATA fast path
(:mod:`sessionlayer.transport`'s plain-data reader and framer) bypasses it while
:attr:`plain` holds, so that the agent sees only what needs deciding.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Literal, TypeVar

from ..errors import (
    AbortReason,
    DecodeError,
    EncodeError,
    LocalError,
    ParameterError,
    TokenError,
)
from ..machine import SessionConfig, SessionMachine
from ..machine import events as ev
from ..machine.rare import Rarely
from ..machine.sync import MAX_SERIAL
from ..recovery.journal import (
    ACK_MARK,
    CAPABILITY,
    CONTROL,
    DISCARD,
    END,
    INTERRUPT,
    MAJOR,
    MINOR,
    RESYNC,
    Indicated,
    Journal,
    request_key,
)
from ..spdu import Abort, decode_tsdu, encode
from ..spdu.codes import FunctionalUnit, Token
from ..spdu.types import ConnectionId, GiveTokens, MinorSyncAck, MinorSyncPoint, PleaseTokens
from ..transport import (
    ConnectionState,
    ConnectRequested,
    Data,
    ExpeditedReceived,
    Rfc1006Connection,
    TransportConnected,
    TransportDisconnected,
    TsduReceived,
    encode_tpdu,
    encode_tpkt,
)
from .hello import Hello, Welcome, is_hello, is_welcome
from .options import Options

__all__ = ["SessionAgent", "TokensMissing", "PING", "PONG", "NEEDS", "EVERY"]

#: (Recovery) A resumable session's sending flow renews its transport connection once its
#: next serial number is this, 999000 (room for the application's own sync points before
#: the last, 999999).
RENEW_SERIAL = MAX_SERIAL - 999

T = TypeVar("T")

#: Keepalive probe and answer: PT and GT with empty parameter fields.
PING = b"\x02\x00"
PONG = b"\x01\x00"

_SYNC = Token.DATA | Token.MINOR_SYNC
_MAJOR = _SYNC | Token.MAJOR_ACTIVITY
EVERY = _MAJOR | Token.RELEASE
#: The tokens each kind of request needs (X.225 7.x), of those available on the
#: connection: what :meth:`SessionAgent.call` asks the peer for, and nothing more.
NEEDS: dict[str, Token] = {
    "data": Token.DATA,
    "minor_sync": _SYNC,
    "major_sync": _MAJOR,
    "activity": _MAJOR,
    "activity_interrupt": Token.MAJOR_ACTIVITY,
    "every": EVERY,
}
_NO_REASON = AbortReason.TRANSPORT_RELEASED | AbortReason.NO_REASON
_NOTHING: list[bytes] = []  # shared, never appended to: what an empty drain returns
_NO_CHOICES: dict[str, str] = {}  # shared, never changed: no application parameters
_NO_TOKENS = Token(0)
_EXPEDITED = int(FunctionalUnit.EXPEDITED)


#: The events ``SessionAgent._answer_one`` acts on, and for each event class seen whether it
#: is one of them (classes are few: the dict stays small).
_ANSWERED_KINDS = (
    ev.ReleaseIndication, ev.ReleaseConfirm, ev.TokenPleaseIndication, ev.MajorSyncIndication,
    ev.MinorSyncIndication, ev.MajorSyncConfirm, ev.MinorSyncConfirm,
    ev.ActivityEndIndication, ev.ActivityInterruptIndication, ev.ActivityDiscardIndication,
    ev.ResyncIndication, ev.CapabilityDataIndication,
)  # fmt: skip
_ANSWERED: dict[type, bool] = {}
#: The events that may be acknowledgement points (see ``SessionAgent._ack_event``).
_ACK_KINDS = (ev.MinorSyncIndication, ev.MinorSyncConfirm, ev.MinorSyncSuperseded)
#: (Recovery) The peer's confirmed requests by their indication, and ours by their confirm:
#: what is made exactly once across resumes (``Journal.requests``; the GIVE TOKENS ACK of
#: S-CONTROL-GIVE has no event: see ``_answer``).
_PEER_ASKS: dict[type, str] = {
    ev.MajorSyncIndication: MAJOR, ev.MinorSyncIndication: MINOR,
    ev.ActivityEndIndication: END, ev.ActivityInterruptIndication: INTERRUPT,
    ev.ActivityDiscardIndication: DISCARD, ev.ResyncIndication: RESYNC,
    ev.CapabilityDataIndication: CAPABILITY, ev.ControlGiveIndication: CONTROL,
}  # fmt: skip
#: (A minor sync point of ours the peer's MAP or AE superseded counts as answered: the
#: peer, which got it while its own point waited, counted it so; see ``_peer_request``.)
_ANSWERS: dict[type, str] = {
    ev.MajorSyncConfirm: MAJOR, ev.MinorSyncConfirm: MINOR, ev.MinorSyncSuperseded: MINOR,
    ev.ActivityEndConfirm: END,
    ev.ActivityInterruptConfirm: INTERRUPT, ev.ActivityDiscardConfirm: DISCARD,
    ev.ResyncConfirm: RESYNC, ev.CapabilityDataConfirm: CAPABILITY,
}  # fmt: skip
#: Requests that purge the sync points in flight (X.215), either way.
_PURGING = frozenset({RESYNC, INTERRUPT, DISCARD})
#: The indications the agent answers with a response that carries nothing.
_PLAIN_RESPONSES: dict[type[ev.Event], Callable[[SessionMachine], None]] = {
    ev.ActivityEndIndication: SessionMachine.activity_end_response,
    ev.ActivityInterruptIndication: SessionMachine.activity_interrupt_response,
    ev.ActivityDiscardIndication: SessionMachine.activity_discard_response,
    ev.ResyncIndication: SessionMachine.resync_response,
}
#: Either side's resync, activity interrupt or discard: the request counts skew.
_SKEWING = frozenset({
    ev.ResyncIndication, ev.ResyncConfirm, ev.ActivityInterruptIndication,
    ev.ActivityInterruptConfirm, ev.ActivityDiscardIndication, ev.ActivityDiscardConfirm,
})  # fmt: skip
#: The confirms of a major sync point of ours (and of an activity end), which confirm every
#: sync point before it (X.225 7.23, Table A-4 MAA: V(A) = V(M)), acknowledgement points too.
_MAJOR_CONFIRMS = (ev.MajorSyncConfirm, ev.ActivityEndConfirm)


class _Rare:
    """What only some agents need, made on first use (an idle server session has none)."""

    __slots__ = ("asked", "auto_answer", "checkpoint_held", "defer_checkpoints", "last_sync",
                 "link_lost", "on_capability_data", "on_release", "owed",
                 "warnings")  # fmt: skip

    def __init__(self) -> None:
        self.auto_answer = True
        self.defer_checkpoints = False
        #: A checkpoint (MAP) waits on this connection for the application's answer:
        #: left to it (``defer_checkpoints``), or the peer's MAP made again after a resume
        #: while its first one still waited (``answer_checkpoint`` answers it).
        self.checkpoint_held = False
        self.link_lost: str | None = None
        self.asked = _NO_TOKENS
        self.owed = _NO_TOKENS
        self.warnings: list[str] | None = None
        self.last_sync: int | None = None
        self.on_release: Callable[[ev.ReleaseIndication], bool | bytes | None] | None = None
        self.on_capability_data: Callable[[ev.CapabilityDataIndication], bytes | None] | None = (
            None
        )


def _request_key(kind: str, event: ev.Event) -> tuple[str, bytes] | None:
    """(Recovery) What identifies the peer's confirmed request ``event`` when it is made
    again (kind and user data); None for what is not one (an acknowledgement point, a
    minor sync point that asks for no confirm)."""
    if isinstance(event, ev.MinorSyncIndication) and (
        not event.confirm_required or event.user_data == ACK_MARK
    ):
        return None
    if isinstance(event, ev.ResyncIndication):
        return request_key(kind, event.user_data, int(event.type))
    return request_key(kind, getattr(event, "user_data", None))


def _is_token_item(spdu: object) -> bool:
    """GT or PT with nothing in it: what category-2 SPDUs travel behind."""
    return isinstance(spdu, GiveTokens | PleaseTokens) and not getattr(spdu, "tokens", None)


class TokensMissing(TokenError):
    """The request needs ``tokens`` the peer holds; PLEASE TOKENS went out for those not
    asked for yet.  Call again once the peer's next input was handled."""

    def __init__(self, tokens: Token) -> None:
        super().__init__(f"waiting for the peer to give tokens {tokens!r}")
        self.tokens = tokens


class SessionAgent:
    """One end of one session connection: the machine, RFC 1006 and the policy."""

    __slots__ = (
        "_corked",
        "_deadline_handshake",
        "_events",
        "_last_heard",
        "_now",
        "_out",
        "_probe_sent",
        "aborting",
        "chosen",
        "hello",
        "journal",
        "keepalive",
        "machine",
        "options",
        "peer_data",
        "peer_max_tsdu",
        "rare",
        "released",
        "rfc",
    )  # fmt: skip

    def __init__(self, role: Literal["initiator", "responder"],
                 config: SessionConfig | None = None, options: Options | None = None,
                 ) -> None:  # fmt: skip
        self.options = options = options or Options()
        self.machine = SessionMachine(role, config)
        # X.225 7.12 / RFC 1006 5.2: ask for the transport expedited flow (CR/CC Additional
        # Option Selection) whenever the session's expedited data unit is wanted.
        # (int arithmetic: Flag's ``&`` costs a Python call and a new member per session)
        expedited = bool(int(self.machine.config.functional_units) & _EXPEDITED)
        self.rfc = Rfc1006Connection(
            role, max_tpdu_size=options.tpdu_size, max_tsdu_size=options.max_tsdu_size,
            expedited=expedited,
        )  # fmt: skip
        # Output queues: made on first use and handed over whole (an idle agent holds none).
        self._out: list[bytes] | None = None
        self._events: list[ev.Event] | None = None
        self._now = 0.0
        #: What few sessions use (tokens asked for and owed, sync serials, callbacks, the
        #: initiator's session id, warnings): made on first use (see the properties below).
        #: The fields few agents need (see ``Rarely``), made when one is first set.
        self.rare: _Rare | None = None
        self._deadline_handshake: float | None = None
        self._last_heard = 0.0
        self._probe_sent = False
        self._corked = False  # (fast connect) what is queued waits: see _held
        self.keepalive = False  #: the peer answers probes (said so in its hello or welcome)
        self.aborting = False  #: the transport must go now, without writing (see fail)
        self.released = False  #: the session ended in an orderly release
        #: The sessionlayer hello of the CN, if there is one, until it is answered: the
        #: initiator's own until the AC (or RF), the responder's from the CN until its AC or
        #: RF (then None: an open session keeps only what was agreed).
        self.hello: Hello | None = None
        #: Application parameters agreed at connect (read only; replaced, never changed).
        self.chosen: dict[str, str] = _NO_CHOICES
        self.peer_data: bytes | None = None  #: the peer's connect/accept data
        #: The largest TSDU the peer takes, as its hello or welcome said (None: not said).
        self.peer_max_tsdu: int | None = None
        #: The session's :class:`~sessionlayer.recovery.Journal` once recovery was agreed
        #: (the binding gives each connection's agent the session's one): set, the agent
        #: sets acknowledgement points, answers the peer's, and a dead link is *lost*
        #: (``link_lost``, no AB sent: the session waits to be resumed) instead of aborted.
        self.journal: Journal | None = None

    # ------------------------------------------------------------ what few sessions use

    def more(self) -> _Rare:
        """The agent's ``rare`` part, made now if it has none."""
        rare = self.rare
        if rare is None:
            rare = self.rare = _Rare()
        return rare

    _asked: Rarely[Token] = Rarely(_NO_TOKENS)
    """Tokens we asked the peer for and have not used yet."""
    _owed: Rarely[Token] = Rarely(_NO_TOKENS)
    """Tokens the peer asked us for."""
    last_sync: Rarely[int | None] = Rarely(None)
    """The serial of the last sync point seen."""
    on_release: Rarely[Callable[[ev.ReleaseIndication], bool | bytes | None] | None] = (
        Rarely(None)
    )
    """Called with each S-RELEASE indication: False refuses (NF), bytes accept with that DN
    user data, True or None accept."""
    on_capability_data: Rarely[Callable[[ev.CapabilityDataIndication], bytes | None] | None] = (
        Rarely(None)
    )
    """Called with each S-CAPABILITY-DATA indication: the reply's user data."""
    link_lost: Rarely[str | None] = Rarely(None)
    """Why the link was given up (recovery), if it was."""
    _checkpoint_held: Rarely[bool] = Rarely(False)
    """A checkpoint waits on this connection for the application's answer (see _Rare)."""
    defer_checkpoints: Rarely[bool] = Rarely(False)
    """Leave S-SYNC-MAJOR indications unanswered: the application (or the server's store)
    makes its state durable first, then answers (:meth:`major_sync_response`)."""
    auto_answer: Rarely[bool] = Rarely(True)
    """False: the agent answers nothing on its own.  Sync points, activity ends, interrupts
    and discards, resyncs, capability data, releases and requests for tokens are left to the
    agent's user, who answers them through the machine (a relay answers each with the other
    leg's response).  Keepalive probes, the handshake, TIM and the other deadlines are kept
    as before.  Set it before the first SPDU arrives."""

    # ------------------------------------------------------------ outputs

    def data_to_send(self) -> list[bytes]:
        """Octets for TCP, in order (drains)."""
        if self._corked:  # (fast connect) see _held
            if self._held():
                return _NOTHING
            self._corked = False
        self._collect()
        out, self._out = self._out, None
        return out or _NOTHING

    def _held(self) -> bool:
        """(Fast connect) What is queued waits: the initiator's CR for the CN (state STA01:
        not requested yet), the responder's CC for the answer to the CN that came behind
        the CR (STA08: the S-CONNECT response is still to come)."""
        if self.aborting:
            return False
        if self.machine.role == "initiator":
            return self.machine.state == "STA01" and self.rfc.state is ConnectionState.AWAITING_CC
        return self.machine.state == "STA08"

    def events(self) -> list[ev.Event]:
        """Indications and confirms for the application, in order (drains).  Those the
        agent answered itself are among them, already answered."""
        out, self._events = self._events, None
        return out or _NOTHING  # type: ignore[return-value]

    def _send(self, data: bytes) -> None:
        if self._out is None:
            self._out = []
        self._out.append(data)

    def _event(self, event: ev.Event) -> None:
        if self._events is None:
            self._events = []
        self._events.append(event)

    def warnings(self) -> list[str]:
        """What the agent would tell an operator (drains)."""
        rare = self.rare
        if rare is None or rare.warnings is None:
            return _NOTHING  # type: ignore[return-value]
        out, rare.warnings = rare.warnings, None
        return out

    @property
    def wants_close(self) -> bool:
        """The transport should close once what was sent is written (T-DISCONNECT, or the
        session is over)."""
        return self.aborting or self.machine.wants_transport_disconnect or self.machine.is_closed

    @property
    def watching(self) -> bool:
        """Liveness is watched (keepalive or idle timeout): the binding reports reads."""
        opts = self.options
        return opts.keepalive_interval is not None or opts.idle_timeout is not None

    @property
    def plain(self) -> bool:
        """S-DATA both ways may take the fast path (see ``SessionMachine.plain_data``)."""
        return self.machine.plain_data and not self.wants_close

    @property
    def tpdu_size(self) -> int:
        return self.rfc.tpdu_size or 128

    @property
    def transport_idle(self) -> bool:
        """RFC 1006 holds no partial TPDU or TSDU: the fast path may parse the stream."""
        return self.rfc.idle

    # ------------------------------------------------------------ transport side

    def connection_made(self, now: float, calling_tsel: bytes | None = None,
                        called_tsel: bytes | None = None) -> None:  # fmt: skip
        """TCP is up: the initiator sends its CR, the responder's handshake deadline starts
        (``Options.handshake_timeout``, up to the AC)."""
        self._now = now
        if self.watching:  # (otherwise never read: an idle session keeps one float less)
            self._last_heard = now
        if self.machine.role == "initiator":
            self._send(
                self.rfc.connect(calling_tsel, called_tsel, tpdu_size=self.options.tpdu_size)
            )
            if self._corked:  # (fast connect) the CN may go now, behind the CR
                self.machine.transport_connected(expedited=False)
        else:
            self._deadline_handshake = now + self.options.handshake_timeout

    def receive_data(self, data: bytes, now: float) -> None:
        """Octets from TCP (whatever the fast path did not take)."""
        self._now = now
        try:
            tevents = self.rfc.receive_data(data)
        except DecodeError as exc:
            self.fail(f"transport protocol error: {exc}", exc.reason, reflect=exc.reflect)
            return
        for tev in tevents:
            if isinstance(tev, TsduReceived):
                self._tsdu(tev.data, now)
            elif isinstance(tev, ConnectRequested):
                # A DR or ER in the same read may have closed the connection already.
                if self.rfc.state is ConnectionState.AWAITING_ACCEPT:
                    self._send(self.rfc.accept())
                    self._transport_ready()
                    if not self.rfc.idle:  # the CN came right behind the CR (fast connect)
                        self._corked = True  # the CC waits to go out with the answer
                        self.receive_data(b"", now)  # (ConnectRequested is the last event)
            elif isinstance(tev, TransportConnected):
                self._transport_ready()
            elif isinstance(tev, ExpeditedReceived):
                self.machine.receive_expedited(tev.data, now=now)
                self._answer()
            elif isinstance(tev, TransportDisconnected):
                self.connection_lost()  # a COTP DR or ER: the session is over, and so is TCP

    def fast_connect(self) -> None:
        """(Initiator, before :meth:`connection_made`) Send the CN right behind the CR, in
        one write, without waiting for the CC: to a responder known to read it (a
        sessionlayer server said so in an earlier welcome; ISO 8073 itself waits for the
        CC).  The CR is held until the S-CONNECT request is made; the CN goes in DTs of
        128 octets, the size every class 0 responder takes; the CC completes the transport
        connection as usual.  One round trip less for a session's setup."""
        if self.machine.role != "initiator" or self.rfc.state is not ConnectionState.IDLE:
            raise LocalError("fast connect: only an initiator, before its CR")
        self._corked = True

    @property
    def cn_ready(self) -> bool:
        """(Initiator) The S-CONNECT request may be made now: the CC came, or the CR waits
        for it (fast connect)."""
        return self.rfc.tpdu_size is not None or (
            self._corked and self.rfc.state is ConnectionState.AWAITING_CC
        )

    def connection_lost(self) -> None:
        """TCP (or the transport connection) is gone."""
        with contextlib.suppress(LocalError):
            self.machine.transport_disconnected()
        self._answer()

    def _transport_ready(self) -> None:
        self.machine.transport_connected(expedited=self.rfc.expedited)

    def _tsdu(self, data: bytes, now: float) -> None:
        if self.keepalive and data == PING:
            self._send(self.rfc.send_tsdu(PONG))
            return
        if self.keepalive and data == PONG:
            return
        if self.journal is not None and self.machine.state == "STA03" and self._late_ack(data):
            return
        self.machine.receive_tsdu(data, now=now)
        self._answer()

    def _late_ack(self, tsdu: bytes) -> bool:
        """(Recovery) Our FINISH is out (STA03): an acknowledgement point of the peer's
        (its MIP marked ACK_MARK), or the MIA to one of ours, that crossed it is dropped
        here.  Neither side replays anything after a release, and X.225 has no STA03 row
        for them: they would abort a session that is ending in order."""
        try:
            spdus = decode_tsdu(tsdu)
        except DecodeError:
            return False  # (the machine reports it)
        kinds = [s for s in spdus if not _is_token_item(s)]
        if len(kinds) != 1:
            return False
        spdu = kinds[0]
        journal = self.journal
        assert journal is not None
        if isinstance(spdu, MinorSyncPoint):
            return spdu.user_data == ACK_MARK
        if isinstance(spdu, MinorSyncAck):
            return journal.is_mark(int(spdu.serial_number or 0))
        return False

    def _collect(self) -> None:
        """Frame what the machine queued: the expedited flow first (a PREPARE goes ahead of
        the SPDU it announces, 7.26), in ED TPDUs when the option was agreed."""
        machine, rfc = self.machine, self.rfc
        expedited, normal = machine.expedited_to_send(), machine.data_to_send()
        if rfc.state is not ConnectionState.OPEN:
            if rfc.state is ConnectionState.AWAITING_CC:  # (fast connect) the CN
                for tsdu in normal:
                    self._send(rfc.send_early(tsdu))
            return
        for tsdu in expedited:
            self._send(rfc.send_expedited(tsdu) if rfc.expedited else rfc.send_tsdu(tsdu))
        for tsdu in normal:
            self._send(rfc.send_tsdu(tsdu))

    def fail(self, message: str, reason: AbortReason, *, reflect: bytes | None = None) -> None:
        """Provider abort decided outside the machine (a malformed TPDU, a limit, a timeout).

        With ``reflect`` (possibly empty) an AB with ``reason`` is sent first when the
        transport connection is open, so the peer learns why (X.225 7.9); the transport
        then closes.  Without it, it is dropped at once.
        """
        if self.aborting:
            return
        self._collect()  # what the machine queued before goes first
        rfc = self.rfc
        sent = reflect is not None and rfc.tpdu_size is not None and (
            rfc.state is not ConnectionState.CLOSED
        )
        if sent:
            ab = encode(Abort(transport_disconnect=int(reason), reflect=reflect or None))
            self._send(encode_tpkt(encode_tpdu(Data(ab))))
        else:
            self._out = None
        self.aborting = True
        self._event(ev.ProviderAbortIndication(reason=reason, message=message, local=True,
                                               silent=not sent))  # fmt: skip

    # ------------------------------------------------------------ connect

    def connect(self, user_data: bytes | None, connection_id: ConnectionId | None,
                hello: Hello | None = None) -> None:  # fmt: skip
        """(Initiator) S-CONNECT request, with a sessionlayer ``hello`` or the raw
        ``user_data`` of an OSI peer (``connection_id`` None: the CN has no Connection
        Identifier)."""
        self.hello = hello
        self.machine.connect(
            user_data=hello.encode() if hello is not None else user_data,
            connection_id=connection_id,
        )

    def confirmed(self, confirm: ev.ConnectConfirm) -> Welcome | None:
        """(Initiator) The AC arrived: take on what a sessionlayer responder said in its
        welcome, and return it (None: not a sessionlayer responder).  Raises DecodeError
        for a malformed welcome (the caller aborts)."""
        self.rfc.session_open()  # (Options.max_tsdu_size bounds what comes from now on)
        self.peer_data = confirm.user_data
        if self.hello is None or not is_welcome(confirm.user_data):
            # Not a sessionlayer responder (an echoed hello is not a welcome): nothing was
            # negotiated beyond X.225, and it is not sent keepalive probes.
            self.keepalive = False
            self.hello = None
            return None
        welcome = Welcome.decode(bytes(confirm.user_data or b""))
        self.chosen = dict(welcome.chosen)
        self.peer_data = welcome.data
        self.keepalive = welcome.keepalive and self.hello.keepalive
        self.peer_max_tsdu = welcome.max_tsdu
        self.hello = None  # answered
        return welcome

    def indication(self, event: ev.ConnectIndication) -> Hello | None:
        """(Responder) The CN: its hello, if it is from a sessionlayer initiator.  Raises
        DecodeError for a malformed one (the caller refuses)."""
        data = event.user_data
        self.hello = Hello.decode(bytes(data or b"")) if is_hello(data) else None
        self.peer_data = self.hello.data if self.hello is not None else data
        return self.hello

    def accept(self, *, chosen: dict[str, str], session_id: str,
               user_data: bytes | None = None,
               connection_id: ConnectionId | None = None,
               welcome: Welcome | None = None,
               config: SessionConfig | None = None) -> None:  # fmt: skip
        """(Responder) S-CONNECT response, positive: a welcome to a sessionlayer initiator
        (the ``chosen`` parameters, the ``session_id``; or ``welcome`` as given), else
        ``user_data``.

        ``config`` replaces the machine's configuration for this answer (functional units,
        versions, initial serial numbers, responding selector, called-choice tokens): a relay
        answers with what its other leg agreed.

        (Recovery) The welcome of a live resume (``resumed="resumed"``) by an agent that
        carries the session's journal gets the journal's counts besides ``recv``
        (``Journal.counts``: confirmed requests, expedited messages), and the journal takes
        the hello's (``Journal.peer_counts``)."""
        if config is not None:
            self.machine.config = config
        hello = self.hello
        if hello is not None:
            if welcome is None:
                welcome = Welcome(chosen=chosen, session_id=session_id,
                                  fast=self.options.fast_connect,
                                  max_tsdu=self.options.max_tsdu_size)  # fmt: skip
            journal = self.journal
            if journal is not None and welcome.resumed == "resumed":
                user_data = welcome.encode(journal.counts())
                journal.peer_counts(hello.counts)
            else:
                user_data = welcome.encode()
        self.chosen = dict(chosen) if chosen else _NO_CHOICES
        self.machine.accept(user_data=user_data, connection_id=connection_id)
        self.rfc.session_open()  # (Options.max_tsdu_size bounds what comes from now on)
        self.keepalive = hello is not None and hello.keepalive
        if hello is not None:
            self.peer_max_tsdu = hello.max_tsdu
        self._deadline_handshake = None
        self.hello = None  # answered: an idle session keeps no decoded hello

    def refuse(self, reason: int, user_data: bytes | None = None) -> None:
        """(Responder) S-CONNECT response, negative (RF)."""
        self._deadline_handshake = None
        self.hello = None
        try:
            self.machine.refuse(reason=reason, user_data=user_data, now=self._now)
        except LocalError:
            self.aborting = True  # the CN cannot be answered any more: just close

    @property
    def recovery_possible(self) -> bool:
        """Recovery can be agreed on this connection: symmetric synchronize was selected
        (each side acknowledges the other's data with sync points of its own flow)."""
        return self.machine.symmetric_sync

    # ------------------------------------------------------------ recovery

    def replay(self, peer_received: int) -> list[bytes]:
        """(A resumed session) The peer has ``peer_received`` of our messages: the rest,
        to be sent again in order ahead of anything new (as S-DATA, at the pace the
        transport takes them).  Raises RemoteError when the count cannot be right."""
        journal = self.journal
        assert journal is not None
        items = journal.replay(peer_received)
        journal.new_connection()
        if journal.held:  # what is held wants a point of its own on this connection
            journal.since = self._now
        return items

    def acknowledge(self, now: float) -> None:
        """Set an acknowledgement point now if one is due (``Options.ack_bytes`` /
        ``ack_interval``): a confirmed minor sync point marked ACK_MARK.

        Serial numbers end at 999999 (X.225 8.3.20) and an acknowledgement point takes one
        (four a second while data flows: the end would come after about three days).  From
        :data:`RENEW_SERIAL` on, the transport connection is given up instead, as if it
        were lost: the session resumes on a new one (nothing lost, nothing twice), where
        serial numbers start again."""
        journal = self.journal
        opts = self.options
        if journal is None or not journal.want_ack(now, opts.ack_bytes, opts.ack_interval):
            return
        machine = self.machine
        if not machine.is_open or self.aborting:
            return
        if machine.vms >= RENEW_SERIAL and self._renewing_helps():
            self.lose_link(f"sync serial number {machine.vms} reached: a new transport"
                           " connection starts them again")  # fmt: skip
            return
        if machine.vms >= MAX_SERIAL:  # (where renewing does not help: see above)
            self.fail(f"no sync serial number left after {MAX_SERIAL} (inside an activity, or"
                      " from the configured initial serial number): data can no longer be"
                      " acknowledged", _NO_REASON, reflect=b"")  # fmt: skip
            return
        try:
            serial = machine.minor_sync(confirm=True, user_data=ACK_MARK)
        except LocalError:
            journal.since = now  # not now (a resync or release is under way): try later
            return
        journal.mark(serial)

    def _renewing_helps(self) -> bool:
        """A new connection would start this side's serial numbers lower: not inside an
        activity (S-ACTIVITY-RESUME carries its serial number over), nor when this one
        started at or past RENEW_SERIAL (a configured initial serial number: every new
        connection would start there again)."""
        machine = self.machine
        if machine.activity_in_progress:
            return False
        ss = machine.symmetric_sync and machine.role == "responder"
        start = machine.second_initial_serial if ss else machine.initial_serial
        return start is None or start < RENEW_SERIAL

    def lose_link(self, message: str) -> None:
        """(Recovery) Give up this transport connection without ending the session: no AB
        is sent, the session waits to be resumed on a new one."""
        if self.aborting:
            return
        self.link_lost = message
        self.aborting = True
        self._out = None

    # ------------------------------------------------------------ requests

    def call(self, request: Callable[[SessionMachine], T], needs: Token = EVERY) -> T:
        """Run a machine request.  When it needs tokens the peer holds, ask for those not
        asked for yet (PLEASE TOKENS) and raise :class:`TokensMissing`: call again after
        the peer's next input.  Tokens asked for are kept until :meth:`done_asking`, even
        when the peer asks for them back meanwhile."""
        machine = self.machine
        try:
            return request(machine)
        except TokenError:
            missing = Token(needs & machine.tokens_available & ~machine.tokens_owned)
            if not missing:
                raise
            new = Token(missing & ~self._asked)
            if new:
                machine.please_tokens(new)
                self._asked |= new
            raise TokensMissing(missing) from None

    def done_asking(self, tokens: Token) -> None:
        """The request that asked for ``tokens`` went out (or gave up): give the peer what
        it asked for meanwhile."""
        self._asked &= ~tokens
        self._give_owed()

    def abort(self, user_data: bytes | None, now: float) -> None:
        """S-U-ABORT."""
        self._now = now
        if not self.machine.is_closed:
            try:
                self.machine.abort(user_data=user_data, now=now)
            except (ParameterError, EncodeError):
                raise  # (the caller's user data: said, nothing done)
            except LocalError:
                self.aborting = True

    # ------------------------------------------------------------ what the agent answers

    def _answer(self) -> None:
        """Take the machine's events: answer what the agent answers, keep the rest (all of
        them) for the application."""
        journal = self.journal
        events = self.machine.events()
        for event in events:
            if journal is None:
                self._answer_one(event)
                self._event(event)
                continue
            if type(event) in _SKEWING:
                journal.skewed = True  # (see Journal.skewed)
            kind = _PEER_ASKS.get(type(event))
            if kind is not None:
                told = self._peer_request(journal, kind, event)
                if told:
                    continue  # made again after a resume: answered again, told before
                reply = self._answer_one(event)
                if type(event) is ev.MinorSyncIndication and self._ack_event(event):
                    continue  # the peer's acknowledgement point: no application news
                if told is False:  # (a new one, recorded: answered, or left to the user)
                    self._peer_request_answered(journal, kind, reply)
                self._event(event)
                continue
            self._answer_one(event)
            kind = _ANSWERS.get(type(event))
            if type(event) in _ACK_KINDS and self._ack_event(event):
                continue  # an acknowledgement point (ours or the peer's): no application news
            if kind is not None and journal.requests is not None:
                journal.requests.got(kind)  # the answer to one of ours
                if kind in _PURGING:
                    journal.requests.purge()
            elif type(event) is ev.ExpeditedDataIndication:
                journal.more_expedited().received += 1
            if isinstance(event, _MAJOR_CONFIRMS):
                # The peer confirmed our major sync point (activity end) only once it had
                # everything before it: the acknowledgement points before it are confirmed
                # with it, even if their MIA never comes (a relay between us cannot send it
                # while it waits to answer our MAP: docs/relay.md).
                journal.confirmed(event.serial)
            self._event(event)
        if journal is not None and journal.requests is not None and journal.requests.asked and (
            not self.machine.control_pending and journal.requests.waiting(CONTROL)
        ):
            journal.requests.got(CONTROL)  # (the GIVE TOKENS ACK came: no event tells it)
        rare = self.rare
        if rare is not None and rare.asked and any(type(e) in _SKEWING for e in events):
            # A resync, interrupt or discard placed the tokens anew: a PT of ours may have
            # been discarded (STA05A-C), or a token we got went back.  Those we do not hold
            # are asked for again by the next call().
            self._asked &= self.machine.tokens_owned
        self._give_owed()

    def _peer_request(self, journal: Journal, kind: str, event: ev.Event) -> bool | None:
        """(Recovery) One of the peer's confirmed requests: True when it is one the
        application was told of before, made again after a resume because its answer was
        lost (or not given yet): it is answered here as it was (the application's
        checkpoint answer once it comes), and not told again.  False: a new one, recorded
        (``Journal.requests``).  None: not one the agent keeps."""
        if not self.auto_answer:
            return None  # (the agent's user answers: a relay passes each on)
        key = _request_key(kind, event)
        if key is None:
            return None  # (an acknowledgement point, a minor sync point not confirmed)
        requests = journal.more_requests()
        if kind in _PURGING:
            requests.purge()  # (ours in flight are purged; a colliding resync of ours lost)
            if kind == RESYNC:
                requests.purge(frozenset({RESYNC}))
        again = requests.indicated(key)
        if again is None:
            return False
        self._answer_again(event, again)
        return True

    def _answer_again(self, event: ev.Event, record: Indicated) -> None:
        """Answer ``event`` (a request made again) as the first one was answered."""
        machine = self.machine
        if isinstance(event, ev.MajorSyncIndication):
            self.last_sync = event.serial
            if record.answered:
                self.major_sync_response()  # (our acknowledgement points settle too)
            else:  # the application is still at it: its answer goes out on this connection
                self._checkpoint_held = True
        elif isinstance(event, ev.MinorSyncIndication):
            self.last_sync = event.serial
            if machine.state == "STA713":  # (as _answer_one: none after our MAP or AE)
                machine.minor_sync_response(event.serial)
        elif isinstance(event, ev.CapabilityDataIndication):
            machine.capability_data_response(user_data=record.reply)
        elif (respond := _PLAIN_RESPONSES.get(type(event))) is not None:
            respond(machine)
            if type(event) is ev.ActivityEndIndication:
                self._points_settled()
        # (ev.ControlGiveIndication: the machine sent its GIVE TOKENS ACK itself)

    def _peer_request_answered(self, journal: Journal, kind: str,
                               reply: bytes | None) -> None:  # fmt: skip
        """After ``_answer_one``: the peer's new request was answered (or left to the
        application: a checkpoint made durable first)."""
        requests = journal.requests
        if requests is None:
            return
        if kind == MAJOR and self.defer_checkpoints:
            requests.defer()
        elif not self.aborting:  # (a callback that failed answered nothing)
            requests.answer(reply)

    def answer_checkpoint(self, live: bool = True) -> None:
        """The checkpoint the peer set (its MAP, left to the application by
        ``defer_checkpoints``) is durable: confirm it (MAA).  (Recovery) It is counted
        answered for the next resume; the MAA goes out on this connection if the MAP waits
        on it (``live``: the binding's connection is up), else the peer's MAP made again
        after the resume is answered when it comes."""
        journal = self.journal
        if journal is not None and journal.requests is not None:
            journal.requests.answer_pending()
        if journal is None:
            self.machine.major_sync_response()
            return
        if self._checkpoint_held:
            self._checkpoint_held = False
            if live:
                self.major_sync_response()

    def _ack_event(self, event: ev.Event) -> bool:
        """Acknowledgement bookkeeping; True when ``event`` only concerned it."""
        journal = self.journal
        assert journal is not None
        if isinstance(event, ev.MinorSyncIndication):
            return event.user_data == ACK_MARK
        if isinstance(event, ev.MinorSyncSuperseded):
            # (an acknowledgement point of ours: void once the MAP or AE is answered,
            # _points_settled; what it covered wants a new one)
            return journal.is_mark(event.serial)
        assert isinstance(event, ev.MinorSyncConfirm)
        ours = journal.is_mark(event.serial)
        journal.confirmed(event.serial)
        return ours

    def _answer_one(self, event: ev.Event) -> bytes | None:
        """Answer ``event`` if the agent answers it; a capability data's reply is returned
        (None otherwise)."""
        kind = type(event)
        answers = _ANSWERED.get(kind)
        if answers is None:  # the first event of its class: does the agent answer it?
            answers = _ANSWERED[kind] = isinstance(event, _ANSWERED_KINDS)
        if not answers:
            return None  # (most events: connect, data; no isinstance chain for them)
        if not self.auto_answer:
            if isinstance(event, ev.ReleaseConfirm):
                self.released = event.accepted
            return None  # the agent's user answers (a relay: with the other leg's response)
        machine = self.machine
        if isinstance(event, ev.ReleaseIndication):
            self._release(event)
        elif isinstance(event, ev.ReleaseConfirm):
            self.released = event.accepted
        elif isinstance(event, ev.TokenPleaseIndication):
            self._owed |= Token(event.tokens)
        elif isinstance(event, ev.MajorSyncIndication):
            self.last_sync = event.serial
            if not self.defer_checkpoints:
                self.major_sync_response()
            else:
                self._checkpoint_held = True  # answer_checkpoint answers it
        elif isinstance(event, ev.MinorSyncIndication):
            self.last_sync = event.serial
            # (A point that crossed our own MAP or AE, STA04A/STA04B with symmetric
            # synchronize, gets no MIA: X.225 has no S-SYNC-MINOR response there, and the
            # peer's MAA or AEA settles it, [64].  The peer knows: see major_sync_response.)
            if event.confirm_required and machine.state == "STA713":
                machine.minor_sync_response(event.serial)
        elif isinstance(event, ev.MajorSyncConfirm | ev.MinorSyncConfirm):
            self.last_sync = event.serial
        elif (respond := _PLAIN_RESPONSES.get(type(event))) is not None:
            respond(machine)
            if type(event) is ev.ActivityEndIndication:
                self._points_settled()
        elif isinstance(event, ev.CapabilityDataIndication):
            try:
                reply = self.on_capability_data(event) if self.on_capability_data else None
                machine.capability_data_response(user_data=reply)
            except Exception as exc:  # (it raised, or gave what cannot be sent)
                self._callback_failed("on_capability_data", exc)
                return None
            return bytes(reply) if reply is not None else None
        return None

    def major_sync_response(self) -> None:
        """S-SYNC-MAJOR response (MAA) to the peer's MAP, and (recovery) what it means for
        our own acknowledgement points, as :meth:`_points_settled` says."""
        self.machine.major_sync_response()
        self._points_settled()

    def _points_settled(self) -> None:
        """(Recovery) We answered the peer's MAP or AE: that settles our own sending flow
        too (X.225 [64]: V(As) = V(Ms)), so an acknowledgement point of ours whose MIA has
        not come yet gets none (the peer, which had sent its MAP first, does not answer it,
        and our machine would refuse the MIA now).  What those points covered has not been
        confirmed: it wants a new point (``ack_interval`` later, or at the next send that
        finds ``ack_bytes`` not covered)."""
        journal = self.journal
        if journal is not None:
            journal.void_marks(self._now)

    def _release(self, event: ev.ReleaseIndication) -> None:
        """S-RELEASE indication: DN, or NF when ``on_release`` says no (negotiated release
        only).  In a release collision our own release may be confirmed first: the peer's
        FINISH still needs its DISCONNECT."""
        machine = self.machine
        answer = None
        if self.on_release is not None and not self.released:
            try:
                answer = self.on_release(event)
                if not isinstance(answer, bool | bytes | bytearray | None):
                    raise TypeError(f"it returned a {type(answer).__name__} (True, False,"
                                    " bytes or None are answers)")  # fmt: skip
            except Exception as exc:
                self._callback_failed("on_release", exc)
                return
        if answer is False and not self.released:
            try:
                machine.release_response(accept=False, now=self._now)
                return
            except LocalError as exc:
                self._warn(f"cannot refuse this release ({exc})")
        data = bytes(answer) if isinstance(answer, bytes | bytearray) else None
        try:
            machine.release_response(accept=True, user_data=data, now=self._now)
        except (ParameterError, EncodeError) as exc:  # (its user data)
            self._callback_failed("on_release", exc)
            return
        self.released = True

    def _callback_failed(self, name: str, exc: Exception) -> None:
        """The application's callback raised, or gave what cannot be sent: its session
        ends (AB, a user abort), and the binding says why."""
        self.fail(f"{name} failed: {exc!r}", AbortReason.TRANSPORT_RELEASED
                  | AbortReason.USER_ABORT, reflect=b"")  # fmt: skip

    def _give_owed(self) -> None:
        """Give the tokens the peer asked for, once the machine allows it; tokens this side
        asked for itself are kept until its request went out.  A debt for a token this side
        no longer holds is forgotten: the peer got it (our GT crossed its PT, or a resync
        placed it there), and it asks again if it still wants it."""
        rare = self.rare
        if rare is None or not rare.owed:
            return  # (nothing asked for: no Flag arithmetic)
        machine = self.machine
        held = machine.tokens_owned
        if self._owed & ~held:  # given away since, or placed by a resync: the peer has it
            self._owed &= held
        owed = Token(self._owed & ~self._asked)
        if not owed or machine.is_closed:
            return
        try:
            machine.give_tokens(owed)
        except LocalError:
            return  # not now (a confirm is pending); retried after the next event
        self._owed &= ~owed

    def _warn(self, message: str) -> None:
        rare = self.more()
        if rare.warnings is None:
            rare.warnings = []
        rare.warnings.append(message)

    # ------------------------------------------------------------ time

    @property
    def now(self) -> float:
        """The ``now`` of the latest input (0.0 before the first)."""
        return self._now

    def heard(self, now: float) -> None:
        """Octets arrived from the peer (any, the fast path's too)."""
        self._last_heard = now
        self._probe_sent = False

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` should next be called (the caller's clock), or None."""
        deadline = self.machine.get_timer()
        other = self._deadline_handshake
        if other is not None and (deadline is None or other < deadline):
            deadline = other
        opts = self.options
        journal = self.journal
        if journal is not None and journal.since is not None:
            ack = journal.ack_deadline(opts.ack_interval)
            if ack is not None and (deadline is None or ack < deadline):
                deadline = ack
        if opts.keepalive_interval is None and opts.idle_timeout is None:
            return deadline  # liveness is not watched (``_liveness``: no deadlines)
        for other in self._liveness():
            if other is not None and (deadline is None or other < deadline):
                deadline = other
        return deadline

    def _liveness(self) -> tuple[float | None, float | None]:
        """(idle timeout, keepalive probe) deadlines, while a session is open."""
        if not self.watching or self.aborting or not self.machine.is_open:
            return None, None  # (the handshake and TIM have deadlines of their own)
        opts = self.options
        idle = None
        if opts.idle_timeout is not None and self.keepalive:
            # (Only toward a peer that answers probes: silence from an OSI stack is normal,
            # an IEC 61850 client waits minutes for reports; TCP keepalive finds a dead host.)
            idle = self._last_heard + opts.idle_timeout
        probe = None
        if self.keepalive and opts.keepalive_interval is not None and not self._probe_sent:
            probe = self._last_heard + opts.keepalive_interval
        return idle, probe

    def handle_timer(self, now: float) -> None:
        """The time is ``now``: act on whatever deadline has passed."""
        self._now = now
        if self._deadline_handshake is not None and now >= self._deadline_handshake:
            self._deadline_handshake = None
            self.fail(
                f"no session within the handshake timeout ({self.options.handshake_timeout} s)",
                _NO_REASON,
            )
            return
        deadline = self.machine.get_timer()
        if deadline is not None and now >= deadline:
            self.machine.handle_timer(now)
            self._answer()
        if self.journal is not None:
            self.acknowledge(now)
        idle, probe = self._liveness()
        if idle is not None and now >= idle:
            message = f"no traffic from the peer for {now - self._last_heard:.1f} s"
            if self.journal is not None:  # the peer may well be alive: it will come back
                self.lose_link(message)
                return
            self.fail(f"{message} (idle timeout)", _NO_REASON, reflect=b"")
            return
        if probe is not None and now >= probe and self.rfc.state is ConnectionState.OPEN:
            self._probe_sent = True
            self._send(self.rfc.send_tsdu(PING))
