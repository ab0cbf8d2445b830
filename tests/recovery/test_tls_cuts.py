"""Recovery inside TLS: a proxy resets the TCP connection under a TLS session after a
random number of octets (inside TLS records, inside the TLS handshake, inside the resume
handshake that follows it), both directions carrying data at once.  Every message reaches
the other application exactly once and in order.  The server listens only for TLS, so
every resume went through a new TLS handshake (the certificate checked each time)."""

from __future__ import annotations

import asyncio
import random

from tests.faults.proxy import FaultProxy
from tests.tools import tls_contexts

import sessionlayer

from .helpers import FAST, LIMIT, owned, run

N = 3000
CUTS = 40
SEED = int(__import__("os").environ.get("SL_TLS_SEED", "11"))


def workload(seed: int, tag: bytes) -> list[bytes]:
    rng = random.Random(seed)
    return [b"%s%d:" % (tag, i) + bytes(rng.choice((0, 10, 300, 5000))) for i in range(N)]


def test_tls_sessions_resume_exactly_once_across_cuts() -> None:
    up, down = workload(SEED, b"u"), workload(SEED + 1, b"d")
    server_ctx, client_ctx = tls_contexts()

    async def main() -> None:
        got_up: list[bytes] = []

        async def handler(session: sessionlayer.Session) -> None:
            async def sender() -> None:
                for m in down:
                    await session.send(m)

            task = asyncio.create_task(sender())
            try:
                async for data in session:
                    got_up.append(data)
                await task
            finally:
                task.cancel()

        async with await sessionlayer.serve(handler, tls=server_ctx, options=FAST) as server:
            async with FaultProxy("127.0.0.1", server.port, seed=SEED) as proxy:
                proxy.schedule(cut_after_bytes=(200, 40_000), modes=("reset", "close"),
                               max_cuts=CUTS)  # fmt: skip
                client = await sessionlayer.connect(
                    "127.0.0.1",
                    proxy.port,
                    tls=client_ctx,
                    server_hostname="localhost",
                    options=FAST,
                )
                got_down: list[bytes] = []
                async with owned(client), asyncio.timeout(LIMIT * 4):
                    assert client.resumable

                    async def reader() -> None:
                        while len(got_down) < N:
                            got_down.append(await client.receive())

                    reading = asyncio.create_task(reader())
                    for m in up:
                        await client.send(m)
                    await reading
                    await client.sync(major=True)  # everything up is confirmed
                    resumes = client.resumes
                    await client.release()
                assert proxy.cuts >= CUTS // 2, proxy.cuts
                assert resumes >= CUTS // 2, resumes
        assert got_up == up
        assert got_down == down

    run(main())
