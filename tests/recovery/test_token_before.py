"""The token before the current one, across nodes (docs/recovery.md, "Tokens"): it is
accepted only until the client is heard on the connection it resumed, whichever node it is
presented to.  Three server nodes share one store (a SQLite file, a real redis-server),
each with a store object of its own, over real TCP on loopback.

A client opens a session on node a (token T0); a stops, and the client resumes on b from
the store (T1).  Once b heard it there, T0 is refused as ``token_replayed`` on b and on c
alike: whoever saw T0 cannot take the session over through another node.  Before b heard
it (b's accept, carrying T1, may have been lost), T0 still resumes, on b and on c."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest
from tests.redisserver import RedisServer, redis_server

import sessionlayer
from sessionlayer.agent import Rejection, Welcome
from sessionlayer.machine import events as ev
from sessionlayer.recovery import Resumed
from sessionlayer.stores import RedisStore, SessionRecord, SessionStore, SQLiteStore

from .helpers import FAST, next_of, raw_resume, raw_resumed, run, token_of
from .test_secret_and_leases import AWAY, Watched, echo

__all__ = ["redis_server"]  # (the fixture, for the Redis case)


@pytest.fixture(params=["sqlite", "redis"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], SessionStore]:
    """Opens a store on the same data each time (a SQLite file, a Redis and prefix)."""
    if request.param == "sqlite":
        path = tmp_path / "sessions.db"
        return lambda: SQLiteStore(path)
    server: RedisServer = request.getfixturevalue("redis_server")
    prefix = f"before-{secrets.token_hex(4)}:"
    return lambda: RedisStore(server.url, prefix=prefix)


@asynccontextmanager
async def nodes(open_store: Callable[[], SessionStore],
                ) -> AsyncIterator[tuple[list[sessionlayer.Server], list[Watched]]]:  # fmt: skip
    """Servers a, b and c, each with its own store on the same data."""
    async with AsyncExitStack() as stack:
        stores = [Watched(open_store()) for _ in "abc"]
        for store in stores:
            stack.push_async_callback(store.store.close)
        servers = []
        for name, store in zip("abc", stores, strict=True):
            server = await sessionlayer.serve(echo, store=store, node=name)
            stack.push_async_callback(server.wait_closed)
            stack.callback(server.close)
            servers.append(server)
        yield servers, stores


def _code(answer: tuple[ev.Event, Rejection | Welcome | None]) -> str:
    event, rejection = answer
    assert isinstance(event, ev.RefuseConfirm), answer
    assert isinstance(rejection, Rejection) and rejection.code.startswith("resume:")
    return rejection.code.removeprefix("resume:")


def _resumed(answer: tuple[ev.Event, Rejection | Welcome | None]) -> str:
    event, welcome = answer
    assert isinstance(event, ev.ConnectConfirm), answer
    assert isinstance(welcome, Welcome) and welcome.resumed is not None
    return welcome.resumed


async def _record(store: Watched, sid: str) -> SessionRecord:
    record = await store.get(sid)
    assert record is not None
    return record


async def _opened_on_a(
    servers: list[sessionlayer.Server], stores: list[Watched], options: sessionlayer.Options
) -> tuple[sessionlayer.Session, str]:
    """A session opened on a (the client may go on to b), a stopped: (it, its token T0)."""
    a, b, _ = servers
    client = await sessionlayer.connect(
        "127.0.0.1", a.port, options=options,
        addresses=[("127.0.0.1", a.port), ("127.0.0.1", b.port)],
    )  # fmt: skip
    await client.send(b"one")
    assert await client.receive() == b"one"

    async def written() -> bool:
        return await stores[0].get(client.id) is not None

    await stores[0].until(written)
    token = token_of(client)
    a.close(detach=True)  # (the session stays in the store)
    await a.wait_closed()
    return client, token


def test_the_token_before_is_refused_on_every_node_once_the_client_was_heard(
    open_store: Callable[[], SessionStore],
) -> None:
    async def main() -> None:
        async with nodes(open_store) as (servers, stores):
            _, b, c = servers
            client, t0 = await _opened_on_a(servers, stores, FAST)
            sid = client.id
            resumed = await next_of(client, Resumed)  # on b, from the store
            assert resumed.outcome == "checkpoint"
            t1 = token_of(client)
            assert t1 != t0 and (await _record(stores[1], sid)).node == "b"
            with pytest.raises(sessionlayer.CheckpointRestored):
                await client.send(b"two")
            await client.send(b"two")  # b hears the client on the connection it resumed
            with pytest.raises(sessionlayer.CheckpointRestored):
                await client.receive()
            assert await client.receive() == b"two"

            async def cleared() -> bool:
                record = await stores[1].get(sid)
                return record is not None and not record.previous_ok

            await stores[1].until(cleared)  # (b's write, in the background)
            # T0 now: refused on b (its live copy) and on c (from the store) alike.
            assert _code(await raw_resume(b.port, t0)) == "token_replayed"
            assert _code(await raw_resume(c.port, t0)) == "token_replayed"
            assert c.stats.resume_refused == {"token_replayed": 1}
            record = await _record(stores[2], sid)
            assert (record.node, record.generation) == ("b", 1)
            # The session goes on where it is, untouched.
            await client.send(b"three")
            assert await client.receive() == b"three"
            assert token_of(client) == t1
            await client.release()

    run(main())


def test_the_token_before_still_resumes_on_any_node_while_the_client_was_not_heard(
    open_store: Callable[[], SessionStore],
) -> None:
    """b resumed the session from the store, but its accept (with T1) never reached the
    client, which tries T0 again: b's own copy takes it (confirmed by the store: the
    record advances to generation 2, T0 still taken), and so does c once b lost it."""

    async def main() -> None:
        async with nodes(open_store) as (servers, stores):
            _, b, c = servers
            client, t0 = await _opened_on_a(servers, stores, AWAY)  # (it stays away)
            sid = client.id
            async with raw_resumed(b.port, t0) as answer:  # its accept is never read
                assert _resumed(answer) == "checkpoint"
                record = await _record(stores[1], sid)
                assert (record.node, record.generation, record.previous_ok) == ("b", 1, True)
                # T0 again, to b: its live copy (resumed from the store) takes it too.
                assert _resumed(await raw_resume(b.port, t0)) == "resumed"

            async def detached() -> bool:  # (that connection is gone too, unheard)
                record = await stores[1].get(sid)
                return record is not None and record.detached

            await stores[1].until(detached)
            record = await _record(stores[1], sid)
            assert (record.node, record.generation, record.oldest) == ("b", 2, 0)
            # ... and c, from the store.
            assert _resumed(await raw_resume(c.port, t0)) == "checkpoint"
            record = await _record(stores[2], sid)
            assert (record.node, record.generation) == ("c", 3)
            client.abort()

    run(main())
