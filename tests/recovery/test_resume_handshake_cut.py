"""A resume try whose connection is cut during its handshake (after COTP CC, before the
AC) fails at once and the next try follows: it does not wait out the connect and
handshake timeouts (which, longer than ``give_up``, would end the session)."""

from __future__ import annotations

import asyncio

from tests.faults.proxy import FaultProxy

import sessionlayer
from sessionlayer import Options
from sessionlayer.recovery import Backoff

from .helpers import LIMIT, run

# Each try may take 20 s by its timeouts; the session gives up after 5 s.
OPTIONS = Options(backoff=Backoff(first=0, cap=0.05, give_up=5.0), connect_timeout=10.0,
                  handshake_timeout=10.0)  # fmt: skip


def test_a_resume_cut_in_its_handshake_is_retried_at_once() -> None:
    async def main() -> None:
        async def handler(session: sessionlayer.Session) -> None:
            async for data in session:
                await session.send(data)

        async with await sessionlayer.serve(handler, options=OPTIONS) as server:
            async with FaultProxy("127.0.0.1", server.port, seed=3) as proxy:
                client = await sessionlayer.connect("127.0.0.1", proxy.port, options=OPTIONS)
                # Cuts after 40 to 300 octets: inside the CR/CC + CN/AC of the resumes.
                proxy.schedule(cut_after_bytes=(40, 300), modes=("close", "reset"),
                               max_cuts=12)  # fmt: skip
                proxy.cut("reset")
                async with asyncio.timeout(LIMIT):
                    for i in range(100):
                        await client.send(b"%d" % i)
                        assert await client.receive() == b"%d" % i
                await proxy.wait_cuts(10)
                assert client.resumes >= 1
                await client.release()

    run(main())
