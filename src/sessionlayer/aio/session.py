"""``Session``: one established session, as a Python developer uses it.

A facade over one :class:`~sessionlayer.aio.connection.Connection`: every method is an
X.215 service (or reads the session's state) and calls only the connection's public
methods; the answers and token moves a session makes on its own are the agent's
(:mod:`sessionlayer.agent`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..agent import NEEDS
from ..errors import (
    AbortReason,
    CheckpointRestored,
    ConnectRefused,
    ReleaseRefused,
    ResyncCollisionLost,
    SessionAborted,
    SessionClosed,
    SessionLayerError,
)
from ..machine import SessionMachine
from ..machine import events as ev
from ..recovery import Checkpoint
from ..recovery import journal as rq
from ..recovery.journal import Asked
from ..spdu.codes import ResyncType, Token, TokenSetting
from ..spdu.types import ConnectionId
from .connection import Connection

__all__ = [
    "Session",
    "SessionInfo",
    "SessionClosed",
    "SessionAborted",
    "ConnectRefused",
    "ReleaseRefused",
]


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
    interruptions: int = 0
    resumes: int = 0
    checkpoint: int | None = None  #: the serial of the last confirmed major sync point
    activity: str | None = None  #: the activity in progress (its id, hex)


class Session:
    """A session between two SS-users.

    Iterate it (``async for data in session``) or call :meth:`receive` for
    S-DATA; indications other than data arrive on :meth:`events`.  Leaving
    ``async with session`` releases it.
    """

    # Slots: a server holds one Session per live session (idle sessions' memory).
    __slots__ = ("_conn", "peer_reference", "restored", "started")

    def __init__(self, connection: Connection, session_id: str) -> None:
        self._conn = connection
        connection.id = session_id
        # The loop's time when it opened: the very value the agent took with the input that
        # opened it (an idle session keeps one float for both, not two).
        self.started = connection.agent.now or connection.loop.time()
        self.peer_reference: bytes | None = None
        """(Server) The Common Reference of the initiator's CN: the initiator's name for the
        session.  ``id`` is the server's own, random and unguessable."""
        self.restored: Checkpoint | None = None
        """(Server, recovery) This handler runs a session that another process (or node)
        held: it was resumed from this checkpoint (serial 0 and no data: from its start)."""

    # ------------------------------------------------------------ properties

    @property
    def id(self) -> str:
        """The session's id: 32 hex digits, on every log line about it."""
        return self._conn.id

    @property
    def log(self) -> Any:
        """The ``sessionlayer`` logger with this session's id on every record."""
        return self._conn.log

    @property
    def chosen(self) -> dict[str, str]:
        """Application parameters both sides agreed at connect (e.g. ``{"codec": "json"}``)."""
        return self._conn.agent.chosen

    @property
    def peer_data(self) -> bytes | None:
        """User data the peer sent with its connect request or accept."""
        return self._conn.agent.peer_data

    @property
    def machine(self) -> SessionMachine:
        """The sans-I/O protocol machine (read its state; do not drive it)."""
        return self._conn.agent.machine

    @property
    def peer(self) -> Any:
        return self._conn.peer

    @property
    def state(self) -> str:
        """The X.225 state (e.g. ``STA713``), or ``detached`` (recovery: waiting to be
        resumed), ``aborted``, ``released``."""
        conn = self._conn
        if conn.failure is not None:
            return "aborted"
        if conn.released:
            return "released"
        if conn.detached:
            return "detached"
        return str(conn.machine.state)

    @property
    def resumable(self) -> bool:
        """Recovery was agreed: the session survives the loss of its connection."""
        return self._conn.journal is not None

    @property
    def interruptions(self) -> int:
        """How often the transport connection was lost (recovery)."""
        link = self._conn.link
        return link.interruptions if link is not None else 0

    @property
    def resumes(self) -> int:
        """How often the session was resumed on a new connection (recovery)."""
        link = self._conn.link
        return link.resumes if link is not None else 0

    @property
    def restores(self) -> int:
        """Of those, the resumes from a checkpoint (the peer had lost the live state): what
        was sent before one of them and is not covered by the checkpoint was dropped."""
        link = self._conn.link
        return link.rollbacks if link is not None else 0

    @property
    def checkpoint(self) -> Checkpoint | None:
        """(Recovery) The last confirmed major sync point, either way."""
        link = self._conn.link
        return link.checkpoint if link is not None else None

    @property
    def closed(self) -> bool:
        return self._conn.closed

    @property
    def tokens(self) -> int:
        return int(self._conn.machine.tokens_owned)

    @property
    def last_sync(self) -> int | None:
        """The serial number of the last sync point set or confirmed, either way."""
        return self._conn.agent.last_sync

    @property
    def messages_in(self) -> int:
        return self._conn.messages_in

    @property
    def messages_out(self) -> int:
        return self._conn.messages_out

    @property
    def on_release(self) -> Callable[[ev.ReleaseIndication], bool | bytes | None] | None:
        """Called with each S-RELEASE indication: return False to refuse the release (NOT
        FINISHED, only with the negotiated release unit), bytes to accept it with that DN
        user data (an OSI peer's ACSE release response, say), True or None to accept.  None
        (no callback) accepts every release."""
        return self._conn.agent.on_release

    @on_release.setter
    def on_release(
        self, callback: Callable[[ev.ReleaseIndication], bool | bytes | None] | None
    ) -> None:
        self._conn.agent.on_release = callback

    @property
    def on_capability_data(self) -> Callable[[ev.CapabilityDataIndication], bytes | None] | None:
        """Called with each S-CAPABILITY-DATA indication; what it returns is the user data of
        the S-CAPABILITY-DATA response (CDA, at most 512 octets in version 1).  None (the
        default, or a callback returning None) answers with no user data."""
        return self._conn.agent.on_capability_data

    @on_capability_data.setter
    def on_capability_data(
        self, callback: Callable[[ev.CapabilityDataIndication], bytes | None] | None
    ) -> None:
        self._conn.agent.on_capability_data = callback

    @property
    def on_checkpoint(self) -> Callable[[Checkpoint], Awaitable[None] | None] | None:
        """Called with each checkpoint the peer sets (S-SYNC-MAJOR indication) *before* it
        is confirmed (MAA): make what the checkpoint covers durable here (write, fsync);
        the peer's ``sync(major=True)`` returns only after it.  May be async.  If it raises,
        the session is aborted; still running when the session ends, it is cancelled.
        None (the default): confirmed at once."""
        link = self._conn.link
        return link.on_checkpoint if link is not None else None

    @on_checkpoint.setter
    def on_checkpoint(self, callback: Callable[[Checkpoint], Awaitable[None] | None] | None,
                      ) -> None:  # fmt: skip
        self._conn.defer_checkpoints(callback)

    def info(self) -> SessionInfo:
        conn = self._conn
        return SessionInfo(
            id=self.id, peer=conn.peer, state=self.state,
            age=conn.loop.time() - self.started, bytes_in=conn.bytes_in,
            bytes_out=conn.bytes_out, messages_in=conn.messages_in,
            messages_out=conn.messages_out, tokens=self.tokens, last_sync=self.last_sync,
            interruptions=self.interruptions, resumes=self.resumes,
            checkpoint=self.checkpoint.serial if self.checkpoint is not None else None,
            activity=_activity(conn.machine),
        )  # fmt: skip

    # ------------------------------------------------------------ data

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        """S-DATA request; waits while the transport is congested (backpressure).

        A resumable session keeps the message until the peer confirmed it: while the
        connection is down it is kept for replay and ``send`` returns, until
        ``Options.retention`` octets wait unconfirmed (then it waits, or fails).  After a
        resume from a checkpoint the next ``send`` raises :class:`CheckpointRestored` once
        (and sends nothing): what was sent after the checkpoint was dropped.
        """
        conn = self._conn
        if conn.plain:  # (only while the session is open: see Connection.flush)
            # Fast path: GT+DT framed by the connection (see sessionlayer.transport.fastpath).
            conn.write_data(data if type(data) is bytes else _octets(data))
        else:
            conn.check_rollback()
            await conn.send_general(data if type(data) is bytes else _octets(data))
        conn.messages_out += 1
        if conn.write_paused:
            await conn.drain()
        journal = conn.journal
        if journal is not None and journal.sent_bytes - journal.acked_bytes >= journal.limit:
            await conn.retained()

    async def receive(self) -> bytes:
        """The next S-DATA indication.  Raises :class:`SessionClosed` after release, and
        (recovery) :class:`CheckpointRestored` once where the peer went back to a checkpoint."""
        conn = self._conn
        if conn.rolling_back:
            self._rollback()
        if conn.inbox:
            return conn.pop_data()
        try:
            waiter = conn.data_waiter()
            return await waiter
        except StopAsyncIteration:
            raise SessionClosed("the session was released") from None
        except asyncio.CancelledError:  # (cancelled after the message came, before it was
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                conn.put_back(waiter.result())  # taken: the next reader gets it)
            raise

    def __aiter__(self) -> Session:
        return self

    def __anext__(self) -> Awaitable[bytes]:
        # Not a coroutine function: with data buffered, a coroutine that takes it; else the
        # future the next S-DATA resolves.  A session waiting in ``async for`` holds no
        # frame of its own, only that future.
        conn = self._conn
        if conn.rolling_back:
            return self._raise_rollback()
        if conn.inbox:
            return self._take()
        return conn.data_waiter()

    async def _take(self) -> bytes:
        return self._conn.pop_data()

    async def _raise_rollback(self) -> bytes:
        self._rollback()
        return await self.receive()

    def _rollback(self) -> None:
        error = self._conn.take_rollback()
        if error is not None:
            raise error

    async def send_typed(self, data: bytes | bytearray | memoryview) -> None:
        """S-TYPED-DATA: data that may be sent without the data token.  A resumable session
        keeps it until the peer confirmed it, as :meth:`send` does (in the same order: while
        the connection is down it waits for the resume in the journal)."""
        conn = self._conn
        conn.send_typed(data if type(data) is bytes else _octets(data))
        if conn.write_paused:
            await conn.drain()
        if conn.journal is not None and conn.journal.full:
            await conn.retained()

    async def send_expedited(self, data: bytes | bytearray | memoryview) -> None:
        """S-EXPEDITED-DATA: up to 14 octets, on the transport expedited flow when the
        RFC 1006 expedited option was agreed (else in order on the normal flow).

        A resumable session keeps it until the peer confirmed it, in a count and a journal
        of its own (expedited data may overtake data): while the connection is down it
        waits there, and each arrives exactly once.  At most
        :data:`~sessionlayer.recovery.journal.MAX_EXPEDITED` wait unconfirmed; past it this
        waits for the peer to confirm them.  Like :meth:`send`, it waits while the
        transport's write buffer is above ``Options.write_buffer_high``."""
        conn = self._conn
        await conn.send_expedited(data if type(data) is bytes else _octets(data))
        if conn.write_paused:
            await conn.drain()

    # ------------------------------------------------------------ events

    async def events(self) -> AsyncIterator[ev.Event]:
        """Indications other than data (tokens, sync points, activities, ...).

        Ends when the session ends (after the events that came before).
        """
        conn = self._conn
        while True:
            event = conn.next_event_nowait()
            if event is not None:
                yield event
            elif conn.closed:
                return
            else:
                await conn.wait_event()

    def next_event_nowait(self) -> ev.Event | None:
        return self._conn.next_event_nowait()

    # ------------------------------------------------------------ requests with confirms

    async def sync(self, *, major: bool = False, confirm: bool = True,
                   user_data: bytes | None = None) -> int:  # fmt: skip
        """Set a synchronization point; return its serial number once the peer confirmed.

        ``major=True`` is S-SYNC-MAJOR (always confirmed); otherwise
        S-SYNC-MINOR, confirmed unless ``confirm=False``.  Raises :class:`SyncPurged` when a
        resynchronization or the activity's interruption or discard purged the point, and
        (a confirmed minor point) :class:`SyncSuperseded` when the peer's major sync point
        or activity end crossed it: its confirmation never comes (X.225 Table A-4).
        """
        conn = self._conn
        if major:
            conn.propose_checkpoint(user_data)
            event = await conn.confirm(
                (ev.MajorSyncConfirm,), lambda m: m.major_sync(user_data=user_data),
                NEEDS["major_sync"], (rq.MAJOR, _major_answer),
            )  # fmt: skip
        elif confirm:
            event = await conn.confirm(
                (ev.MinorSyncConfirm,),
                lambda m: m.minor_sync(confirm=True, user_data=user_data), NEEDS["minor_sync"],
                (rq.MINOR, _minor_answer),
            )  # fmt: skip
        else:
            serial = await conn.call_with_tokens(
                lambda m: m.minor_sync(confirm=False, user_data=user_data), NEEDS["minor_sync"]
            )
            conn.agent.last_sync = int(serial)
            return int(serial)
        return int(event.serial)

    async def resync(self, kind: int = ResyncType.RESTART, serial: int | None = None,
                     tokens: Mapping[Token, TokenSetting] | None = None,
                     user_data: bytes | None = None) -> int:  # fmt: skip
        """S-RESYNCHRONIZE (:class:`ResyncType` restart, abandon or set); returns the new serial.

        ``serial``: restart takes V(R) <= serial <= V(M), and with no serial restarts from
        the last confirmed checkpoint (V(R)); set takes any; abandon takes V(M).
        ``tokens``: where each token goes afterwards (``TokenSetting.INITIATOR`` = this side,
        ``RESPONDER`` = the peer, ``CALLED_CHOICE`` = the peer's choice); None keeps them.
        Raises :class:`ResyncCollisionLost` when the peer's colliding resync won (X.225
        7.24): it was answered instead, and the error says where the session now stands.
        """
        conn = self._conn
        if kind == ResyncType.RESTART and serial is None:
            serial = conn.machine.vr

        def request(m: SessionMachine) -> int:
            m.resync(ResyncType(kind), serial=serial, tokens=tokens, user_data=user_data)
            # (the serial number the peer's agent answers with: the RS's, V(M) to abandon)
            return int(m.vm) if kind == ResyncType.ABANDON or serial is None else serial

        # While our RS is outstanding the only ResyncIndication is a colliding RS that won.
        event = await conn.confirm(
            (ev.ResyncConfirm, ev.ResyncIndication), request, asks=(rq.RESYNC, _resync_answer)
        )
        if isinstance(event, ev.ResyncIndication):
            machine = conn.machine  # answered (RA) by the agent before this resumed
            raise ResyncCollisionLost(
                f"the peer's resynchronize ({ResyncType(event.type).name.lower()}) won the"
                f" collision with ours; resynchronized to serial number {machine.vm}",
                serial=int(machine.vm), tokens=int(machine.tokens_owned),
                type=int(event.type), user_data=event.user_data,
            )  # fmt: skip
        return int(event.serial)

    def give_tokens(self, tokens: int, user_data: bytes | None = None) -> None:
        """S-TOKEN-GIVE (user data in version 2 only)."""
        self._conn.call(lambda m: m.give_tokens(Token(tokens), user_data=user_data))

    def please_tokens(self, tokens: int, user_data: bytes | None = None) -> None:
        """S-TOKEN-PLEASE."""
        self._conn.call(lambda m: m.please_tokens(Token(tokens), user_data=user_data))

    async def give_control(self) -> None:
        """S-CONTROL-GIVE: hand every available token to the peer.

        Fetches the tokens it lacks first; returns once the peer acknowledged (GTA).
        """
        conn = self._conn
        if conn.journal is None:
            await self._give_control(None, None)
        else:  # (made exactly once: see Connection.seen_through)
            await conn.seen_through(self._give_control)

    async def _give_control(self, holder: list[Asked | None] | None, caller: Any) -> None:
        conn = self._conn
        while True:
            await conn.call_with_tokens(lambda m: m.give_control(), caller=caller)
            conn.note_request(holder, rq.CONTROL)
            agent = conn.agent
            while conn.agent is agent and conn.machine.control_pending:  # (waiting for GTA)
                conn.check_open()
                await conn.next_peer_input()
            if conn.agent is agent and not conn.detached:
                return
            # (Recovery) The connection was lost before the GTA: the resumed session holds
            # this side's tokens, so they are given again (a peer that had them answers
            # again without telling its application: Journal.requests).
            await conn.wait_attached()
            conn.check_open()
            if not conn.machine.tokens_owned:
                conn.forget_request(holder)
                return

    def exception_report(self, reason: int, user_data: bytes | None = None) -> None:
        """S-U-EXCEPTION-REPORT."""
        self._conn.call(lambda m: m.exception_report(reason, user_data=user_data))

    async def capability_data(self, data: bytes | None = None) -> bytes | None:
        """S-CAPABILITY-DATA; returns the peer's reply data."""
        event = await self._conn.confirm(
            (ev.CapabilityDataConfirm,), lambda m: m.send_capability_data(data),
            asks=(rq.CAPABILITY, None),
        )
        return event.user_data  # type: ignore[no-any-return]

    # ------------------------------------------------------------ activities

    @contextlib.asynccontextmanager
    async def activity(self, activity_id: bytes, user_data: bytes | None = None
                       ) -> AsyncIterator[Session]:  # fmt: skip
        """``async with session.activity(b"id"):`` -- S-ACTIVITY-START ... S-ACTIVITY-END.

        An exception inside the block discards the activity instead of ending it.  A
        cancellation (any BaseException that is not an Exception) does not wait for the
        discard's answer: the discard goes on in a task of the session's, and the session
        is aborted if no answer comes within ``Options.release_timeout``.
        """
        await self.start_activity(activity_id, user_data)
        try:
            yield self
        except BaseException as exc:
            if self._in_activity(activity_id):
                if isinstance(exc, Exception):
                    await self.discard_activity()
                else:  # (cancelled: promptly, whatever the peer does)
                    self._conn.spawn(self._discard_alone())
            raise
        if self._in_activity(activity_id):  # not interrupted or discarded in the block
            await self.end_activity()

    async def start_activity(self, activity_id: bytes, user_data: bytes | None = None) -> None:
        """S-ACTIVITY-START (``activity_id`` at most 6 octets); end it with
        :meth:`end_activity` (or use ``async with session.activity(...)``)."""
        await self._conn.call_with_tokens(
            lambda m: m.activity_start(activity_id, user_data=user_data), NEEDS["activity"]
        )
        self._conn.note_activity(user_data)

    def _in_activity(self, activity_id: bytes) -> bool:
        machine = self._conn.machine
        return (
            not self.closed
            and machine.activity_in_progress
            and machine.activity_id == bytes(activity_id)
        )

    async def end_activity(self, user_data: bytes | None = None) -> int:
        event = await self._conn.confirm(
            (ev.ActivityEndConfirm,), lambda m: m.activity_end(user_data=user_data),
            NEEDS["activity"], (rq.END, _end_answer),
        )  # fmt: skip
        return int(event.serial)

    async def interrupt_activity(self, reason: int = 0, user_data: bytes | None = None) -> None:
        await self._conn.confirm(
            (ev.ActivityInterruptConfirm,),
            lambda m: m.activity_interrupt(reason=reason, user_data=user_data),
            NEEDS["activity_interrupt"], (rq.INTERRUPT, _interrupt_answer),
        )

    async def discard_activity(self, reason: int = 0, user_data: bytes | None = None) -> None:
        await self._conn.confirm(
            (ev.ActivityDiscardConfirm,),
            lambda m: m.activity_discard(reason=reason, user_data=user_data),
            NEEDS["activity_interrupt"], (rq.DISCARD, _discard_answer),
        )

    async def _discard_alone(self) -> None:
        """The discard of an activity whose block a cancellation left, in a task of the
        session's (cancelled when it is over): no answer within the release timeout aborts
        the session (the connection's deadline); a session that ended meanwhile is left."""
        conn = self._conn
        with contextlib.suppress(SessionLayerError):
            await conn.confirm(
                (ev.ActivityDiscardConfirm,), lambda m: m.activity_discard(),
                NEEDS["activity_interrupt"], (rq.DISCARD, _discard_answer),
                timeout=conn.options.release_timeout,
                what="no answer to the discard of an activity whose task was cancelled"
                     " (release timeout)",
            )  # fmt: skip

    async def resume_activity(self, activity_id: bytes, old_activity_id: bytes, serial: int,
                              old_connection_id: ConnectionId | None = None,
                              user_data: bytes | None = None) -> None:  # fmt: skip
        """S-ACTIVITY-RESUME of an interrupted activity at sync point ``serial``.

        ``old_connection_id`` names the session connection the activity began on (linking
        information; None: empty references, it began on this one).  End it with
        :meth:`end_activity`.
        """
        await self._conn.call_with_tokens(
            lambda m: m.activity_resume(
                activity_id, old_activity_id, serial,
                old_connection_id=old_connection_id, user_data=user_data,
            ),
            NEEDS["activity"],
        )  # fmt: skip
        self._conn.note_activity(user_data)

    # ------------------------------------------------------------ ending

    async def release(self, user_data: bytes | None = None) -> bytes | None:
        """S-RELEASE: orderly release (FN, answered by DN); returns the DN's user data.

        Raises :class:`ReleaseRefused` when the peer answered NF; aborts the
        session when no answer comes within the release timeout (the connection's
        deadline: it holds when this call is cancelled after the FN went out, and a
        release() made again then waits for that FN's answer).  (Recovery) That time
        counts only while the session is attached: during an outage release() waits for
        the resume (the FN goes out again then, and the time starts over), and a resume
        that fails ends it with that error (ResumeRefused).
        """
        conn = self._conn
        if conn.released:
            return None
        event = None
        if conn.release_outstanding:  # an earlier release() was cancelled after its FN
            event = await conn.outcome((ev.ReleaseConfirm,))  # (its deadline holds)
        try:
            if event is None:
                event = await conn.confirm(
                    (ev.ReleaseConfirm,), lambda m: m.release(user_data=user_data),
                    timeout=conn.options.release_timeout,
                    what="no answer to the release request (release timeout)",
                )  # fmt: skip
        except SessionClosed:
            return None  # the peer released first (while we waited for the tokens)
        if not event.accepted:
            raise ReleaseRefused("the peer refused to release (NOT FINISHED)")
        return event.user_data  # type: ignore[no-any-return]

    def abort(self, user_data: bytes | None = None) -> None:
        """S-U-ABORT: end the session at once (AB); data in transit may be lost."""
        self._conn.abort_session(
            SessionAborted("aborted by the local user", AbortReason.USER_ABORT), user_data
        )

    async def wait_closed(self) -> None:
        """Wait until the session is over and its TCP connection gone.  A resumable session
        whose connection is lost is not over: this waits on for its resume (then for that
        connection to go), or for its end."""
        conn = self._conn
        while True:
            await conn.wait_closed()
            if conn.is_closed and (conn.closed or not conn.detached):
                return
            # Detached (or already resumed on a new connection while this task waited to
            # run): the session goes on.
            await conn.wait_attached()

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        """Release the session (abort it if the block raised); it ends either way.  A
        resume from a checkpoint not told yet is raised after the release (what the block
        sent after the checkpoint was dropped: CheckpointRestored)."""
        if self.closed:
            return
        if exc_type is None or issubclass(exc_type, SessionClosed | GeneratorExit):
            restored = None
            try:
                try:
                    await self.release()
                except CheckpointRestored as told:  # (the release itself did not go out)
                    restored = told
                    await self.release()
            except BaseException:
                self.abort()  # (NF, a cancellation, ...: the session ends all the same)
                raise
            if restored is not None and exc_type is None:
                raise restored
        else:
            self.abort()


# (Recovery) What the peer's agent answers each confirmed request, from what the machine's
# request returned (its serial number): the answer made up when a resume shows that the
# peer gave it and it was lost (Journal.requests).  It carries nothing the peer's
# application chose: the agent answers with no user data, and a checkpoint the
# application makes durable first is confirmed the same way.


def _major_answer(serial: int) -> ev.Event:
    return ev.MajorSyncConfirm(serial=serial, user_data=None)


def _minor_answer(serial: int) -> ev.Event:
    return ev.MinorSyncConfirm(serial=serial, user_data=None)


def _end_answer(serial: int) -> ev.Event:
    return ev.ActivityEndConfirm(serial=serial, user_data=None)


def _interrupt_answer(_: object) -> ev.Event:
    return ev.ActivityInterruptConfirm(user_data=None)


def _discard_answer(_: object) -> ev.Event:
    return ev.ActivityDiscardConfirm(user_data=None)


def _resync_answer(serial: int) -> ev.Event:
    return ev.ResyncConfirm(serial=serial, tokens=Token(0), user_data=None)


def _octets(data: Any) -> bytes:
    """A message that is not ``bytes``: a copy of a bytes-like one (any buffer; not an
    int, which ``bytes(5)`` would make five zero octets, nor a str)."""
    try:
        return bytes(memoryview(data))
    except TypeError:
        raise TypeError(f"a message is bytes (or another buffer: bytearray, memoryview,"
                        f" ...), not {type(data).__name__}") from None


def _activity(machine: SessionMachine) -> str | None:
    if not machine.activity_in_progress:
        return None
    return (machine.activity_id or b"").hex()
