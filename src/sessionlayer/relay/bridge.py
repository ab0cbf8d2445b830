"""``Bridge``: one relayed session, sans I/O -- what an indication on one leg becomes on the
other.

The relay terminates the session on both legs with sessionlayer's own protocol machine: a
responder :class:`~sessionlayer.agent.SessionAgent` toward the client, an initiator toward
the upstream, both with ``auto_answer`` off.  Every SPDU is checked by its leg's state
table; only the machine's indications and confirms cross to the other leg, where they
become the matching request or response (X.215 service by service):

==========================  ==========================================================
on one leg                  on the other
==========================  ==========================================================
CN (S-CONNECT ind)          the rules and limits, then the upstream's CN with the same
                            parameters and user data; its AC or RF goes back to the
                            client with the same parameters (units, version, serial
                            numbers, tokens, selector) and user data
DT, TD, EX                  the same service; a TSDU is reassembled and segmented
                            again to each leg's TSDU and TPDU sizes
GT, PT, GTC                 give / please / give control
MIP, MAP, RS, AS, AR, AI,   the same request; the other leg's confirm becomes the
AD, AE, CD, ED              response (MIA, MAA, RA, AIA, ADA, AEA, CDA); what crossed
                            a MAP or AE waits for its MAA or AEA, and an MIA the MAA
                            confirms is not relayed (``Bridge._crossed_major``)
FN                          FN; the other leg's DN or NF answers it (a release
                            collision is answered at once with DN, as X.225 7.8)
AB (user)                   AB with the same user data
AB (provider), lost TCP,    AB on the other leg: the peer's own reason when it sent one,
a protocol error, a limit   0x09 (no reason) when the fault was not the other peer's
lost TCP, resumable         the other leg's TCP closed, no AB: both ends resume the
                            session through the relay (the upstream keeps it meanwhile)
==========================  ==========================================================

A malformed or out-of-state SPDU never reaches the other leg: its machine answers it with
AB (0x05 with a reflect parameter) and reports only a provider abort, which aborts the
other leg with 0x09.

S-DATA while both legs are *plain* (``SessionMachine.plain_data``: data transfer, duplex,
no tokens, no segmenting, no activities -- the MMS profile) takes the fast path of the
asyncio binding: a TSDU that is exactly GT + DT with empty parameter fields and user
data is one the state table would only indicate, changing nothing, so its user data is
framed again for the other leg (:func:`~sessionlayer.transport.fastpath.frame_data`, the
other leg's TPDU size) without the two machines; anything else in the stream goes to the
leg's agent, which owns the stream until it is idle again.

A request the other leg's machine refuses (the legs crossed, e.g. a resync collision)
aborts both legs with 0x09; so do the idle and release timeouts.  Between sessionlayer
peers (keepalive in the hello and the welcome) the idle timeout is per leg: the relay
answers each peer's keepalive probes itself, so one peer's probes keep nothing alive for
the other; each leg's agent probes its own peer after half the idle timeout, and a leg
whose peer sent nothing for the whole of it ends the session (:meth:`_leg_silent`).

Bytes and the time go in (:meth:`receive`, :meth:`lost`, :meth:`handle_timer`, and
:meth:`upstream_connected` / :meth:`upstream_failed` for the binding's connect); bytes per
leg (:meth:`data_to_send`), whether to connect or close a leg, notes for the operator's log
and the next deadline come out.  No socket, no clock.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable
from typing import Literal, TypeAlias

from ..agent import SessionAgent
from ..agent.hello import Hello, Welcome, cap_max_tsdu, is_hello, is_welcome
from ..errors import AbortReason, DecodeError, LocalError, RefuseReason
from ..machine import SessionMachine, tokens_for
from ..machine import events as ev
from ..spdu.codes import Token, TokenSetting, Version
from ..transport import ConnectionState
from ..transport.fastpath import PlainReader, frame_data
from .options import SUPPORTED_UNITS, RelayOptions, agent_options, client_config, upstream_config
from .services import SERVICES

__all__ = ["Bridge", "Leg", "Phase", "SUPPORTED_UNITS", "CLIENT", "UPSTREAM"]

Leg: TypeAlias = Literal["client", "upstream"]
CLIENT: Leg = "client"
UPSTREAM: Leg = "upstream"
#: "handshake" (no CN yet), "connecting" (a CN admitted, the upstream being set up), "open"
#: (AC sent to the client), "ended" (released, refused or aborted: the legs are closing).
Phase: TypeAlias = Literal["handshake", "connecting", "open", "ended"]
_NO_REASON = AbortReason.TRANSPORT_RELEASED | AbortReason.NO_REASON
_OTHER: dict[Leg, Leg] = {CLIENT: UPSTREAM, UPSTREAM: CLIENT}
#: A leg's machine waits for the relay's S-SYNC-MAJOR (STA10A) or S-ACTIVITY-END (STA10B)
#: response: its peer's MAP or AE was relayed to the other leg, whose MAA or AEA answers it.
_AWAITING_RESPONSE = frozenset({"STA10A", "STA10B"})
#: What may cross a MAP or AE (duplex; MIP with symmetric synchronize): an MIP is held for
#: a leg whose machine waits so, and what comes behind it (``Bridge._crossed_major``).
_HELD_KINDS = (ev.DataIndication, ev.TypedDataIndication, ev.MinorSyncIndication)
#: What decides a CN: an RF reason code to refuse it, or None to relay it.
Admit: TypeAlias = Callable[[ev.ConnectIndication], int | None]


class Bridge:
    """One relayed session: the two legs' agents and the bridging between them."""

    __slots__ = (
        "_cn",
        "_cn_sent",
        "_connect_wanted",
        "_deadline_handshake",
        "_deadline_release",
        "_general",
        "_heard",
        "_held",
        "_held_octets",
        "_last_heard",
        "_notes",
        "_out",
        "_readers",
        "_release_from",
        "_resync",
        "admit",
        "client",
        "ending",
        "held_octets_max",
        "id",
        "opened",
        "options",
        "outcome",
        "own_refusal",
        "phase",
        "plain_messages",
        "resumable",
        "upstream",
    )  # fmt: skip

    def __init__(self, session_id: str, options: RelayOptions | None = None, *,
                 admit: Admit | None = None) -> None:  # fmt: skip
        self.id = session_id
        self.options = options = options or RelayOptions()
        #: Decides each CN (the binding's rules and limits); None admits every CN.
        self.admit = admit
        self.client = SessionAgent("responder", client_config(options), agent_options(options))
        self.client.auto_answer = False
        self.upstream: SessionAgent | None = None  #: made once a CN is admitted
        self.phase: Phase = "handshake"
        self.opened = False  #: the AC was relayed: the session reached data transfer
        #: How the session ended: "released", "refused", "aborted", or "closed" before any
        #: CN (None: not yet).
        self.outcome: str | None = None
        self.ending: str | None = None  #: why, in a few words
        #: The reason of the RF the relay sent the client of its own (the upstream not
        #: there, say), once it did; not one the upstream sent, nor the rules' (counted).
        self.own_refusal: int | None = None
        self._cn: ev.ConnectIndication | None = None
        self._cn_sent = False
        self._connect_wanted = False
        self._deadline_handshake: float | None = None
        self._deadline_release: float | None = None
        self._last_heard = 0.0
        #: (Between sessionlayer peers, once open) When each leg's peer was last heard from;
        #: None: the legs are not watched apart (``_last_heard`` is the idle clock).
        self._heard: dict[Leg, float] | None = None
        self._notes: list[tuple[str, str]] = []
        self._release_from: Leg | None = None  # whose peer asked to release
        self._resync: dict[Token, TokenSetting] | None = None  # the pending RS's tokens
        # The S-DATA fast path (see the module docstring): a reader per leg once the session
        # is open, which legs' agents hold part of a TPDU or TSDU, and frames queued for each
        # leg ahead of what its agent queues next.
        self._readers: dict[Leg, PlainReader] | None = None
        self.plain_messages = 0  #: S-DATA relayed by the fast path
        #: Both ends are sessionlayer peers and the upstream gave the session a resume
        #: token: a leg whose TCP connection is lost loses the other's too, with no AB,
        #: so that the session resumes through the relay (docs/recovery.md).
        self.resumable = False
        self._general: set[Leg] = set()
        self._out: dict[Leg, list[bytes]] = {CLIENT: [], UPSTREAM: []}
        # What came from each leg while the other waited for the relay's S-SYNC-MAJOR or
        # S-ACTIVITY-END response (``_crossed_major``), and its octets.
        self._held: dict[Leg, collections.deque[ev.Event]] = {
            CLIENT: collections.deque(), UPSTREAM: collections.deque()}  # fmt: skip
        self._held_octets: dict[Leg, int] = {CLIENT: 0, UPSTREAM: 0}
        self.held_octets_max = 0  #: the most octets held for one leg at once

    # ------------------------------------------------------------ inputs

    def client_connected(self, now: float) -> None:
        """The client's TCP (and TLS) connection is up: its handshake deadline starts."""
        self._last_heard = now
        self._deadline_handshake = now + self.options.handshake_timeout
        self.client.connection_made(now)

    def upstream_connected(self, now: float) -> None:
        """The upstream's TCP (and TLS) connection is up: send the COTP CR (with the
        client's transport selectors)."""
        agent = self.upstream
        if agent is None or self.phase != "connecting":
            return
        rfc = self.client.rfc
        agent.connection_made(now, rfc.calling_tsap, rfc.called_tsap)
        self._pump(now)

    def upstream_failed(self, message: str, now: float) -> None:
        """The upstream could not be reached (refused, unreachable, TLS, connect timeout)."""
        self._connect_wanted = False
        if self.phase == "connecting":
            self._refuse_client(RefuseReason.USER_NOT_ATTACHED, f"upstream: {message}", now)
        self._pump(now)

    def receive(self, leg: Leg, data: bytes, now: float) -> None:
        """Octets from one leg's TCP connection."""
        self._last_heard = now
        agent = self.agent(leg)
        if agent is None:
            return
        heard = self._heard
        if heard is not None:  # (its peer is alive: no probe due, its idle clock restarts)
            heard[leg] = now
            agent.heard(now)
        readers = self._readers
        if readers is None or leg in self._general or not self._plain():
            self._general_path(leg, agent, data, now)
            return
        # The fast path takes the plain S-DATA; a TPDU that is anything else goes to the
        # agent, and the fast path goes on with what followed it (PlainReader.more), unless
        # the agent now holds part of a TSDU or the legs are no longer plain: then the agent
        # takes the rest of the read too.
        reader = readers[leg]
        data = self._fast(leg, reader.feed, data, now)
        while data:
            self._general_path(leg, agent, data, now)
            if not reader.pending:
                return
            if leg in self._general or not self._plain():
                data = reader.take()
            else:
                data = self._fast(leg, lambda _, out: reader.more(out), b"", now)

    def _general_path(self, leg: Leg, agent: SessionAgent, data: bytes, now: float) -> None:
        agent.receive_data(data, now)
        if agent.transport_idle:
            self._general.discard(leg)
        else:
            self._general.add(leg)
        if leg == UPSTREAM and not self._cn_sent:
            self._send_cn(agent, now)
        self._pump(now)

    def _plain(self) -> bool:
        """Both legs are plain: S-DATA may take the fast path."""
        upstream = self.upstream
        return (
            self.phase == "open" and upstream is not None
            and self.client.plain and upstream.plain
            and not (self._held[CLIENT] or self._held[UPSTREAM])
        )  # fmt: skip

    def _fast(self, leg: Leg, parse: Callable[[bytes, list[bytes]], bytes], data: bytes,
              now: float) -> bytes:  # fmt: skip
        """Plain-data TSDUs parsed off the stream (``parse``: the reader's feed or more),
        framed again for the other leg; the TPDU that is anything else (b"": none)."""
        assert self._readers is not None
        other = self.agent(_OTHER[leg])
        assert other is not None
        messages: list[bytes] = []
        try:
            rest = parse(data, messages)
        except DecodeError as exc:  # a TSDU over max_size: what came before, then AB 0x11
            self._relay_plain(_OTHER[leg], other, messages)
            self._readers[leg].clear()
            agent = self.agent(leg)
            assert agent is not None
            agent.fail(f"transport protocol error: {exc}", exc.reason, reflect=b"")
            self._pump(now)
            return b""
        self._relay_plain(_OTHER[leg], other, messages)
        return rest

    def _relay_plain(self, leg: Leg, agent: SessionAgent, messages: list[bytes]) -> None:
        if not messages:
            return
        out = self._out[leg]
        out += agent.data_to_send()  # (whatever its agent queued before goes first)
        size = agent.tpdu_size
        out += [frame_data(message, size) for message in messages]
        self.plain_messages += len(messages)

    def lost(self, leg: Leg, now: float, why: str | None = None) -> None:
        """One leg's TCP connection is gone (``why``: what to say of it, if known)."""
        agent = self.agent(leg)
        if agent is None:
            return
        agent.connection_lost()
        self._pump(now)
        if leg == UPSTREAM and self.phase == "connecting":  # (lost before the CN went out)
            self._refuse_client(RefuseReason.USER_NOT_ATTACHED,
                                why or "the upstream closed the connection", now)  # fmt: skip
            self._pump(now)

    def shutdown(self, message: str, now: float) -> None:
        """The relay is stopping: abort both legs (AB 0x09)."""
        self._abort_both(message, now)
        self._pump(now)

    # ------------------------------------------------------------ outputs

    def agent(self, leg: Leg) -> SessionAgent | None:
        return self.client if leg == CLIENT else self.upstream

    def data_to_send(self, leg: Leg) -> list[bytes]:
        """Octets for one leg's TCP connection, in order (drains)."""
        agent = self.agent(leg)
        if agent is None:
            return []
        out = self._out[leg]
        if not out:
            return agent.data_to_send()
        self._out[leg] = []
        out += agent.data_to_send()
        return out

    def wants_close(self, leg: Leg) -> bool:
        """Close this leg's transport once what was sent is written (or, for an upstream
        still connecting, give the connection up)."""
        agent = self.agent(leg)
        if agent is None:
            return leg == UPSTREAM and self.phase == "ended"
        if leg == UPSTREAM and self.phase == "ended" and not self._cn_sent:
            return True  # (connected, but the session ended before its CN went out)
        # STA16: this leg's machine sent AB, RF or DN (each with "transport released") and
        # waits for the transport to go: the relay closes it once that SPDU is written, as
        # libiec61850's server does, rather than leave it open up to TIM.
        return agent.wants_close or agent.machine.state == "STA16"

    def take_connect(self) -> bool:
        """True once: the binding should now connect to the upstream."""
        wanted, self._connect_wanted = self._connect_wanted, False
        return wanted and self.phase == "connecting"

    @property
    def connect_indication(self) -> ev.ConnectIndication | None:
        """The client's CN, once it came."""
        return self._cn

    @property
    def handshake_over(self) -> bool:
        """The client got its AC, or the session ended."""
        return self.phase in ("open", "ended")

    def notes(self) -> list[tuple[str, str]]:
        """(level, message) lines for the operator's log (drains): "info" or "warning"."""
        out, self._notes = self._notes, []
        return out

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` should next be called (the caller's clock), or None."""
        deadlines = [self.client.next_deadline()]
        if self.upstream is not None:
            deadlines.append(self.upstream.next_deadline())
        if self.phase == "connecting":
            deadlines.append(self._deadline_handshake)
        if self.phase == "open":
            deadlines.append(self._deadline_release)
            if self.options.idle_timeout is not None:
                deadlines.append(self._idle_since() + self.options.idle_timeout)
        return min((d for d in deadlines if d is not None), default=None)

    def handle_timer(self, now: float) -> None:
        """The time is ``now``: act on whatever deadline has passed (the relay's own first,
        then each leg's)."""
        opts = self.options
        handshake = self._deadline_handshake
        if self.phase == "connecting" and handshake is not None and now >= handshake:
            self._refuse_client(
                RefuseReason.USER_NOT_ATTACHED,
                f"the upstream did not answer within the handshake timeout "
                f"({opts.handshake_timeout} s)", now,
            )  # fmt: skip
        elif self.phase == "open":
            release = self._deadline_release
            if release is not None and now >= release:
                self._abort_both(f"no answer to the release within {opts.release_timeout} s",
                                 now)  # fmt: skip
            elif opts.idle_timeout is not None and now >= self._idle_since() + opts.idle_timeout:
                self._idle(now)
        for leg in (CLIENT, UPSTREAM):
            agent = self.agent(leg)
            if agent is not None:
                agent.handle_timer(now)
        self._pump(now)

    def _idle_since(self) -> float:
        """Since when the session counts as idle: nothing from either leg, or (legs watched
        apart) nothing from the leg heard from least recently."""
        heard = self._heard
        return self._last_heard if heard is None else min(heard.values())

    def _idle(self, now: float) -> None:
        """The idle timeout passed (``_idle_since``)."""
        heard = self._heard
        if heard is None:
            self._abort_both(f"nothing from either leg for {now - self._last_heard:.1f} s"
                             " (idle timeout)", now)  # fmt: skip
            return
        leg = min(heard, key=heard.__getitem__)
        self._leg_silent(leg, now - heard[leg], now)

    def _leg_silent(self, leg: Leg, silent: float, now: float) -> None:
        """(Between sessionlayer peers) ``leg``'s peer sent nothing for the idle timeout,
        not even the answer to the relay's probe: it is gone (a dead host, a cable pulled;
        no FIN came).  Both legs are aborted (AB 0x09); a resumable session loses both
        connections with no AB instead, as when one is lost, so that it may resume."""
        why = (f"nothing from the {leg} for {silent:.1f} s, not even the answer to a"
               " keepalive probe (idle timeout)")  # fmt: skip
        if not self.resumable:
            self._abort_both(why, now)
            return
        self._end("interrupted", f"{why}: both connections closed (the session resumes on"
                                 " new connections)", now, level="warning")  # fmt: skip
        for each in (CLIENT, UPSTREAM):
            agent = self.agent(each)
            if agent is not None and self._alive(agent):
                agent.lose_link(f"the {leg} leg went silent")

    # ------------------------------------------------------------ the event loop

    def _pump(self, now: float) -> None:
        """Take each leg's events until neither has any (acting on one leg may settle the
        other: an abort, a refusal)."""
        busy = True
        while busy:
            busy = False
            for leg in (CLIENT, UPSTREAM):
                agent = self.agent(leg)
                if agent is None:
                    continue
                events = agent.events()
                for event in events:
                    self._on_event(leg, event, now)
                busy = busy or bool(events)
            for leg in (CLIENT, UPSTREAM):
                agent = self.agent(leg)
                if agent is not None:
                    for warning in agent.warnings():
                        self._note("warning", f"{leg} leg: {warning}")

    def _on_event(self, leg: Leg, event: ev.Event, now: float) -> None:
        if isinstance(event, ev.ConnectIndication):
            self._connect_indication(event, now)
        elif isinstance(event, ev.ConnectConfirm):
            self._accepted(event, now)
        elif isinstance(event, ev.RefuseConfirm):
            self._refused(event, now)
        elif isinstance(event, ev.UserAbortIndication):
            self._user_abort(leg, event, now)
        elif isinstance(event, ev.ProviderAbortIndication):
            self._provider_abort(leg, event, now)
        elif self.phase == "open":
            self._forward(leg, event, now)

    # ------------------------------------------------------------ connect

    def _connect_indication(self, event: ev.ConnectIndication, now: float) -> None:
        if self.phase != "handshake":
            return
        self._cn = event
        reason = self.admit(event) if self.admit is not None else None
        if reason is not None:
            self._refuse_client(reason, "refused by the relay's rules or limits", now,
                                own=False)  # (``admit`` counted it)
            return
        self.phase = "connecting"
        self.upstream = SessionAgent("initiator", upstream_config(event, self.options),
                                     agent_options(self.options))  # fmt: skip
        self.upstream.auto_answer = False
        self._connect_wanted = True
        self._note("info", f"CN from the client (calling {_hex(event.calling_ssel)}, called "
                           f"{_hex(event.called_ssel)}): connecting to the upstream")  # fmt: skip

    def _send_cn(self, agent: SessionAgent, now: float) -> None:
        """(Upstream) The CC came: the CN goes out, with the client's user data."""
        cn = self._cn
        if cn is None or self.phase != "connecting" or agent.rfc.state is not (
            ConnectionState.OPEN
        ):
            return
        self._cn_sent = True
        data = cn.user_data
        if data is not None and is_hello(data):  # (its legs take TSDUs of max_size at most)
            data = cap_max_tsdu(bytes(data), self.options.max_size)
        try:
            agent.connect(data, cn.connection_id)
        except LocalError as exc:
            self._refuse_client(RefuseReason.SPM_NO_REASON, f"cannot relay the CN: {exc}", now)

    def _accepted(self, event: ev.ConnectConfirm, now: float) -> None:
        """The upstream's AC: the client gets an AC with the same parameters."""
        if self.phase != "connecting":
            return
        if self.upstream is not None:  # (max_size bounds its TSDUs from now on)
            self.upstream.rfc.session_open()
        units = event.functional_units
        available = tokens_for(units)
        theirs = Token(available & ~event.tokens)  # what the upstream holds
        config = dataclasses.replace(
            self.client.machine.config,
            functional_units=units,
            versions=Version(event.version),
            initial_serial=event.initial_serial,
            second_initial_serial=event.second_initial_serial,
            responding_ssel=event.responding_ssel,
            called_choice={t: TokenSetting.RESPONDER for t in Token if t & theirs},
        )
        data = event.user_data
        if data is not None and is_welcome(data):  # (as the CN's hello: _send_cn)
            data = cap_max_tsdu(bytes(data), self.options.max_size)
        try:
            self.client.accept(chosen={}, session_id=self.id, user_data=data,
                               connection_id=event.connection_id, config=config)  # fmt: skip
        except LocalError as exc:
            self._abort_both(f"cannot relay the AC to the client: {exc}", now)
            return
        if self.client.machine.tokens_owned != theirs:
            self._abort_both("the legs disagree on the tokens after connect", now)
            return
        self.phase = "open"
        self.opened = True
        self._last_heard = now
        self._between_peers(now)
        size = self.options.max_size
        self._readers = {CLIENT: PlainReader(size), UPSTREAM: PlainReader(size)}
        self._note("info", f"accepted by the upstream: units {int(units):#06x}, "
                           f"version {event.version}")  # fmt: skip

    def _between_peers(self, now: float) -> None:
        """Between sessionlayer peers (a hello in the CN, a welcome in the AC, both saying
        so) each leg answers the other peer's keepalive probes itself: they are not X.225
        services and are not relayed, so each leg is watched on its own from then on (its
        agent probes its peer, :meth:`_leg_silent` ends a silent one).  And a resumable
        session (the hello asks for recovery, the welcome has a token) is
        :attr:`resumable`."""
        cn = self._cn
        upstream = self.upstream
        if cn is None or upstream is None or not is_hello(cn.user_data):
            return
        ac_data = upstream.machine.peer_user_data
        if not is_welcome(ac_data):
            return
        try:
            hello = Hello.decode(bytes(cn.user_data or b""))
            welcome = Welcome.decode(bytes(ac_data or b""))
        except DecodeError:
            return
        both = hello.keepalive and welcome.keepalive
        self.client.keepalive = upstream.keepalive = both
        self.resumable = hello.recovery and welcome.token is not None
        if both:  # each leg watched apart from now (``_leg_silent``), its agent probing
            self._heard = {CLIENT: now, UPSTREAM: now}
            self.client.heard(now)
            upstream.heard(now)

    def _refused(self, event: ev.RefuseConfirm, now: float) -> None:
        if self.phase != "connecting":
            return
        self._refuse_client(event.reason or 0, "refused by the upstream", now,
                            user_data=event.user_data, own=False)  # fmt: skip

    def _refuse_client(self, reason: int, why: str, now: float,
                       user_data: bytes | None = None, *, own: bool = True) -> None:  # fmt: skip
        """RF to the client (the upstream, if any, is given up)."""
        if self.phase not in ("handshake", "connecting"):
            return
        if own:  # (the relay's own RF, not the upstream's relayed: for its stats)
            self.own_refusal = reason
        # X.225 8.3.5: RF user data only with reason 2; any other reason goes alone.
        data = user_data if reason == RefuseReason.USER_DATA else None
        self.client.refuse(reason, data)
        self._end("refused", f"{why} (RF {reason:#04x})", now)
        self._give_up_upstream(now)

    def _give_up_upstream(self, now: float) -> None:
        upstream = self.upstream
        self._connect_wanted = False
        if upstream is not None and not upstream.machine.is_closed and not upstream.aborting:
            upstream.abort(None, now)

    # ------------------------------------------------------------ abort

    def _user_abort(self, leg: Leg, event: ev.UserAbortIndication, now: float) -> None:
        """AB from one peer's user: the other leg gets AB with the same user data."""
        if self.phase == "ended":
            return
        self._end("aborted", f"aborted by the {leg}", now)
        other = self.agent(_OTHER[leg])
        if other is not None and self._alive(other):
            other.abort(event.user_data, now)  # (the client too while it waits for its AC)

    def _provider_abort(self, leg: Leg, event: ev.ProviderAbortIndication,
                        now: float) -> None:  # fmt: skip
        """One leg ended without a user abort: its peer's AB with a provider reason, a lost
        transport, or the relay's machine found a protocol error (it sent AB itself)."""
        if self.phase == "ended":
            return
        lost = event.reason == AbortReason.TRANSPORT_RELEASED and not event.local
        if leg == UPSTREAM and self.phase == "connecting" and (lost or event.local):
            self._refuse_client(RefuseReason.USER_NOT_ATTACHED,
                                f"the upstream ended before accepting: {event.message}",
                                now)  # fmt: skip
            return
        other = self.agent(_OTHER[leg])
        # (event.lost: the TCP connection went, no AB; not an AB whose value is 0x01)
        if event.lost and self.resumable and other is not None and self._alive(other):
            # As it came, no AB: the ends resume the session through new connections.
            self._end("interrupted", f"{leg} leg: the connection was lost (the session"
                                     " resumes on new connections)", now)  # fmt: skip
            other.lose_link(f"the {leg} leg's connection was lost")
            return
        self._end("aborted", f"{leg} leg: {event.message or 'aborted'} "
                             f"({self._how_ended(leg, event)})", now,
                  level="warning" if event.local else "info")  # fmt: skip
        if other is None or not self._alive(other):
            return
        reason = _NO_REASON
        if not event.local and not lost:  # the peer's own reason, passed on
            reason = AbortReason(int(event.reason) | AbortReason.TRANSPORT_RELEASED)
        other.fail(f"the {leg} leg ended", reason, reflect=b"")

    def _how_ended(self, leg: Leg, event: ev.ProviderAbortIndication) -> str:
        """What went on the wire: the AB and whose it was, or none (``silent``)."""
        if not event.silent:
            by = "the relay" if event.local else f"the {leg}"
            return f"AB {int(event.reason):#04x} from {by}"
        agent = self.agent(leg)
        if agent is not None and agent.rfc.tpdu_size is None:
            return "no AB: the connection was closed before the COTP CC"
        return "no AB: the relay closed the connection"

    def _abort_both(self, message: str, now: float) -> None:
        """AB 0x09 on both legs (the relay gives up the session)."""
        if self.phase == "ended":
            return
        self._end("aborted", message, now, level="warning")
        for leg in (CLIENT, UPSTREAM):
            agent = self.agent(leg)
            if agent is not None and self._alive(agent):
                agent.fail(message, _NO_REASON, reflect=b"")

    @staticmethod
    def _alive(agent: SessionAgent) -> bool:
        return not agent.machine.is_closed and not agent.aborting

    def _end(self, outcome: str, why: str, now: float, level: str = "info") -> None:
        if self.phase == "ended":
            return
        if self.phase == "handshake" and outcome == "aborted":
            outcome = "closed"  # (no CN came: no session was ever asked for)
        self.phase = "ended"
        self.outcome, self.ending = outcome, why
        self._deadline_release = None
        for leg in (CLIENT, UPSTREAM):  # (what was held for a leg goes with the session)
            self._held[leg].clear()
            self._held_octets[leg] = 0
        self._note(level, f"{outcome}: {why}")

    def _note(self, level: str, message: str) -> None:
        if len(self._notes) < 64:  # (drained after every input: a bound, never reached)
            self._notes.append((level, message))

    # ------------------------------------------------------------ data transfer

    def _forward(self, leg: Leg, event: ev.Event, now: float) -> None:
        """An indication or confirm on ``leg`` becomes a request or response on the other
        (or waits for it, or is confirmed already: see :meth:`_crossed_major`)."""
        if self._crossed_major(leg, event, now):
            return
        self._relay(leg, event, now)
        self._release_held(now)

    def _crossed_major(self, leg: Leg, event: ev.Event, now: float) -> bool:
        """What crossed a major sync point (or an activity end) the relay passed on the
        other way: True when ``event`` is held or needs nothing on the other leg.

        The other leg's peer sent MAP (or AE), which the relay relayed to this leg's peer;
        the other leg's machine is in STA10A (STA10B) until the relay gives its S-SYNC-MAJOR
        (S-ACTIVITY-END) response, which it does when this leg's MAA (AEA) comes.  Until
        then X.225 lets the SS-user send S-DATA and S-TYPED-DATA there (version 2: SDTreq
        and STDreq in STA10A, STA10B), but no S-SYNC-MINOR request or response, while this
        leg's peer, which had not seen the MAP yet, may have sent data, a minor sync point
        of its own (symmetric synchronize) or the MIA to one of the other peer's points
        ahead of its MAA.  So:

        * S-DATA and S-TYPED-DATA indications are relayed at once: they reach the other
          peer ahead of the MAA, in the dialogue unit they were sent in, as without the
          relay;
        * an S-SYNC-MINOR indication is held, and so is everything of those kinds behind
          it, in order, relayed right after the response (:meth:`_release_held`), as the
          SS-user would do;
        * an S-SYNC-MINOR confirm of a point the other leg's machine has settled already, or
          will settle with that response, is not relayed: a major sync's (and an activity
          end's) confirmation confirms every sync point before it (X.225 7.22/7.23, Table
          A-4: V(A) = V(M) on SSYNMrsp and MAA, both flows with symmetric synchronize).
          The other peer's MAA settles it there too (the recovery layer's acknowledgement
          points included: the MAA releases what they kept).
        """
        other = self.agent(_OTHER[leg])
        assert other is not None
        machine = other.machine
        waiting = machine.state in _AWAITING_RESPONSE
        if isinstance(event, ev.MinorSyncConfirm):
            # (A point of the other leg's receiving flow, between V(Ar) and V(Mr) until it
            # is confirmed; below V(Ar) once a major sync settled it.)
            serial = event.serial
            return serial < machine.vmr and (waiting or serial < machine.var)
        held = self._held[leg]
        if not isinstance(event, _HELD_KINDS):
            return False
        if not held and not (waiting and isinstance(event, ev.MinorSyncIndication)):
            return False  # (S-DATA and S-TYPED-DATA may be sent there: relayed at once)
        held.append(event)
        size = _held_size(event)
        self._held_octets[leg] += size
        self.held_octets_max = max(self.held_octets_max, self._held_octets[leg])
        if self._held_octets[leg] > self.options.max_held:
            self._abort_both(f"the {leg} sent more than {self.options.max_held} octets while"
                             f" the {_OTHER[leg]} leg waited for the answer to its major sync"
                             " point (or activity end)", now)  # fmt: skip
        return True

    def _release_held(self, now: float) -> None:
        """Relay what was held for a leg that no longer waits for the relay's S-SYNC-MAJOR
        (S-ACTIVITY-END) response, in the order it came."""
        for leg in (CLIENT, UPSTREAM):
            held = self._held[leg]
            other = self.agent(_OTHER[leg])
            while held and self.phase == "open" and other is not None and (
                other.machine.state not in _AWAITING_RESPONSE
            ):  # fmt: skip
                event = held.popleft()
                self._held_octets[leg] -= _held_size(event)
                self._relay(leg, event, now)  # (an abort there ends it: nothing held)

    def _relay(self, leg: Leg, event: ev.Event, now: float) -> None:
        other = self.agent(_OTHER[leg])
        mine = self.agent(leg)
        assert other is not None and mine is not None
        kind = type(event)
        try:
            own = _STATEFUL.get(kind)
            if own is not None:
                own(self, leg, event, mine.machine, other.machine, now)
                return
            service = SERVICES.get(kind)
            if service is None:
                self._abort_both(f"{kind.__name__} on the {leg} leg cannot be relayed", now)
                return
            checked = service(event, mine.machine, other.machine)
        except LocalError as exc:
            self._abort_both(f"cannot relay {kind.__name__} from the {leg} leg to the "
                             f"{_OTHER[leg]} leg: {exc}", now)  # fmt: skip
            return
        if checked is not None:
            self.check_serial(*checked, now)

    def check_serial(self, what: str, expected: int, got: int, now: float) -> None:
        """Both legs number sync points alike; if they ever differ, the relay gives up."""
        if expected != got:
            self._abort_both(f"{what}: serial numbers diverged ({expected} != {got})", now)

    def _release(self, leg: Leg, event: ev.ReleaseIndication, mine: SessionMachine,
                 other: SessionMachine, now: float) -> None:  # fmt: skip
        if self._release_from == _OTHER[leg]:
            # A release collision on this leg: our own FN (the other peer's) is out; the
            # peer's FN gets its DN at once, as the agent does (X.225 7.8).
            mine.release_response(accept=True, now=now)
            return
        other.release(event.user_data)
        self._release_from = leg
        self._deadline_release = now + self.options.release_timeout

    def _release_confirm(self, leg: Leg, event: ev.ReleaseConfirm, mine: SessionMachine,
                         other: SessionMachine, now: float) -> None:  # fmt: skip
        self._deadline_release = None
        self._release_from = None
        other.release_response(accept=event.accepted, user_data=event.user_data, now=now)
        if event.accepted:
            self._end("released", f"released by the {_OTHER[leg]}", now)
        else:
            self._note("info", f"the {leg} refused the release (NF)")

    def _resync_indication(self, leg: Leg, event: ev.ResyncIndication, mine: SessionMachine,
                           other: SessionMachine, now: float) -> None:  # fmt: skip
        if event.collision:
            raise LocalError("a resynchronization collided with one relayed the other way")
        first_type, first_serial = event.type, event.serial
        second_type, second_serial = event.second_type, event.second_serial
        if mine.symmetric_sync:
            # The indication's first flow is this leg's sending flow, i.e. the other leg's
            # receiving flow: the request names them the other way round.
            first_type, second_type = second_type or first_type, first_type
            first_serial, second_serial = second_serial or first_serial, first_serial
        other.resync(first_type, first_serial, tokens=dict(event.tokens),
                     user_data=event.user_data, second_type=second_type,
                     second_serial=second_serial)  # fmt: skip
        self._resync = dict(event.tokens)

    def _resync_confirm(self, leg: Leg, event: ev.ResyncConfirm, mine: SessionMachine,
                        other: SessionMachine, now: float) -> None:  # fmt: skip
        pending = self._resync or {}
        self._resync = None
        choice = Token(0)
        for token, setting in pending.items():
            if setting == TokenSetting.CALLED_CHOICE and not event.tokens & token:
                choice |= token  # the peer took it: so does the relay on the other leg
        serial, second = event.serial, event.second_serial
        if mine.symmetric_sync:
            serial, second = second if second is not None else serial, serial
        other.resync_response(serial=serial, tokens=choice, user_data=event.user_data,
                              second_serial=second if mine.symmetric_sync else None)  # fmt: skip


def _held_size(event: ev.Event) -> int:
    """What a held indication counts against ``RelayOptions.max_held``: its user data and
    64 octets (as the recovery journal counts a message)."""
    if isinstance(event, ev.DataIndication | ev.TypedDataIndication):
        return 64 + len(event.data)
    assert isinstance(event, ev.MinorSyncIndication)
    return 64 + len(event.user_data or b"")


def _hex(value: bytes | None) -> str:
    return "-" if value is None else bytes(value).hex()


#: The services whose bridging keeps state in the bridge (the other ones: services.py).
_STATEFUL: dict[type, Callable[..., None]] = {
    ev.ReleaseIndication: Bridge._release,
    ev.ReleaseConfirm: Bridge._release_confirm,
    ev.ResyncIndication: Bridge._resync_indication,
    ev.ResyncConfirm: Bridge._resync_confirm,
}
