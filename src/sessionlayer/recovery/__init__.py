"""Sessions that survive a lost transport connection, sans I/O.

:class:`Journal` keeps what one side sent until the peer confirmed it (confirmed minor
sync points, symmetric synchronize) and counts what it received, so a resumed session
replays exactly what the peer lacks; :mod:`.tokens` makes and checks resume tokens;
:class:`Backoff` times a client's reconnects; :mod:`.events` is what the application is
told.  The asyncio binding (:mod:`sessionlayer.aio`) moves the bytes and keeps the timers;
docs/recovery.md describes the semantics.
"""

from __future__ import annotations

from .backoff import Backoff
from .events import Checkpoint, Interrupted, Resumed
from .journal import ACK_MARK, OVERHEAD, Journal
from .tokens import ANONYMOUS, identity_of, issue, parse, verify

__all__ = [
    "Journal",
    "Backoff",
    "Checkpoint",
    "Interrupted",
    "Resumed",
    "ACK_MARK",
    "OVERHEAD",
    "ANONYMOUS",
    "identity_of",
    "issue",
    "parse",
    "verify",
]
