"""A call's answer and its deadline in the same turn of the client's loop.

Once the answer is the call's (its future resolved), the caller gets it, even when the
deadline's timer fires in that same turn: a bare ``asyncio.TimeoutError`` there (neither
the answer nor ``CallTimeout``) threw away a result the server had sent.  The race is made
on purpose: the future is resolved by a timer due just before the call's deadline, and the
loop is blocked (``time.sleep``, standing for a busy loop) past both, so that both run in
one turn, in that order.  A deadline that passes before the answer was taken in is a
``CallTimeout``, and the session goes on."""

from __future__ import annotations

import asyncio
import time

import sessionlayer
from sessionlayer.apps.rpc import (
    RPC_SUPPORTED,
    CallTimeout,
    Registry,
    RemoteCallError,
    RpcClient,
    rpc_connect,
    rpc_handler,
)

from .helpers import LIMIT, run

TIMEOUT = 0.05


async def raced(rpc: RpcClient, answer: object) -> object:
    """Call ``slow`` (it never answers by itself) with TIMEOUT; resolve its future with
    ``answer`` (an exception is set as one) just before the deadline, in the deadline's
    turn of the loop."""
    before = set(rpc._pending)
    task = asyncio.create_task(rpc.call("slow", timeout=TIMEOUT))
    while not set(rpc._pending) - before:
        await asyncio.sleep(0)
    (cid,) = set(rpc._pending) - before
    future = rpc._pending[cid]
    loop = asyncio.get_running_loop()
    if isinstance(answer, BaseException):
        loop.call_later(TIMEOUT / 5, future.set_exception, answer)
    else:
        loop.call_later(TIMEOUT / 5, future.set_result, answer)
    time.sleep(TIMEOUT * 3)  # both timers are due when the loop runs again
    try:
        return await task
    except Exception as exc:
        return exc


def test_an_answer_in_the_deadlines_turn_is_the_calls_answer() -> None:
    async def main() -> None:
        registry = Registry()
        never = asyncio.Event()

        @registry.method
        async def slow() -> None:
            await never.wait()

        @registry.method
        def add(a: int, b: int) -> int:
            return a + b

        handler = rpc_handler(registry)
        async with await sessionlayer.serve(handler, supported=RPC_SUPPORTED) as server:
            async with await rpc_connect("127.0.0.1", server.port) as rpc:
                assert await raced(rpc, 5) == 5
                error = RemoteCallError("ValueError", "no")
                assert await raced(rpc, error) is error
                # the deadline before any answer: CallTimeout, and the session goes on
                try:
                    await rpc.call("slow", timeout=TIMEOUT)
                except CallTimeout:
                    pass
                else:
                    raise AssertionError("slow answered")
                assert await rpc.call("add", 2, 3, timeout=LIMIT) == 5

    run(main())
