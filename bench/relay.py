"""The relay's throughput and added latency, beside the direct path, in the same run.

    python -m bench.relay            # about 25 s
    python -m bench.relay --quick    # a smoke run (~8 s)
    python -m bench.relay --json

Three paths from the same client to the same upstream (a sessionlayer server speaking
plain X.225, as an OSI device would: kernel duplex, TPDU size 8192, user data instead of
the hello), all on 127.0.0.1:

* **direct**: client -> upstream;
* **pipe**: client -> a byte pipe (``python -m bench.relay --pipe``: an asyncio TCP
  forwarder in a child process, what stunnel or a port forward does) -> upstream;
* **relay**: client -> ``sessionlayer relay`` in a child process (both legs terminated,
  every SPDU through the state table, TSDUs reassembled and re-segmented) -> upstream.

The client and the upstream share this process's event loop (the standard asyncio loop:
the relay's command line runs on it too).  Measured: one-way throughput with 1 KiB and
64 KiB messages (``await send()`` each, timed until the upstream has the last one; median
of ``--repeat`` runs, each on a new session) and ping-pong with 64 B (p50 and p99 of
``--rtts`` round trips after 200 unmeasured ones).  The table gives each path's figure,
relay / direct and relay / pipe as ratios, and the latency the relay adds (relay p50 minus
direct p50).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import sessionlayer
from sessionlayer import SessionConfig

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent
CONFIG = SessionConfig.kernel_duplex(max_user_data=None)
OPTIONS = sessionlayer.Options(
    keepalive_interval=None, idle_timeout=None, resume=False,
    write_buffer_high=1 << 20, max_buffered_bytes=4 << 20, max_tsdu_size=1 << 20,
)  # fmt: skip
SIZES = (1024, 65536)
MAX_MESSAGES = {1024: 300_000, 65536: 20_000}
perf = time.perf_counter


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ============================================================ the upstream and the client


class Upstream:
    """A sink (one-way) and an echo server (ping-pong), sessionlayer, plain X.225."""

    def __init__(self) -> None:
        self.target = 0
        self.received = 0
        self.done: asyncio.Future[float] | None = None
        self.sink: sessionlayer.Server | None = None
        self.echo: sessionlayer.Server | None = None

    async def start(self) -> None:
        async def sink(session: sessionlayer.Session) -> None:
            async for _ in session:
                self.received += 1
                self._check()

        async def echo(session: sessionlayer.Session) -> None:
            async for data in session:
                await session.send(data)

        args: dict[str, Any] = dict(config=CONFIG, options=OPTIONS,
                                    accept_data=lambda request: b"bench")  # fmt: skip
        self.sink = await sessionlayer.serve(sink, HOST, 0, **args)
        self.echo = await sessionlayer.serve(echo, HOST, 0, **args)

    def _check(self) -> None:
        done = self.done
        if done is not None and not done.done() and self.received >= self.target:
            done.set_result(perf())

    def arm(self) -> None:
        """A new run: count from zero, no target yet."""
        self.target, self.received = 1 << 62, 0
        self.done = asyncio.get_running_loop().create_future()

    async def wait_for(self, messages: int) -> float:
        """When the sink had received ``messages`` (perf_counter)."""
        self.target = messages
        self._check()
        assert self.done is not None
        return await asyncio.wait_for(self.done, 60)

    async def stop(self) -> None:
        for server in (self.sink, self.echo):
            if server is not None:
                server.close()
                await server.wait_closed()


async def connect(port: int) -> sessionlayer.Session:
    return await sessionlayer.connect(HOST, port, user_data=b"bench", config=CONFIG,
                                      options=OPTIONS)  # fmt: skip


async def one_way(port: int, upstream: Upstream, size: int, limit: int,
                  duration: float) -> dict[str, float]:  # fmt: skip
    """Up to ``limit`` messages of ``size`` octets, or for ``duration`` s of sending."""
    session = await connect(port)
    payload = os.urandom(size)
    sent = 0
    try:
        upstream.arm()
        start = perf()
        deadline = start + duration
        while sent < limit and perf() < deadline:
            await session.send(payload)
            sent += 1
        end = await upstream.wait_for(sent)
    finally:
        session.abort()
    seconds = end - start
    return {"messages": sent, "seconds": seconds, "msgs_per_s": sent / seconds,
            "mb_per_s": sent * size / seconds / 1e6}  # fmt: skip


async def ping_pong(port: int, rtts: int) -> dict[str, float]:
    session = await connect(port)
    payload = b"x" * 64
    samples: list[int] = []
    try:
        for i in range(200 + rtts):
            t0 = time.perf_counter_ns()
            await session.send(payload)
            await session.receive()
            if i >= 200:
                samples.append(time.perf_counter_ns() - t0)
    finally:
        session.abort()
    samples.sort()

    def pct(p: float) -> float:  # nearest rank
        return samples[max(0, math.ceil(p * len(samples)) - 1)] / 1e3

    return {"round_trips": len(samples), "p50_us": pct(0.50), "p99_us": pct(0.99)}


# ============================================================ the two children


async def _child(*args: str) -> tuple[asyncio.subprocess.Process, int]:
    """Start a child; its port from the first stderr line ("... listening on HOST:PORT")."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), str(REPO),
                                                    env.get("PYTHONPATH")) if p)  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    assert proc.stderr is not None
    line = (await asyncio.wait_for(proc.stderr.readline(), 20)).decode()
    found = re.search(r"listening on \S+?:(\d+)", line)
    if not found:
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"{args}: {line!r}")
    return proc, int(found[1])


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def start_relay(upstream: int) -> tuple[asyncio.subprocess.Process, int]:
    return await _child("-m", "sessionlayer", "relay", "--listen", f"{HOST}:0",
                        "--upstream", f"{HOST}:{upstream}", "--idle-timeout", "0",
                        "--max-size", str(1 << 20))  # fmt: skip


async def start_pipe(upstream: int) -> tuple[asyncio.subprocess.Process, int]:
    return await _child("-m", "bench.relay", "--pipe", str(upstream))


async def pipe(upstream: int) -> None:
    """(Child) A byte pipe to ``upstream``: what a port forward does, nothing checked."""

    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(1 << 16):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(HOST, upstream)
        await asyncio.gather(forward(reader, up_writer), forward(up_reader, writer))

    server = await asyncio.start_server(on_client, HOST, 0)
    print(f"pipe: listening on {HOST}:{server.sockets[0].getsockname()[1]}", file=sys.stderr,
          flush=True)  # fmt: skip
    async with server:
        await server.serve_forever()


# ============================================================ the run


async def run(args: argparse.Namespace) -> dict[str, Any]:
    upstream = Upstream()
    await upstream.start()
    assert upstream.sink is not None and upstream.echo is not None
    children = []
    results: dict[str, Any] = {"one_way": {}, "ping_pong": {}}
    try:
        relay_sink = await start_relay(upstream.sink.port)
        children.append(relay_sink[0])
        relay_echo = await start_relay(upstream.echo.port)
        children.append(relay_echo[0])
        pipe_sink = await start_pipe(upstream.sink.port)
        children.append(pipe_sink[0])
        pipe_echo = await start_pipe(upstream.echo.port)
        children.append(pipe_echo[0])
        sinks = {"direct": upstream.sink.port, "pipe": pipe_sink[1], "relay": relay_sink[1]}
        echoes = {"direct": upstream.echo.port, "pipe": pipe_echo[1], "relay": relay_echo[1]}
        for port in sinks.values():  # warm-up
            await one_way(port, upstream, 1024, 2000, 1.0)
        for size in SIZES:
            for path, port in sinks.items():
                runs = [await one_way(port, upstream, size, MAX_MESSAGES[size], args.duration)
                        for _ in range(args.repeat)]  # fmt: skip
                best = statistics.median_low(sorted(r["mb_per_s"] for r in runs))
                chosen = next(r for r in runs if r["mb_per_s"] == best)
                results["one_way"].setdefault(str(size), {})[path] = chosen
                log(f"one-way {size:>5} B  {path:<6} {chosen['mb_per_s']:>8.1f} MB/s "
                    f"{chosen['msgs_per_s']:>10,.0f} msg/s")  # fmt: skip
        for path, port in echoes.items():
            r = await ping_pong(port, args.rtts)
            results["ping_pong"][path] = r
            log(f"ping-pong 64 B   {path:<6} p50 {r['p50_us']:8.1f} us  p99 {r['p99_us']:8.1f} us")
    finally:
        for child in children:
            await _stop(child)
        await upstream.stop()
    return results


def table(results: dict[str, Any]) -> str:
    head = ("metric", "unit", "direct", "pipe", "relay", "relay/direct", "relay/pipe")
    body = []
    for size, paths in results["one_way"].items():
        label = {"1024": "1 KiB", "65536": "64 KiB"}.get(size, f"{size} B")
        d, p, r = (paths[k]["mb_per_s"] for k in ("direct", "pipe", "relay"))
        body.append((f"one-way {label}", "MB/s", f"{d:.1f}", f"{p:.1f}", f"{r:.1f}",
                     f"{r / d:.2f}x", f"{r / p:.2f}x"))  # fmt: skip
    pp = results["ping_pong"]
    for key, name in (("p50_us", "p50"), ("p99_us", "p99")):
        d, p, r = (pp[k][key] for k in ("direct", "pipe", "relay"))
        body.append((f"ping-pong 64 B {name}", "us", f"{d:.0f}", f"{p:.0f}", f"{r:.0f}",
                     f"{r / d:.2f}x", f"{r / p:.2f}x"))  # fmt: skip
    added = pp["relay"]["p50_us"] - pp["direct"]["p50_us"]
    piped = pp["pipe"]["p50_us"] - pp["direct"]["p50_us"]
    widths = [max(len(row[i]) for row in (head, *body)) for i in range(len(head))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(head, widths, strict=True)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]  # fmt: skip
    lines += ["| " + " | ".join(c.ljust(w) if i < 2 else c.rjust(w)
                                for i, (c, w) in enumerate(zip(row, widths, strict=True)))
              + " |" for row in body]  # fmt: skip
    lines.append(f"added latency (p50): relay {added:.0f} us, byte pipe {piped:.0f} us")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.relay", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--json", action="store_true", help="JSON instead of the table")
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per one-way run")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rtts", type=int, default=2000)
    parser.add_argument("--pipe", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.pipe:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(pipe(args.pipe))
        return 0
    if args.quick:
        args.duration, args.repeat, args.rtts = 0.5, 1, 300
    results = asyncio.run(run(args))
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        print("relay: throughput and added latency (bench/relay.py)")
        print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
