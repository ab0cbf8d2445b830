"""The asyncio binding: ``connect()``, ``serve()`` and ``Session``."""

from .auth import check_passwords, check_token
from .client import connect
from .hello import Hello, Rejection, Welcome
from .options import Options
from .server import ConnectRequest, Refuse, Server, serve
from .session import (
    ConnectRefused,
    ReleaseRefused,
    Session,
    SessionAborted,
    SessionClosed,
    SessionInfo,
)

__all__ = [
    "connect",
    "serve",
    "check_passwords",
    "check_token",
    "Server",
    "Session",
    "SessionInfo",
    "Options",
    "ConnectRequest",
    "Refuse",
    "ConnectRefused",
    "ReleaseRefused",
    "SessionAborted",
    "SessionClosed",
    "Hello",
    "Welcome",
    "Rejection",
]
