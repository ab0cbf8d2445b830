"""A ``serve()`` server, a relay (in front of an echo upstream) or a tunnel's client (to
a tunnel server at ``PORT``) in a process of its own whose file descriptors run out:
started by tests/aio/test_out_of_descriptors.py.

    python -m tests.aio.fd_limited serve|relay|tunnel|serve-nospare asyncio|uvloop ROOM [PORT]

``serve-nospare``: a ``serve()`` server whose listening sockets lost their spare
descriptors (as when none was free at the start, or another thread took one).

Once it listens, its soft RLIMIT_NOFILE is set to the descriptors it holds plus ``ROOM``.
It prints one JSON line on stdout when it listens (``{"port": N}``) and one for each line
read on stdin: ``settle`` waits until it holds no more descriptors than when it started
listening; ``report`` says what reached asyncio's exception handler, the server's count of
connections shed and the WARNINGs about them logged.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import resource
import sys
from typing import Any

from tests.relay.helpers import upstream
from tests.tools import echo

import sessionlayer
from sessionlayer.aio.listening import Shedding
from sessionlayer.apps.tunnel import TunnelClient
from sessionlayer.relay import start

LIMIT = 10.0  # s: a bound on every wait


def say(**what: Any) -> None:
    print(json.dumps(what), flush=True)


def held() -> int:
    """Descriptors open (not the one listdir() reads them through; none left: all)."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1
    except OSError:
        return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.shed = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "out of file descriptors" in record.getMessage():
            self.shed += 1


async def main(kind: str, room: int, server_port: int) -> None:
    loop = asyncio.get_running_loop()
    reported: list[str] = []
    loop.set_exception_handler(lambda _, context: reported.append(
        f"{context.get('message')}: {context.get('exception')!r}"))
    warnings = Warnings()
    logging.getLogger("sessionlayer").addHandler(warnings)
    if kind in ("serve", "serve-nospare"):
        server: Any = await sessionlayer.serve(echo, "127.0.0.1", 0, options=sessionlayer.Options(
            keepalive_interval=None, idle_timeout=None, resume=False))  # fmt: skip
        port, shed = server.port, lambda: server.stats.shed
    elif kind == "relay":
        up = await upstream()
        server = await start(("127.0.0.1", up.port))
        port, shed = server.port, lambda: server.stats.rejected["out_of_descriptors"]
    else:
        server = TunnelClient("127.0.0.1", server_port)
        await server.start()
        port, shed = server.listen_port, lambda: server.stats.failed
    baseline = held()  # (with the spares: the first accept takes them back)
    if kind == "serve-nospare":
        for obj in gc.get_objects():
            if isinstance(obj, Shedding) and obj.spare is not None:
                obj.spare.close()
                obj.spare = None
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (baseline + room, hard))
    say(port=port)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).strip():
        if line == b"settle":
            async with asyncio.timeout(LIMIT):
                while held() > baseline:
                    await asyncio.sleep(0.01)
            say(settled=True)
        elif line == b"report":
            say(reported=reported, shed=shed(), warnings=warnings.shed)


if __name__ == "__main__":
    kind, loop_name, room = sys.argv[1], sys.argv[2], int(sys.argv[3])
    server_port = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    factory = None
    if loop_name == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main(kind, room, server_port))
