"""The glue between asyncio and the sans-I/O cores.

``SessionProtocol`` is an :class:`asyncio.BufferedProtocol`: TCP is read into
a :class:`~sessionlayer.aio.framing.PlainReader`, which delivers plain data
itself; anything else goes into the RFC 1006 connection, whole TSDUs into the
session machine, and the machine's indications out to a
:class:`~sessionlayer.aio.session.Session`.
Everything the machine wants sent is written at once.  Timers (the
machine's own, keepalive and idle) are armed on the loop's clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, cast

from ..errors import AbortReason, DecodeError, LocalError
from ..machine import SessionMachine
from ..machine import events as ev
from ..spdu import Abort, encode
from ..transport import (
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
from .framing import PlainReader, frame_data, frame_pieces
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
        "_held",
        "_held_size",
        "_hold_limit",
        "_last_heard",
        "_live_timer",
        "_machine_timer",
        "_on_connect_indication",
        "_on_transport_up",
        "_probe_sent",
        "_reading_paused",
        "_tpdu_size",
        "_tsaps",
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
        tsaps: tuple[bytes | None, bytes | None] = (None, None),
    ) -> None:
        self.machine = machine
        self.options = options
        role: Literal["initiator", "responder"] = (
            "initiator" if machine.role == "initiator" else "responder"
        )
        self.rfc = Rfc1006Connection(
            role, max_tpdu_size=options.tpdu_size, max_tsdu_size=options.max_tsdu_size
        )
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
        self.loop = asyncio.get_running_loop()
        self._machine_timer: asyncio.TimerHandle | None = None
        self._live_timer: asyncio.TimerHandle | None = None
        self._last_heard = 0.0  # loop.time() of the last read, while liveness is watched
        self._probe_sent = False
        #: The transport is above its high-water mark: ``drain()`` waits.
        self.write_paused = False
        self._drained: Signal | None = None  # made when somebody waits in drain()
        self._reading_paused = False
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
        joins = type(transport).writelines is asyncio.WriteTransport.writelines
        self._hold_limit = _HOLD_JOINED if joins else _HOLD_PIECES
        self.peer = transport.get_extra_info("peername")
        transport.set_write_buffer_limits(high=self.options.write_buffer_high)
        if self.machine.role == "initiator":
            calling, called = self._tsaps
            self._write(self.rfc.connect(calling, called, tpdu_size=self.options.tpdu_size))
        self._arm_liveness()

    def buffer_updated(self, nbytes: int) -> None:
        if self.tap is not None:
            self.tap("in", self.peek(nbytes))
        self.bytes_in += nbytes
        if self._live_timer is not None:  # liveness is watched (keepalive or idle timeout)
            self._last_heard = self.loop.time()
            self._probe_sent = False
        # ``plain`` holds only while a session is open on this connection (see flush).
        if self.plain and not self._general:
            message = self.single(nbytes)
            if message is not None:
                self.session._deliver_one(message)  # type: ignore[union-attr]
                return
            messages: list[bytes] = []
            try:
                data = self.parse(nbytes, messages)
            except DecodeError as exc:
                self._fast_failed(messages, exc)
                return
            if len(messages) == 1:
                self.session._deliver_one(messages[0])  # type: ignore[union-attr]
            elif messages:
                self.session._deliver(messages)  # type: ignore[union-attr]
            if not data:
                return
        else:
            data = self.take(nbytes)  # what was held (if anything) and what was read
        self._general_receive(data)

    def _fast_failed(self, messages: list[bytes], exc: DecodeError) -> None:
        """The fast path found a TSDU over the limit: deliver what came before, abort."""
        self.take()  # drop what was held
        if messages:
            self.session._deliver(messages)  # type: ignore[union-attr]
        self._fail(f"transport protocol error: {exc}", exc.reason, abort_spdu=b"")
        self._dispatch()

    def _general_receive(self, data: bytes) -> None:
        """Bytes through the RFC 1006 connection and the machine."""
        try:
            tevents = self.rfc.receive_data(data)
        except DecodeError as exc:
            self._fail(f"transport protocol error: {exc}", exc.reason, abort_spdu=exc.reflect)
            return
        self._general = not self.rfc.idle
        for tev in tevents:
            if isinstance(tev, TsduReceived):
                self._tsdu(tev.data)
            elif isinstance(tev, ConnectRequested):
                self._write(self.rfc.accept())
                self._transport_ready()
            elif isinstance(tev, TransportConnected):
                self._transport_ready()
            elif isinstance(tev, ExpeditedReceived):
                self._feed(self.machine.receive_expedited, tev.data)
            elif isinstance(tev, TransportDisconnected):
                self._lost()
        self._dispatch()

    def connection_lost(self, exc: Exception | None) -> None:
        self.resume_writing()  # nobody waits in drain() for a connection that is gone
        self._held = None
        self.clear()  # a TSDU cut short will not be completed: its buffer can go
        self._cancel_timers()
        self._lost()
        self._dispatch()
        self.is_closed = True
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

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._drained is not None:
            self._drained.set()

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
        for tsdu in machine.data_to_send():
            self._write(self.rfc.send_tsdu(tsdu))
        for tsdu in machine.expedited_to_send():
            self._write(self.rfc.send_expedited(tsdu))
        closing = machine.wants_transport_disconnect and self.transport is not None
        if closing:
            self.flush_out()
            self.transport.close()  # type: ignore[union-attr]
        self._arm_machine_timer()
        # The fast path needs an open session on an open transport (write_data relies on it).
        session = self.session
        self.plain = (
            machine.plain_data and not closing and session is not None and not session.closed
        )
        self._dispatch()

    def write_raw_tsdu(self, tsdu: bytes) -> None:
        """Send a TSDU the machine does not see (keepalive probes)."""
        self._write(self.rfc.send_tsdu(tsdu))

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
        self.machine.transport_connected()
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
            self.session._peer_acted()

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
                self.session._event(event)
            else:
                self._hold([event])

    def _fail(self, message: str, reason: AbortReason, abort_spdu: bytes | None = None) -> None:
        """Provider abort.  With ``abort_spdu`` (the reflect octets, possibly empty) an AB
        with ``reason`` is written first, so the peer learns why (X.225 7.9)."""
        self.plain = False  # no more fast path on a transport that closes
        if self.session is not None:
            self.session.log.warning("session %s (%s): %s", self.session.id, self.peer, message)
        else:
            log.warning("%s: %s", self.peer, message)
        self._hold([ev.ProviderAbortIndication(reason=reason, message=message)])
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if abort_spdu is None or self.rfc.tpdu_size is None:
            transport.abort()
            return
        ab = encode(Abort(transport_disconnect=int(reason), reflect=abort_spdu or None))
        self.flush_out()
        transport.write(encode_tpkt(encode_tpdu(Data(ab))))
        transport.close()  # flushes the AB; a peer that never reads is cut off below
        self.loop.call_later(self.options.release_timeout, transport.abort)

    # ------------------------------------------------------------ timers

    def _arm_machine_timer(self) -> None:
        deadline = self.machine.get_timer()
        if self._machine_timer is not None:
            self._machine_timer.cancel()
            self._machine_timer = None
        if deadline is not None:
            self._machine_timer = self.loop.call_at(deadline, self._machine_timeout)

    def _machine_timeout(self) -> None:
        self._machine_timer = None
        self.machine.handle_timer(self.loop.time())
        self.flush()

    def _arm_liveness(self) -> None:
        opts = self.options
        periods = [p for p in (opts.keepalive_interval, opts.idle_timeout) if p is not None]
        if periods:
            if self._live_timer is None:  # the first time: from now on, reads are timed
                self._last_heard = self.loop.time()
            self._live_timer = self.loop.call_later(min(periods) / 4, self._check_liveness)

    def _check_liveness(self) -> None:
        opts = self.options
        silent = self.loop.time() - self._last_heard
        if opts.idle_timeout is not None and silent >= opts.idle_timeout:
            self._fail(
                f"no traffic from the peer for {silent:.1f} s (idle timeout)",
                AbortReason.TRANSPORT_RELEASED | AbortReason.NO_REASON,
            )
            self._dispatch()
            return
        if (
            self.keepalive
            and opts.keepalive_interval is not None
            and silent >= opts.keepalive_interval
            and not self._probe_sent
        ):
            self._probe_sent = True
            self.write_raw_tsdu(PING)
        self._arm_liveness()

    def _cancel_timers(self) -> None:
        for timer in (self._machine_timer, self._live_timer):
            if timer is not None:
                timer.cancel()
        self._machine_timer = self._live_timer = None

    # ------------------------------------------------------------ reading backpressure

    @property
    def reading_paused(self) -> bool:
        return self._reading_paused

    def update_reading(self, buffered: int) -> None:
        """Pause TCP reading above the buffered-bytes limit; resume below half of it."""
        if self.transport is None:
            return
        limit = self.options.max_buffered_bytes
        if not self._reading_paused and buffered >= limit:
            self._reading_paused = True
            self.transport.pause_reading()
        elif self._reading_paused and buffered < limit // 2:
            self._reading_paused = False
            self.transport.resume_reading()
