"""What the store tests share: a bounded ``run``, records, and the backends under test."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from sessionlayer.stores import Checkpoint, SessionRecord, SessionStore

T = TypeVar("T")

#: No store test waits longer than this for its coroutine (pytest's timeout is 120 s).
TIMEOUT = 20.0


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on a new event loop, failing with TimeoutError past TIMEOUT."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, TIMEOUT)

    return asyncio.run(bounded())


def new_id() -> str:
    return secrets.token_hex(16)


def make_record(**changes: Any) -> SessionRecord:
    """A detached record with every field set (``changes`` override them)."""
    now = time.time()
    fields: dict[str, Any] = {
        "id": new_id(),
        "generation": 0,
        "identity": "cred:" + "ab" * 32,
        "chosen": {"codec": "json", "größe": "über"},
        "created": now,
        "expires_at": now + 300.123456789,
        "checkpoint": Checkpoint(serial=7, user_data=b"\x00\xffcheckpoint\n"),
        "node": "node-a",
        "peer": "127.0.0.1:5555",
    }
    fields.update(changes)
    return SessionRecord(**fields)


@dataclass
class Backend:
    """One kind of store under test; ``open()`` gives a store on the same data each time
    (memory: the one shared instance; SQLite: the same file; Redis: a new client on the
    same server and prefix), as a second server node would."""

    kind: str
    open: Callable[[], SessionStore]
