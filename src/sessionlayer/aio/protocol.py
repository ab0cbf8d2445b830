"""The glue between asyncio and the sans-I/O cores.

``SessionProtocol`` is an :class:`asyncio.BufferedProtocol`: TCP is read into
a :class:`~sessionlayer.transport.fastpath.PlainReader`, which delivers plain data
itself; anything else goes into the RFC 1006 connection, whole TSDUs into the
session machine, and the machine's indications out to a
:class:`~sessionlayer.aio.session.Session`.
Everything the machine wants sent is written at once.  One timer per
connection is armed on the loop's clock, at the earliest of its deadlines: the
handshake (responder: from TCP accept to the AC), the machine's TIM, the
keepalive probe and the idle timeout.

Every error is caught where it happens and ends this one connection: nothing
reaches asyncio's exception handler, and a peer makes the binding log at most
one WARNING per connection (and, across connections, at most
``_WARNINGS_PER_SECOND`` a second; the rest are counted and summarised).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, cast

from ..errors import AbortReason, DecodeError, LocalError
from ..machine import SessionMachine
from ..machine import events as ev
from ..spdu import Abort, encode
from ..spdu.codes import FunctionalUnit
from ..transport import (
    ConnectionState,
    ConnectRequested,
    Data,
    ExpeditedReceived,
    PlainReader,
    Rfc1006Connection,
    TransportConnected,
    TransportDisconnected,
    TsduReceived,
    encode_tpdu,
    encode_tpkt,
    frame_data,
    frame_pieces,
)
from .options import Options
from .signal import Signal

if TYPE_CHECKING:
    from .session import Session

__all__ = ["SessionProtocol", "PING", "PONG"]

#: Keepalive probe and answer: PT and GT with empty parameter fields.
PING = b"\x02\x00"
PONG = b"\x01\x00"

log = logging.getLogger("sessionlayer")


_NO_EVENTS: list[ev.Event] = []  # shared and never appended to (see _hold)
#: write_data holds frames back up to this many octets before writing them in one go: more
#: where ``transport.writelines`` hands the pieces to the kernel as they are (uvloop; asyncio
#: from 3.12), less where it joins them first (asyncio 3.11, TLS): a join of more than
#: 128 KiB is a fresh mmap'ed allocation (glibc) every time.
_HOLD_PIECES = 256 * 1024
_HOLD_JOINED = 64 * 1024
#: Messages from this size on are framed as pieces (headers and views of the data) that
#: go to ``transport.writelines``: uvloop (and asyncio from 3.12) write them without a copy.
_COPY_BELOW = 4096
#: Why reading from TCP is paused (bits of ``SessionProtocol._paused``): received data waits
#: for a slow reader, or our writes wait for a peer that does not read (the answers the
#: binding gives on its own would otherwise queue without limit).
_BUFFERED = 1
_WRITING = 2
_EVENTS = 4  #: indications wait unread in Session.events()
_LOCAL = _BUFFERED | _EVENTS  #: paused for our own application: no idle timeout meanwhile
#: While reading is paused, every this many seconds: is the peer still there (see _peer_gone)?
_PAUSED_CHECK = 1.0
_TCP_ESTABLISHED = 1  #: tcpi_state in Linux's struct tcp_info
#: Across all connections: WARNING records a peer can cause, per second (see _warn).
_WARNINGS_PER_SECOND = 20


class _WarningLimit:
    """Rate limit for the warnings peers cause: a token bucket shared by every connection,
    so a flood of hostile connections cannot flood the log.  What it holds back is counted
    and reported with the next warning let through."""

    __slots__ = ("allowance", "last", "suppressed")

    def __init__(self) -> None:
        self.allowance = float(_WARNINGS_PER_SECOND)
        self.last = 0.0
        self.suppressed = 0

    def allow(self, now: float) -> bool:
        self.allowance = min(
            float(_WARNINGS_PER_SECOND), self.allowance + (now - self.last) * _WARNINGS_PER_SECOND
        )
        self.last = now
        if self.allowance >= 1.0:
            self.allowance -= 1.0
            return True
        self.suppressed += 1
        return False


_warnings = _WarningLimit()


class SessionProtocol(PlainReader, asyncio.BufferedProtocol):
    """One TCP connection carrying one session.

    It is the connection's :class:`PlainReader` too: asyncio calls the reader's
    ``get_buffer`` directly, and a session is one object lighter.
    """

    # Slots: a server holds one of these per live session (idle sessions' memory).
    __slots__ = (
        "_closed",
        "_drained",
        "_general",
        "_handshake_deadline",
        "_held",
        "_held_size",
        "_hold_limit",
        "_last_heard",
        "_on_connect_indication",
        "_on_handshake_over",
        "_on_transport_up",
        "_paused",
        "_paused_check",
        "_probe_sent",
        "_timer",
        "_timer_at",
        "_tpdu_size",
        "_tsaps",
        "_warned",
        "_watching",
        "_wrote",
        "bytes_in",
        "bytes_out",
        "is_closed",
        "keepalive",
        "loop",
        "machine",
        "options",
        "peer",
        "pending_events",
        "plain",
        "rejected",
        "rfc",
        "session",
        "tap",
        "transport",
        "transport_up",
        "write_paused",
    )  # fmt: skip

    def __init__(
        self,
        machine: SessionMachine,
        options: Options,
        *,
        on_transport_up: Callable[[SessionProtocol], None] | None = None,
        on_connect_indication: Callable[[SessionProtocol, ev.ConnectIndication], None]
        | None = None,
        on_handshake_over: Callable[[], None] | None = None,
        tsaps: tuple[bytes | None, bytes | None] = (None, None),
    ) -> None:
        self.machine = machine
        self.options = options
        role: Literal["initiator", "responder"] = (
            "initiator" if machine.role == "initiator" else "responder"
        )
        # X.225 7.12 / RFC 1006 5.2: ask for the transport expedited flow (CR/CC Additional
        # Option Selection) whenever the session's expedited data unit is wanted.
        wants_expedited = bool(machine.config.functional_units & FunctionalUnit.EXPEDITED)
        self.rfc = Rfc1006Connection(
            role, max_tpdu_size=options.tpdu_size, max_tsdu_size=options.max_tsdu_size,
            expedited=wants_expedited,
        )  # fmt: skip
        self.transport: asyncio.Transport | None = None
        self.session: Session | None = None
        self.peer: Any = None
        self.is_closed = False  #: the TCP connection is gone (``wait_closed`` waits for it)
        self._closed: Signal | None = None  # made when somebody waits for the close
        #: (Initiator) resolves when COTP CC arrived; fails if TCP closes first.
        self.transport_up: asyncio.Future[None] | None = (
            asyncio.get_running_loop().create_future() if machine.role == "initiator" else None
        )
        self.keepalive = False  # the peer answers probes (agreed in hello/welcome)
        self._tsaps = tsaps
        self._on_transport_up = on_transport_up
        self._on_connect_indication = on_connect_indication
        self._on_handshake_over = on_handshake_over  # called once: accepted, refused or gone
        #: (Server) Over the server's limit of connections in handshake: closed at once.
        self.rejected = False
        self.loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None  # the one timer (see _rearm)
        self._timer_at = 0.0
        self._handshake_deadline: float | None = None  # (responder) until the AC is sent
        #: Liveness is watched (keepalive or idle timeout): reads are timed.
        self._watching = options.keepalive_interval is not None or options.idle_timeout is not None
        self._last_heard = 0.0  # loop.time() of the last read, while liveness is watched
        self._probe_sent = False
        self._warned = False  # this connection logged its one WARNING
        #: The transport is above its high-water mark: ``drain()`` waits.
        self.write_paused = False
        self._drained: Signal | None = None  # made when somebody waits in drain()
        self._paused = 0  # why reading is paused: _BUFFERED | _WRITING | _EVENTS bits
        self._paused_check = 0.0  # while paused: when to look whether the peer is still there
        PlainReader.__init__(self, options.max_tsdu_size)
        self._wrote = False  # write_data wrote straight out; reset by flush_out
        # Frames held back to share one write; a list only while a flush_out is scheduled.
        self._held: list[bytes | memoryview] | None = None
        self._held_size = 0
        self._hold_limit = _HOLD_JOINED  # see connection_made
        #: ``machine.plain_data`` as of the last time the machine was driven (the fast path).
        self.plain = False
        self._general = False  # the general path holds part of a TPDU or TSDU (not rfc.idle)
        self._tpdu_size = 128  # negotiated in COTP CR/CC
        self.bytes_in = 0
        self.bytes_out = 0
        self.pending_events: list[ev.Event] = _NO_EVENTS  # a list of its own when needed
        #: Called with ("in" | "out", bytes) for every chunk read or written (for tracing).
        self.tap: Callable[[str, bytes], None] | None = None

    # ------------------------------------------------------------ asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses but behave as one.
        self.transport = cast(asyncio.Transport, transport)
        transport = self.transport
        if self.rejected:  # the server has too many connections in handshake
            transport.abort()
            return
        joins = type(transport).writelines is asyncio.WriteTransport.writelines
        self._hold_limit = _HOLD_JOINED if joins else _HOLD_PIECES
        self.peer = transport.get_extra_info("peername")
        transport.set_write_buffer_limits(high=self.options.write_buffer_high)
        now = self.loop.time()
        self._last_heard = now
        if self.machine.role == "initiator":
            calling, called = self._tsaps
            self._write(self.rfc.connect(calling, called, tpdu_size=self.options.tpdu_size))
        else:  # the client bounds its own handshake (connect() raises TimeoutError)
            self._handshake_deadline = now + self.options.handshake_timeout
        self._rearm()

    def buffer_updated(self, nbytes: int) -> None:
        try:  # (one frame: the try costs nothing, a call per read would)
            if self.tap is not None:
                self.tap("in", self.peek(nbytes))
            self.bytes_in += nbytes
            if self._watching:
                self._last_heard = self.loop.time()
                self._probe_sent = False
            # ``plain`` holds only while a session is open on this connection (see flush).
            if self.plain and not self._general:
                message = self.single(nbytes)
                if message is not None:
                    self.session.deliver_one(message)  # type: ignore[union-attr]
                    return
                messages: list[bytes] = []
                try:
                    data = self.parse(nbytes, messages)
                except DecodeError as exc:
                    self._fast_failed(messages, exc)
                    return
                if len(messages) == 1:
                    self.session.deliver_one(messages[0])  # type: ignore[union-attr]
                elif messages:
                    self.session.deliver(messages)  # type: ignore[union-attr]
                if not data:
                    return
            else:
                data = self.take(nbytes)  # what was held (if anything) and what was read
            self._general_receive(data)
        except Exception as exc:  # a bug of ours: end this connection, not the server
            self._internal_error(exc)

    def _fast_failed(self, messages: list[bytes], exc: DecodeError) -> None:
        """The fast path found a TSDU over the limit: deliver what came before, abort."""
        self.take()  # drop what was held
        if messages:
            self.session.deliver(messages)  # type: ignore[union-attr]
        self._fail(f"transport protocol error: {exc}", exc.reason, abort_spdu=b"")
        self._dispatch()

    def _general_receive(self, data: bytes) -> None:
        """Bytes through the RFC 1006 connection and the machine."""
        try:
            tevents = self.rfc.receive_data(data)
        except DecodeError as exc:
            self._fail(f"transport protocol error: {exc}", exc.reason, abort_spdu=exc.reflect)
            self._dispatch()
            return
        self._general = not self.rfc.idle
        for tev in tevents:
            if isinstance(tev, TsduReceived):
                self._tsdu(tev.data)
            elif isinstance(tev, ConnectRequested):
                # A DR or ER in the same read may have closed the connection already.
                if self.rfc.state is ConnectionState.AWAITING_ACCEPT:
                    self._write(self.rfc.accept())
                    self._transport_ready()
            elif isinstance(tev, TransportConnected):
                self._transport_ready()
            elif isinstance(tev, ExpeditedReceived):
                self._feed(self.machine.receive_expedited, tev.data)
            elif isinstance(tev, TransportDisconnected):
                self._lost()  # a COTP DR or ER: the session is over, and so is TCP
                self._close_transport()
        self._dispatch()

    def connection_lost(self, exc: Exception | None) -> None:
        self.resume_writing()  # nobody waits in drain() for a connection that is gone
        self._held = None
        self.clear()  # a TSDU cut short will not be completed: its buffer can go
        self._cancel_timer()
        self._handshake_over()
        self.is_closed = True
        try:
            self._lost()
            self._dispatch()
        except Exception as exc2:  # a bug of ours: logged, the connection is gone anyway
            self._internal_error(exc2)
        if self._closed is not None:
            self._closed.set()
        up = self.transport_up
        if up is not None and not up.done():
            up.set_exception(ConnectionError("connection closed"))
            up.exception()  # mark retrieved

    def eof_received(self) -> None:
        # The peer is gone and the transport closes (None: not kept open); until
        # connection_lost, writes take the general path, which checks the transport.
        self.plain = False

    def pause_writing(self) -> None:
        self.write_paused = True
        if self._drained is not None:
            self._drained.clear()
        # A peer that does not read must not make us queue answers without limit: read no
        # more of what it sends (PT+MIP, CD, ...) until it has read what we wrote.
        self._pause(_WRITING)

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._drained is not None:
            self._drained.set()
        self._unpause(_WRITING)

    async def wait_closed(self) -> None:
        """Wait until the TCP connection is gone."""
        if not self.is_closed:
            if self._closed is None:
                self._closed = Signal()
            await self._closed.wait()

    # ------------------------------------------------------------ sending

    async def drain(self) -> None:
        """Wait while the transport's write buffer is above its high-water mark."""
        if self.write_paused:  # connection_lost resumes writing too
            if self._drained is None:
                self._drained = Signal()
            await self._drained.wait()

    def flush(self) -> None:
        """Write what the machine queued, arm its timer, deliver its events."""
        machine = self.machine
        sendable = self.rfc.state is ConnectionState.OPEN
        # The expedited flow first: a PREPARE goes ahead of the SPDU it announces (7.26).
        for tsdu in machine.expedited_to_send():
            if sendable:  # ED TPDUs when the expedited option was agreed, else in band
                rfc = self.rfc
                self._write(rfc.send_expedited(tsdu) if rfc.expedited else rfc.send_tsdu(tsdu))
        for tsdu in machine.data_to_send():
            if sendable:
                self._write(self.rfc.send_tsdu(tsdu))
        # X.225: the transport goes when the machine asks (T-DISCONNECT request) and once
        # the session is over; while TIM runs (STA16) the peer has its chance to close first.
        closing = (machine.wants_transport_disconnect or machine.is_closed) and (
            self.transport is not None
        )
        if closing:
            self._close_transport()
        self._rearm()
        # The fast path needs an open session on an open transport (write_data relies on it).
        session = self.session
        self.plain = (
            machine.plain_data and not closing and session is not None and not session.closed
        )
        self._dispatch()

    def write_raw_tsdu(self, tsdu: bytes) -> None:
        """Send a TSDU the machine does not see (keepalive probes), while the transport is
        open."""
        if self.rfc.state is ConnectionState.OPEN:
            self._write(self.rfc.send_tsdu(tsdu))

    def close(self) -> None:
        """Close the TCP connection (after what was written)."""
        self._close_transport()

    def abort(self) -> None:
        """Drop the TCP connection at once."""
        if self.transport is not None:
            self.transport.abort()

    def _close_transport(self) -> None:
        """Close TCP after what was written; a peer that does not read what is left is cut
        off after ``release_timeout``."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self.plain = False
        self.flush_out()
        transport.close()
        if transport.get_write_buffer_size():
            self.loop.call_later(self.options.release_timeout, transport.abort)

    def write_data(self, data: bytes) -> None:
        """S-DATA on the fast path (only while ``plain`` holds, so the transport is open).

        A message goes straight out when nothing was written since the last flush_out;
        the ones that follow are held and written together when the loop comes round (or
        past the hold limit), so a burst of small messages costs few system calls while a
        request waits for nothing.  flush_out also runs when the session starts waiting
        for data (Session._next_waiter): a request-response exchange never schedules it.
        """
        large = len(data) >= _COPY_BELOW
        if large:  # the data is not copied here: its pieces go to transport.writelines
            pieces = frame_pieces(data, self._tpdu_size)
            size = sum(map(len, pieces))
        else:
            frame = frame_data(data, self._tpdu_size)
            size = len(frame)
        if self.tap is not None:
            self.tap("out", b"".join(pieces) if large else frame)
        held = self._held
        if held is None:
            if not self._wrote:
                self._wrote = True
                self.bytes_out += size
                if large:
                    self.transport.writelines(pieces)  # type: ignore[union-attr]
                else:
                    self.transport.write(frame)  # type: ignore[union-attr]
                return
            held = self._held = []
            self.loop.call_soon(self.flush_out)
        if large:
            held.extend(pieces)
        else:
            held.append(frame)
        self._held_size += size
        if self._held_size >= self._hold_limit:
            self._write_held()

    def flush_out(self) -> None:
        """Write the frames ``write_data`` held back; the next one may go straight out."""
        self._wrote = False
        if self._held is not None:
            if self._held:
                self._write_held()
            self._held = None  # the next frame held schedules a flush_out of its own

    def _write_held(self) -> None:
        held = self._held
        assert held is not None
        self.bytes_out += self._held_size
        self._held_size = 0
        if self.transport is not None and not self.transport.is_closing():
            self.transport.writelines(held)  # (it takes the pieces, not the list)
        held.clear()

    @property
    def write_blocked(self) -> bool:
        """The transport's buffer is above its high-water mark: ``drain()`` would wait."""
        return self.write_paused

    def _write(self, data: bytes) -> None:
        if self._held:
            self.flush_out()  # keep the order of what was sent
        if self.transport is not None and not self.transport.is_closing():
            if self.tap is not None:
                self.tap("out", data)
            self.bytes_out += len(data)
            self.transport.write(data)

    # ------------------------------------------------------------ receiving

    def _transport_ready(self) -> None:
        self._tpdu_size = self.rfc.tpdu_size or 128
        self.machine.transport_connected(expedited=self.rfc.expedited)
        up = self.transport_up
        if up is not None and not up.done():
            up.set_result(None)
        if self._on_transport_up is not None:
            self._on_transport_up(self)
        self.flush()

    def _tsdu(self, data: bytes) -> None:
        if data == PING and self.keepalive:
            self.write_raw_tsdu(PONG)
            return
        if data == PONG and self.keepalive:
            return
        self._feed(self.machine.receive_tsdu, data)

    def _feed(self, method: Callable[..., None], data: bytes) -> None:
        method(data, now=self.loop.time())
        self.flush()
        if self.session is not None:
            # Some SPDUs change the machine without an event (GTA ends STA18).
            self.session.peer_acted()

    def _lost(self) -> None:
        self.plain = False
        with contextlib.suppress(LocalError):
            self.machine.transport_disconnected()
        self._hold(self.machine.events())

    def _hold(self, events: list[ev.Event]) -> None:
        """Keep events until there is a session to give them to (or the next dispatch)."""
        if events:
            self.pending_events = [*self.pending_events, *events]

    def _dispatch(self) -> None:
        events = self.machine.events()
        if self.pending_events:
            events = self.pending_events + events
            self.pending_events = _NO_EVENTS
        for event in events:
            if isinstance(event, ev.ConnectIndication) and self._on_connect_indication:
                self._on_connect_indication(self, event)
            elif self.session is not None:
                self.session.handle_event(event)
            else:
                self._hold([event])

    def warn(self, message: str, *args: Any) -> None:
        """Log a WARNING this connection's peer caused: one per connection, and across
        connections no more than the shared rate limit (the rest at DEBUG, counted)."""
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger] = log
        if self.session is not None:
            logger = self.session.log
        if self._warned or not _warnings.allow(self.loop.time()):
            logger.debug(message, *args)
            return
        self._warned = True
        if _warnings.suppressed:
            message += " (%d similar warnings suppressed)"
            args = (*args, _warnings.suppressed)
            _warnings.suppressed = 0
        logger.warning(message, *args)

    def fail(self, message: str, reason: AbortReason, abort_spdu: bytes | None = None) -> None:
        """Provider abort, from outside the protocol (a session limit): see _fail."""
        self._fail(message, reason, abort_spdu)
        self._dispatch()

    def _fail(self, message: str, reason: AbortReason, abort_spdu: bytes | None = None) -> None:
        """Provider abort.  With ``abort_spdu`` (the reflect octets, possibly empty) an AB
        with ``reason`` is written first, so the peer learns why (X.225 7.9)."""
        self.plain = False  # no more fast path on a transport that closes
        if self.session is not None:
            self.warn("session %s (%s): %s", self.session.id, self.peer, message)
        else:
            self.warn("%s: %s", self.peer, message)
        self._hold([ev.ProviderAbortIndication(reason=reason, message=message)])
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        # An AB needs a transport connection that was opened (CC) and not disconnected.
        if abort_spdu is None or self.rfc.tpdu_size is None or (
            self.rfc.state is ConnectionState.CLOSED
        ):
            transport.abort()
            return
        ab = encode(Abort(transport_disconnect=int(reason), reflect=abort_spdu or None))
        self.flush_out()
        transport.write(encode_tpkt(encode_tpdu(Data(ab))))
        transport.close()  # flushes the AB; a peer that never reads is cut off below
        self.loop.call_later(self.options.release_timeout, transport.abort)

    def _internal_error(self, exc: Exception) -> None:
        """An exception of ours while handling this connection: log it, end the connection."""
        log.error("%s: internal error, connection closed", self.peer, exc_info=exc)
        self._cancel_timer()
        with contextlib.suppress(Exception):
            self._hold([ev.ProviderAbortIndication(
                reason=AbortReason.TRANSPORT_RELEASED | AbortReason.NO_REASON,
                message=f"internal error: {exc!r}",
            )])  # fmt: skip
            self._dispatch()
        if self.transport is not None:
            self.transport.abort()

    # ------------------------------------------------------------ the timer

    def handshake_over(self) -> None:
        """(Responder) The CN was answered (AC or RF): no handshake deadline any more."""
        self._handshake_over()
        self._rearm()

    def _handshake_over(self) -> None:
        self._handshake_deadline = None
        callback, self._on_handshake_over = self._on_handshake_over, None
        if callback is not None:
            callback()

    def _next_deadline(self) -> float | None:
        """The earliest of the connection's deadlines (loop time), or None."""
        deadline = self.machine.get_timer()
        paused = self._paused_check if self._paused else None
        for other in (self._handshake_deadline, paused, *self._liveness_deadlines()):
            if other is not None and (deadline is None or other < deadline):
                deadline = other
        return deadline

    def _liveness_deadlines(self) -> tuple[float | None, float | None]:
        """(idle timeout, keepalive probe) deadlines, from the last read."""
        if not self._watching or self.is_closed or not self.machine.is_open:
            return None, None  # (the handshake and TIM have deadlines of their own)
        opts = self.options
        idle = None if opts.idle_timeout is None else self._last_heard + opts.idle_timeout
        probe = None
        if self.keepalive and opts.keepalive_interval is not None and not self._probe_sent:
            probe = self._last_heard + opts.keepalive_interval
        return idle, probe

    def _rearm(self) -> None:
        """Arm the one timer at the earliest deadline.  Reads only move ``_last_heard``: a
        timer that fires early re-arms itself for the new deadline (no re-arm per read)."""
        deadline = self._next_deadline()
        timer = self._timer
        if timer is not None:
            if deadline is not None and self._timer_at <= deadline:
                return  # it fires first and looks again
            timer.cancel()
            self._timer = None
        if deadline is not None and not self.is_closed:
            self._timer_at = deadline
            self._timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        try:
            self._expire(self.loop.time())
        except Exception as exc:
            self._internal_error(exc)

    def _expire(self, now: float) -> None:
        if self._handshake_deadline is not None and now >= self._handshake_deadline:
            self._handshake_deadline = None
            self._fail(
                f"no session within the handshake timeout ({self.options.handshake_timeout} s)",
                AbortReason.TRANSPORT_RELEASED | AbortReason.NO_REASON,
            )
            self._dispatch()
            return
        deadline = self.machine.get_timer()
        if deadline is not None and now >= deadline:
            self.machine.handle_timer(now)
            self.flush()
        if self._paused and now >= self._paused_check:
            if self._peer_gone():  # nothing is read while paused: look at the socket itself
                self.abort()
                return
            self._paused_check = now + _PAUSED_CHECK
        if self._paused & _LOCAL:
            self._last_heard = now  # our reader is slow: the peer's silence is not its fault
        idle, probe = self._liveness_deadlines()
        if idle is not None and now >= idle:
            self._fail(
                f"no traffic from the peer for {now - self._last_heard:.1f} s (idle timeout)",
                AbortReason.TRANSPORT_RELEASED | AbortReason.NO_REASON,
                abort_spdu=b"",
            )
            self._dispatch()
            return
        if probe is not None and now >= probe:
            self._probe_sent = True
            self.write_raw_tsdu(PING)
        self._rearm()

    def _peer_gone(self) -> bool:
        """While reading is paused asyncio does not see a FIN or a reset: peek."""
        sock = self.transport.get_extra_info("socket") if self.transport is not None else None
        if sock is None:
            return False
        tcp_info = getattr(socket, "TCP_INFO", None)
        try:
            if tcp_info is not None:  # Linux: the connection's TCP state, unread data or not
                state = sock.getsockopt(socket.IPPROTO_TCP, tcp_info, 8)[0]
                return bool(state != _TCP_ESTABLISHED)
            # Elsewhere: peek (through a dup: asyncio's socket wrapper has no recv).
            with socket.socket(sock.family, sock.type, fileno=os.dup(sock.fileno())) as dup:
                return bool(dup.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"")
        except (BlockingIOError, InterruptedError):
            return False  # alive, nothing to read
        except OSError:
            return True  # reset

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def start_liveness(self, keepalive: bool) -> None:
        """The session is open: ``keepalive`` says the peer answers our probes (agreed in
        the hello and the welcome).  Toward any other peer no probe is sent (an empty PT
        is not valid X.225 in every state); TCP keepalive watches the connection instead."""
        self.keepalive = keepalive
        interval = self.options.keepalive_interval
        sock = self.transport.get_extra_info("socket") if self.transport is not None else None
        if not keepalive and interval is not None and sock is not None:
            _tcp_keepalive(sock, interval)
        self._rearm()

    # ------------------------------------------------------------ reading backpressure

    @property
    def reading_paused(self) -> bool:
        return bool(self._paused)

    def update_reading(self, buffered: int) -> None:
        """Pause TCP reading above the buffered-bytes limit; resume below half of it."""
        limit = self.options.max_buffered_bytes
        if buffered >= limit:
            self._pause(_BUFFERED)
        elif buffered < limit // 2:
            self._unpause(_BUFFERED)

    def hold_events(self, full: bool) -> None:
        """Pause reading while the session's unread events are over their limit."""
        if full:
            self._pause(_EVENTS)
        else:
            self._unpause(_EVENTS)

    def _pause(self, why: int) -> None:
        transport = self.transport
        if self._paused & why or transport is None or transport.is_closing():
            return
        if not self._paused:
            transport.pause_reading()
            self._paused_check = self.loop.time() + _PAUSED_CHECK
            self._paused |= why
            self._rearm()
            return
        self._paused |= why

    def _unpause(self, why: int) -> None:
        if not self._paused & why:
            return
        self._paused &= ~why
        transport = self.transport
        if not self._paused and transport is not None and not transport.is_closing():
            transport.resume_reading()


def _tcp_keepalive(sock: socket.socket, interval: float) -> None:
    """TCP keepalive: probes after ``interval`` s of silence, three of them a third apart."""
    seconds = max(1, int(interval))
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in (("TCP_KEEPIDLE", seconds), ("TCP_KEEPINTVL", max(1, seconds // 3)),
                            ("TCP_KEEPCNT", 3)):  # fmt: skip
            option = getattr(socket, name, None)
            if option is not None:
                sock.setsockopt(socket.IPPROTO_TCP, option, value)
