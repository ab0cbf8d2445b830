"""``Signal``: what ``asyncio.Event`` does, at a fraction of its memory.

A session holds a few of these; with ten thousand idle sessions the deque
every ``asyncio.Event`` allocates up front adds up.  A Signal allocates
nothing until somebody waits on it.
"""

from __future__ import annotations

import asyncio

__all__ = ["Signal"]


class Signal:
    """A flag coroutines can wait for; ``set()`` wakes every waiter."""

    __slots__ = ("_flag", "_waiters")

    def __init__(self, flag: bool = False) -> None:
        self._flag = flag
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        self._flag = True
        waiters = self._waiters
        if waiters:
            self._waiters = None
            for future in waiters:
                if not future.done():
                    future.set_result(None)

    def clear(self) -> None:
        self._flag = False

    async def wait(self) -> None:
        if self._flag:
            return
        future = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = [future]
        else:
            self._waiters.append(future)
        try:
            await future
        finally:
            waiters = self._waiters
            if waiters is not None and future in waiters:
                waiters.remove(future)
