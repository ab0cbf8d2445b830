"""``Endpoint``: what every connection of one server (or one client connection) shares,
and ``Extra``: what only some connections need, made on first use."""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from ..agent import Options
from ..machine import SessionConfig
from ..machine import events as ev
from .signal import Signal

__all__ = ["Endpoint", "Extra", "HOLD_PIECES", "HOLD_JOINED", "check_kinds"]

#: write_data holds frames back up to this many octets before writing them in one go: more
#: where ``transport.writelines`` hands the pieces to the kernel as they are (uvloop; asyncio
#: from 3.12), less where it joins them first (asyncio 3.11, TLS): a join of more than
#: 128 KiB is a fresh mmap'ed allocation (glibc) every time.
HOLD_PIECES = 256 * 1024
HOLD_JOINED = 64 * 1024


def check_kinds(options: Any, config: Any) -> None:
    """``options`` and ``config`` as connect() and serve() take them (None: the defaults);
    TypeError before anything is opened."""
    if options is not None and not isinstance(options, Options):
        raise TypeError(f"options must be an Options, not {type(options).__name__}")
    if config is not None and not isinstance(config, SessionConfig):
        raise TypeError(f"config must be a SessionConfig, not {type(config).__name__}")


class Endpoint:
    """What is fixed for the life of a connection and alike for all of one server's: one
    object shared by every :class:`Connection` of a server (``connect()`` makes one per
    connection).  An idle session holds a reference, not copies of each field."""

    __slots__ = (
        "ack_bytes",
        "hold_limit",
        "lingering",
        "loop",
        "new_future",
        "observe",
        "on_accept",
        "on_checkpoint",
        "on_connect_indication",
        "on_handshake_over",
        "on_heard",
        "on_link_lost",
        "on_wait_over",
        "options",
        "tap",
        "tls",
        "tsaps",
        "watching",
        "write_low",
    )  # fmt: skip

    def __init__(
        self,
        options: Options,
        *,
        on_connect_indication: Callable[[Any, ev.ConnectIndication], None] | None = None,
        on_handshake_over: Callable[[Any], None] | None = None,
        tsaps: tuple[bytes | None, bytes | None] = (None, None),
        tap: Callable[[str, bytes], None] | None = None,
        tls: bool = False,
    ) -> None:
        self.loop = loop = asyncio.get_running_loop()
        self.tls = tls  #: the connections run over TLS (see Connection.peer)
        self.options = options
        self.ack_bytes = options.ack_bytes  #: (recovery) read on every send: one lookup
        #: A new future on this loop.  asyncio's own loops make ``asyncio.Future(loop=loop)``
        #: in a Python method; the class is called directly (no Python frame per wait).
        self.new_future: Callable[[], asyncio.Future[Any]] = (
            functools.partial(asyncio.Future, loop=loop)
            if type(loop).create_future is asyncio.BaseEventLoop.create_future
            else loop.create_future
        )
        self.on_connect_indication = on_connect_indication
        #: (Recovery) Called with a connection whose session lost its transport connection
        #: and waits to be resumed (the server's expiry; a client's own callback is in its
        #: LinkState).
        self.on_link_lost: Callable[[Any], None] | None = None
        #: (Recovery) Awaited with a connection and the checkpoint (major sync point) its
        #: peer set, before it is confirmed: the server records it in its store.
        self.on_checkpoint: Callable[[Any, Any], Coroutine[Any, Any, Any]] | None = None
        #: (Recovery, server) Called with a resumed connection at its first read after the
        #: resume (``Connection.watch_heard``): the client was heard there.
        self.on_heard: Callable[[Any], None] | None = None
        #: (Server) Called once per connection that took a handshake slot, when its
        #: handshake is over: accepted, refused or gone.
        self.on_handshake_over = on_handshake_over
        #: (Server) Called with each new connection once it is up (after TLS, if any): it
        #: takes a handshake slot (``take_slot``), waits for one (``queue``), or is closed.
        self.on_accept: Callable[[Any], None] | None = None
        #: (Server) Called when a connection queued for a handshake slot closes unadmitted.
        self.on_wait_over: Callable[[], None] | None = None
        #: (Server) The connections that sent an AB and read on until the peer closes or
        #: TIM (``Connection._linger``): ``Server.wait_closed`` waits for them.  None on a
        #: client's endpoint, whose aborts close at once.
        self.lingering: set[Any] | None = None
        self.tsaps = tsaps
        #: Called with ("in" | "out", bytes) for every chunk read or written (for tracing).
        self.tap = tap
        #: Liveness is watched (keepalive or idle timeout): reads are reported to the agent.
        self.watching = options.keepalive_interval is not None or options.idle_timeout is not None
        #: A read needs more than counting: it is traced, or liveness is watched.
        self.observe = tap is not None or self.watching
        self.hold_limit = HOLD_JOINED  # see Connection.connection_made
        #: The transport's low-water mark: what asyncio and uvloop make of the high one.
        self.write_low = options.write_buffer_high // 4


class Extra:
    """What only some connections need, made on first use (an idle server session has none):
    what waits for events, confirms, the close or the drain; the logger; the initiator's
    S-CONNECT waiting for COTP CC; when a paused connection next looks at its peer."""

    __slots__ = (
        "closed",
        "connecting",
        "drained",
        "early",
        "event_bytes",
        "events",
        "events_dropped",
        "has_events",
        "link",
        "log",
        "paused_check",
        "peer",
        "replay",
        "tasks",
        "timers",
        "tokens_changed",
        "waiters",
    )  # fmt: skip

    def __init__(self) -> None:
        self.closed: Signal | None = None  # made when somebody waits for the close
        #: (Initiator) The S-CONNECT request to make once COTP CC has come, and the future
        #: its confirm resolves (``Connection.open``).
        self.connecting: tuple[Callable[[Any], Any], asyncio.Future[Any]] | None = None
        self.drained: Signal | None = None  # made when somebody waits in drain()
        #: (Server) What a connection queued for a handshake slot sent before its reading
        #: paused (uvloop reads once after connection_made): read when it is admitted.
        self.early: bytes | None = None
        self.events: collections.deque[ev.Event] | None = None  # made on the first event
        self.event_bytes = 0  # user data held in events (counts against the limits)
        #: Events answered already and dropped unread: the application never read events().
        self.events_dropped = 0
        self.has_events: Signal | None = None  # made when somebody waits for events
        self.link: LinkState | None = None  # (recovery) made when the session is resumable
        self.log: logging.LoggerAdapter[logging.Logger] | None = None
        self.paused_check = 0.0  # while paused: when to look whether the peer is still there
        #: The peer's address, kept for a TLS connection only (its transport forgets it when
        #: the connection is lost; a plain one keeps it: ``Connection.peer`` asks it then).
        self.peer: Any = None
        #: (Recovery) What is being sent again after a resume, at the transport's pace.
        self.replay: collections.deque[bytes] | None = None
        #: Tasks of this session's (``Connection.spawn``), cancelled when it is over.
        self.tasks: set[asyncio.Task[Any]] | None = None
        #: Deadlines of requests waiting for their answer (``connection._AttachedTimer``).
        self.timers: list[Any] | None = None
        self.tokens_changed: Signal | None = None  # set after each input from the peer
        #: Futures of requests waiting for their confirm, by event class.
        self.waiters: dict[type, collections.deque[asyncio.Future[Any]]] | None = None


class LinkState:
    """(Recovery) A resumable session's life across transport connections: when and why
    the last was lost, who is told (the client's reconnector), what waits for the resume,
    and the server's token state."""

    __slots__ = (
        "activity",
        "activity_data",
        "attached",
        "attempts",
        "awaiting_resume",
        "bytes_at_resume",
        "checkpoint",
        "defer_checkpoints",
        "generation",
        "heard_at",
        "held_data",
        "held_events",
        "identity",
        "interruptions",
        "last_rollback",
        "lost_at",
        "on_checkpoint",
        "on_lost",
        "on_over",
        "proposed",
        "reason",
        "resumes",
        "retained",
        "rollback",
        "rollback_at",
        "rollbacks",
        "token",
        "told",
    )  # fmt: skip

    def __init__(self) -> None:
        self.lost_at = 0.0
        self.reason = ""
        self.interruptions = 0
        self.resumes = 0
        self.attempts = 0
        self.attached: Signal | None = None  # set when the session is back (or over)
        self.retained: Signal | None = None  # set when the journal has room again
        self.rollback: Any = None  # a Resumed("checkpoint") not yet raised to the reader
        self.rollback_at = 0  # ... once the reader has read this many messages
        #: (Client) S-DATA that came with a resume's AC, before its outcome was applied.
        self.held_data: list[bytes] = []
        self.held_events: list[Any] = []  #: ... and its expedited data
        self.rollbacks = 0  # resumes from a checkpoint so far
        self.last_rollback: Any = None  # the last of them (a Resumed)
        self.checkpoint: Any = None  # the last confirmed major sync point (a Checkpoint)
        self.proposed: bytes | None = None  # the user data of our MAP waiting for its MAA
        self.told: Any = None  # the task a void request told of the last rollback
        self.on_checkpoint: Callable[[Any], Any] | None = None  # the application's, see
        self.defer_checkpoints = False  # checkpoints are confirmed after on_checkpoint
        self.on_lost: Callable[[Any], None] | None = None  # (client) start reconnecting
        self.on_over: Callable[[], None] | None = None  # called once when the session ends
        self.token: str | None = None  # (client) what resumes the session next
        self.generation = 0  # (server) the current token's generation
        self.identity = ""  # (server) who opened the session
        #: (activity id, serial) of the activity in progress when the connection was lost:
        #: the client resumes it first on the next one (S-ACTIVITY-RESUME), and the server
        #: holds its replay back until then (``awaiting_resume``).
        self.activity: tuple[bytes, int] | None = None
        #: The user data of this side's S-ACTIVITY-START (or RESUME) of the activity in
        #: progress: sent again if the peer turns out never to have had it.
        self.activity_data: bytes | None = None
        self.awaiting_resume = False
        #: (server) Not None: the tokens from this generation on are good too ...
        self.heard_at: int | None = None
        self.bytes_at_resume = 0  # ... until more than this was read (the client was heard)

    def session_over(self) -> None:
        callback, self.on_over = self.on_over, None
        if callback is not None:
            callback()
