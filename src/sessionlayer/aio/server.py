"""``serve()``: accept sessions and run a handler for each."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import secrets
import ssl
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..agent import Hello, Options, Rejection, SessionAgent, negotiate
from ..errors import DecodeError, Refuse, RefuseReason, SessionLayerError
from ..machine import SessionConfig
from ..machine import events as ev
from ..spdu.types import ConnectionId
from .connection import Connection
from .endpoint import Endpoint
from .session import Session, SessionInfo

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


@dataclass
class ServerStats:
    """Running totals of a server (``server.stats``); live sessions are in ``sessions``."""

    accepted: int = 0
    refused: Counter[str] = field(default_factory=Counter)  #: by RF reason name
    ended: Counter[str] = field(default_factory=Counter)  #: "released" / "aborted"
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
                 max_sessions: int, max_handshakes: int) -> None:  # fmt: skip
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
        self._server: asyncio.Server | None = None
        self._live: dict[str, Session] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending = 0
        self.stats = ServerStats()
        self._handlers: dict[asyncio.Task[None], Session] = {}
        # Bound once: every protocol and handler task shares them (nothing per session).
        self._on_handler_done = self._handler_done
        # What every connection of this server shares (made on the loop, in listen()).
        self._endpoint: Endpoint | None = None
        self._rejecting: Endpoint | None = None  # for connections over max_handshakes

    # ------------------------------------------------------------ public

    async def listen(self, host: str, port: int, tls: ssl.SSLContext | None = None) -> None:
        """Start listening (``serve()`` does it)."""
        loop = asyncio.get_running_loop()
        self._endpoint = Endpoint(
            self.options, on_connect_indication=self._indication,
            on_handshake_over=self._handshake_over,
        )  # fmt: skip
        self._rejecting = Endpoint(self.options)
        self._server = await loop.create_server(self._protocol, host, port, ssl=tls)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def sessions(self) -> list[SessionInfo]:
        """A snapshot of every live session."""
        return [s.info() for s in self._live.values()]

    def close(self) -> None:
        """Stop listening and abort every session."""
        if self._server is not None:
            self._server.close()
        for session in list(self._live.values()):
            session.abort()
        for task in [*self._tasks, *self._handlers]:
            task.cancel()

    async def wait_closed(self) -> None:
        if self._server is not None:
            await self._server.wait_closed()
        while self._tasks or self._handlers:
            await asyncio.gather(*self._tasks, *self._handlers, return_exceptions=True)

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()
        await self.wait_closed()

    # ------------------------------------------------------------ connect handling

    def _protocol(self) -> Connection:
        agent = SessionAgent("responder", self.config, self.options)
        assert self._endpoint is not None and self._rejecting is not None
        if self.handshakes >= self.max_handshakes:  # closed at once by connection_made
            protocol = Connection(agent, self._rejecting)
            protocol.rejected = True
            self.stats.refused["handshake_limit"] += 1
            return protocol
        self.handshakes += 1
        return Connection(agent, self._endpoint)

    def _handshake_over(self) -> None:
        self.handshakes -= 1

    def _indication(self, protocol: Connection, event: ev.ConnectIndication) -> None:
        """S-CONNECT indication: decide at once, or after an async authenticate().

        No task is made unless authentication is asynchronous, and the handler's task
        starts with nothing of the connect request kept alive but the session.
        """
        if len(self._live) + self._pending >= self.max_sessions:
            self._refuse(protocol, Refuse("too many sessions", RefuseReason.SPM_CONGESTION))
            return
        try:
            hello = protocol.agent.indication(event)
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
            self._pending += 1
            self._track(self._await_verdict(protocol, event, hello, request, chosen, verdict))
            return
        self._conclude(protocol, event, hello, request, chosen, verdict)

    async def _await_verdict(self, protocol: Connection, event: ev.ConnectIndication,
                             hello: Hello | None, request: ConnectRequest | None,
                             chosen: dict[str, str], verdict: Awaitable[Any]) -> None:  # fmt: skip
        try:
            outcome = await verdict
        except Exception as exc:
            self._refuse(protocol, _refusal(protocol, exc))
            return
        finally:
            self._pending -= 1
        self._conclude(protocol, event, hello, request, chosen, outcome)

    def _conclude(self, protocol: Connection, event: ev.ConnectIndication,
                  hello: Hello | None, request: ConnectRequest | None, chosen: dict[str, str],
                  verdict: Any) -> None:  # fmt: skip
        if verdict is False:
            self._refuse(protocol, Refuse("authentication failed"))
            return
        if protocol.transport is None or protocol.transport.is_closing():
            return
        session = self._accept(protocol, event, hello, request, chosen)
        self._start(session)

    def _track(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _accept(self, protocol: Connection, event: ev.ConnectIndication,
                hello: Hello | None, request: ConnectRequest | None,
                chosen: dict[str, str]) -> Session:  # fmt: skip
        cid = event.connection_id
        # The server names its sessions itself (random, unguessable, unique): the
        # initiator's Common Reference is kept beside it, and echoed in the AC (X.225 8.3.1.2).
        sid = secrets.token_bytes(16).hex()
        while sid in self._live:
            sid = secrets.token_bytes(16).hex()
        user_data = None
        if hello is None and self._accept_data is not None:
            assert request is not None
            user_data = self._accept_data(request)
        session = Session(protocol, sid)
        session.peer_reference = cid.common_ref if cid is not None else None
        reply_cid = ConnectionId(common_ref=cid.common_ref) if cid is not None else None
        protocol.agent.accept(
            chosen=chosen, session_id=sid, user_data=user_data, connection_id=reply_cid
        )
        protocol.handshake_over()
        protocol.start_liveness()
        protocol.flush()  # the AC goes out
        self._live[session.id] = session
        self.stats.accepted += 1
        if log.isEnabledFor(logging.INFO):
            session.log.info("session %s accepted from %s", session.id, protocol.peer)
        return session

    def _refuse(self, protocol: Connection, refusal: Refuse) -> None:
        try:
            name = RefuseReason(refusal.reason).name.lower()
        except ValueError:
            name = str(refusal.reason)
        self.stats.refused[name] += 1
        log.info("refusing session from %s: %s", protocol.peer, refusal.message)
        with contextlib.suppress(SessionLayerError):
            # X.225 8.3.5: only reason 2 carries user data; the others speak for themselves.
            with_text = refusal.reason == RefuseReason.USER_DATA
            protocol.agent.refuse(
                refusal.reason, Rejection(refusal.message).encode() if with_text else None
            )
            protocol.flush()
        protocol.handshake_over()
        protocol.close()

    def _start(self, session: Session) -> None:
        """Run the handler as a task of its own; ``_handler_done`` cleans up after it.

        No wrapper coroutine: an idle session holds only the handler's own frames.
        """
        running = self._handler(session)
        if inspect.iscoroutine(running):  # named after the session: its id, not a new "Task-N"
            task = asyncio.get_running_loop().create_task(running, name=session.id)
        else:
            task = asyncio.ensure_future(running)
        self._handlers[task] = session
        # One bound method and one empty context for every handler: nothing per session.
        task.add_done_callback(self._on_handler_done, context=_EMPTY_CONTEXT)

    def _handler_done(self, task: asyncio.Task[None]) -> None:
        session = self._handlers.pop(task)
        if task.cancelled():
            session.abort()
        elif (exc := task.exception()) is not None:
            if isinstance(exc, SessionLayerError):
                session.log.info("session %s ended: %s", session.id, exc)
            else:
                session.log.error("handler of session %s failed; aborting it", session.id,
                                  exc_info=exc)  # fmt: skip
                session.abort()
        elif not session.closed:
            self._track(self._release(session))  # the handler returned: S-RELEASE
            return
        self._ended(session)

    async def _release(self, session: Session) -> None:
        try:
            with contextlib.suppress(SessionLayerError):
                await session.release()
        finally:
            self._ended(session)

    def _ended(self, session: Session) -> None:
        self._live.pop(session.id, None)
        session.abort()
        self.stats.session_ended(session.info())


_EMPTY_CONTEXT = contextvars.Context()
_NO_OFFERS: dict[str, list[str]] = {}  # shared, never changed


def _refusal(protocol: Connection, exc: Exception) -> Refuse:
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
) -> Server:
    """Listen on ``host:port`` (0: a free port) and run ``handler(session)`` per session.

    ``authenticate(request)`` (sync or async) sees the credentials of each
    connect request and returns False or raises :class:`Refuse` to refuse it
    with an RF that reaches the initiator as :class:`ConnectRefused`.
    ``supported`` maps application parameters to the values this server
    supports; the initiator's offers are matched against it.  ``accept_data``
    gives the AC user data for peers that are not sessionlayer (OSI stacks).

    Limits: ``max_sessions`` live sessions (a CN beyond it gets RF "SPM congestion",
    0x83); ``max_handshakes`` TCP connections that are not sessions yet (one beyond it is
    closed at once; each has ``options.handshake_timeout`` to become a session).
    """
    server = Server(
        handler, options or Options(), config or SessionConfig(), authenticate,
        supported or {}, accept_data, max_sessions, max_handshakes,
    )  # fmt: skip
    await server.listen(host, port, tls)
    return server
