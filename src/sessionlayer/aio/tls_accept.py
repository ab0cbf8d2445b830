"""A TLS server's TCP accepts, each counted by its owner from the accept, its TLS handshake
included: what ``serve()`` (aio/server.py) and the relay (relay/server.py) share.

asyncio's own TLS server (``create_server(ssl=...)``) takes every TCP connection into a TLS
handshake of its own, uncounted, before its owner sees it: 400 silent TCP connections took
every file descriptor, and asyncio's exception handler got thousands of errors (EMFILE)
from its accept loop.  Here the owner's TCP connections are accepted by
:class:`TlsListener`: each is a :class:`TlsAccept` at once, and the owner's ``admission``
gives it a handshake slot (its TLS handshake starts), a place in the queue (it waits,
unread, until the owner calls :meth:`TlsAccept.admit`), or neither (it is closed at once).
One deadline runs from the accept over the wait, the TLS handshake and what the owner does
after (``late``).  Its TLS handshake done, the protocol the owner made for it (``protocol``)
holds its slot (the owner sets ``handed_over`` from that protocol's ``connection_made``);
not done (it failed, the deadline passed, or the owner stopped), the owner frees the slot
(``failed``).  Nothing reaches asyncio's exception handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import ssl
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

from .listening import OUT_OF_RESOURCES, listen
from .sockets import peer_text, peer_warning, socket_gone

__all__ = ["SLOT", "QUEUED", "FULL", "TLS_WARNING_INTERVAL", "TlsAccept", "TlsListener", "close"]

P = TypeVar("P", bound=asyncio.BaseProtocol)

#: What an owner's admission gives a new connection: a handshake slot, a place in the
#: queue, or neither (it is closed at once).
SLOT, QUEUED, FULL = object(), object(), object()
ACCEPT_RETRY = 0.25  #: s
#: At most one WARNING for failed TLS handshakes this often (s); the rest are counted.
TLS_WARNING_INTERVAL = 60.0


class TlsAccept(Generic[P]):
    """(TLS server) A TCP connection accepted, its TLS handshake not done yet: it waits,
    unread, for a handshake slot, or holds one for its TLS handshake, as a plain
    connection's protocol does; then its protocol holds the slot (``conn``).  One
    deadline (``timer``) runs from the accept (``accepted``) over all of it."""

    __slots__ = ("accepted", "conn", "expired", "handed_over", "listener", "peer", "sock",
                 "task", "timer", "waiting")  # fmt: skip

    def __init__(self, sock: socket.socket, peer: Any, listener: TlsListener[P]) -> None:
        self.listener = listener
        self.sock = sock
        self.peer = peer
        self.accepted = 0.0  #: when (the loop's clock)
        self.waiting = False  #: queued for a handshake slot
        self.task: asyncio.Task[None] | None = None  #: its TLS handshake, under way
        self.timer: asyncio.TimerHandle | None = None  #: its handshake deadline
        self.conn: P | None = None  #: made for the TLS handshake
        self.handed_over = False  #: TLS done: ``conn`` holds the slot now (its owner says)
        self.expired = False  #: its deadline passed

    # What an owner's queue and close() ask of a connection (see aio.Connection).

    def admit(self) -> None:
        """A handshake slot is this one's: its TLS handshake starts."""
        if self.waiting:
            self.waiting = False
            self.listener.start(self)

    def gone_while_waiting(self) -> None:
        if self.waiting and socket_gone(self.sock):
            self.listener.leave(self)

    def abort(self) -> None:
        if self.task is not None:
            self.task.cancel()  # (asyncio closes the connection; its task frees the slot)
        else:
            self.listener.leave(self)

    async def wait_closed(self) -> None:
        task = self.task
        if task is not None:
            await asyncio.wait([task])

    def stop_timer(self) -> None:
        """Its deadline is no more: met, or the connection is gone."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class TlsListener(Generic[P]):
    """(TLS server) Listening sockets whose TCP connections are accepted here, each a
    :class:`TlsAccept` under its owner's admission, and their TLS handshakes (``context``),
    each within ``timeout`` from its accept.

    What the owner does, each called with the :class:`TlsAccept`: ``admission`` (SLOT,
    QUEUED or FULL; the owner counts the slot, or queues it), ``protocol`` (the protocol
    for its TLS connection), ``failed`` (its TLS handshake is over, not handed over: its
    slot is free), ``dequeued`` (it left the queue: expired, or closed while waiting),
    ``late`` (the deadline passed after the hand-over, or None); ``track`` runs the
    listener's tasks (the accept loops, the TLS handshakes: the owner's close() cancels
    them); ``closing`` says the owner stopped.  What peers cause is logged to ``log``: at
    WARNING (under the limit every connection shares), or at DEBUG without
    ``peer_warnings``.
    """

    def __init__(self, context: ssl.SSLContext, timeout: float, *,
                 admission: Callable[[TlsAccept[P]], object],
                 protocol: Callable[[TlsAccept[P]], P],
                 failed: Callable[[TlsAccept[P]], None],
                 dequeued: Callable[[TlsAccept[P]], None],
                 late: Callable[[TlsAccept[P]], None] | None,
                 track: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]],
                 closing: Callable[[], bool], log: logging.Logger,
                 peer_warnings: bool = True) -> None:  # fmt: skip
        self.context = context
        self.timeout = timeout
        self.admission = admission
        self.protocol = protocol
        self.failed = failed
        self.dequeued = dequeued
        self.late = late
        self.track = track
        self.closing = closing
        self.log = log
        self.peer_warnings = peer_warnings
        self.sockets: list[socket.socket] = []  #: listening (closed with their accept loops)
        self.port = 0
        self.tls_warned: float | None = None  #: when a failed TLS handshake was last warned of
        self.tls_failures = 0  #: failed TLS handshakes not warned of since

    async def listen(self, host: str | None, port: int, backlog: int) -> None:
        """Listen on ``host:port``: one accept loop per address, in a task of the owner's
        (the socket is closed when the task is done: also when the owner's close()
        cancelled it before it ran)."""
        self.sockets = listening = await listen(host, port, backlog)
        self.port = int(listening[0].getsockname()[1])
        for sock in listening:
            task = self.track(self.accept_loop(sock))
            task.add_done_callback(functools.partial(_closed_with, sock))

    async def accept_loop(self, sock: socket.socket) -> None:
        """Accept TCP connections on ``sock`` until the owner stops: each is counted at
        once (``accepted``).  Out of file descriptors, it waits a little and tries again,
        with one WARNING for the run."""
        loop = asyncio.get_running_loop()
        short = False
        try:
            while not self.closing():
                try:
                    conn, address = await loop.sock_accept(sock)
                except OSError as exc:
                    if self.closing() or sock.fileno() < 0:
                        return
                    if exc.errno in OUT_OF_RESOURCES:
                        if not short:
                            self.log.warning("cannot accept connections on port %d: %s;"
                                             " trying again every %g s", self.port,
                                             exc.strerror, ACCEPT_RETRY)  # fmt: skip
                        short = True
                        await asyncio.sleep(ACCEPT_RETRY)
                    continue  # (ECONNABORTED and the like: that one connection)
                short = False
                self.accepted(conn, address, loop)
        finally:
            sock.close()

    def accepted(self, conn: socket.socket, address: Any,
                 loop: asyncio.AbstractEventLoop) -> None:  # fmt: skip
        """A TCP connection accepted: its TLS handshake starts in a handshake slot, or it
        waits, unread, for one, or it is closed at once; its deadline starts now."""
        conn.setblocking(False)
        accept = TlsAccept(conn, address, self)
        accept.accepted = now = loop.time()
        taken = self.admission(accept)
        if taken is FULL:
            close(conn)
            return
        accept.timer = loop.call_at(now + self.timeout, self.expire, accept)
        if taken is SLOT:
            self.start(accept)
        else:
            accept.waiting = True

    def start(self, accept: TlsAccept[P]) -> None:
        """Its TLS handshake starts, in its slot."""
        task = accept.task = self.track(self.handshake(accept))
        # (A callback, not a finally: it runs even for a task cancelled before it started.)
        task.add_done_callback(lambda _: self.done(accept))

    async def handshake(self, accept: TlsAccept[P]) -> None:
        """The TLS handshake of an accepted connection, in its slot: done, its protocol
        takes the slot over (the owner sets ``handed_over``, from its connection_made);
        failed, or past the deadline, the slot is free again (``done``)."""
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(
                lambda: self.protocol(accept), accept.sock, ssl=self.context,
                ssl_handshake_timeout=self.timeout,
            )  # fmt: skip
        except asyncio.CancelledError:
            if not accept.expired:
                raise  # the owner's close()
        except Exception as exc:  # the peer's doing (no TLS, a bad certificate, a reset)
            self.handshake_failed(accept, exc, loop.time())

    def handshake_failed(self, accept: TlsAccept[P], exc: Exception, now: float) -> None:
        """A TLS handshake failed.  A TLS error (the peer does not trust our certificate,
        we do not trust its, it speaks no TLS) is a WARNING, at most one every
        ``TLS_WARNING_INTERVAL`` seconds with the count of those held back since (a fleet
        of clients with an expired certificate is one line a minute, not one per client);
        a peer that left in the handshake (a reset, a health check) only DEBUG."""
        self.log.debug("TLS handshake with %s failed: %r", peer_text(accept.peer), exc)
        if not self.peer_warnings or not isinstance(exc, ssl.SSLError):
            return
        if self.tls_warned is not None and now - self.tls_warned < TLS_WARNING_INTERVAL:
            self.tls_failures += 1
            return
        held, self.tls_failures, self.tls_warned = self.tls_failures, 0, now
        self.log.warning("TLS handshake with %s failed: %s%s", peer_text(accept.peer),
                         getattr(exc, "reason", None) or exc,
                         f" ({held} more TLS handshakes failed since the last warning)"
                         if held else "")  # fmt: skip

    def done(self, accept: TlsAccept[P]) -> None:
        """The TLS handshake's task is over: not handed over to its protocol (failed,
        timed out, the owner's close()), the connection is closed and its slot free."""
        accept.task = None
        if accept.handed_over:
            return
        close(accept.sock)
        self.failed(accept)
        if accept.expired:
            self.peer_log("%s: no TLS handshake within the handshake timeout (%g s);"
                          " connection closed", peer_text(accept.peer), self.timeout)  # fmt: skip

    def expire(self, accept: TlsAccept[P]) -> None:
        """The handshake deadline of an accepted connection: ``timeout`` from its accept,
        over the wait for a slot, the TLS handshake and what its protocol does after."""
        accept.timer = None
        accept.expired = True
        if accept.waiting:
            accept.waiting = False
            self.dequeued(accept)
            close(accept.sock)
            self.peer_log("%s: no handshake slot within the handshake timeout (%g s);"
                          " connection closed", peer_text(accept.peer), self.timeout)  # fmt: skip
        elif accept.task is not None:
            accept.task.cancel()  # (its TLS handshake is not done: ``handshake`` ends it)
        elif self.late is not None:
            self.late(accept)

    def peer_log(self, message: str, *args: Any) -> None:
        if self.peer_warnings:
            peer_warning(self.log, message, *args)
        else:
            self.log.debug(message, *args)

    def leave(self, accept: TlsAccept[P]) -> None:
        """A connection waiting for a slot is closed (its peer left, or the owner's
        close())."""
        if accept.waiting:
            accept.waiting = False
            self.dequeued(accept)
        accept.stop_timer()
        close(accept.sock)


def close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()


def _closed_with(sock: socket.socket, _: object) -> None:
    """(A task's done callback) ``sock`` goes with the task."""
    close(sock)
