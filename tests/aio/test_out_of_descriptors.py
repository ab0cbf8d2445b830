"""A plain TCP server out of file descriptors (aio/listening.py): ``serve()``, the relay and
a tunnel's client (its local port) close each connection they have no descriptor for at
its accept, count it, log a WARNING, and nothing reaches asyncio's exception handler.
Once descriptors are free again, a session (a tunnelled connection) opens as before.  On
asyncio's own loop, its server reported every failed accept() to the exception handler:
thousands of errors with tracebacks a second.

The server runs in a process of its own (tests/aio/fd_limited.py), its descriptor limit a
few above what it holds once it listens; the test opens many more connections than that.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from typing import Any

import pytest
from tests.apps.helpers import Target
from tests.relay.helpers import CONFIG
from tests.tools import loop_factory

import sessionlayer
from sessionlayer.apps.tunnel import SUPPORTED, TunnelService

LIMIT = 10.0  # s: a bound on every wait (far above what each takes)
ROOM = 8  #: descriptors the server may open beyond those it holds once it listens
FLOOD = 60  #: TCP connections opened at once


class Child:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def line(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        async with asyncio.timeout(LIMIT):
            raw = await self.proc.stdout.readline()
        assert raw, "the server process ended"
        return dict(json.loads(raw))

    async def ask(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        await self.proc.stdin.drain()
        return await self.line()


async def gone(reader: asyncio.StreamReader) -> None:
    """Until the server closed this connection (EOF, or a reset)."""
    with contextlib.suppress(ConnectionError):
        await reader.read()


async def flood_then_session(kind: str, loop: str) -> None:
    if kind != "tunnel":
        await flood_then_use(kind, loop, [])
        return
    target = await Target(echo_lines).start()  # (the tunnel's server and target: here)
    service = TunnelService([("127.0.0.1", target.port)])
    try:
        async with await sessionlayer.serve(service.handle, "127.0.0.1", 0,
                                            supported=SUPPORTED) as server:  # fmt: skip
            await flood_then_use(kind, loop, [str(server.port)], str(target.port))
    finally:
        await target.close()


async def echo_lines(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while line := await reader.readline():
        writer.write(line)
    writer.close()


async def use(kind: str, port: int) -> None:
    """A session (a tunnelled connection) that works: an echo and a release."""
    options = sessionlayer.Options(keepalive_interval=None, idle_timeout=None, resume=False)
    async with asyncio.timeout(LIMIT):
        if kind == "tunnel":  # (a TCP connection through it)
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"after the flood\n")
            assert await reader.readline() == b"after the flood\n"
            writer.close()
            return
        if kind == "relay":  # (through the relay to its echo upstream)
            session = await sessionlayer.connect("127.0.0.1", port, user_data=b"hi",
                                                 config=CONFIG, options=options)  # fmt: skip
        else:
            session = await sessionlayer.connect("127.0.0.1", port, options=options)
        await session.send(b"after the flood")
        assert await session.receive() == b"after the flood"
        await session.release()


async def flood_then_use(kind: str, loop: str, args: list[str], target: str = "") -> None:
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.aio.fd_limited", kind, loop, str(ROOM), *args, cwd=root,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
    )  # fmt: skip
    child = Child(proc)
    try:
        port = (await child.line())["port"]
        if kind == "serve-nospare":  # (an accept with descriptors free takes a spare back)
            await use(kind, port)
        flood = [await asyncio.open_connection("127.0.0.1", port) for _ in range(FLOOD)]
        # The server holds at most ROOM of them: the others are closed at once (one more
        # may take a descriptor of the server's for a moment).
        closed = asyncio.as_completed([asyncio.ensure_future(gone(r)) for r, _ in flood])
        async with asyncio.timeout(LIMIT):
            for _ in range(FLOOD - ROOM - 1):
                await next(closed)
        for _, writer in flood:
            writer.close()
        assert await child.ask("settle") == {"settled": True}
        await use(kind, port)
        report = await child.ask("report")
        assert report["reported"] == [], "reached asyncio's exception handler"
        if loop == "asyncio":  # (uvloop's libuv sheds them itself, uncounted)
            assert report["shed"] >= FLOOD - ROOM - 1, report
            assert report["warnings"] >= 1, report
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("kind", ["serve", "relay", "tunnel", "serve-nospare"])
def test_a_server_out_of_descriptors_sheds_connections_quietly(kind: str, loop: str) -> None:
    loop_factory(loop)  # (uvloop missing: a failure in CI, else a skip; the child runs it)
    asyncio.run(asyncio.wait_for(flood_then_session(kind, loop), 3 * LIMIT))


def test_out_of_memory_a_listening_socket_leaves_it_to_asyncio(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ENOBUFS or ENOMEM: a spare descriptor does not help, so nothing is shed and the
    error goes to asyncio's own handling (which waits a second), never a BlockingIOError
    that would have asyncio call accept() again at once, forever."""
    import errno
    import socket

    from sessionlayer.aio.listening import Shedding

    sock = Shedding(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        for code in (errno.ENOBUFS, errno.ENOMEM, errno.EMFILE):
            def failing(self: socket.socket, code: int = code) -> Any:
                raise OSError(code, os.strerror(code))

            monkeypatch.setattr(socket.socket, "accept", failing)
            with pytest.raises(OSError) as info:
                sock.accept()
            assert type(info.value) is OSError and info.value.errno == code
            # (EMFILE with nothing shed, since every accept fails: asyncio's handling too)
    finally:
        monkeypatch.undo()
        sock.close()
