"""``MemoryStore``: session records in a dict, for tests and single-process servers."""

from __future__ import annotations

import builtins
import secrets
from collections.abc import Sequence
from dataclasses import replace

from ..errors import StoreUnavailable
from .base import KEEP, Checkpoint, Keep, SessionRecord

__all__ = ["MemoryStore"]


class MemoryStore:
    """Records in a dict: nothing survives the process.

    Every method runs to its end without awaiting, so each is atomic on its event loop;
    two servers in one process may share one instance (they then share its secret, a
    random one per instance).
    """

    name = "memory"

    def __init__(self) -> None:
        self._records: dict[str, SessionRecord] = {}
        self._secret = secrets.token_bytes(32)
        self._closed = False

    async def secret(self) -> bytes:
        self._check()
        return self._secret

    async def refresh_secret(self) -> tuple[bytes, ...]:
        self._check()
        return (self._secret,)  # (it lives as long as the records: nothing to assert again)

    async def put(self, record: SessionRecord) -> None:
        self._check()
        self._records[record.id] = _copy(record)

    async def put_unless_taken(self, record: SessionRecord) -> SessionRecord | None:
        self._check()
        stored = self._records.get(record.id)
        if stored is not None and stored.bars(record):
            return _copy(stored)
        self._records[record.id] = _copy(record)
        return None

    async def get(self, session_id: str) -> SessionRecord | None:
        self._check()
        record = self._records.get(session_id)
        return None if record is None else _copy(record)

    async def advance(
        self, session_id: str, generation: int, *, node: str | None, expires_at: float | None
    ) -> SessionRecord | None:
        self._check()
        record = self._records.get(session_id)
        if record is None or record.generation != generation:
            return None
        record = record.advanced(node, expires_at)
        self._records[session_id] = record
        return _copy(record)

    async def update(
        self,
        session_id: str,
        *,
        expires_at: float | Keep | None = KEEP,
        checkpoint: Checkpoint | Keep | None = KEEP,
        node: str | Keep | None = KEEP,
        if_generation: int | None = None,
        if_node: str | None = None,
        detached: bool | Keep = KEEP,
        heard_at: int | Keep | None = KEEP,
    ) -> bool:
        self._check()
        record = self._records.get(session_id)
        if record is None or not record.held(if_generation, if_node):
            return False
        self._records[session_id] = record.changed(expires_at, checkpoint, node, detached,
                                                   heard_at)  # fmt: skip
        return True

    async def delete(
        self, session_id: str, *, if_generation: int | None = None, if_node: str | None = None
    ) -> bool:
        self._check()
        record = self._records.get(session_id)
        if record is None or not record.held(if_generation, if_node):
            return False
        del self._records[session_id]
        return True

    async def renew(
        self, node: str, session_ids: Sequence[str], expires_at: float
    ) -> builtins.list[str]:
        self._check()
        renewed = []
        for session_id in session_ids:
            record = self._records.get(session_id)
            if record is not None and record.renewable(node):
                self._records[session_id] = replace(record, expires_at=expires_at)
                renewed.append(session_id)
        return renewed

    async def list(self) -> builtins.list[SessionRecord]:
        self._check()
        records = sorted(self._records.values(), key=lambda r: (r.created, r.id))
        return [_copy(r) for r in records]

    async def expire(self, now: float) -> builtins.list[str]:
        self._check()
        gone = [
            r.id for r in self._records.values() if r.expires_at is not None and r.expires_at <= now
        ]
        for session_id in gone:
            del self._records[session_id]
        return gone

    async def close(self) -> None:
        self._closed = True

    def _check(self) -> None:
        if self._closed:
            raise StoreUnavailable(self.name, "the store was closed")


def _copy(record: SessionRecord) -> SessionRecord:
    """A record with a ``chosen`` of its own (the dataclass is frozen, the dict is not)."""
    return replace(record, chosen=dict(record.chosen))
