"""``serve()``: accept sessions and run a handler for each."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import inspect
import logging
import math
import reprlib
import secrets
import ssl
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from ..agent import Hello, Options, Rejection, SessionAgent, Welcome, negotiate
from ..errors import (
    DecodeError,
    ParameterError,
    Refuse,
    RefuseReason,
    RemoteError,
    ResumeRefused,
    SessionAborted,
    SessionLayerError,
    StoreUnavailable,
)
from ..machine import SessionConfig
from ..machine import events as ev
from ..recovery import Checkpoint, Journal, identity_of, issue, parse, verify
from ..recovery.tokens import presenter_of
from ..spdu.codes import FunctionalUnit
from ..spdu.types import ConnectionId
from ..stores import SessionRecord
from .checks import check_choices, check_port, check_tls
from .client import RESUMABLE_CONFIG
from .connection import Connection
from .endpoint import Endpoint, check_kinds
from .listening import PlainServer, serve_plain
from .reconnect import RESUME_CODE_PREFIX
from .session import Session, SessionInfo
from .sockets import peer_text
from .tls_accept import FULL, QUEUED, SLOT, TlsAccept, TlsListener

__all__ = ["serve", "Server", "ServerStats", "Refuse", "ConnectRequest"]

log = logging.getLogger("sessionlayer")

Handler = Callable[[Session], Awaitable[None]]


class ConnectRequest:
    """What the ``authenticate`` and ``accept_data`` callbacks see of a connect request."""

    def __init__(self, peer: Any, hello: Hello | None, indication: ev.ConnectIndication,
                 tls: Any) -> None:  # fmt: skip
        self.peer = peer
        self.credentials = hello.credentials if hello else None
        self.offers = hello.offers if hello else {}
        self.data = hello.data if hello else indication.user_data
        self.indication = indication
        self.tls = tls  #: the peer's TLS certificate (dict) when mutual TLS is in use
        #: The connect request resumes a session (its hello carries a resume token): only
        #: the credentials are to be checked again.
        self.resuming = hello is not None and hello.resume is not None


@dataclass
class ServerStats:
    """Running totals of a server (``server.stats``); live sessions are in ``sessions``."""

    accepted: int = 0
    refused: Counter[str] = field(default_factory=Counter)  #: by RF reason name
    ended: Counter[str] = field(default_factory=Counter)  #: "released" / "aborted"
    interrupted: int = 0  #: (recovery) transport connections lost under live sessions
    resumed: Counter[str] = field(default_factory=Counter)  #: "resumed" / "checkpoint"
    resume_refused: Counter[str] = field(default_factory=Counter)  #: by ResumeRefused code
    expired: int = 0  #: detached sessions whose client did not come back in time
    shed: int = 0  #: (plain TCP) connections closed at their accept: out of descriptors
    bytes_in: int = 0  #: of sessions that have ended
    bytes_out: int = 0
    messages_in: int = 0
    messages_out: int = 0

    def session_ended(self, info: SessionInfo) -> None:
        self.ended[info.state if info.state in ("released", "aborted") else "aborted"] += 1
        self.bytes_in += info.bytes_in
        self.bytes_out += info.bytes_out
        self.messages_in += info.messages_in
        self.messages_out += info.messages_out


class Server:
    """A listening session server; ``async with server`` closes it on exit."""

    def __init__(self, handler: Handler, options: Options, config: SessionConfig,
                 authenticate: Callable[[ConnectRequest], Any] | None,
                 supported: Mapping[str, Sequence[str]],
                 accept_data: Callable[[ConnectRequest], bytes | None] | None,
                 max_sessions: int, max_handshakes: int, store: Any = None,
                 max_detached: int = 1000, node: str | None = None,
                 max_waiting: int | None = None, lease: float | None = None) -> None:  # fmt: skip
        self._handler = handler
        self.options = options
        self.config = config
        self._authenticate = authenticate
        self.supported = {k: list(v) for k, v in supported.items()}
        self._accept_data = accept_data
        self.max_sessions = max_sessions
        self.max_handshakes = max_handshakes
        self.handshakes = 0
        """Connections accepted by TCP that are not sessions yet (nor refused)."""
        #: Connections accepted over ``max_handshakes``, oldest first (and some gone, not
        #: counted in ``queued``): each is read from once a handshake ends (at most
        #: ``max_waiting`` wait; one more is closed at once).
        self.max_waiting = (max(max_sessions, 16 * max_handshakes) if max_waiting is None
                            else max_waiting)  # fmt: skip
        self.queued = 0
        self._swept = 0.0  # when the waiting connections were last looked at (monotonic)
        #: A full queue of waiting connections looks for peers gone at most this often (s).
        self.sweep_interval = 1.0
        self._waiting: collections.deque[Connection | _TlsAccept] = collections.deque()
        self._handshaking: set[Connection | _TlsAccept] = set()  # (holding a slot)
        #: (close()) What wait_closed() waits for: their TCP connections gone.
        self._stopping: list[Connection | Session | _TlsAccept] = []
        #: (TLS) TCP is accepted here (aio/tls_accept.py), and each TLS handshake is one of
        #: the handshakes counted, from its accept (``_TlsAccept``).
        self._tls: TlsListener[Connection] | None = None
        #: (TLS) The connections whose TLS handshake is done or under way, and their accepts.
        self._tls_conns: dict[Connection, _TlsAccept] = {}
        self._server: PlainServer | None = None
        self._live: dict[str, Session] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending = 0  # connect requests in a task of ours (_pend): not sessions yet
        #: Connections whose connect request waits in a task (an async authenticate(), a
        #: resume), each counted in ``_pending`` until the task is done or the connection
        #: goes (``_handshake_over``), whichever comes first.
        self._awaiting: dict[Connection, asyncio.Task[None]] = {}
        #: Those of them whose task awaits authenticate()'s verdict now: cancelled when the
        #: connection goes (lost, or past its handshake deadline).
        self._authenticating: set[Connection] = set()
        self.stats = ServerStats()
        self._handlers: dict[asyncio.Task[None], Session] = {}
        #: Sessions over for the server already (a detached one dropped or expired: its
        #: late client is told why) whose handler has not returned yet; _ended forgets them.
        self._finished: set[Session] = set()
        self._detaching = False  # close(detach=True): sessions stay in the store
        self._closing = False  # close() was called: no new connection is taken
        self._writes: set[asyncio.Future[Any]] = set()  # store writes in flight
        #: Sessions whose record still says the token before is taken, their client heard
        #: since its resume: the store did not answer; tried again at each lease renewal.
        self._heard_unrecorded: set[str] = set()
        self._chains: dict[str, asyncio.Future[Any]] = {}  # each session's last write
        # Bound once: every protocol and handler task shares them (nothing per session).
        self._on_handler_done = self._handler_done
        # Recovery (docs/recovery.md).
        self.store = store
        """Where sessions are recorded for a resume on another process or node (a
        :mod:`sessionlayer.stores` store), or None: resumes within this process only."""
        self.max_detached = max_detached
        self.node = node or secrets.token_hex(4)
        #: (With a store) The lease of this node on the records of the sessions it holds
        #: attached (s): their ``expires_at`` is ``resume_timeout`` + ``lease`` from its last
        #: renewal, every ``lease / 3``; a node that died renews no more, and its records
        #: go when that has passed (docs/recovery.md, "Leases").
        self.lease = max(options.resume_timeout, _MIN_LEASE) if lease is None else lease
        self._secret = secrets.token_bytes(32)  # (the store's, when there is one: listen())
        #: What tokens are checked against: ``_secret`` first, then (with a store) the one
        #: before it, still good for the tokens issued with it (``_refresh_secret``).
        self._secrets: tuple[bytes, ...] = (self._secret,)
        #: Resumable sessions' connections by id; the detached ones, oldest first.
        self._links: dict[str, Connection] = {}
        self._detached: OrderedDict[str, Connection] = OrderedDict()  # oldest first
        # Resumable sessions that ended here, newest last: (why, the ResumeRefused code,
        # token generation, identity), so that a client that missed the end (its AB lost
        # with a reset) is told why instead of "unknown"; at most _OVER_KEPT.
        self._over: OrderedDict[str, tuple[str, str, int, str]] = OrderedDict()
        self._expiry: asyncio.TimerHandle | None = None  # the oldest detached session's end
        self._recovery = options.resume and bool(int(config.functional_units) & _SS)
        # What every connection of this server shares (made on the loop, in listen()).
        self._endpoint: Endpoint | None = None
        self._port = 0

    # ------------------------------------------------------------ public

    async def listen(self, host: str, port: int, tls: ssl.SSLContext | None = None,
                     backlog: int = 4096) -> None:  # fmt: skip
        """Start listening (``serve()`` does it)."""
        if self.store is not None:
            refresh = getattr(self.store, "refresh_secret", None)  # (a store of its own may not)
            self._use_secrets(await refresh() if refresh is not None else
                              (await self.store.secret(),), first=True)  # fmt: skip
        self._endpoint = Endpoint(
            self.options, on_connect_indication=self._indication,
            on_handshake_over=self._handshake_over, tls=tls is not None,
        )  # fmt: skip
        self._endpoint.on_link_lost = self._link_lost
        self._endpoint.on_wait_over = self._wait_over
        self._endpoint.on_accept = self._accepted
        self._endpoint.lingering = set()
        if self.store is not None:
            self._endpoint.on_checkpoint = self._on_checkpoint
            self._endpoint.on_heard = self._heard
            self._track(self._sweep())
            self._track(self._renew_leases())
            if refresh is not None:
                self._track(self._refresh_secret())
        if tls is None:
            self._server = await serve_plain(self._protocol, host, port, backlog, self._shed,
                                             log)  # fmt: skip
            self._port = int(self._server.sockets[0].getsockname()[1])
            return
        # TLS: TCP accepted here, so that a connection counts from its accept, its TLS
        # handshake included (max_handshakes, max_waiting, its handshake deadline), as a
        # plain one does; asyncio's own TLS server takes every connection into a TLS
        # handshake of its own, uncounted.
        self._tls = TlsListener(
            tls, self.options.handshake_timeout, admission=self._tls_admission,
            protocol=self._tls_protocol, failed=self._tls_failed,
            dequeued=self._tls_left_queue, late=self._tls_expired, track=self._track,
            closing=lambda: self._closing, log=log,
        )  # fmt: skip
        # (its sockets are closed with their accept loops: also when close() cancelled one
        # before it ran)
        await self._tls.listen(host, port, backlog)
        self._port = self._tls.port

    def _shed(self, peer: Any) -> None:
        """(aio/listening.py) A connection closed at its accept: out of descriptors."""
        self.stats.shed += 1

    @property
    def port(self) -> int:
        """The port it listens on (or listened on, once closed)."""
        return self._port

    @property
    def sessions(self) -> list[SessionInfo]:
        """A snapshot of every live session."""
        return [s.info() for s in self._live.values()]

    def close(self, *, detach: bool = False) -> None:
        """Stop listening and end every session: with an abort (AB), or with ``detach``
        (a graceful stop of a server with a store) resumable sessions lose their
        connection without one and stay in the store, so that their clients resume them
        from their last checkpoint on this server restarted, or on another node."""
        if self._server is not None:
            self._server.close()
        self._closing = True
        for queued in self._waiting:  # (never admitted now: closed, their peers told so)
            if queued.waiting:
                queued.abort()
        self._waiting.clear()
        for handshaking in list(self._handshaking):  # (not sessions yet: dropped)
            handshaking.abort()  # (one in its TLS handshake: its task, cancelled below)
        self._stopping += [*self._handshaking, *self._live.values()]
        self._detaching = detach and self.store is not None
        for sid, session in list(self._live.items()):
            link = self._links.get(sid)
            if self._detaching and link is not None:
                link.drop_link("the server is stopping")
            session.abort()
        for task in [*self._tasks, *self._handlers]:
            task.cancel()
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    async def wait_closed(self) -> None:
        if self._server is not None:
            await self._server.wait_closed()
        while self._tasks or self._handlers or self._writes:
            await asyncio.gather(*self._tasks, *self._handlers, *self._writes,
                                 return_exceptions=True)  # fmt: skip
        stopping, self._stopping = self._stopping, []
        lingering = self._endpoint.lingering if self._endpoint is not None else None
        for each in [*stopping, *(lingering or ())]:  # (an AB's TIM bounds each)
            await each.wait_closed()

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()
        await self.wait_closed()

    # ------------------------------------------------------------ connect handling

    def _protocol(self) -> Connection:
        assert self._endpoint is not None
        return Connection(SessionAgent("responder", self.config, self.options), self._endpoint)

    def _accepted(self, protocol: Connection) -> None:
        """A new connection is up: a handshake slot, or a place in the queue, or it is
        closed at once.  (TLS: its TLS handshake is done, in the slot its accept took,
        which is the connection's now.)"""
        if self._tls is not None:
            accept = self._tls_conns.get(protocol)
            if self._closing or accept is None or accept not in self._handshaking:
                protocol.rejected = True  # (the accept's task frees its slot)
                return
            self._handshaking.discard(accept)
            accept.handed_over = True
            self._handshaking.add(protocol)
            protocol.take_slot()
            return
        if self._closing:
            protocol.rejected = True
            return
        taken = self._admission(protocol)
        if taken is _SLOT:
            protocol.take_slot()
        elif taken is _QUEUED:
            protocol.queue()  # (read from once a handshake ends: _handshake_over)
        else:  # closed at once by connection_made
            protocol.rejected = True

    def _admission(self, new: Connection | _TlsAccept) -> object:
        """A handshake slot for a new connection (_SLOT), or a place in the queue
        (_QUEUED), or neither (_FULL: it is to be closed at once)."""
        if self.handshakes < self.max_handshakes:
            self.handshakes += 1
            self._handshaking.add(new)  # (close() ends it)
            return _SLOT
        now = time.monotonic()
        if self.queued >= self.max_waiting and now >= self._swept + self.sweep_interval:
            self._swept = now  # (some may have left meanwhile: look, once a second)
            for queued in self._waiting:
                queued.gone_while_waiting()
        if self.queued >= self.max_waiting:
            self.stats.refused["handshake_limit"] += 1
            return _FULL
        waiting = self._waiting
        if len(waiting) >= 2 * self.max_waiting:  # (forget the ones gone: amortized)
            self._waiting = waiting = collections.deque(c for c in waiting if c.waiting)
        waiting.append(new)
        self.queued += 1
        return _QUEUED

    # ------------------------------------------------------------ TLS

    def _tls_admission(self, accept: _TlsAccept) -> object:
        """(TLS) A TCP connection accepted (aio/tls_accept.py): its TLS handshake starts in
        a handshake slot, or it waits, unread, for one, or it is closed at once; its
        deadline runs from now."""
        return _FULL if self._closing else self._admission(accept)

    def _tls_protocol(self, accept: _TlsAccept) -> Connection:
        protocol = self._protocol()
        accept.conn = protocol
        self._tls_conns[protocol] = accept
        return protocol

    def _tls_failed(self, accept: _TlsAccept) -> None:
        """(TLS) The TLS handshake is over, not handed over to its Connection (failed, timed
        out, close()): the connection is closed, its slot free."""
        if accept.conn is not None:
            self._tls_conns.pop(accept.conn, None)
        if accept in self._handshaking:
            self._handshake_over(accept)

    def _tls_expired(self, accept: _TlsAccept) -> None:
        """(TLS) The handshake deadline of a connection, ``handshake_timeout`` from its
        accept (over the wait for a slot, the TLS handshake and the session's), passed after
        its TLS handshake: not a session yet, it is aborted."""
        if accept.conn is not None and accept.conn in self._handshaking:
            accept.conn.warn("no session within the handshake timeout (%g s, TLS"
                             " included); connection closed", self.options.handshake_timeout)
            accept.conn.abort()

    def _tls_left_queue(self, accept: _TlsAccept) -> None:
        """(TLS) A connection waiting for a slot is closed (its deadline, its peer left, or
        close())."""
        self.queued -= 1

    def _handshake_over(self, protocol: Connection | _TlsAccept) -> None:
        self.handshakes -= 1
        self._handshaking.discard(protocol)
        # (What follows touches nothing on a plain server's setup path: the checks are on
        # emptiness first, the calls come only with TLS or a connect request in a task.)
        conn: Connection | None = None
        if type(protocol) is Connection:
            conn = protocol
            if self._tls_conns:
                accept = self._tls_conns.pop(conn, None)
                if accept is not None:
                    accept.stop_timer()  # (its deadline: met, or the connection is gone)
        elif isinstance(protocol, TlsAccept):  # (its TLS handshake failed)
            protocol.stop_timer()
        task = self._awaiting.get(conn) if conn is not None and self._awaiting else None
        if conn is not None and task is not None and task is not asyncio.current_task():
            # Gone (lost, timed out) while its connect request waits: it counts no more, and
            # an authenticate() that has not returned is not waited for.
            self._unpend(conn, task)
            if conn in self._authenticating:
                self._authenticating.discard(conn)
                task.cancel()
                log.info("authenticate() for %s had not returned when its connection ended;"
                         " cancelled", conn.peer)  # fmt: skip
        waiting = self._waiting
        while waiting and self.handshakes < self.max_handshakes:
            protocol = waiting.popleft()
            if protocol.waiting:  # (not timed out or reset meanwhile)
                self.queued -= 1
                self.handshakes += 1
                self._handshaking.add(protocol)
                protocol.admit()

    def _wait_over(self) -> None:
        self.queued -= 1

    def _indication(self, protocol: Connection, event: ev.ConnectIndication) -> None:
        """S-CONNECT indication: decide at once, or after an async authenticate().

        No task is made unless authentication is asynchronous, and the handler's task
        starts with nothing of the connect request kept alive but the session.
        """
        if self._closing:
            self._refuse(protocol, Refuse("the server is stopping", RefuseReason.SPM_CONGESTION))
            return
        try:
            hello = protocol.agent.indication(event)
        except Exception as exc:
            self._refuse(protocol, _refusal(protocol, exc))
            return
        old = self._live_session(hello)
        if len(self._live) + self._pending >= self.max_sessions and old is None:
            # (a session live here that resumes adds none: it is let through)
            self._refuse(protocol, Refuse("too many sessions", RefuseReason.SPM_CONGESTION))
            return
        try:
            if hello is not None and hello.resume is not None:
                if old is not None and self._authenticate is None and self.store is None:
                    self._resume_at_once(old, protocol, event, hello)
                    return  # (the live case: no task, no store to wait for)
                self._pend(protocol, self._resume(protocol, event, hello))
                return
            request = None  # (made only for a callback that sees it)
            if self._authenticate is not None or self._accept_data is not None:
                request = ConnectRequest(protocol.peer, hello, event, _peer_cert(protocol))
            chosen = negotiate(hello.offers if hello else _NO_OFFERS, self.supported)
            verdict: Any = True
            if self._authenticate is not None:
                assert request is not None
                verdict = self._authenticate(request)
        except Exception as exc:
            self._refuse(protocol, _refusal(protocol, exc))
            return
        if verdict is not True and inspect.isawaitable(verdict):
            self._pend(protocol, self._await_verdict(protocol, event, hello, request, chosen,
                                                     verdict))  # fmt: skip
            return
        self._conclude(protocol, event, hello, request, chosen, verdict)

    async def _await_verdict(self, protocol: Connection, event: ev.ConnectIndication,
                             hello: Hello | None, request: ConnectRequest | None,
                             chosen: dict[str, str], verdict: Awaitable[Any]) -> None:  # fmt: skip
        task = asyncio.current_task()
        try:
            outcome = await self._verdict(protocol, verdict)
        except Exception as exc:
            self._refuse(protocol, _refusal(protocol, exc))
            return
        finally:
            self._unpend(protocol, task)
        try:
            self._conclude(protocol, event, hello, request, chosen, outcome)
        except Exception as exc:  # (ours: as buffer_updated does on the path without a task)
            protocol.internal_error(exc)

    def _conclude(self, protocol: Connection, event: ev.ConnectIndication,
                  hello: Hello | None, request: ConnectRequest | None, chosen: dict[str, str],
                  verdict: Any) -> None:  # fmt: skip
        if verdict is not True:  # (authenticate() fails closed)
            self._refuse(protocol, _not_accepted(protocol, verdict))
            return
        if protocol.transport is None or protocol.transport.is_closing():
            return
        user_data = None
        if hello is None and self._accept_data is not None:
            assert request is not None
            try:
                user_data = self._accept_data(request)
            except Refuse as exc:
                self._refuse(protocol, exc)
                return
            except Exception as exc:  # (the application's callback: a refusal, logged)
                log.error("accept_data() failed for %s; refusing", protocol.peer, exc_info=exc)
                self._refuse(protocol, Refuse("the server could not answer the connect"))
                return
        try:
            session = self._accept(protocol, event, hello, chosen, user_data)
        except ParameterError as exc:
            if user_data is None:
                raise  # (not the application's data: ours)
            # What accept_data() gave does not fit an AC (max_user_data, one_octet_li, not
            # bytes): nothing was sent yet, so the connect is refused, and the log says why.
            log.error("accept_data() for %s gave what an AC cannot carry (%s); refusing",
                      protocol.peer, exc)  # fmt: skip
            self._refuse(protocol, Refuse("the server could not answer the connect"))
            return
        self._start(session)

    def _track(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _pend(self, protocol: Connection, coro: Coroutine[Any, Any, None]) -> None:
        """Decide on ``protocol``'s connect request in a task: it counts in ``_pending``
        (against ``max_sessions``) until :meth:`_unpend`, at the latest when the task is
        done (even one cancelled before it ran)."""
        self._pending += 1
        task = self._track(coro)
        self._awaiting[protocol] = task
        task.add_done_callback(lambda done: self._unpend(protocol, done))

    def _unpend(self, protocol: Connection, task: asyncio.Task[Any] | None) -> None:
        """``protocol``'s connect request counts no more in ``_pending`` (once)."""
        if task is not None and self._awaiting.get(protocol) is task:
            del self._awaiting[protocol]
            self._pending -= 1

    async def _verdict(self, protocol: Connection, verdict: Awaitable[Any]) -> Any:
        """An async authenticate()'s verdict for ``protocol``, awaited only while the
        connection is in handshake: its task is cancelled when it goes (``_handshake_over``:
        lost, or its handshake deadline passed, which bounds the wait)."""
        self._authenticating.add(protocol)
        try:
            return await verdict
        finally:
            self._authenticating.discard(protocol)

    def _accept(self, protocol: Connection, event: ev.ConnectIndication,
                hello: Hello | None, chosen: dict[str, str],
                user_data: bytes | None) -> Session:  # fmt: skip
        cid = event.connection_id
        # The server names its sessions itself (random, unguessable, unique): the
        # initiator's Common Reference is kept beside it, and echoed in the AC (X.225 8.3.1.2).
        sid = secrets.token_bytes(16).hex()
        while sid in self._live:
            sid = secrets.token_bytes(16).hex()
        session = Session(protocol, sid)
        session.peer_reference = cid.common_ref if cid is not None else None
        reply_cid = ConnectionId(common_ref=cid.common_ref) if cid is not None else None
        welcome = None
        identity = ""
        if self._resumable(hello, event):
            identity = identity_of(hello.credentials if hello else None, _peer_der(protocol),
                                   self._secret)  # fmt: skip
            token = issue(self._secret, sid, 0, identity)
            welcome = Welcome(chosen=chosen, session_id=sid, token=token,
                              fast=self.options.fast_connect,
                              max_tsdu=self.options.max_tsdu_size)  # fmt: skip
        protocol.agent.accept(
            chosen=chosen, session_id=sid, user_data=user_data, connection_id=reply_cid,
            welcome=welcome,
        )  # fmt: skip
        if welcome is not None:
            self._enable_recovery(session, protocol, 0, identity)
        protocol.handshake_over()
        protocol.start_liveness(flush=True)  # the AC goes out
        self._live[session.id] = session
        self.stats.accepted += 1
        if log.isEnabledFor(logging.INFO):
            session.log.info("session %s accepted from %s", session.id, peer_text(protocol.peer))
        return session

    # ------------------------------------------------------------ recovery

    def _resumable(self, hello: Hello | None, event: ev.ConnectIndication) -> bool:
        """Recovery can be agreed with this initiator: it asked for it, and symmetric
        synchronize (which acknowledgements need) is on both sides' lists."""
        return (
            self._recovery and hello is not None and hello.recovery
            and bool(int(event.functional_units) & _SS)
        )  # fmt: skip

    def _enable_recovery(self, session: Session, protocol: Connection, generation: int,
                         identity: str) -> None:  # fmt: skip
        if not protocol.agent.recovery_possible:
            return  # (symmetric synchronize was not selected after all)
        link = protocol.enable_recovery(Journal(self.options.retention))
        link.generation = generation
        link.identity = identity
        sid = session.id
        self._links[sid] = protocol
        if self.store is not None:
            protocol.defer_checkpoints(None)  # a checkpoint is in the store before its MAA
            self._record_new(session, protocol, generation, identity)

    def _record_new(self, session: Session, protocol: Connection, generation: int,
                    identity: str) -> None:  # fmt: skip
        now = time.time()
        record = self._record(protocol, generation, identity, now,
                              now + self.options.resume_timeout + self.lease, session.restored)
        self._in_order(session.id, self._put_new(record))

    def _record(self, protocol: Connection, generation: int, identity: str, created: float,
                expires_at: float, checkpoint: Checkpoint | None) -> SessionRecord:  # fmt: skip
        """The store's record of the session on ``protocol``, held by this node (detached
        while its connection is lost: then no renewal extends ``expires_at``; the token
        before still taken while the client was not heard since its resume)."""
        link = protocol.link
        return SessionRecord(
            id=protocol.id, generation=generation, identity=identity,
            chosen=dict(protocol.agent.chosen), created=created, expires_at=expires_at,
            checkpoint=checkpoint, node=self.node, peer=peer_text(protocol.peer),
            detached=protocol.detached,
            heard_at=link.heard_at if link is not None
            and protocol.bytes_in == link.bytes_at_resume else None,
        )  # fmt: skip

    async def _put_new(self, record: SessionRecord) -> None:
        """The record of a session just accepted (its AC is out).  If the store cannot take
        it, the session goes on, not durable yet: its record is written whole at its next
        write (a checkpoint, which is not confirmed before), or at this node's next lease
        renewal, whichever comes first."""
        try:
            await self.store.put(record)
        except SessionLayerError as exc:  # StoreUnavailable
            log.warning("session %s is not durable yet: session store %s could not record"
                        " it (%s); it is recorded at its next checkpoint or lease renewal",
                        record.id, self.store.name, _why(exc))  # fmt: skip
        except Exception as exc:  # a store's bug: the same, with its traceback
            log.error("session store %s: put failed; session %s is not durable yet",
                      self.store.name, record.id, exc_info=exc)  # fmt: skip

    def _store_write(self, method: str, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        """A store write in the background, after the session's earlier ones; its errors
        are logged (``_store_call``)."""
        return self._in_order(args[0], self._store_call(method, *args, **kwargs))

    def _in_order(self, sid: str, write: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
        """``write`` (a coroutine of store calls) in the background, after the session's
        earlier ones (a session's writes keep their order); not cancelled by close() (the
        store stays consistent), awaited by wait_closed()."""
        before = self._chains.get(sid)
        task = asyncio.ensure_future(self._chained(before, write))
        self._chains[sid] = task
        self._writes.add(task)
        task.add_done_callback(lambda done: self._write_done(sid, done))
        return task

    async def _chained(self, before: asyncio.Future[Any] | None,
                       write: Coroutine[Any, Any, Any]) -> Any:  # fmt: skip
        if before is not None and not before.done():
            await asyncio.wait([before])
        return await write

    def _write_done(self, sid: str, task: asyncio.Future[Any]) -> None:
        self._writes.discard(task)
        if self._chains.get(sid) is task:
            del self._chains[sid]

    async def _store_call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return await getattr(self.store, method)(*args, **kwargs)
        except SessionLayerError as exc:  # StoreUnavailable: logged, the session goes on
            log.warning("session store %s: %s: %s", getattr(self.store, "name", "?"), method,
                        _why(exc))  # fmt: skip
            return None
        except Exception as exc:  # a store's bug: the same, with its traceback (the sweep
            # and the session's later writes go on)
            log.error("session store %s: %s failed", getattr(self.store, "name", "?"), method,
                      exc_info=exc)  # fmt: skip
            return None

    async def _on_checkpoint(self, protocol: Connection, checkpoint: Checkpoint) -> None:
        """A checkpoint of a resumable session: in the store before it is confirmed.

        The client's (its MAP, awaiting our MAA): if the store cannot keep it, it is not
        confirmed: the session is aborted, the AB's user data saying why (the client's
        pending ``sync()`` raises SessionAborted with it), and this raises, so the MAA
        never goes.  Ours (the client's MAA came already): recorded as well as the store
        can, its failure logged."""
        sid = protocol.id
        link = protocol.link
        if self.store is None or self._links.get(sid) is not protocol or link is None:
            return
        if link.checkpoint is checkpoint:  # (ours, confirmed by the peer already)
            self._in_order(sid, self._keep_checkpoint(protocol, checkpoint, confirmed=True))
            return
        failure = await self._in_order(sid, self._keep_checkpoint(protocol, checkpoint))
        if failure is None:
            return
        why = f"the server's session store could not keep checkpoint {checkpoint.serial}"
        log.error("session %s: %s, so it is not confirmed; aborting the session: %s", sid,
                  why, failure)  # fmt: skip
        session = self._live.get(sid)
        if session is not None and not protocol.closed:
            with contextlib.suppress(SessionLayerError):
                session.abort(user_data=why.encode())
        raise StoreUnavailable(getattr(self.store, "name", "?"), f"{why}: {failure}")

    async def _keep_checkpoint(self, protocol: Connection, checkpoint: Checkpoint,
                               confirmed: bool = False) -> str | None:  # fmt: skip
        """Record ``checkpoint`` in the session's record, while this node holds it at its
        generation; a record that is missing is written whole.  None when it is recorded,
        else why not."""
        sid = protocol.id
        link = protocol.link
        assert link is not None and self.store is not None
        try:
            if await self.store.update(sid, checkpoint=checkpoint, if_generation=link.generation,
                                       if_node=self.node):  # fmt: skip
                return None
            expires = time.time() + self.options.resume_timeout + self.lease
            return await self._put_again(protocol, checkpoint, expires)
        except Exception as exc:  # StoreUnavailable; or a store's bug, with its traceback
            if not isinstance(exc, SessionLayerError):
                log.error("session store %s: recording a checkpoint failed", self.store.name,
                          exc_info=exc)  # fmt: skip
            if confirmed:
                log.warning("session store %s: checkpoint %d of session %s is not recorded:"
                            " %s", self.store.name, checkpoint.serial, sid, _why(exc))  # fmt: skip
            return str(exc)

    async def _put_again(self, protocol: Connection, checkpoint: Checkpoint | None,
                         expires_at: float) -> str | None:  # fmt: skip
        """A write of the session found no record it could change: written whole (its
        first put failed, or its lease lapsed and another node's sweep removed it), unless
        another node holds it now (then why not): checked and written in one atomic step
        (``put_unless_taken``), so that a node that resumed it meanwhile keeps its record.
        Raises StoreUnavailable."""
        sid = protocol.id
        link = protocol.link
        assert link is not None and self.store is not None
        record = await self.store.get(sid)  # (for its creation time, and the log line)
        if record is not None:
            created = record.created
        else:  # (from the session's age here)
            session = self._live.get(sid)
            created = time.time() - (session.info().age if session is not None else 0.0)
        record_again = self._record(protocol, link.generation, link.identity, created,
                                    expires_at, checkpoint)  # fmt: skip
        taken = await self.store.put_unless_taken(record_again)
        if taken is not None:
            return (f"the session is held by node {taken.node} now (generation"
                    f" {taken.generation}; this node's copy is at {link.generation})")
        if record is None:
            log.info("session %s recorded again in session store %s (its record was"
                     " missing)", sid, self.store.name)  # fmt: skip
        return None

    async def _write_again(self, protocol: Connection, expires_at: float,
                           renewing: bool = False) -> None:  # fmt: skip
        """(In the session's order) a write that found no record: written whole, else the
        failure logged; a local copy that another node holds now is dropped (renewal)."""
        if self._links.get(protocol.id) is not protocol or protocol.link is None:
            return  # (over meanwhile)
        if renewing and protocol.detached:
            return  # (detached since: its detach's write, after this one, records it)
        try:
            moved = await self._put_again(protocol, protocol.link.checkpoint, expires_at)
        except Exception as exc:
            log.warning("session store %s: session %s could not be recorded: %s",
                        getattr(self.store, "name", "?"), protocol.id, _why(exc))  # fmt: skip
            return
        if moved is not None and renewing and self._links.get(protocol.id) is protocol:
            self._drop_moved(protocol, moved)

    async def _renew_leases(self) -> None:
        """Renew this node's lease on the records of the sessions it holds attached: one
        store call per ``lease / 3``; those not renewed (missing) are written again.

        A session may detach while the call is on its way: its detach's write (``detached``
        set, its deadline) may then reach the store first, and the store's ``renew`` leaves
        a detached record alone, so the deadline stays (docs/recovery.md, "Leases").

        (It and the other store loops end at ``_closing`` too: a store client may swallow
        the cancellation close() sends while one of its calls is on its way -- redis-py
        does, at times -- and the loop would go on, and wait_closed() with it.)"""
        assert self.store is not None
        while not self._closing:  # (close() cancels it, which a store call may swallow)
            await asyncio.sleep(max(self.lease / 3, 0.05))
            held = [sid for sid in self._links if sid not in self._detached]
            if not held:
                continue
            until = time.time() + self.options.resume_timeout + self.lease
            renewed = await self._store_call("renew", self.node, held, until)
            if renewed is None:
                continue  # (logged; the lease has room for two more tries)
            for sid in list(self._heard_unrecorded):
                conn = self._links.get(sid)
                self._heard_unrecorded.discard(sid)
                if conn is not None and conn.link is not None and sid not in self._detached:
                    self._in_order(sid, self._forget_previous(conn, conn.link.generation))
            for sid in set(held).difference(renewed):
                conn = self._links.get(sid)
                if conn is not None and sid not in self._detached:
                    self._in_order(sid, self._write_again(conn, until, renewing=True))

    async def _update_or_again(self, protocol: Connection, expires_at: float) -> None:
        """(Detached) The record's deadline, while this node holds it; missing, the record
        is written whole (a stale copy leaves another node's alone)."""
        link = protocol.link
        assert link is not None
        done = await self._store_call("update", protocol.id, expires_at=expires_at,
                                      detached=True, if_generation=link.generation,
                                      if_node=self.node)  # fmt: skip
        if done is False:
            await self._write_again(protocol, expires_at)

    async def _refresh_secret(self) -> None:
        """Every ``lease / 3`` (beside the renewal, not in its way): the store's secrets
        again, this node's asserted there (docs/recovery.md, "Several nodes"), so that the
        nodes sharing a store that lost its secret sign with one again."""
        assert self.store is not None
        while not self._closing:  # (close() cancels it, which a store call may swallow)
            await asyncio.sleep(max(self.lease / 3, 0.05))
            keys = await self._store_call("refresh_secret")
            if keys:
                self._use_secrets(keys)

    def _use_secrets(self, keys: Sequence[bytes], first: bool = False) -> None:
        """Sign with ``keys[0]`` from now on; check tokens (and identities) with each."""
        if not first and keys[0] != self._secret:
            log.warning("session store %s: the server secret changed (the store lost it and"
                        " another node made one); tokens are signed with it from now on,"
                        " and those signed with the one before are still taken",
                        self.store.name)  # fmt: skip
        self._secret = keys[0]
        self._secrets = tuple(keys)

    def _heard(self, protocol: Connection) -> None:
        """(With a store) The client was heard on the connection it resumed: the token
        before is good no more, here or on another node (the record's ``heard_at``,
        cleared while this node holds the record at this generation)."""
        link = protocol.link
        if (link is None or self._links.get(protocol.id) is not protocol
                or link.heard_at is None):  # fmt: skip
            return
        link.heard_at = None
        self._in_order(protocol.id, self._forget_previous(protocol, link.generation))

    async def _forget_previous(self, protocol: Connection, generation: int) -> None:
        """The record's ``heard_at`` cleared; the store did not answer: again at the next
        lease renewal.  (Not held here at ``generation`` any more: nothing to clear; a
        record missing is written whole, without it, by the renewal.)"""
        done = await self._store_call("update", protocol.id, heard_at=None,
                                      if_generation=generation, if_node=self.node)  # fmt: skip
        if done is None and self._links.get(protocol.id) is protocol:
            self._heard_unrecorded.add(protocol.id)

    def _drop_moved(self, old: Connection, why: str) -> None:
        """This node's copy of a session is stale: another node resumed it since.  It ends
        here, without a word to the store (the record is the other node's) and without
        being remembered as over (a resume of it goes to the store)."""
        session = self._live.get(old.id)
        old.end(SessionAborted(f"the session moved to another node: {why}"))
        if session is not None and self._live.get(old.id) is session:
            self._over_now(session, f"it moved to another node: {why}", moved=True)
            self._finished.add(session)  # (its handler ends later)

    async def _sweep(self) -> None:
        """Remove from the store the sessions whose client did not come back in time,
        whichever node held them (a node that died cannot expire its own)."""
        assert self.store is not None
        interval = min(max(self.options.resume_timeout / 4, 0.05), 30.0)
        while not self._closing:  # (close() cancels it, which a store call may swallow)
            await asyncio.sleep(interval)  # (the sweep's period)
            expired = await self._store_call("expire", time.time())
            if expired:
                log.info("session store %s: %d expired sessions removed",
                         self.store.name, len(expired))  # fmt: skip

    def _link_lost(self, protocol: Connection) -> None:
        """A resumable session lost its connection: it waits ``resume_timeout`` for its
        client (and no more than ``max_detached`` sessions wait at once: the oldest goes)."""
        sid = protocol.id
        link = protocol.link
        if sid not in self._links or link is None:
            return
        self.stats.interrupted += 1
        timeout = self.options.resume_timeout
        # Every session waits the same time from its loss (``link.lost_at``): the one
        # detached first expires first, and one timer, for the oldest, serves them all.
        self._detached[sid] = protocol
        self._detached.move_to_end(sid)
        while len(self._detached) > self.max_detached:
            _, oldest = self._detached.popitem(last=False)
            self._expire(oldest, None)
        if self._expiry is None:
            loop = asyncio.get_running_loop()
            self._expiry = loop.call_at(link.lost_at + timeout, self._expire_due)
        if self.store is not None:
            self._in_order(sid, self._update_or_again(protocol, time.time() + timeout))

    def _expire_due(self) -> None:
        """The oldest detached session's time is up: it ends, and so does every other
        whose time is; the timer is armed again for the next."""
        self._expiry = None
        now = asyncio.get_running_loop().time()
        timeout = self.options.resume_timeout
        detached = self._detached
        while detached:
            sid, protocol = next(iter(detached.items()))
            link = protocol.link
            due = link.lost_at + timeout if link is not None else now
            if due > now:
                self._expiry = asyncio.get_running_loop().call_at(due, self._expire_due)
                return
            del detached[sid]
            self._expire(protocol, timeout)

    def _expire(self, protocol: Connection, timeout: float | None) -> None:
        self._detached.pop(protocol.id, None)
        if not protocol.detached:
            return
        self.stats.expired += 1
        why = (
            f"the client did not resume the session within {timeout:g} s" if timeout is not None
            else f"more than {self.max_detached} sessions were waiting to be resumed"
        )  # fmt: skip
        protocol.end(ResumeRefused(why, "expired"))  # (a SessionAborted, as any end of it)
        session = self._live.get(protocol.id)
        if session is not None and self._links.get(protocol.id) is protocol:
            self._finish(session)  # (now, whatever its handler is waiting for)

    async def _resume(self, protocol: Connection, event: ev.ConnectIndication,
                      hello: Hello) -> None:  # fmt: skip
        """A CN whose hello carries a resume token: the live session takes the new
        connection over, or (with a store) the session restarts from its checkpoint."""
        try:
            await self._resume_checked(protocol, event, hello)
        except Exception as exc:
            self._resume_failed(protocol, exc)
        finally:
            self._unpend(protocol, asyncio.current_task())

    def _live_session(self, hello: Hello | None) -> Connection | None:
        """The session live on this server that the hello resumes, if any."""
        if hello is None or hello.resume is None:
            return None
        try:
            sid, _ = parse(hello.resume)
        except ResumeRefused:
            return None  # (said by _resume)
        old = self._links.get(sid)
        return old if old is not None and not old.closed else None

    def _resume_at_once(self, old: Connection, protocol: Connection,
                        event: ev.ConnectIndication, hello: Hello) -> None:  # fmt: skip
        """The resume of a session live here, with no callback and no store to await: done
        at once."""
        try:
            if not self._recovery or not self._resumable(hello, event):
                raise ResumeRefused("this server does not resume sessions", "refused")
            self._resume_checked_live(old, protocol, event, hello)
        except Exception as exc:
            self._resume_failed(protocol, exc)

    def _resume_failed(self, protocol: Connection, exc: Exception) -> None:
        if isinstance(exc, ResumeRefused):
            self.stats.resume_refused[exc.code] += 1
            # (A corrupt record is the operator's to look at: the one line says which.)
            level = logging.WARNING if exc.code == "corrupt" else logging.INFO
            self._refuse(protocol, Refuse(str(exc)), code=RESUME_CODE_PREFIX + exc.code,
                         level=level)  # fmt: skip
        elif isinstance(exc, Refuse):  # (authentication: final, the client stops trying)
            self.stats.resume_refused["refused"] += 1
            self._refuse(protocol, exc, code=RESUME_CODE_PREFIX + "refused")
        elif isinstance(exc, _AuthenticateFailed | DecodeError):
            self._refuse(protocol, _refusal(protocol, exc.__cause__ or exc))
        else:  # a bug (ours, a store's): final, said once, with its cause
            log.error("resuming a session for %s failed; refusing: %s: %s", protocol.peer,
                      type(exc).__name__, exc, exc_info=exc)  # fmt: skip
            self.stats.resume_refused["refused"] += 1
            self._refuse(protocol, Refuse("the server failed resuming the session (a server"
                                          " error, in its log)"),
                         code=RESUME_CODE_PREFIX + "refused")  # fmt: skip

    async def _resume_checked(self, protocol: Connection, event: ev.ConnectIndication,
                              hello: Hello) -> None:  # fmt: skip
        token = hello.resume
        assert token is not None
        sid, _ = parse(token)
        if self._authenticate is not None:
            request = ConnectRequest(protocol.peer, hello, event, _peer_cert(protocol))
            try:
                verdict = self._authenticate(request)
                if inspect.isawaitable(verdict):
                    verdict = await self._verdict(protocol, verdict)
            except Refuse:
                raise
            except Exception as exc:  # (the callback's: "authentication error")
                raise _AuthenticateFailed() from exc
            if verdict is not True:
                raise _not_accepted(protocol, verdict)
        if not self._recovery or not self._resumable(hello, event):
            raise ResumeRefused("this server does not resume sessions", "refused")
        old = self._links.get(sid)
        if old is not None and not old.closed:
            if self.store is None:
                self._resume_checked_live(old, protocol, event, hello)
                return
            if await self._in_order(sid, self._resume_confirmed(sid, protocol, event, hello)):
                return
        over = self._over.get(sid)
        if over is not None:  # (the token is checked first: nothing said to a stranger)
            why, code, generation, identity = over
            presenter = self._presenter(hello, protocol, identity)
            if not self._moved_on(token, generation, identity, presenter):
                verify(self._secrets, token, generation=generation, identity=identity,
                       presenter=presenter, previous=True)  # fmt: skip
                raise ResumeRefused(f"session {sid} is over: {why}", code)
            del self._over[sid]  # (over here, but resumed on another node since)
        if self.store is None:
            raise ResumeRefused(f"no session {sid} here, and no store that could hold it",
                                "no_store")  # fmt: skip
        await self._resume_stored(protocol, event, hello, sid, token)

    def _presenter(self, hello: Hello, protocol: Connection, identity: str) -> str:
        """The identity of whoever presents ``hello``'s token, to compare with ``identity``
        (the session's): keyed with the secret that made ``identity`` (the current one,
        or the one before), or unkeyed for a record of an older version."""
        return presenter_of(hello.credentials, _peer_der(protocol), identity, self._secrets)

    def _moved_on(self, token: str, generation: int, identity: str, presenter: str) -> bool:
        """(With a store) ``token`` is newer than ``generation``, the one this node knows,
        and genuine: another node sharing the store resumed the session since, so what
        this node has of it is stale."""
        if self.store is None or parse(token)[1] <= generation:
            return False
        verify(self._secrets, token, generation=parse(token)[1], identity=identity,
               presenter=presenter)  # fmt: skip
        return True

    def _resume_checked_live(self, old: Connection, protocol: Connection,
                             event: ev.ConnectIndication, hello: Hello) -> None:  # fmt: skip
        """(No store) The token checked against the live session, which then takes
        ``protocol`` over (authentication, and whether this server resumes, are the
        caller's)."""
        gen, oldest = self._live_token(old, protocol, hello)
        if protocol.transport is not None and not protocol.transport.is_closing():
            link = old.link
            assert link is not None
            # (An older token than the current one: the current one again, never one before.)
            self._resume_live(old, protocol, hello, event, max(gen + 1, link.generation),
                              oldest)  # fmt: skip

    def _live_token(self, old: Connection, protocol: Connection,
                    hello: Hello) -> tuple[int, int]:  # fmt: skip
        """The hello's token checked against the live copy ``old`` of its session: the
        token's generation and the oldest one taken; ResumeRefused if it is not one of
        them.  (With a store) _Moved if the token is newer than this copy (another node
        resumed the session since): the copy was stale and is dropped, the store left
        alone."""
        token = hello.resume
        assert token is not None
        link = old.link
        assert link is not None
        presenter = presenter_of(hello.credentials, _peer_der(protocol), link.identity,
                                 self._secrets)  # fmt: skip
        if self._moved_on(token, link.generation, link.identity, presenter):
            self._drop_moved(old, f"a resume token of generation {parse(token)[1]} was"
                                  f" presented; this node's copy is at {link.generation}")
            raise _Moved()
        # The tokens before are still good while the client was not heard on the
        # connection of its last resume (that accept, and those of the resumes before it
        # if it was not heard since, may never have arrived).
        oldest = link.generation
        if link.heard_at is not None and old.bytes_in == link.bytes_at_resume:
            oldest = link.heard_at
        gen = verify(self._secrets, token, generation=link.generation,
                     identity=link.identity, presenter=presenter, oldest=oldest)
        return gen, oldest

    async def _resume_confirmed(self, sid: str, protocol: Connection,
                                event: ev.ConnectIndication, hello: Hello) -> bool:  # fmt: skip
        """(With a store; in the order of the session's store writes, after its detach's)
        The resume of the session's live copy here, confirmed by the store first: another
        node sharing it may have resumed the session since (its client sent there), and
        this copy, stale then, would still take a token of its own generation or one
        before it.  So the record is advanced from this copy's generation, a
        compare-and-set as a resume from the store makes (missing, or behind this copy: it
        is written whole unless another node's stands in the way, in one atomic step),
        and only then does the copy take ``protocol`` over, with the next token.  False:
        the copy is stale (the store says another node resumed the session since) and is
        dropped, or it is over; the caller goes on as for a session not held here (from
        the store: resumed from its record, or refused as that says).  ResumeRefused
        (``store_unavailable``, ``corrupt``) if the store cannot say."""
        old = self._links.get(sid)
        if old is None or old.closed:
            return False  # (over while the session's earlier writes were done)
        try:
            _, oldest = self._live_token(old, protocol, hello)
        except _Moved:
            return False
        if protocol.transport is None or protocol.transport.is_closing():
            return True  # (gone already: nothing to resume, the copy as it was)
        link = old.link
        assert link is not None
        generation = link.generation + 1  # (the store's, whichever token: the CAS is on it)
        try:
            moved = await self._confirm_live(old, protocol, generation, oldest)
        except StoreUnavailable as exc:
            raise self._store_refusal(exc) from None
        if moved is not None:
            self._drop_moved(old, moved)
            return False
        if self._links.get(sid) is not old or old.closed:
            return False  # (over meanwhile, expired say: told by _over; its record's lease
            # runs out)
        if protocol.transport is None or protocol.transport.is_closing():
            # Gone while the store confirmed: the copy stays as it was, at the generation
            # its record is at now, the client's token still taken (it was not heard).
            link.generation = generation
            link.heard_at = min(oldest, generation - 1)
            link.bytes_at_resume = old.bytes_in
            if old.detached:  # (its deadline again, which the advance made a lease)
                loop = asyncio.get_running_loop()
                left = link.lost_at + self.options.resume_timeout - loop.time()
                self._store_write("update", sid, expires_at=time.time() + max(left, 0.0),
                                  detached=True, if_generation=generation,
                                  if_node=self.node)  # fmt: skip
            return True
        self._resume_live(old, protocol, hello, event, generation, oldest)
        return True

    async def _confirm_live(self, old: Connection, protocol: Connection, generation: int,
                            oldest: int) -> str | None:  # fmt: skip
        """(A live resume, before it is accepted) The store's record advanced to
        ``generation`` from this copy's, held by this node (a compare-and-set); missing or
        behind, written whole unless another node's record stands in the way
        (``put_unless_taken``).  None when it is done, else why this copy is stale.
        Raises StoreUnavailable."""
        store = self.store
        link = old.link
        assert store is not None and link is not None
        sid = old.id
        expires = time.time() + self.options.resume_timeout + self.lease
        if await store.advance(sid, link.generation, node=self.node,
                               expires_at=expires) is not None:  # fmt: skip
            return None
        record = await store.get(sid)
        if record is not None:
            created = record.created
        else:  # (never recorded, or swept: from the session's age here)
            session = self._live.get(sid)
            created = time.time() - (session.info().age if session is not None else 0.0)
        mine = SessionRecord(
            id=sid, generation=generation, identity=link.identity,
            chosen=dict(old.agent.chosen), created=created, expires_at=expires,
            checkpoint=link.checkpoint, node=self.node, peer=peer_text(protocol.peer),
            heard_at=min(oldest, generation - 1),
        )  # fmt: skip
        taken = record if record is not None and record.bars(mine) else None
        if taken is None:
            taken = await store.put_unless_taken(mine)
        if taken is None:
            log.info("session %s recorded again in session store %s (its record was %s)",
                     sid, store.name, "missing" if record is None else
                     f"at generation {record.generation}")  # fmt: skip
            return None
        return (f"the store says node {taken.node} resumed it (its record is at generation"
                f" {taken.generation}; this node's copy is at {link.generation})")

    @staticmethod
    def _store_refusal(exc: StoreUnavailable) -> ResumeRefused:
        """What a resume is refused with when the store raised ``exc``: not final
        (``store_unavailable``: it may answer in a moment), but for a record it cannot read
        (``corrupt``: it will not heal; the message names it, and the refusal is logged as
        a WARNING)."""
        if exc.corrupt is None:
            return ResumeRefused(f"the session store failed: {exc}", "store_unavailable")
        return ResumeRefused(f"session store {exc.store}: {exc.why} (it will not heal)",
                             "corrupt")  # fmt: skip

    def _resume_live(self, old: Connection, protocol: Connection, hello: Hello,
                     event: ev.ConnectIndication, generation: int,
                     oldest: int) -> None:  # fmt: skip
        """The live copy ``old`` takes ``protocol`` over, at ``generation`` (the token it
        gives), the tokens from ``oldest`` on still taken until the client is heard."""
        sid = old.id
        link = old.link
        journal = old.journal
        assert link is not None and journal is not None
        if not old.detached:  # the old connection is dead but nobody noticed yet
            old.drop_link("a new connection resumed the session")
        self._detached.pop(sid, None)
        link.generation = generation
        link.heard_at = min(oldest, link.generation - 1)
        chosen = old.agent.chosen
        old.adopt(protocol)
        link.bytes_at_resume = old.bytes_in
        if self.store is not None:
            old.watch_heard()  # (then the record's heard_at is cleared: _heard)
        cid = event.connection_id
        mine = link.activity
        welcome = Welcome(
            chosen=chosen, session_id=sid, token=issue(self._secret, sid, link.generation,
                                                       link.identity),
            resumed="resumed", recv=journal.received,
            act=mine[0].hex() if mine is not None else None, fast=self.options.fast_connect,
            max_tsdu=self.options.max_tsdu_size,
        )  # fmt: skip
        reply_cid = ConnectionId(common_ref=cid.common_ref) if cid is not None else None
        old.agent.accept(chosen=chosen, session_id=sid, connection_id=reply_cid, welcome=welcome)
        old.agent.journal = journal
        try:
            replay = old.agent.replay(hello.recv or 0)
        except RemoteError as exc:
            old.end(SessionAborted(f"cannot resume: {exc}", exc.reason))
            old.flush()
            return
        self.stats.resumed["resumed"] += 1
        # An activity in progress is resumed by the client first (S-ACTIVITY-RESUME); one
        # the client never had (our S-ACTIVITY-START was lost) is started again here.
        both = mine is not None and hello.act == mine[0].hex()
        old.resumed("resumed", replay, hold=mine is not None)
        if mine is not None and not both:
            link.activity = None
            old.restart_activity(mine[0], link.activity_data)

    async def _resume_stored(self, protocol: Connection, event: ev.ConnectIndication,
                             hello: Hello, sid: str, token: str) -> None:  # fmt: skip
        """Case 2: the session's live state is gone with the process (or node) that held
        it; its record says where it was last confirmed: resume from that checkpoint."""
        store = self.store
        try:
            record = await store.get(sid)
            if record is None:
                raise ResumeRefused(f"unknown session {sid} (never opened, or expired)",
                                    "unknown")  # fmt: skip
            if record.expires_at is not None and record.expires_at <= time.time():
                await store.delete(sid, if_generation=record.generation)
                raise ResumeRefused(f"session {sid} expired", "expired")
            # (The tokens before are taken too while the record says so: the accepts of the
            # last resumes, on nodes that died, may never have arrived.  Once the node
            # holding it heard the client on the connection it resumed, they are not.)
            verify(self._secrets, token, generation=record.generation,
                   identity=record.identity, oldest=record.oldest,
                   presenter=self._presenter(hello, protocol, record.identity))  # fmt: skip
            expires = time.time() + self.options.resume_timeout + self.lease
            new = await store.advance(sid, record.generation, node=self.node, expires_at=expires)
        except StoreUnavailable as exc:
            raise self._store_refusal(exc) from None
        if new is None:
            raise ResumeRefused("the resume token was used before (each resumes once)",
                                "token_replayed")  # fmt: skip
        if protocol.transport is None or protocol.transport.is_closing():
            return
        if len(self._live) + self._pending > self.max_sessions:
            raise Refuse("too many sessions", RefuseReason.SPM_CONGESTION)
        # What the resume goes on from is the record advance wrote (``new``), not the one
        # read before it: a checkpoint the node that held the session recorded meanwhile
        # (at the same generation) is in it, and the client is told that one.
        checkpoint = new.checkpoint
        cid = event.connection_id
        session = Session(protocol, sid)
        session.peer_reference = cid.common_ref if cid is not None else None
        session.restored = checkpoint if checkpoint is not None else Checkpoint(0, None)
        welcome = Welcome(
            chosen=dict(new.chosen), session_id=sid,
            token=issue(self._secret, sid, new.generation, new.identity),
            resumed="checkpoint", recv=0,
            checkpoint=(checkpoint.serial, checkpoint.user_data) if checkpoint else None,
            fast=self.options.fast_connect, max_tsdu=self.options.max_tsdu_size,
        )  # fmt: skip
        reply_cid = ConnectionId(common_ref=cid.common_ref) if cid is not None else None
        protocol.agent.accept(chosen=dict(new.chosen), session_id=sid,
                              connection_id=reply_cid, welcome=welcome)  # fmt: skip
        link = protocol.enable_recovery(Journal(self.options.retention))
        link.generation = new.generation
        link.identity = new.identity
        link.checkpoint = checkpoint
        # The tokens before stay good, here too, until the client is heard here.
        link.heard_at = new.heard_at
        link.bytes_at_resume = protocol.bytes_in
        protocol.watch_heard()
        self._links[sid] = protocol
        protocol.defer_checkpoints(None)
        protocol.handshake_over()
        protocol.resumed("checkpoint", [], checkpoint=checkpoint, tell_reader=False)
        self._live[sid] = session
        self.stats.accepted += 1
        self.stats.resumed["checkpoint"] += 1
        session.log.info("session %s resumed from %s on node %s", sid,
                         f"checkpoint {checkpoint.serial}" if checkpoint else "its start",
                         self.node)  # fmt: skip
        self._start(session)

    # ------------------------------------------------------------ list and drop

    @property
    def detached(self) -> list[SessionInfo]:
        """The sessions waiting for their client to resume them (also in ``sessions``)."""
        return [self._live[sid].info() for sid in self._detached if sid in self._live]

    def drop(self, session_id: str) -> bool:
        """End a session now (a detached one will not be resumed); False if unknown."""
        session = self._live.get(session_id)
        if session is None:
            return False
        link = self._links.get(session_id)
        detached = link is not None and link.detached
        session.abort()
        if detached:  # (its client, back later, is told "ended" whatever the handler does)
            self._finish(session)
        return True

    def _refuse(self, protocol: Connection, refusal: Refuse, code: str = "refused",
                level: int = logging.INFO) -> None:  # fmt: skip
        try:
            name = RefuseReason(refusal.reason).name.lower()
        except ValueError:
            name = str(refusal.reason)
        self.stats.refused[name] += 1
        log.log(level, "refusing session from %s: %s", peer_text(protocol.peer),
                refusal.message)  # fmt: skip
        with contextlib.suppress(SessionLayerError):
            # X.225 8.3.5: only reason 2 carries user data; the others speak for themselves.
            with_text = refusal.reason == RefuseReason.USER_DATA
            protocol.agent.refuse(
                refusal.reason, Rejection(refusal.message, code).encode() if with_text else None
            )
            protocol.flush()
        protocol.handshake_over()
        protocol.close()

    def _start(self, session: Session) -> None:
        """Run the handler as a task of its own; ``_handler_done`` cleans up after it.

        No wrapper coroutine: an idle session holds only the handler's own frames.
        """
        try:
            running = self._handler(session)
            if inspect.iscoroutine(running):  # named after the session: its id, not "Task-N"
                task = asyncio.get_running_loop().create_task(running, name=session.id)
            else:
                task = asyncio.ensure_future(running)
        except Exception as exc:  # (raised at once, or not awaitable: not an async def?)
            session.log.error("handler of session %s failed to start (an async function of"
                              " the session is expected); aborting it", session.id,
                              exc_info=exc)  # fmt: skip
            session.abort()
            self._ended(session)
            return
        self._handlers[task] = session
        # One bound method and one empty context for every handler: nothing per session.
        task.add_done_callback(self._on_handler_done, context=_EMPTY_CONTEXT)

    def _handler_done(self, task: asyncio.Task[None]) -> None:
        session = self._handlers.pop(task)
        why: object = None
        if task.cancelled():
            session.abort()
            why = "the server is stopping" if self._closing else "its handler was cancelled"
        elif (exc := task.exception()) is not None:
            why = exc
            if not isinstance(exc, SessionLayerError):
                session.log.error("handler of session %s failed; aborting it", session.id,
                                  exc_info=exc)  # fmt: skip
                why = f"its handler failed: {exc!r}"
                session.abort()
        elif not session.closed:
            self._track(self._release(session))  # the handler returned: S-RELEASE
            return
        self._ended(session, why)

    async def _release(self, session: Session) -> None:
        try:
            with contextlib.suppress(SessionLayerError):
                await session.release()
        finally:
            self._ended(session)

    def _keep_over(self, sid: str, conn: Connection) -> None:
        link = conn.link
        if link is None or self._detaching:  # (a stop that leaves it to another node)
            return
        failure = conn.failure
        why = str(failure) if failure is not None else "it was released"
        # (A release whose DN the client may have lost: "released" ends its session as
        # released there, a pending release() returns.)
        code = failure.code if isinstance(failure, ResumeRefused) else (
            "ended" if failure is not None else "released")  # fmt: skip
        self._over[sid] = (why, code, link.generation, link.identity)
        while len(self._over) > _OVER_KEPT:
            self._over.popitem(last=False)

    def _ended(self, session: Session, why: object = None) -> None:
        """The session's handler is done (or never started) and the session over
        (``why``: what the handler raised, or else None)."""
        if session in self._finished:  # (_finish did it all when it ended)
            self._finished.discard(session)
            return
        self._over_now(session, why)

    def _finish(self, session: Session) -> None:
        """A detached session that has just ended (dropped, expired) is over for the server
        now, while its handler may still be waiting for something else: it is no longer
        live, a late resume is told why it ended, its record goes; ``_ended`` does no more
        when the handler returns."""
        if session in self._finished or self._live.get(session.id) is not session:
            return
        self._over_now(session)
        self._finished.add(session)  # (its handler, or its release, ends it later)

    def _over_now(self, session: Session, why: object = None, *, moved: bool = False) -> None:
        """The session is over here: its record goes (kept with ``close(detach=True)``;
        left alone when it ``moved`` to another node), and only while this node still holds
        it at the generation it knows (a stale copy never touches another node's record)."""
        sid = session.id
        if self._live.get(sid) is session:
            self._live.pop(sid, None)
            if (link := self._links.pop(sid, None)) is not None:
                self._detached.pop(sid, None)
                if why is None:
                    why = link.failure
                if moved:
                    self._over.pop(sid, None)  # (a resume goes to the store, not told "over")
                else:
                    self._keep_over(sid, link)
                state = link.link
                if self.store is not None and state is not None and not moved:
                    held = {"if_generation": state.generation, "if_node": self.node}
                    if self._detaching:  # resumed elsewhere, later
                        expires = time.time() + self.options.resume_timeout
                        self._store_write("update", sid, expires_at=expires, detached=True,
                                          **held)  # fmt: skip
                    else:
                        self._store_write("delete", sid, **held)
        session.abort()
        info = session.info()
        self.stats.session_ended(info)
        if log.isEnabledFor(logging.INFO):
            if why is None:
                why = "released" if info.state == "released" else "aborted"
            session.log.info("session %s ended: %s", sid, why)


#: How many ended resumable sessions a server remembers the end of (for a late resume).
_OVER_KEPT = 1024
#: (With a store) The shortest lease of a node on its attached sessions' records (s).
_MIN_LEASE = 5.0

_EMPTY_CONTEXT = contextvars.Context()
_SS = int(FunctionalUnit.SYMMETRIC_SYNC)


_SLOT, _QUEUED, _FULL = SLOT, QUEUED, FULL  # what _admission gives a connection
#: (TLS server) A TCP connection accepted, its TLS handshake not done yet (aio/tls_accept.py).
_TlsAccept: TypeAlias = "TlsAccept[Connection]"


def _peer_der(protocol: Connection) -> bytes | None:
    """The peer's certificate (DER) under mutual TLS."""
    if protocol.transport is None:
        return None
    ssl_object = protocol.transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return der if isinstance(der, bytes) else None


_NO_OFFERS: dict[str, list[str]] = {}  # shared, never changed


def _not_accepted(protocol: Connection, verdict: Any) -> Refuse:
    """The refusal for what ``authenticate()`` returned when it is not True (it fails
    closed): False is "authentication failed", any other value a bug of the callback's,
    logged."""
    if verdict is False:
        return Refuse("authentication failed")
    log.error("authenticate() returned %s for %s, not True or False; refusing",
              reprlib.repr(verdict), protocol.peer)  # fmt: skip
    if inspect.iscoroutine(verdict):  # (an async function's result, never awaited)
        verdict.close()
    return Refuse("authentication error")


class _AuthenticateFailed(Exception):
    """(A resume) ``authenticate()`` raised its ``__cause__``."""


class _Moved(Exception):
    """(A resume) The live copy of the session was stale, and is dropped (_live_token)."""


def _refusal(protocol: Connection, exc: BaseException) -> Refuse:
    """The RF for a connect request whose checks raised ``exc``."""
    if isinstance(exc, Refuse):
        return exc
    if isinstance(exc, DecodeError):
        return Refuse(f"malformed connect request: {exc}")
    log.error("authenticate() failed for %s; refusing", protocol.peer, exc_info=exc)
    return Refuse("authentication error")


def _peer_cert(protocol: Connection) -> Any:
    if protocol.transport is None:
        return None
    return protocol.transport.get_extra_info("peercert")


async def serve(
    handler: Handler,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    tls: ssl.SSLContext | None = None,
    authenticate: Callable[[ConnectRequest], Any] | None = None,
    supported: Mapping[str, Sequence[str]] | None = None,
    accept_data: Callable[[ConnectRequest], bytes | None] | None = None,
    config: SessionConfig | None = None,
    options: Options | None = None,
    max_sessions: int = 1000,
    max_handshakes: int = 256,
    store: Any = None,
    max_detached: int = 1000,
    node: str | None = None,
    backlog: int = 4096,
    max_waiting: int | None = None,
    lease: float | None = None,
) -> Server:
    """Listen on ``host:port`` (0: a free port) and run ``handler(session)`` per session.

    ``authenticate(request)`` (sync or async) sees the credentials of each
    connect request and returns True to accept it, False to refuse it; anything else
    refuses and is logged; :class:`Refuse` raised refuses with its message.  A refusal is
    an RF that reaches the initiator as :class:`ConnectRefused`.  An async one is
    cancelled when its connection goes (the peer left, or the handshake deadline passed).
    ``supported`` maps application parameters to the values this server
    supports; the initiator's offers are matched against it.  ``accept_data``
    gives the AC user data for peers that are not sessionlayer (OSI stacks); what it
    raises refuses the session as ``authenticate``'s does.

    Limits: ``max_sessions`` live sessions (a CN beyond it gets RF "SPM congestion",
    0x83); ``max_handshakes`` TCP connections that are not sessions yet: more wait, nothing
    read from them, until one of those ends (at most ``max_waiting`` wait, by default
    ``max_sessions`` or 16 x ``max_handshakes`` if more; one beyond is closed at once), and
    each has ``options.handshake_timeout`` from its accept to become a session (with
    ``tls``, its TLS handshake counts as in handshake and within that deadline); ``backlog``
    the listen queue (what a storm of reconnects needs; the kernel caps it at somaxconn).

    Recovery (``options.resume``, docs/recovery.md): a session whose client loses its
    connection waits ``options.resume_timeout`` for it (at most ``max_detached`` wait at
    once).  ``store`` (a :mod:`sessionlayer.stores` store) records sessions so that a
    restarted server, or another node sharing the store, resumes them from their last
    checkpoint; ``node`` names this server in it.  ``lease`` (seconds; by default
    ``resume_timeout`` or 5 s if more): the records of the sessions this node holds
    attached carry ``resume_timeout`` + ``lease`` from its last renewal (every
    ``lease / 3``), so that those of a node that died are removed.
    """
    if not callable(handler):
        raise TypeError(f"handler must be an async function of the session, not {handler!r}")
    for name, value in (("max_sessions", max_sessions), ("max_handshakes", max_handshakes),
                        ("max_detached", max_detached)):  # fmt: skip
        if type(value) is not int or value < 1:
            raise ValueError(f"{name} must be 1 or more, not {value!r}")
    if max_waiting is not None and (type(max_waiting) is not int or max_waiting < 0):
        raise ValueError(f"max_waiting must be 0 or more, not {max_waiting!r}")
    if lease is not None and (isinstance(lease, bool) or not isinstance(lease, int | float)
                              or not 0 < lease < math.inf):  # fmt: skip
        raise ValueError(f"lease must be a finite number of seconds above 0, not {lease!r}")
    check_port(port, lowest=0)
    check_tls(tls, "server")
    check_choices("supported", supported)
    check_kinds(options, config)
    options = options or Options()
    if config is None:  # (see connect(): a resumable session's default adds symmetric sync)
        config = RESUMABLE_CONFIG if options.resume else SessionConfig()
    server = Server(
        handler, options, config, authenticate,
        supported or {}, accept_data, max_sessions, max_handshakes, store, max_detached, node,
        max_waiting, lease,
    )  # fmt: skip
    await server.listen(host, port, tls, backlog)
    return server


def _why(exc: BaseException) -> object:
    """What a store's error says without the store's name, which the log line gives
    (StoreUnavailable's message starts "session store NAME unavailable: ...")."""
    return exc.why if isinstance(exc, StoreUnavailable) else exc
