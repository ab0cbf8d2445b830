"""``Session``: one established session, as a Python developer uses it."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import AbortReason, LocalError, ResyncCollisionLost, SessionLayerError
from ..machine import TokenError
from ..machine import events as ev
from ..spdu.codes import ResyncType, Token, TokenSetting
from ..spdu.types import ConnectionId
from .protocol import SessionProtocol
from .signal import Signal

__all__ = [
    "Session",
    "SessionInfo",
    "SessionClosed",
    "SessionAborted",
    "ConnectRefused",
    "ReleaseRefused",
]

log = logging.getLogger("sessionlayer")


class SessionClosed(SessionLayerError):
    """The session ended by an orderly release; no more data will come."""


class SessionAborted(SessionLayerError):
    """The session was aborted (S-U-ABORT or S-P-ABORT).

    ``reason`` is the X.225 Transport Disconnect value (:class:`AbortReason`);
    ``by_peer`` says whether the peer's user asked for it.
    """

    def __init__(self, message: str, reason: int = 0, *, by_peer: bool = False,
                 user_data: bytes | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.reason = AbortReason(reason)
        self.by_peer = by_peer
        self.user_data = user_data


class ConnectRefused(SessionLayerError):
    """The responder refused the session (an RF SPDU).

    ``reason`` is the RF reason code (:class:`~sessionlayer.errors.RefuseReason`
    value); ``message`` the responder's text, when it gave one.
    """

    def __init__(self, message: str, reason: int, user_data: bytes | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.user_data = user_data


class ReleaseRefused(SessionLayerError):
    """The peer answered our FINISH with NOT FINISHED (negotiated release)."""


@dataclass(frozen=True)
class SessionInfo:
    """A snapshot of one live session, as ``server.sessions`` lists it."""

    id: str
    peer: Any
    state: str
    age: float
    bytes_in: int
    bytes_out: int
    messages_in: int
    messages_out: int
    tokens: int
    last_sync: int | None



_SYNC = Token.DATA | Token.MINOR_SYNC
_MAJOR = _SYNC | Token.MAJOR_ACTIVITY
_EVERY = _MAJOR | Token.RELEASE
#: The tokens each machine request needs (X.225 7.x), those of them that are available on
#: the connection: what ``_call_with_tokens`` asks the peer for, and nothing more.
_NEEDS: dict[str, Token] = {
    "send_data": Token.DATA,
    "minor_sync": _SYNC,
    "major_sync": _MAJOR,
    "activity_start": _MAJOR,
    "activity_resume": _MAJOR,
    "activity_end": _MAJOR,
    "activity_interrupt": Token.MAJOR_ACTIVITY,
    "activity_discard": Token.MAJOR_ACTIVITY,
    "send_capability_data": _EVERY,
    "give_control": _EVERY,
    "release": _EVERY,
}


#: Shared, always empty: an idle session holds no deque of its own.
_NO_DATA: collections.deque[bytes] = collections.deque(maxlen=0)


class Session:
    """A session between two SS-users.

    Iterate it (``async for data in session``) or call :meth:`receive` for
    S-DATA; indications other than data arrive on :meth:`events`.  Leaving
    ``async with session`` releases it.
    """

    # Slots: a server holds one Session per live session (idle sessions' memory).
    __slots__ = (
        "_asked",
        "_buffered",
        "_data",
        "_data_waiter",
        "_event_bytes",
        "_events",
        "_failure",
        "_has_events",
        "_log",
        "_owed",
        "_protocol",
        "_released",
        "_tokens_changed",
        "_waiters",
        "chosen",
        "id",
        "last_sync",
        "messages_in",
        "messages_out",
        "on_capability_data",
        "on_release",
        "peer_data",
        "peer_reference",
        "started",
    )  # fmt: skip

    def __init__(self, protocol: SessionProtocol, session_id: str, chosen: dict[str, str],
                 peer_data: bytes | None = None) -> None:  # fmt: skip
        self._protocol = protocol
        self.id = session_id
        self.chosen = dict(chosen)
        """Application parameters both sides agreed at connect (e.g. ``{"codec": "json"}``)."""
        self.peer_data = peer_data
        """User data the peer sent with its connect request or accept."""
        self.started = time.monotonic()
        self.messages_in = 0
        self.messages_out = 0
        self.last_sync: int | None = None
        self._log: logging.LoggerAdapter[logging.Logger] | None = None
        self._data: collections.deque[bytes] = _NO_DATA  # a deque of its own on first data
        self._buffered = 0
        self._events: collections.deque[ev.Event] | None = None  # made on the first event
        self._event_bytes = 0  # user data held in _events (counts against the limits)
        self._has_events: Signal | None = None  # made when somebody waits for events
        self._data_waiter: asyncio.Future[bytes] | None = None
        #: Futures of requests waiting for their confirm, by event class (made on first use).
        self._waiters: dict[type, collections.deque[asyncio.Future[Any]]] | None = None
        self._failure: SessionLayerError | None = None
        self._released = False
        self._tokens_changed: Signal | None = None  # see _peer_acted (made on first wait)
        self._asked = Token(0)  # tokens we asked the peer for and have not used yet
        self._owed = Token(0)  # tokens the peer asked us for
        self.on_release: Callable[[ev.ReleaseIndication], bool] | None = None
        """Called with each S-RELEASE indication; return False to refuse the release (NOT
        FINISHED, only with the negotiated release unit).  None accepts every release."""
        self.on_capability_data: Callable[[ev.CapabilityDataIndication], bytes | None] | None = (
            None
        )
        """Called with each S-CAPABILITY-DATA indication; what it returns is the user data of
        the S-CAPABILITY-DATA response (CDA, at most 512 octets).  None (the default, or a
        callback returning None) answers with no user data."""
        self.peer_reference: bytes | None = None
        """(Server) The Common Reference of the initiator's CN: the initiator's name for the
        session.  ``id`` is the server's own, random and unguessable."""
        protocol.session = self

    # ------------------------------------------------------------ properties

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        """The ``sessionlayer`` logger with this session's id on every record."""
        if self._log is None:
            self._log = logging.LoggerAdapter(log, {"session_id": self.id})
        return self._log

    @property
    def machine(self) -> Any:
        """The sans-I/O protocol machine (read its state; do not drive it)."""
        return self._protocol.machine

    @property
    def peer(self) -> Any:
        return self._protocol.peer

    @property
    def state(self) -> str:
        if self._failure is not None:
            return "aborted"
        if self._released:
            return "released"
        return str(self.machine.state)

    @property
    def closed(self) -> bool:
        return self._failure is not None or self._released

    @property
    def tokens(self) -> int:
        return int(self.machine.tokens_owned)

    def info(self) -> SessionInfo:
        p = self._protocol
        return SessionInfo(
            id=self.id, peer=self.peer, state=self.state,
            age=time.monotonic() - self.started, bytes_in=p.bytes_in, bytes_out=p.bytes_out,
            messages_in=self.messages_in, messages_out=self.messages_out,
            tokens=self.tokens, last_sync=self.last_sync,
        )  # fmt: skip

    # ------------------------------------------------------------ data

    async def send(self, data: bytes) -> None:
        """S-DATA request; waits while the transport is congested (backpressure)."""
        protocol = self._protocol
        if protocol.plain:  # (only while the session is open: see SessionProtocol.flush)
            # Fast path: GT+DT framed here (see sessionlayer.transport.fastpath).
            protocol.write_data(data if type(data) is bytes else bytes(data))
        else:
            self._check_open()
            try:
                self.machine.send_data(data)
            except TokenError:
                await self._call_with_tokens("send_data", data)
            protocol.flush()
        self.messages_out += 1
        if protocol.write_paused:
            await protocol.drain()

    async def receive(self) -> bytes:
        """The next S-DATA indication.  Raises :class:`SessionClosed` after release."""
        if self._data:
            return self._pop()
        try:
            return await self._next_waiter()
        except StopAsyncIteration:
            raise SessionClosed("the session was released") from None

    def __aiter__(self) -> Session:
        return self

    def __anext__(self) -> Awaitable[bytes]:
        # Not a coroutine function: with data buffered, a coroutine that takes it; else the
        # future the next S-DATA resolves.  A session waiting in ``async for`` holds no
        # frame of its own, only that future.
        if self._data:
            return self._take()
        return self._next_waiter()

    async def _take(self) -> bytes:
        return self._pop()

    def _next_waiter(self) -> asyncio.Future[bytes]:
        """The future the next S-DATA indication resolves (see _waiting), or the end of
        the session fails (StopAsyncIteration after a release).  Raises that at once if
        the session has ended."""
        if self._failure is not None:
            raise self._failure
        if self._released:
            raise StopAsyncIteration
        self._protocol.flush_out()  # what we sent may be what the peer answers
        waiter: asyncio.Future[bytes] = self._protocol.loop.create_future()
        self._data_waiter = waiter
        return waiter

    def _waiting(self) -> asyncio.Future[bytes] | None:
        """The reader's future if it waits for data (taken: only one S-DATA resolves it)."""
        waiter = self._data_waiter
        if waiter is None:
            return None
        self._data_waiter = None
        return None if waiter.done() else waiter  # (done: its task was cancelled)

    def _pop(self) -> bytes:
        item = self._data.popleft()
        self._buffered -= len(item)
        if self._protocol.reading_paused:
            self._protocol.update_reading(self._buffered)
        return item

    def deliver(self, messages: list[bytes]) -> None:
        """Data from the fast path (whole S-DATA indications, in order)."""
        self.messages_in += len(messages)
        waiter = self._waiting()
        if waiter is not None:  # the first goes straight to the reader
            waiter.set_result(messages[0])
            del messages[0]
        if messages:
            if self._data is _NO_DATA:
                self._data = collections.deque()
            self._data.extend(messages)
            self._buffered += sum(map(len, messages))
            self._check_buffered()

    def deliver_one(self, message: bytes) -> None:
        """One S-DATA indication (a read that held just that, or the general path's)."""
        self.messages_in += 1
        waiter = self._waiting()
        if waiter is not None:
            waiter.set_result(message)
            return
        if self._data is _NO_DATA:
            self._data = collections.deque()
        self._data.append(message)
        self._buffered += len(message)
        self._check_buffered()

    def _check_buffered(self) -> None:
        """Pause reading when too much waits for the reader."""
        if self._buffered >= self._protocol.options.max_buffered_bytes:
            self._protocol.update_reading(self._buffered)

    async def send_typed(self, data: bytes) -> None:
        """S-TYPED-DATA: data that may be sent without the data token."""
        self._check_open()
        self.machine.send_typed_data(bytes(data))
        self._protocol.flush()
        await self._protocol.drain()

    async def send_expedited(self, data: bytes) -> None:
        """S-EXPEDITED-DATA: up to 14 octets (RFC 1006 class 0 carries it in order)."""
        self._check_open()
        self.machine.send_expedited(bytes(data))
        self._protocol.flush()

    # ------------------------------------------------------------ events

    async def events(self) -> AsyncIterator[ev.Event]:
        """Indications other than data (tokens, sync points, activities, ...).

        Ends when the session ends (after the events that came before).
        """
        while True:
            event = self.next_event_nowait()
            if event is not None:
                yield event
            elif self.closed:
                return
            else:
                if self._has_events is None:
                    self._has_events = Signal()
                self._has_events.clear()
                await self._has_events.wait()

    def next_event_nowait(self) -> ev.Event | None:
        if self._events:
            event = self._events.popleft()
            self._event_bytes -= _event_size(event)
            options = self._protocol.options
            if len(self._events) < options.max_queued_events // 2 and (
                self._event_bytes < options.max_buffered_bytes // 2
            ):
                self._protocol.hold_events(False)
            return event
        return None

    def _put_event(self, event: ev.Event) -> None:
        """Queue an indication for :meth:`events`.  Unread events are bounded: past
        ``Options.max_queued_events`` events or ``max_buffered_bytes`` octets of their user
        data, reading from TCP pauses until the application has read half of them."""
        if self._events is None:
            self._events = collections.deque()
        self._events.append(event)
        self._event_bytes += _event_size(event)
        options = self._protocol.options
        if len(self._events) >= options.max_queued_events or (
            self._event_bytes >= options.max_buffered_bytes
        ):
            self._protocol.hold_events(True)
        if self._has_events is not None:
            self._has_events.set()

    # ------------------------------------------------------------ requests with confirms

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        self._check_open()
        result = getattr(self.machine, method)(*args, **kwargs)
        self._protocol.flush()
        return result

    async def _call_with_tokens(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call a request; when it needs tokens the peer holds, ask for them first.

        The peer's binding gives requested tokens as soon as it may, so a
        user never has to move tokens by hand to send, sync or release.
        Tokens asked for are kept until the request went out, even when the
        peer asks for them back meanwhile; then they are given.
        """
        asked = Token(0)
        try:
            while True:
                try:
                    return self._call(method, *args, **kwargs)
                except TokenError:
                    machine = self.machine
                    needed = _NEEDS.get(method, _EVERY)
                    missing = Token(needed & machine.tokens_available & ~machine.tokens_owned)
                    if not missing:
                        raise
                    asked |= missing
                    await self._acquire(missing)
        finally:
            if asked:
                self._asked &= ~asked
                if not self.closed:
                    self._give_owed()

    async def _acquire(self, tokens: Token) -> None:
        while missing := Token(tokens & ~self.machine.tokens_owned):
            self._check_open()
            new = Token(missing & ~self._asked)  # not asked for yet (or given away since)
            if new:
                self._call("please_tokens", new)
                self._asked |= new
            await self._next_peer_input()

    async def _next_peer_input(self) -> None:
        """Wait until the peer's next input was handled (or the session ended)."""
        if self._tokens_changed is None:
            self._tokens_changed = Signal()
        self._tokens_changed.clear()
        await self._tokens_changed.wait()

    def peer_acted(self) -> None:
        """After every input from the peer: wake those waiting for tokens or a GTA."""
        if self._tokens_changed is not None:
            self._tokens_changed.set()

    def _give_owed(self) -> None:
        """Give the tokens the peer asked for, once the machine allows it.

        Tokens this side asked for itself are kept until its request went out.
        """
        owed = Token(self._owed & self.machine.tokens_owned & ~self._asked)
        if not owed:
            return
        try:
            self.machine.give_tokens(owed)
        except LocalError:
            return  # not now (a confirm is pending); retried after the next event
        self._owed &= ~owed
        self._protocol.flush()

    async def open(
        self, user_data: bytes | None, connection_id: ConnectionId
    ) -> ev.ConnectConfirm | ev.RefuseConfirm:
        """(Initiator, used by ``connect()``) S-CONNECT request; the AC or RF that answers."""
        return await self._confirm_any(  # type: ignore[no-any-return]
            (ev.ConnectConfirm, ev.RefuseConfirm), "connect", user_data=user_data,
            connection_id=connection_id,
        )  # fmt: skip

    async def _confirm(self, kind: type, method: str, *args: Any, **kwargs: Any) -> Any:
        return await self._confirm_any((kind,), method, *args, **kwargs)

    async def _confirm_any(
        self, kinds: tuple[type, ...], method: str, *args: Any, **kwargs: Any
    ) -> Any:
        """Call a machine request and wait for the first event of one of ``kinds``."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = {}
        for kind in kinds:
            self._waiters.setdefault(kind, collections.deque()).append(future)
        try:
            await self._call_with_tokens(method, *args, **kwargs)
            return await future
        finally:
            for kind in kinds:  # (the session's end may have dropped every waiter)
                queue = self._waiters.get(kind) if self._waiters else None
                if queue is not None and future in queue:
                    queue.remove(future)
            if not future.done():
                future.cancel()
            elif not future.cancelled():
                future.exception()  # the request failed before its confirm was awaited

    async def sync(self, *, major: bool = False, confirm: bool = True,
                   user_data: bytes | None = None) -> int:  # fmt: skip
        """Set a synchronization point; return its serial number once the peer confirmed.

        ``major=True`` is S-SYNC-MAJOR (always confirmed); otherwise
        S-SYNC-MINOR, confirmed unless ``confirm=False``.
        """
        if major:
            event = await self._confirm(ev.MajorSyncConfirm, "major_sync", user_data=user_data)
        elif confirm:
            event = await self._confirm(
                ev.MinorSyncConfirm, "minor_sync", confirm=True, user_data=user_data
            )
        else:
            serial = int(
                await self._call_with_tokens("minor_sync", confirm=False, user_data=user_data)
            )
            self.last_sync = serial
            return serial
        self.last_sync = int(event.serial)
        return self.last_sync

    async def resync(self, kind: int = ResyncType.RESTART, serial: int | None = None,
                     tokens: Mapping[Token, TokenSetting] | None = None,
                     user_data: bytes | None = None) -> int:  # fmt: skip
        """S-RESYNCHRONIZE (:class:`ResyncType` restart, abandon or set); returns the new serial.

        ``serial``: restart needs V(R) <= serial <= V(M), set any; abandon takes V(M).
        ``tokens``: where each token goes afterwards (``TokenSetting.INITIATOR`` = this side,
        ``RESPONDER`` = the peer, ``CALLED_CHOICE`` = the peer's choice); None keeps them.
        Raises :class:`ResyncCollisionLost` when the peer's colliding resync won (X.225
        7.24): it was answered instead, and the error says where the session now stands.
        """
        # While our RS is outstanding the only ResyncIndication is a colliding RS that won.
        kinds = (ev.ResyncConfirm, ev.ResyncIndication)
        event = await self._confirm_any(
            kinds, "resync", kind, serial=serial, tokens=tokens, user_data=user_data
        )
        if isinstance(event, ev.ResyncIndication):
            machine = self.machine  # answered (RA) by _auto_respond before this resumed
            raise ResyncCollisionLost(
                f"the peer's resynchronize ({ResyncType(event.type).name.lower()}) won the"
                f" collision with ours; resynchronized to serial number {machine.vm}",
                serial=int(machine.vm), tokens=int(machine.tokens_owned),
                type=int(event.type), user_data=event.user_data,
            )  # fmt: skip
        return int(event.serial)

    def give_tokens(self, tokens: int) -> None:
        """S-TOKEN-GIVE."""
        self._call("give_tokens", Token(tokens))

    def please_tokens(self, tokens: int, user_data: bytes | None = None) -> None:
        """S-TOKEN-PLEASE."""
        self._call("please_tokens", Token(tokens), user_data=user_data)

    async def give_control(self) -> None:
        """S-CONTROL-GIVE: hand every available token to the peer.

        Fetches the tokens it lacks first; returns once the peer acknowledged (GTA).
        """
        await self._call_with_tokens("give_control")
        while self.machine.state == "STA18":  # waiting for GIVE TOKENS ACK
            self._check_open()
            await self._next_peer_input()

    def exception_report(self, reason: int, user_data: bytes | None = None) -> None:
        """S-U-EXCEPTION-REPORT."""
        self._call("exception_report", reason, user_data=user_data)

    async def capability_data(self, data: bytes | None = None) -> bytes | None:
        """S-CAPABILITY-DATA; returns the peer's reply data."""
        event = await self._confirm(ev.CapabilityDataConfirm, "send_capability_data", data)
        return event.user_data  # type: ignore[no-any-return]

    # ------------------------------------------------------------ activities

    @contextlib.asynccontextmanager
    async def activity(self, activity_id: bytes, user_data: bytes | None = None
                       ) -> AsyncIterator[Session]:  # fmt: skip
        """``async with session.activity(b"id"):`` -- S-ACTIVITY-START ... S-ACTIVITY-END.

        An exception inside the block discards the activity instead of ending it.
        """
        await self._call_with_tokens("activity_start", activity_id, user_data=user_data)
        try:
            yield self
        except BaseException:
            if self._in_activity(activity_id):
                await self.discard_activity()
            raise
        if self._in_activity(activity_id):  # not interrupted or discarded in the block
            await self.end_activity()

    def _in_activity(self, activity_id: bytes) -> bool:
        machine = self.machine
        return (
            not self.closed
            and machine.activity_in_progress
            and machine.activity_id == bytes(activity_id)
        )

    async def end_activity(self, user_data: bytes | None = None) -> int:
        event = await self._confirm(ev.ActivityEndConfirm, "activity_end", user_data=user_data)
        return int(event.serial)

    async def interrupt_activity(self, reason: int = 0, user_data: bytes | None = None) -> None:
        await self._confirm(
            ev.ActivityInterruptConfirm, "activity_interrupt", reason=reason, user_data=user_data
        )

    async def discard_activity(self, reason: int = 0, user_data: bytes | None = None) -> None:
        await self._confirm(
            ev.ActivityDiscardConfirm, "activity_discard", reason=reason, user_data=user_data
        )

    async def resume_activity(self, activity_id: bytes, old_activity_id: bytes, serial: int,
                              old_connection_id: ConnectionId | None = None,
                              user_data: bytes | None = None) -> None:  # fmt: skip
        """S-ACTIVITY-RESUME of an interrupted activity at sync point ``serial``.

        ``old_connection_id`` names the session connection the activity began on (linking
        information; None: empty references, it began on this one).  End it with
        :meth:`end_activity`.
        """
        await self._call_with_tokens(
            "activity_resume", activity_id, old_activity_id, serial,
            old_connection_id=old_connection_id, user_data=user_data,
        )  # fmt: skip

    # ------------------------------------------------------------ ending

    async def release(self, user_data: bytes | None = None) -> bytes | None:
        """S-RELEASE: orderly release (FN, answered by DN); returns the DN's user data.

        Raises :class:`ReleaseRefused` when the peer answered NF; aborts the
        session when no answer comes within the release timeout.
        """
        if self._released:
            return None
        try:
            async with asyncio.timeout(self._protocol.options.release_timeout):
                event = await self._confirm(ev.ReleaseConfirm, "release", user_data=user_data)
        except TimeoutError:
            failure = SessionAborted(
                "no answer to the release request (release timeout)",
                AbortReason.TRANSPORT_RELEASED | AbortReason.NO_REASON,
            )
            self.log.warning("session %s: %s", self.id, failure)
            self._abort(failure)
            raise failure from None
        except SessionClosed:
            return None  # the peer released first (while we waited for the tokens)
        if not event.accepted:
            raise ReleaseRefused("the peer refused to release (NOT FINISHED)")
        return event.user_data  # type: ignore[no-any-return]

    def abort(self, user_data: bytes | None = None) -> None:
        """S-U-ABORT: end the session at once (AB); data in transit may be lost."""
        self._abort(SessionAborted("aborted by the local user", AbortReason.USER_ABORT), user_data)

    def _abort(self, failure: SessionAborted, user_data: bytes | None = None) -> None:
        if self.closed:
            return
        with contextlib.suppress(SessionLayerError):
            self.machine.abort(user_data=user_data, now=self._protocol.loop.time())
            self._protocol.flush()
        self._end(failure)
        if self._protocol.transport is not None:
            self._protocol.transport.close()

    async def wait_closed(self) -> None:
        await self._protocol.wait_closed()

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self.closed:
            return
        if exc_type is None or issubclass(exc_type, SessionClosed | GeneratorExit):
            await self.release()
        else:
            self.abort()

    # ------------------------------------------------------------ internals

    def _check_open(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._released:
            raise SessionClosed("the session was released")

    def _end(self, failure: SessionLayerError | None) -> None:
        self._protocol.plain = False
        if failure is not None and self._failure is None and not self._released:
            self._failure = failure
        elif failure is None:
            self._released = True
        for queue in (self._waiters or {}).values():
            while queue:
                future = queue.popleft()
                if not future.done():
                    future.set_exception(
                        self._failure or SessionClosed("the session was released")
                    )
        self._waiters = None
        waiter = self._waiting()
        if waiter is not None:
            waiter.set_exception(self._failure or StopAsyncIteration())
            waiter.exception()  # retrieved: the reader still gets it raised, if it awaits
        self.peer_acted()
        if self._has_events is not None:
            self._has_events.set()

    def _resolve(self, event: ev.Event) -> bool:
        queue = self._waiters.get(type(event)) if self._waiters else None
        while queue:
            future = queue.popleft()
            if not future.done():
                future.set_result(event)
                return True
        return False

    def handle_event(self, event: ev.Event) -> None:
        """Called by the protocol for each indication or confirm."""
        if self._failure is not None:
            return  # aborted: what the peer sent after that changes nothing
        if isinstance(event, ev.DataIndication):
            self.deliver_one(event.data)
            return
        if isinstance(event, ev.ReleaseIndication):
            # In a release collision our own release may be confirmed first: the session is
            # then released already, and the peer's FINISH still needs its DISCONNECT.
            if not self._released:
                self._put_event(event)
                if self.on_release is not None and not self.on_release(event):
                    try:
                        self.machine.release_response(accept=False, now=self._protocol.loop.time())
                    except LocalError as exc:
                        self.log.warning("session %s: cannot refuse this release (%s)",
                                         self.id, exc)  # fmt: skip
                    else:
                        self._protocol.flush()
                        self.peer_acted()
                        return
            self.machine.release_response(accept=True, now=self._protocol.loop.time())
            self._protocol.flush()
            self._end(None)
            return
        if isinstance(event, ev.ReleaseConfirm):
            self._resolve(event)
            if event.accepted:
                self._end(None)
            else:  # NOT FINISHED: back to data transfer, where owed tokens can be given
                self._give_owed()
                self.peer_acted()
            return
        if isinstance(event, ev.UserAbortIndication):
            self._end(SessionAborted("aborted by the peer", AbortReason.USER_ABORT,
                                     by_peer=True, user_data=event.user_data))  # fmt: skip
            return
        if isinstance(event, ev.ProviderAbortIndication):
            if event.local:  # the machine found a protocol error and sent AB
                self._protocol.warn("session %s: protocol error, aborted: %s", self.id,
                                    event.message)  # fmt: skip
            self._end(SessionAborted(f"session aborted: {event.message}", event.reason))
            return
        if isinstance(event, ev.TokenPleaseIndication):
            self._owed |= Token(event.tokens)
        self._auto_respond(event)
        if not self._resolve(event):
            self._put_event(event)
        self._give_owed()
        self.peer_acted()

    def _auto_respond(self, event: ev.Event) -> None:
        """Confirm sync points and activity ends: the data before them has arrived."""
        machine = self.machine
        if isinstance(event, ev.MajorSyncIndication):
            self.last_sync = event.serial
            machine.major_sync_response()
        elif isinstance(event, ev.MinorSyncIndication):
            self.last_sync = event.serial
            if event.confirm_required:
                machine.minor_sync_response(event.serial)
        elif isinstance(event, ev.ActivityEndIndication):
            machine.activity_end_response()
        elif isinstance(event, ev.ActivityInterruptIndication):
            machine.activity_interrupt_response()
        elif isinstance(event, ev.ActivityDiscardIndication):
            machine.activity_discard_response()
        elif isinstance(event, ev.ResyncIndication):
            machine.resync_response()
        elif isinstance(event, ev.CapabilityDataIndication):
            reply = self.on_capability_data(event) if self.on_capability_data else None
            machine.capability_data_response(user_data=reply)
        else:
            return
        self._protocol.flush()


def _event_size(event: ev.Event) -> int:
    """The octets an event holds, for the limits on unread events."""
    data = getattr(event, "user_data", None) or getattr(event, "data", None)
    return len(data) if isinstance(data, bytes | bytearray | memoryview) else 0
