"""Benchmarks of the asyncio binding, each beside a raw-asyncio baseline.

    python -m bench.aio                 # uvloop when installed, else asyncio
    python -m bench.aio --loop asyncio  # force the standard loop (--uvloop forces uvloop)
    python -m bench.aio --json          # machine-readable results on stdout
    python -m bench.aio --quick         # smaller counts, a smoke run (~20 s)

What runs (all on 127.0.0.1, client and server on one event loop in this process,
except the idle sessions whose server is a child process so that its RSS is its own):

* one-way throughput, 64 B, 1 KiB and 64 KiB messages: the client sends up to N
  messages (or for ``--duration`` seconds, whichever ends first), ``await``-ing each
  send; the server counts them.  Timed from the first send to the moment the server
  received the last one (a future resolved by the receiver; no sleeps).  Median of
  ``--repeat`` runs, each on a fresh connection.
* ping-pong latency, 64 B: request, echo, response; ``--rtts`` round trips after 200
  unmeasured ones; p50 and p99.
* idle sessions, 1,000 and 10,000: time to open them (64 connects in flight; a session
  counts once established: the AC received for sessionlayer, a hello answered for the
  baseline) and the server's RSS growth per session, measured in a child process after
  50 warm-up sessions were opened and closed.

The baseline (bench/aio_baseline.py) is length-prefixed messages over
``asyncio.Protocol``: one ``transport.write`` per message, a receiver that parses the
4-octet prefix and slices each message out, and the same high-water mark as sessionlayer.

sessionlayer runs with ``OPTIONS`` below: plain sessions (``resume=False``: no session
recovery, no journal, no acknowledgement points; recovery, the default since issue 8, is
measured beside it by bench/recovery.py), no keepalive and no idle timer (timers would
only add noise), a 1 MiB write high-water mark (the baseline uses the same), 4 MiB of
receive buffering before reading pauses and 65408-octet TPDUs -- what a user moving bulk
data would set.  Everything else is the default (duplex, no TSDU limit).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import signal
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import sessionlayer
from bench.aio_baseline import FrameProtocol
from bench.aio_idle import raise_nofile

HOST = "127.0.0.1"
WRITE_HIGH = 1 << 20
# What a user tunes for bulk transfer between sessionlayer peers: no liveness timers in
# a benchmark, the same write high-water mark as the baseline, room for a fast sender, and
# the largest TPDU ISO 8073's preferred maximum TPDU size parameter allows (a peer that does
# not know the parameter, such as libiec61850, falls back to 8192).
# Plain sessions (resume=False): the issue 4/7 figures were measured before recovery existed
# and stay comparable; bench/recovery.py measures recovery on beside it.
OPTIONS = sessionlayer.Options(
    resume=False,
    keepalive_interval=None,
    idle_timeout=None,
    write_buffer_high=WRITE_HIGH,
    max_buffered_bytes=4 << 20,
    tpdu_size=65408,
)
SIZES = (64, 1024, 65536)
MAX_MESSAGES = {64: 1_000_000, 1024: 500_000, 65536: 40_000}
IDLE_CONCURRENCY = 64
REPO = Path(__file__).resolve().parent.parent
perf = time.perf_counter


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ============================================================ one-way throughput


@dataclass
class Sink:
    """The receiver's side of one throughput run."""

    done: asyncio.Future[float]
    count: int = 0
    nbytes: int = 0
    expected: float = float("inf")

    def hit(self, size: int) -> None:
        self.count += 1
        self.nbytes += size
        if self.count >= self.expected and not self.done.done():
            self.done.set_result(perf())

    def finish(self, sent: int) -> None:
        """The sender stopped after ``sent`` messages."""
        self.expected = sent
        if self.count >= sent and not self.done.done():
            self.done.set_result(perf())


@dataclass
class Servers:
    """The servers of one implementation: a counting sink and an echo."""

    sink_port: int = 0
    echo_port: int = 0
    sink: Sink | None = None
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    servers: list[Any] = field(default_factory=list)  # the server objects (sessionlayer's)


async def baseline_servers() -> Servers:
    loop = asyncio.get_running_loop()
    s = Servers()

    def sink_factory() -> FrameProtocol:
        sink = s.sink
        assert sink is not None
        return FrameProtocol(lambda m: sink.hit(len(m)), write_buffer_high=WRITE_HIGH)

    def echo_factory() -> FrameProtocol:
        proto = FrameProtocol(lambda m: proto.write(m), write_buffer_high=WRITE_HIGH)
        return proto

    for factory, attr in ((sink_factory, "sink_port"), (echo_factory, "echo_port")):
        server = await loop.create_server(factory, HOST, 0)
        setattr(s, attr, server.sockets[0].getsockname()[1])

        async def close(server: asyncio.Server = server) -> None:
            server.close()
            await server.wait_closed()

        s.closers.append(close)
    return s


async def sessionlayer_servers(options: sessionlayer.Options = OPTIONS, **serve: Any) -> Servers:
    """A counting sink and an echo server with ``options`` (``serve``: more arguments of
    ``sessionlayer.serve``, such as ``store=``)."""
    s = Servers()

    async def sink_handler(session: sessionlayer.Session) -> None:
        sink = s.sink
        assert sink is not None
        async for data in session:
            sink.hit(len(data))

    async def echo_handler(session: sessionlayer.Session) -> None:
        async for data in session:
            await session.send(data)

    for handler, attr in ((sink_handler, "sink_port"), (echo_handler, "echo_port")):
        server = await sessionlayer.serve(handler, HOST, 0, options=options, **serve)
        setattr(s, attr, server.port)
        s.servers.append(server)

        async def close(server: sessionlayer.Server = server) -> None:
            server.close()
            await server.wait_closed()

        s.closers.append(close)
    return s


class Client:
    """One connection to a server, with the same three calls for both implementations."""

    async def send(self, data: bytes) -> None:
        raise NotImplementedError

    async def receive(self) -> bytes:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class BaselineClient(Client):
    def __init__(self, proto: FrameProtocol) -> None:
        self.proto = proto
        self.send = proto.send  # type: ignore[method-assign,assignment]
        self._inbox: list[bytes] = []
        self._waiter: asyncio.Future[None] | None = None
        proto.on_message = self._on_message

    @classmethod
    async def open(cls, port: int) -> BaselineClient:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(
            lambda: FrameProtocol(write_buffer_high=WRITE_HIGH), HOST, port
        )
        return cls(proto)

    def _on_message(self, payload: bytes) -> None:
        self._inbox.append(payload)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def receive(self) -> bytes:
        while not self._inbox:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return self._inbox.pop(0)

    async def close(self) -> None:
        assert self.proto.transport is not None
        self.proto.transport.close()


class SessionlayerClient(Client):
    def __init__(self, session: sessionlayer.Session) -> None:
        self.session = session
        self.send = session.send  # type: ignore[method-assign]
        self.receive = session.receive  # type: ignore[method-assign]

    @classmethod
    async def open(cls, port: int, options: sessionlayer.Options = OPTIONS) -> SessionlayerClient:
        return cls(await sessionlayer.connect(HOST, port, options=options))

    async def close(self) -> None:
        await self.session.release()


@dataclass
class Impl:
    name: str
    servers: Servers
    open: Callable[[int], Awaitable[Client]]


async def one_way(impl: Impl, size: int, limit: int, duration: float) -> dict[str, float]:
    """Send up to ``limit`` messages of ``size`` octets (or for ``duration`` s)."""
    loop = asyncio.get_running_loop()
    sink = Sink(loop.create_future())
    impl.servers.sink = sink
    client = await impl.open(impl.servers.sink_port)
    payload = os.urandom(size)
    send = client.send
    gc.collect()
    sent = 0
    start = perf()
    deadline = start + duration
    while sent < limit:
        await send(payload)
        sent += 1
        if not sent & 63 and perf() >= deadline:
            break
    sink.finish(sent)
    end = await asyncio.wait_for(sink.done, timeout=60)
    elapsed = end - start
    await client.close()
    assert sink.count == sent, (sink.count, sent)
    return {
        "messages": sent,
        "seconds": elapsed,
        "msgs_per_s": sent / elapsed,
        "mb_per_s": sent * size / elapsed / 1e6,
    }


async def ping_pong(impl: Impl, rtts: int, duration: float) -> dict[str, float]:
    client = await impl.open(impl.servers.echo_port)
    payload = os.urandom(64)
    send, receive = client.send, client.receive
    for _ in range(200):  # warm-up
        await send(payload)
        await receive()
    gc.collect()
    samples: list[int] = []
    clock = time.perf_counter_ns
    deadline = perf() + duration
    for _ in range(rtts):
        t0 = clock()
        await send(payload)
        reply = await receive()
        samples.append(clock() - t0)
        if perf() >= deadline:
            break
    assert len(reply) == 64
    await client.close()
    samples.sort()
    return {
        "round_trips": len(samples),
        "p50_us": _percentile(samples, 50) / 1e3,
        "p99_us": _percentile(samples, 99) / 1e3,
        "mean_us": statistics.fmean(samples) / 1e3,
    }


def _percentile(sorted_samples: list[int], pct: float) -> float:
    """Nearest-rank percentile."""
    rank = max(1, -(-len(sorted_samples) * pct // 100))
    return float(sorted_samples[int(rank) - 1])


# ============================================================ idle sessions


class Child:
    """The idle-sessions server in a child process (bench/aio_idle.py)."""

    running: ClassVar[set[int]] = set()
    """Pids of the children started and not yet stopped: ``kill_children()`` ends them."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc = proc
        self.port = port

    @classmethod
    async def start(cls, impl: str, loop_name: str, *extra: str) -> Child:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.aio_idle",
            "--impl",
            impl,
            "--loop",
            loop_name,
            *extra,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=REPO,
        )
        cls.running.add(proc.pid)
        try:
            line = await asyncio.wait_for(cls._read(proc), timeout=30)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            cls.running.discard(proc.pid)
            raise
        return cls(proc, int(line.split()[1]))

    @staticmethod
    async def _read(proc: asyncio.subprocess.Process) -> str:
        assert proc.stdout is not None
        line = (await proc.stdout.readline()).decode().strip()
        if not line:
            raise RuntimeError("the idle-sessions server exited")
        return line

    async def stat(self) -> tuple[int, int]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"stat\n")
        _, rss, live = (await asyncio.wait_for(self._read(self.proc), timeout=30)).split()
        return int(rss), int(live)

    async def command(self, line: str) -> str:
        """Send one command line; return the child's answer."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        return await asyncio.wait_for(self._read(self.proc), timeout=60)

    async def wait_live(self, want: int, timeout: float) -> tuple[int, int]:
        deadline = perf() + timeout
        while True:
            rss, live = await self.stat()
            if live == want or perf() >= deadline:
                return rss, live
            await asyncio.sleep(0.05)  # polling the child, not timing anything

    def cpu_seconds(self) -> float:
        """User + system CPU time the child has used so far (``/proc/<pid>/stat``)."""
        return proc_cpu_seconds(self.proc.pid)

    async def stop(self) -> None:
        assert self.proc.stdin is not None
        try:
            with contextlib.suppress(ConnectionError):
                self.proc.stdin.write(b"quit\n")
                self.proc.stdin.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), timeout=10)
        finally:  # also when this task is cancelled: the child never outlives the run
            if self.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
            Child.running.discard(self.proc.pid)


def kill_children() -> None:
    """SIGKILL every child ``Child.start`` made that was not stopped (an exit path)."""
    for pid in list(Child.running):
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        Child.running.discard(pid)


_TICKS = os.sysconf("SC_CLK_TCK")


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of process ``pid`` in seconds (Linux; NaN elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / _TICKS


async def _open_baseline(port: int) -> Callable[[], None]:
    loop = asyncio.get_running_loop()
    answered: asyncio.Future[None] = loop.create_future()

    def on_message(_: bytes) -> None:
        if not answered.done():
            answered.set_result(None)

    transport, proto = await loop.create_connection(lambda: FrameProtocol(on_message), HOST, port)
    proto.write(b"hello")
    await answered
    return transport.abort


async def _open_sessionlayer(port: int) -> Callable[[], None]:
    session = await sessionlayer.connect(HOST, port, options=OPTIONS)
    return session.abort


async def _open_many(
    opener: Callable[[int], Awaitable[Callable[[], None]]], port: int, count: int, timeout: float
) -> tuple[list[Callable[[], None]], float, str | None]:
    """Open up to ``count`` sessions, ``IDLE_CONCURRENCY`` at a time, within ``timeout``."""
    closers: list[Callable[[], None]] = []
    started = 0
    error: str | None = None
    start = perf()
    deadline = start + timeout

    async def worker() -> None:
        nonlocal started, error
        while started < count and error is None:
            if perf() >= deadline:
                error = f"time limit ({timeout:.0f} s) reached"
                return
            started += 1
            try:
                closers.append(await opener(port))
            except (OSError, sessionlayer.SessionLayerError, TimeoutError) as exc:
                error = f"{type(exc).__name__}: {exc}"
                return

    await asyncio.gather(*(worker() for _ in range(IDLE_CONCURRENCY)))
    return closers, perf() - start, error


async def idle(
    impl: str, loop_name: str, count: int, timeout: float, *extra: str, profile: bool = False
) -> dict[str, Any]:
    """Open ``count`` sessions against a server child; ``profile``: the child profiles the
    opens (``extra`` then names the tool: ``--profile cprofile|pyinstrument``)."""
    opener = _open_baseline if impl == "baseline" else _open_sessionlayer
    child = await Child.start(impl, loop_name, *extra)
    try:
        warm, _, _ = await _open_many(opener, child.port, 50, timeout)  # first-use costs
        for close in warm:
            close()
        base_rss, _ = await child.wait_live(0, 10)
        if profile:
            await child.command("profile-start")
        server_cpu, client_cpu = child.cpu_seconds(), time.process_time()
        closers, elapsed, error = await _open_many(opener, child.port, count, timeout)
        server_cpu = child.cpu_seconds() - server_cpu
        client_cpu = time.process_time() - client_cpu
        if profile:
            await child.command("profile-stop")
        rss, live = await child.wait_live(len(closers), 10)
        for close in closers:
            close()
    finally:
        await child.stop()
    opened = len(closers)
    return {
        "requested": count,
        "opened": opened,
        "live_on_server": live,
        "seconds": elapsed,
        "conns_per_s": opened / elapsed if elapsed else 0.0,
        "server_rss_base": base_rss,
        "server_rss": rss,
        "rss_per_session": (rss - base_rss) / opened if opened else float("nan"),
        # CPU used while opening (the server's from /proc, in clock ticks; the client's is
        # this process's): the side near 1 s per second of `seconds` is the bottleneck.
        "server_cpu_s": server_cpu,
        "client_cpu_s": client_cpu,
        "error": error,
    }


# ============================================================ the run


@dataclass
class Row:
    metric: str
    unit: str
    sl: float | None
    base: float | None
    target: str = ""  # ">=1.0", "<=1.2", ... on sessionlayer/baseline; "" for information
    note: str = ""
    absolute: bool = False  # the target bounds the sessionlayer figure itself, not the ratio

    @property
    def ratio(self) -> float | None:
        if self.sl is None or not self.base:
            return None
        return self.sl / self.base

    @property
    def verdict(self) -> str:
        ratio = self.sl if self.absolute else self.ratio
        if not self.target:
            return ""
        if ratio is None:
            return "n/a"
        bound = float(self.target[2:])
        ok = ratio >= bound if self.target.startswith(">=") else ratio <= bound
        return "PASS" if ok else "FAIL"


def _loop_name(choice: str) -> tuple[str, str | None]:
    """The loop to run and, when uvloop was skipped or refused, why."""
    if choice == "asyncio":
        return "asyncio", None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            sys.exit("--uvloop: uvloop is not installed (pip install 'sessionlayer[uvloop]')")
        return "asyncio", None
    problem = _probe(uvloop.new_event_loop)
    if problem is None:
        return "uvloop", None
    why = f"sessionlayer does not run on uvloop {getattr(uvloop, '__version__', '?')}: {problem}"
    if choice == "uvloop":
        sys.exit(f"--uvloop: {why}")
    return "asyncio", why


def _where(ctx: dict[str, Any]) -> str:
    """An exception the loop reported, with the innermost file:line it came from."""
    exc = ctx.get("exception")
    if exc is None:
        return str(ctx.get("message"))
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    at = f" at {Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}" if tb else ""
    return f"{type(exc).__name__}{at}"


def _probe(factory: Callable[[], asyncio.AbstractEventLoop]) -> str | None:
    """One session on a loop from ``factory``: None if it works, else what went wrong."""
    errors: list[str] = []

    async def echo(session: sessionlayer.Session) -> None:
        async for data in session:
            await session.send(data)

    async def attempt() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: errors.append(_where(ctx)))
        quick = sessionlayer.Options(connect_timeout=2, handshake_timeout=2, release_timeout=2)
        async with await sessionlayer.serve(echo, HOST, 0, options=quick) as server:
            session = await sessionlayer.connect(HOST, server.port, options=quick)
            await session.send(b"probe")
            if await asyncio.wait_for(session.receive(), 2) != b"probe":
                raise RuntimeError("echo mismatch")
            await session.release()

    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(attempt())
    except Exception as exc:
        detail = f"; loop reported {errors[0]}" if errors else ""
        return f"{type(exc).__name__}: {exc}{detail}".replace(": ;", ";")
    return None


def _loop_description(name: str) -> str:
    if name == "uvloop":
        import uvloop

        return f"uvloop {getattr(uvloop, '__version__', '?')}"
    return f"asyncio {type(asyncio.new_event_loop()).__name__}"


async def run(args: argparse.Namespace, loop_name: str) -> dict[str, Any]:
    soft, hard = raise_nofile()
    results: dict[str, Any] = {"one_way": {}, "ping_pong": {}, "idle": {}}
    impls = [
        Impl("baseline", await baseline_servers(), BaselineClient.open),
        Impl("sessionlayer", await sessionlayer_servers(), SessionlayerClient.open),
    ]
    try:
        for impl in impls:  # warm-up: imports, code paths, allocator
            await one_way(impl, 64, 2000, 1.0)
            await one_way(impl, 65536, 50, 1.0)
        for size in args.sizes:
            limit = args.messages or MAX_MESSAGES[size]
            for impl in impls:
                runs = [await one_way(impl, size, limit, args.duration) for _ in range(args.repeat)]
                best = statistics.median_low(sorted(r["msgs_per_s"] for r in runs))
                chosen = next(r for r in runs if r["msgs_per_s"] == best)
                results["one_way"].setdefault(str(size), {})[impl.name] = {**chosen, "runs": runs}
                log(
                    f"one-way {size:>5} B  {impl.name:<12} {chosen['msgs_per_s']:>12,.0f} msg/s"
                    f" {chosen['mb_per_s']:>9.1f} MB/s  ({chosen['messages']} messages)"
                )
        for impl in impls:
            r = await ping_pong(impl, args.rtts, 20.0)
            results["ping_pong"][impl.name] = r
            log(
                f"ping-pong         {impl.name:<12} p50 {r['p50_us']:8.1f} us"
                f"  p99 {r['p99_us']:8.1f} us  ({r['round_trips']} round trips)"
            )
    finally:
        for impl in impls:
            for close in impl.servers.closers:
                await close()
    if args.idle:
        log(f"RLIMIT_NOFILE: soft {soft}, hard {hard}")
    for count in args.idle:
        for name in ("baseline", "sessionlayer"):
            gc.collect()
            r = await idle(name, loop_name, count, args.idle_timeout)
            results["idle"].setdefault(str(count), {})[name] = r
            log(
                f"idle {count:>6}       {name:<12} opened {r['opened']} in {r['seconds']:.2f} s"
                f" ({r['conns_per_s']:,.0f}/s), server RSS {r['rss_per_session']:,.0f} B/session"
                + (f"  [{r['error']}]" if r["error"] else "")
            )
    results["rlimit_nofile"] = [soft, hard]
    return results


def rows(results: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    targets = {(64, "msgs"): ">=1.0", (65536, "mb"): ">=0.9"}
    for size, pair in results["one_way"].items():
        label = {"64": "64 B", "1024": "1 KiB", "65536": "64 KiB"}.get(size, f"{size} B")
        sl, base = pair["sessionlayer"], pair["baseline"]
        out.append(
            Row(
                f"one-way {label}",
                "msg/s",
                sl["msgs_per_s"],
                base["msgs_per_s"],
                targets.get((int(size), "msgs"), ""),
            )
        )
        out.append(
            Row(
                f"one-way {label}",
                "MB/s",
                sl["mb_per_s"],
                base["mb_per_s"],
                targets.get((int(size), "mb"), ""),
            )
        )
    pp = results["ping_pong"]
    if pp:
        sl, base = pp["sessionlayer"], pp["baseline"]
        out.append(Row("ping-pong 64 B p50", "us", sl["p50_us"], base["p50_us"], "<=1.2"))
        out.append(Row("ping-pong 64 B p99", "us", sl["p99_us"], base["p99_us"]))
    for count, pair in results["idle"].items():
        sl, base = pair["sessionlayer"], pair["baseline"]
        note = ""
        for name, r in (("sessionlayer", sl), ("baseline", base)):
            if r["opened"] < r["requested"]:
                note += f"{name}: {r['opened']} of {r['requested']} opened ({r['error']}); "
        label = f"idle {int(count):,}"
        out.append(Row(f"{label} open", "conn/s", sl["conns_per_s"], base["conns_per_s"], "", note))
        out.append(
            Row(
                f"{label} server RSS",
                "B/session",
                sl["rss_per_session"],
                base["rss_per_session"],
                "<=2.0",
            )
        )
    return out


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def table(results: dict[str, Any]) -> str:
    return format_rows(rows(results))


def format_rows(
    all_rows: list[Row], baseline: str = "baseline", measured: str = "sessionlayer"
) -> str:
    """A Markdown table of ``all_rows``, then a note for each row that has one."""
    head = ("metric", "unit", measured, baseline, "ratio", "target", "result")
    body = [
        (
            r.metric,
            r.unit,
            _fmt(r.sl),
            _fmt(r.base),
            "-" if r.ratio is None else f"{r.ratio:.2f}x",
            (f"{r.target} {r.unit}" if r.absolute else f"{r.target}x") if r.target else "-",
            r.verdict or "info",
        )
        for r in all_rows
    ]
    widths = [max(len(line[i]) for line in (head, *body)) for i in range(len(head))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(head, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    for line in body:
        cells = [
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"note: {r.metric}: {r.note}" for r in all_rows if r.note]
    return "\n".join(lines + notes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.aio", description="sessionlayer asyncio benchmarks vs raw asyncio"
    )
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="event loop (auto: uvloop when installed)",
    )
    parser.add_argument(
        "--uvloop", action="store_const", dest="loop", const="uvloop", help="same as --loop uvloop"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument(
        "--sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=list(SIZES),
        help="one-way message sizes (default 64,1024,65536)",
    )
    parser.add_argument(
        "--messages",
        type=int,
        default=0,
        help="one-way: messages per run (default: by size, bounded by --duration)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=2.0,
        help="one-way: at most this many seconds of sending per run",
    )
    parser.add_argument("--repeat", type=int, default=3, help="one-way runs; the median is kept")
    parser.add_argument("--rtts", type=int, default=2000, help="ping-pong round trips")
    parser.add_argument(
        "--idle",
        type=lambda s: [int(x) for x in s.split(",") if x],
        default=[1000, 10000],
        help="idle session counts ('' to skip)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=30.0,
        help="at most this many seconds to open each batch of idle sessions",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.repeat, args.rtts = 0.5, 1, 500
        args.idle = [c // 10 for c in args.idle]
    loop_name, skipped = _loop_name(args.loop)
    if skipped:
        log(f"uvloop is installed but NOT used: {skipped}")
    factory = None
    if loop_name == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    description = _loop_description(loop_name)
    log(
        f"loop: {description}; Python {platform.python_version()};"
        f" sessionlayer {sessionlayer.__version__}"
    )
    started = perf()
    with asyncio.Runner(loop_factory=factory) as runner:
        results = runner.run(run(args, loop_name))
    results["loop"] = description
    results["uvloop_skipped"] = skipped
    results["python"] = platform.python_version()
    results["options"] = {
        "resume": OPTIONS.resume,
        "keepalive_interval": OPTIONS.keepalive_interval,
        "idle_timeout": OPTIONS.idle_timeout,
        "write_buffer_high": OPTIONS.write_buffer_high,
        "max_buffered_bytes": OPTIONS.max_buffered_bytes,
        "tpdu_size": OPTIONS.tpdu_size,
        "baseline_write_buffer_high": WRITE_HIGH,
    }
    results["seconds"] = perf() - started
    results["rows"] = [
        {
            "metric": r.metric,
            "unit": r.unit,
            "sessionlayer": r.sl,
            "baseline": r.base,
            "ratio": r.ratio,
            "target": r.target or None,
            "result": r.verdict or None,
        }
        for r in rows(results)
    ]
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    else:
        print(f"loop: {description}; Python {results['python']}; {results['seconds']:.0f} s")
        if skipped:
            print(f"uvloop is installed but not used: {skipped}")
        print(table(results))
    failed = any(r.verdict == "FAIL" for r in rows(results))
    return 1 if failed and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
