"""The relay's limits and timeouts (one frozen dataclass, a docstring per field), and what
they make of each leg's agent and machine configuration."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from ..agent import Options
from ..agent.options import MIN_TSDU_SIZE
from ..machine import ALL_FUNCTIONAL_UNITS, SessionConfig
from ..machine import events as ev
from ..spdu.codes import FunctionalUnit, Version

__all__ = ["RelayOptions", "SUPPORTED_UNITS", "agent_options", "client_config",
           "upstream_config"]  # fmt: skip

#: Every functional unit the machine implements: what the relay lets a client propose.
SUPPORTED_UNITS = (
    ALL_FUNCTIONAL_UNITS
    | FunctionalUnit.DUPLEX
    | FunctionalUnit.SYMMETRIC_SYNC
    | FunctionalUnit.DATA_SEPARATION
)


@dataclass(frozen=True)
class RelayOptions:
    """Limits and timeouts of a relay; every field has a safe default.

    Every byte a client or an upstream can make the relay hold is bounded by one of these
    (docs/relay.md, "Limits"), and every connection that is not a relayed session has a
    deadline.
    """

    handshake_timeout: float = 10.0
    """From the accept of the client's TCP up to the AC the relay sends it: the wait for a
    handshake slot, the TLS handshake, COTP CR/CC, the CN, and the upstream's connect and
    answer.  A client that has not sent its CN by then is closed; one whose CN still waits
    for the upstream is refused (RF 0x82)."""

    connect_timeout: float = 10.0
    """The upstream's TCP (and TLS) connection establishment; past it the client is refused
    (RF 0x82, SS-user not attached)."""

    idle_timeout: float | None = 300.0
    """Abort both legs (AB 0x09) when nothing at all arrived on either leg for this long
    (None: never).  Between sessionlayer peers (keepalive said in the hello and in the
    welcome) each leg is watched on its own instead: the relay sends a keepalive probe to a
    peer it has heard nothing from for half of this, and aborts both legs when one leg's
    peer sent nothing, not even the probe's answer, for this long (a resumable session:
    both connections closed with no AB, as when one is lost).  The relay answers each
    peer's probes itself, so the other leg's probes say nothing about this leg's peer."""

    release_timeout: float = 10.0
    """How long a relayed release (FN) waits for the other leg's DN or NF before both legs
    are aborted."""

    abort_timeout: float = 10.0
    """X.225 TIM: after the relay sent AB, DN or RF on a leg, how long that peer has to close
    the transport connection before the relay closes it."""

    max_sessions: int = 1000
    """Relayed sessions at once (from an admitted CN to the end); one more CN is refused with
    RF 0x83 (SPM congestion)."""

    max_handshakes: int = 256
    """Client connections at once that are not relayed sessions yet, counted from the TCP
    accept (a TLS handshake under way counts); more wait, unread, for one to end (at most
    16 times as many; one more is closed as soon as it is accepted)."""

    max_size: int = 1 << 20
    """The largest TSDU (after COTP reassembly) and the largest SSDU (after X.225
    segmenting) accepted on either leg; a bigger one aborts that leg with AB 0x11
    (implementation restriction) and the other with AB 0x09."""

    write_buffer_high: int = 256 * 1024
    """Octets waiting to be written to one leg before reading from both legs pauses: the
    other leg, whose octets go to it, and that leg itself, whose peer the relay answers on
    it (a keepalive probe's answer).  It resumes below a quarter."""

    tpdu_size: int = 8192
    """COTP TPDU size proposed (upstream) or accepted (client): see ``Options.tpdu_size``."""

    max_held: int = 8 << 20
    """Octets (S-DATA, S-TYPED-DATA and S-SYNC-MINOR user data, and 64 per indication)
    held for one leg while its machine waits for the relay's answer to its peer's major
    sync point or activity end (STA10A, STA10B: X.225 lets no S-SYNC-MINOR be sent there):
    a minor sync point the other leg's peer set before it saw the MAP or AE, and what it
    sent behind that point, relayed once its MAA or AEA came.  Past it both legs are
    aborted (AB 0x09)."""

    def __post_init__(self) -> None:
        for name in ("handshake_timeout", "connect_timeout", "release_timeout",
                     "abort_timeout", "idle_timeout"):  # fmt: skip
            value = getattr(self, name)
            if name == "idle_timeout" and value is None:
                continue  # (never)
            if type(value) not in (int, float) or not 0 < value < math.inf:  # (NaN too)
                never = " (or None: never)" if name == "idle_timeout" else ""
                raise ValueError(f"{name} must be a positive, finite number of seconds{never},"
                                 f" not {value!r}")  # fmt: skip
        for name in ("max_sessions", "max_handshakes", "max_size", "write_buffer_high",
                     "max_held"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_size < MIN_TSDU_SIZE:  # (what the legs' Options.max_tsdu_size takes)
            raise ValueError(f"max_size must be at least {MIN_TSDU_SIZE}, not {self.max_size}")
        # What both legs' agents apply, checked now: a value Options refuses would otherwise
        # fail each connection as it is made (and asyncio drops it without a word).
        agent_options(self)


@functools.lru_cache(maxsize=8)
def agent_options(options: RelayOptions) -> Options:
    """What both legs' agents apply: the relay keeps liveness itself (the bridge's idle
    timeout; each leg's agent only sends the probes, after half of it, and only to a
    sessionlayer peer that answers them), recovery is only between sessionlayer peers.
    (One per relay configuration, not two per session: an ``Options`` checks its fields
    when made.)"""
    idle = options.idle_timeout
    return Options(
        handshake_timeout=options.handshake_timeout,
        keepalive_interval=None if idle is None else idle / 2,
        idle_timeout=None,
        max_tsdu_size=options.max_size,
        write_buffer_high=options.write_buffer_high,
        tpdu_size=options.tpdu_size,
        resume=False,
    )


def client_config(options: RelayOptions) -> SessionConfig:
    """(Client leg) Accept whatever the machine implements; the answer is replaced by the
    upstream's (``SessionAgent.accept(config=...)``)."""
    return SessionConfig(
        functional_units=SUPPORTED_UNITS,
        max_ssdu_size=options.max_size,
        abort_timeout=options.abort_timeout,
    )


def _size(value: int) -> int:
    return value if 64 <= value <= 65535 else 0  # (under 64: no segmenting, ISODE's rule)


def upstream_config(cn: ev.ConnectIndication, options: RelayOptions) -> SessionConfig:
    """(Upstream leg) The CN's parameters, carried over."""
    i2r, r2i = cn.tsdu_max_size or (0, 0)
    versions = Version(cn.versions & 3 or 1)
    return SessionConfig(
        functional_units=FunctionalUnit(cn.functional_units & SUPPORTED_UNITS),
        versions=versions,
        token_setting=dict(cn.token_setting),
        tsdu_max_send=_size(i2r) if versions & Version.V2 else 0,
        tsdu_max_receive=_size(r2i) if versions & Version.V2 else 0,
        initial_serial=cn.initial_serial,
        second_initial_serial=cn.second_initial_serial,
        calling_ssel=cn.calling_ssel,
        called_ssel=cn.called_ssel,
        max_ssdu_size=options.max_size,
        abort_timeout=options.abort_timeout,
    )
