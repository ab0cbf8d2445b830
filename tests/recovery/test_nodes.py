"""Several nodes: two server processes share one Redis behind a real TCP load balancer
(Debian's haproxy).  The node holding a session is killed with SIGKILL mid-stream; the
client reconnects through the balancer, lands on the other node, and the session resumes
from its last checkpoint (case 2: the journal of unconfirmed messages lives in the dead
node's memory, see docs/recovery.md), checked message by message."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from tests.faults.haproxy import Haproxy
from tests.redisserver import running_redis

import sessionlayer
from sessionlayer import Options
from sessionlayer.recovery import Backoff
from sessionlayer.stores import RedisStore

from .helpers import LIMIT, run
from .test_restart import N, message, start_server, stop, stream


def test_the_node_holding_a_session_dies_and_another_resumes_it(tmp_path: Path) -> None:
    with running_redis() as redis:
        store_url = redis.url

        async def main() -> None:
            a, port_a = await start_server(store_url, tmp_path, node="node-a")
            b, port_b = await start_server(store_url, tmp_path, node="node-b")
            procs = {"node-a": a, "node-b": b}
            try:
                with Haproxy([("127.0.0.1", port_a), ("127.0.0.1", port_b)]) as balancer:
                    opts = Options(backoff=Backoff(first=0.05, cap=0.3, give_up=30))
                    session = await sessionlayer.connect("127.0.0.1", balancer.port,
                                                         options=opts)  # fmt: skip
                    store = RedisStore(store_url)
                    killed: list[str] = []

                    async def kill() -> None:
                        record = await store.get(session.id)
                        assert record is not None and record.node in procs
                        killed.append(record.node)
                        os.kill(procs[record.node].pid, signal.SIGKILL)

                    async with asyncio.timeout(LIMIT * 3):
                        count, restored = await stream(session, N // 3 + 11, kill)
                    assert count == N and len(restored) == 1
                    record = await store.get(session.id)
                    assert record is not None
                    assert record.node != killed[0]  # now held by the survivor
                    ledger = (tmp_path / f"{session.id}.ledger").read_bytes().split(b"\n")
                    assert ledger[:-1] == [message(i) for i in range(N)]
                    await session.release()
                    await store.close()
            finally:
                for proc in procs.values():
                    await stop(proc)

        run(main())
