"""A node's live copy of a session that another node sharing its store resumed since is
stale, and a token it still takes resumes nothing there (docs/recovery.md, "Several
nodes"): two real servers on one real store (a SQLite file, a real redis-server), a
switchable balancer in front, over TCP on loopback.

Node a holds the session detached (its client's connection lost); the client resumes on
node b, which advances the record.  Node a's copy still takes the token of its own
generation, until its lease renewal found out.  A resume presented to node a is confirmed
by the store first (the record advanced from the copy's generation, compare-and-set): it
has moved on, so the copy is dropped and the resume answered from the record, as on any
node that holds no copy:

- the client was heard on node b since: that token is ``token_replayed``;
- it was not (node b's accept was lost): the client resumes on node a from the record's
  checkpoint, and node b's copy gives way.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

from tests.redisserver import free_port, redis_server

import sessionlayer
from sessionlayer import Options
from sessionlayer.agent import Rejection
from sessionlayer.machine import events as ev
from sessionlayer.recovery import Resumed
from sessionlayer.stores import SessionStore

from .balancer import Balancer
from .helpers import next_of, raw_resume, raw_resumed, run, token_of
from .test_secret_and_leases import Watched, _closed
from .test_store_honesty import CLIENT, echo, resumed_from, roundtrip
from .test_token_before import open_store

__all__ = ["open_store", "redis_server"]  # (the fixtures)


class Nodes:
    """Nodes a and b on one store (each its own connection to it, watched), and a
    balancer sending new connections to node a."""

    def __init__(self) -> None:
        self.stores: dict[str, Watched] = {}
        self.servers: dict[str, sessionlayer.Server] = {}
        self.balancer: Balancer

    async def record(self, sid: str) -> tuple[int, str | None, int] | None:
        """(generation, node, oldest generation taken) of the session's record."""
        record = await self.stores["a"].store.get(sid)
        return None if record is None else (record.generation, record.node, record.oldest)


@contextlib.asynccontextmanager
async def nodes(open_store: Callable[[], SessionStore]) -> AsyncIterator[Nodes]:
    n = Nodes()
    opts = Options(resume_timeout=30.0)
    try:
        for name in "ab":
            n.stores[name] = store = Watched(open_store())
            n.servers[name] = await sessionlayer.serve(echo, options=opts, store=store,
                                                       node=name, lease=0.6)  # fmt: skip
        async with Balancer(n.servers["a"].port) as n.balancer:
            yield n
    finally:
        for name, server in n.servers.items():
            await _closed(server, n.stores[name])
        for store in n.stores.values():
            await store.store.close()


async def _true(value: bool) -> bool:
    return value


def ids(sessions: list[sessionlayer.SessionInfo]) -> list[str]:
    return [s.id for s in sessions]


def test_a_replayed_token_is_refused_on_the_node_of_a_stale_copy(
    open_store: Callable[[], SessionStore],
) -> None:
    """The client's session moved from node a to node b, which heard it there; node a
    still holds its copy detached.  The client's token from before (its copy's own
    generation) presented to node a is refused as token_replayed, and node a drops its
    copy; node b keeps the session (before: node a took the token from its copy, and two
    nodes held the session, each with a client)."""

    async def main() -> None:
        async with nodes(open_store) as n:
            a, b = n.servers["a"], n.servers["b"]
            client = await sessionlayer.connect("127.0.0.1", n.balancer.port, options=CLIENT)
            sid = client.id
            await client.sync(major=True, user_data=b"cp1")
            t0 = token_of(client)
            n.balancer.switch(b.port)
            await resumed_from(client, b"cp1")  # (and heard there: a round trip)
            await n.stores["b"].until(
                lambda: _oldest_is(n, sid, (1, "b", 1)))  # (node b heard the client)
            await n.stores["a"].until(lambda: _true(sid in ids(a.detached)))
            event, rejection = await raw_resume(a.port, t0)
            assert isinstance(event, ev.RefuseConfirm), (event, rejection)
            assert isinstance(rejection, Rejection)
            assert rejection.code == "resume:token_replayed", rejection
            assert sid not in ids(a.sessions)  # (its stale copy: dropped)
            assert a.stats.resume_refused == {"token_replayed": 1}
            assert await n.record(sid) == (1, "b", 1)
            await roundtrip(client, b"still on b")
            assert sid in ids(b.sessions)
            await client.release()

    run(main())


async def _oldest_is(n: Nodes, sid: str, expected: tuple[int, str, int]) -> bool:
    return await n.record(sid) == expected


def test_a_client_back_on_the_node_of_a_stale_copy_with_its_token_resumes_from_the_store(
    open_store: Callable[[], SessionStore],
) -> None:
    """Node b resumed the session with the client's token, and its accept was lost (a raw
    connection that reads nothing): the client still has that token, which node a's
    copy takes too.  Sent back to node a, the client resumes from the record's checkpoint
    (the store's answer: the token is still taken there), node a holds the record, and
    node b's copy gives way at its next renewal (before: node a resumed it from its stale
    copy, as if nothing had happened, while node b held it too)."""

    async def main() -> None:
        async with nodes(open_store) as n:
            a, b = n.servers["a"], n.servers["b"]
            client = await sessionlayer.connect("127.0.0.1", n.balancer.port, options=CLIENT)
            sid = client.id
            await client.sync(major=True, user_data=b"cp1")
            n.balancer.switch(free_port())  # (nowhere: the client's tries fail meanwhile)
            await n.stores["a"].until(lambda: _true(sid in ids(a.detached)))
            async with raw_resumed(b.port, token_of(client)) as (event, welcome):
                assert isinstance(event, ev.ConnectConfirm), (event, welcome)
                assert await n.record(sid) == (1, "b", 0)
                assert sid in ids(a.detached)  # (node a's copy: stale now)
                n.balancer.switch(a.port)
                resumed = await next_of(client, Resumed)
                assert resumed.outcome == "checkpoint", resumed
                assert resumed.checkpoint is not None
                assert resumed.checkpoint.user_data == b"cp1"
                record = await n.record(sid)
                assert record is not None and record[:2] == (2, "a")
                await n.stores["b"].until(lambda: _true(sid not in ids(b.sessions)))
            told = await roundtrip(client, b"on a")
            assert [exc.user_data for exc in told][:1] == [b"cp1"]
            assert a.stats.resumed == {"checkpoint": 1}
            await client.release()

    run(main())
