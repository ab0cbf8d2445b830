"""sessionlayer: the OSI session layer (ISO 8327-1 / ITU-T X.225) over RFC 1006.

This module is the public API: it re-exports names only.  The asyncio
binding is imported on first use, so that ``import sessionlayer.spdu`` (or
``.transport``, ``.machine``) loads no event loop.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    AbortReason,
    CheckpointRestored,
    DecodeError,
    EncodeError,
    LocalError,
    RefuseReason,
    RemoteError,
    ResumeRefused,
    ResyncCollisionLost,
    SessionLayerError,
    StoreUnavailable,
    SyncPurged,
)
from .recovery import Backoff, Checkpoint, Interrupted, Resumed
from .spdu.codes import ExceptionReason, FunctionalUnit, ResyncType, Token, TokenSetting

if TYPE_CHECKING:
    from .aio import (
        ConnectRefused,
        ConnectRequest,
        Options,
        Refuse,
        ReleaseRefused,
        Server,
        Session,
        SessionAborted,
        SessionClosed,
        SessionInfo,
        check_passwords,
        check_token,
        connect,
        serve,
    )
    from .machine import SessionConfig

# The only place the version is written: pyproject.toml reads it (tool.setuptools.dynamic).
__version__ = "0.1.0"

_LAZY = {
    "check_passwords": "aio",
    "check_token": "aio",
    "connect": "aio",
    "serve": "aio",
    "Server": "aio",
    "Session": "aio",
    "SessionInfo": "aio",
    "Options": "aio",
    "ConnectRequest": "aio",
    "Refuse": "aio",
    "ConnectRefused": "aio",
    "ReleaseRefused": "aio",
    "SessionAborted": "aio",
    "SessionClosed": "aio",
    "SessionConfig": "machine",
}

__all__ = [
    "__version__",
    "connect",
    "serve",
    "check_passwords",
    "check_token",
    "Server",
    "Session",
    "SessionInfo",
    "SessionConfig",
    "Options",
    "ConnectRequest",
    "Refuse",
    "FunctionalUnit",
    "Token",
    "TokenSetting",
    "ResyncType",
    "ExceptionReason",
    "SessionLayerError",
    "LocalError",
    "EncodeError",
    "RemoteError",
    "DecodeError",
    "ResyncCollisionLost",
    "SyncPurged",
    "AbortReason",
    "RefuseReason",
    "ConnectRefused",
    "ReleaseRefused",
    "SessionAborted",
    "SessionClosed",
    "ResumeRefused",
    "CheckpointRestored",
    "StoreUnavailable",
    "Backoff",
    "Checkpoint",
    "Interrupted",
    "Resumed",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sessionlayer' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
