"""One side of a session setup at a time, without sockets: what our Python costs.

    python -m bench.setup_sides              # client, server and core; 3,000 setups, 3 runs
    python -m bench.setup_sides client 5000  # one side; N setups
    python -m bench.setup_sides server --calls   # cProfile's calls per setup instead of time

``client``: ``sessionlayer.connect()`` against a fake transport that answers each CR+CN
with the CC+AC a real server sent (captured first, on loopback): the binding, the agent,
the machine, the codec and RFC 1006 of the initiator.  ``server``: ``serve()``'s protocol
fed the CR+CN a real client sent (a fast connect: one read), its handler's first step
included.  ``core``: the two sans-I/O agents alone, driven against each other (no binding,
no asyncio): the figure is for both sides together.  Plain sessions (bench/aio.py's
``OPTIONS``), 64 handlers started at a time.
No kernel and no peer process is in these figures: set them beside the raw baseline's
whole CPU per setup (``python -m bench.setup``) to see what is left for everything else.
The figure is the best of the runs (process CPU time): the host adds, it never takes away.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import time
from collections.abc import Callable
from typing import Any

import sessionlayer
from bench.aio import OPTIONS
from sessionlayer.agent import Hello, SessionAgent
from sessionlayer.machine import SessionConfig
from sessionlayer.machine import events as ev
from sessionlayer.spdu.types import ConnectionId

SERVER_OPTIONS = sessionlayer.Options(keepalive_interval=None, idle_timeout=None, resume=False)


class FakeTransport(asyncio.Transport):
    """Keeps what is written (``out``); ``answer`` (if any) is fed to ``protocol`` once, on
    the loop's next turn after the first write.  Closing it calls ``connection_lost``.  (The tests'
    transport too: tests/aio/test_connect_paths.py.)"""

    def __init__(self, protocol: Any = None, answer: bytes = b"",
                 peer: tuple[str, int] = ("127.0.0.1", 40000)) -> None:  # fmt: skip
        super().__init__()
        self.protocol, self.answer, self.peer = protocol, answer, peer
        self.out: list[bytes] = []
        self.closing = False

    def write(self, data: Any) -> None:
        self.out.append(bytes(data))
        if self.answer:
            answer, self.answer = self.answer, b""
            asyncio.get_running_loop().call_soon(feed, self.protocol, answer)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.peer if name == "peername" else default

    def set_write_buffer_limits(self, high: Any = None, low: Any = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self._closed()

    def abort(self) -> None:
        self._closed()

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:  # (after an AB: a peer that closes when it reads the FIN)
        self._closed()

    def _closed(self) -> None:
        """As a real transport does: connection_lost on the loop's next turn, once."""
        if not self.closing and self.protocol is not None:
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def feed(protocol: Any, data: bytes) -> None:
    buf = protocol.get_buffer(len(data))
    buf[: len(data)] = data
    protocol.buffer_updated(len(data))


async def capture() -> tuple[bytes, bytes, int]:
    """(What a client writes before it reads, what the server answers, the port) for a fast
    connect (the client remembers the port as a server's that takes one)."""
    got: list[tuple[str, bytes]] = []

    async def handler(session: sessionlayer.Session) -> None:
        async for _ in session:
            pass

    server = await sessionlayer.serve(handler, "127.0.0.1", 0, options=SERVER_OPTIONS)
    port = server.port
    for _ in range(2):  # the first tells the client that this server takes a fast connect
        got.clear()
        session = await sessionlayer.connect(
            "127.0.0.1", port, options=OPTIONS, trace=lambda d, b: got.append((d, bytes(b)))
        )
        setup = len(got)  # (what comes after the abort, a server's AB, is not the setup's)
        session.abort()
    server.close()
    await server.wait_closed()
    del got[setup:]
    first_in = next(i for i, (d, _) in enumerate(got) if d == "in")
    sent = b"".join(b for d, b in got[:first_in] if d == "out")
    answer = b"".join(b for d, b in got if d == "in")
    return sent, answer, port


async def client_side(n: int, answer: bytes, port: int) -> Callable[[], Any]:
    loop = asyncio.get_running_loop()

    async def create_connection(factory: Any, host: str, port: int, **_: Any) -> Any:
        protocol = factory()
        transport = FakeTransport(protocol, answer)
        protocol.connection_made(transport)
        return transport, protocol

    loop.create_connection = create_connection  # type: ignore[method-assign, assignment]
    kept = []

    async def run() -> None:
        for _ in range(n):
            kept.append(await sessionlayer.connect("127.0.0.1", port, options=OPTIONS))

    return run


async def server_side(n: int, sent: bytes, servers: list[Any]) -> Callable[[], Any]:
    async def handler(session: sessionlayer.Session) -> None:
        async for _ in session:
            pass

    server = await sessionlayer.serve(handler, "127.0.0.1", 0, options=SERVER_OPTIONS,
                                      max_sessions=1 << 20, max_handshakes=1 << 20)  # fmt: skip
    servers.append(server)
    kept = []

    async def run() -> None:
        for i in range(n):
            protocol = server._protocol()  # (bench only: a protocol as the loop makes one)
            protocol.connection_made(FakeTransport(protocol))
            feed(protocol, sent)
            kept.append(protocol)
            if i % 64 == 63:
                await asyncio.sleep(0)  # the handlers' first steps
        await asyncio.sleep(0)

    return run


def core_side(n: int) -> Callable[[], Any]:
    config = SessionConfig()
    hello = Hello(recovery=False)
    kept = []

    async def run() -> None:
        for i in range(n):
            client = SessionAgent("initiator", config, OPTIONS)
            server = SessionAgent("responder", config, OPTIONS)
            client.fast_connect()
            client.connection_made(1.0)
            server.connection_made(1.0)
            client.connect(None, ConnectionId(common_ref=i.to_bytes(16, "big")), hello)
            server.receive_data(b"".join(client.data_to_send()), 1.0)
            indication = next(e for e in server.events() if isinstance(e, ev.ConnectIndication))
            server.indication(indication)
            server.accept(chosen={}, session_id=f"{i:032x}")
            client.receive_data(b"".join(server.data_to_send()), 1.0)
            confirm = next(e for e in client.events() if isinstance(e, ev.ConnectConfirm))
            client.confirmed(confirm)
            kept.append((client, server))

    return run


async def measure(side: str, n: int, calls: bool) -> float:
    sent, answer, port = await capture()
    servers: list[Any] = []
    make = {"client": lambda k: client_side(k, answer, port),
            "server": lambda k: server_side(k, sent, servers)}  # fmt: skip
    try:
        if side == "core":
            warm, run = core_side(200), core_side(n)
        else:
            warm, run = await make[side](200), await make[side](n)
        await warm()
        gc.collect()
        profile = cProfile.Profile() if calls else None
        started = time.process_time()
        if profile is not None:
            profile.enable()
        await run()
        if profile is not None:
            profile.disable()
            return pstats.Stats(profile).total_calls / n  # type: ignore[attr-defined, no-any-return]
        return (time.process_time() - started) / n * 1e6
    finally:
        for server in servers:
            server.close()
            await server.wait_closed()


_LABELS = {"client": "client", "server": "server", "core": "core (both agents)"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.setup_sides", description=__doc__)
    parser.add_argument("side", nargs="?", choices=("client", "server", "core", "all"),
                        default="all")  # fmt: skip
    parser.add_argument("count", nargs="?", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--calls", action="store_true", help="calls per setup (cProfile)")
    args = parser.parse_args(argv)
    sides = ("client", "server", "core") if args.side == "all" else (args.side,)
    for side in sides:
        runs = 1 if args.calls else args.runs
        figures = [asyncio.run(measure(side, args.count, args.calls)) for _ in range(runs)]
        if args.calls:
            print(f"{_LABELS[side]:22s} {figures[0]:7.1f} calls per setup")
        else:
            shown = ", ".join(f"{f:.1f}" for f in figures)
            print(f"{_LABELS[side]:22s} {min(figures):7.1f} us CPU per setup (runs: {shown})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
