"""The relay on asyncio: it only moves bytes.

:class:`Relay` listens (TCP, or TLS with ``tls=``); each accepted client connection gets a
:class:`_Session` holding one sans-I/O :class:`~sessionlayer.relay.bridge.Bridge`, the two
legs' transports and one timer.  With TLS the relay accepts TCP itself
(:mod:`sessionlayer.aio.tls_accept`, as ``serve()`` does): a connection counts against
``max_handshakes`` from its accept, its TLS handshake included, waits unread for a slot
as a plain one does, and has one handshake deadline from its accept.  Octets read from a
leg go to the bridge; what the bridge queues for each leg is written; when it asks, the
upstream connection is opened (TCP, or TLS with ``upstream_tls=``) or a leg closed; its
next deadline is the one timer.

Flow control: when one leg's transport buffers more than ``RelayOptions.write_buffer_high``
octets, reading from both legs pauses until it drains: from the other leg, whose octets are
relayed to it, and from that leg itself, whose peer the relay answers on it (a keepalive
probe's answer, an AB): what the relay writes to a leg is bounded by that leg's own flow
control, whatever its peer sends without reading.  Every callback catches what it
raises (a bug of ours ends that session, logged once): nothing reaches asyncio's exception
handler.  ``--log`` and ``--pcap`` see each leg's octets as they are read and written,
before TLS.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import secrets
import ssl
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from ..aio.checks import check_address, check_port, check_tls
from ..aio.listening import PlainServer, serve_plain
from ..aio.sockets import host_port, peer_gone
from ..aio.tls_accept import FULL, QUEUED, SLOT, TlsAccept, TlsListener
from ..capture import Direction, PcapStream, PcapWriter
from ..errors import RefuseReason
from ..machine import events as ev
from ..transport.connection import CONNECT_TSDU_MAX
from .bridge import CLIENT, UPSTREAM, Bridge, Leg, Phase
from .options import RelayOptions
from .policy import Policy
from .wirelog import WireTap

__all__ = ["Relay", "RelaySessionInfo", "LegInfo", "RelayStats", "start"]

log = logging.getLogger("sessionlayer.relay")
_LEGS: tuple[Leg, Leg] = (CLIENT, UPSTREAM)
#: WARNING lines a second across sessions; the rest go out at DEBUG.
WARNINGS_PER_SECOND = 20
#: Connections the kernel may queue for accepting (asyncio's default, 100, leaves a burst
#: of connections established at the client but not accepted, so without a deadline).
LISTEN_BACKLOG = 1024
SpduLog = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class LegInfo:
    """One leg of a relayed session."""

    peer: tuple[str, int] | None  #: the other end of this leg's TCP connection
    state: str  #: its machine's X.225 state ("STA713"), or "connecting" / "closed"
    tls: bool
    bytes_in: int  #: octets read from this leg (after TLS)
    bytes_out: int  #: octets written to it
    buffered: int = 0  #: octets written and not yet taken by the transport (flow control)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["peer"] = None if self.peer is None else host_port(self.peer[0], self.peer[1])
        return out


@dataclass(frozen=True)
class RelaySessionInfo:
    """A snapshot of one client connection of the relay and its upstream, if any."""

    id: str  #: 32 hex digits, on every log line about the session
    phase: Phase  #: "handshake", "connecting", "open", "ended"
    age: float  #: seconds since the client connected
    calling_ssel: str | None  #: the CN's selectors, hex (None: absent, or no CN yet)
    called_ssel: str | None
    client: LegInfo
    upstream: LegInfo | None  #: None until the relay connects upstream
    #: "released", "refused", "aborted", "interrupted" (a resumable session lost a leg: it
    #: resumes on new connections) once ended
    outcome: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["client"] = self.client.to_dict()
        out["upstream"] = None if self.upstream is None else self.upstream.to_dict()
        return out


def _reason_name(reason: int) -> str:
    try:
        return RefuseReason(reason).name
    except ValueError:
        return f"{reason:#04x}"


@dataclass
class RelayStats:
    """Running totals of a relay."""

    connections: int = 0  #: client TCP connections accepted (after TLS)
    rejected: collections.Counter[str] = field(default_factory=collections.Counter)
    """Connections closed before they were relayed sessions: "denied" (by address, at
    accept), "handshake_limit" (closed at once with a full queue, or timed out while
    waiting for a handshake slot), "tls" (its TLS handshake failed or did not end within
    the handshake timeout), "out_of_descriptors" (plain TCP: closed at the accept, the
    process had no file descriptor for it)."""
    refused: collections.Counter[str] = field(default_factory=collections.Counter)
    """CNs refused by the relay itself (RF), by reason name: "SSEL_UNKNOWN" (the rules),
    "SPM_CONGESTION" (max_sessions), "USER_NOT_ATTACHED" (the upstream could not be
    reached, its TLS failed or it did not answer in time), "SPM_NO_REASON" (a CN that
    could not be relayed); not those of the upstream, which are relayed."""
    relayed: int = 0  #: CNs admitted, each an upstream connection
    opened: int = 0  #: of those, the sessions that reached data transfer (the AC relayed)
    ended: collections.Counter[str] = field(default_factory=collections.Counter)
    """Sessions over, by outcome: "released", "refused", "aborted", "interrupted",
    "closed" (no CN)."""
    octets: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    """Octets of the sessions that are over, by (leg, "in" | "out")."""


class _Warnings:
    """At most WARNINGS_PER_SECOND WARNING lines a second; the rest at DEBUG."""

    def __init__(self) -> None:
        self.second = 0
        self.count = 0

    def level(self) -> int:
        now = int(time.monotonic())
        if now != self.second:
            self.second, self.count = now, 0
        self.count += 1
        return logging.WARNING if self.count <= WARNINGS_PER_SECOND else logging.DEBUG


_warnings = _Warnings()


class _LegProtocol(asyncio.Protocol):
    """The asyncio callbacks of one leg, handed to its session."""

    __slots__ = ("leg", "session")

    def __init__(self, session: _Session, leg: Leg) -> None:
        self.session = session
        self.leg = leg

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.session.made(self.leg, transport)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        self.session.received(self.leg, data)

    def eof_received(self) -> bool | None:
        return None  # the peer is done: close (connection_lost follows)

    def connection_lost(self, exc: Exception | None) -> None:
        self.session.lost(self.leg, exc)

    def pause_writing(self) -> None:
        self.session.write_paused(self.leg, True)

    def resume_writing(self) -> None:
        self.session.write_paused(self.leg, False)


class _Session:
    """One client connection of the relay: its bridge, both legs' transports, one timer."""

    def __init__(self, relay: Relay, accept: TlsAccept[_LegProtocol] | None = None) -> None:
        self.relay = relay
        self.id = secrets.token_hex(16)
        self.log = logging.LoggerAdapter(log, {"session_id": self.id})
        self.bridge = Bridge(self.id, relay.options, admit=self._admit)
        self.loop = asyncio.get_running_loop()
        #: (TLS) Its TCP accept, until its TLS handshake is done: it holds a handshake slot.
        self.accept = accept
        self.started = self.loop.time() if accept is None else accept.accepted
        self.transports: dict[Leg, asyncio.Transport | None] = {CLIENT: None, UPSTREAM: None}
        self.peers: dict[Leg, tuple[str, int] | None] = {CLIENT: None, UPSTREAM: None}
        self.bytes_in = {CLIENT: 0, UPSTREAM: 0}
        self.bytes_out = {CLIENT: 0, UPSTREAM: 0}
        self.gone: set[Leg] = set()  # legs whose TCP connection has ended
        self.full: set[Leg] = set()  # legs whose transport is over its high-water mark
        self.paused: set[Leg] = set()  # legs whose reading we paused (a leg is full)
        self.timer: asyncio.TimerHandle | None = None
        self.kill: dict[Leg, asyncio.TimerHandle] = {}
        self.connecting: asyncio.Task[None] | None = None
        self.pcap: dict[Leg, PcapStream] = {}
        self.taps: dict[tuple[Leg, str], WireTap] = {}
        self.in_handshake = False
        self.admitted = False
        self.finished = False
        self.warned = False
        #: While queued for a handshake slot: what the client sent meanwhile (else None).
        self.early: bytes | None = None

    # ------------------------------------------------------------ asyncio callbacks

    def made(self, leg: Leg, transport: asyncio.Transport) -> None:
        try:
            if leg == CLIENT:
                self._client_made(transport)
            else:
                self._upstream_made(transport)
        except Exception as exc:  # a bug of ours: this session ends, nothing else
            self._internal_error(exc)

    def _client_made(self, transport: asyncio.Transport) -> None:
        relay = self.relay
        self.transports[CLIENT] = transport
        peer = _endpoint(transport.get_extra_info("peername"))
        self.peers[CLIENT] = peer
        accept = self.accept
        if accept is not None:  # (TLS) Its TLS handshake is done, in the slot its accept
            self.accept = None  # took at accept (its address admitted then)
            if relay.closing:
                self.finished = True  # (the accept's task frees its slot)
                transport.abort()
                return
            accept.handed_over = True  # the slot is this session's now
            accept.stop_timer()  # (the bridge's handshake deadline: from the same accept)
            self._begin(transport, self.started, counted=True)
            return
        if relay.closing:  # (accepted in the loop turn of close(): it was relayed after it)
            self.finished = True
            transport.abort()
            return
        if not relay.policy.admits_peer(peer[0] if peer else None):
            relay.stats.rejected["denied"] += 1
            self.finished = True
            transport.abort()
            return
        if relay.handshakes >= relay.options.max_handshakes:
            if not relay.room_to_wait():
                relay.stats.rejected["handshake_limit"] += 1
                self.finished = True
                transport.abort()
                return
            # Over the limit: it waits, nothing read, for a handshake to end (``admit``),
            # within the handshake timeout from now.
            transport.pause_reading()
            relay.waiting[self.id] = self
            self.early = b""
            self.timer = self.loop.call_later(relay.options.handshake_timeout, self._gave_up)
            return
        self._begin(transport, self.loop.time())

    def _gave_up(self) -> None:
        """Waited the handshake timeout for a slot: closed."""
        self.timer = None
        if self.early is not None:
            self.relay.stats.rejected["handshake_limit"] += 1
            self.drop_waiting()

    def gone_while_waiting(self) -> None:
        """(Queued) Its client left while it waited, unread (asyncio does not see a FIN
        or a reset then): out of the queue."""
        if self.early is not None and peer_gone(self.transports[CLIENT]):
            self.drop_waiting()

    def drop_waiting(self) -> None:
        """(Queued) Out of the queue for good, its connection closed (if still there)."""
        self.relay.waiting.pop(self.id, None)
        self.early = None
        self.finished = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        transport = self.transports[CLIENT]
        if transport is not None and not transport.is_closing():
            transport.abort()

    def admit(self) -> None:
        """(Queued) A handshake slot is this connection's: on with what it sent."""
        try:
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            transport = self.transports[CLIENT]
            if transport is None or transport.is_closing():
                self.finished = True
                return
            early, self.early = self.early, None
            self._begin(transport, self.started)  # (its handshake deadline: from the accept)
            transport.resume_reading()
            if early:
                self.received(CLIENT, early)
        except Exception as exc:  # a bug of ours: this session ends, nothing else
            self._internal_error(exc)

    def _begin(self, transport: asyncio.Transport, accepted: float, *,
               counted: bool = False) -> None:  # fmt: skip
        """A handshake slot is this connection's (``counted``: taken already, by its TLS
        accept); its handshake deadline runs from ``accepted``."""
        relay = self.relay
        relay.stats.connections += 1
        if not counted:
            relay.handshakes += 1
        self.in_handshake = True
        relay.live[self.id] = self
        high = relay.options.write_buffer_high
        transport.set_write_buffer_limits(high=high, low=high // 4)
        self._open_capture(CLIENT, transport, self.peers[CLIENT], server_side=True)
        self.bridge.client_connected(accepted)
        self._flush()

    def _upstream_made(self, transport: asyncio.Transport) -> None:
        self.transports[UPSTREAM] = transport
        if self.finished or self.bridge.phase != "connecting":
            transport.abort()  # the session ended while this connection was being made
            return
        peer = _endpoint(transport.get_extra_info("peername"))
        self.peers[UPSTREAM] = peer
        high = self.relay.options.write_buffer_high
        transport.set_write_buffer_limits(high=high, low=high // 4)
        if UPSTREAM in self.paused:  # (the client leg is full: nothing read until it drains)
            transport.pause_reading()
        self._open_capture(UPSTREAM, transport, peer, server_side=False)
        self.bridge.upstream_connected(self.loop.time())
        self._flush()

    def received(self, leg: Leg, data: bytes) -> None:
        if self.early is not None:  # (queued: uvloop reads once before a pause holds)
            self.early += data
            transport = self.transports[CLIENT]
            if transport is not None and not transport.is_closing():
                transport.pause_reading()
            return
        try:
            self.bytes_in[leg] += len(data)
            self._tap(leg, "in", data)
            self.bridge.receive(leg, data, self.loop.time())
            self._flush()
        except Exception as exc:
            self._internal_error(exc)

    def lost(self, leg: Leg, exc: Exception | None = None) -> None:
        try:
            if leg in self.gone:
                return
            if self.early is not None:  # gone while it waited for a slot
                self.transports[CLIENT] = None
                self.drop_waiting()
                return
            self.gone.add(leg)
            self.transports[leg] = None
            kill = self.kill.pop(leg, None)
            if kill is not None:
                kill.cancel()
            stream = self.pcap.pop(leg, None)
            if stream is not None:
                stream.close(time.time())
            self.write_paused(leg, False)  # nobody is held back for a leg that is gone
            if not self.finished:
                self.bridge.lost(leg, self.loop.time(), self._why_lost(leg, exc))
                self._flush()
        except Exception as exc:
            self._internal_error(exc)

    def _why_lost(self, leg: Leg, exc: Exception | None) -> str | None:
        """What to say of an upstream lost before its session was set up, under TLS (a
        server that wanted a client certificate closes once the handshake is over)."""
        if leg != UPSTREAM or self.relay.upstream_tls is None:
            return None
        if isinstance(exc, ssl.SSLError):
            return f"the upstream ended TLS: {exc.reason or exc}"
        return ("the upstream closed the connection after the TLS handshake (does it ask"
                " for a client certificate?)")

    def write_paused(self, leg: Leg, paused: bool) -> None:
        """``leg``'s transport is above (below) its high-water mark: pause reading from both
        legs (resume once no leg is full).  From the other leg, whose octets would be
        written to it; and from ``leg`` itself, whose peer the relay answers on it (a
        keepalive probe's answer, an AB), so that a peer that sends without reading cannot
        make the relay queue answers without limit."""
        if paused:
            self.full.add(leg)
        else:
            self.full.discard(leg)
        for each in _LEGS:
            transport = self.transports[each]
            if self.full and each not in self.paused:
                self.paused.add(each)
                if transport is not None and not transport.is_closing():
                    transport.pause_reading()
            elif not self.full and each in self.paused:
                self.paused.discard(each)
                if transport is not None and not transport.is_closing():
                    transport.resume_reading()

    # ------------------------------------------------------------ driving the bridge

    def _flush(self) -> None:
        """Write what the bridge queued, connect or close legs as it asks, log its notes,
        re-arm the timer; finish once both legs are gone."""
        if self.finished:
            return
        bridge = self.bridge
        for leg in _LEGS:
            out = bridge.data_to_send(leg)
            transport = self.transports[leg]
            if out and transport is not None and not transport.is_closing():
                for chunk in out:
                    self.bytes_out[leg] += len(chunk)
                    self._tap(leg, "out", chunk)
                transport.writelines(out)
        if bridge.take_connect():
            self.connecting = self.loop.create_task(self._connect_upstream())
            self.connecting.add_done_callback(self._connect_over)
        for leg in _LEGS:
            if bridge.wants_close(leg):
                self._close(leg)
        if self.in_handshake and bridge.handshake_over:
            self.in_handshake = False
            self.relay.handshake_over()
        self._log_notes()
        if CLIENT in self.gone and (UPSTREAM in self.gone or self._no_upstream()):
            self._finish()
            return
        self._rearm()

    def _connect_over(self, task: asyncio.Task[None]) -> None:
        """The upstream connect ended (connected, failed or cancelled): a session whose
        client is gone may be over now."""
        _retrieved(task)
        try:
            self._flush()
        except Exception as exc:
            self._internal_error(exc)

    def _no_upstream(self) -> bool:
        return self.transports[UPSTREAM] is None and (
            self.connecting is None or self.connecting.done()
        )

    def _close(self, leg: Leg) -> None:
        if leg == UPSTREAM and self.connecting is not None and not self.connecting.done():
            self.connecting.cancel()
        transport = self.transports[leg]
        if transport is None or leg in self.kill:
            return
        transport.close()  # (after what is buffered is written)
        # A peer that does not read what is left gets a reset after this long.
        self.kill[leg] = self.loop.call_later(self.relay.options.abort_timeout,
                                              transport.abort)  # fmt: skip

    def _rearm(self) -> None:
        """The one timer, at the bridge's next deadline.  A timer due before it is kept
        (the idle deadline moves on with every read: the timer fires, finds nothing due
        and is armed again, once per idle period instead of once per read)."""
        deadline = self.bridge.next_deadline()
        timer = self.timer
        if timer is not None:
            if deadline is not None and timer.when() <= deadline:
                return
            timer.cancel()
            self.timer = None
        if deadline is not None:
            self.timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self.timer = None
        try:
            self.bridge.handle_timer(self.loop.time())
            self._flush()
        except Exception as exc:
            self._internal_error(exc)

    def _finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        relay = self.relay
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.in_handshake:
            self.in_handshake = False
            relay.handshake_over()
        relay.live.pop(self.id, None)
        stats = relay.stats
        stats.ended[self.bridge.outcome or "closed"] += 1
        if self.bridge.own_refusal is not None:  # (the upstream not there, say: RF 0x82)
            stats.refused[_reason_name(self.bridge.own_refusal)] += 1
        stats.opened += self.bridge.opened
        for leg in _LEGS:
            stats.octets[(leg, "in")] += self.bytes_in[leg]
            stats.octets[(leg, "out")] += self.bytes_out[leg]
        for kill in self.kill.values():
            kill.cancel()
        self.kill.clear()
        for stream in self.pcap.values():
            stream.close(time.time())
        self.pcap.clear()
        relay.session_over(self)

    async def _connect_upstream(self) -> None:
        relay = self.relay
        opts = relay.options
        host, port = relay.upstream
        tls = relay.upstream_tls
        try:
            async with asyncio.timeout(opts.connect_timeout):
                await self.loop.create_connection(
                    lambda: _LegProtocol(self, UPSTREAM), host, port, ssl=tls,
                    server_hostname=(relay.upstream_hostname or host) if tls else None,
                    ssl_handshake_timeout=opts.connect_timeout if tls else None,
                )  # fmt: skip
        except (OSError, TimeoutError, ssl.SSLError, ValueError) as exc:
            if self.finished:
                return
            try:
                why = _describe(exc, opts.connect_timeout, tls=tls is not None)
                self.bridge.upstream_failed(why, self.loop.time())
                self._flush()
            except Exception as exc2:
                self._internal_error(exc2)

    def _admit(self, event: ev.ConnectIndication) -> int | None:
        """The rules and limits, for the CN (called by the bridge)."""
        relay = self.relay
        peer = self.peers[CLIENT]
        rfc = self.bridge.client.rfc  # (its CR's TSAPs)
        allowed, rule = relay.policy.decide(peer[0] if peer else None, event.calling_ssel,
                                            event.called_ssel, calling_tsap=rfc.calling_tsap,
                                            called_tsap=rfc.called_tsap)  # fmt: skip
        if not allowed:
            relay.stats.refused["SSEL_UNKNOWN"] += 1
            self.log.info("session %s: CN denied by the rule %s", self.id, rule or "default")
            return RefuseReason.SSEL_UNKNOWN
        if relay.sessions_relayed >= relay.options.max_sessions:
            relay.stats.refused["SPM_CONGESTION"] += 1
            return RefuseReason.SPM_CONGESTION
        self.admitted = True
        relay.stats.relayed += 1
        return None

    # ------------------------------------------------------------ what is shown

    def _open_capture(self, leg: Leg, transport: asyncio.Transport,
                      peer: tuple[str, int] | None, *, server_side: bool) -> None:  # fmt: skip
        relay = self.relay
        if relay.on_spdu is not None:
            # (a leg takes a connect SPDU up to CONNECT_TSDU_MAX whatever max_size says)
            size = max(relay.options.max_size, CONNECT_TSDU_MAX)
            self.taps[(leg, "in")] = WireTap(size)
            self.taps[(leg, "out")] = WireTap(size)
        pcap = relay.pcap
        local = _endpoint(transport.get_extra_info("sockname"))
        if pcap is None or pcap.closed or peer is None or local is None:
            return
        if (":" in peer[0]) != (":" in local[0]):
            return  # (a v4-mapped listener: the families differ; nothing sensible to draw)
        client, server = (peer, local) if server_side else (local, peer)
        self.pcap[leg] = pcap.open_stream(client, server, time.time())

    def _tap(self, leg: Leg, direction: str, data: bytes) -> None:
        stream = self.pcap.get(leg)
        if stream is not None:
            towards_server = (direction == "in") == (leg == CLIENT)
            way: Direction = "C->S" if towards_server else "S->C"
            stream.write(way, data, time.time())
        tap = self.taps.get((leg, direction))
        on_spdu = self.relay.on_spdu
        if tap is None or on_spdu is None:
            return
        for record in tap.feed(data):
            line = {"time": round(time.time(), 6), "session": self.id, "leg": leg,
                    "dir": direction, **record}  # fmt: skip
            on_spdu(line)

    def _log_notes(self) -> None:
        for level, message in self.bridge.notes():
            if level == "warning" and not self.warned:
                self.warned = True
                self.log.log(_warnings.level(), "session %s: %s", self.id, message)
            elif self.bridge.phase == "ended" and not self.admitted:
                self.log.debug("session %s: %s", self.id, message)  # (never got as far as a CN)
            else:
                self.log.info("session %s: %s", self.id, message)

    def _internal_error(self, exc: Exception) -> None:
        """A bug of ours: logged once, this session's connections are dropped."""
        if not self.finished:
            self.log.error("session %s: internal error, both legs dropped", self.id,
                           exc_info=exc)  # fmt: skip
        for leg in _LEGS:
            transport = self.transports[leg]
            if transport is not None:
                transport.abort()
        if self.connecting is not None:
            self.connecting.cancel()
        self.bridge.outcome = self.bridge.outcome or "aborted"
        self._finish()

    def shutdown(self) -> None:
        """The relay is stopping: AB 0x09 on both legs, then close them."""
        if self.finished:
            return
        try:
            self.bridge.shutdown("the relay is stopping", self.loop.time())
            self._flush()
            for leg in _LEGS:
                self._close(leg)
        except Exception as exc:
            self._internal_error(exc)

    def info(self) -> RelaySessionInfo:
        bridge = self.bridge
        cn = bridge.connect_indication
        legs: dict[Leg, LegInfo | None] = {}
        for leg in _LEGS:
            agent = bridge.agent(leg)
            if agent is None:
                legs[leg] = None
                continue
            transport = self.transports[leg]
            if leg in self.gone:
                state = "closed"
            elif transport is None:
                state = "connecting"
            else:
                state = agent.machine.state
            tls = transport is not None and transport.get_extra_info("ssl_object") is not None
            buffered = transport.get_write_buffer_size() if transport is not None else 0
            legs[leg] = LegInfo(self.peers[leg], state, tls, self.bytes_in[leg],
                                self.bytes_out[leg], buffered)  # fmt: skip
        client = legs[CLIENT]
        assert client is not None
        return RelaySessionInfo(
            id=self.id, phase=bridge.phase, age=self.loop.time() - self.started,
            calling_ssel=_hex(cn.calling_ssel) if cn else None,
            called_ssel=_hex(cn.called_ssel) if cn else None,
            client=client, upstream=legs[UPSTREAM], outcome=bridge.outcome,
        )  # fmt: skip


class Relay:
    """A session-aware relay between OSI stacks (see docs/relay.md): listens, and relays
    each client's session to ``upstream``."""

    def __init__(self, upstream: tuple[str, int], *, options: RelayOptions | None = None,
                 policy: Policy | None = None, upstream_tls: ssl.SSLContext | None = None,
                 upstream_hostname: str | None = None, on_spdu: SpduLog | None = None,
                 pcap: PcapWriter | None = None) -> None:  # fmt: skip
        self.upstream = upstream
        self.options = options or RelayOptions()
        self.policy = policy or Policy()
        self.upstream_tls = upstream_tls
        self.upstream_hostname = upstream_hostname
        #: Called with one dict per SPDU each way on each leg (``--log``); see wirelog.py.
        self.on_spdu = on_spdu
        self.pcap = pcap
        self.stats = RelayStats()
        self.handshakes = 0  #: client connections that are not relayed sessions yet
        #: Client connections over ``max_handshakes``, oldest first: each goes on once a
        #: handshake ends (at most ``max_waiting``: 16 x max_handshakes; one more is closed).
        #: (With TLS, each is its TCP accept, its TLS handshake not started.)
        self.waiting: dict[object, _Session | TlsAccept[_LegProtocol]] = {}
        self.max_waiting = 16 * self.options.max_handshakes
        #: A full queue looks for connections whose clients left at most this often (s).
        self.sweep_interval = 1.0
        self._swept = -self.sweep_interval
        #: Every client connection being handled, by session id.
        self.live: dict[str, _Session] = {}
        self._server: PlainServer | None = None
        #: The port bound, kept once closed (the server's sockets are gone then).
        self._port: int | None = None
        #: (TLS) TCP is accepted here (aio/tls_accept.py): each TLS handshake holds a
        #: handshake slot, or waits for one, from its accept.
        self._tls: TlsListener[_LegProtocol] | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # (TLS) accept loops, TLS handshakes
        self.closing = False  #: close() was called: no new connection is taken
        self._idle: asyncio.Event | None = None

    async def listen(self, host: str, port: int, tls: ssl.SSLContext | None = None) -> None:
        """Start listening (``start()`` does it); TLS with ``tls`` (a server context)."""
        if tls is None:
            self._server = await serve_plain(lambda: _LegProtocol(_Session(self), CLIENT),
                                             host, port, LISTEN_BACKLOG, self._shed, log)
            self._port = int(self._server.sockets[0].getsockname()[1])
            return
        # TLS: TCP accepted here, so that a connection counts from its accept, its TLS
        # handshake included, as a plain one does (asyncio's own TLS server takes every
        # connection into a TLS handshake of its own, uncounted).
        # (A TLS handshake that fails or times out is a connection that never sent a CN:
        # logged at DEBUG.  The deadline after the TLS handshake is the bridge's: late=None.)
        self._tls = TlsListener(
            tls, self.options.handshake_timeout, admission=self._tls_admission,
            protocol=self._tls_protocol, failed=self._tls_failed,
            dequeued=self._tls_dequeued, late=None, track=self._track,
            closing=lambda: self.closing, log=log, peer_warnings=False,
        )  # fmt: skip
        await self._tls.listen(host, port, LISTEN_BACKLOG)
        self._port = self._tls.port

    @property
    def port(self) -> int:
        """The port it listens on (or listened on, once closed), as ``Server.port``."""
        assert self._port is not None
        return self._port

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """Where it listens."""
        if self._tls is not None:
            sockets = [s for s in self._tls.sockets if s.fileno() >= 0]
        else:
            assert self._server is not None
            sockets = list(self._server.sockets)
        return [_endpoint(s.getsockname()) or ("?", 0) for s in sockets]

    @property
    def sessions(self) -> list[RelaySessionInfo]:
        """A snapshot of every client connection and its upstream, oldest first."""
        return [s.info() for s in self.live.values()]

    @property
    def sessions_relayed(self) -> int:
        """Client connections whose CN was admitted and that are not over."""
        return sum(1 for s in self.live.values() if s.admitted)

    def room_to_wait(self) -> bool:
        """The queue has room for one more connection.  Full, it first looks for the ones
        whose clients left (at most every ``sweep_interval``)."""
        if len(self.waiting) < self.max_waiting:
            return True
        now = time.monotonic()
        if now >= self._swept + self.sweep_interval:
            self._swept = now
            for queued in list(self.waiting.values()):
                queued.gone_while_waiting()
        return len(self.waiting) < self.max_waiting

    def handshake_over(self) -> None:
        """A connection's handshake ended: the oldest one waiting takes its slot."""
        self.handshakes -= 1
        while self.waiting and self.handshakes < self.options.max_handshakes:
            queued = self.waiting.pop(next(iter(self.waiting)))
            if isinstance(queued, TlsAccept):
                self.handshakes += 1  # (its slot, from now: its TLS handshake starts)
            queued.admit()

    def _shed(self, peer: Any) -> None:
        """(aio/listening.py) A client connection closed at its accept: no descriptor."""
        self.stats.rejected["out_of_descriptors"] += 1

    # ------------------------------------------------------------ TLS

    def _tls_admission(self, accept: TlsAccept[_LegProtocol]) -> object:
        """(TLS) A TCP connection accepted: denied by address, or a handshake slot for its
        TLS handshake, or a place in the queue, or closed at once (aio/tls_accept.py)."""
        if self.closing:
            return FULL
        peer = _endpoint(accept.peer)
        if not self.policy.admits_peer(peer[0] if peer else None):
            self.stats.rejected["denied"] += 1
            return FULL
        if self.handshakes < self.options.max_handshakes:
            self.handshakes += 1
            return SLOT
        if not self.room_to_wait():
            self.stats.rejected["handshake_limit"] += 1
            return FULL
        self.waiting[accept] = accept  # (unread: its TLS handshake starts with its slot)
        return QUEUED

    def _tls_protocol(self, accept: TlsAccept[_LegProtocol]) -> _LegProtocol:
        accept.conn = protocol = _LegProtocol(_Session(self, accept), CLIENT)
        return protocol

    def _tls_failed(self, accept: TlsAccept[_LegProtocol]) -> None:
        """(TLS) Its TLS handshake is over, not handed over to its session (failed, timed
        out, close()): its slot is free."""
        if not self.closing:
            self.stats.rejected["tls"] += 1
        self.handshake_over()

    def _tls_dequeued(self, accept: TlsAccept[_LegProtocol]) -> None:
        """(TLS) A connection waiting for a slot is closed (its deadline, its peer left, or
        close())."""
        self.waiting.pop(accept, None)
        if accept.expired:
            self.stats.rejected["handshake_limit"] += 1

    def _track(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("relay: unexpected error in a TLS accept", exc_info=task.exception())

    def session_over(self, session: _Session) -> None:
        if not self.live and self._idle is not None:
            self._idle.set()

    def close(self) -> None:
        """Stop listening; abort every session (AB 0x09 on both legs)."""
        self.closing = True
        if self._server is not None:
            self._server.close()
        for queued in list(self.waiting.values()):  # (never admitted now)
            if isinstance(queued, TlsAccept):
                queued.abort()
            else:
                queued.drop_waiting()
        self.waiting.clear()
        for task in list(self._tasks):  # (TLS: the accept loops and their sockets, the TLS
            task.cancel()  # handshakes: each frees its slot)
        for session in list(self.live.values()):
            session.shutdown()

    async def wait_closed(self) -> None:
        """Wait until the listener and every session's connections are gone (each leg is
        reset at the latest ``abort_timeout`` after it was closed)."""
        if self._server is not None:
            await self._server.wait_closed()
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        while self.live:
            self._idle = asyncio.Event()
            await self._idle.wait()

    async def __aenter__(self) -> Relay:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()
        await self.wait_closed()


async def start(upstream: tuple[str, int], host: str = "127.0.0.1", port: int = 0, *,
                tls: ssl.SSLContext | None = None, **kwargs: Any) -> Relay:  # fmt: skip
    """Listen on ``host:port`` (0: a free port) and relay each session to ``upstream``;
    the other keywords are :class:`Relay`'s.  A port out of 0..65535, a TLS context for
    the client side (or an ``upstream_tls`` for the server side), an ``upstream`` that is
    not a (host, port) pair: ValueError or TypeError at the call, as serve()'s."""
    check_port(port, lowest=0)
    check_tls(tls, "server")
    check_tls(kwargs.get("upstream_tls"), "client")
    check_address(upstream, "upstream")
    relay = Relay(upstream, **kwargs)
    await relay.listen(host, port, tls)
    return relay


def _endpoint(address: Any) -> tuple[str, int] | None:
    if isinstance(address, tuple) and len(address) >= 2:
        return str(address[0]), int(address[1])
    return None


def _hex(value: bytes | None) -> str | None:
    return None if value is None else bytes(value).hex()


def _describe(exc: BaseException, timeout: float, tls: bool = False) -> str:
    if isinstance(exc, TimeoutError):
        return f"no connection within {timeout} s"
    handshake = "the TLS handshake failed"
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"{handshake}: its certificate does not verify ({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        # (a plain upstream that answers something: WRONG_VERSION_NUMBER and the like)
        plain = exc.reason in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE",
                               "UNEXPECTED_EOF_WHILE_READING", "HTTP_REQUEST")  # fmt: skip
        hint = " (is the upstream TLS?)" if plain or isinstance(exc, ssl.SSLEOFError) else ""
        return f"{handshake}: {exc.reason or exc}{hint}"
    if tls and isinstance(exc, (ConnectionResetError, ConnectionAbortedError)):
        # TCP was connected (a connect that fails is refused or unreachable): the upstream
        # closed it during the handshake, as a plain RFC 1006 peer does with a ClientHello.
        return f"{handshake}: connection reset (is the upstream TLS?)"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _retrieved(task: asyncio.Task[None]) -> None:
    """Done callback: a task's outcome is always looked at (nothing for asyncio to log)."""
    if not task.cancelled():
        exc = task.exception()
        if exc is not None:
            log.error("relay: unexpected error in the upstream connect", exc_info=exc)

