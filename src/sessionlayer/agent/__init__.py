"""What a session does on its own, sans I/O: the agent over the protocol machine.

:class:`SessionAgent` wraps one :class:`~sessionlayer.machine.SessionMachine` and its
RFC 1006 connection: bytes and the time in; bytes to write, events for the application and
the next deadline out.  It answers what has one sensible answer, fetches tokens, speaks the
sessionlayer hello (:mod:`sessionlayer.agent.hello`) and keeps the connection's deadlines
(:class:`Options`).  Like spdu/, transport/ and machine/ it imports no socket, event loop,
clock or TLS (ruff's banned-api rule checks it).
"""

from __future__ import annotations

from .agent import EVERY, NEEDS, PING, PONG, SessionAgent, TokensMissing
from .hello import Hello, Rejection, Welcome, negotiate
from .options import Options

__all__ = [
    "SessionAgent",
    "TokensMissing",
    "Options",
    "Hello",
    "Welcome",
    "Rejection",
    "negotiate",
    "NEEDS",
    "EVERY",
    "PING",
    "PONG",
]
