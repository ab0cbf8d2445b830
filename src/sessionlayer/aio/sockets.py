"""What the binding asks of the operating system's TCP sockets, and the shared limit on the
warnings peers cause."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import os
import socket
import ssl
from typing import Any

__all__ = ["WARNINGS_PER_SECOND", "WarningLimit", "warnings", "peer_warning", "peer_gone",
           "socket_gone", "tcp_keepalive", "TCP_KEEPALIVE_MAX", "unreachable", "host_port",
           "split_host_port", "peer_text", "TlsHandshakeReset", "is_loopback"]

#: Across all connections: WARNING records a peer can cause, per second.
WARNINGS_PER_SECOND = 20
_TCP_ESTABLISHED = 1  #: tcpi_state in Linux's struct tcp_info


class WarningLimit:
    """Rate limit for the warnings peers cause: a token bucket shared by every connection,
    so a flood of hostile connections cannot flood the log.  What it holds back is counted
    and reported with the next warning let through."""

    __slots__ = ("allowance", "last", "suppressed")

    def __init__(self) -> None:
        self.allowance = float(WARNINGS_PER_SECOND)
        self.last = 0.0
        self.suppressed = 0

    def allow(self, now: float) -> bool:
        self.allowance = min(
            float(WARNINGS_PER_SECOND), self.allowance + (now - self.last) * WARNINGS_PER_SECOND
        )
        self.last = now
        if self.allowance >= 1.0:
            self.allowance -= 1.0
            return True
        self.suppressed += 1
        return False


warnings = WarningLimit()  #: the one every connection shares


def peer_warning(log: logging.Logger, message: str, *args: Any) -> None:
    """A WARNING a peer caused, under the limit every connection shares (else DEBUG)."""
    if warnings.allow(asyncio.get_running_loop().time()):
        log.warning(message, *args)
    else:
        log.debug(message, *args)


def peer_gone(transport: asyncio.BaseTransport | None) -> bool:
    """While reading is paused asyncio does not see a FIN or a reset: look."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    return sock is not None and socket_gone(sock)


def socket_gone(sock: Any) -> bool:
    """The peer of this connected TCP socket closed or reset it (nothing read: a look)."""
    tcp_info = getattr(socket, "TCP_INFO", None)
    try:
        if tcp_info is not None:  # Linux: the connection's TCP state, unread data or not
            state = sock.getsockopt(socket.IPPROTO_TCP, tcp_info, 8)[0]
            return bool(state != _TCP_ESTABLISHED)
        # Elsewhere: peek (through a dup: asyncio's socket wrapper has no recv).
        with socket.socket(sock.family, sock.type, fileno=os.dup(sock.fileno())) as dup:
            return bool(dup.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"")
    except (BlockingIOError, InterruptedError):
        return False  # alive, nothing to read
    except OSError:
        return True  # reset


#: The longest TCP_KEEPIDLE / TCP_KEEPINTVL Linux takes (MAX_TCP_KEEPIDLE): seconds.
TCP_KEEPALIVE_MAX = 32767


def tcp_keepalive(sock: socket.socket, interval: float) -> None:
    """TCP keepalive: probes after ``interval`` s of silence (at most TCP_KEEPALIVE_MAX:
    a longer one is refused by the kernel, which left its default of 2 hours and no probe
    count), three of them a third apart."""
    seconds = max(1, min(TCP_KEEPALIVE_MAX, int(interval)))
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", seconds), ("TCP_KEEPINTVL", max(1, seconds // 3)),
                        ("TCP_KEEPCNT", 3)):  # fmt: skip
        option = getattr(socket, name, None)
        if option is not None:
            with contextlib.suppress(OSError):  # (each alone: one refused leaves the others)
                sock.setsockopt(socket.IPPROTO_TCP, option, value)


def host_port(host: str, port: int | str) -> str:
    """``host:port`` as a user reads and writes it: an IPv6 literal in brackets
    (``[::1]:10102``), so that the port cannot be taken for the address's last group."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def split_host_port(text: str, *, what: str = "an address",
                    port_optional: bool = True) -> tuple[str, str]:  # fmt: skip
    """``HOST:PORT``, ``HOST``, ``[v6]:PORT`` or ``[v6]`` -> (host, the port as typed, ""
    if none): what :func:`host_port` writes, read back.  ValueError ("not ``what``: ...")
    for an IPv6 address not in brackets (``::1:8080``: the address ::1:8080, or ::1 and
    port 8080?) and for a bracket not closed or followed by anything but ``:PORT``.  The
    one reading of every HOST:PORT a command or a service takes (``send``'s, ``--admin``,
    ``--allow-tunnel``, ``--to``), so that none splits ``2001:db8::22`` at its last colon."""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"not {what}: {text!r} (an IPv6 one is [ADDRESS]:PORT)")
        return host, rest.removeprefix(":")
    if text.count(":") > 1:
        also = ", or [ADDRESS] for the default port" if port_optional else ""
        raise ValueError(f"not {what}: {text!r} (write an IPv6 one as [ADDRESS]:PORT{also})")
    host, _, port = text.partition(":")
    return host, port


def peer_text(peer: Any) -> str | None:
    """A socket address (``getpeername()``'s tuple) as :func:`host_port` writes it; None
    for None, anything else as it prints."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        return host_port(peer[0], peer[1])
    return None if peer is None else str(peer)


class TlsHandshakeReset(ConnectionResetError):
    """The connection was closed or reset in the TLS handshake (most often: the server
    does not use TLS); its ``strerror`` says so."""


def unreachable(exc: BaseException) -> str:
    """Why a TCP connect failed, in a few words for one line ("timed out", "Connection
    refused", "Name or service not known", or what asyncio said when every address of a
    name failed): never a bare errno ("Unknown error -2" is what ``os.strerror`` makes of a
    resolver's error code; a reset in the TLS handshake says so: see connect())."""
    if isinstance(exc, TimeoutError):
        return str(exc) or "timed out"  # (connect()'s says which phase ran out)
    if isinstance(exc, TlsHandshakeReset):  # (it was "Connection reset by peer": its errno's)
        return exc.strerror or os.strerror(errno.ECONNRESET)
    if isinstance(exc, ssl.SSLCertVerificationError):  # (an OSError: errno 1 says nothing)
        return f"TLS: certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc.strerror or exc}"
    if isinstance(exc, OSError) and not isinstance(exc, socket.gaierror) and (
            isinstance(exc.errno, int) and exc.errno > 0):  # fmt: skip
        # (asyncio's "Connect call failed ('::1', 1, 0, 0)": the address is shown already,
        # as the user wrote it, and a socket address tuple is not how one writes it)
        return os.strerror(exc.errno)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def is_loopback(host: str) -> bool:
    """``host`` is a loopback address (127.0.0.0/8, ::1) or ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
