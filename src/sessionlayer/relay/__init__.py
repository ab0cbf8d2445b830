"""``sessionlayer relay``: a session-aware relay between two OSI stacks (docs/relay.md).

The session is terminated on both legs by sessionlayer's own protocol machine -- a
responder toward the client, an initiator toward the upstream -- and only X.215 services
cross between them (:mod:`sessionlayer.relay.bridge`, sans I/O).  The asyncio binding
(:mod:`sessionlayer.relay.server`) is imported on first use of its names, so that the
bridge can be used without an event loop.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .bridge import Bridge
from .options import RelayOptions
from .policy import Policy, Rule

if TYPE_CHECKING:
    from .server import LegInfo, Relay, RelaySessionInfo, RelayStats, start

__all__ = [
    "start",
    "Relay",
    "RelayOptions",
    "RelaySessionInfo",
    "LegInfo",
    "RelayStats",
    "Policy",
    "Rule",
    "Bridge",
]

_LAZY = {"start", "Relay", "RelaySessionInfo", "LegInfo", "RelayStats"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(".server", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
