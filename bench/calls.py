"""Python calls per S-DATA on the plain data path, per session setup and per resume:
counts the host does not move.

    python -m bench.calls            # 100,000 one-way messages, 20,000 round trips, 64 B;
                                     # 2,000 setups, 2,000 resumes
    python -m bench.calls --json

Timed benchmarks on this shared VM move by up to 2x with the host; the number of Python
function calls cProfile counts per message (sender and receiver, one process, a
``serve()`` handler's ``async for`` and ``send()`` / ``receive()`` on the client, plain
sessions: ``bench.aio.OPTIONS``) is the same from run to run, so a change to the data path
shows in it at once.  Before recovery (455bd07) it was 12.0 per one-way S-DATA and 113.0
per round trip (bench/NOTES.md).

Setup and resume count both sides too, 64 at a time as in bench/setup.py and
bench/recovery_storm.py: a setup is ``connect()`` until it returns and the server's handler
running (plain sessions); a resume is a resumable session's TCP connection reset by the
server (SO_LINGER 0, as bench/aio_idle.py's ``cut``) until the client's ``Resumed`` event.
What asyncio itself does per connection is in the count as well: it is the same for the
raw baseline, so a change of ours shows as a change of the count.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import json
import pstats
import socket
import struct
from typing import Any

import sessionlayer
from bench.aio import OPTIONS
from sessionlayer.recovery import Backoff, Resumed

RESUMABLE = dataclasses.replace(OPTIONS, resume=True, backoff=Backoff(first=0))
IN_FLIGHT = 64
_LINGER_ZERO = struct.pack("ii", 1, 0)

MESSAGE = b"x" * 64


async def one_way_calls(count: int) -> float:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    async def handler(session: sessionlayer.Session) -> None:
        n = 0
        async for _ in session:
            n += 1
            if n == count:
                done.set_result(None)

    async with await sessionlayer.serve(handler, "127.0.0.1", 0, options=OPTIONS) as server:
        client = await sessionlayer.connect("127.0.0.1", server.port, options=OPTIONS)
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(count):
            await client.send(MESSAGE)
        await done
        profile.disable()
        client.abort()
    return pstats.Stats(profile).total_calls / count  # type: ignore[attr-defined, no-any-return]


async def round_trip_calls(count: int) -> float:
    async def handler(session: sessionlayer.Session) -> None:
        async for data in session:
            await session.send(data)

    async with await sessionlayer.serve(handler, "127.0.0.1", 0, options=OPTIONS) as server:
        client = await sessionlayer.connect("127.0.0.1", server.port, options=OPTIONS)
        for _ in range(200):  # (warm-up: first-use costs out of the count)
            await client.send(MESSAGE)
            await client.receive()
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(count):
            await client.send(MESSAGE)
            await client.receive()
        profile.disable()
        client.abort()
    return pstats.Stats(profile).total_calls / count  # type: ignore[attr-defined, no-any-return]


async def _open(count: int, port: int, options: sessionlayer.Options) -> list[Any]:
    sessions: list[Any] = []
    started = 0

    async def worker() -> None:
        nonlocal started
        while started < count:
            started += 1
            sessions.append(await sessionlayer.connect("127.0.0.1", port, options=options))

    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    return sessions


async def setup_calls(count: int) -> float:
    """Calls per session opened (client and server), ``IN_FLIGHT`` at a time."""
    started = 0
    all_started = asyncio.get_running_loop().create_future()

    async def handler(session: sessionlayer.Session) -> None:
        nonlocal started
        started += 1
        if started == count + IN_FLIGHT:
            all_started.set_result(None)
        async for _ in session:
            pass

    serve = sessionlayer.serve(handler, "127.0.0.1", 0, options=OPTIONS, max_sessions=2 * count)
    async with await serve as server:
        warm = await _open(IN_FLIGHT, server.port, OPTIONS)  # (first-use costs)
        profile = cProfile.Profile()
        profile.enable()
        sessions = await _open(count, server.port, OPTIONS)
        await all_started
        profile.disable()
        for session in warm + sessions:
            session.abort()
    return pstats.Stats(profile).total_calls / count  # type: ignore[attr-defined, no-any-return]


async def resume_calls(count: int) -> float:
    """Calls per resumed session (client and server) after the server reset them all."""
    served: list[sessionlayer.Session] = []

    async def handler(session: sessionlayer.Session) -> None:
        served.append(session)
        async for _ in session:
            pass

    async def resumed(session: sessionlayer.Session) -> None:
        async for event in session.events():
            if isinstance(event, Resumed):
                return

    limits = {"max_sessions": 2 * count, "max_detached": 2 * count}
    serve = sessionlayer.serve(handler, "127.0.0.1", 0, options=RESUMABLE, **limits)
    async with await serve as server:
        sessions = await _open(count, server.port, RESUMABLE)
        while len(served) < count:
            await asyncio.sleep(0)
        watchers = [asyncio.ensure_future(resumed(s)) for s in sessions]
        await asyncio.sleep(0)
        profile = cProfile.Profile()
        profile.enable()
        for session in served[:count]:
            transport = session._conn.transport  # (private: as bench/aio_idle.py's cut)
            transport.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO
            )
            transport.abort()
        await asyncio.gather(*watchers)
        profile.disable()
        for session in sessions:
            session.abort()
    return pstats.Stats(profile).total_calls / count  # type: ignore[attr-defined, no-any-return]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.calls")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true", help="a tenth of the messages")
    args = parser.parse_args(argv)
    scale = 10 if args.quick else 1
    result: dict[str, Any] = {
        "calls_per_one_way_sdata": asyncio.run(one_way_calls(100_000 // scale)),
        "calls_per_round_trip": asyncio.run(round_trip_calls(20_000 // scale)),
        "calls_per_setup": asyncio.run(setup_calls(2_000 // scale)),
        "calls_per_resume": asyncio.run(resume_calls(2_000 // scale)),
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print("Python calls on the plain data path (cProfile, 64 B, sender + receiver):")
    one_way, round_trip = result["calls_per_one_way_sdata"], result["calls_per_round_trip"]
    print(f"  per one-way S-DATA {one_way:8.1f}  (12.0 before recovery)")
    print(f"  per round trip     {round_trip:8.1f}  (113.0 before recovery)")
    print("Python calls per connection (cProfile, client + server, 64 in flight):")
    print(f"  per session setup  {result['calls_per_setup']:8.1f}  (plain sessions)")
    print(f"  per resume         {result['calls_per_resume']:8.1f}  (after a reset by the server)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
