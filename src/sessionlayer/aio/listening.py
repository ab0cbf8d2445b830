"""Listening sockets: what ``serve()`` (aio/server.py) and the relay (relay/server.py)
listen on, plain TCP and TLS.

Out of file descriptors (EMFILE, ENFILE), the accept loop of asyncio's own server
(``create_server``) reports every failed ``accept()`` to the loop's exception handler: up
to ``backlog`` errors with tracebacks per turn of the loop, 57,000 in three seconds on a
server at its limit.  A plain TCP server's listening sockets here are :class:`Shedding`
sockets on asyncio's own loop: out of descriptors, each takes the connection that waits
with a spare descriptor it keeps for that, closes it at once (its peer sees the
connection closed, and can try again), and tells asyncio that nothing waits.  Nothing
reaches the exception handler, and the backlog does not fill up with connections that
would only time out.  Each is logged at WARNING (under the limit peers' warnings share)
and the owner's ``shed`` callback counts it.  (uvloop's
libuv does the same by itself: there the sockets are plain ones, and what it sheds is
neither counted nor logged.)  Each listening socket holds one descriptor more, its spare;
one it could not keep (none was free, or another thread took it) it takes back at its next
accept.  Out of memory (ENOBUFS, ENOMEM) a spare does not help: asyncio's own handling
runs (reported, and a second's wait).

A TLS server's listening sockets are accepted by aio/tls_accept.py's own loop, which
waits and tries again instead.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable
from typing import Any

from .sockets import peer_warning

__all__ = ["OUT_OF_DESCRIPTORS", "OUT_OF_RESOURCES", "PlainServer", "Shedding", "listen",
           "serve_plain"]  # fmt: skip

#: accept() errors that say the process (or the system) is out of something.
OUT_OF_RESOURCES = frozenset(
    getattr(errno, name) for name in ("EMFILE", "ENFILE", "ENOBUFS", "ENOMEM")
    if hasattr(errno, name)
)  # fmt: skip
#: ... of file descriptors: what a spare descriptor helps with (out of memory it does not:
#: asyncio's own handling waits a second then).
OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE})
SHED_AT_ONCE = 64  #: connections shed in one accept() at most (the loop comes back)
_log = logging.getLogger("sessionlayer")

Shed = Callable[[Any], None]  #: told each connection shed (its peer's address)


class Shedding(socket.socket):
    """A listening socket whose ``accept()``, out of descriptors, sheds the connections
    that wait (each taken with the spare descriptor and closed at once) and then raises
    BlockingIOError, which asyncio's accept loop takes for "nothing waits"."""

    __slots__ = ("log", "shed", "spare")

    def __init__(self, family: int, kind: int, proto: int = 0) -> None:
        super().__init__(family, kind, proto)
        self.shed: Shed | None = None
        self.log = _log
        self.spare: socket.socket | None = _spare()

    def accept(self) -> tuple[socket.socket, Any]:
        try:
            got = super().accept()
        except OSError as exc:
            if exc.errno not in OUT_OF_DESCRIPTORS:
                raise
            if self.spare is None:  # (lost to another thread, or none at the start)
                self.spare = _spare()
            if self.spare is None or not self.shed_waiting():
                raise  # (asyncio reports it and waits a second, as without this class)
            raise BlockingIOError(errno.EAGAIN, "out of descriptors: connections shed") from None
        if self.spare is None:  # (descriptors are free again: take a spare back)
            self.spare = _spare()
        return got

    def shed_waiting(self) -> bool:
        """Shed what waits (at most ``SHED_AT_ONCE``); False if none could be."""
        shed = False
        for _ in range(SHED_AT_ONCE):
            spare, self.spare = self.spare, None
            if spare is None:
                break
            spare.close()  # (its descriptor is the one accept() takes now)
            try:
                conn, address = super().accept()
            except BlockingIOError:  # nothing waits any more
                self.spare = _spare()
                return True
            except OSError:  # (another thread took the descriptor: the next turn tries)
                self.spare = _spare()
                break
            conn.close()
            shed = True
            self.spare = _spare()
            peer_warning(self.log, "%s: out of file descriptors (RLIMIT_NOFILE): connection"
                         " closed at once", address)  # fmt: skip
            if self.shed is not None:
                self.shed(address)
        return shed

    def close(self) -> None:
        spare, self.spare = self.spare, None
        if spare is not None:
            spare.close()
        super().close()


def _spare() -> socket.socket | None:
    try:
        return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    except OSError:
        return None


async def listen(host: str | None, port: int, backlog: int,
                 kind: type[socket.socket] = socket.socket) -> list[socket.socket]:  # fmt: skip
    """Listening sockets (of ``kind``) for ``host:port``, one per address, as
    ``create_server`` makes them (SO_REUSEADDR; IPv6 only on an IPv6 socket);
    non-blocking."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)  # fmt: skip
    made: list[socket.socket] = []
    try:
        for family, sock_kind, proto, _, address in dict.fromkeys(infos):
            sock = kind(family, sock_kind, proto)
            made.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                raise OSError(exc.errno, f"error while attempting to bind on address"
                                         f" {address!r}: {exc.strerror}") from None  # fmt: skip
            sock.listen(backlog)
            sock.setblocking(False)
    except BaseException:
        for sock in made:
            sock.close()
        raise
    if not made:
        raise OSError(f"no address to listen on for {host!r}")
    return made


class PlainServer:
    """asyncio's servers for one ``host:port`` (one per address), as one."""

    __slots__ = ("servers",)

    def __init__(self, servers: list[asyncio.Server]) -> None:
        self.servers = servers

    @property
    def sockets(self) -> list[Any]:
        return [sock for server in self.servers for sock in server.sockets]

    def close(self) -> None:
        for server in self.servers:
            server.close()

    async def wait_closed(self) -> None:
        for server in self.servers:
            await server.wait_closed()


class _Closed(asyncio.Protocol):
    """A connection whose protocol could not be made: reset at once."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.abort()


async def serve_plain(factory: Callable[[], asyncio.BaseProtocol], host: str | None,
                      port: int, backlog: int, shed: Shed,
                      log: logging.Logger = _log) -> PlainServer:  # fmt: skip
    """asyncio's own server for plain TCP on ``host:port``, on :class:`Shedding` sockets
    where the loop is asyncio's (each connection shed is logged to ``log`` and told to
    ``shed``)."""
    loop = asyncio.get_running_loop()
    own = isinstance(loop, asyncio.SelectorEventLoop)

    def guarded() -> asyncio.BaseProtocol:
        # (asyncio drops what a protocol factory raises without a word outside its debug
        # mode, and leaves the accepted socket open until the garbage collector finds it:
        # a bug here would leave every connection hanging, unseen)
        try:
            return factory()
        except Exception:
            log.error("internal error: a new connection could not be set up (it is closed)",
                      exc_info=True)  # fmt: skip
            return _Closed()

    listening = await listen(host, port, backlog, Shedding if own else socket.socket)
    servers: list[asyncio.Server] = []
    try:
        for sock in listening:
            if isinstance(sock, Shedding):
                sock.shed, sock.log = shed, log
            servers.append(await loop.create_server(guarded, sock=sock, backlog=backlog))
    except BaseException:
        for server in servers:
            server.close()
        for sock in listening:
            sock.close()
        raise
    return PlainServer(servers)
