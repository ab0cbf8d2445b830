"""Python calls per S-DATA on the plain data path: a count the host does not move.

    python -m bench.calls            # 100,000 one-way messages, 20,000 round trips, 64 B
    python -m bench.calls --json

Timed benchmarks on this shared VM move by up to 2x with the host; the number of Python
function calls cProfile counts per message (sender and receiver, one process, a
``serve()`` handler's ``async for`` and ``send()`` / ``receive()`` on the client, plain
sessions: ``bench.aio.OPTIONS``) is the same from run to run, so a change to the data path
shows in it at once.  Before recovery (455bd07) it was 12.0 per one-way S-DATA and 113.0
per round trip (bench/NOTES.md).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
from typing import Any

import sessionlayer
from bench.aio import OPTIONS

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.calls")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true", help="a tenth of the messages")
    args = parser.parse_args(argv)
    scale = 10 if args.quick else 1
    result: dict[str, Any] = {
        "calls_per_one_way_sdata": asyncio.run(one_way_calls(100_000 // scale)),
        "calls_per_round_trip": asyncio.run(round_trip_calls(20_000 // scale)),
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print("Python calls on the plain data path (cProfile, 64 B, sender + receiver):")
    one_way, round_trip = result["calls_per_one_way_sdata"], result["calls_per_round_trip"]
    print(f"  per one-way S-DATA {one_way:8.1f}  (12.0 before recovery)")
    print(f"  per round trip     {round_trip:8.1f}  (113.0 before recovery)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
