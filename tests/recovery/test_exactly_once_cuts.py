"""Confirmed requests and expedited data exactly once under a fault-injecting proxy
(tests/faults/proxy.py): the client sends data, expedited data and a checkpoint or a
minor sync point, over and over, while the proxy resets every connection after a random
number of octets (in a request, in its answer, in the resume handshake, anywhere).  The
server's application is told of each sync point once, in order, with its user data, and
of each expedited message once, in order; every request of the client returns."""

from __future__ import annotations

import asyncio
import dataclasses

from tests.faults.proxy import FaultProxy

import sessionlayer
from sessionlayer.machine import events as ev

from .helpers import FAST, LIMIT, owned, run

N = 600
CUTS = 40
SEED = int(__import__("os").environ.get("SL_ONCE_SEED", "3"))
OPTIONS = dataclasses.replace(FAST, ack_interval=0.02, keepalive_interval=None,
                              idle_timeout=None)  # fmt: skip


def test_sync_points_and_expedited_data_exactly_once_across_cuts() -> None:
    async def main() -> None:
        told: list[bytes | None] = []
        durable: list[bytes | None] = []
        expedited: list[bytes] = []
        data: list[bytes] = []

        async def handler(session: sessionlayer.Session) -> None:
            session.on_checkpoint = lambda checkpoint: durable.append(checkpoint.user_data)

            async def watch() -> None:
                async for event in session.events():
                    if isinstance(event, ev.MajorSyncIndication | ev.MinorSyncIndication):
                        told.append(event.user_data)
                    elif isinstance(event, ev.ExpeditedDataIndication):
                        expedited.append(event.data)

            watcher = asyncio.create_task(watch())
            try:
                async for message in session:
                    data.append(message)
            finally:
                watcher.cancel()

        async with await sessionlayer.serve(handler, options=OPTIONS) as server:
            async with FaultProxy("127.0.0.1", server.port, seed=SEED) as proxy:
                proxy.schedule(cut_after_bytes=(100, 4000), modes=("reset",), max_cuts=CUTS)
                client = await sessionlayer.connect("127.0.0.1", proxy.port, options=OPTIONS)
                points: list[bytes] = []
                async with owned(client), asyncio.timeout(LIMIT * 3):
                    for i in range(N):
                        await client.send(b"d%d" % i)
                        await client.send_expedited(b"x%d" % i)
                        point = b"%s%d" % (b"M" if i % 3 else b"m", i)
                        points.append(point)
                        await client.sync(major=i % 3 != 0, user_data=point)
                    await client.sync(major=True, user_data=b"end")
                    assert client.resumes >= CUTS // 2, client.resumes
                    await client.release()
                assert proxy.cuts >= CUTS // 2
        assert told == [*points, b"end"]
        assert durable == [p for p in points if p.startswith(b"M")] + [b"end"]
        assert expedited == [b"x%d" % i for i in range(N)]
        assert data == [b"d%d" % i for i in range(N)]

    run(main())
