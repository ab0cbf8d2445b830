"""A session whose record in the store is corrupt (overwritten with junk: a real SQLite
file, a real redis-server) cannot be resumed, and never will be: the resume is refused as
``corrupt``, which the client takes as final, at once, instead of trying again until it
gives up (docs/recovery.md, "Reasons").  The server says so once, naming the session."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis.asyncio import Redis
from tests.redisserver import RedisServer, free_port, redis_server

import sessionlayer
from sessionlayer.errors import ResumeRefused
from sessionlayer.stores import RedisStore, SessionStore, SQLiteStore

from .helpers import LIMIT, run
from .test_stale_live_copy import ids, nodes
from .test_store_honesty import CLIENT

__all__ = ["redis_server"]  # (the fixture, for the Redis case)


@dataclass
class Shared:
    """One store's data: ``open()`` opens a store on it, ``corrupt(sid)`` overwrites the
    session's record with junk from outside (another process's view)."""

    open: Callable[[], SessionStore]
    corrupt: Callable[[str], Awaitable[None]]


@pytest.fixture(params=["sqlite", "redis"])
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Shared:
    if request.param == "sqlite":
        path = tmp_path / "sessions.db"

        async def corrupt_row(sid: str) -> None:
            db = sqlite3.connect(path, isolation_level=None)
            try:
                done = db.execute("UPDATE sessions SET record = ? WHERE id = ?",
                                  ("junk{", sid))  # fmt: skip
                assert done.rowcount == 1
            finally:
                db.close()

        return Shared(lambda: SQLiteStore(path), corrupt_row)
    server: RedisServer = request.getfixturevalue("redis_server")
    prefix = f"corrupt-{secrets.token_hex(4)}:"

    async def corrupt_hash(sid: str) -> None:
        raw = Redis.from_url(server.url, decode_responses=True)
        try:
            key = f"{prefix}session:{sid}"
            fields = await raw.hgetall(key)
            assert fields
            await raw.hset(key, mapping={name: "junk{" for name in fields})
        finally:
            await raw.aclose()

    return Shared(lambda: RedisStore(server.url, prefix=prefix), corrupt_hash)


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelno, record.getMessage()))


@contextlib.contextmanager
def logged() -> Iterator[Lines]:
    logger = logging.getLogger("sessionlayer")
    lines, level = Lines(), logger.level
    logger.addHandler(lines)
    logger.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)


@pytest.mark.parametrize("back_on", ["b", "a"])
def test_a_session_whose_record_is_corrupt_ends_at_once_as_corrupt(
    shared: Shared, back_on: str
) -> None:
    """The client's connection to node a is lost; its record is overwritten with junk;
    the client comes back on node b (which resumes from the store) or on node a (whose
    live copy the store must confirm): refused as corrupt, and the client's session ends
    with ResumeRefused "corrupt" at its first try, long before it would give up (before:
    refused as store_unavailable, which the client tried again and again until
    give_up, ten seconds here, then ended as gave_up)."""

    async def main() -> None:
        with logged() as lines:
            async with nodes(shared.open) as n:
                a, node = n.servers["a"], n.servers[back_on]
                client = await sessionlayer.connect("127.0.0.1", n.balancer.port,
                                                    options=CLIENT)  # fmt: skip
                sid = client.id
                await client.sync(major=True, user_data=b"cp1")
                n.balancer.switch(free_port())  # (nowhere: the client's tries fail)
                await n.stores["a"].until(lambda: _detached_in_store(n.stores["a"].store, sid))
                await shared.corrupt(sid)
                n.balancer.switch(node.port)
                with pytest.raises(ResumeRefused) as info:
                    await asyncio.wait_for(client.receive(), LIMIT)
                assert info.value.code == "corrupt", info.value
                assert f"record {sid} is corrupt" in str(info.value)
                assert node.stats.resume_refused == {"corrupt": 1}
                assert sid not in ids(n.servers["b"].sessions)
                if back_on == "a":
                    assert sid in ids(a.detached)  # (left to expire: nothing resumes it)
                # The server's one line (a WARNING), naming the record; the client's own.
                said = [(level, line) for level, line in lines.lines
                        if f"{sid} is corrupt" in line]  # fmt: skip
                assert [level for level, _ in said] == [logging.WARNING, logging.INFO], said
                assert said[0][1].startswith("refusing session from"), said
                assert said[1][1].startswith(f"session {sid}: cannot be resumed"), said

    run(main())


async def _detached_in_store(store: SessionStore, sid: str) -> bool:
    record = await store.get(sid)
    return record is not None and record.detached

