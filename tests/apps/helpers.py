"""Helpers of the tunnel and RPC tests: bounded runs, TCP targets on loopback, and a
tunnel (client, server, fault proxy between them) in one call."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from tests.faults.proxy import FaultProxy

import sessionlayer
from sessionlayer import Options
from sessionlayer.apps.tunnel import SUPPORTED, TunnelClient, TunnelService
from sessionlayer.recovery import Backoff

LIMIT = 60.0  #: the longest any one phase of these tests may take
#: Reconnect at once, a few tries a second, give up after twenty seconds; large TPDUs.
FAST = Options(backoff=Backoff(first=0, cap=0.05, give_up=20.0), tpdu_size=65408)


def run(coro: Awaitable[Any], timeout: float = 110, loop: str = "asyncio") -> Any:
    """Run ``coro`` with a bound; fail if anything reached the loop's exception handler.
    ``loop="uvloop"``: on uvloop (in the test extra: a test that asks for it fails in CI
    without it)."""

    async def main() -> Any:
        errors: list[dict[str, Any]] = []
        asyncio.get_running_loop().set_exception_handler(lambda _, c: errors.append(c))
        result = await asyncio.wait_for(coro, timeout)
        assert not errors, errors
        return result

    from tests.tools import loop_factory

    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        return runner.run(main())


async def until(condition: Callable[[], bool], timeout: float = LIMIT) -> None:
    """Wait (bounded) until ``condition()`` holds: for states that no event announces to
    the test (a counter in another object), looked at every 10 ms."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def pattern(seed: int, n: int) -> bytes:
    """``n`` reproducible pseudo-random octets."""
    return random.Random(seed).randbytes(n)


class Target:
    """A TCP server on 127.0.0.1 running ``serve(reader, writer)`` per connection; the
    tasks are tracked and closed with it."""

    def __init__(self, serve: Any) -> None:
        self.serve = serve
        self.server: asyncio.Server | None = None
        self.connections = 0
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> Target:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            await self.serve(reader, writer)
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            for writer in self.writers:
                writer.transport.abort()
            await self.server.wait_closed()


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Echo until EOF, then half-close."""
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof():
        writer.write_eof()
    await writer.drain()


class Exchange:
    """A target that, per connection, sends ``down`` octets of ``pattern(seed)`` (the seed
    is the first line the client sends) and digests everything it receives until EOF."""

    def __init__(self, down: int) -> None:
        self.down = down
        self.received: dict[int, str] = {}  # seed -> SHA-256 of what came

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seed = int((await reader.readline()).decode())
        data = pattern(seed + 1000, self.down)

        async def send() -> None:
            for i in range(0, len(data), 50_000):
                writer.write(data[i:i + 50_000])
                await writer.drain()
            writer.write_eof()

        task = asyncio.ensure_future(send())
        digest = hashlib.sha256()
        try:
            while block := await reader.read(65536):
                digest.update(block)
            self.received[seed] = digest.hexdigest()
            await task
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def exchange(port: int, seed: int, up: int, down: int) -> bytes:
    """The application's side of ``Exchange``: send ``up`` octets (then EOF) while reading
    until EOF; returns what came."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    data = pattern(seed, up)

    async def send() -> None:
        writer.write(b"%d\n" % seed)
        for i in range(0, len(data), 40_000):
            writer.write(data[i:i + 40_000])
            await writer.drain()
        writer.write_eof()

    task = asyncio.ensure_future(send())
    got = bytearray()
    try:
        while block := await reader.read(1 << 20):
            got += block
        await task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        writer.close()
    return bytes(got)


@contextlib.asynccontextmanager
async def tunnel(target_port: int, *, proxy_seed: int | None = None,
                 options: Options = FAST, service_kwargs: dict[str, Any] | None = None,
                 client_kwargs: dict[str, Any] | None = None,
                 serve_kwargs: dict[str, Any] | None = None,
                 ) -> AsyncIterator[tuple[TunnelClient, TunnelService, Any, FaultProxy | None]]:
    """A tunnel to 127.0.0.1:``target_port``: (client, service, server, proxy); with
    ``proxy_seed`` a FaultProxy sits between the tunnel client and the server."""
    service = TunnelService([("127.0.0.1", target_port)], **(service_kwargs or {}))
    async with await sessionlayer.serve(
        service.handle, supported=SUPPORTED, options=options,
        **(serve_kwargs or {}),
    ) as server:  # fmt: skip
        proxy = None
        port = server.port
        if proxy_seed is not None:
            proxy = FaultProxy("127.0.0.1", server.port, seed=proxy_seed)
            await proxy.start()
            port = proxy.port
        client = TunnelClient("127.0.0.1", port, options=options, **(client_kwargs or {}))
        try:
            await client.start()
            yield client, service, server, proxy
        finally:
            await client.close()
            if proxy is not None:
                await proxy.close()
