"""A detached session dropped (``server.drop``) or expired (``resume_timeout``) while its
handler waits for something other than the session (an application queue, here an
``asyncio.Event``) is over for the server at once, not when the handler returns: its client,
back later, is told why ("ended", "expired"), a store forgets it, and no second handler
resumes it from its checkpoint."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.faults.proxy import FaultProxy

import sessionlayer
from sessionlayer.agent import Rejection
from sessionlayer.errors import ResumeRefused, SessionAborted
from sessionlayer.machine import events as ev
from sessionlayer.recovery import Backoff, Interrupted
from sessionlayer.stores import open_store

from .helpers import FAST, LIMIT, next_of, raw_resume, run, token_of

#: The client's first retry comes a while after the cut; the proxy also refuses every try
#: until the server has done what the test is about, so nothing hangs on that while.
LATE = dataclasses.replace(FAST, backoff=Backoff(first=0.2, jitter=0, cap=0.2, give_up=LIMIT))


class Busy:
    """A handler that waits for an unrelated event (``release``), then tries its session."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.sessions: list[sessionlayer.Session] = []
        self.tasks: list[asyncio.Task[Any]] = []
        self.late: list[BaseException | None] = []  # what a send() after the end raised

    async def __call__(self, session: sessionlayer.Session) -> None:
        self.sessions.append(session)
        task = asyncio.current_task()
        assert task is not None
        self.tasks.append(task)
        await self.release.wait()  # (not the session: an application queue, say)
        try:
            await session.send(b"late")
        except BaseException as exc:
            self.late.append(exc)
            raise
        self.late.append(None)

    async def finish(self) -> None:
        """Let every handler return, and wait until the server has seen them end (its own
        done callback runs before the one asyncio.wait adds)."""
        self.release.set()
        done, _ = await asyncio.wait(self.tasks, timeout=LIMIT)
        assert len(done) == len(self.tasks)


async def until(condition: Callable[[], object]) -> None:
    """A bounded poll of the server's state on the loop (it exposes no event for it)."""
    async with asyncio.timeout(LIMIT):
        while not condition():
            await asyncio.sleep(0)


async def detach(client: sessionlayer.Session, proxy: FaultProxy,
                 server: sessionlayer.Server) -> None:  # fmt: skip
    """Cut the client's connection, keep it from coming back, and wait until the server
    holds the session detached."""
    proxy.refuse(True)  # (every reconnect is reset until the test lets it through)
    assert proxy.cut("reset") == 1
    await next_of(client, Interrupted)
    await until(lambda: [info.id for info in server.detached] == [client.id])


async def refusal(client: sessionlayer.Session, proxy: FaultProxy) -> ResumeRefused:
    """How the client's session ends once it is let through; then the proxy is idle (its
    last connection closed: none is left for close() to cut short)."""
    with pytest.raises(ResumeRefused) as info:
        await asyncio.wait_for(client.receive(), LIMIT)
    await until(lambda: proxy.active == 0)
    return info.value


def test_a_dropped_detached_session_with_a_busy_handler_is_refused_as_ended() -> None:
    async def main() -> None:
        busy = Busy()
        async with await sessionlayer.serve(busy, options=FAST) as server:
            async with FaultProxy("127.0.0.1", server.port, seed=1) as proxy:
                client = await sessionlayer.connect("127.0.0.1", proxy.port, options=LATE)
                await client.send(b"x")
                await client.sync()
                token = token_of(client)
                await detach(client, proxy, server)
                assert server.drop(client.id)
                # Over for the server now, while its handler still waits elsewhere.
                assert server.sessions == [] and server.detached == []
                assert server.stats.ended["aborted"] == 1
                assert not server.drop(client.id)
                proxy.refuse(False)
                refused = await refusal(client, proxy)
                assert refused.code == "ended", refused
                assert "aborted by the local user" in str(refused)
                # The handler's end later neither counts it again nor undoes it; its
                # session raises what ended it.
                await busy.finish()
                [late] = busy.late
                assert isinstance(late, SessionAborted), late
                assert server.stats.ended["aborted"] == 1
                assert sum(server.stats.ended.values()) == 1
                answer = await asyncio.wait_for(raw_resume(server.port, token), LIMIT)
                event, rejection = answer
                assert isinstance(event, ev.RefuseConfirm), answer
                assert isinstance(rejection, Rejection) and rejection.code == "resume:ended"
                assert len(busy.sessions) == 1

    run(main())


def test_a_dropped_detached_session_with_a_busy_handler_leaves_the_store(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        busy = Busy()
        store = open_store(f"sqlite:{tmp_path / 'sessions.db'}")
        try:
            async with await sessionlayer.serve(busy, options=FAST, store=store) as server:
                async with FaultProxy("127.0.0.1", server.port, seed=1) as proxy:
                    client = await sessionlayer.connect("127.0.0.1", proxy.port,
                                                        options=LATE)  # fmt: skip
                    await client.send(b"x")
                    await client.sync(major=True, user_data=b"cp")  # (in the store)
                    sid = client.id
                    assert await store.get(sid) is not None
                    await detach(client, proxy, server)
                    assert server.drop(sid)
                    assert server.sessions == []
                    proxy.refuse(False)
                    # Not resumed from its checkpoint (CheckpointRestored): it is over.
                    refused = await refusal(client, proxy)
                    assert refused.code == "ended", refused
                    assert len(busy.sessions) == 1  # no second handler
                    assert server.stats.resumed["checkpoint"] == 0
                    assert server.sessions == []
                    # Its record goes while the first handler still waits.
                    async with asyncio.timeout(LIMIT):
                        while await store.get(sid) is not None:
                            await asyncio.sleep(0)
                    assert not busy.tasks[0].done()
                    await busy.finish()
                    assert len(busy.sessions) == 1
                    assert await store.get(sid) is None
                    assert sum(server.stats.ended.values()) == 1
        finally:
            await store.close()

    run(main())


def test_an_expired_detached_session_with_a_busy_handler_is_refused_as_expired() -> None:
    async def main() -> None:
        busy = Busy()
        short = dataclasses.replace(FAST, resume_timeout=0.2)
        async with await sessionlayer.serve(busy, options=short) as server:
            async with FaultProxy("127.0.0.1", server.port, seed=1) as proxy:
                client = await sessionlayer.connect("127.0.0.1", proxy.port, options=LATE)
                await client.send(b"x")
                await client.sync()
                await detach(client, proxy, server)
                await until(lambda: server.stats.expired == 1)
                assert server.sessions == [] and server.detached == []
                assert not busy.tasks[0].done()
                proxy.refuse(False)
                refused = await refusal(client, proxy)
                assert refused.code == "expired", refused
                await busy.finish()
                [late] = busy.late
                assert isinstance(late, ResumeRefused) and late.code == "expired", late
                assert server.stats.expired == 1
                assert sum(server.stats.ended.values()) == 1
                assert len(busy.sessions) == 1

    run(main())
