"""The ``backend`` fixture: every store test runs against memory, SQLite and a real Redis."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from tests.redisserver import RedisServer, redis_server
from tests.stores.helpers import Backend

from sessionlayer.stores import MemoryStore, RedisStore, SessionStore, SQLiteStore

__all__ = ["backend", "redis_server"]


@pytest.fixture(params=["memory", "sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    kind: str = request.param
    if kind == "memory":
        shared = MemoryStore()
        return Backend(kind, lambda: shared)
    if kind == "sqlite":
        path = tmp_path / "sessions.db"
        return Backend(kind, lambda: SQLiteStore(path))
    server: RedisServer = request.getfixturevalue("redis_server")
    prefix = f"test-{secrets.token_hex(4)}:"  # each test its own keys on the shared server

    def open_redis() -> SessionStore:
        return RedisStore(server.url, prefix=prefix)

    return Backend(kind, open_redis)
