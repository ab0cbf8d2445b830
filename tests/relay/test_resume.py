"""Recovery through the relay (docs/recovery.md case 1, docs/relay.md): a resumable session
between two sessionlayer peers whose connection to the relay, or the relay's to the
server, is lost resumes through the relay: every message once and in order, both ways."""

from __future__ import annotations

import asyncio

import pytest
from tests.recovery.helpers import FAST, cut, messages
from tests.relay.helpers import run

import sessionlayer
from sessionlayer.recovery import Resumed
from sessionlayer.relay import start


@pytest.mark.parametrize("where", ["client leg", "upstream leg"])
def test_a_lost_leg_resumes_through_the_relay_exactly_once(where: str) -> None:
    n = 400
    up, down = messages(n, 1, b"up"), messages(n, 2, b"down")
    cuts_at = set(range(n // 9, n, n // 9))  # (client's message counts: 8 cuts)

    async def main() -> None:
        got_up: list[bytes] = []
        server_side: list[sessionlayer.Session] = []
        done = asyncio.Event()

        async def handler(session: sessionlayer.Session) -> None:
            server_side.append(session)
            task = asyncio.create_task(_send_all(session, down))
            async for data in session:
                got_up.append(data)
                if len(got_up) == n:
                    done.set()
                    break
            await task
            await session.wait_closed()

        async with await sessionlayer.serve(handler, options=FAST) as server:
            async with await start(("127.0.0.1", server.port)) as relay:
                client = await sessionlayer.connect("127.0.0.1", relay.port, options=FAST)
                assert client.resumable
                resumed = asyncio.Queue[Resumed]()
                watch = asyncio.create_task(_resumes(client, resumed))
                task = asyncio.create_task(_send_all(client, up))
                got_down: list[bytes] = []
                async with asyncio.timeout(60):
                    async for data in client:
                        got_down.append(data)
                        if len(got_down) in cuts_at:
                            cut(client if where == "client leg" else server_side[-1])
                            await resumed.get()  # (each cut on a connection of its own)
                        if len(got_down) == n:
                            break
                    await task
                    await done.wait()
                watch.cancel()
                assert got_down == down and got_up == up
                assert client.resumes == client.interruptions == len(cuts_at)
                assert server.stats.resumed["resumed"] == client.resumes
                assert relay.stats.ended["interrupted"] == len(cuts_at)
                await client.release()

    run(main())


async def _resumes(session: sessionlayer.Session, out: asyncio.Queue[Resumed]) -> None:
    async for event in session.events():
        if isinstance(event, Resumed):
            out.put_nowait(event)


async def _send_all(session: sessionlayer.Session, items: list[bytes]) -> None:
    for m in items:
        await session.send(m)
