"""A record whose deadline is far off (an Options.resume_timeout of 1e300 s is finite, so
allowed) gets a Redis TTL Redis takes: its end is capped at TTL_END_MAX.  Before, the TTL
end was the exact product, out of PEXPIREAT's range: every write of the record failed with
StoreUnavailable.  And the store's own ``grace`` and a record's ``expires_at`` are finite."""

from __future__ import annotations

import math
import time

import pytest
from redis.asyncio import Redis
from tests.redisserver import RedisServer
from tests.stores.helpers import make_record, run

from sessionlayer.stores import RedisStore
from sessionlayer.stores.redis import TTL_END_MAX


def test_a_far_deadline_gets_the_latest_ttl_redis_takes(redis_server: RedisServer) -> None:
    async def main() -> None:
        raw = Redis.from_url(redis_server.url, decode_responses=True)
        store = RedisStore(redis_server.url, prefix="far:")
        try:
            far = time.time() + 1e300
            record = make_record(expires_at=far, node="node-a")
            await store.put(record)  # (a plain write)
            key = f"far:session:{record.id}"
            assert await raw.pexpiretime(key) == TTL_END_MAX
            got = await store.get(record.id)
            assert got is not None and got.expires_at == far
            assert await store.renew("node-a", [record.id], far * 10) == [record.id]
            assert await raw.pexpiretime(key) == TTL_END_MAX
            assert await store.update(record.id, expires_at=1e308, detached=True)  # (a script)
            assert await raw.pexpiretime(key) == TTL_END_MAX
            other = make_record(expires_at=far)
            assert await store.put_unless_taken(other) is None
            assert await raw.pexpiretime(f"far:session:{other.id}") == TTL_END_MAX
            assert await store.expire(time.time()) == []
        finally:
            await store.close()
            await raw.aclose()

    run(main())


@pytest.mark.parametrize("grace", [math.inf, math.nan, -1.0, True, "60"])
def test_a_grace_that_is_not_finite_is_refused(grace: object) -> None:
    with pytest.raises(ValueError, match="grace must be a finite number"):
        RedisStore("redis://127.0.0.1:1/0", grace=grace)  # type: ignore[arg-type]


@pytest.mark.parametrize("expires_at", [math.inf, -math.inf, math.nan, "soon"])
def test_a_record_expires_at_a_finite_time(expires_at: object) -> None:
    with pytest.raises(ValueError, match="expires_at is a finite time"):
        make_record(expires_at=expires_at)
