"""Session stores: the small durable record that lets a session outlive its connection.

A server keeps one :class:`SessionRecord` per resumable session in a
:class:`SessionStore`: who authenticated it, what was agreed at connect, its last
confirmed checkpoint, which node holds it and, while it is detached, until when it may be
resumed.  Three stores implement the one interface:

- :class:`MemoryStore` (``"memory"``): a dict, for tests and one process;
- :class:`SQLiteStore` (``"sqlite:PATH"``): one file, survives a restart, shared by the
  processes of one host;
- :class:`RedisStore` (``"redis://host:port/db"``): shared by the nodes of a cluster
  (the ``redis`` extra; imported only when used).

Stores do I/O, so they sit beside the asyncio binding, not in the sans-I/O core; they
import nothing of sessionlayer but :mod:`sessionlayer.errors` and
:mod:`sessionlayer.recovery.events` (a record's ``Checkpoint``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ..errors import StoreUnavailable
from .base import KEEP, Checkpoint, Keep, SessionRecord, SessionStore
from .memory import MemoryStore
from .sqlite import SQLiteStore

if TYPE_CHECKING:
    from .redis import RedisStore

__all__ = [
    "open_store",
    "SessionStore",
    "SessionRecord",
    "Checkpoint",
    "KEEP",
    "Keep",
    "StoreUnavailable",
    "MemoryStore",
    "SQLiteStore",
    "RedisStore",
]


def open_store(
    url: str,
    *,
    timeout: float = 2.0,
    synchronous: str = "NORMAL",
    prefix: str = "sessionlayer:",
) -> SessionStore:
    """The store ``url`` names: ``"memory"``, ``"sqlite:PATH"`` (or a plain path ending in
    ``.db``, ``.sqlite`` or ``.sqlite3``), ``"redis://[user:password@]host[:port][/db]"`` or
    ``"rediss://..."`` (``db`` a database number, 0 or more; 0 without it).

    ``timeout`` bounds how long a call waits for the backend (SQLite: another process's
    lock; Redis: connecting and each reply); ``synchronous`` is SQLite's (``"NORMAL"`` or
    ``"FULL"``), ``prefix`` the Redis key prefix.  Anything else raises ValueError.
    """
    if url == "memory":
        return MemoryStore()
    if url.startswith(("redis://", "rediss://")):
        from .redis import RedisStore

        return RedisStore(url, prefix=prefix, timeout=timeout)
    path = url.removeprefix("sqlite:") if url.startswith("sqlite:") else None
    if path is None and url.endswith((".db", ".sqlite", ".sqlite3")) and "://" not in url:
        path = url
    if path:
        return SQLiteStore(path, timeout=timeout, synchronous=synchronous)
    raise ValueError(
        f"unknown session store {url!r}: use 'memory', 'sqlite:PATH' (or a path ending in"
        " .db or .sqlite) or 'redis://host:port/db'"
    )


def __getattr__(name: str) -> Any:
    if name == "RedisStore":  # imports redis-py, which only the redis extra installs
        return importlib.import_module(".redis", __name__).RedisStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
