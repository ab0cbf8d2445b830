"""A confirmed request of a resumable session whose caller stops waiting once it went out
(``asyncio.wait_for`` timing out, a task cancelled) is seen through in a task of its own
(``Connection.seen_through``): the peer may have it.  What that task ends with is the
session's, not asyncio's:

- its confirm, when it comes, is put on ``events()`` as for a plain session (docs/api.md:
  "a confirm nobody awaits any more ... is put on events()"); before, it was dropped;
- its failure (the session aborted while it waited) is retrieved: nothing reaches
  asyncio's exception handler ("Task exception was never retrieved" before, from
  ``_confirm_loop``: ``asyncio.shield`` stops looking at the inner task once the outer
  one is cancelled).
"""

from __future__ import annotations

import asyncio
import gc

import sessionlayer
from sessionlayer.machine import events as ev
from sessionlayer.recovery import Checkpoint

from .helpers import FAST, LIMIT, next_of, owned, run


def _slow_server(asked: asyncio.Event, go: asyncio.Event) -> object:
    """A handler whose checkpoint confirmation waits for ``go`` (``asked`` set when the
    peer's checkpoint came)."""

    async def handler(session: sessionlayer.Session) -> None:
        async def slow(checkpoint: Checkpoint) -> None:
            asked.set()
            await go.wait()

        session.on_checkpoint = slow
        try:
            async for _ in session:
                pass
        except sessionlayer.SessionLayerError:
            pass

    return handler


def test_the_confirm_of_a_checkpoint_whose_caller_was_cancelled_is_put_on_events() -> None:
    async def main() -> None:
        asked, go = asyncio.Event(), asyncio.Event()
        async with await sessionlayer.serve(_slow_server(asked, go), options=FAST) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port, options=FAST)
            async with owned(client):
                assert client.resumable
                waiting = asyncio.create_task(client.sync(major=True, user_data=b"cp"))
                await asyncio.wait_for(asked.wait(), LIMIT)  # (the MAP is out, and there)
                waiting.cancel()
                await asyncio.gather(waiting, return_exceptions=True)
                assert waiting.cancelled()
                go.set()
                confirm = await next_of(client, ev.MajorSyncConfirm)
                assert confirm.serial == 0
                # The session goes on: the next checkpoint is confirmed to its caller.
                assert await asyncio.wait_for(client.sync(major=True), LIMIT) == 1
                await client.release()

    run(main())


def test_a_cancelled_checkpoint_that_fails_reaches_no_exception_handler() -> None:
    async def main() -> None:
        asked, go = asyncio.Event(), asyncio.Event()
        async with await sessionlayer.serve(_slow_server(asked, go), options=FAST) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port, options=FAST)
            try:
                await asyncio.wait_for(client.sync(major=True), 0.05)
            except TimeoutError:
                pass
            else:
                raise AssertionError("the peer confirmed before it was let to")
            await asyncio.wait_for(asked.wait(), LIMIT)
            client.abort()  # (the request's own task fails: SessionAborted)
            await asyncio.wait_for(client.wait_closed(), LIMIT)
            go.set()
            async with asyncio.timeout(LIMIT):  # (until the request's own task has ended)
                while any("_confirm_loop" in repr(t.get_coro()) for t in asyncio.all_tasks()):
                    await asyncio.sleep(0)
            gc.collect()  # (an exception never retrieved is reported as the task goes)
        # run() asserts that asyncio's exception handler saw nothing.

    run(main())
