"""Which servers read a CN sent right behind the CR (``Options.fast_connect``).

A client learns it from a server's welcome (its ``fast`` flag) and then opens and resumes
sessions to that address in one round trip instead of two: the CR and the CN in one write,
the CC and the AC in one answer.  The first connection to an address is always plain
ISO 8073 (the CN waits for the CC), so an OSI peer never sees a CN before its CC.

Kept per process, like a TLS session cache: at most ``LIMIT`` addresses (the oldest go
first).  A fast connect that fails before the CC came drops its address, so the next
connection to it is plain again.
"""

from __future__ import annotations

__all__ = ["LIMIT", "forget", "forget_all", "is_known", "learn"]

LIMIT = 1024  #: addresses remembered at most

Address = tuple[str, int, bool]  #: (host, port, TLS)
_KNOWN: dict[Address, None] = {}


def is_known(host: str, port: int, tls: bool) -> bool:
    """The server at this address said it reads a CN right behind the CR."""
    return (host, port, tls) in _KNOWN


def learn(host: str, port: int, tls: bool, fast: bool) -> None:
    """What the server at this address said in its welcome (no welcome: ``fast`` False)."""
    key = (host, port, tls)
    if not fast:
        _KNOWN.pop(key, None)
    elif key not in _KNOWN:
        if len(_KNOWN) >= LIMIT:
            del _KNOWN[next(iter(_KNOWN))]
        _KNOWN[key] = None


def forget(host: str, port: int, tls: bool) -> None:
    """A fast connect to this address failed before the CC: plain ISO 8073 from now on."""
    _KNOWN.pop((host, port, tls), None)


def forget_all() -> None:
    """Forget every address (after a network change, or between tests: a port another
    server held before may have come round again)."""
    _KNOWN.clear()
