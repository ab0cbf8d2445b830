"""Settings of one side of a session: timeouts, liveness and limits (the agent applies the
timeouts and liveness, the binding the limits on what it buffers)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from ..errors import LocalError
from ..recovery.backoff import Backoff
from ..transport.connection import check_tpdu_size

__all__ = ["Options", "MIN_TSDU_SIZE"]

#: The smallest ``Options.max_tsdu_size``: below it the peer's answers on their own (a sync
#: point's, a token's, a release's) would not fit (ISODE likewise takes no TSDU maximum
#: size under 64 octets, DT_MINSIZE).
MIN_TSDU_SIZE = 64


@dataclass(frozen=True)
class Options:
    """Timeouts (seconds), liveness and limits for one side of a session.

    Every field has a safe default; pass your own to ``connect``/``serve``.  A value out of
    range (a time that is not positive and finite, a size that is not positive, a TPDU size
    COTP cannot carry, a switch that is not a bool) raises :class:`ValueError` naming the
    field.
    """

    connect_timeout: float = 10.0
    """TCP (and TLS) connection establishment."""

    handshake_timeout: float = 10.0
    """From TCP up to the AC (or RF): COTP CR/CC and the CN/AC exchange.  The client raises
    :class:`TimeoutError` past it; the server closes a connection that has not become a
    session by then (a slow or silent client), whatever it has sent so far."""

    release_timeout: float = 10.0
    """How long an orderly release (FN) waits for DN/NF before aborting."""

    keepalive_interval: float | None = 15.0
    """Send a probe after this much silence from the peer (None: never).

    Probes are sent only to sessionlayer peers that said they answer them (in
    the hello and in the welcome); on the wire a probe is a PLEASE TOKENS SPDU
    with no tokens and the answer a GIVE TOKENS SPDU with no tokens, both of
    which tshark decodes.  Toward any other peer (an OSI stack) no probe is sent,
    since an empty PT is not valid in every state; TCP keepalive is switched on
    instead (first probe after this interval), which finds a dead peer host.
    """

    idle_timeout: float | None = 45.0
    """Abort the session (AB, "no reason") when nothing at all arrived for this long (None:
    never).  Time while reading is paused for a slow local reader does not count.  Only
    toward a peer that answers keepalive probes (a sessionlayer peer): from any other (an
    OSI stack) silence is normal (an IEC 61850 client may wait minutes for a report), and
    TCP keepalive finds a dead peer host instead."""

    max_tsdu_size: int = 1 << 20
    """Largest TSDU accepted from the peer (after COTP reassembly), at least MIN_TSDU_SIZE
    (64).  It bounds what comes once the session is set up: the connect phase's SPDUs (CN,
    CDO, OA, AC, RF) are taken up to X.225's own limit (65,539 octets) whatever it is."""

    max_buffered_bytes: int = 1 << 20
    """Received data held for a slow reader before reading from TCP pauses (it resumes
    below half).  The user data of indications waiting unread in ``events()`` has a budget
    of the same size, separately."""

    max_queued_events: int = 1000
    """Indications other than data (TD, EX, sync points, tokens, ...) held unread in
    ``events()`` before reading from TCP pauses (it resumes when half were read).  An
    application that never reads ``events()`` and whose peer sends many of them stalls
    there: read them, or raise the limit."""

    write_buffer_high: int = 256 * 1024
    """Outgoing bytes buffered before ``send`` waits (backpressure)."""

    tpdu_size: int = 8192
    """COTP TPDU size proposed or accepted: a power of 2 from 128 to 8192, or a multiple of
    128 up to 65408.  Above 8192 the ISO 8073 preferred maximum TPDU size parameter is sent
    too; a peer that does not know it (libiec61850) ignores it and 8192 applies.  Between
    sessionlayer peers, 65408 carries a 64 KiB message in two TPDUs instead of eight."""

    fast_connect: bool = True
    """Between sessionlayer peers, the CN goes right behind the COTP CR, in the same write,
    instead of after the CC: a session's setup (and a resume) takes one round trip instead
    of two.  A client does so only toward an address whose server said in an earlier
    welcome that it reads such a CN (every sessionlayer server does; the first connection
    to an address is plain ISO 8073); the CN then travels in 128-octet DTs.  Never toward
    peers that speak only X.225.  False: the client waits for the CC, and the server does
    not say it reads such a CN (it still does)."""

    # ------------------------------------------------------------ recovery (docs/recovery.md)

    resume: bool = True
    """Between sessionlayer peers, a session survives the loss of its transport connection:
    the client reconnects (``backoff``) and both sides replay what the other lacks.  Peers
    that speak only X.225 get plain sessions.  False: a lost connection ends the session."""

    backoff: Backoff = field(default_factory=Backoff)
    """(Client) When to try reconnecting, and when to give up."""

    resume_timeout: float = 60.0
    """(Server) How long a session whose connection was lost waits for its client."""

    retention: int = 32 << 20
    """Octets of sent data held until the peer confirmed them (user data plus 64 per
    message), per session.  Past it ``retention_overflow`` applies."""

    retention_overflow: Literal["block", "fail"] = "block"
    """What ``send()`` does when ``retention`` is reached: wait for the peer to confirm
    (``block``), or end the session with an error (``fail``)."""

    ack_bytes: int = 8 << 20
    """Ask the peer to confirm (a confirmed minor sync point) after this many octets..."""

    ack_interval: float = 0.25
    """... or this many seconds after the first message not yet covered."""

    def __post_init__(self) -> None:
        times = ("connect_timeout", "handshake_timeout", "release_timeout", "resume_timeout",
                 "ack_interval")  # fmt: skip
        for name in times:
            _positive_time(name, getattr(self, name))
        for name in ("keepalive_interval", "idle_timeout"):
            value = getattr(self, name)
            if value is not None:
                _positive_time(name, value)
        sizes = ("max_tsdu_size", "max_buffered_bytes", "max_queued_events",
                 "write_buffer_high", "retention", "ack_bytes")  # fmt: skip
        for name in sizes:
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"Options.{name} must be a positive int, not {value!r}")
        if self.max_tsdu_size < MIN_TSDU_SIZE:
            raise ValueError(f"Options.max_tsdu_size must be at least {MIN_TSDU_SIZE} (a"
                             f" TSDU of a few SPDUs), not {self.max_tsdu_size!r}")  # fmt: skip
        if type(self.tpdu_size) is not int:
            raise ValueError(f"Options.tpdu_size must be an int, not {self.tpdu_size!r}")
        try:
            check_tpdu_size(self.tpdu_size)
        except LocalError as exc:
            raise ValueError(f"Options.tpdu_size: {exc}") from None
        for name in ("fast_connect", "resume"):
            value = getattr(self, name)
            if type(value) is not bool:  # ("no" or 0 would be taken as what they are not)
                raise ValueError(f"Options.{name} must be True or False, not {value!r}")
        if self.retention_overflow not in ("block", "fail"):
            raise ValueError("Options.retention_overflow must be 'block' or 'fail', not"
                             f" {self.retention_overflow!r}")  # fmt: skip
        if not isinstance(self.backoff, Backoff):
            raise ValueError(f"Options.backoff must be a Backoff, not {self.backoff!r}")


def _positive_time(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
        0 < value < math.inf
    ):
        raise ValueError(f"Options.{name} must be a positive number of seconds, not {value!r}")
