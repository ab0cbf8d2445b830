"""A TCP proxy on 127.0.0.1 that delays every octet by a fixed time each way (a long link).

    proxy = await DelayProxy.start(target_port, delay=0.02)   # 20 ms each way: 40 ms RTT
    ...connect to 127.0.0.1:proxy.port...
    await proxy.close()

netem is not available where the tests run (CI), so the round trip of a long link is made
here, in user space: what a side reads is written to the other ``delay`` seconds later, in
the order read.  The link itself is as fast as loopback: only the latency is added, so a
sender limited by a window (credit, TCP's) moves at most one window per round trip through
it.  At most ``limit`` octets are held per direction: past it the proxy stops reading
that side until what it holds went out (the kernel's buffers then hold the rest, as a
link's would).  Used by bench/tunnel.py (``--delay``) and tests/apps/test_tunnel_window.py.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib

__all__ = ["DelayProxy"]

_LIMIT = 64 << 20


class _Side(asyncio.Protocol):
    """One socket of a proxied connection: what it reads goes to ``peer`` later."""

    def __init__(self, proxy: DelayProxy) -> None:
        self.proxy = proxy
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self.early: list[bytes] = []  # (client side) read before the target connection was up
        self.held = 0  # octets read here, not yet written to the peer
        self.paused = False
        self.queue: collections.deque[tuple[float, bytes | None]] = collections.deque()
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.proxy.sides.add(self)

    def data_received(self, data: bytes) -> None:
        self._later(data)
        self.held += len(data)
        if self.held >= self.proxy.limit and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self._later(None)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.proxy.sides.discard(self)
        self._later(None)

    def _later(self, data: bytes | None) -> None:
        loop = asyncio.get_running_loop()
        self.queue.append((loop.time() + self.proxy.delay, data))
        if self.timer is None:
            self.timer = loop.call_at(self.queue[0][0], self._due)

    def _due(self) -> None:
        self.timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        queue, peer = self.queue, self.peer
        while queue and queue[0][0] <= now:
            _, data = queue.popleft()
            target = peer.transport if peer is not None else None
            if data is None:
                if target is not None and not target.is_closing():
                    if target.can_write_eof():
                        target.write_eof()
                    else:
                        target.close()
                continue
            self.held -= len(data)
            if peer is not None and target is None:
                peer.early.append(data)  # (the target connection is not up yet)
            elif target is not None and not target.is_closing():
                target.write(data)
        if self.paused and self.held < self.proxy.limit // 2 and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        if queue:
            self.timer = loop.call_at(queue[0][0], self._due)

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.transport is not None:
            self.transport.abort()


class DelayProxy:
    """Listens on 127.0.0.1:``port``; each connection gets its own to the target."""

    def __init__(self, target_port: int, delay: float, limit: int) -> None:
        self.target_port = target_port
        self.delay = delay
        self.limit = limit
        self.sides: set[_Side] = set()
        self.server: asyncio.Server | None = None
        self.port = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    async def start(cls, target_port: int, delay: float, *, limit: int = _LIMIT) -> DelayProxy:
        proxy = cls(target_port, delay, limit)
        loop = asyncio.get_running_loop()
        proxy.server = await loop.create_server(proxy._accepted, "127.0.0.1", 0)
        proxy.port = proxy.server.sockets[0].getsockname()[1]
        return proxy

    def _accepted(self) -> _Side:
        client = _Side(self)
        task = asyncio.ensure_future(self._connect(client))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return client

    async def _connect(self, client: _Side) -> None:
        loop = asyncio.get_running_loop()
        target = _Side(self)
        target.peer, client.peer = client, target
        try:
            await loop.create_connection(lambda: target, "127.0.0.1", self.target_port)
        except OSError:
            client.close()
            return
        assert target.transport is not None
        for data in client.peer.early if client.peer is not None else ():
            target.transport.write(data)
        target.early.clear()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for side in list(self.sides):
            side.close()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.server is not None:
            await self.server.wait_closed()


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.delayproxy TARGET_PORT DELAY_S``: print the port, serve until
    killed (bench/tunnel.py's ``--delay`` runs it as a process of its own)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.delayproxy")
    parser.add_argument("target_port", type=int)
    parser.add_argument("delay", type=float, help="seconds each way")
    args = parser.parse_args(argv)

    async def serve() -> None:
        proxy = await DelayProxy.start(args.target_port, args.delay)
        print(f"delaying on {proxy.port}", flush=True)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
