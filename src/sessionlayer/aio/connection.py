"""``Connection``: one TCP connection carrying one session, on asyncio.

It owns everything of that connection: the asyncio transport, the S-DATA fast path (reads
into a :class:`~sessionlayer.transport.fastpath.PlainReader`, writes framed by ``frame_data``),
the sans-I/O :class:`~sessionlayer.agent.SessionAgent` that decides everything else, the
one timer, and what waits for the application (received data, events, requests waiting
for their confirm).  :class:`~sessionlayer.aio.session.Session` is the user's facade over
it and calls only its public methods.

Data flows one way through it: octets in -> the fast path, or ``agent.receive_data`` ->
``agent.data_to_send()`` written -> ``agent.events()`` to the waiting futures and queues
-> ``agent.next_deadline()`` armed as the one timer.

Every error is caught where it happens and ends this one connection: nothing reaches
asyncio's exception handler, and a peer makes the binding log at most one WARNING per
connection (and, across connections, at most ``sockets.WARNINGS_PER_SECOND`` a second; the rest
are counted and summarised).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, cast

from ..agent import EVERY, NEEDS, Options, SessionAgent, TokensMissing
from ..errors import (
    AbortReason,
    CheckpointRestored,
    DecodeError,
    EncodeError,
    FunctionalUnitError,
    ParameterError,
    ResumeRefused,
    SessionAborted,
    SessionClosed,
    SessionLayerError,
    StateError,
    SyncPurged,
    SyncSuperseded,
)
from ..machine import SessionMachine
from ..machine import events as ev
from ..recovery import OVERHEAD, Checkpoint, Interrupted, Journal, Resumed
from ..recovery.journal import Asked, Typed
from ..spdu.codes import FunctionalUnit, Token
from ..transport.fastpath import (
    SINGLE_HEAD,
    SINGLE_PREFIX,
    SINGLE_SLACK,
    TPKT_V3,
    PlainReader,
    frame_data,
    frame_pieces,
    pack_single,
    unpack_single,
)
from .endpoint import HOLD_JOINED, HOLD_PIECES, Endpoint, Extra, LinkState
from .signal import Signal
from .sockets import peer_gone, peer_text, tcp_keepalive, warnings

__all__ = ["Connection"]

log = logging.getLogger("sessionlayer")
T = TypeVar("T")
E = TypeVar("E", bound=BaseException)

#: Messages from this size on are framed as pieces (headers and views of the data) that
#: go to ``transport.writelines``: uvloop (and asyncio from 3.12) write them without a copy.
_COPY_BELOW = 4096
#: An S-DATA message's TSDU beyond its octets: GT and DT with empty parameter fields
#: (``DATA_PREFIX``: the user data follows the DT's parameter field, outside its LI); an
#: S-TYPED-DATA message's is its TD's 2 (so it may be 2 octets longer).
_DATA_OVERHEAD = 4
_TYPED_MORE = 2
_NO_LIMIT = 1 << 62  #: the peer did not say how large a TSDU it takes
_LIMITS: dict[int, int] = {}  #: data limits by the peer's max_tsdu: one int for them all
#: Why reading from TCP is paused (bits of ``Connection._paused``): received data waits for
#: a slow reader, our writes wait for a peer that does not read (the answers the agent
#: gives on its own would otherwise queue without limit), or events wait unread.
_BUFFERED = 1
_WRITING = 2
_EVENTS = 4
_LOCAL = _BUFFERED | _EVENTS  #: paused for our own application: no idle timeout meanwhile
#: While reading is paused, every this many seconds: is the peer still there (_peer_gone)?
_PAUSED_CHECK = 1.0
#: The confirmed major sync points (either way): a resumable session's checkpoints.
_CHECKPOINTS = (ev.MajorSyncIndication, ev.MajorSyncConfirm)
#: The events after which no activity is in progress.
_ACTIVITY_ENDS = (ev.ActivityEndIndication, ev.ActivityEndConfirm, ev.ActivityDiscardIndication,
                  ev.ActivityDiscardConfirm, ev.ActivityInterruptIndication,
                  ev.ActivityInterruptConfirm)  # fmt: skip
#: The events that abandon the sync points not yet confirmed (X.215), and those confirms.
_PURGING = (ev.ResyncConfirm, ev.ResyncIndication, ev.ActivityDiscardIndication,
            ev.ActivityDiscardConfirm, ev.ActivityInterruptIndication,
            ev.ActivityInterruptConfirm)  # fmt: skip
_SYNC_CONFIRMS = (ev.MinorSyncConfirm, ev.MajorSyncConfirm, ev.ActivityEndConfirm)
#: The events ``Connection._note`` looks at (checkpoints, activity ends, purges).
_NOTED = frozenset((*_CHECKPOINTS, *_ACTIVITY_ENDS, *_PURGING))
#: What waits, in the read that brings a resume's AC, until the outcome is applied.
_HELD = frozenset((ev.ExpeditedDataIndication, ev.TypedDataIndication))
#: Events never dropped unread (data, and what the application must act on): past the limit
#: they pause reading, whether or not events() was ever read.
_KEPT_UNREAD = (ev.TypedDataIndication, ev.ExpeditedDataIndication, ev.CapabilityDataIndication,
                ev.UserExceptionReportIndication, ev.ProviderExceptionReportIndication)
#: The most user data an S-EXPEDITED-DATA carries (X.225 8.3.15).
_EXPEDITED_OCTETS = 14
#: Shared, always empty: an idle session holds no deque of its own.
_NO_DATA: collections.deque[bytes] = collections.deque(maxlen=0)


# Bits of Connection._flags.
_REJECTED = 1  # over the server's limit of connections in handshake: closed at once
_WARNED = 2  # this connection logged its one WARNING
_HANDSHAKE = 4  # the endpoint's on_handshake_over is still to be called
_CLOSED = 8  # the TCP connection is gone (``is_closed``)
_RELEASED = 16  # the session ended in an orderly release (``released``)
_DETACHED = 32  # (recovery) the transport connection was lost; the session waits to resume
_MOVED = 64  # (server) this connection's transport and agent went to a resumed session's
_UNHEARD = 128  # (server, recovery) resumed, nothing read since: the endpoint's on_heard
_ROLLBACK_SEND = 256  # (recovery) ... and to the sender
_WAITING = 512  # (server) waits for a handshake slot (``queue()``, ``admit()``)
_PUMPING = 1024  # (recovery) _pump_replay is under way (its flushes do not start another)
_EVENTS_READ = 2048  # the application has read (or waited for) events() at least once
_EOF_SENT = 4096  # our AB went out with a FIN behind it: nothing more is written (_linger)


def copy_to_raise(exc: E) -> E:
    """A copy of the session's failure to raise: the one kept stays without a traceback,
    which would hold the raising frames, and through them the session, in a reference
    cycle (an ended session freed at once, not by the garbage collector)."""
    cls = type(exc)
    new = cls.__new__(cls)
    new.args = exc.args
    new.__dict__.update(exc.__dict__)
    new.__cause__ = exc.__cause__
    new.__suppress_context__ = exc.__suppress_context__
    return new


class _Expedited(bytes):
    """(Recovery) An S-EXPEDITED-DATA message in a replay (sent again as such)."""

    __slots__ = ()


class Relink(Exception):
    """(Internal) A request's transport connection was lost before its confirm came: make
    it again once the session is resumed."""


class _AttachedTimer:
    """A confirmed request's time limit (a release's), kept by its connection: armed on the
    connection's one timer, it aborts the session when no answer came in time, whether or
    not the caller still waits (a release() cancelled after its FN went out leaves the FN
    outstanding: that deadline still holds).  An answer of ``kinds`` stops it.

    (Recovery) It counts only while the session is attached: stopped while the request
    waits for a resume, started over (the whole ``delay``) once resumed, when the request
    goes out again on the new connection; a detach drops the deadlines of requests nobody
    makes again.  (While detached the wait is the reconnect's: its give-up, or the
    resume's outcome, ends it.)"""

    __slots__ = ("_conn", "_delay", "at", "kinds", "out", "what")

    def __init__(self, conn: Connection, delay: float, kinds: tuple[type, ...],
                 what: str) -> None:  # fmt: skip
        self._conn = conn
        self._delay = delay
        self.kinds = kinds
        self.what = what  #: what the abort says when it fires (SessionAborted's message)
        self.at: float | None = None  #: when it fires (None: stopped)
        self.out = False  #: the request went out on the current connection

    def stop(self) -> None:
        self.at = None
        self.out = False
        self._conn.stop_timer(self)

    def start(self) -> None:
        self._conn.start_timer(self, self._delay)


class _Sink(asyncio.Protocol):
    """Takes the callbacks of a transport given up for a newer one (they mean nothing)."""

    def data_received(self, data: bytes) -> None:
        pass


class Connection(PlainReader, asyncio.BufferedProtocol):
    """One TCP connection carrying one session (see the module docstring).

    It is its own :class:`PlainReader` too: asyncio calls the reader's ``get_buffer``
    directly, and a session is one object lighter.  What is alike for all of a server's
    connections is in the shared :class:`Endpoint`; what only some need is made on first
    use (``Extra``).
    """

    # Slots: a server holds one of these per live session (idle sessions' memory).
    __slots__ = (
        "_buffered",
        "_data_max",
        "_data_waiter",
        "_ep",
        "_failure",
        "_flags",
        "_general",
        "_held",
        "_held_size",
        "_paused",
        "_timer",
        "_tpdu_size",
        "_wrote",
        "_x",
        "agent",
        "bytes_in",
        "bytes_out",
        "id",
        "inbox",
        "journal",
        "messages_in",
        "messages_out",
        "plain",
        "rolling_back",
        "transport",
        "write_paused",
    )  # fmt: skip

    def __init__(self, agent: SessionAgent, endpoint: Endpoint) -> None:
        self.agent = agent
        self._ep = endpoint
        self.id = ""  #: the session's id (set by connect() / the server), for the logs
        self.transport: asyncio.Transport | None = None
        self._x: Extra | None = None
        self._flags = 0  # (a server's connection takes a slot in connection_made)
        self._timer: asyncio.TimerHandle | None = None  # the one timer (see _rearm)
        #: The transport is above its high-water mark: ``drain()`` waits.
        self.write_paused = False
        self._paused = 0  # why reading is paused: _BUFFERED | _WRITING | _EVENTS bits
        PlainReader.__init__(self, endpoint.options.max_tsdu_size)
        self._wrote = False  # write_data wrote straight out; reset by flush_out
        # Frames held back to share one write; a list only while a flush_out is scheduled.
        self._held: list[bytes | memoryview] | None = None
        self._held_size = 0
        #: S-DATA takes the fast path: ``agent.plain`` while the session is open (see flush).
        self.plain = False
        self._general = False  # RFC 1006 holds part of a TPDU or TSDU (the agent reads)
        self._tpdu_size = 128  # negotiated in COTP CR/CC (kept here for the fast path)
        #: The largest message the peer takes in one TSDU (its hello's or welcome's
        #: ``max_tsdu``, set when the session opens): a bigger one is refused unsent.
        self._data_max = _NO_LIMIT
        self.bytes_in = 0
        self.bytes_out = 0
        self.messages_in = 0
        self.messages_out = 0
        # What waits for the application.
        #: Received S-DATA the application has not read yet (a deque of its own on first data).
        self.inbox: collections.deque[bytes] = _NO_DATA
        self._buffered = 0
        self._data_waiter: asyncio.Future[bytes] | None = None
        self._failure: SessionLayerError | None = None
        #: (Recovery) What this side sent and the peer has not confirmed, and the count of
        #: what it received; None for a plain session.  Outlives transport connections.
        self.journal: Journal | None = None
        #: (Recovery) A CheckpointRestored is due to the reader (see ``take_rollback``): a
        #: plain attribute, read on every receive.
        self.rolling_back = False

    def _more(self) -> Extra:
        """What only some connections need (made on first use)."""
        x = self._x
        if x is None:
            x = self._x = Extra()
        return x

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._ep.loop

    @property
    def options(self) -> Options:
        return self._ep.options

    @property
    def tap(self) -> Callable[[str, bytes], None] | None:
        """Called with ("in" | "out", bytes) for every chunk read or written (tracing)."""
        return self._ep.tap

    @property
    def rejected(self) -> bool:
        """(Server) Over the server's limit of connections in handshake: closed at once."""
        return bool(self._flags & _REJECTED)

    @rejected.setter
    def rejected(self, value: bool) -> None:
        self._flags = self._flags | _REJECTED if value else self._flags & ~_REJECTED

    def take_slot(self) -> None:
        """(Server, from ``on_accept``) This connection holds one of the server's handshake
        slots: the endpoint's ``on_handshake_over`` is called once when it is over."""
        self._flags |= _HANDSHAKE

    def queue(self) -> None:
        """(Server, from ``on_accept``) Over the limit of connections in handshake: nothing
        is read from this one until :meth:`admit` (its handshake deadline runs from now all
        the same; the kernel holds what its peer sends meanwhile)."""
        self._flags = (self._flags | _WAITING) & ~_HANDSHAKE

    def admit(self) -> None:
        """(Server) A handshake slot is this connection's: read what its peer sent."""
        if not self._flags & _WAITING:
            return
        self._flags = (self._flags | _HANDSHAKE) & ~_WAITING
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.resume_reading()
        x = self._x
        early = x.early if x is not None else None
        if early:
            x.early = None  # type: ignore[union-attr]
            try:
                self.agent.receive_data(early, self._ep.loop.time())
                self._general = not self.agent.transport_idle
                self.flush()
            except Exception as exc:  # a bug of ours: end this connection, not the server
                self.internal_error(exc)

    @property
    def waiting(self) -> bool:
        """(Server) Queued for a handshake slot (and still connected)."""
        return bool(self._flags & _WAITING)

    def gone_while_waiting(self) -> None:
        """(Server) A queued connection whose peer left (asyncio sees no FIN while
        nothing is read: look) is closed now.  The handshake deadline would close it too,
        later; this is for a full queue (no timer of its own while it waits)."""
        if self._flags & _WAITING and peer_gone(self.transport):
            self._leave_queue()
            self.abort()

    def _leave_queue(self) -> None:
        """(Server) No longer waiting for a handshake slot, never admitted: the server
        stops counting it (``on_wait_over``)."""
        self._flags &= ~_WAITING
        callback = self._ep.on_wait_over
        if callback is not None:
            callback()

    # ------------------------------------------------------------ state

    @property
    def machine(self) -> SessionMachine:
        return self.agent.machine

    @property
    def peer(self) -> Any:
        """The peer's address (``peername`` of the transport connection, the latest one of
        a resumed session; None before there is one).  Asked of the transport, not kept:
        asyncio's transport holds it anyway, uvloop's makes it on demand (an address kept
        per idle session would be 145 octets there), both until the end.  A TLS transport
        forgets it when the connection is lost: a TLS connection keeps its own."""
        x = self._x
        if x is not None and x.peer is not None:
            return x.peer
        transport = self.transport
        return transport.get_extra_info("peername") if transport is not None else None

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        """The ``sessionlayer`` logger with this session's id on every record."""
        x = self._more()
        if x.log is None:
            x.log = logging.LoggerAdapter(log, {"session_id": self.id})
        return x.log

    @property
    def failure(self) -> SessionLayerError | None:
        """Why the session ended, if it was aborted."""
        return self._failure

    @property
    def is_closed(self) -> bool:
        """The TCP connection is gone (``wait_closed`` waits for it)."""
        return bool(self._flags & _CLOSED)

    @property
    def released(self) -> bool:
        return bool(self._flags & _RELEASED)

    @property
    def detached(self) -> bool:
        """(Recovery) The transport connection was lost and the session waits to resume."""
        return bool(self._flags & _DETACHED)

    @property
    def closed(self) -> bool:
        """The session is over (released or aborted)."""
        return self._failure is not None or bool(self._flags & _RELEASED)

    def check_open(self) -> None:
        """Raise what ended the session, if it has ended."""
        if self._failure is not None:
            raise copy_to_raise(self._failure)
        if self._flags & _RELEASED:
            raise SessionClosed("the session was released")

    # ------------------------------------------------------------ asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        try:  # (nothing of ours reaches asyncio's exception handler; the try is free)
            # uvloop's transports are not asyncio.Transport subclasses but behave as one.
            self.transport = cast(asyncio.Transport, transport)
            transport = self.transport
            accept = self._ep.on_accept
            if accept is not None:
                accept(self)  # (server) a handshake slot, a place in the queue, or rejected
            if self.rejected:  # the server has too many connections in handshake
                transport.abort()
                return
            if self._flags & _CLOSED:  # (recovery) a new transport connection for this session
                self._new_link()
            ep = self._ep
            if ep.tls:  # (see peer)
                self._more().peer = transport.get_extra_info("peername")
            joins = type(transport).writelines is asyncio.WriteTransport.writelines
            ep.hold_limit = HOLD_JOINED if joins else HOLD_PIECES  # (alike for a server's)
            # (low as asyncio would make it, but one int for all: not one per transport)
            transport.set_write_buffer_limits(high=ep.options.write_buffer_high, low=ep.write_low)
            agent = self.agent
            agent.connection_made(ep.loop.time(), *ep.tsaps)
            if self._flags & _WAITING:  # (no _pause: nothing to look at every second)
                transport.pause_reading()
            if agent.rfc.role == "responder" or agent.cn_ready:
                # (responder: nothing to send before the CR; a fast connect's CR waits for the
                # CN, which open() makes: the deadline only)
                self._rearm()
            else:
                self.flush()  # the CR goes out
        except Exception as exc:
            self.internal_error(exc)

    def buffer_updated(self, nbytes: int) -> None:
        try:  # (one frame: the try costs nothing, a call per read would)
            if self._ep.observe:  # traced, or liveness watched
                self._observe(nbytes)
            self.bytes_in += nbytes
            if self._flags & _UNHEARD:
                self._heard()
            # ``plain`` holds only while a session is open on this connection (see flush).
            if self.plain and not self._general:
                # A read of one whole message in one TPDU, nothing held (PlainReader.single,
                # inline): a request or a response, and its reader waits for it.
                if self._buf is None and nbytes >= SINGLE_HEAD:
                    shared = self._shared
                    tpkt, length, head = unpack_single(shared.buf, 0)
                    whole = length == nbytes and head == SINGLE_PREFIX and tpkt == TPKT_V3
                    if whole and length - SINGLE_SLACK <= self.max_tsdu_size:
                        message = bytes(shared.view[SINGLE_HEAD:nbytes])
                    else:
                        message = None
                else:
                    message = None
                if message is not None:
                    self.messages_in += 1
                    if self.journal is not None:
                        self.journal.received += 1
                    waiter = self._data_waiter
                    if waiter is not None:
                        self._data_waiter = None  # (only one S-DATA resolves it)
                        if not waiter.done():  # (done: its task was cancelled)
                            waiter.set_result(message)
                            return
                    self._hold(message)
                    return
                data = self._parse_and_deliver(nbytes)
                if data:
                    self._general_then_fast(data)
                return
            else:
                data = self.take(nbytes)  # what was held (if anything) and what was read
                if self._flags & _WAITING:  # (uvloop reads once before a pause holds)
                    self._keep_early(data)
                    return
            agent = self.agent
            agent.receive_data(data, self._ep.loop.time())
            self._general = not agent.transport_idle
            self.flush()
            if self._general and self.plain:
                # Data flows on after what needed the machine (a stream that never pauses at
                # a TPDU boundary): the fast path takes over between two TSDUs.
                rest = agent.rfc.hand_over()
                if rest is not None:
                    self._general = False
                    if rest:
                        self._resume_fast(rest)
        except Exception as exc:  # a bug of ours: end this connection, not the server
            self.internal_error(exc)

    def _keep_early(self, data: bytes) -> None:
        """(Server) Queued for a handshake slot, yet read from: kept for :meth:`admit`, and
        reading paused (at most a read or two: uvloop starts reading after connection_made,
        where asyncio's pause holds from the start)."""
        x = self._more()
        x.early = data if x.early is None else x.early + data
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def _general_then_fast(self, data: bytes | None) -> None:
        """The fast path met a TPDU that is not plain data (a sync point, an ack point,
        a token): the agent takes it, and the fast path goes on with what followed it in
        the same read (held by the reader), or the agent takes that too when the session
        is no longer plain or RFC 1006 holds part of a TSDU."""
        agent = self.agent
        while data:
            agent.receive_data(data, self._ep.loop.time())
            self._general = not agent.transport_idle
            self.flush()
            if not self.pending:
                return
            if not self.plain or self._general:
                data = self.take()  # (what is held, whole: the general path from here)
                continue
            data = self._parse_and_deliver(None)

    def _parse_and_deliver(self, nbytes: int | None) -> bytes | None:
        """The fast path over the ``nbytes`` just read (None: over what is held, after a
        TPDU the general path took): whole messages delivered; what the general path must
        take returned (None after a DecodeError, which ended the connection)."""
        messages: list[bytes] = []
        try:
            data = self.parse(nbytes, messages) if nbytes is not None else self.more(messages)
        except DecodeError as exc:
            self._fast_failed(messages, exc)
            return None
        if len(messages) == 1:
            self._deliver_one(messages[0])
        elif messages:
            self._deliver(messages)
        return data

    def _resume_fast(self, rest: bytes) -> None:
        """The fast path continues the stream with ``rest`` (part of a TPDU, from RFC 1006)."""
        messages: list[bytes] = []
        try:
            data = self.feed(rest, messages)
        except DecodeError as exc:
            self._fast_failed(messages, exc)
            return
        if messages:
            self._deliver(messages)
        if data:  # (cannot be: rest holds no whole TPDU) back to the general path
            self._general_then_fast(data)

    def watch_heard(self) -> None:
        """(Server) This connection just resumed its session: the endpoint's ``on_heard`` is
        called at its next read (the client was heard on it)."""
        self._flags |= _UNHEARD

    def _heard(self) -> None:
        self._flags &= ~_UNHEARD
        callback = self._ep.on_heard
        if callback is not None:
            callback(self)

    def _observe(self, nbytes: int) -> None:
        """The ``nbytes`` just read go to the tap; the peer was heard (liveness)."""
        ep = self._ep
        if ep.tap is not None:
            ep.tap("in", self.peek(nbytes))
        if ep.watching:
            self.agent.heard(ep.loop.time())

    def _fast_failed(self, messages: list[bytes], exc: DecodeError) -> None:
        """The fast path found a TSDU over the limit: deliver what came before, abort."""
        self.take()  # drop what was held
        if messages:
            self._deliver(messages)
        self.agent.fail(f"transport protocol error: {exc}", exc.reason, reflect=b"")
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self._flags |= _CLOSED  # (first: nothing below writes, a replay included)
        if self._flags & _EOF_SENT and self._ep.lingering is not None:
            self._ep.lingering.discard(self)
        self.plain = False
        try:
            self.resume_writing()  # nobody waits in drain() for a connection that is gone
            self._held = None
            self.clear()  # a TSDU cut short will not be completed: its buffer can go
            self._cancel_timer()
            self._handshake_over()
            if self._flags & _DETACHED:
                self._fail_connecting()  # (a resume try whose connection died)
            if self._resumable():
                self._detach(self.agent.link_lost or "the transport connection was lost")
            elif not self._flags & _DETACHED:
                self.agent.connection_lost()
                self._dispatch()
        except Exception as exc2:  # a bug of ours: logged, the connection is gone anyway
            self.internal_error(exc2)
        x = self._x
        if x is not None:
            if x.closed is not None:
                x.closed.set()
            if x.connecting is not None:  # (initiator) TCP closed before COTP CC
                future = x.connecting[1]
                x.connecting = None
                if not future.done():
                    future.set_exception(ConnectionError("connection closed"))

    def eof_received(self) -> None:
        # The peer is gone and the transport closes (None: not kept open); until
        # connection_lost, writes take the general path, which checks the transport.
        self.plain = False

    def pause_writing(self) -> None:
        self.write_paused = True
        if self._x is not None and self._x.drained is not None:
            self._x.drained.clear()
        # (Reading goes on: the peer may be sending as hard as we are, both ways at once.
        # What the agent writes on its own is bounded in _write.)

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._x is not None and self._x.drained is not None:
            self._x.drained.set()
        if self._x is not None and self._x.replay is not None:
            self._pump_replay()
        self._unpause(_WRITING)

    async def wait_closed(self) -> None:
        """Wait until the TCP connection is gone."""
        if not self.is_closed:
            x = self._more()
            if x.closed is None:
                x.closed = Signal()
            await x.closed.wait()

    # ------------------------------------------------------------ driving the agent

    def flush(self) -> None:
        """Write what the agent queued, close when it says so, arm the timer, hand its
        events to the application."""
        if self._flags & _MOVED:
            return  # (server) the transport and the agent now belong to a resumed session
        agent = self.agent
        x = self._x
        if agent.link_lost is not None and self.transport is not None:
            self.transport.abort()  # (recovery) given up: no AB, no waiting for the peer
            return
        if x is not None and x.connecting is not None and agent.cn_ready:
            self._connect_now(x)  # (initiator) the CC came: the CN goes out with this flush
        out = agent.data_to_send()
        if len(out) == 1:
            self._write(out[0])
        elif out:  # (a CR and the CN behind it, a CC and the AC: one write, one segment)
            self._write_all(out)
        wants_close = agent.wants_close
        closing = wants_close and self.transport is not None
        if closing:
            self._close_transport()
        # The fast path needs an open session on an open transport (write_data relies on it):
        # ``agent.plain`` (the machine's plain data, no close wanted), not closed.  Not while
        # detached either: a resume try's agent is in data transfer once its AC is in, and
        # until ``resumed`` (the reconnect task's next step) puts the replay first, a message
        # written straight out would overtake it (and come again with it).
        transport = self.transport
        self.plain = (
            not wants_close and agent.machine.plain_data
            and self._failure is None and not self._flags & (_RELEASED | _DETACHED)
            and (x is None or x.replay is None) and not self._flags & _ROLLBACK_SEND
            and transport is not None and not transport.is_closing()
        )  # fmt: skip
        self._tpdu_size = agent.rfc.tpdu_size or 128  # (agent.tpdu_size)
        self._dispatch()
        for warning in agent.warnings():
            self.warn("session %s: %s", self.id, warning)
        if x is not None and x.link is not None and x.link.retained is not None:
            journal = self.journal
            if journal is None or not journal.full or (
                journal.expedited is not None and not journal.expedited.full
            ):
                x.link.retained.set()  # the peer confirmed enough: senders may go on
        self._rearm()

    def _dispatch(self) -> None:
        if self._flags & _MOVED:
            return
        for event in self.agent.events():
            on_indication = self._ep.on_connect_indication
            if on_indication is not None and isinstance(event, ev.ConnectIndication):
                on_indication(self, event)
            else:
                self._handle(event)
        x = self._x
        if x is not None:
            if x.tokens_changed is not None:
                x.tokens_changed.set()  # (some SPDUs change tokens without an event: GTA)
            if x.replay is not None and not self._flags & _PUMPING:
                self._pump_replay()  # (it may have waited for data transfer again)

    def _handle(self, event: ev.Event) -> None:
        """One indication or confirm, already answered by the agent where it answers."""
        if self._failure is not None:
            return  # aborted: what the peer sent after that changes nothing
        if isinstance(event, ev.DataIndication):
            self._deliver_one(event.data)
        elif isinstance(event, ev.ReleaseIndication):
            if not self._flags & _RELEASED:
                self._put_event(event)
            if self.agent.released:
                self._session_over(None)
        elif isinstance(event, ev.ReleaseConfirm):
            self._answered(event)
            self._resolve(event)
            if event.accepted:
                self._session_over(None)
        elif isinstance(event, ev.UserAbortIndication):
            self._session_over(SessionAborted("aborted by the peer", AbortReason.USER_ABORT,
                                     by_peer=True, user_data=event.user_data))  # fmt: skip
        elif isinstance(event, ev.ProviderAbortIndication):
            x = self._x
            connecting = x is not None and (x.connecting is not None or bool(
                x.waiters and x.waiters.get(ev.ConnectConfirm)))  # fmt: skip
            if event.local and not connecting:  # we found the error (or a limit, a timeout)
                # and ended it; (a connect waiting for COTP CC, or for the AC, is told)
                what = "protocol error, aborted" if event.reason & AbortReason.PROTOCOL_ERROR else (
                    "aborted")  # fmt: skip
                self.warn("session %s (%s): %s: %s", self.id, peer_text(self.peer), what,
                          event.message)  # fmt: skip
            self._session_over(SessionAborted(f"session aborted: {event.message}", event.reason))
        elif isinstance(event, ev.MinorSyncSuperseded):
            self._superseded(event)
        elif isinstance(event, ev.ActivityResumeIndication) and self._awaiting_resume():
            link = self._link()
            link.awaiting_resume = False  # the activity goes on: so does the replay
            link.activity = None
            self._pump_replay()
        else:
            if type(event) in _HELD and self._flags & _DETACHED:
                self._link().held_events.append(event)  # (with a resume's AC: resumed())
                self._buffered += _event_size(event)  # (typed data may be large)
                self._check_buffered()
                return
            if self.journal is not None and isinstance(event, ev.TypedDataIndication):
                self.journal.received += 1  # (counted with S-DATA: see Typed)
            if type(event) in _NOTED:  # (a set: no call for the others, a connect confirm)
                self._note(event)
            if self._x is not None and self._x.timers:
                self._answered(event)
            if not self._resolve(event):
                self._put_event(event)

    def _answered(self, event: ev.Event) -> None:
        """An answer came: the deadlines of the requests it answers stop (whether or not
        their callers still wait)."""
        x = self._x
        if x is not None and x.timers:
            for timer in list(x.timers):
                if isinstance(event, timer.kinds):
                    timer.stop()

    def _note(self, event: ev.Event) -> None:
        """What an indication or confirm changes beyond its waiter: the activity, the
        checkpoint, the sync points a resynchronization purged."""
        if self.journal is not None and isinstance(event, _ACTIVITY_ENDS):
            self._link().activity = None
        if isinstance(event, _CHECKPOINTS):
            # (Our own checkpoint's user data is our MAP's, not the peer's MAA's.)
            data = event.user_data if isinstance(event, ev.MajorSyncIndication) else (
                self._link().proposed if self.journal is not None else None)  # fmt: skip
            checkpoint = Checkpoint(int(event.serial), data)
            if isinstance(event, ev.MajorSyncIndication) and self.agent.defer_checkpoints:
                self.spawn(self._confirm_checkpoint(checkpoint))
            elif self.journal is not None:
                self._link().checkpoint = checkpoint
                if isinstance(event, ev.MajorSyncConfirm) and self._ep.on_checkpoint:
                    _spawn(self._ep.loop, self._ep.on_checkpoint(self, checkpoint))
        if isinstance(event, _PURGING):
            self._purge_syncs()

    def _purge_syncs(self) -> None:
        """A resynchronization or an activity's interruption or discard abandoned the sync
        points not yet confirmed (X.215): the ``sync()`` and ``end_activity()`` calls
        waiting for them end."""
        self._fail_waiters(_SYNC_CONFIRMS, lambda: SyncPurged(
            "the synchronization point was purged before it was confirmed (a"
            " resynchronization, or the activity interrupted or discarded)"))

    def _superseded(self, event: ev.MinorSyncSuperseded) -> None:
        """The peer's MAP or AE settled our confirmed minor sync point ``event.serial``
        before its MIA came: the oldest ``sync()`` waiting for one (they wait in the order
        their points went out) raises SyncSuperseded; with none waiting (its task was
        cancelled) the event goes on ``events()``, as a confirm nobody awaits does."""
        what = "activity end" if event.activity_end else "major sync point"
        by = f"the peer's {what} {event.major}" if event.major is not None else (
            "the peer's own minor sync point")  # fmt: skip
        waiters = self._x.waiters if self._x is not None else None
        queue = waiters.get(ev.MinorSyncConfirm) if waiters else None
        while queue:
            future = queue.popleft()
            if not future.done():
                future.set_exception(SyncSuperseded(
                    f"minor sync point {event.serial} will not be confirmed: {by} came"
                    " first and settled it", serial=event.serial, major=event.major,
                    activity_end=event.activity_end))  # fmt: skip
                return
        self._put_event(event)

    def propose_checkpoint(self, user_data: bytes | None) -> None:
        """(Recovery) This side's next MAP carries ``user_data``: the checkpoint once it is
        confirmed (kept, stored, and told on a resume from it)."""
        if self.journal is not None:
            self._link().proposed = user_data

    def note_activity(self, user_data: bytes | None) -> None:
        """(Recovery) This side started or resumed an activity with ``user_data``: kept, to
        be sent again on a new connection if the peer never had it."""
        if self.journal is not None:
            self._link().activity_data = user_data

    def restart_activity(self, activity_id: bytes, user_data: bytes | None) -> None:
        """(Recovery) The peer lost our S-ACTIVITY-START with the old connection: start the
        activity again (its tokens fetched first), then let the replay go.  Not when the
        resume showed that the peer ended it (our activity end was answered, the answer
        lost: ``resumed`` made it up): it is over on both sides."""
        requests = self.journal.requests if self.journal is not None else None
        if requests is not None and requests.ended_activity:
            link = self._link()
            link.awaiting_resume = False
            link.activity = None
            self._pump_replay()
            return

        async def again() -> None:
            try:
                await self.call_with_tokens(
                    lambda m: m.activity_start(activity_id, user_data=user_data),
                    NEEDS["activity"], behind_replay=False,
                )  # fmt: skip
            except SessionLayerError:
                return  # (the session ended meanwhile)
            link = self._link()
            link.awaiting_resume = False
            self._pump_replay()

        _spawn(self._ep.loop, again())

    def _awaiting_resume(self) -> bool:
        x = self._x
        return x is not None and x.link is not None and x.link.awaiting_resume

    async def _confirm_checkpoint(self, checkpoint: Checkpoint) -> None:
        """The peer set a checkpoint (MAP): make it durable (the application's
        ``on_checkpoint``, then the server's store), then confirm it (MAA)."""
        agent = self.agent
        try:
            link = self._link()
            if link.on_checkpoint is not None:
                done = link.on_checkpoint(checkpoint)
                if done is not None:
                    await done
            callback = self._ep.on_checkpoint
            if callback is not None and self.journal is not None:
                await callback(self, checkpoint)
            if self.closed:
                return
            if self.journal is None:  # (a plain session: answered on its one connection)
                agent.answer_checkpoint()
            else:
                # (Recovery) The connection may have been lost meanwhile: the answer is
                # counted, and goes out on the connection where the peer's MAP waits for
                # it (the peer makes it again after the resume; it is answered once).
                self.agent.answer_checkpoint(live=not self._flags & _DETACHED)
            link.checkpoint = checkpoint
            self.flush()
        except Exception as exc:  # the application could not keep it: the session ends
            if not self.closed:
                self.log.error("session %s: checkpoint %d could not be made durable",
                               self.id, checkpoint.serial, exc_info=exc)  # fmt: skip
                self.abort_session(SessionAborted(
                    f"checkpoint {checkpoint.serial} could not be made durable: {exc!r}",
                    AbortReason.USER_ABORT))  # fmt: skip

    def defer_checkpoints(self, on_checkpoint: Callable[[Checkpoint], Any] | None) -> None:
        """Confirm the peer's checkpoints (MAP) only once ``on_checkpoint(checkpoint)`` (and
        its awaitable) returned, and the server's store holds it."""
        link = self._link()
        link.on_checkpoint = on_checkpoint
        link.defer_checkpoints = True
        self.agent.defer_checkpoints = True

    # ------------------------------------------------------------ what the application reads

    def _deliver(self, messages: list[bytes]) -> None:
        """Data from the fast path (whole S-DATA indications, in order)."""
        self.messages_in += len(messages)
        if self.journal is not None:
            self.journal.received += len(messages)
        waiter = self._waiting()
        if waiter is not None:  # the first goes straight to the reader
            waiter.set_result(messages[0])
            del messages[0]
        if messages:
            if self.inbox is _NO_DATA:
                self.inbox = collections.deque()
            self.inbox.extend(messages)
            self._buffered += sum(map(len, messages))
            self._check_buffered()

    def _deliver_one(self, message: bytes) -> None:
        """One S-DATA indication (a read that held just that, or the general path's)."""
        if self._flags & _DETACHED:  # (a resume try's, in the read of its AC: resumed())
            self._hold_for_resume(message)
            return
        self.messages_in += 1
        if self.journal is not None:
            self.journal.received += 1
        waiter = self._waiting()
        if waiter is not None:
            waiter.set_result(message)
            return
        self._hold(message)

    def _hold_for_resume(self, message: bytes) -> None:
        """(Recovery) S-DATA that came with a resume's AC, before ``resumed()``: not
        counted nor read until the resume's outcome is applied (a checkpoint's rollback is
        the reader's first news; the restored handler's first message came before it, and
        was counted in the journal the restart then emptied).  Dropped if the try fails:
        the next one has it again."""
        self._link().held_data.append(message)
        self._buffered += len(message)
        self._check_buffered()

    def _deliver_held(self, link: LinkState) -> None:
        """What came with the AC, now that the resume's outcome is applied: counted in the
        journal as it is told (an expedited message the try's agent, which has no journal
        yet, delivered uncounted came again at the next loss)."""
        held, link.held_data = link.held_data, []
        for message in held:
            self._buffered -= len(message)
            self._deliver_one(message)
        events, link.held_events = link.held_events, []
        journal = self.journal
        for event in events:
            self._buffered -= _event_size(event)
            if journal is None:
                pass
            elif type(event) is ev.TypedDataIndication:
                journal.received += 1  # (counted with S-DATA)
            else:
                journal.more_expedited().received += 1
            self._put_event(event)  # (its own limits on unread events from here on)
        self._buffered_less()

    def drop_held(self) -> None:
        """(Recovery) A new resume try: what came in an earlier one's before its outcome
        was applied is not kept (never counted: the peer sends it again)."""
        link = self.link
        if link is not None and (link.held_data or link.held_events):
            self._buffered -= sum(map(len, link.held_data))
            self._buffered -= sum(map(_event_size, link.held_events))
            link.held_data, link.held_events = [], []
            self._buffered_less()

    def _hold(self, message: bytes) -> None:
        """Keep an S-DATA indication nobody waits for in ``inbox``."""
        if self.inbox is _NO_DATA:
            self.inbox = collections.deque()
        self.inbox.append(message)
        self._buffered += len(message)
        self._check_buffered()

    def _check_buffered(self) -> None:
        if self._buffered >= self._ep.options.max_buffered_bytes:
            self._pause(_BUFFERED)

    def _waiting(self) -> asyncio.Future[bytes] | None:
        """The reader's future if it waits for data (taken: only one S-DATA resolves it)."""
        waiter = self._data_waiter
        if waiter is None:
            return None
        self._data_waiter = None
        return None if waiter.done() else waiter  # (done: its task was cancelled)

    def put_back(self, item: bytes) -> None:
        """An S-DATA indication handed to a reader that was cancelled before it took it:
        first in line again."""
        if self.inbox is _NO_DATA:
            self.inbox = collections.deque()
        self.inbox.appendleft(item)
        self._buffered += len(item)

    def pop_data(self) -> bytes:
        """The oldest S-DATA indication held (``inbox`` must not be empty)."""
        item = self.inbox.popleft()
        self._buffered -= len(item)
        if self._paused:
            self._buffered_less()
        return item

    def _buffered_less(self) -> None:
        if self._buffered < self._ep.options.max_buffered_bytes // 2:
            self._unpause(_BUFFERED)

    def data_waiter(self) -> asyncio.Future[bytes]:
        """The future the next S-DATA indication resolves, or the end of the session fails
        (StopAsyncIteration after a release).  Raises that at once if it has ended."""
        if self._failure is not None:
            raise copy_to_raise(self._failure)
        if self._flags & _RELEASED:
            raise StopAsyncIteration
        if self._data_waiter is not None and not self._data_waiter.done():
            raise RuntimeError("receive() called while another task is already waiting for"
                               " this session's data")  # fmt: skip
        if self._wrote:  # (nothing is held unless something was written since)
            if self._held is None:
                self._wrote = False  # (flush_out, inline)
            else:
                self.flush_out()  # what we sent may be what the peer answers
        waiter: asyncio.Future[bytes] = self._ep.new_future()
        self._data_waiter = waiter
        return waiter

    def _put_event(self, event: ev.Event) -> None:
        """Queue an indication for ``events()``.  Unread events are bounded: past
        ``Options.max_queued_events`` events or ``max_buffered_bytes`` octets of their user
        data, reading from TCP pauses until the application has read half of them."""
        x = self._more()
        if x.events is None:
            x.events = collections.deque()
        x.events.append(event)
        x.event_bytes += _event_size(event)
        self._events_bounded(x)
        if x.has_events is not None:
            x.has_events.set()

    def _events_bounded(self, x: Extra) -> None:
        """Past the limits of unread events: reading pauses.  An application that never
        read ``events()`` (a handler that only reads data) would stall its session there
        for good: the oldest of the events the agent answered already are dropped instead,
        counted and said once at WARNING; data and exception reports still pause."""
        options = self._ep.options
        events = x.events
        assert events is not None
        if len(events) < options.max_queued_events and (
            x.event_bytes < options.max_buffered_bytes
        ):
            return
        if not self._flags & _EVENTS_READ:
            while len(events) >= options.max_queued_events // 2 or (
                    x.event_bytes >= options.max_buffered_bytes // 2):  # fmt: skip
                old = next((e for e in events if not isinstance(e, _KEPT_UNREAD)), None)
                if old is None:
                    break
                events.remove(old)
                x.event_bytes -= _event_size(old)
                x.events_dropped += 1
            if x.events_dropped:
                self.warn("session %s (%s): the application reads no events(): %d events"
                          " the session answered itself dropped unread so far"
                          " (Options.max_queued_events %d; read session.events() to keep"
                          " them)", self.id, peer_text(self.peer), x.events_dropped,
                          options.max_queued_events)  # fmt: skip
            if len(events) < options.max_queued_events and (
                    x.event_bytes < options.max_buffered_bytes):  # fmt: skip
                return
        self._pause(_EVENTS)

    def next_event_nowait(self) -> ev.Event | None:
        self._flags |= _EVENTS_READ
        x = self._x
        if x is None or not x.events:
            return None
        event = x.events.popleft()
        x.event_bytes -= _event_size(event)
        options = self._ep.options
        if len(x.events) < options.max_queued_events // 2 and (
            x.event_bytes < options.max_buffered_bytes // 2
        ):
            self._unpause(_EVENTS)
        return event

    async def wait_event(self) -> None:
        """Wait until an event is queued or the session ends."""
        self._flags |= _EVENTS_READ
        x = self._more()
        if x.has_events is None:
            x.has_events = Signal()
        x.has_events.clear()
        await x.has_events.wait()

    def _resolve(self, event: ev.Event) -> bool:
        waiters = self._x.waiters if self._x is not None else None
        queue = waiters.get(type(event)) if waiters else None
        while queue:
            future = queue.popleft()
            if not future.done():
                future.set_result(event)
                return True
        return False

    def _session_over(self, failure: SessionLayerError | None) -> None:
        self.plain = False
        if failure is not None and self._failure is None and not self._flags & _RELEASED:
            self._failure = failure
        elif failure is None:
            self._flags |= _RELEASED
        x = self._x
        if x is not None and x.waiters:
            for queue in x.waiters.values():
                while queue:
                    future = queue.popleft()
                    if not future.done():
                        future.set_exception(
                            copy_to_raise(self._failure) if self._failure is not None
                            else SessionClosed("the session was released")
                        )
            x.waiters = None
        waiter = self._waiting()
        if waiter is not None:
            waiter.set_exception(copy_to_raise(self._failure) if self._failure is not None
                                 else StopAsyncIteration())  # fmt: skip
            waiter.exception()  # retrieved: the reader still gets it raised, if it awaits
        if x is not None:
            if x.tokens_changed is not None:
                x.tokens_changed.set()
            if x.has_events is not None:
                x.has_events.set()
            x.timers = None  # (nothing is waited for any more)
            if x.tasks:  # (an on_checkpoint still writing: nothing will confirm it now)
                tasks, x.tasks = x.tasks, None
                current = asyncio.current_task()
                for task in tasks:
                    if task is not current:
                        task.cancel()
            link = x.link
            if link is not None:
                for signal in (link.attached, link.retained):
                    if signal is not None:
                        signal.set()
                link.session_over()

    # ------------------------------------------------------------ requests

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` as a task of this session's: it is cancelled when the session is
        over (an ``on_checkpoint`` still running when the peer aborts, say), and what it
        ends with is logged, never left to asyncio's exception handler."""
        x = self._more()
        if x.tasks is None:
            x.tasks = set()
        task = self._ep.loop.create_task(coro)
        x.tasks.add(task)
        task.add_done_callback(functools.partial(_task_over, x))

    def call(self, request: Callable[[SessionMachine], T]) -> T:
        """A machine request that needs no token fetching; what it queued is written."""
        self.check_open()
        self.check_rollback()
        if self._flags & _DETACHED:
            raise StateError("the session is interrupted (waiting to be resumed): only send(),"
                             " send_typed(), send_expedited(), sync(), release() and the other"
                             " confirmed requests wait for the resume")  # fmt: skip
        try:
            return request(self.agent.machine)
        finally:
            self.flush()

    async def call_with_tokens(self, request: Callable[[SessionMachine], T],
                               needs: Token = EVERY, *, behind_replay: bool = True,
                               caller: Any = None,
                               timer: _AttachedTimer | None = None) -> T:  # fmt: skip
        """A machine request; when it needs tokens the peer holds, the agent asks for them
        (PLEASE TOKENS) and this waits for the peer's next input, then tries again.
        (Recovery) Detached, or with a replay still going out, it waits for both to end
        (``behind_replay=False``: a request the replay itself waits for).  ``caller``: the
        task the request is made for, when it is not the current one (seen_through).
        ``timer`` (a confirm's time limit) is stopped while it waits for the resume."""
        asked = Token(0)
        agent = self.agent
        try:
            while True:
                self.check_open()
                self.check_rollback(caller)  # (back to a checkpoint: told before anything)
                if self._flags & _DETACHED or (behind_replay and self.replaying):
                    link = self._link()
                    rollbacks = link.rollbacks
                    if timer is not None:
                        timer.stop()
                    await self.wait_attached()
                    if timer is not None:
                        timer.start()
                    if link.rollbacks != rollbacks:  # back to a checkpoint: the request is
                        raise self._void_request(link, caller)  # void
                    agent = self.agent
                    continue
                try:
                    return agent.call(request, needs)
                except TokensMissing as missing:
                    asked |= missing.tokens
                    self.flush()
                    await self.next_peer_input()
                finally:
                    self.flush()
        finally:
            if asked and not self.closed and agent is self.agent:
                agent.done_asking(asked)
                self.flush()

    async def next_peer_input(self) -> None:
        """Wait until the peer's next input was handled (or the session ended)."""
        x = self._more()
        if x.tokens_changed is None:
            x.tokens_changed = Signal()
        x.tokens_changed.clear()
        await x.tokens_changed.wait()

    async def confirm(self, kinds: tuple[type, ...], request: Callable[[SessionMachine], Any],
                      needs: Token = EVERY,
                      asks: tuple[str, Callable[[Any], ev.Event] | None] | None = None,
                      timeout: float | None = None,
                      what: str = "no answer to the request") -> Any:  # fmt: skip
        """Make a request and wait for the first event of one of ``kinds``; (recovery) if
        the transport connection is lost before it came, make it again once resumed.

        ``asks`` (recovery): the request is made exactly once (``Journal.requests``): its
        kind, and what the peer's agent answers it (from what ``request`` returned; None
        for the kinds only the peer can answer).  Once it went out it is seen through even
        if the caller stops waiting (:meth:`seen_through`).

        ``timeout``: when the confirm has not come that many seconds after the request was
        made (its tokens asked for, then the request sent), the session is aborted, saying
        ``what``: the connection's deadline, which holds even if the caller
        stops waiting once the request went out (:class:`_AttachedTimer`).  (Recovery) It
        counts only while the session is attached: not while it waits for a resume, and it
        starts over on the connection the request is made again on."""
        if asks is None or self.journal is None:
            return await self._confirm_loop(kinds, request, needs, None, None, None,
                                            timeout=timeout, what=what)  # fmt: skip
        return await self.seen_through(functools.partial(
            self._confirm_loop, kinds, request, needs, asks, timeout=timeout,
            what=what))  # fmt: skip

    @property
    def release_outstanding(self) -> bool:
        """Our FN is out on this connection and its answer has not come (STA03)."""
        return not self._flags & _DETACHED and self.agent.machine.state == "STA03"

    async def outcome(self, kinds: tuple[type, ...]) -> Any:
        """The answer to a request an earlier call made and stopped waiting for (its task
        was cancelled): the first event of ``kinds``.  None when the connection was lost
        first: the request went with it, make it again."""
        self.check_open()
        future: asyncio.Future[Any] = self._ep.new_future()
        x = self._more()
        if x.waiters is None:
            x.waiters = {}
        for kind in kinds:
            x.waiters.setdefault(kind, collections.deque()).append(future)
        try:
            return await future
        except Relink:
            return None
        finally:
            self._unwait(x, kinds, future)

    def _unwait(self, x: Extra, kinds: tuple[type, ...], future: asyncio.Future[Any]) -> None:
        for kind in kinds:  # (the session's end may have dropped every waiter)
            queue = x.waiters.get(kind) if x.waiters else None
            if queue is not None and future in queue:
                queue.remove(future)
        if not future.done():
            future.cancel()
        elif not future.cancelled():
            future.exception()  # (it failed while this wait was being cancelled)

    async def seen_through(self, run: Callable[[list[Asked | None], Any],
                                               Coroutine[Any, Any, T]]) -> T:  # fmt: skip
        """(Recovery) ``run(holder, caller)``, a confirmed request made exactly once, in a
        task of its own: once the request went out (``holder[0]`` is its ``Asked``) the
        peer may have it, so it is seen through (made again after a resume, its answer
        taken) even if the caller is cancelled; cancelled before, it is dropped."""
        holder: list[Asked | None] = [None]
        task = self._ep.loop.create_task(run(holder, asyncio.current_task()))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if holder[0] is None:
                task.cancel()
            # (shield stops looking at the task once it is cancelled: what the task ends
            # with is taken here, not left to asyncio's exception handler)
            task.add_done_callback(self._seen_through_alone)
            raise

    def _seen_through_alone(self, task: asyncio.Task[Any]) -> None:
        """A request seen through after its caller stopped waiting has ended: its confirm
        goes on ``events()`` (as a plain session's confirm nobody awaits does); a failure
        is the session's own (it ended: every other call says so)."""
        if task.cancelled() or task.exception() is not None:
            return
        result = task.result()
        if isinstance(result, ev.Event) and self._failure is None:
            self._put_event(result)

    async def _confirm_loop(self, kinds: tuple[type, ...],
                            request: Callable[[SessionMachine], Any], needs: Token,
                            asks: tuple[str, Callable[[Any], ev.Event] | None] | None,
                            holder: list[Asked | None] | None, caller: Any, *,
                            timeout: float | None = None,
                            what: str = "no answer to the request") -> Any:  # fmt: skip
        if timeout is None:
            return await self._confirm_again(kinds, request, needs, asks, holder, caller, None)
        timer = _AttachedTimer(self, timeout, kinds, what)
        if not self._flags & _DETACHED and not self.replaying:
            timer.start()
        try:
            result = await self._confirm_again(kinds, request, needs, asks, holder, caller,
                                               timer)  # fmt: skip
        except asyncio.CancelledError:
            if not timer.out:  # (nothing outstanding: no deadline left behind)
                timer.stop()
            raise
        except BaseException:
            timer.stop()
            raise
        timer.stop()
        return result

    async def _confirm_again(self, kinds: tuple[type, ...],
                             request: Callable[[SessionMachine], Any], needs: Token,
                             asks: tuple[str, Callable[[Any], ev.Event] | None] | None,
                             holder: list[Asked | None] | None, caller: Any,
                             timer: _AttachedTimer | None) -> Any:  # fmt: skip
        """The request, made again after each resume until its confirm comes (see confirm)."""
        try:
            while True:
                rollbacks = self._x.link.rollbacks if self._x is not None and self._x.link else 0
                try:
                    return await self._confirm(kinds, request, needs, asks, holder, caller,
                                               timer)  # fmt: skip
                except Relink:
                    if timer is not None:
                        timer.stop()  # (the time of the outage is the reconnect's)
                    await self.wait_attached()
                    if timer is not None:
                        timer.start()
                    link = self.link
                    if link is not None and link.rollbacks != rollbacks:
                        # Back to a checkpoint: what the request was about is gone with it.
                        raise self._void_request(link, caller) from None
                    asked = holder[0] if holder is not None else None
                    if asked is not None and asked.settled is not None:
                        return asked.settled  # the peer had answered: made up (resumed)
        except BaseException:
            asked = holder[0] if holder is not None else None
            if asked is not None and not asked.out:
                self.forget_request(holder)  # (it did not go out again: none will answer)
            raise

    def note_request(self, holder: list[Asked | None] | None, kind: str,
                     answer: ev.Event | None = None) -> None:  # fmt: skip
        """(Recovery) A confirmed request made exactly once went out (``holder[0]`` None:
        the first time; else again, after a resume)."""
        journal = self.journal
        if holder is None or journal is None:
            return
        requests = journal.more_requests()
        asked = holder[0]
        if asked is None:
            holder[0] = requests.ask(kind, answer)
        else:
            requests.again(asked)

    def forget_request(self, holder: list[Asked | None] | None) -> None:
        """(Recovery) The request in ``holder`` will not be made again."""
        journal = self.journal
        asked = holder[0] if holder is not None else None
        if asked is not None and journal is not None and journal.requests is not None:
            journal.requests.forget(asked)

    async def _confirm(self, kinds: tuple[type, ...], request: Callable[[SessionMachine], Any],
                       needs: Token,
                       asks: tuple[str, Callable[[Any], ev.Event] | None] | None = None,
                       holder: list[Asked | None] | None = None,
                       caller: Any = None, timer: _AttachedTimer | None = None,
                       ) -> Any:  # fmt: skip
        """Make ``request`` once and wait for its confirm (the first event of ``kinds``).

        The confirm is waited for from the moment the request went out, on the transport
        connection it went out on, not before: a request still waiting to be made (for
        the resume, behind the replay, for the peer's tokens) when a connection is lost
        is not told to make itself again (``Relink``, :meth:`_detach`), it goes out once,
        where it goes out.  (Nothing is read between the request and the wait: its
        confirm cannot come first.)"""
        result = await self.call_with_tokens(request, needs, caller=caller, timer=timer)
        if timer is not None:
            timer.out = True  # (its deadline holds from here, even for a cancelled caller)
        if asks is not None:
            what, answer = asks
            self.note_request(holder, what, answer(result) if answer is not None else None)
        future: asyncio.Future[Any] = self._ep.new_future()
        x = self._more()
        if x.waiters is None:
            x.waiters = {}
        for kind in kinds:
            x.waiters.setdefault(kind, collections.deque()).append(future)
        try:
            self.check_open()  # (the request's own flush may have ended the session)
            return await future
        finally:
            self._unwait(x, kinds, future)

    async def open(self, request: Callable[[SessionMachine], Any]) -> Any:
        """(Initiator) S-CONNECT: make ``request`` as soon as COTP CC has come (in the read
        that brought it: no wait for a task to run) and return the first ConnectConfirm or
        RefuseConfirm.  Raises ConnectionError when TCP closes before the CC, and what the
        request raises."""
        future: asyncio.Future[Any] = self._ep.new_future()
        x = self._more()
        x.connecting = (request, future)
        if self.agent.cn_ready:  # the CC came already (or the CR waits: fast connect)
            self._connect_now(x)
            self.flush()
        elif self.is_closed:
            x.connecting = None
            future.set_exception(ConnectionError("connection closed"))
        try:
            return await future
        finally:
            x.connecting = None
            waiters = x.waiters
            if waiters:  # (the session's end may have dropped every waiter)
                for kind in (ev.ConnectConfirm, ev.RefuseConfirm):  # (as in confirm)
                    queue = waiters.get(kind)
                    if queue is not None and future in queue:
                        queue.remove(future)
                if not any(waiters.values()):
                    x.waiters = None  # (nothing else waits: a session keeps no empty deques)
            if not future.done():
                future.cancel()
            elif not future.cancelled():
                future.exception()  # the request failed before its confirm was awaited

    def _connect_now(self, x: Extra) -> None:
        """Make the S-CONNECT request ``open`` holds; its future waits for the confirm."""
        assert x.connecting is not None
        request, future = x.connecting
        x.connecting = None
        if x.waiters is None:
            x.waiters = {}
        for kind in (ev.ConnectConfirm, ev.RefuseConfirm):
            x.waiters.setdefault(kind, collections.deque()).append(future)
        try:
            self.check_open()
            self.agent.call(request)
        except Exception as exc:  # (what confirm() would raise from the request)
            if self.agent.machine.is_ending:
                # What came with the CC was a protocol error (or a DR): the abort it caused,
                # dispatched next, fails the future with its reason, not this "SCONreq is
                # not allowed in state STA16".  (Checked here: no call on the way that works.)
                return
            if not future.done():
                future.set_exception(exc)

    def abort_session(self, failure: SessionAborted, user_data: bytes | None = None) -> None:
        """S-U-ABORT (or a local decision to end it): AB, then the connection closes, when
        the peer closes it or at TIM (X.225 7.9: the AB's sender waits for the transport
        disconnect, ``abort_timeout``).  Closing at once would reset a connection the peer
        is still sending on: its TCP would then drop the AB unread, and the reason with it."""
        if self.closed:
            return
        agent = self.agent
        agent.abort(user_data, self._ep.loop.time())
        self._session_over(failure)
        self.flush()  # (arms the timer at TIM)
        if not agent.machine.is_ending or agent.wants_close or agent.machine.get_timer() is None:
            self._close_transport()  # (no AB went out)
        else:
            self._linger()

    def _linger(self) -> None:
        """(Server) Our AB went out: a FIN behind it, then what the peer still sends is
        read and dropped (the machine's STA16) until it closes, or TIM closes.  TLS has no
        half close in asyncio; it closes at once, and its shutdown reads on until the
        peer's close_notify (the peer reads the AB, as over TCP).  A client's abort closes
        at once too: an application may end its event loop right after it, which would
        leave the transport unclosed (its server reads the AB unless it was sending)."""
        transport = self.transport
        if transport is None or transport.is_closing() or self._flags & _EOF_SENT:
            return
        lingering = self._ep.lingering
        try:
            eof = lingering is not None and transport.can_write_eof()
        except NotImplementedError:
            eof = False
        if not eof or lingering is None:
            self._close_transport()
            return
        lingering.add(self)
        self.plain = False
        self.flush_out()
        self._flags |= _EOF_SENT
        try:
            transport.write_eof()
        except OSError:  # (the peer reset it already: nothing to wait for)
            transport.abort()
            return
        self._unpause(_BUFFERED | _WRITING | _EVENTS)  # (to see the peer's FIN)

    # ------------------------------------------------------------ sending

    async def drain(self) -> None:
        """Wait while the transport's write buffer is above its high-water mark."""
        if self.write_paused:  # connection_lost resumes writing too
            x = self._more()
            if x.drained is None:
                x.drained = Signal()
            await x.drained.wait()

    def _ack_soon(self, journal: Journal) -> None:
        """(Recovery) Data is not covered by an acknowledgement point: one is due now
        (enough octets), else the timer sets it after ``ack_interval``."""
        now = self._ep.loop.time()
        if journal.since is None:
            journal.since = now
        if journal.unmarked >= self._ep.ack_bytes and not self._flags & _DETACHED:
            self.agent.acknowledge(now)
            self.flush()
        else:
            self._rearm()

    async def send_general(self, payload: bytes) -> None:
        """S-DATA off the fast path: through the machine, or (detached) into the journal
        only, to be replayed when the session resumes."""
        if len(payload) > self._data_max:
            raise self.too_large(len(payload))
        if self._queued(payload):
            return
        await self.call_with_tokens(lambda m: m.send_data(payload), EVERY & Token.DATA)
        self._kept(payload)

    def too_large(self, n: int, more: int = 0) -> ParameterError:
        """A message the peer would abort the session for (AB 0x11): refused unsent."""
        return ParameterError(
            f"a message of {n} octets is more than the peer takes ({self._data_max + more} at"
            f" most: its max_tsdu_size is {self.agent.peer_max_tsdu}); nothing was sent"
        )

    def send_typed(self, payload: bytes) -> None:
        """S-TYPED-DATA (no token needed); a resumable session keeps it in its journal like
        S-DATA, in the same count and order (while detached: only there, until resumed)."""
        if len(payload) > self._data_max + _TYPED_MORE:
            raise self.too_large(len(payload), _TYPED_MORE)
        item = Typed(payload) if self.journal is not None else payload
        if not self._units() & FunctionalUnit.TYPED_DATA:
            # (what the machine says, before a detached session keeps what it cannot send)
            raise FunctionalUnitError("S-TYPED-DATA needs the typed data functional unit")
        if self._queued(item):
            return
        self.call(lambda m: m.send_typed_data(payload))
        self._kept(item)

    async def send_expedited(self, payload: bytes) -> None:
        """S-EXPEDITED-DATA.  A resumable session keeps it until the peer confirmed it (a
        count and a journal of its own, at most ``MAX_EXPEDITED`` waiting: then this
        waits), and while detached or replaying it waits for the resume there: each arrives
        exactly once (docs/recovery.md)."""
        journal = self.journal
        if journal is None:
            self.call(lambda m: m.send_expedited(payload))
            return
        ex = journal.more_expedited()
        while True:
            self.check_open()
            self.check_rollback()
            if not self._units() & FunctionalUnit.EXPEDITED:
                raise FunctionalUnitError("S-EXPEDITED-DATA needs the expedited data unit")
            if len(payload) > _EXPEDITED_OCTETS:  # (what encoding the EX would say)
                raise EncodeError(f"EX: {len(payload)} octets of user data, at most"
                                  f" {_EXPEDITED_OCTETS}")  # fmt: skip
            if not ex.full:
                break
            link = self._link()
            if link.retained is None:
                link.retained = Signal()
            link.retained.clear()
            await link.retained.wait()
        if self._flags & _DETACHED or self.replaying:
            ex.append(payload)
            ex.queued += 1
            x = self._x
            if x is not None and x.replay is not None and not self._flags & _DETACHED:
                x.replay.append(_Expedited(payload))  # behind what is replayed
                self._pump_replay()
            return
        self.call(lambda m: m.send_expedited(payload))
        ex.append(payload)
        if journal.since is None:
            self._ack_soon(journal)  # (confirmed by the next acknowledgement point)

    def _units(self) -> int:
        """The session's functional units: (recovery) as agreed when it was opened, not
        the machine's of a resume try still under way (none agreed yet)."""
        journal = self.journal
        if journal is not None:
            return journal.units
        return int(self.agent.machine.functional_units)

    def _queued(self, item: bytes) -> bool:
        """(Recovery) Detached, or replaying: ``item`` goes into the journal only (and behind
        what is replayed), not through the machine now.  False: send it now."""
        journal = self.journal
        if journal is None or not (self._flags & _DETACHED or self.replaying):
            return False
        self.check_open()
        self.check_rollback()
        journal.append(item)
        x = self._x
        if x is not None and x.replay is not None and not self._flags & _DETACHED:
            x.replay.append(item)  # behind what is replayed
            journal.queued += 1
            self._pump_replay()
        return True

    def _kept(self, item: bytes) -> None:
        """(Recovery) ``item`` went out through the machine: kept until the peer confirms it."""
        journal = self.journal
        if journal is not None:
            journal.append(item)
            if journal.since is None or journal.unmarked >= self._ep.ack_bytes:
                self._ack_soon(journal)

    async def retained(self) -> None:
        """(Recovery) Wait while the journal is full (``Options.retention``), or end the
        session when ``retention_overflow`` is "fail"."""
        journal = self.journal
        while journal is not None and journal.full:
            self.check_open()
            if self._ep.options.retention_overflow == "fail":
                why = (f"more than {self._ep.options.retention} octets sent and not confirmed"
                       " by the peer (retention limit; retention_overflow='fail')")  # fmt: skip
                # (Detached: the session can no longer be resumed, and says so; the peer
                # learns it at its resume, or when its wait for one expires.)
                failure = ResumeRefused(why, "retention_overflow") if (
                    self._flags & _DETACHED) else SessionAborted(
                    why, AbortReason.TRANSPORT_RELEASED | AbortReason.NO_REASON)  # fmt: skip
                self.abort_session(failure)
                raise copy_to_raise(failure)
            link = self._link()
            if link.retained is None:
                link.retained = Signal()
            link.retained.clear()
            await link.retained.wait()

    def write_data(self, data: bytes, keep: bool = True) -> None:
        """S-DATA on the fast path (only while ``plain`` holds, so the transport is open):
        framed and written (or held back to share a write), and with ``keep`` kept in the
        journal of a resumable session (after it was framed: an acknowledgement point it
        triggers goes out behind it; a replayed message is there already).

        A message goes straight out when nothing was written since the last flush_out;
        the ones that follow are held and written together when the loop comes round (or
        past the hold limit), so a burst of small messages costs few system calls while a
        request waits for nothing.  flush_out also runs when the session starts waiting
        for data (``data_waiter``): a request-response exchange never schedules it.
        (One function, no call per message beyond it: this is the data path.)
        """
        tpdu_size = self._tpdu_size
        n = len(data)
        if n > self._data_max and keep:  # (a replayed message was checked when sent)
            raise self.too_large(n)
        large = n >= _COPY_BELOW
        if large:  # the data is not copied here: its pieces go to transport.writelines
            pieces = frame_pieces(data, tpdu_size)
            size = sum(map(len, pieces))
        elif n + SINGLE_SLACK <= tpdu_size:  # one TPDU: frame_data, inline
            frame = pack_single(TPKT_V3, n + SINGLE_HEAD, SINGLE_PREFIX) + data
            size = n + SINGLE_HEAD
        else:
            frame = frame_data(data, tpdu_size)
            size = len(frame)
        tap = self._ep.tap
        if tap is not None:
            tap("out", b"".join(pieces) if large else frame)
        held = self._held
        if held is None and not self._wrote:  # straight out (a request, a response)
            self._wrote = True
            self.bytes_out += size
            if large:
                self.transport.writelines(pieces)  # type: ignore[union-attr]
            else:
                self.transport.write(frame)  # type: ignore[union-attr]
        else:
            if held is None:
                held = self._held = []
                self._ep.loop.call_soon(self.flush_out)
            if large:
                held.extend(pieces)
            else:
                held.append(frame)
            self._held_size += size
            if self._held_size >= self._ep.hold_limit:
                self._write_held()
        journal = self.journal
        if journal is not None and keep:  # (Journal.append, inline)
            journal.items.append(data)
            journal.sent += 1
            journal.sent_bytes += n + OVERHEAD
            if journal.since is None or (
                journal.sent_bytes - journal.marked_bytes >= self._ep.ack_bytes
            ):
                self._ack_soon(journal)

    def flush_out(self) -> None:
        """Write the frames ``write_data`` held back; the next one may go straight out."""
        self._wrote = False
        transport = self.transport
        if transport is not None and transport.is_closing():
            self._gone()
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
            if not self._flags & _EOF_SENT:
                self.transport.writelines(held)  # (it takes the pieces, not the list)
        else:
            self._gone()
        held.clear()

    def _gone(self) -> None:
        """A write found the transport closing while the session thought it open (a write
        failed: asyncio gave the transport up and connection_lost is on its way).  No more
        straight writes into it: S-DATA takes the general path, which looks before it
        writes (a resumable session keeps it in its journal).  And a sender waits in
        ``drain()`` until connection_lost has run: a loop of sends that each returned at
        once would never let it run (it spun, the peer's AB unread, for good)."""
        self.plain = False
        if self.transport is not None and not self._flags & _CLOSED and not self.write_paused:
            self.pause_writing()  # (connection_lost resumes writing)

    def _write(self, data: bytes) -> None:
        if self._held:
            self.flush_out()  # keep the order of what was sent
        if self._flags & _EOF_SENT:
            return  # (lingering after our AB: nothing more goes out)
        if self.transport is not None and not self.transport.is_closing():
            tap = self._ep.tap
            if tap is not None:
                tap("out", data)
            self.bytes_out += len(data)
            self.transport.write(data)
            self._check_written()
        else:
            self._gone()

    def _write_all(self, out: list[bytes]) -> None:
        """:meth:`_write` of each of ``out``, in one transport write."""
        if self._held:
            self.flush_out()
        if self._flags & _EOF_SENT:
            return
        if self.transport is not None and not self.transport.is_closing():
            tap = self._ep.tap
            for data in out:
                if tap is not None:
                    tap("out", data)
                self.bytes_out += len(data)
            self.transport.writelines(out)
            self._check_written()
        else:
            self._gone()

    def _check_written(self) -> None:
        transport = self.transport
        assert transport is not None
        if self.write_paused and not self._paused & _WRITING and (
            transport.get_write_buffer_size() > 2 * self._ep.options.write_buffer_high
        ):
            # A peer that does not read must not make us queue answers (to its PT+MIP,
            # CD, ...) without limit: read no more of what it sends until it has read
            # what we wrote.
            self._pause(_WRITING)

    def close(self) -> None:
        """Close the TCP connection (after what was written)."""
        self._close_transport()

    def abort(self) -> None:
        """Drop the TCP connection at once."""
        if self.transport is not None:
            self.transport.abort()

    def _close_transport(self) -> None:
        """Close TCP after what was written (a reset when the agent gave up on the
        connection and wrote nothing); a peer that does not read what is left is cut off
        after ``release_timeout``."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self.plain = False
        self.flush_out()
        transport.close()
        if transport.get_write_buffer_size():
            self._ep.loop.call_later(self._ep.options.release_timeout, transport.abort)

    # ------------------------------------------------------------ recovery

    def _link(self) -> LinkState:
        x = self._more()
        if x.link is None:
            x.link = LinkState()
        return x.link

    def _resumable(self) -> bool:
        """The transport connection is gone but the session is not: resume it."""
        return (
            self.journal is not None
            and self._failure is None
            and not self._flags & (_RELEASED | _MOVED)
            and not self.agent.machine.is_closed
            and (self.agent.link_lost is not None or not self.agent.aborting)
        )

    def _detach(self, reason: str) -> None:
        """(Recovery) The transport connection is lost, the session waits to be resumed:
        requests waiting for a confirm are made again then, data waits in the journal."""
        if self._flags & _DETACHED:
            return
        self._flags |= _DETACHED
        self.plain = False
        if self._x is not None:
            self._x.replay = None  # (still in the journal: the next resume replays it)
        link = self._link()
        machine = self.agent.machine
        if machine.activity_in_progress:
            # The next connection resumes it (S-ACTIVITY-RESUME) before anything is replayed:
            # the machine's, whatever an earlier loss noted (a checkpoint resume's act1 stayed
            # while the application had started act2).
            link.activity = (machine.activity_id or b"", max(machine.vms - 1, 0))
        link.lost_at = self._ep.loop.time()
        link.reason = reason
        link.interruptions += 1
        if link.attached is None:
            link.attached = Signal()
        link.attached.clear()
        x = self._more()
        x.timers = None  # (the requests whose callers wait start theirs again: Relink)
        if x.waiters:
            for queue in x.waiters.values():
                while queue:
                    future = queue.popleft()
                    if not future.done():
                        future.set_exception(Relink())
                        future.exception()  # (retrieved: confirm() makes its request again)
            x.waiters = None
        if x.tokens_changed is not None:
            x.tokens_changed.set()
        if link.retained is not None:
            link.retained.set()
        self._put_event(Interrupted(reason=reason))
        if log.isEnabledFor(logging.INFO):  # (self.log makes an adapter: only when needed)
            self.log.info("session %s: interrupted (%s); waiting to resume", self.id, reason)
        on_lost = self._ep.on_link_lost if link.on_lost is None else link.on_lost
        if on_lost is not None:
            on_lost(self)

    def _fail_connecting(self) -> None:
        """(Recovery) The connection of a resume try is gone: its S-CONNECT will have no
        confirm (the try fails now, not at its timeout)."""
        self._fail_waiters((ev.ConnectConfirm, ev.RefuseConfirm),
                           lambda: ConnectionError("connection closed during the resume"))

    def _fail_waiters(self, kinds: tuple[type, ...], error: Callable[[], BaseException]) -> None:
        """The requests waiting for a confirm of ``kinds`` will have none: each fails with
        a new ``error()``."""
        waiters = self._x.waiters if self._x is not None else None
        for kind in kinds:
            queue = waiters.get(kind) if waiters else None
            while queue:
                future = queue.popleft()
                if not future.done():
                    future.set_exception(error())

    def drop_link(self, reason: str) -> None:
        """(Recovery) Give up the current transport connection now (a newer one takes the
        session over, or the link is dead): its callbacks go nowhere, the session detaches."""
        transport = self.transport
        if transport is not None and not self._flags & _CLOSED:
            transport.set_protocol(_Sink())
            transport.abort()
        self._cancel_timer()
        self._held = None
        self.clear()
        self._flags |= _CLOSED
        self.plain = False
        if self._resumable():
            self._detach(reason)

    def _new_link(self) -> None:
        """Forget the transport connection that was: a new one carries the session."""
        self._flags &= ~_CLOSED
        self._cancel_timer()
        self.write_paused = False
        self._paused = 0
        self.clear()
        self._wrote = False
        self._held = None
        self._held_size = 0
        self.plain = False
        self._general = False
        self._tpdu_size = 128
        x = self._x
        if x is not None:
            x.connecting = None
            if x.closed is not None:
                x.closed.clear()  # (wait_closed waits for this one to go)

    def prepare_link(self, agent: SessionAgent) -> None:
        """(Client) The next transport connection of this detached session uses ``agent``."""
        _carry(self.agent, agent)
        self.agent = agent
        self.drop_held()  # (an earlier try's)

    def adopt(self, other: Connection) -> None:
        """(Server) ``other`` is the new transport connection this detached session resumes
        on (its CN was just taken): its transport and agent are this session's from now."""
        transport = other.hand_over()
        self.bytes_in += other.bytes_in  # (its CR and CN: on TCP, for this session)
        self.bytes_out += other.bytes_out
        self.drop_held()  # (an earlier try's, never counted: the client sends it again)
        self._new_link()
        _carry(self.agent, other.agent)
        self.agent = other.agent
        # (The session's journal goes with it at once: the resume's welcome, which the
        # agent's accept makes, carries its counts, and takes the hello's.)
        self.agent.journal = self.journal
        self.transport = transport
        if self._ep.tls:  # (see peer: ``other`` kept it, its transport forgets it)
            self._more().peer = other.peer
        transport.set_protocol(self)

    def enable_recovery(self, journal: Journal) -> LinkState:
        """The session was agreed resumable: ``journal`` keeps what it sends and counts
        what it receives from now on."""
        # What came in the read that brought the AC (a server's greeting) counts too: the
        # application has not read it yet (connect() had not returned), the peer sent it.
        x = self._x
        typed = 0 if x is None or not x.events else sum(
            isinstance(e, ev.TypedDataIndication) for e in x.events)  # fmt: skip
        journal.received = self.messages_in + typed
        journal.units = int(self.agent.machine.functional_units)
        self.journal = journal
        self.agent.journal = journal
        return self._link()

    def end(self, failure: SessionLayerError | None) -> None:
        """End the session now with ``failure`` (a detached session that will not resume;
        None: the peer said it was released, the DN lost with the connection)."""
        self._session_over(failure)
        if self.transport is not None and not self._flags & _CLOSED:
            self.transport.abort()

    def check_rollback(self, caller: Any = None) -> None:
        """(Sender) Raise the CheckpointRestored due to the sender, once (not to a task
        that its pending request told already; ``caller``: the task a request is made for,
        when it is not the current one, see seen_through)."""
        if self._flags & _ROLLBACK_SEND:
            self._flags &= ~_ROLLBACK_SEND
            self.flush()  # (the fast path may go on)
            link = self._link()
            told, link.told = link.told, None
            if told is None or told is not (caller or asyncio.current_task()):
                raise _rollback_error(link.last_rollback)

    def _void_request(self, link: LinkState, caller: Any = None) -> CheckpointRestored:
        """A request pending across a resume from a checkpoint: what it was about is gone.
        Its task (``caller``, the one that made it) is told now; another task that sends is
        still told by check_rollback."""
        link.told = caller if caller is not None else asyncio.current_task()
        return _rollback_error(link.last_rollback)

    def hand_over(self) -> asyncio.Transport:
        """(Server) This connection's transport (and agent) go to the session it resumes
        (``adopt``): it is inert from now on."""
        transport = self.transport
        assert transport is not None
        self.handshake_over()
        self._flags |= _MOVED | _CLOSED
        self.transport = None
        self.plain = False
        self._cancel_timer()
        return transport

    def resumed(self, outcome: str, replay: list[bytes], attempts: int = 1,
                checkpoint: Checkpoint | None = None, tell_reader: bool = True,
                hold: bool = False) -> None:  # fmt: skip
        """(Recovery) The session is back on the current transport connection.  With
        ``hold`` (an activity was in progress) nothing is replayed or sent until the peer's
        S-ACTIVITY-RESUME has come."""
        self._flags &= ~_DETACHED
        link = self._link()
        link.resumes += 1
        downtime = self._ep.loop.time() - link.lost_at if link.lost_at else 0.0
        journal = self.journal
        replayed = len(replay)
        replayed_bytes = journal.replayed_bytes if journal is not None and replayed else 0
        self.agent.journal = journal
        self.agent.defer_checkpoints = link.defer_checkpoints
        if journal is not None and outcome == "resumed":
            replay, hold = self._resumed_requests(journal, replay, hold)
        if replay or hold:
            self._more().replay = collections.deque(replay)
        link.awaiting_resume = hold
        if self._buffered >= self._ep.options.max_buffered_bytes:
            self._pause(_BUFFERED)
        x = self._more()
        if x.events:
            self._events_bounded(x)
        event = Resumed(outcome=outcome, downtime=downtime, replayed_messages=replayed,
                        replayed_bytes=replayed_bytes, attempts=attempts,
                        checkpoint=checkpoint)  # fmt: skip
        link.last_rollback = event if outcome == "checkpoint" else link.last_rollback
        if outcome == "checkpoint" and tell_reader:
            link.rollback = event
            link.rollbacks += 1
            link.told = None
            link.rollback_at = self.messages_in  # raised after what came before the loss
            self.rolling_back = True
            self._flags |= _ROLLBACK_SEND
            waiter = self._waiting() if not self.inbox else None
            if waiter is not None:  # the reader waits: it learns it now
                self.rolling_back = False
                link.rollback = None
                waiter.set_exception(_rollback_error(event))
        self._put_event(event)
        if link.held_data or link.held_events:  # (what came with the AC: after the rollback)
            self._deliver_held(link)
        if log.isEnabledFor(logging.INFO):  # (self.log makes an adapter: only when needed)
            self.log.info("session %s: resumed (%s) after %.3f s, %d messages replayed",
                          self.id, outcome, downtime, replayed)  # fmt: skip
        if x.tokens_changed is not None:
            x.tokens_changed.set()
        self.start_liveness(flush=True)
        self._pump_replay()
        if link.attached is not None and not self.replaying:
            link.attached.set()  # (else once the replay is out: see _pump_replay)

    def _resumed_requests(self, journal: Journal, replay: list[bytes], hold: bool,
                          ) -> tuple[list[bytes], bool]:  # fmt: skip
        """(Recovery, a live resume) Our requests the peer had answered, their answers lost
        with the connection, get those answers now (made up as the peer's agent gave them:
        ``Journal.requests``); the expedited messages the peer lacks go first in the replay
        (expedited data may overtake).  An activity one of those answers ended is not
        waited for (``hold``): it is over on both sides."""
        requests = journal.requests
        if requests is not None:
            for asked in requests.take_settled():
                self._settle(asked)
            if requests.ended_activity:
                hold = False
                self._link().activity = None
        ex = journal.expedited
        if ex is not None:
            again = ex.replay()
            if again:
                replay = [_Expedited(item) for item in again] + replay
            if ex.items and journal.since is None:
                journal.since = self._ep.loop.time()  # (they want a point of their own)
        return replay, hold

    def _settle(self, asked: Asked) -> None:
        """(Recovery) ``asked`` was answered by the peer and the answer lost: take the one
        made up for it (its waiter, in ``confirm``, returns it after the resume)."""
        event = asked.settled
        if isinstance(event, ev.ResyncConfirm):  # (the tokens this side holds now)
            event = asked.settled = ev.ResyncConfirm(
                serial=event.serial, tokens=self.agent.machine.tokens_owned,
                user_data=event.user_data, second_serial=event.second_serial)  # fmt: skip
        serial = getattr(event, "serial", None)
        if serial is not None:
            self.agent.last_sync = int(serial)
        if event is not None:
            self._note(event)

    def _pump_replay(self) -> None:
        """(Recovery) Send what the peer lacks again, in order, as fast as the transport
        takes it (what the application sends meanwhile waits behind it, in the journal)."""
        x = self._x
        replay = x.replay if x is not None else None
        if replay is None or self._flags & (_DETACHED | _CLOSED):
            return
        if x is not None and x.link is not None and x.link.awaiting_resume:
            return  # (the peer's S-ACTIVITY-RESUME first)
        agent = self.agent
        journal = self.journal
        assert journal is not None
        machine = agent.machine
        # (Not while the peer's checkpoint waits for our store, STA10A, say: once it is
        # back in data transfer, the next dispatch pumps again.)
        self._flags |= _PUMPING
        try:
            while replay and not self.write_paused and machine.may_send_data:
                item = replay.popleft()
                if type(item) is _Expedited:
                    machine.send_expedited(bytes(item))
                    journal.more_expedited().queued -= 1
                    self.flush()
                    continue
                journal.queued -= 1
                if type(item) is Typed:
                    machine.send_typed_data(bytes(item))
                    self.flush()
                elif agent.plain:
                    self.write_data(item, keep=False)
                else:
                    machine.send_data(item)
                    self.flush()
        finally:
            self._flags &= ~_PUMPING
        if not replay:
            assert x is not None
            x.replay = None
            self.flush()  # the fast path may go on (see flush)
            link = x.link
            if link is not None and link.attached is not None:
                link.attached.set()  # the requests that waited behind the replay go now

    @property
    def replaying(self) -> bool:
        x = self._x
        return x is not None and x.replay is not None

    async def wait_attached(self) -> None:
        """Wait until a detached session is resumed and what it replays is out (or it ends):
        a request made before then would overtake the replay (a MAP that confirms less than
        it says, an FN before the data)."""
        while (self._flags & _DETACHED or self.replaying) and self._failure is None and (
                not self._flags & _RELEASED):  # fmt: skip
            link = self._link()
            if link.attached is None:
                link.attached = Signal()
            await link.attached.wait()

    def take_rollback(self) -> CheckpointRestored | None:
        """(Recovery) The CheckpointRestored due to the reader once it has read what came
        before the loss (None until then)."""
        link = self.link
        if link is None or link.rollback is None:
            self.rolling_back = False
            return None
        if self.messages_in - len(self.inbox) < link.rollback_at:
            return None
        event: Resumed = link.rollback
        link.rollback = None
        self.rolling_back = False
        return _rollback_error(event)

    @property
    def link(self) -> LinkState | None:
        x = self._x
        return x.link if x is not None else None

    # ------------------------------------------------------------ the connect handshake

    def handshake_over(self) -> None:
        """(Responder) The CN was answered (AC or RF)."""
        self._handshake_over()

    def _handshake_over(self) -> None:
        if self._flags & _WAITING:  # (gone while queued for a handshake slot)
            self._leave_queue()
        if self._flags & _HANDSHAKE:
            self._flags &= ~_HANDSHAKE
            callback = self._ep.on_handshake_over
            if callback is not None:
                callback(self)

    def start_liveness(self, *, flush: bool = False) -> None:
        """The session is open: the timer is re-armed for what the peers agreed (keepalive
        probes, the idle timeout).  Toward a peer that does not answer our probes (an OSI
        stack: an empty PT is not valid X.225 in every state) TCP keepalive watches the
        connection instead.  ``flush``: and what the agent queued is written (the
        responder's AC; :meth:`flush` re-arms the timer itself)."""
        # The fast path reads an open session's stream: RFC 1006 keeps no readers meanwhile
        # (the next read that needs it makes them again).
        agent = self.agent
        agent.rfc.compact()
        peer = agent.peer_max_tsdu
        if peer is None or agent.machine.tsdu_max_send:  # (segmented: the SSDU limit)
            self._data_max = _NO_LIMIT
        else:
            limit = _LIMITS.get(peer)
            if limit is None:
                if len(_LIMITS) >= 64:
                    _LIMITS.clear()
                limit = _LIMITS[peer] = max(peer - _DATA_OVERHEAD, 0)
            self._data_max = limit
        interval = self._ep.options.keepalive_interval
        if interval is not None and not self.agent.keepalive and self.transport is not None:
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                tcp_keepalive(sock, interval)
        if flush:
            self.flush()
        else:
            self._rearm()

    # ------------------------------------------------------------ the timer

    def _next_deadline(self) -> float | None:
        deadline = self.agent.next_deadline()
        x = self._x
        if x is not None and x.timers:  # (a release waiting for its answer)
            for timer in x.timers:
                if timer.at is not None and (deadline is None or timer.at < deadline):
                    deadline = timer.at
        if self._paused:
            check = self._more().paused_check
            if deadline is None or check < deadline:
                deadline = check
        return deadline

    def _rearm(self) -> None:
        """Arm the one timer at the earliest deadline.  Reads only move the agent's
        last-heard time: a timer that fires early re-arms itself for the new deadline
        (no re-arm per read)."""
        if self._flags & _CLOSED:  # (is_closed)
            return
        deadline = self._next_deadline()
        timer = self._timer
        if timer is not None:
            if deadline is not None and timer.when() <= deadline:
                return  # it fires first and looks again
            timer.cancel()
            self._timer = None
        if deadline is not None:
            self._timer = self._ep.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        try:
            now = self._ep.loop.time()
            if self._paused and now >= self._more().paused_check:
                if peer_gone(self.transport):  # nothing is read while paused: look
                    self.abort()
                    return
                self._more().paused_check = now + _PAUSED_CHECK
            if self._paused & _LOCAL:
                self.agent.heard(now)  # our reader is slow: the peer's silence is no fault
            x = self._x
            if x is not None and x.timers and self._timed_out(x.timers, now):
                return
            self.agent.handle_timer(now)
            self.flush()
        except Exception as exc:
            self.internal_error(exc)

    def start_timer(self, timer: _AttachedTimer, delay: float) -> None:
        """A request's deadline (:class:`_AttachedTimer`) runs from now, on the one timer."""
        if self.closed:
            return
        timer.at = self._ep.loop.time() + delay
        x = self._more()
        if x.timers is None:
            x.timers = []
        if timer not in x.timers:
            x.timers.append(timer)
        self._rearm()

    def stop_timer(self, timer: _AttachedTimer) -> None:
        x = self._x
        if x is not None and x.timers is not None and timer in x.timers:
            x.timers.remove(timer)

    def _timed_out(self, timers: list[_AttachedTimer], now: float) -> bool:
        """A request's deadline passed with no answer: the session is aborted (the waiting
        caller, if any, raises that)."""
        for timer in timers:
            if timer.at is not None and now >= timer.at:
                failure = SessionAborted(
                    timer.what, AbortReason.TRANSPORT_RELEASED | AbortReason.NO_REASON)
                self.warn("session %s: %s", self.id, failure)
                self.abort_session(failure)
                return True
        return False

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # ------------------------------------------------------------ reading backpressure

    @property
    def reading_paused(self) -> bool:
        return bool(self._paused)

    def _pause(self, why: int) -> None:
        transport = self.transport
        if self._paused & why or transport is None or transport.is_closing():
            return
        if not self._paused:
            transport.pause_reading()
            self._more().paused_check = self._ep.loop.time() + _PAUSED_CHECK
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

    # ------------------------------------------------------------ errors

    def warn(self, message: str, *args: Any) -> None:
        """Log a WARNING this connection's peer caused: one per connection, and across
        connections no more than the shared rate limit (the rest at DEBUG, counted)."""
        logger = self.log if self.id else log
        if self._flags & _WARNED or not warnings.allow(self._ep.loop.time()):
            logger.debug(message, *args)
            return
        self._flags |= _WARNED
        if warnings.suppressed:
            message += " (%d similar warnings suppressed)"
            args = (*args, warnings.suppressed)
            warnings.suppressed = 0
        logger.warning(message, *args)

    def internal_error(self, exc: Exception) -> None:
        """An exception of ours while handling this connection: log it, end the connection."""
        log.error("%s: internal error, connection closed", peer_text(self.peer), exc_info=exc)
        self._cancel_timer()
        with contextlib.suppress(Exception):
            self._session_over(SessionAborted(f"internal error: {exc!r}",
                                     AbortReason.TRANSPORT_RELEASED | AbortReason.NO_REASON))
        if self.transport is not None:
            self.transport.abort()


def _carry(old: SessionAgent, new: SessionAgent) -> None:
    """(Recovery) What the application set on the session's agent goes on with the agent
    of its next transport connection: its answers to releases and capability data (a
    resumed session answered them with None before)."""
    if old.rare is not None:  # (where they are kept: none, nothing was set)
        new.on_release = old.on_release
        new.on_capability_data = old.on_capability_data


def _event_size(event: ev.Event) -> int:
    """The octets an event holds, for the limits on unread events."""
    data = getattr(event, "user_data", None) or getattr(event, "data", None)
    return len(data) if isinstance(data, bytes | bytearray | memoryview) else 0


_TASKS: set[asyncio.Task[Any]] = set()  # tasks of ours in flight (the loop keeps weak ones)


def _spawn(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any]) -> None:
    task = loop.create_task(coro)
    _TASKS.add(task)
    task.add_done_callback(_task_done)


def _task_over(x: Extra, task: asyncio.Task[Any]) -> None:
    """A task of a session's (``Connection.spawn``) ended."""
    if x.tasks is not None:
        x.tasks.discard(task)
    _task_done(task)


def _task_done(task: asyncio.Task[Any]) -> None:
    _TASKS.discard(task)
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("internal error in a session task", exc_info=exc)


def _rollback_error(event: Resumed) -> CheckpointRestored:
    checkpoint = event.checkpoint
    serial = checkpoint.serial if checkpoint is not None else None
    where = f"checkpoint {serial}" if serial is not None else "the session's start"
    return CheckpointRestored(
        f"the server lost the session's state; it went back to {where}: data sent after it"
        " by either side was dropped",
        serial=serial, user_data=checkpoint.user_data if checkpoint is not None else None,
    )  # fmt: skip
