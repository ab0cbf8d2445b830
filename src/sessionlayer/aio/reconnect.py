"""``Reconnector``: a client's resumable session finding its way back to a server.

When the session's transport connection is lost (a reset, a close, a dead peer found by
the keepalive), the connection detaches and calls :meth:`Reconnector.start`.  One task
then tries the server addresses in turn with exponential backoff and jitter
(:class:`~sessionlayer.recovery.Backoff`): each try is a new TCP (and TLS) connection,
COTP CR/CC and a CN whose hello carries the resume token and the count of messages
received.  The welcome says how many of ours the server has; the rest is replayed
(:meth:`SessionAgent.replay`) and the session goes on.  A refusal with a resume code
(unknown, expired, token ...) ends the session with :class:`ResumeRefused`; so does
``Backoff.give_up``.  Anything else (refused connection, timeout, reset during the
handshake, a busy server, a server whose session store did not answer) is one failed
try.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import Mapping, Sequence
from functools import partial

from ..agent import Hello, Options, Rejection, SessionAgent
from ..agent.hello import is_rejection
from ..errors import DecodeError, RemoteError, ResumeRefused, SessionLayerError
from ..machine import SessionConfig
from ..machine import events as ev
from ..recovery import Checkpoint
from ..spdu.types import ConnectionId
from . import fast_connect
from .connection import Connection
from .deadline import Deadline
from .sockets import host_port, unreachable

__all__ = ["Reconnector", "RESUME_CODE_PREFIX"]

log = logging.getLogger("sessionlayer")

#: An RF's rejection code for a refused resume: "resume:<ResumeRefused code>".
RESUME_CODE_PREFIX = "resume:"
#: The jitter's source, shared: a ``random.Random()`` per session would hold 2.5 KB of
#: generator state and read 2.5 KB from os.urandom at every connect().
_RNG = random.Random()


class Reconnector:
    """Brings one client session back after each loss of its transport connection."""

    def __init__(self, conn: Connection, addresses: Sequence[tuple[str, int]], *,
                 tls: ssl.SSLContext | None, server_hostname: str | None,
                 config: SessionConfig, options: Options,
                 credentials: Mapping[str, str] | None, offers: Mapping[str, Sequence[str]],
                 connection_id: ConnectionId, rng: random.Random | None = None,
                 ) -> None:  # fmt: skip
        self.conn = conn
        self.addresses = list(addresses)
        self.tls = tls
        self.server_hostname = server_hostname
        self.config = config
        self.options = options
        self.credentials = dict(credentials) if credentials is not None else None
        self.offers = {k: list(v) for k, v in offers.items()}
        self.connection_id = connection_id
        self.rng = rng or _RNG
        self._task: asyncio.Task[None] | None = None

    def start(self, conn: Connection) -> None:
        """The session detached: start reconnecting (once)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        conn = self.conn
        loop = asyncio.get_running_loop()
        backoff = self.options.backoff
        give_up = loop.time() + backoff.give_up
        attempt = 0
        last = ""
        try:
            while not conn.closed:
                delay = backoff.delay(attempt, self.rng)
                if loop.time() + delay >= give_up:
                    raise ResumeRefused(
                        f"gave up resuming after {backoff.give_up:g} s ({attempt} tries; last:"
                        f" {last or 'none'})", "gave_up",
                    )  # fmt: skip
                if delay > 0:
                    await asyncio.sleep(delay)  # the backoff itself
                host, port = self.addresses[attempt % len(self.addresses)]
                attempt += 1
                try:
                    await self._try(host, port, attempt, give_up)
                    return
                except ResumeRefused:
                    raise
                except (OSError, TimeoutError, SessionLayerError) as exc:
                    last = f"{host_port(host, port)}: {unreachable(exc)}"
                    log.debug("session %s: resume try %d failed: %s", conn.id, attempt, last)
                    if conn.transport is not None and not conn.is_closed:
                        conn.abort()
        except ResumeRefused as exc:
            if exc.code == "released":  # (the release went through: its DN was lost)
                log.info("session %s: released (the answer was lost with the connection)",
                         conn.id)  # fmt: skip
                conn.end(None)
                return
            log.info("session %s: cannot be resumed: %s", conn.id, exc)
            exc.__context__ = None  # (kept by the session: no frames of this task with it)
            conn.end(exc.with_traceback(None))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug of ours: the session ends, the loop is not told
            log.error("session %s: resuming failed", conn.id, exc_info=exc)
            conn.end(ResumeRefused(f"resuming failed: {exc!r}", "refused"))

    def _protocol(self) -> Connection:
        return self.conn  # (each try's transport connection goes to the same Connection)

    async def _try(self, host: str, port: int, attempt: int, give_up: float) -> None:
        """One resume try, whose connect and handshake end by ``give_up`` at the latest (a
        try begun just before it could run on for connect_timeout + handshake_timeout)."""
        conn = self.conn
        link = conn.link
        journal = conn.journal
        assert link is not None and journal is not None and link.token is not None
        loop = asyncio.get_running_loop()
        opts = self.options
        agent = SessionAgent("initiator", self.config, opts)
        secure = self.tls is not None
        fast = opts.fast_connect and fast_connect.is_known(host, port, secure)
        if fast:
            agent.fast_connect()  # the CN (the resume) goes right behind the CR
        conn.prepare_link(agent)
        # (No closures, no asyncio.timeout: thousands of tries wait at once in a reconnect
        # storm, and every object one holds is walked by the garbage collector.)
        deadline = Deadline(loop, max(min(opts.connect_timeout, give_up - loop.time()), 0.0))
        try:
            try:
                await loop.create_connection(
                    self._protocol, host, port, ssl=self.tls,
                    server_hostname=self.server_hostname if self.tls is not None else None,
                )  # fmt: skip
            except BaseException as exc:
                deadline.ended(exc)  # TimeoutError, if the time ran out
                raise
            deadline.ended(None)
            deadline.then(max(min(opts.handshake_timeout, give_up - loop.time()), 0.0))
            mine = link.activity[0].hex() if link.activity is not None else None
            hello = Hello(offers=self.offers, credentials=self.credentials, recovery=True,
                          resume=link.token, recv=journal.received, act=mine,
                          counts=journal.counts(),
                          max_tsdu=opts.max_tsdu_size)  # fmt: skip
            try:
                confirm = await conn.open(partial(_connect, agent, self.connection_id, hello))
            except BaseException as exc:
                deadline.ended(exc)
                if fast and agent.rfc.tpdu_size is None:  # (no CC came) plain from now on
                    fast_connect.forget(host, port, secure)
                raise
            deadline.ended(None)
        finally:
            deadline.cancel()
        if isinstance(confirm, ev.RefuseConfirm):
            raise _refusal(confirm)
        try:
            welcome = agent.confirmed(confirm)
        except DecodeError as exc:
            raise ResumeRefused(f"malformed accept from the responder: {exc}") from None
        if opts.fast_connect:
            fast_connect.learn(host, port, secure, welcome is not None and welcome.fast)
        if welcome is None or welcome.resumed is None or welcome.token is None:
            raise ResumeRefused("the responder accepted a new session instead of resuming")
        link.token = welcome.token
        link.attempts += attempt
        if welcome.resumed == "checkpoint":
            journal.restart()
            journal.new_connection()
            # The activity of before is void with everything after the checkpoint.
            link.activity, link.activity_data, link.awaiting_resume = None, None, False
            cp = welcome.checkpoint
            checkpoint = Checkpoint(cp[0], cp[1]) if cp is not None else None
            conn.resumed("checkpoint", [], attempt, checkpoint)
            return
        agent.journal = journal
        try:
            replay = agent.replay(welcome.recv or 0)
        except RemoteError as exc:
            raise ResumeRefused(f"cannot resume: {exc}") from None
        # Our requests the server answered (the answers lost with the connection), the
        # server's it will make again, the expedited messages it lacks (Journal.requests).
        journal.peer_counts(welcome.counts)
        requests = journal.requests
        if requests is not None and requests.ended_activity:
            link.activity = None  # our activity end was answered: it is over on both sides
        if link.activity is not None:  # it goes on, here: before anything is replayed
            activity_id, serial = link.activity
            link.activity = None
            if welcome.act == activity_id.hex():  # the server has it: S-ACTIVITY-RESUME
                agent.machine.activity_resume(activity_id, activity_id, serial,
                                              old_connection_id=self.connection_id)  # fmt: skip
            else:  # our S-ACTIVITY-START was lost with the connection: again
                agent.machine.activity_start(activity_id, user_data=link.activity_data)
        conn.resumed("resumed", replay, attempt)

def _connect(agent: SessionAgent, cid: ConnectionId, hello: Hello, _: object) -> None:
    """A resume try's S-CONNECT request (``Connection.open`` passes the machine)."""
    agent.connect(None, cid, hello)


def _refusal(event: ev.RefuseConfirm) -> SessionLayerError:
    """A refused resume: final (ResumeRefused) when the server said why in resume terms,
    but for ``store_unavailable`` (its store did not answer: it may in a moment); else, and
    then, one failed try (a busy server, say): the client tries again until ``give_up``."""
    code, text = "", ""
    if is_rejection(event.user_data):
        try:
            rejection = Rejection.decode(bytes(event.user_data or b""))
            code, text = rejection.code, rejection.message
        except DecodeError:
            pass
    if code == RESUME_CODE_PREFIX + "store_unavailable":  # (the store may be back soon)
        return _Busy(f"the server could not resume the session for now: {text}")
    if code.startswith(RESUME_CODE_PREFIX):
        return ResumeRefused(f"the server refused to resume the session: {text}",
                             code[len(RESUME_CODE_PREFIX):])  # fmt: skip
    return _Busy(f"the server refused the connection (RF reason {event.reason}): {text}")


class _Busy(SessionLayerError):
    """A refusal that says nothing about the session: try again later."""
