"""RedisStore on its own, against real redis-server processes: the keys it writes, Redis's
own TTL, and a Redis that is down, killed or frozen (StoreUnavailable, never a hang)."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

import pytest
from redis.asyncio import Redis
from tests.redisserver import RedisServer, free_port, running_redis
from tests.stores.helpers import make_record, new_id, run

from sessionlayer.stores import RedisStore, SessionStore, StoreUnavailable

Call = Callable[[SessionStore], Awaitable[object]]
CALLS: dict[str, Call] = {
    "put": lambda s: s.put(make_record()),
    "get": lambda s: s.get(new_id()),
    "secret": lambda s: s.secret(),
    "advance": lambda s: s.advance(new_id(), 0, node="x", expires_at=None),
    "update": lambda s: s.update(new_id(), node="x"),
    "delete": lambda s: s.delete(new_id()),
    "list": lambda s: s.list(),
    "expire": lambda s: s.expire(time.time()),
    "renew": lambda s: s.renew("x", [new_id()], time.time()),
    "conditional delete": lambda s: s.delete(new_id(), if_generation=0, if_node="x"),
    "put_unless_taken": lambda s: s.put_unless_taken(make_record()),
}


async def _unavailable(store: SessionStore, call: Call, within: float) -> StoreUnavailable:
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as raised:
        await call(store)
    assert time.monotonic() - started < within
    return raised.value


def test_a_lease_gives_an_attached_record_a_score_and_a_ttl(redis_server: RedisServer) -> None:
    """An attached record under its node's lease is in the deadline set and has a Redis
    TTL, renewed with the lease: a node that dies leaves nothing for good."""

    async def main() -> None:
        raw = Redis.from_url(redis_server.url, decode_responses=True)
        store = RedisStore(redis_server.url, prefix="lease:", grace=30.0)
        try:
            lease_end = time.time() + 20.25
            record = make_record(expires_at=lease_end, node="node-a")
            await store.put(record)
            key = f"lease:session:{record.id}"
            assert await raw.pexpiretime(key) == int((lease_end + 30.0) * 1000)
            renewed = lease_end + 7.5
            assert await store.renew("node-a", [record.id], renewed) == [record.id]
            assert await raw.zscore("lease:detached", record.id) == renewed
            assert await raw.pexpiretime(key) == int((renewed + 30.0) * 1000)
            assert json.loads(await raw.hget(key, "expires_at")) == renewed
            assert await store.renew("node-b", [record.id], renewed + 100) == []
            assert await raw.pexpiretime(key) == int((renewed + 30.0) * 1000)
            # Conditional delete: not node b's; node a's at generation 0.
            assert not await store.delete(record.id, if_node="node-b")
            assert await store.delete(record.id, if_generation=0, if_node="node-a")
            assert await raw.exists(key) == 0
            assert await raw.zscore("lease:detached", record.id) is None
        finally:
            await store.close()
            await raw.aclose()

    run(main())


def test_keys_scores_and_ttl(redis_server: RedisServer) -> None:
    async def main() -> None:
        raw = Redis.from_url(redis_server.url, decode_responses=True)
        store = RedisStore(redis_server.url, prefix="layout:", grace=30.0)
        try:
            record = make_record()
            await store.put(record)
            key = f"layout:session:{record.id}"
            fields = await raw.hgetall(key)
            assert {k: json.loads(v) for k, v in fields.items()}["identity"] == record.identity
            assert await raw.zscore("layout:detached", record.id) == record.expires_at
            ttl_end = int((record.expires_at + 30.0) * 1000)
            assert await raw.pexpiretime(key) == ttl_end

            await store.update(record.id, expires_at=None)  # attached: no TTL, not listed
            assert await raw.pttl(key) == -1
            assert await raw.zscore("layout:detached", record.id) is None

            deadline = time.time() + 5.5
            await store.advance(record.id, 0, node=None, expires_at=deadline)
            assert await raw.zscore("layout:detached", record.id) == deadline
            assert await raw.pexpiretime(key) == int((deadline + 30.0) * 1000)

            assert len(await store.secret()) == 32
            assert len(bytes.fromhex(await raw.get("layout:secret"))) == 32
            assert await store.delete(record.id)
            assert await raw.exists(key, "layout:detached") == 0
        finally:
            await store.close()
            await raw.aclose()

    run(main())


def test_put_unless_taken_writes_the_keys_put_writes(redis_server: RedisServer) -> None:
    """The hash whole (no field of the record before stays), the deadline's score and the
    TTL: the same as put leaves, from a detached record to an attached one and back."""

    async def main() -> None:
        raw = Redis.from_url(redis_server.url, decode_responses=True)
        store = RedisStore(redis_server.url, prefix="cas:", grace=30.0)
        try:
            detached = make_record(detached=True, node="node-a")
            attached = replace(detached, expires_at=None, detached=False, checkpoint=None)
            leased = replace(attached, expires_at=time.time() + 9.5)
            key = f"cas:session:{detached.id}"

            async def layout() -> tuple[object, ...]:
                return (await raw.hgetall(key), await raw.zscore("cas:detached", detached.id),
                        await raw.pexpiretime(key))  # fmt: skip

            for before, after in [(detached, attached), (attached, detached),
                                  (detached, leased), (leased, attached)]:  # fmt: skip
                await store.put(before)
                await store.put(after)
                by_put = await layout()
                await store.put(before)
                assert await store.put_unless_taken(after) is None
                assert await layout() == by_put
                assert await store.get(detached.id) == after
            fields, score, ttl_end = await layout()  # (attached: no score, no TTL)
            assert "detached" not in fields and score is None and ttl_end == -1
        finally:
            await store.close()
            await raw.aclose()

    run(main())


def test_redis_drops_a_detached_session_past_its_deadline_on_its_own(
    redis_server: RedisServer,
) -> None:
    """With no grace, a deadline already past means the TTL's end is past too: Redis drops
    the hash at once; expire() still clears the sorted set and reports the id."""

    async def main() -> None:
        store = RedisStore(redis_server.url, prefix=f"ttl-{new_id()}:", grace=0.0)
        try:
            record = make_record(expires_at=time.time() - 1)
            await store.put(record)
            assert await store.get(record.id) is None
            assert await store.list() == []
            assert await store.expire(time.time()) == [record.id]
            assert await store.expire(time.time()) == []
        finally:
            await store.close()

    run(main())


def test_prefixes_keep_stores_apart(redis_server: RedisServer) -> None:
    async def main() -> None:
        glob = RedisStore(redis_server.url, prefix=f"t[{new_id()[:4]}]*?:")
        plain = RedisStore(redis_server.url, prefix=f"t-{new_id()[:4]}:")
        try:
            one, two = make_record(), make_record()
            await glob.put(one)
            await plain.put(two)
            assert await glob.list() == [one]
            assert await plain.list() == [two]
            assert await glob.get(two.id) is None
            assert await plain.expire(time.time() + 1000) == [two.id]
            assert await glob.get(one.id) == one
            assert await glob.secret() != await plain.secret()
        finally:
            await glob.close()
            await plain.close()

    run(main())


def test_a_corrupt_record_raises_store_unavailable(redis_server: RedisServer) -> None:
    async def main() -> None:
        prefix = f"bad-{new_id()[:8]}:"
        raw = Redis.from_url(redis_server.url, decode_responses=True)
        store = RedisStore(redis_server.url, prefix=prefix)
        try:
            record = make_record()
            await store.put(record)
            await raw.hset(f"{prefix}session:{record.id}", "generation", "not json")
            with pytest.raises(StoreUnavailable, match="corrupt") as raised:
                await store.get(record.id)
            assert raised.value.corrupt == record.id  # (it will not heal: a final refusal)
            # Nested too deep (before: RecursionError, not StoreUnavailable); list() skips
            # it, and lists the others (before: it raised for them all).
            await raw.hset(f"{prefix}session:{record.id}", "chosen", "[" * 100_000)
            with pytest.raises(StoreUnavailable, match="corrupt"):
                await store.get(record.id)
            good = make_record()
            await store.put(good)
            assert await store.list() == [good]
            await raw.set(f"{prefix}secret", "short")
            with pytest.raises(StoreUnavailable, match="32 octets"):
                await store.secret()
        finally:
            await store.close()
            await raw.aclose()

    run(main())


def test_the_name_never_shows_a_password() -> None:
    store = RedisStore("redis://:hunter2@127.0.0.1:6390/3")
    assert store.name == "redis://127.0.0.1:6390/3"
    assert RedisStore("rediss://user:pw@example.org").name == "rediss://example.org:6379/0"
    assert RedisStore("unix://:pw@/run/redis.sock?db=2").name == "unix:///run/redis.sock?db=2"


@pytest.mark.parametrize("name", sorted(CALLS))
def test_nothing_listening_raises_store_unavailable_quickly(name: str) -> None:
    async def main() -> None:
        store = RedisStore(f"redis://127.0.0.1:{free_port()}/0")  # the default 2 s timeout
        try:
            error = await _unavailable(store, CALLS[name], within=3.0)
            assert error.store == store.name and "ConnectionError" in error.why
        finally:
            await store.close()

    run(main())


def test_a_redis_killed_mid_test_raises_store_unavailable() -> None:
    async def main(server: RedisServer) -> None:
        store = RedisStore(server.url)
        try:
            record = make_record()
            await store.put(record)
            assert await store.get(record.id) == record
            server.kill()
            for call in CALLS.values():  # the pooled connection is dead, then refused
                await _unavailable(store, call, within=3.0)
        finally:
            await store.close()

    with running_redis() as server:
        run(main(server))


def test_a_frozen_redis_times_out_then_recovers() -> None:
    """SIGSTOP: connections still open (the kernel's backlog), nothing answers: every call
    gives up after the timeout; after SIGCONT the store works again."""

    async def main(server: RedisServer) -> None:
        store = RedisStore(server.url, timeout=0.5)
        try:
            record = make_record()
            await store.put(record)
            server.pause()
            try:
                for name in ("get", "put", "advance"):
                    error = await _unavailable(store, CALLS[name], within=2.0)
                    assert "Timeout" in error.why
            finally:
                server.resume()
            assert await store.get(record.id) == record
        finally:
            await store.close()

    with running_redis() as server:
        run(main(server))


def test_a_key_that_holds_no_hash_is_a_corrupt_record(redis_server: RedisServer) -> None:
    """A session's key overwritten with a string: its record is corrupt (a final refusal,
    ``corrupt`` set) for every call about it, and list() and renew() pass over it (before:
    WRONGTYPE was 'unavailable', which a client retries until it gives up, and it failed a
    whole listing and a node's whole renewal)."""

    async def main() -> None:
        prefix = f"type-{new_id()[:8]}:"
        raw = Redis.from_url(redis_server.url, decode_responses=True)
        store = RedisStore(redis_server.url, prefix=prefix)
        try:
            good = make_record(node="a", expires_at=time.time() + 60)
            bad = make_record(node="a", expires_at=time.time() + 60)
            await store.put(good)
            await store.put(bad)
            await raw.set(f"{prefix}session:{bad.id}", "junk")
            calls: dict[str, Call] = {
                "get": lambda s: s.get(bad.id),
                "advance": lambda s: s.advance(bad.id, bad.generation, node="b",
                                               expires_at=None),
                "update": lambda s: s.update(bad.id, node="b"),
                "conditional delete": lambda s: s.delete(bad.id, if_generation=0, if_node="a"),
                "put_unless_taken": lambda s: s.put_unless_taken(replace(bad, node="b")),
            }
            for name, call in calls.items():
                with pytest.raises(StoreUnavailable, match="corrupt") as raised:
                    await call(store)
                assert raised.value.corrupt == bad.id, name
            assert [r.id for r in await store.list()] == [good.id]
            later = time.time() + 120
            assert await store.renew("a", [good.id, bad.id], later) == [good.id]
            assert await store.delete(bad.id)  # (a plain delete clears it)
        finally:
            await store.close()
            await raw.aclose()

    run(main())
