"""Two things every store does since the review of its secret and its leases:

- ``renew`` leaves a detached record alone, so that a renewal that was on its way when a
  session detached never extends the deadline its detach wrote (memory, SQLite, Redis);
- ``refresh_secret`` asserts the secret again: a Redis that lost its data while nodes run
  gets their secret back, and nodes that made two meanwhile converge on the one made
  first, the other kept as the one before (real redis-server processes, flushed).
"""

from __future__ import annotations

import time
from dataclasses import replace

from redis.asyncio import Redis
from tests.redisserver import RedisServer, flush, running_redis
from tests.stores.helpers import Backend, make_record, new_id, run

from sessionlayer.stores import RedisStore
from sessionlayer.stores.records import decode, encode


def test_renew_leaves_a_detached_record_alone_and_a_resume_attaches_it(backend: Backend) -> None:
    async def main() -> None:
        store = backend.open()
        try:
            now = time.time()
            record = make_record(node="node-a", expires_at=now + 60)
            assert not record.detached
            await store.put(record)
            deadline = now + 30
            assert await store.update(record.id, expires_at=deadline, detached=True,
                                      if_generation=0, if_node="node-a")  # fmt: skip
            assert await store.renew("node-a", [record.id], now + 90) == []
            got = await store.get(record.id)
            assert got is not None and got.detached and got.expires_at == deadline
            # Expiry still sees the deadline.
            assert await store.expire(deadline - 1) == []
            # A resume attaches it again: renewable from then on.
            new = await store.advance(record.id, 0, node="node-a", expires_at=now + 60)
            assert new is not None and not new.detached
            assert await store.renew("node-a", [record.id], now + 90) == [record.id]
            got = await store.get(record.id)
            assert got is not None and not got.detached and got.expires_at == now + 90
            # put() and update() keep the field as given; a detached record round-trips.
            await store.put(replace(got, detached=True))
            assert await store.get(record.id) == replace(got, detached=True)
            assert await store.update(record.id, detached=False)
            assert await store.renew("node-a", [record.id], now + 99) == [record.id]
        finally:
            await store.close()

    run(main())


def test_a_detached_record_says_so_and_an_attached_one_is_encoded_as_before() -> None:
    attached = make_record()
    assert "detached" not in encode(attached)  # (what versions before wrote and read)
    detached = replace(attached, detached=True)
    assert '"detached":true' in encode(detached)
    assert decode(encode(detached)) == detached


def test_memory_and_sqlite_secrets_do_not_change(backend: Backend) -> None:
    async def main() -> None:
        store = backend.open()
        try:
            secret = await store.secret()
            assert await store.refresh_secret() == (secret,)
            assert await store.secret() == secret
        finally:
            await store.close()

    if backend.kind != "redis":
        run(main())


async def _raw(server: RedisServer, prefix: str) -> tuple[str | None, str | None, str | None]:
    raw = Redis.from_url(server.url, decode_responses=True)
    try:
        key = f"{prefix}secret"
        got = await raw.mget(key, f"{key}:born", f"{key}:previous")
        return got[0], got[1], got[2]
    finally:
        await raw.aclose()


def test_a_redis_that_lost_its_data_gets_the_running_nodes_secret_back() -> None:
    with running_redis() as server:

        async def main() -> None:
            prefix = f"flush-{new_id()[:8]}:"
            node_a = RedisStore(server.url, prefix=prefix)
            node_b = RedisStore(server.url, prefix=prefix)
            try:
                first = await node_a.secret()
                assert await node_b.secret() == first
                await flush(server)
                # No node started meanwhile: the next renewal puts it back, as it was.
                assert await node_b.refresh_secret() == (first,)
                assert (await _raw(server, prefix))[0] == first.hex()
                assert await node_a.refresh_secret() == (first,)
                assert await node_a.secret() == first
            finally:
                await node_a.close()
                await node_b.close()

        run(main())


def test_nodes_that_made_two_secrets_converge_on_the_first_and_keep_the_other() -> None:
    with running_redis() as server:

        async def main() -> None:
            prefix = f"flush-{new_id()[:8]}:"
            old_a = RedisStore(server.url, prefix=prefix)
            old_b = RedisStore(server.url, prefix=prefix)
            stores = [old_a, old_b]
            try:
                first = await old_a.secret()
                assert await old_b.secret() == first
                await flush(server)
                # A node started now finds no secret and makes one of its own.
                new = RedisStore(server.url, prefix=prefix)
                stores.append(new)
                second = await new.secret()
                assert second != first
                assert (await _raw(server, prefix))[0] == second.hex()
                # The running nodes' secret was made first: it wins, the new one stays
                # good as the one before, for every node (old_b never saw it itself).
                assert await old_a.refresh_secret() == (first, second)
                assert (await _raw(server, prefix))[0] == first.hex()
                assert (await _raw(server, prefix))[2] == second.hex()
                assert await old_b.refresh_secret() == (first, second)
                assert await new.refresh_secret() == (first, second)
                assert await new.secret() == first
                # A node started after that takes both.
                later = RedisStore(server.url, prefix=prefix)
                stores.append(later)
                assert await later.secret() == first
                assert await later.refresh_secret() == (first, second)
                # Lost again: the next node to renew puts both back.
                await flush(server)
                assert await new.refresh_secret() == (first, second)
                value, _, before = await _raw(server, prefix)
                assert (value, before) == (first.hex(), second.hex())
            finally:
                for store in stores:
                    await store.close()

        run(main())


def test_a_secret_an_older_version_made_counts_as_made_first(redis_server: RedisServer) -> None:
    """An older version writes the secret alone (SET NX), with no birth time: it is taken
    as it is, and wins over a secret made later."""

    async def main() -> None:
        prefix = f"old-{new_id()[:8]}:"
        raw = Redis.from_url(redis_server.url, decode_responses=True)
        store = RedisStore(redis_server.url, prefix=prefix)
        other = RedisStore(redis_server.url, prefix=f"other-{new_id()[:8]}:")
        try:
            theirs = bytes(range(32))
            await raw.set(f"{prefix}secret", theirs.hex())
            assert await store.secret() == theirs
            assert await store.refresh_secret() == (theirs,)
            # A node that made its own meanwhile (here: under another prefix, then pointed
            # at this one): the older version's stays, its own is the one before.
            mine = await other.secret()
            other.prefix = prefix
            assert await other.refresh_secret() == (theirs, mine)
            assert await raw.get(f"{prefix}secret") == theirs.hex()
        finally:
            await store.close()
            await other.close()
            await raw.aclose()

    run(main())
