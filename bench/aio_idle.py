"""The server side of the idle-sessions benchmark, run as a child process.

``python -m bench.aio_idle --impl {sessionlayer,baseline} --loop {asyncio,uvloop}``
listens on 127.0.0.1 (a free port), prints ``port N`` on stdout, then answers
commands read from stdin, one a line:

``stat``  -> ``stat RSS LIVE``: resident set size in bytes (``/proc/self/statm``)
             and how many sessions (connections) are live and established;
``quit``  -> exits at once (the parent then closes its side).

With ``--resume`` (bench/recovery_storm.py) the sessionlayer server gives resumable
sessions (else plain ones, ``resume=False``, as in the issue 7 figures) and answers two more:

``cut``   -> ``cut N T``: every live session's TCP connection reset at once (SO_LINGER 0,
             then abort: an RST to each client), N of them, T the ``time.monotonic()`` at
             which the first went (CLOCK_MONOTONIC: the parent's clock too);
``stats`` -> ``stats INTERRUPTED RESUMED REFUSED LIMIT``: the server's totals of lost
             connections, resumed sessions, refused resumes or connections, and of those
             the connections closed at once for ``max_handshakes``.

``profile-start`` / ``profile-stop`` -> ``ok``: with ``--profile cprofile|pyinstrument``
             (a profiling aid, off in the benchmark), profile what the server does in
             between and write it to ``--profile-out`` (a pstats file for cProfile; a text
             report, and the session as ``.pyisession``, for pyinstrument).

``--trace-top K`` (a profiling aid, off in the benchmark): tracemalloc starts at the first
``stat`` and every later ``stat`` writes the K largest allocation sites since then, and
their total per live session, to stderr.

Running the server alone in its own process means its RSS is the server's alone:
the parent holds the client sockets and sessions.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import resource
import socket
import struct
import sys
import time
import tracemalloc
from typing import Any, ClassVar

from bench.aio_baseline import FrameProtocol

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """This process's resident set size, in bytes."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:  # not Linux: the peak, in KiB on Linux/BSD and bytes on macOS
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if sys.platform == "darwin" else peak * 1024)


def raise_nofile() -> tuple[int, int]:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit; return (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft, hard


class _Live:
    count = 0
    sessions: ClassVar[set[Any]] = set()  # (--resume) the live sessions, for ``cut``
    server: Any = None


async def _serve_baseline(live: type[_Live]) -> Any:
    """Raw asyncio: a connection is live once its hello was answered."""
    loop = asyncio.get_running_loop()

    def factory() -> FrameProtocol:
        state = {"up": False}

        def on_message(payload: bytes) -> None:
            if not state["up"]:
                state["up"] = True
                live.count += 1
            proto.write(payload)  # echo: the hello's answer, and any later message

        def on_lost(_: FrameProtocol) -> None:
            if state["up"]:
                live.count -= 1

        proto = FrameProtocol(on_message, on_lost=on_lost)
        return proto

    return await loop.create_server(factory, "127.0.0.1", 0)


async def _serve_sessionlayer(
    live: type[_Live], max_sessions: int, resume: bool = False, max_handshakes: int = 256
) -> Any:
    import sessionlayer

    options = sessionlayer.Options(keepalive_interval=None, idle_timeout=None, resume=resume)

    async def handler(session: sessionlayer.Session) -> None:
        live.count += 1
        if resume:
            live.sessions.add(session)
        try:
            async for data in session:  # an idle session waits here (also while detached)
                await session.send(data)
        finally:
            live.count -= 1
            live.sessions.discard(session)

    server = await sessionlayer.serve(
        handler, "127.0.0.1", 0, options=options, max_sessions=max_sessions,
        max_detached=max_sessions, max_handshakes=max_handshakes,
    )  # fmt: skip
    live.server = server
    return server


_LINGER_ZERO = struct.pack("ii", 1, 0)


def _cut(live: type[_Live]) -> str:
    """Reset every live session's TCP connection at once (what a failing network or load
    balancer does); the sessions detach and wait for their clients."""
    started = time.monotonic()
    count = 0
    for session in list(live.sessions):
        transport = session._conn.transport  # (private: as tests/recovery/helpers.cut does)
        if transport is None or transport.is_closing():
            continue
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
        transport.abort()
        count += 1
    return f"cut {count} {started!r}"


def _stats(live: type[_Live]) -> str:
    stats = live.server.stats
    refused = sum(stats.refused.values()) + sum(stats.resume_refused.values())
    limit = stats.refused["handshake_limit"]
    return f"stats {stats.interrupted} {sum(stats.resumed.values())} {refused} {limit}"


def _trace(top: int) -> None:
    """Start tracemalloc, or report what was allocated since it started."""
    if not tracemalloc.is_tracing():
        tracemalloc.start(4)
        return
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )
    stats = snapshot.statistics("lineno")
    total = sum(s.size for s in stats)
    live = max(_Live.count, 1)
    print(
        f"tracemalloc: {total:,} B since start, {total / live:,.0f} B per live session"
        f" ({_Live.count} live); top {top} sites:",
        file=sys.stderr,
    )
    for stat in stats[:top]:
        frame = stat.traceback[0]
        name = frame.filename.split("/site-packages/")[-1].split("/src/")[-1]
        print(
            f"  {stat.size / live:8,.0f} B/session {stat.count / live:6.2f} blocks/session"
            f"  {name}:{frame.lineno}",
            file=sys.stderr,
        )


class _Profile:
    """cProfile or pyinstrument around the part of the run the parent chooses."""

    def __init__(self, tool: str, out: str) -> None:
        self.tool, self.out = tool, out
        self.profiler: Any = None

    def start(self) -> None:
        if self.tool == "cprofile":
            import cProfile

            # CPU time, not wall time: on a shared 2-core machine the server is descheduled
            # while the client runs, and a wall clock charges that to whatever call was
            # running (socket.send, which wakes the client, most of all).
            self.profiler = cProfile.Profile(time.process_time)
            self.profiler.enable()
        else:
            import pyinstrument

            self.profiler = pyinstrument.Profiler(interval=0.0002, async_mode="disabled")
            self.profiler.start()

    def stop(self) -> None:
        if self.profiler is None:
            return
        if self.tool == "cprofile":
            self.profiler.disable()
            self.profiler.dump_stats(self.out)
        else:
            session = self.profiler.stop()
            session.save(self.out + ".pyisession")
            with open(self.out, "w") as f:
                f.write(self.profiler.output_text(unicode=False, color=False, show_all=False))
        self.profiler = None


async def main(
    impl: str, max_sessions: int, trace_top: int = 0, profile: _Profile | None = None,
    resume: bool = False, max_handshakes: int = 256,
) -> None:  # fmt: skip
    loop = asyncio.get_running_loop()
    if impl == "baseline":
        server = await _serve_baseline(_Live)
        port = server.sockets[0].getsockname()[1]
    else:
        server = await _serve_sessionlayer(_Live, max_sessions, resume, max_handshakes)
        port = server.port
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print(f"port {port}", flush=True)
    while True:
        line = (await reader.readline()).decode().strip()
        if line == "stat":
            gc.collect()
            if trace_top:
                _trace(trace_top)
            print(f"stat {rss_bytes()} {_Live.count}", flush=True)
        elif line == "cut" and resume:
            print(_cut(_Live), flush=True)
        elif line == "stats" and resume:
            print(_stats(_Live), flush=True)
        elif line in ("profile-start", "profile-stop") and profile is not None:
            profile.start() if line == "profile-start" else profile.stop()
            print("ok", flush=True)
        elif line in ("quit", ""):
            sys.stdout.flush()
            os._exit(0)  # no orderly teardown of thousands of sessions: the parent closes


def _cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impl", choices=("sessionlayer", "baseline"), required=True)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--max-sessions", type=int, default=100_000)
    parser.add_argument("--resume", action="store_true", help="resumable sessions (sessionlayer)")
    parser.add_argument("--max-handshakes", type=int, default=256, help="serve()'s (sessionlayer)")
    parser.add_argument("--trace-top", type=int, default=0, help="tracemalloc report (0: off)")
    parser.add_argument("--profile", choices=("cprofile", "pyinstrument"), help="profiler")
    parser.add_argument("--profile-out", default="/tmp/profile-setup-server.prof")
    args = parser.parse_args()
    raise_nofile()
    factory = None
    if args.loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        profile = _Profile(args.profile, args.profile_out) if args.profile else None
        runner.run(
            main(args.impl, args.max_sessions, args.trace_top, profile, args.resume,
                 args.max_handshakes)
        )  # fmt: skip


if __name__ == "__main__":
    _cli()
