"""sessionlayer: the OSI session layer (ISO 8327-1 / ITU-T X.225) over RFC 1006.

This module is the public API: it re-exports names only, each imported on first use
(PEP 562), so that ``import sessionlayer.spdu`` (or ``.transport``, ``.machine``) loads no
event loop, and the command line's entry point (``sessionlayer.__main__:run``) is running,
Ctrl-C handled, a few milliseconds after the interpreter starts, before the modules load.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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
        SyncSuperseded,
    )
    from .machine import SessionConfig
    from .recovery import Backoff, Checkpoint, Interrupted, Resumed
    from .spdu.codes import ExceptionReason, FunctionalUnit, ResyncType, Token, TokenSetting

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
    **dict.fromkeys(
        ("AbortReason", "CheckpointRestored", "DecodeError", "EncodeError", "LocalError",
         "RefuseReason", "RemoteError", "ResumeRefused", "ResyncCollisionLost",
         "SessionLayerError", "StoreUnavailable", "SyncPurged", "SyncSuperseded"), "errors"),
    **dict.fromkeys(("Backoff", "Checkpoint", "Interrupted", "Resumed"), "recovery"),
    **dict.fromkeys(("ExceptionReason", "FunctionalUnit", "ResyncType", "Token",
                     "TokenSetting"), "spdu.codes"),
}
#: The subpackages and modules ``sessionlayer.<name>`` reaches after ``import sessionlayer``.
_MODULES = frozenset({
    "agent", "aio", "apps", "capture", "cli", "commands", "demo", "dissect", "errors",
    "ladder", "machine", "metrics", "recovery", "relay", "rotation", "spdu", "stores", "transport",
})  # fmt: skip

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
    "SyncSuperseded",
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
        if name in _MODULES:  # (``import sessionlayer`` then ``sessionlayer.errors``)
            return importlib.import_module(f".{name}", __name__)
        raise AttributeError(f"module 'sessionlayer' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
