"""Profiling aid for the sessionlayer data path: one side per process.

bench/aio.py runs client and server on one loop; to see what each side costs on its
own, this runs them as two processes, so a profiler attached to one sees one side:

    python -m bench.aio_profile serve --case oneway --count 200000 [--cprofile out.prof]
    python -m bench.aio_profile drive --case oneway --count 200000 --port PORT [--cprofile ...]

``serve`` prints ``port N`` and serves one session: ``oneway`` counts ``--count``
messages and then answers ``done``; ``echo`` echoes.  ``drive`` connects: ``oneway``
sends ``--count`` messages of ``--size`` octets and waits for ``done``; ``pingpong``
makes ``--count`` round trips.  Both stop after ``--time-limit`` seconds at the most.
``--cprofile FILE`` wraps the event loop's run in cProfile; or run either command under
``py-spy record -- python -m bench.aio_profile ...``.  ``--impl baseline`` profiles the
raw-asyncio baseline the same way.

``python -m bench.aio_profile idle --count 1000 [--impl baseline]`` opens idle sessions
against the bench/aio_idle.py server with tracemalloc on and prints where the server's
memory per session goes.

``python -m bench.aio_profile report FILE`` sums a ``py-spy record -f raw`` file into the
cost buckets bench/NOTES.md uses (each sample charged to its innermost known frame).

``python -m bench.aio_profile both --case oneway --profile receiver --tool py-spy``
does the pairing: it starts the other side plainly and the profiled one under the tool,
writing ``profile-<case>-<side>.{prof,txt}`` in ``--out`` (default /tmp).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import sessionlayer
from bench.aio import (
    HOST,
    OPTIONS,
    WRITE_HIGH,
    BaselineClient,
    Client,
    SessionlayerClient,
    idle,
)
from bench.aio_baseline import FrameProtocol

REPO = Path(__file__).resolve().parent.parent


async def serve(case: str, count: int, limit: float, impl: str) -> None:
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[None] = loop.create_future()

    if impl == "baseline":

        def factory() -> FrameProtocol:
            seen = 0

            def on_message(m: bytes) -> None:
                nonlocal seen
                if case == "echo":
                    proto.write(m)
                    return
                seen += 1
                if seen == count:
                    proto.write(b"done")

            def on_lost(_: FrameProtocol) -> None:
                if not finished.done():
                    finished.set_result(None)

            proto = FrameProtocol(on_message, write_buffer_high=WRITE_HIGH, on_lost=on_lost)
            return proto

        server = await loop.create_server(factory, HOST, 0)
        port = server.sockets[0].getsockname()[1]
    else:

        async def handler(session: sessionlayer.Session) -> None:
            try:
                seen = 0
                async for data in session:
                    if case == "echo":
                        await session.send(data)
                        continue
                    seen += 1
                    if seen == count:
                        await session.send(b"done")
            finally:
                if not finished.done():
                    finished.set_result(None)

        sl = await sessionlayer.serve(handler, HOST, 0, options=OPTIONS)
        port = sl.port
    print(f"port {port}", flush=True)
    await asyncio.wait_for(finished, limit)


async def drive(case: str, count: int, size: int, port: int, limit: float, impl: str) -> None:
    client: Client
    if impl == "baseline":
        client = await BaselineClient.open(port)
    else:
        client = await SessionlayerClient.open(port)
    payload = os.urandom(size)
    send, receive = client.send, client.receive
    start = time.perf_counter()
    deadline = start + limit
    done = 0
    if case == "oneway":
        for _ in range(count):
            await send(payload)
            done += 1
        await asyncio.wait_for(receive(), limit)
    else:
        for _ in range(count):
            await send(payload)
            await receive()
            done += 1
            if time.perf_counter() > deadline:
                break
    elapsed = time.perf_counter() - start
    print(f"{case}: {done} in {elapsed:.2f} s = {done / elapsed:,.0f}/s", file=sys.stderr)
    await client.close()


def _run(coro_factory, cprofile: str | None) -> None:  # type: ignore[no-untyped-def]
    profiler = cProfile.Profile() if cprofile else None
    with asyncio.Runner() as runner:
        if profiler is not None:
            profiler.enable()
        try:
            runner.run(coro_factory())
        finally:
            if profiler is not None and cprofile:
                profiler.disable()
                profiler.dump_stats(cprofile)


def both(args: argparse.Namespace) -> None:
    """Start the other side plainly and the profiled side under the tool."""
    out = Path(args.out)
    server_case = "oneway" if args.case == "oneway" else "echo"
    me = [sys.executable, "-m", "bench.aio_profile"]
    common = ["--count", str(args.count), "--impl", args.impl, "--time-limit", str(args.time_limit)]
    stem = out / f"profile-{args.impl}-{args.case}{args.size}-{args.profile}"

    def wrap(cmd: list[str]) -> list[str]:
        if args.tool == "cprofile":
            return [*cmd, "--cprofile", f"{stem}.prof"]
        py_spy = str(Path(sys.executable).parent / "py-spy")
        return [py_spy, "record", "-r", "997", "-f", "raw", "-o", f"{stem}.txt", "--", *cmd]

    server_cmd = [*me, "serve", "--case", server_case, *common]
    if args.profile in ("receiver", "server"):
        server_cmd = wrap(server_cmd)
    server = subprocess.Popen(server_cmd, cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    line = server.stdout.readline()
    while line and not line.startswith("port "):
        line = server.stdout.readline()
    port = line.split()[1]
    drive_cmd = [
        *me,
        "drive",
        "--case",
        args.case,
        "--size",
        str(args.size),
        "--port",
        port,
        *common,
    ]
    if args.profile in ("sender", "client"):
        drive_cmd = wrap(drive_cmd)
    subprocess.run(drive_cmd, cwd=REPO, check=True, timeout=args.time_limit + 30)
    server.wait(timeout=args.time_limit + 30)
    print(f"wrote {stem}.{'prof' if args.tool == 'cprofile' else 'txt'}", file=sys.stderr)


#: Function (as py-spy names it) -> the cost bucket bench/NOTES.md reports.
BUCKETS: dict[str, str] = {}
for _bucket, _names in {
    "machine: tokens_for() in every token predicate (enum.Flag)": ("tokens_for",),
    "machine: table walk + predicates": (
        "_Core._failing",
        "_Core._lookup",
        "_Core._receive_spdu",
        "_Core._owns",
        "_Core._peer_owns",
        "_Core._available",
    ),
    "machine: apply row, event objects": ("_Core._apply", "_Rules._a_data_ind", "_Rules._a_send"),
    "machine: send glue (send_data, _request, Ctx)": (
        "_Requests.send_data",
        "_Requests._request",
        "_Requests.send_data.<locals>.build",
        "_data",
    ),
    "machine: receive glue (_receive_one, events())": (
        "SessionMachine._receive_one",
        "SessionMachine.receive_tsdu",
        "SessionMachine._input_name",
        "SessionMachine.events",
        "SessionMachine.data_to_send",
        "SessionMachine.expedited_to_send",
        "SessionMachine.get_timer",
    ),
    "SPDU encode GT+DT (generic codec)": (
        "encode_tsdu",
        "make",
        "_Core._tsdus",
        "_Core._gt",
        "_Core._encode",
        "encode",
    ),
    "SPDU decode": ("decode_tsdu",),
    "TPKT+COTP framing (send_tsdu)": ("Rfc1006Connection.send_tsdu",),
    "TPKT+COTP parse (receive_data)": ("Rfc1006Connection.receive_data",),
    "socket send (transport.write)": ("_SelectorSocketTransport.write",),
    "socket recv (transport)": (
        "_SelectorSocketTransport._read_ready__data_received",
        "_SelectorSocketTransport._read_ready__get_buffer",
    ),
    "aio: fast path framing (write_data, frame_data, frame_pieces, held writes)": (
        "SessionProtocol.write_data",
        "SessionProtocol.flush_out",
        "SessionProtocol._write_held",
        "frame_data",
        "frame_pieces",
    ),
    "aio: fast path reading (PlainReader: get_buffer, single, parse, _scan, joins)": (
        "SessionProtocol.buffer_updated",
        "PlainReader.get_buffer",
        "PlainReader._room",
        "PlainReader.single",
        "PlainReader.parse",
        "PlainReader._keep",
        "_whole",
        "_whole_messages",
        "_spanning",
        "_scan",
        "_join",
    ),
    "aio: protocol bookkeeping (flush, _dispatch, _feed, _write, timer)": (
        "SessionProtocol.flush",
        "SessionProtocol._dispatch",
        "SessionProtocol._feed",
        "SessionProtocol._tsdu",
        "SessionProtocol._write",
        "SessionProtocol._arm_machine_timer",
        "SessionProtocol.data_received",
    ),
    "aio: Session._event + wake-up": (
        "Session._event",
        "Session._deliver",
        "Session._deliver_one",
        "SessionProtocol.update_reading",
    ),
    "aio: Session.receive / async for": (
        "Session.receive",
        "Session.__anext__",
        "Session._take",
        "Session._pop",
        "Session._next_waiter",
    ),
    "aio: Session.send glue (checks, drain)": ("Session.send", "SessionProtocol.drain"),
    "epoll wait (idle)": ("EpollSelector.select",),
    "event loop, task steps": (
        "BaseEventLoop._run_once",
        "Handle._run",
        "_SelectorSocketTransport._read_ready",
    ),
}.items():
    for _name in _names:
        BUCKETS[_name] = _bucket


def report(path: str) -> None:
    """Print the share of each cost bucket in a py-spy raw file (samples in the loop only)."""
    totals: collections.Counter[str] = collections.Counter()
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        stack, samples = line.rsplit(" ", 1)
        names = [re.sub(r" \(.*", "", frame) for frame in stack.split(";")]
        if "BaseEventLoop._run_once" not in names:
            continue  # start-up, imports
        where = next((BUCKETS[n] for n in reversed(names) if n in BUCKETS), "other")
        totals[where] += int(samples)
    idle = totals.pop("epoll wait (idle)", 0)
    busy = sum(totals.values())
    print(f"{path}: {busy + idle} samples in the loop, {idle} idle in epoll (not counted below)")
    for bucket, count in totals.most_common():
        print(f"{100 * count / busy:5.1f}%  {bucket}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.aio_profile")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("report").add_argument("file")
    for name in ("serve", "drive", "both", "idle"):
        p = sub.add_parser(name)
        p.add_argument("--case", default="oneway")
        p.add_argument("--count", type=int, default=200_000)
        p.add_argument("--size", type=int, default=64)
        p.add_argument("--impl", choices=("sessionlayer", "baseline"), default="sessionlayer")
        p.add_argument("--time-limit", type=float, default=60.0)
        p.add_argument("--cprofile")
        if name == "drive":
            p.add_argument("--port", type=int, required=True)
        if name == "idle":
            p.add_argument("--top", type=int, default=25, help="allocation sites to list")
        if name == "both":
            p.add_argument(
                "--profile", choices=("sender", "receiver", "client", "server"), required=True
            )
            p.add_argument("--tool", choices=("cprofile", "py-spy"), default="py-spy")
            p.add_argument("--out", default="/tmp")
    args = parser.parse_args()
    if args.cmd == "report":
        report(args.file)
    elif args.cmd == "serve":
        _run(lambda: serve(args.case, args.count, args.time_limit, args.impl), args.cprofile)
    elif args.cmd == "drive":
        _run(
            lambda: drive(args.case, args.count, args.size, args.port, args.time_limit, args.impl),
            args.cprofile,
        )
    elif args.cmd == "idle":
        result = asyncio.run(
            idle(args.impl, "asyncio", args.count, args.time_limit, "--trace-top", str(args.top))
        )
        print({k: v for k, v in result.items()}, file=sys.stderr)
    else:
        both(args)


if __name__ == "__main__":
    main()
