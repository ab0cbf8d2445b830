"""Throughput with session recovery on beside the same run with it off (issue 8).

    python -m bench.recovery                 # asyncio, then uvloop when installed
    python -m bench.recovery --loop asyncio  # one loop
    python -m bench.recovery --quick         # 0.5 s runs, one each: a smoke run
    python -m bench.recovery --json          # machine-readable results on stdout

One-way throughput exactly as bench/aio.py measures it (its ``one_way``: client and server
on one event loop in this process, on 127.0.0.1; the client ``await``-s each
``session.send`` of up to N messages or for ``--duration`` seconds, the server's handler
counts them in ``async for``; timed from the first send until the server has the last one,
a future resolved by the receiver), for 64 B and 64 KiB messages, with two option sets that
differ only in ``resume``:

* **on**: ``resume=True`` (the default since issue 8) with no store: each side keeps what it
  sends in its in-memory journal until the peer confirms it with a confirmed minor sync
  point, set every ``ack_bytes`` (1 MiB) octets or ``ack_interval`` (0.25 s) after the first
  message not yet covered; ``retention`` (8 MiB) bounds what is held;
* **off**: ``resume=False``, plain sessions (bench/aio.py's ``OPTIONS``).

Both use bench/aio.py's other options (no keepalive, no idle timer, 1 MiB write high-water
mark, 4 MiB receive buffering, 65408-octet TPDUs).  The runs alternate off/on on fresh
connections; the table shows the median of ``--repeat`` runs of each.  Target: on/off >=
0.85x for messages/s at 64 B and MB/s at 64 KiB.

``--diagnose`` adds a third set, **on, no ack point**: recovery on with ``ack_bytes``,
``ack_interval`` and ``retention`` beyond any run, so that no acknowledgement point is set
while it runs: what the journal costs by itself, apart from the acknowledgement points.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import json
import platform
import statistics
import sys
import time
from typing import Any

import sessionlayer
from bench.aio import (
    OPTIONS,
    Impl,
    Row,
    SessionlayerClient,
    _loop_description,
    format_rows,
    log,
    one_way,
    sessionlayer_servers,
)
from bench.setup import _factory, loops

ON = dataclasses.replace(OPTIONS, resume=True)
OFF = OPTIONS
NO_ACK = dataclasses.replace(ON, ack_bytes=1 << 40, ack_interval=1e9, retention=1 << 40)
SIZES = (64, 65536)
MAX_MESSAGES = {64: 1_000_000, 65536: 40_000}
TARGET = ">=0.85"


async def impl(name: str, options: sessionlayer.Options) -> Impl:
    servers = await sessionlayer_servers(options)
    return Impl(name, servers, functools.partial(SessionlayerClient.open, options=options))


async def check_resumable(each: Impl, want: bool) -> None:
    """The option sets do what they say: the 'on' session is resumable, 'off' is not."""
    client = await each.open(each.servers.echo_port)
    assert isinstance(client, SessionlayerClient)
    assert client.session.resumable is want, (each.name, client.session.resumable)
    await client.close()


async def measure(
    sizes: list[int], repeat: int, duration: float, diagnose: bool = False
) -> dict[str, Any]:
    impls = [await impl("off", OFF), await impl("on", ON)]
    if diagnose:
        impls.append(await impl("on, no ack point", NO_ACK))
    out: dict[str, Any] = {}
    try:
        for each in impls:
            await check_resumable(each, each.name != "off")
            await one_way(each, 64, 2000, 1.0)  # warm-up: code paths, allocator
            await one_way(each, 65536, 50, 1.0)
        for size in sizes:
            runs: dict[str, list[dict[str, float]]] = {each.name: [] for each in impls}
            for _ in range(repeat):
                for each in impls:  # alternating, so drift hits both alike
                    runs[each.name].append(await one_way(each, size, MAX_MESSAGES[size], duration))
            for name, rs in runs.items():
                best = statistics.median_low(sorted(r["msgs_per_s"] for r in rs))
                chosen = next(r for r in rs if r["msgs_per_s"] == best)
                out.setdefault(str(size), {})[name] = {**chosen, "runs": rs}
                log(
                    f"one-way {size:>5} B  recovery {name:<16} {chosen['msgs_per_s']:>12,.0f}"
                    f" msg/s {chosen['mb_per_s']:>9.1f} MB/s  ({chosen['messages']:.0f} messages)"
                )
    finally:
        for each in impls:
            for close in each.servers.closers:
                await close()
    return out


def rows(result: dict[str, Any]) -> list[Row]:
    out = []
    for size, pair in result.items():
        label = "64 B" if size == "64" else "64 KiB" if size == "65536" else f"{size} B"
        on, off = pair["on"], pair["off"]
        small = size == "64"
        out.append(Row(f"one-way {label}", "msg/s", on["msgs_per_s"], off["msgs_per_s"],
                       TARGET if small else ""))  # fmt: skip
        out.append(Row(f"one-way {label}", "MB/s", on["mb_per_s"], off["mb_per_s"],
                       "" if small else TARGET))  # fmt: skip
        bare = pair.get("on, no ack point")
        if bare is not None:
            unit, key = ("msg/s", "msgs_per_s") if small else ("MB/s", "mb_per_s")
            out.append(
                Row(
                    f"{label}, on with no ack point",
                    unit,
                    bare[key],
                    off[key],
                    "",
                    "diagnostic: ack_bytes/ack_interval/retention beyond the run",
                )
            )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.recovery", description="one-way throughput, recovery on vs off"
    )
    parser.add_argument("--loop", choices=("both", "asyncio", "uvloop"), default="both")
    parser.add_argument("--quick", action="store_true", help="0.5 s runs, one each")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the tables")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the median is kept")
    parser.add_argument("--duration", type=float, default=2.0, help="at most this long a run")
    parser.add_argument("--diagnose", action="store_true", help="add 'on, no ack point'")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeat, args.duration = 1, 0.5
    names, skipped = loops(args.loop)
    if skipped:
        log(f"uvloop left out: {skipped}")
    results: dict[str, Any] = {"python": platform.python_version(), "loops": {},
                               "uvloop_skipped": skipped, "repeat": args.repeat}  # fmt: skip
    started = time.perf_counter()
    for name in names:
        with asyncio.Runner(loop_factory=_factory(name)) as runner:
            result = runner.run(measure(list(SIZES), args.repeat, args.duration, args.diagnose))
        results["loops"][name] = {
            "loop": _loop_description(name),
            "one_way": result,
            "rows": [
                dataclasses.asdict(r) | {"ratio": r.ratio, "result": r.verdict or None}
                for r in rows(result)
            ],
        }
    results["seconds"] = time.perf_counter() - started
    all_rows = [r for res in results["loops"].values() for r in rows(res["one_way"])]
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    else:
        print(
            f"recovery on (no store) vs off (resume=False): one-way throughput, median of"
            f" {args.repeat}; Python {results['python']}; {results['seconds']:.0f} s"
        )
        for res in results["loops"].values():
            print(f"\nloop: {res['loop']}")
            print(format_rows(rows(res["one_way"]), baseline="off", measured="on"))
    failed = any(r.verdict == "FAIL" for r in all_rows)
    return 1 if failed and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
