"""A send between a resume's accept and its replay (client side): the resume try's AC is
in, the new connection's agent is in data transfer, and the reconnect task has not yet taken
the accept (``SessionAgent.confirmed``, then the replay and ``Connection.resumed``: its
next steps, in another loop round).  An
application task that runs in between and sends must not write on the new connection
ahead of the replay: the message would arrive there, then again with the replay, and the
peer's count of what it received would be one ahead of ours from then on (what later
resumes replay is then off by one: data lost or doubled; the tunnel through cuts showed
it as 4 MiB arriving with a stretch of it doubled and another missing)."""

from __future__ import annotations

import asyncio

import pytest

import sessionlayer
from sessionlayer.agent import SessionAgent
from sessionlayer.recovery import Resumed

from .helpers import FAST, LIMIT, cut, next_of, owned, run


def test_a_send_between_the_resume_accept_and_the_replay_arrives_once_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def main() -> None:
        got: list[bytes] = []
        all_in = asyncio.Event()

        async def handler(session: sessionlayer.Session) -> None:
            async for data in session:
                got.append(data)
                if data == b"last":
                    all_in.set()

        async with await sessionlayer.serve(handler, options=FAST) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port, options=FAST)
            async with owned(client):
                for i in range(5):
                    await client.send(b"a%d" % i)
                conn = client._conn
                real = SessionAgent.confirmed
                plain_then: list[bool] = []

                def confirmed(self: SessionAgent, *args: object, **kwargs: object) -> object:
                    if not plain_then:  # (the resume try's accept: the first since the cut)
                        plain_then.append(conn.plain)
                        # the application's sending task, run at this point of the loop
                        step = client.send(b"late")
                        with pytest.raises(StopIteration):  # (it did not have to wait)
                            step.send(None)
                    return real(self, *args, **kwargs)  # type: ignore[arg-type]

                monkeypatch.setattr(SessionAgent, "confirmed", confirmed)
                cut(client)
                await next_of(client, Resumed)
                for i in range(5):
                    await client.send(b"b%d" % i)
                await client.send(b"last")
                await asyncio.wait_for(all_in.wait(), LIMIT)
                assert got == [*(b"a%d" % i for i in range(5)), b"late",
                               *(b"b%d" % i for i in range(5)), b"last"]  # fmt: skip
                assert plain_then == [False], "the fast path was open while detached"
                await client.release()

    run(main())
