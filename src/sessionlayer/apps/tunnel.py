"""A TCP tunnel over sessions: ``sessionlayer tunnel`` and the server's tunnel service.

The client (:class:`TunnelClient`) listens on a local address; every TCP connection it
accepts there becomes a *stream* carried over one resumable session to a
``sessionlayer serve`` (:class:`TunnelService`), which opens a TCP connection to the
target and pumps bytes both ways.  The session layer below makes every S-DATA message
arrive exactly once and in order across lost connections, silent network deaths and a
new client address, so the application's TCP connections never notice: a stream is only
ever reset when one of its two ends resets it, the target cannot be reached, or the
session itself ends for good (see "What ends a stream" in docs/tunnel.md).

One session carries many streams, each S-DATA message one frame::

    type (1 octet) | stream id (4 octets, big-endian) | payload

========  =====================  =================================================
type      payload                meaning
========  =====================  =================================================
``O``     target, UTF-8          (client) open a stream to ``HOST:PORT`` (empty: the
                                 server's only allowed target)
``K``     --                     (server) the target accepted the connection
``D``     octets                 data; at most the credit the receiver granted
``W``     increment, 4 octets    the receiver grants this much more credit
``E``     --                     end of data this way (half-close: TCP FIN)
``R``     reason, UTF-8          reset: the stream is gone (TCP RST), both ways
``B``     --                     the sender has data and no credit left (only when
                                 both ends agreed ``tunnel_flow: auto`` at connect)
========  =====================  =================================================

Flow control is per stream and credit based: each direction of a stream starts with
``INITIAL_WINDOW`` octets of credit; the receiver grants more (``W``) as it hands data
to its local TCP connection and the kernel takes it, so one slow reader holds at most its
window on each side and never stalls the other streams.  A receiver that wants a larger
window grants the difference when the stream opens.  Frames of one stream keep their
order (the session keeps every message's); the sender serves the streams with data and
credit round robin, control frames first.

Windows grow where the link needs it (``tunnel_flow: auto``, agreed at connect: a peer
that does not know it gets fixed windows and never sees ``B``).  A stream moves at most one
window per round trip, so a long link wants more than the default.  A sender that runs out
of credit with data still to send says so once (``B``); the receiver then doubles that
stream's window, up to ``max_window``, if its own local socket takes the data as fast as it
comes (a slow local reader is the bottleneck then, not the window: no growth).  What the
windows of one session grow by in all is bounded by ``window_budget``.

Memory is bounded: per stream its window of received data not yet taken by the local
socket, plus ``LOCAL_HIGH`` octets read from the local socket and not yet sent (reading
from it pauses there); at most ``max_streams`` streams per session; the windows' growth,
at most ``window_budget`` per session.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from ..aio import ConnectRequest, Options, Refuse, Session, connect
from ..aio.listening import PlainServer, serve_plain
from ..aio.sockets import host_port, split_host_port, unreachable
from ..errors import (
    CheckpointRestored,
    ConnectRefused,
    SessionAborted,
    SessionClosed,
    SessionLayerError,
)
from ..recovery import Interrupted, Resumed

__all__ = [
    "SERVICE",
    "FLOW",
    "AUTO",
    "SUPPORTED",
    "INITIAL_WINDOW",
    "WINDOW",
    "MAX_AUTO_WINDOW",
    "WINDOW_BUDGET",
    "MAX_FRAME",
    "MAX_WINDOW",
    "TunnelClient",
    "TunnelService",
    "TunnelStats",
    "TunnelError",
    "parse_target",
    "parse_targets",
]

log = logging.getLogger("sessionlayer")

SERVICE = "tunnel"  #: the application parameter ``service`` that selects the tunnel
INITIAL_WINDOW = 256 * 1024  #: each direction of a new stream starts with this credit
WINDOW = 1 << 20  #: the credit a receiver gives each stream by default (granted at open)
#: The largest window (``W`` carries a credit in 4 octets; what one grant may add is less
#: than the window, so no grant can overflow it)
MAX_WINDOW = (1 << 32) - 1
#: A stream's window may grow to this by default (``max_window``): 16 MiB moves about
#: 160 MB/s over a 100 ms round trip
MAX_AUTO_WINDOW = 16 << 20
#: What the windows of one session may grow by, in all (``window_budget``)
WINDOW_BUDGET = 64 << 20
#: The application parameter that agrees on growing windows (the ``B`` frame); its value
FLOW, AUTO = "tunnel_flow", "auto"
#: ``serve(supported=...)`` for a server hosting :class:`TunnelService` alone
SUPPORTED: dict[str, list[str]] = {"service": [SERVICE], FLOW: [AUTO]}
MAX_FRAME = 64 * 1024  #: the largest payload of one data frame
LOCAL_HIGH = 128 * 1024  #: read from a local socket and not yet sent: reading pauses here
MAX_STREAMS = 256  #: streams at once per session (default)
CONNECT_TIMEOUT = 10.0  #: (server) connecting to a target
#: After a session's release, a stream that had ended both ways has this long for its local
#: socket to write what it still holds (then it is reset)
DRAIN_TIMEOUT = 60.0
#: (client) ``close()``: a half-closed connection has this long to end before it is reset
CLOSE_GRACE = 5.0
#: (client) connections reset because ``max_streams`` are open: logged at most this often
REFUSALS_LOGGED_EVERY = 10.0

_HEAD = struct.Struct(">cI")
_HEAD_SIZE = _HEAD.size
_U32 = struct.Struct(">I")
_OPEN, _OPENED, _DATA, _WINDOW, _EOF, _RESET = b"O", b"K", b"D", b"W", b"E", b"R"
_BLOCKED = b"B"
_LINGER_ZERO = struct.pack("ii", 1, 0)


class TunnelError(SessionLayerError):
    """The tunnel cannot be set up (the server refused it, is not there, ...): one line."""


def parse_target(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[v6]:PORT`` -> (host, port); ValueError if malformed (an IPv6
    address not in brackets too)."""
    text = text.strip()
    # (an IPv6 address not in brackets is refused: "2001:db8::22" split at its last colon
    # was the target ("2001:db8:", 22), and "::1:8080" either address)
    host, port = split_host_port(text, what="HOST:PORT", port_optional=False)
    # (ASCII digits: "²" and "٣" are str.isdigit() too, and int() took the second)
    if not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ValueError(f"not HOST:PORT: {text!r}")
    return host, int(port)


def parse_targets(text: str) -> list[tuple[str, int]]:
    """``HOST:PORT,HOST:PORT,...`` (an ``--allow-tunnel`` list); ValueError if an entry
    is malformed or empty (``h:22,`` has a comma too many)."""
    parts = text.split(",")
    if any(not part.strip() for part in parts):
        raise ValueError(f"an empty entry in {text!r}")
    return [parse_target(part) for part in parts]


def _check_window(window: int, name: str = "window") -> int:
    """``window`` if it is one (an int, at most :data:`MAX_WINDOW`), else ValueError."""
    if type(window) is not int or window > MAX_WINDOW:
        raise ValueError(f"{name} must be an int of at most {MAX_WINDOW} octets (its credit"
                         f" is carried in 4 octets), not {window!r}")  # fmt: skip
    return window


def _check_budget(budget: int) -> int:
    """``budget`` if it is one (an int, 0 or more: 0 is no growth), else ValueError."""
    if type(budget) is not int or budget < 0:
        raise ValueError(f"window_budget must be an int of 0 or more octets, not {budget!r}")
    return budget


def _show(target: tuple[str, int]) -> str:
    return host_port(*target)


@dataclass
class TunnelStats:
    """Counters of one tunnel end (a client, a service, or one session of either)."""

    streams: int = 0  #: open now
    opened: int = 0  #: opened in all
    #: refused (by the server, or by the client at ``max_streams`` or out of file
    #: descriptors), or the target could not be reached
    failed: int = 0
    resets: int = 0  #: ended by a reset (either end) rather than by EOF both ways
    bytes_sent: int = 0  #: read from local sockets and carried to the peer
    bytes_received: int = 0  #: carried from the peer and handed to local sockets
    interruptions: int = 0  #: lost connections under the session(s), resumed or not
    sessions: int = 0  #: sessions opened (client) or served (service)
    #: times a stream toward the peer ran out of credit with data left (a ``B`` sent)
    blocked: int = 0
    #: times the peer said a stream had data and no credit (``B``): its window was too
    #: small for the link, or the local socket was slow to take what came
    peer_blocked: int = 0
    window_grows: int = 0  #: times a stream's window toward this end was made larger
    largest_window: int = 0  #: the largest window a stream toward this end had

    def add(self, other: TunnelStats) -> None:
        for name in ("opened", "failed", "resets", "bytes_sent", "bytes_received",
                     "interruptions", "sessions", "blocked", "peer_blocked",
                     "window_grows"):  # fmt: skip
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.largest_window = max(self.largest_window, other.largest_window)

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


# ---------------------------------------------------------------------------- one stream


class _Stream(asyncio.Protocol):
    """One tunnelled TCP connection: the protocol of its local socket (the accepted
    connection on the client, the connection to the target on the server) and the
    state of its stream in the session."""

    def __init__(self, mux: _Mux | None, sid: int = 0) -> None:
        self.mux = mux
        self.id = sid
        self.transport: asyncio.Transport | None = None
        # local -> peer
        self.outbuf: collections.deque[bytes | memoryview] = collections.deque()
        self.outbytes = 0
        self.credit = INITIAL_WINDOW  # what we may still send
        self.blocked = False  # a B went out since the last W (out of credit, data left)
        self.local_eof = False  # the local socket sent FIN
        self.eof_sent = False
        self.reading_paused = False
        self.queued = False  # in the mux's ready queue
        # peer -> local
        self.window = INITIAL_WINDOW  # what the peer may still send us
        self.limit = INITIAL_WINDOW  # the window we give: granted back as data leaves
        self.ungranted = 0  # consumed by the local socket, not yet granted back
        self.unflushed = 0  # handed to the local transport, not yet taken by the kernel
        self.write_paused = False
        self.peer_eof = False
        self.opened = False  # (client) the server said the target accepted (K)
        self.pending: list[bytes] | None = None  # (server) data before the target answered
        self.gone = False  # reset, or closed: nothing more either way
        self.connect_task: asyncio.Task[None] | None = None
        self.target = ""
        #: (client) its OPEN frame, while it may still wait in the control queue
        self.open_frame: bytes | None = None
        #: (client) told of the stream's events while it has no session yet
        self.on_unattached: Callable[[_Stream], None] | None = None

    # ------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports are not asyncio.Transport subclasses: no isinstance here)
        self.transport = transport = cast(asyncio.Transport, transport)
        # Told at once when anything waits in the buffer, and when it is empty again:
        # credit goes back to the peer as the kernel takes the data.
        transport.set_write_buffer_limits(high=0)
        if self.mux is not None:
            self.mux.local_connected(self)
        elif self.on_unattached is not None:  # (client) accepted: the tunnel attaches it
            self.on_unattached(self)

    def data_received(self, data: bytes) -> None:
        if self.gone or self.local_eof:
            return
        self.outbuf.append(data)
        self.outbytes += len(data)
        if self.outbytes >= LOCAL_HIGH and not self.reading_paused and self.transport:
            self.reading_paused = True
            self.transport.pause_reading()
        if self.mux is not None:
            self.mux.ready(self)

    def eof_received(self) -> bool:
        self.local_eof = True
        if self.mux is not None and not self.gone:
            self.mux.ready(self)
        return True  # half-close: the other direction stays open

    def connection_lost(self, exc: Exception | None) -> None:
        transport, self.transport = self.transport, None
        if transport is not None and self.mux is not None:
            self.mux.local_lost(self, exc)
        elif self.on_unattached is not None:
            self.on_unattached(self)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.mux is not None and self.unflushed:
            n, self.unflushed = self.unflushed, 0
            self.mux.consumed(self, n)

    # ------------------------------------------------------------ helpers

    def take(self, limit: int) -> bytes | memoryview:
        """Up to ``limit`` octets of what was read locally (the oldest first; a long read
        is cut in views, not copied)."""
        first = self.outbuf[0]
        if len(first) <= limit:
            self.outbuf.popleft()
        else:
            view = first if isinstance(first, memoryview) else memoryview(first)
            self.outbuf[0] = view[limit:]
            first = view[:limit]
        self.outbytes -= len(first)
        if self.reading_paused and self.outbytes < LOCAL_HIGH // 2 and self.transport:
            self.reading_paused = False
            self.transport.resume_reading()
        return first

    def reset_local(self) -> None:
        """RST the local socket (SO_LINGER 0, then abort): also one that is closing after
        its EOF, so that a stream cut short never looks like one that ended."""
        transport = self.transport
        if transport is None:
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
        transport.abort()


# ---------------------------------------------------------------------------- the multiplexer


class _Mux:
    """The streams of one session, both roles.  ``run()`` reads the session until it
    ends; one sender task writes every frame (the reader never waits on a send, so two
    tunnel ends can never wait on each other)."""

    def __init__(self, session: Session, role: str, *, window: int = WINDOW,
                 max_window: int = MAX_AUTO_WINDOW, window_budget: int = WINDOW_BUDGET,
                 max_streams: int = MAX_STREAMS, drain_timeout: float = DRAIN_TIMEOUT,
                 service: TunnelService | None = None) -> None:  # fmt: skip
        self.session = session
        self.drain_timeout = drain_timeout
        self.role = role
        self.window = min(max(window, INITIAL_WINDOW), MAX_WINDOW)
        self.max_window = min(max(max_window, self.window), MAX_WINDOW)
        self.window_budget = window_budget
        self.grown = 0  # what the windows of the streams open now grew by, in all
        #: Windows grow (and ``B`` goes out) only when both ends agreed at connect
        self.auto = session.chosen.get(FLOW) == AUTO
        self.max_streams = max_streams
        self.service = service
        self.streams: dict[int, _Stream] = {}
        self.stats = TunnelStats(sessions=1)
        self.next_id = 1
        self.highest = 0  # (server) the highest stream id opened so far
        self.over = False
        self.why = ""
        self._control: collections.deque[bytes] = collections.deque()
        self._grants: dict[int, int] = {}
        self._ready: collections.deque[_Stream] = collections.deque()
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        #: (server) the control frames a peer may make it queue (every one it queues
        #: answers the peer's frames); the client's own are bounded otherwise (_reset)
        self._control_limit = 4 * max_streams + 64
        self.idle = asyncio.Event()  #: set while there is no stream
        self.idle.set()
        self._release: asyncio.Future[None] | None = None

    # ------------------------------------------------------------ lifetime

    async def run(self) -> None:
        """Serve the session until it ends; then every stream still open is reset.  After
        a release, a stream that had ended both ways is not: its local socket writes what
        it still holds, then closes (within ``drain_timeout``, else it is reset)."""
        sender = asyncio.ensure_future(self._send_loop())
        events = asyncio.ensure_future(self._events())
        sender.add_done_callback(self._sender_done)
        released = False
        try:
            await self._read_loop()  # (it ends at the release)
            released = True
        except SessionClosed:
            released = True
            self.why = self.why or "the tunnel session was released"
        except CheckpointRestored:
            self.why = ("the server lost the tunnel's state (it was restarted): its"
                        " tunnelled connections are reset")  # fmt: skip
            self.session.abort()
        except SessionAborted as exc:
            self.why = self.why or f"the tunnel session ended: {exc}"
        finally:
            # Everything that must happen is done before the first await: the handler may
            # be cancelled there (a server closing).
            self.over = True
            tasks = [sender, events, *self._tasks]
            for task in tasks:
                task.cancel()
            self._end_all(self.why or "the session ended", drain=released)
            try:
                await asyncio.gather(*tasks, return_exceptions=True)
                if self.streams:  # (ended both ways: connection_lost drops each)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.drain_timeout):
                            await self.idle.wait()
            finally:  # (also when cancelled meanwhile: a server stopping)
                self._end_all("released before their local sockets wrote all they held"
                              if released else self.why or "the session ended")  # fmt: skip
                self.idle.set()

    async def release(self) -> None:
        """Release the session (once, whoever asks: the callers share one release).  Its
        end, and why, is what ``run()`` sees."""
        if self._release is None:
            self._release = asyncio.ensure_future(self._released())
        await asyncio.shield(self._release)

    async def _released(self) -> None:
        if not self.session.closed:
            with contextlib.suppress(SessionLayerError, TimeoutError):
                await self.session.release()

    def _sender_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None or isinstance(exc, SessionLayerError):
            return  # (the reader learns the session's end too)
        self.session.log.error("tunnel sender of session %s failed", self.session.id,
                               exc_info=exc)  # fmt: skip
        self.why = f"internal error: {exc!r}"
        self.session.abort()

    def _end_all(self, why: str, *, drain: bool = False) -> None:
        """The session is over: reset every stream, but (``drain``: at its release) those
        that ended both ways: their local sockets close once they wrote what they hold,
        so that every octet the peer sent, and the session acknowledged, is delivered."""
        ending = [stream for stream in self.streams.values()
                  if not (drain and stream.eof_sent and stream.peer_eof
                          and stream.transport is not None)]  # fmt: skip
        for stream in ending:
            self._drop(stream, reset=True)
        if ending:
            self.session.log.info("session %s: %s; %d tunnelled connections reset",
                                  self.session.id, why, len(ending))  # fmt: skip

    async def _events(self) -> None:
        """Read ``events()`` (so they never pile up), counting the interruptions."""
        async for event in self.session.events():
            if isinstance(event, Interrupted):
                self.stats.interruptions += 1
            elif isinstance(event, Resumed) and event.outcome == "resumed":
                self.session.log.info("session %s: tunnel resumed after %.3f s (%d streams)",
                                      self.session.id, event.downtime, len(self.streams))

    async def _read_loop(self) -> None:
        handle = self._handle
        async for message in self.session:
            handle(message)

    # ------------------------------------------------------------ sending

    async def _send_loop(self) -> None:
        send = self.session.send
        wake = self._wake
        while True:
            frame = self._next_frame()
            if frame is None:
                wake.clear()
                await wake.wait()
                continue
            await send(frame)

    def _wakeup(self) -> None:
        if not self._wake.is_set():
            self._wake.set()

    def _queue_control(self, frame: bytes) -> None:
        if self.role == "server" and len(self._control) >= self._control_limit:
            # (a peer that opens and resets streams faster than it reads our answers)
            self.why = "the peer floods the tunnel with control frames"
            self.session.abort()
            return
        self._control.append(frame)
        self._wakeup()

    def ready(self, stream: _Stream) -> None:
        """The stream may have something to send (data with credit, or its EOF)."""
        if not stream.queued and stream.id in self.streams:
            stream.queued = True
            self._ready.append(stream)
            self._wakeup()

    def _next_frame(self) -> bytes | None:
        if self._control:
            return self._control.popleft()
        if self._grants:
            sid, n = self._grants.popitem()
            return _HEAD.pack(_WINDOW, sid) + _U32.pack(n)
        ready = self._ready
        while ready:
            stream = ready.popleft()
            stream.queued = False
            if stream.gone or stream.eof_sent:
                continue
            if stream.outbytes and stream.credit > 0:
                payload = stream.take(min(stream.credit, MAX_FRAME))
                n = len(payload)
                stream.credit -= n
                self.stats.bytes_sent += n
                if not stream.credit and stream.outbytes and self.auto and not stream.blocked:
                    stream.blocked = True  # (once until the next W: at most one per stream)
                    self.stats.blocked += 1
                    self._control.append(_HEAD.pack(_BLOCKED, stream.id))
                if (stream.outbytes and stream.credit > 0) or (
                    not stream.outbytes and stream.local_eof
                ):
                    stream.queued = True
                    ready.append(stream)
                return _HEAD.pack(_DATA, stream.id) + payload
            if not stream.outbytes and stream.local_eof:
                stream.eof_sent = True
                self._maybe_finish(stream)
                return _HEAD.pack(_EOF, stream.id)
        return None

    # ------------------------------------------------------------ receiving

    def _handle(self, message: bytes) -> None:
        if len(message) < _HEAD_SIZE:
            self._violation("a tunnel frame shorter than its header")
            return
        kind, sid = _HEAD.unpack_from(message)
        stream = self.streams.get(sid)
        if kind == _DATA:
            if stream is None or stream.peer_eof:
                return  # (a stream reset meanwhile; data after EOF is dropped)
            payload = memoryview(message)[_HEAD_SIZE:]
            n = len(payload)
            if n > stream.window:
                self._reset(stream, "the peer sent more than its credit")
                return
            stream.window -= n
            self.stats.bytes_received += n
            transport = stream.transport
            if transport is None:
                if stream.pending is not None:  # (server) the target is not connected yet
                    stream.pending.append(bytes(payload))
                return
            if transport.is_closing():
                return  # (reset or closed locally: connection_lost drops the stream next)
            transport.write(payload)
            if stream.write_paused:
                stream.unflushed += n
            else:
                self.consumed(stream, n)
        elif kind == _WINDOW:
            if stream is None or len(message) != _HEAD_SIZE + 4:
                return
            stream.credit += _U32.unpack_from(message, _HEAD_SIZE)[0]
            stream.blocked = False
            if stream.outbytes or stream.local_eof:
                self.ready(stream)
        elif kind == _BLOCKED:
            if stream is not None and len(message) == _HEAD_SIZE:
                self.stats.peer_blocked += 1
                self._blocked(stream)
        elif kind == _EOF:
            if stream is None or stream.peer_eof:
                return
            stream.peer_eof = True
            transport = stream.transport
            if transport is not None and self._write_eof(stream, transport):
                self._maybe_finish(stream)
        elif kind == _RESET:
            if stream is not None:
                reason = bytes(message[_HEAD_SIZE:]).decode("utf-8", "replace")
                if not stream.opened and self.role == "client":
                    self.stats.failed += 1
                    self.session.log.info("session %s: stream %d refused: %r",  # (repr: the
                                          self.session.id, sid, reason[:200])  # peer's words)
                self._drop(stream, reset=True)
        elif kind == _OPENED:
            if stream is not None:
                stream.opened = True
        elif kind == _OPEN and self.role == "server":
            self._open_remote(sid, bytes(message[_HEAD_SIZE:]).decode("utf-8", "replace"))
        else:
            self._violation(f"an unknown tunnel frame type {kind!r}")

    def consumed(self, stream: _Stream, n: int) -> None:
        """The local socket took ``n`` octets: grant them back (in steps of a quarter of
        the stream's window)."""
        stream.ungranted += n
        if stream.ungranted >= stream.limit >> 2 and not stream.peer_eof and not stream.gone:
            self._grant(stream, stream.ungranted)
            stream.ungranted = 0

    def _blocked(self, stream: _Stream) -> None:
        """The peer has data for ``stream`` and no credit: double its window (within
        ``max_window`` and what is left of ``window_budget``), unless the local socket is
        what holds the data up (its kernel buffer full, or the target not connected yet)."""
        if (not self.auto or stream.gone or stream.peer_eof or stream.transport is None
                or stream.write_paused or stream.unflushed):  # fmt: skip
            return
        extra = min(stream.limit, self.max_window - stream.limit,
                    self.window_budget - self.grown)  # fmt: skip
        if extra <= 0:
            return
        stream.limit += extra
        self.grown += extra
        self.stats.window_grows += 1
        self.stats.largest_window = max(self.stats.largest_window, stream.limit)
        self._grant(stream, extra)

    def _grant(self, stream: _Stream, n: int) -> None:
        stream.window += n
        self._grants[stream.id] = self._grants.get(stream.id, 0) + n
        self._wakeup()

    def _violation(self, what: str) -> None:
        self.why = f"protocol error: {what}"
        self.session.log.warning("session %s: tunnel %s; aborting", self.session.id,
                                 self.why)  # fmt: skip
        self.session.abort()

    # ------------------------------------------------------------ streams

    def add_local(self, stream: _Stream) -> bool:
        """(Client) A local connection becomes a stream of this session: OPEN, then its
        data.  False when the session is over or full."""
        if self.over or len(self.streams) >= self.max_streams:
            return False
        stream.mux = self
        stream.id = self.next_id
        self.next_id += 1
        self.streams[stream.id] = stream
        self.idle.clear()
        self.stats.opened += 1
        self.stats.streams = len(self.streams)
        stream.open_frame = _HEAD.pack(_OPEN, stream.id) + self.target_text.encode()
        self._queue_control(stream.open_frame)
        self._opened(stream)
        if stream.outbytes or stream.local_eof:
            self.ready(stream)
        return True

    target_text = ""  #: (client) what OPEN asks for

    def _opened(self, stream: _Stream) -> None:
        stream.limit = self.window
        self.stats.largest_window = max(self.stats.largest_window, self.window)
        if self.window > INITIAL_WINDOW:  # a larger window than the protocol's start
            self._grant(stream, self.window - INITIAL_WINDOW)

    def _open_remote(self, sid: int, target: str) -> None:
        """(Server) OPEN: check the target, then connect to it in a task."""
        if sid <= self.highest or sid in self.streams:
            self._violation(f"stream {sid} opened twice")
            return
        self.highest = sid
        service = self.service
        assert service is not None
        try:
            host, port = service.resolve(target)
        except Refuse as exc:
            self.stats.failed += 1
            self.session.log.info("session %s: tunnel to %r refused: %s", self.session.id,
                                  target[:200], exc.message[:400])  # (a target may be 1 MiB)
            self._queue_control(_HEAD.pack(_RESET, sid) + exc.message.encode()[:200])
            return
        if len(self.streams) >= self.max_streams:
            self.stats.failed += 1
            self._queue_control(_HEAD.pack(_RESET, sid)
                                + b"too many tunnelled connections on this session")
            return
        stream = _Stream(self, sid)
        stream.pending = []
        stream.target = _show((host, port))
        self.streams[sid] = stream
        self.idle.clear()
        self.stats.opened += 1
        self.stats.streams = len(self.streams)
        self._opened(stream)
        task = asyncio.ensure_future(self._connect(stream, host, port, service.connect_timeout))
        stream.connect_task = task
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            self.session.log.error("tunnel of session %s: a connect failed", self.session.id,
                                   exc_info=exc)  # fmt: skip

    async def _connect(self, stream: _Stream, host: str, port: int, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                await loop.create_connection(lambda: stream, host, port)
        except (OSError, TimeoutError) as exc:
            why = f"cannot reach {stream.target}: {unreachable(exc)}"
            self.stats.failed += 1
            self.session.log.info("session %s: %s", self.session.id, why)
            if not stream.gone:
                self._reset(stream, why)
        finally:
            stream.connect_task = None

    def local_connected(self, stream: _Stream) -> None:
        """(Server) The target accepted: OPENED, then what came meanwhile."""
        if stream.gone:
            stream.reset_local()
            return
        self._queue_control(_HEAD.pack(_OPENED, stream.id))
        pending, stream.pending = stream.pending or [], None
        transport = stream.transport
        assert transport is not None
        for data in pending:
            transport.write(data)
        n = sum(map(len, pending))
        if n:
            if stream.write_paused:
                stream.unflushed += n
            else:
                self.consumed(stream, n)
        if stream.peer_eof and self._write_eof(stream, transport):
            self._maybe_finish(stream)

    def _write_eof(self, stream: _Stream, transport: asyncio.Transport) -> bool:
        """The peer's FIN to the local socket, after what it still buffers; False when the
        socket was reset meanwhile (shutdown() fails with ENOTCONN or EPIPE where nothing
        read it since its own EOF): that stream is reset, and only that one."""
        if not transport.can_write_eof():
            return True
        try:
            transport.write_eof()
        except OSError:
            self._reset(stream, "connection reset")
            return False
        return True

    def local_lost(self, stream: _Stream, exc: Exception | None) -> None:
        """The local socket is closed: clean when both ways ended, else a reset."""
        if stream.gone:
            return
        if stream.eof_sent and stream.peer_eof and exc is None:
            self._drop(stream, reset=False)
            return
        self._reset(stream, "connection reset" if exc is not None else "connection closed")

    def _maybe_finish(self, stream: _Stream) -> None:
        """EOF both ways: close the local socket once it has written what it holds."""
        if stream.eof_sent and stream.peer_eof and stream.transport is not None:
            stream.transport.close()  # connection_lost(None) drops the stream

    def reset(self, stream: _Stream, why: str) -> None:
        """Reset ``stream`` (an R to the peer, an RST to its local socket)."""
        self._reset(stream, why)

    def _reset(self, stream: _Stream, why: str) -> None:
        """Reset the stream: RST to the local socket, R to the peer.

        (Client) A stream whose OPEN still waits in the control queue (the link is down,
        the journal full) was never heard of by the peer: the OPEN is taken back and no R
        is sent.  So the client's own control frames stay bounded whatever its local
        applications do: OPENs of the streams open now, and an R for each stream whose
        OPEN went out before the oldest R waiting (all of them open at once when it was
        queued: at most ``max_streams``)."""
        if stream.gone:
            return
        opening, stream.open_frame = stream.open_frame, None
        if opening is not None:
            try:
                self._control.remove(opening)
            except ValueError:
                opening = None  # (sent, or being sent: the peer knows the stream)
        if opening is None:
            self._queue_control(_HEAD.pack(_RESET, stream.id) + why.encode()[:200])
        self._drop(stream, reset=True)

    def _drop(self, stream: _Stream, *, reset: bool) -> None:
        if stream.gone:
            return
        stream.gone = True
        stream.outbuf.clear()
        stream.outbytes = 0
        stream.pending = None
        self.grown -= max(0, stream.limit - self.window)  # (its growth, if any)
        self.streams.pop(stream.id, None)
        self._grants.pop(stream.id, None)
        self.stats.streams = len(self.streams)
        if reset:
            self.stats.resets += 1
            stream.reset_local()
        elif stream.transport is not None:
            stream.transport.close()
        if stream.connect_task is not None:
            stream.connect_task.cancel()
        if not self.streams:
            self.idle.set()


# ---------------------------------------------------------------------------- the server


class TunnelService:
    """The server side: each tunnel session's streams connect to the allowed targets.

    ``allow`` lists the ``(host, port)`` targets a client may open (exact matches; the
    host as written here is what is connected to).  A stream that names no target goes to
    the only one when there is exactly one.  ``window`` (at least ``INITIAL_WINDOW``, at
    most ``MAX_WINDOW``: ValueError) is the credit each stream's direction toward the
    target gets at first; with a client that agreed (``tunnel_flow: auto``: serve with
    ``supported`` including :data:`SUPPORTED`) it grows up to ``max_window`` (no growth
    when it is not above ``window``) while the session's windows grew by less than
    ``window_budget`` in all.  ``max_streams`` bounds the streams of one session;
    ``connect_timeout`` bounds reaching a target.  When a session is released, a stream
    that had ended both ways keeps its target connection until it has written everything
    the client sent (the session acknowledged it), at most ``drain_timeout`` seconds: then
    that connection is reset (RST), never closed as if it were complete.
    """

    def __init__(self, allow: Iterable[tuple[str, int]], *, window: int = WINDOW,
                 max_window: int = MAX_AUTO_WINDOW, window_budget: int = WINDOW_BUDGET,
                 max_streams: int = MAX_STREAMS, connect_timeout: float = CONNECT_TIMEOUT,
                 drain_timeout: float = DRAIN_TIMEOUT) -> None:  # fmt: skip
        self.allow = [(host, int(port)) for host, port in allow]
        self._allowed = {(host.lower(), port): (host, port) for host, port in self.allow}
        self.window = _check_window(window)
        self.max_window = _check_window(max_window, "max_window")
        self.window_budget = _check_budget(window_budget)
        self.max_streams = max_streams
        self.connect_timeout = connect_timeout
        self.drain_timeout = drain_timeout
        self.ended = TunnelStats()  #: the sessions that have ended, added up
        self.muxes: dict[str, _Mux] = {}

    def check(self, request: ConnectRequest) -> bool:
        """Refuse (an RF with the reason) a tunnel session this server cannot serve; True
        otherwise (an ``authenticate`` callback as it is)."""
        if not self.allow:
            raise Refuse("this server allows no tunnel (sessionlayer serve --allow-tunnel)")
        # A TunnelClient names its target at connect (none: the only one), so that one this
        # server does not serve is refused there, not at each connection it carries.
        try:
            target = (request.data or b"").decode("utf-8")
        except UnicodeDecodeError:
            raise Refuse("the tunnel target named at connect is not UTF-8") from None
        self.resolve(target)
        return True

    def resolve(self, target: str) -> tuple[str, int]:
        """The allowed target ``target`` names; :class:`Refuse` if none."""
        if not target:
            if len(self.allow) == 1:
                return self.allow[0]
            raise Refuse("no target given (--to), and this server allows several")
        try:
            host, port = parse_target(target)
        except ValueError as exc:
            raise Refuse(str(exc)) from None
        found = self._allowed.get((host.lower(), port))
        if found is None:
            raise Refuse(f"{target!r} is not an allowed tunnel target")
        return found

    async def handle(self, session: Session) -> None:
        """Serve one tunnel session until it ends."""
        mux = _Mux(session, "server", window=self.window, max_window=self.max_window,
                   window_budget=self.window_budget, max_streams=self.max_streams,
                   drain_timeout=self.drain_timeout, service=self)  # fmt: skip
        self.muxes[session.id] = mux
        try:
            await mux.run()
        finally:
            self.muxes.pop(session.id, None)
            mux.stats.streams = 0
            self.ended.add(mux.stats)

    @property
    def stats(self) -> TunnelStats:
        """Totals over every session, the live ones included."""
        total = TunnelStats()
        total.add(self.ended)
        for mux in self.muxes.values():
            total.add(mux.stats)
            total.streams += len(mux.streams)
        return total

    def progress(self, session_id: str) -> dict[str, Any] | None:
        """What ``/sessions`` shows of a tunnel session (None: not one)."""
        mux = self.muxes.get(session_id)
        if mux is None:
            return None
        s = mux.stats
        return {"service": SERVICE, "streams": len(mux.streams), "opened": s.opened,
                "failed": s.failed, "resets": s.resets, "to_target": s.bytes_received,
                "from_target": s.bytes_sent,
                "targets": sorted({st.target for st in mux.streams.values()})}  # fmt: skip


# ---------------------------------------------------------------------------- the client


class TunnelClient:
    """The client side: listens locally and carries each accepted connection to the
    server at ``host:port`` and on to ``target`` (None: the server's only target).

    ``shared=True`` (the default) carries every connection over one session, opened at
    :meth:`start` and again when one ends for good (a server restart, or an outage past
    ``options.backoff.give_up``); ``shared=False`` opens a session per connection.
    ``window``, ``max_window`` and ``window_budget`` are as :class:`TunnelService`'s, for
    the streams' direction toward the local connections (ValueError past ``MAX_WINDOW``;
    windows grow only with a server that agreed, ``tunnel_flow: auto``); a local
    connection made while ``max_streams`` are open (in either mode: with ``shared=False``
    that many sessions) is reset, counted in ``failed`` and logged (a WARNING at most every
    ``REFUSALS_LOGGED_EVERY`` seconds, with the count).  The other arguments are
    :func:`sessionlayer.connect`'s.
    """

    def __init__(self, host: str, port: int, target: str | None = None, *,
                 tls: Any = None, server_hostname: str | None = None,
                 credentials: dict[str, str] | None = None, options: Options | None = None,
                 window: int = WINDOW, max_window: int = MAX_AUTO_WINDOW,
                 window_budget: int = WINDOW_BUDGET, max_streams: int = MAX_STREAMS,
                 shared: bool = True,
                 addresses: Sequence[tuple[str, int]] = ()) -> None:  # fmt: skip
        if target:
            parse_target(target)  # (ValueError early)
        _check_window(window)
        self.max_window = _check_window(max_window, "max_window")
        self.window_budget = _check_budget(window_budget)
        self.host = host
        self.port = port
        self.target = target or ""
        self.tls = tls
        self.server_hostname = server_hostname
        self.credentials = credentials
        self.options = options or Options(tpdu_size=65408)
        self.window = window
        self.max_streams = max_streams
        self.shared = shared
        self.addresses = list(addresses)
        self.ended = TunnelStats()  #: of the sessions that have ended
        self._mux: _Mux | None = None
        self._muxes: set[_Mux] = set()
        self._connecting: asyncio.Future[_Mux] | None = None
        self._spare: _Mux | None = None  # (a session per connection) the one start() opened
        self._waiting: set[_Stream] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: PlainServer | None = None
        self._closed = False
        self._shed = 0  # local connections closed at their accept: no descriptor (failed)
        self.refusals_logged_every = REFUSALS_LOGGED_EVERY
        self._refused = 0  # local connections reset at max_streams (counted in failed)
        self._unlogged = 0  # ... of which not logged yet
        self._refusal_logged: float | None = None  # (loop time) the last line about them
        self._refusal_timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------ public

    async def start(self, listen_host: str = "127.0.0.1", listen_port: int = 0) -> None:
        """Open the first session (so a server that refuses, or is not there, is known at
        once: :class:`TunnelError`; with ``shared=False`` too, where it carries the first
        connection), then listen on ``listen_host:listen_port``."""
        if self.shared:
            await self._session()
        else:  # (kept for the first connection, as if it had come now)
            self._spare = await self._new_mux()
        self._server = await serve_plain(self._accept, listen_host, listen_port, 100,
                                         self._shed_one, log)  # fmt: skip

    def _shed_one(self, peer: Any) -> None:
        """(aio/listening.py) A local connection closed at its accept: no descriptor."""
        self._shed += 1

    @property
    def listen_port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def session(self) -> Session | None:
        """The session carrying the connections now (shared mode), if any."""
        mux = self._mux
        return mux.session if mux is not None and not mux.over else None

    @property
    def stats(self) -> TunnelStats:
        total = TunnelStats()
        total.add(self.ended)
        for mux in self._muxes:
            total.add(mux.stats)
            total.streams += len(mux.streams)
        total.streams += len(self._waiting)
        total.failed += self._refused + self._shed
        return total

    async def close(self, grace: float = CLOSE_GRACE) -> None:
        """Stop listening, end every tunnelled connection, release the sessions.

        A connection still open both ways is reset at once.  One that has half-closed
        (either way) has up to ``grace`` seconds to end: its last octets carried both
        ways, and delivered to the local application.  The sessions are released then,
        and what has not ended by then is reset.  (A stream that ended both ways reaches
        its target whole: the server writes it all after the release.)"""
        self._closed = True
        if self._server is not None:
            self._server.close()
        self._log_refusals()  # (what the rate limit held back)
        for stream in list(self._waiting):
            stream.reset_local()
        self._waiting.clear()
        connecting = self._connecting
        if connecting is not None:  # (a connect under way: it must not open a session now)
            connecting.cancel()
            await asyncio.wait([connecting])  # (a cancel of close() itself still cancels it)
        muxes = [mux for mux in self._muxes if not mux.over]
        for mux in muxes:
            for stream in list(mux.streams.values()):
                if not (stream.local_eof or stream.peer_eof):
                    mux.reset(stream, "the tunnel client is stopping")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                for mux in muxes:  # (half-closed ones: each dropped once it ended)
                    await mux.idle.wait()
        for mux in muxes:
            await mux.release()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> TunnelClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # ------------------------------------------------------------ inside

    async def _new_mux(self) -> _Mux:
        try:
            session = await connect(
                self.host, self.port, tls=self.tls, server_hostname=self.server_hostname,
                credentials=self.credentials, offers={"service": [SERVICE], FLOW: [AUTO]},
                options=self.options, addresses=self.addresses,
                data=self.target.encode(),  # (checked at connect: TunnelService.check)
            )  # fmt: skip
        except ConnectRefused as exc:
            raise TunnelError(f"the server refused the tunnel: {exc.message}") from None
        except SessionLayerError as exc:  # (no session: the peer is not one of ours...)
            where = host_port(self.host, self.port)
            raise TunnelError(f"no session with {where}: {exc}") from None
        except (OSError, TimeoutError) as exc:
            where = host_port(self.host, self.port)
            raise TunnelError(f"cannot reach {where}: {unreachable(exc)}") from None
        mux = _Mux(session, "client", window=self.window, max_window=self.max_window,
                   window_budget=self.window_budget, max_streams=self.max_streams)
        mux.target_text = self.target
        self._muxes.add(mux)
        self._spawn(self._run_mux(mux))
        return mux

    async def _run_mux(self, mux: _Mux) -> None:
        try:
            await mux.run()
        finally:
            self._muxes.discard(mux)
            mux.stats.streams = 0
            self.ended.add(mux.stats)
            if not self._closed and mux.why and self.shared:
                log.warning("sessionlayer tunnel: %s", mux.why)

    async def _session(self) -> _Mux:
        """The shared session's multiplexer: the current one, or a new session."""
        mux = self._mux
        if mux is not None and not mux.over:
            return mux
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._new_mux())
            # (shielded from its waiters: if they all went, its failure is retrieved here)
            self._connecting.add_done_callback(_retrieved)
        connecting = self._connecting
        try:
            mux = await asyncio.shield(connecting)
        finally:
            if connecting.done() and self._connecting is connecting:
                self._connecting = None
                if not connecting.cancelled():
                    connecting.exception()  # (retrieved)
        self._mux = mux
        return mux

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("sessionlayer tunnel: internal error", exc_info=exc)

    def _accept(self) -> _Stream:
        stream = _Stream(None)
        stream.on_unattached = self._unattached
        return stream

    def _unattached(self, stream: _Stream) -> None:
        """A local connection without a session yet: accepted (attach it), or gone."""
        if stream.transport is None:  # (closed while it waited for a session)
            self._waiting.discard(stream)
            return
        if self._closed:
            stream.reset_local()
            return
        if self._open_now() >= self.max_streams:
            self._refuse(stream)
            return
        mux = self._mux
        if self.shared and mux is not None and not mux.over:
            self._hand(stream, mux)
            return
        self._waiting.add(stream)  # (its data is kept meanwhile, up to LOCAL_HIGH)
        self._spawn(self._attach_later(stream))

    def _open_now(self) -> int:
        """The local connections open now, as ``max_streams`` counts them: those waiting
        for a session, and (a session per connection) those the sessions carry (with one
        shared session, ``add_local`` counts those)."""
        n = len(self._waiting)
        if not self.shared:
            n += sum(len(mux.streams) for mux in self._muxes)
        return n

    async def _attach_later(self, stream: _Stream) -> None:
        try:
            mux = await (self._session() if self.shared else self._unshared())
        except TunnelError as exc:
            log.warning("sessionlayer tunnel: %s; connection reset", exc)
            self._waiting.discard(stream)
            stream.reset_local()
            return
        self._hand(stream, mux)
        if not self.shared:
            self._spawn(self._release_when_done(mux))

    def _hand(self, stream: _Stream, mux: _Mux) -> None:
        self._waiting.discard(stream)
        stream.on_unattached = None
        if stream.transport is None:
            return
        if not mux.add_local(stream):
            if mux.over:  # (the session ended meanwhile: that is logged already)
                stream.reset_local()
            else:
                self._refuse(stream)

    def _refuse(self, stream: _Stream) -> None:
        """Reset a local connection made while ``max_streams`` are open; count and log it
        (the first at once, then at most a line per ``refusals_logged_every`` seconds)."""
        stream.reset_local()
        self._refused += 1
        self._unlogged += 1
        if self._refusal_timer is not None:
            return  # (a line is due: it will count this one)
        now = asyncio.get_running_loop().time()
        last = self._refusal_logged
        if last is None or now - last >= self.refusals_logged_every:
            self._log_refusals()
        else:
            self._refusal_timer = asyncio.get_running_loop().call_at(
                last + self.refusals_logged_every, self._log_refusals)

    def _log_refusals(self) -> None:
        if self._refusal_timer is not None:
            self._refusal_timer.cancel()
            self._refusal_timer = None
        if not self._unlogged:
            return
        n, self._unlogged = self._unlogged, 0
        self._refusal_logged = asyncio.get_running_loop().time()
        log.warning("sessionlayer tunnel: %d local connection%s reset: %d tunnelled"
                    " connections are open already (max_streams; %d reset in all)",
                    n, "" if n == 1 else "s", self.max_streams, self._refused)  # fmt: skip

    async def _unshared(self) -> _Mux:
        """(A session per connection) A new session: the one start() opened first."""
        spare, self._spare = self._spare, None
        if spare is not None and not spare.over:
            return spare
        return await self._new_mux()

    async def _release_when_done(self, mux: _Mux) -> None:
        """(A session per connection) Release it once its one stream has ended."""
        await mux.idle.wait()
        await mux.release()


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
