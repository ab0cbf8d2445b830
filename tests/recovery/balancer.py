"""A switchable TCP relay on loopback, the load balancer of the several-nodes tests: every
new connection goes to ``target`` (a port the test switches), and ``cut()`` resets the
ones open, as a balancer that moves its clients to another node does."""

from __future__ import annotations

import asyncio
import contextlib


class Balancer:
    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self._pipes: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._closed = False

    async def __aenter__(self) -> Balancer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._closed = True
        self._server.close()
        self.cut()
        if self._tasks:  # (each ends once its connections are reset: bounded)
            await asyncio.wait(list(self._tasks), timeout=20)
        await self._server.wait_closed()

    def switch(self, target: int) -> None:
        """New connections go to ``target``; the open ones are reset."""
        self.target = target
        self.cut()

    def cut(self) -> None:
        for client, node in self._pipes:
            client.transport.abort()
            node.transport.abort()
        self._pipes.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            try:
                node_reader, node_writer = await asyncio.open_connection("127.0.0.1", self.target)
            except OSError:
                writer.transport.abort()
                return
            if self._closed:
                writer.transport.abort()
                node_writer.transport.abort()
                return
            self._pipes.append((writer, node_writer))
            await asyncio.gather(_pump(reader, node_writer), _pump(node_reader, writer))
        finally:
            self._tasks.discard(task)


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(Exception):
            sink.transport.abort()
