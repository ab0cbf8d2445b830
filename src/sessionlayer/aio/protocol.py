"""The glue between asyncio and the sans-I/O cores.

``SessionProtocol`` is an :class:`asyncio.Protocol`: bytes from TCP go into
the RFC 1006 connection, whole TSDUs into the session machine, and the
machine's indications out to a :class:`~sessionlayer.aio.session.Session`.
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
from .framing import PlainReader, frame_data
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
_NO_FRAMES: list[bytes] = []  # shared and never appended to (see write_data)


class SessionProtocol(asyncio.Protocol):
    """One TCP connection carrying one session."""

    # Slots: a server holds one of these per live session (idle sessions' memory).
    __slots__ = (
        "_last_heard",
        "_live_timer",
        "_machine_timer",
        "_on_connect_indication",
        "_on_transport_up",
        "_out",
        "_out_armed",
        "_out_size",
        "_probe_sent",
        "_reader",
        "_reading_paused",
        "_tpdu_size",
        "_tsaps",
        "_writable",
        "bytes_in",
        "bytes_out",
        "closed",
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
        self.closed = Signal()  #: set when the TCP connection is gone
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
        self._last_heard = self.loop.time()
        self._probe_sent = False
        self._writable = Signal(True)
        self._reading_paused = False
        self._reader = PlainReader(options.max_tsdu_size)
        self._out: list[bytes] = _NO_FRAMES  # frames held back to share one write (write_data)
        self._out_size = 0
        self._out_armed = False  # a flush is scheduled for this loop iteration
        #: ``machine.plain_data`` as of the last time the machine was driven (the fast path).
        self.plain = False
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
        self.peer = transport.get_extra_info("peername")
        transport.set_write_buffer_limits(high=self.options.write_buffer_high)
        if self.machine.role == "initiator":
            calling, called = self._tsaps
            self._write(self.rfc.connect(calling, called, tpdu_size=self.options.tpdu_size))
        self._arm_liveness()

    def data_received(self, data: bytes) -> None:
        if self.tap is not None:
            self.tap("in", data)
        self.bytes_in += len(data)
        self._last_heard = self.loop.time()
        self._probe_sent = False
        session = self.session
        if self.plain and session is not None and self.rfc.idle:
            messages: list[bytes] = []
            try:
                data = self._reader.feed(data, messages)
            except DecodeError as exc:
                session._deliver(messages)
                self._fail(f"transport protocol error: {exc}", exc.reason, abort_spdu=b"")
                self._dispatch()
                return
            if messages:
                session._deliver(messages)
            if not data:
                return
        elif self._reader.pending:
            data = self._reader.take() + data  # the general path takes over mid-TPDU
        try:
            tevents = self.rfc.receive_data(data)
        except DecodeError as exc:
            self._fail(f"transport protocol error: {exc}", exc.reason, abort_spdu=exc.reflect)
            return
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
        self._writable.set()
        self._out.clear()
        self._cancel_timers()
        self._lost()
        self._dispatch()
        self.closed.set()
        up = self.transport_up
        if up is not None and not up.done():
            up.set_exception(ConnectionError("connection closed"))
            up.exception()  # mark retrieved

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # ------------------------------------------------------------ sending

    async def drain(self) -> None:
        """Wait while the transport's write buffer is above its high-water mark."""
        if not self._writable.is_set():
            await self._writable.wait()  # connection_lost sets it too

    def flush(self) -> None:
        """Write what the machine queued, arm its timer, deliver its events."""
        machine = self.machine
        for tsdu in machine.data_to_send():
            self._write(self.rfc.send_tsdu(tsdu))
        for tsdu in machine.expedited_to_send():
            self._write(self.rfc.send_expedited(tsdu))
        if machine.wants_transport_disconnect and self.transport is not None:
            self.flush_out()
            self.transport.close()
        self._arm_machine_timer()
        self.plain = machine.plain_data
        self._dispatch()

    def write_raw_tsdu(self, tsdu: bytes) -> None:
        """Send a TSDU the machine does not see (keepalive probes)."""
        self._write(self.rfc.send_tsdu(tsdu))

    def write_data(self, data: bytes) -> None:
        """S-DATA on the fast path (only while ``machine.plain_data`` holds).

        The first write of a loop iteration goes straight out; the frames that follow
        in the same iteration are joined into one write when the loop comes round (or
        at 64 KiB), so a burst of small messages costs few system calls while a lone
        request-response exchange waits for nothing.
        """
        frame = frame_data(data, self._tpdu_size)
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.tap is not None:
            self.tap("out", frame)
        self.bytes_out += len(frame)
        if not self._out_armed:
            self._out_armed = True
            self.loop.call_soon(self.flush_out)
            transport.write(frame)
            return
        if self._out is _NO_FRAMES:
            self._out = []
        self._out.append(frame)
        self._out_size += len(frame)
        if self._out_size >= 65536:
            self.flush_out()

    def flush_out(self) -> None:
        """Write the frames ``write_data`` held back."""
        self._out_armed = False
        out = self._out
        if out:
            data = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
            self._out_size = 0
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(data)

    @property
    def write_blocked(self) -> bool:
        """The transport's buffer is above its high-water mark: ``drain()`` would wait."""
        return not self._writable.is_set()

    def _write(self, data: bytes) -> None:
        if self._out:
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

    def _feed(self, method: Callable[[bytes], None], data: bytes) -> None:
        method(data)
        self.flush()
        if self.session is not None:
            # Some SPDUs change the machine without an event (GTA ends STA18).
            self.session._tokens_changed.set()

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
