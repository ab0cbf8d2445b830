"""The asyncio binding: ``connect()``, ``serve()`` and ``Session``."""

from ..agent import Hello, Options, Rejection, Welcome
from ..errors import ConnectRefused, Refuse, ReleaseRefused, SessionAborted, SessionClosed
from .auth import check_passwords, check_token
from .client import connect
from .server import ConnectRequest, Server, serve
from .session import Session, SessionInfo

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
