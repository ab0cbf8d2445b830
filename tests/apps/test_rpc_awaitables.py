"""RPC methods that are async without being ``async def`` functions: an object whose
``__call__`` is a coroutine function, and a plain function (a decorator's wrapper) that
returns a coroutine.  Each is awaited as a task, like an ``async def`` method: the caller
gets its result, and it can be cancelled and time out."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any

import sessionlayer
from sessionlayer.apps.rpc import (
    RPC_SUPPORTED,
    CallTimeout,
    Registry,
    RemoteCallError,
    rpc_connect,
    rpc_handler,
)

from .helpers import LIMIT, run


class Doubler:
    """A method object: its ``__call__`` is a coroutine function."""

    async def __call__(self, x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x


def logged(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """A decorator whose wrapper is a plain function returning the coroutine."""

    @functools.wraps(fn)
    def wrapper(*args: Any) -> Awaitable[Any]:
        return fn(*args)

    return wrapper


def test_a_method_object_and_a_wrapper_returning_a_coroutine_are_awaited() -> None:
    async def main() -> None:
        registry = Registry()
        registry.register("double", Doubler())

        @registry.method
        @logged
        async def triple(x: int) -> int:
            await asyncio.sleep(0)
            return 3 * x

        @registry.method
        @logged
        async def wait_forever() -> None:
            await asyncio.Event().wait()

        @registry.method
        @logged
        async def fail() -> None:
            await asyncio.sleep(0)
            raise ValueError("no luck")

        handler = rpc_handler(registry)
        async with await sessionlayer.serve(handler, supported=RPC_SUPPORTED) as server:
            async with await rpc_connect("127.0.0.1", server.port) as rpc:
                assert await rpc.call("double", 21, timeout=LIMIT) == 42
                assert await rpc.call("triple", 5, timeout=LIMIT) == 15
                try:
                    await rpc.call("fail", timeout=LIMIT)
                except RemoteCallError as exc:
                    assert (exc.type, exc.message) == ("ValueError", "no luck")
                else:
                    raise AssertionError("fail() returned")
                try:
                    await rpc.call("wait_forever", timeout=0.05)
                except CallTimeout:
                    pass
                else:
                    raise AssertionError("wait_forever() returned")
                assert await rpc.call("double", 1, timeout=LIMIT) == 2

    run(main())
