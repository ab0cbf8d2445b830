"""A reconnect storm: N resumable sessions all cut at once, and resumed (issue 8).

    python -m bench.recovery_storm                  # 5,000 sessions; asyncio, then uvloop
    python -m bench.recovery_storm --loop asyncio   # one loop (both processes run it)
    python -m bench.recovery_storm --quick          # 1,000 sessions
    python -m bench.recovery_storm --json
    python -m bench.recovery_storm --loop asyncio --profile-server cprofile   # or pyinstrument
    python -m bench.recovery_storm --loop asyncio --profile-client   # cProfile, this process

bench/setup.py's machinery, client and server in two processes on 127.0.0.1:

1. **raw asyncio** (the baseline, bench/setup.py's): fresh connections to the raw
   ``asyncio.Protocol`` server child (bench/aio_idle.py), 64 in flight, each counted once
   its hello was answered: connections/s;
2. **storm**: a sessionlayer server child (bench/aio_idle.py ``--resume``: resumable
   sessions, ``max_sessions`` and ``max_detached`` above N, ``max_handshakes`` 256, the
   default, unless ``--max-handshakes``); this process opens N sessions, 64 in flight
   (bench/aio.py's options with ``resume=True`` and ``Backoff(first=0)``: the first retry
   at once, then the default exponential backoff with jitter), then tells the server to
   reset every connection at once (``cut``: SO_LINGER 0 and abort on each socket, an RST
   to every client).  The server notes ``time.monotonic()`` as the first reset goes
   (CLOCK_MONOTONIC, the same clock here); every client session reconnects and resumes,
   and a task per session stamps its ``Resumed`` event from ``session.events()``.
   Resumed sessions/s = N / (last ``Resumed`` - the cut).

Target: resumed sessions/s >= 0.5x the raw fresh connections/s.  Also reported: the
opening of the N sessionlayer sessions (the issue-7 setup rate, with recovery on), the CPU
each process used from the cut to the last resume per session (server: ``/proc/<pid>/stat``;
client: ``time.process_time()``), the TCP connections tried per resume (``Resumed.attempts``),
the server's count of resumed sessions, and the kernel's listen-queue overflows during the
storm (``/proc/net/netstat`` TcpExt ListenOverflows, system-wide: a SYN dropped there is
retried by the client's kernel after 1 s).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import gc
import json
import platform
import statistics
import sys
import time
from typing import Any

import sessionlayer
from bench.aio import (
    OPTIONS,
    Child,
    Row,
    _loop_description,
    _open_baseline,
    _open_many,
    _percentile,
    format_rows,
    idle,
    kill_children,
    log,
)
from bench.aio_idle import raise_nofile
from bench.setup import _factory, loops
from sessionlayer.recovery import Backoff, Resumed

HOST = "127.0.0.1"
STORM = dataclasses.replace(OPTIONS, resume=True, backoff=Backoff(first=0))
COUNT, QUICK_COUNT = 5_000, 1_000
TARGET = ">=0.5"


def listen_overflows() -> int:
    """The kernel's TcpExt ListenOverflows so far (SYNs dropped on a full accept queue)."""
    try:
        with open("/proc/net/netstat") as f:
            head, values = [line.split() for line in f if line.startswith("TcpExt:")][:2]
    except (OSError, ValueError):
        return -1
    return int(values[head.index("ListenOverflows")]) if "ListenOverflows" in head else -1


async def _resumed(session: sessionlayer.Session) -> tuple[float, int]:
    """When the session's next ``Resumed`` came (monotonic), and the tries it took."""
    async for event in session.events():
        if isinstance(event, Resumed):
            return time.monotonic(), event.attempts
    raise RuntimeError(f"session {session.id} ended instead of resuming: {session.state}")


async def storm(loop_name: str, count: int, timeout: float, max_handshakes: int,
                profile: tuple[str, str] | None = None,
                client_profile: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Open ``count`` resumable sessions, cut them all at once, time their resumes;
    ``profile``: (tool, file) for the server child, ``client_profile``: a pstats file for
    this process (cProfile on the CPU clock), both from the cut to the last resume."""
    extra = ["--resume", "--max-handshakes", str(max_handshakes)]
    if profile is not None:
        extra += ["--profile", profile[0], "--profile-out", profile[1]]
    child = await Child.start("sessionlayer", loop_name, *extra)
    sessions: list[sessionlayer.Session] = []

    async def opener(port: int) -> Any:
        session = await sessionlayer.connect(HOST, port, options=STORM)
        sessions.append(session)
        return session.abort

    try:
        warm, _, _ = await _open_many(opener, child.port, 50, timeout)
        for close in warm:
            close()
        sessions.clear()
        await child.wait_live(0, 10)
        open_cpu = child.cpu_seconds(), time.process_time()
        closers, opened_in, error = await _open_many(opener, child.port, count, timeout)
        open_cpu = child.cpu_seconds() - open_cpu[0], time.process_time() - open_cpu[1]
        _, live = await child.wait_live(len(sessions), 10)
        if error or live != count:
            raise RuntimeError(f"opened {len(sessions)} of {count} ({live} live): {error}")
        assert all(s.resumable for s in sessions)
        watchers = [asyncio.ensure_future(_resumed(s)) for s in sessions]
        await asyncio.sleep(0)  # (one turn: each watcher waits on its session's events)
        if profile is not None:
            await child.command("profile-start")
        overflows = listen_overflows()
        profiler = cProfile.Profile(time.process_time) if client_profile else None
        if profiler is not None:
            profiler.enable()
        server_cpu, client_cpu = child.cpu_seconds(), time.process_time()
        gc_clock = _GcClock()
        gc.callbacks.append(gc_clock)
        _, cut, cut_at = (await child.command("cut")).split()
        try:
            async with asyncio.timeout(timeout):
                done = await asyncio.gather(*watchers)
        finally:
            gc.callbacks.remove(gc_clock)
            for w in watchers:
                w.cancel()
        server_cpu = child.cpu_seconds() - server_cpu
        client_cpu = time.process_time() - client_cpu
        if profiler is not None and client_profile is not None:
            profiler.disable()
            profiler.dump_stats(client_profile)
        overflows = listen_overflows() - overflows
        if profile is not None:
            await child.command("profile-stop")
        _, interrupted, resumed, refused, limit = (await child.command("stats")).split()
        for close in closers:
            close()
    finally:
        await child.stop()
    start = float(cut_at)
    delays = sorted(t - start for t, _ in done)
    return {
        "requested": count,
        "opened": len(sessions),
        "open_seconds": opened_in,
        "open_per_s": len(sessions) / opened_in,
        "cut": int(cut),
        "seconds": delays[-1],
        "resumed_per_s": len(delays) / delays[-1],
        "p50_ms": _percentile(delays, 50) * 1e3,  # type: ignore[arg-type]
        "p99_ms": _percentile(delays, 99) * 1e3,  # type: ignore[arg-type]
        "attempts_mean": statistics.fmean(a for _, a in done),
        "attempts_max": max(a for _, a in done),
        "server_interrupted": int(interrupted),
        "server_resumed": int(resumed),
        "server_refused": int(refused),
        "server_refused_handshake_limit": int(limit),
        "server_cpu_us": server_cpu / count * 1e6,
        "client_cpu_us": client_cpu / count * 1e6,
        "client_gc_us": gc_clock.seconds / count * 1e6,
        "client_gc_collections": gc_clock.collections,
        "client_gc_ms_by_generation": [round(t * 1e3, 1) for t in gc_clock.by_gen],
        "client_objects": len(gc.get_objects()),  # (what a full collection walks)
        "open_server_cpu_us": open_cpu[0] / count * 1e6,
        "open_client_cpu_us": open_cpu[1] / count * 1e6,
        "listen_overflows": overflows,
    }


class _GcClock:
    """A ``gc.callbacks`` entry: the CPU time this process spends collecting garbage."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = [0, 0, 0]
        self.by_gen = [0.0, 0.0, 0.0]
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.process_time()
        else:
            took = time.process_time() - self._start
            self.seconds += took
            self.collections[info["generation"]] += 1
            self.by_gen[info["generation"]] += took


async def raw_herd(loop_name: str, count: int, timeout: float) -> dict[str, Any]:
    """``count`` fresh connections to the raw asyncio server all started at once (no 64 in
    flight bound): the herd alone, with no session layer, beside the storm."""
    child = await Child.start("baseline", loop_name)
    try:
        warm, _, _ = await _open_many(_open_baseline, child.port, 50, timeout)
        for close in warm:
            close()
        await child.wait_live(0, 10)
        overflows = listen_overflows()
        start = time.perf_counter()
        async with asyncio.timeout(timeout):
            done = await asyncio.gather(
                *(_open_baseline(child.port) for _ in range(count)), return_exceptions=True
            )
        elapsed = time.perf_counter() - start
        overflows = listen_overflows() - overflows
        closers = [c for c in done if callable(c)]
        for close in closers:
            close()
    finally:
        await child.stop()
    return {"opened": len(closers), "seconds": elapsed, "conns_per_s": len(closers) / elapsed,
            "errors": count - len(closers), "listen_overflows": overflows}  # fmt: skip


async def measure(loop_name: str, count: int, timeout: float, max_handshakes: int,
                  diagnose: bool = False) -> dict[str, Any]:  # fmt: skip
    """The raw baseline, then the storm; ``diagnose``: the storm again with no limit on
    handshakes (``max_handshakes`` above N: no connection refused)."""
    raw = await idle("baseline", loop_name, count, timeout)
    log(
        f"storm [{loop_name}] raw asyncio: {raw['opened']:,} fresh connections in"
        f" {raw['seconds']:.2f} s ({raw['conns_per_s']:,.0f}/s)"
    )
    out = {"raw": raw}
    if diagnose:
        h = out["raw_herd"] = await raw_herd(loop_name, count, timeout)
        log(
            f"storm [{loop_name}] raw asyncio, all at once: {h['opened']:,} in"
            f" {h['seconds']:.2f} s ({h['conns_per_s']:,.0f}/s), {h['errors']} failed,"
            f" listen overflows {h['listen_overflows']:,}"
        )
    runs = [("storm", max_handshakes)] + ([("unlimited", count + 1000)] if diagnose else [])
    for key, limit in runs:
        r = out[key] = await storm(loop_name, count, timeout, limit)
        log(
            f"storm [{loop_name}] sessionlayer (max_handshakes {limit}): opened"
            f" {r['opened']:,} ({r['open_per_s']:,.0f}/s); cut {r['cut']:,}, all resumed in"
            f" {r['seconds']:.2f} s ({r['resumed_per_s']:,.0f}/s), p50 {r['p50_ms']:.0f} ms"
            f" p99 {r['p99_ms']:.0f} ms, {r['attempts_mean']:.2f} tries (max"
            f" {r['attempts_max']}); server: {r['server_resumed']:,} resumed,"
            f" {r['server_refused']:,} refused; listen overflows {r['listen_overflows']:,};"
            f" client GC {r['client_gc_us']:.0f} us/resume"
        )
    return out


def rows(result: dict[str, Any]) -> list[Row]:
    raw, r = result["raw"], result["storm"]
    n = f"{r['requested']:,}"
    raw_server = raw["server_cpu_s"] / raw["opened"] * 1e6
    raw_client = raw["client_cpu_s"] / raw["opened"] * 1e6
    note = ""
    if r["server_resumed"] != r["requested"]:
        note = f"the server counted {r['server_resumed']:,} resumes"
    out = [
        Row(f"storm {n}: resumed", "sessions/s", r["resumed_per_s"], raw["conns_per_s"],
            TARGET, note),
        Row(f"storm {n}: cut -> last Resumed", "s", r["seconds"], raw["seconds"]),
        Row("cut -> Resumed p50", "ms", r["p50_ms"], None),
        Row("cut -> Resumed p99", "ms", r["p99_ms"], None),
        Row("TCP connections per resume", "mean", r["attempts_mean"], None, "",
            f"max {r['attempts_max']}; {r['server_refused']:,} refused by the server"
            f" ({r['server_refused_handshake_limit']:,} for max_handshakes);"
            f" {r['listen_overflows']:,} listen-queue overflows (system-wide)"),
        Row("server CPU per resume", "us", r["server_cpu_us"], raw_server),
        Row("client CPU per resume", "us", r["client_cpu_us"], raw_client, "",
            f"of which GC {r['client_gc_us']:.0f} us (collections by generation:"
            f" {r['client_gc_collections']}, ms by generation:"
            f" {r['client_gc_ms_by_generation']}; {r['client_objects']:,} objects tracked)"),
        Row(f"setup {n} (fresh, recovery on)", "sessions/s", r["open_per_s"],
            raw["conns_per_s"]),
        Row("server CPU per fresh setup", "us", r["open_server_cpu_us"], raw_server),
        Row("client CPU per fresh setup", "us", r["open_client_cpu_us"], raw_client),
    ]  # fmt: skip
    u = result.get("unlimited")
    if u is not None:
        out += [
            Row(f"storm {n}, no handshake limit: resumed", "sessions/s", u["resumed_per_s"],
                raw["conns_per_s"], "",
                f"max_handshakes {r['requested'] + 1000:,}: {u['attempts_mean']:.2f} tries"
                f" per resume, {u['server_refused']:,} refused, {u['listen_overflows']:,}"
                " listen-queue overflows"),
            Row("... server CPU per resume", "us", u["server_cpu_us"], raw_server),
            Row("... client CPU per resume", "us", u["client_cpu_us"], raw_client),
        ]  # fmt: skip
    h = result.get("raw_herd")
    if h is not None:
        out.append(Row(f"raw asyncio, {n} connects at once", "conn/s", h["conns_per_s"],
                       raw["conns_per_s"], "",
                       f"{h['errors']} failed, {h['listen_overflows']:,} listen-queue"
                       " overflows"))  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.recovery_storm",
        description="N resumable sessions cut at once and resumed, vs raw fresh connections",
    )
    parser.add_argument("--loop", choices=("both", "asyncio", "uvloop"), default="both")
    parser.add_argument("--count", type=int, default=0, help=f"sessions (default {COUNT:,})")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_COUNT:,} sessions")
    parser.add_argument("--max-handshakes", type=int, default=256, help="the server's")
    parser.add_argument(
        "--diagnose",
        action="store_true",
        help="also a storm with no handshake limit (max_handshakes > N)",
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="at most, per phase")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the tables")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--profile-server",
        choices=("cprofile", "pyinstrument"),
        help="profile the server child from the cut to the last resume",
    )
    parser.add_argument("--profile-out", default="/tmp/profile-storm-server-{loop}.prof")
    parser.add_argument(
        "--profile-client",
        action="store_true",
        help="cProfile this process (the clients) from the cut to the last resume",
    )
    parser.add_argument("--profile-client-out", default="/tmp/profile-storm-client-{loop}.prof")
    args = parser.parse_args(argv)
    count = args.count or (QUICK_COUNT if args.quick else COUNT)
    soft, hard = raise_nofile()
    if soft < count + 256:
        log(f"RLIMIT_NOFILE is {soft} (hard {hard}): fewer than {count:,} sessions may open")
    names, skipped = loops(args.loop)
    if skipped:
        log(f"uvloop left out: {skipped}")
    results: dict[str, Any] = {"python": platform.python_version(), "count": count,
                               "max_handshakes": args.max_handshakes,
                               "uvloop_skipped": skipped, "loops": {}}  # fmt: skip
    started = time.perf_counter()
    try:
        for name in names:
            with asyncio.Runner(loop_factory=_factory(name)) as runner:
                if args.profile_server or args.profile_client:
                    out = args.profile_out.replace("{loop}", name)
                    cout = args.profile_client_out.replace("{loop}", name)
                    r = runner.run(storm(
                        name, count, args.timeout, args.max_handshakes,
                        (args.profile_server, out) if args.profile_server else None,
                        cout if args.profile_client else None,
                    ))  # fmt: skip
                    log(f"profiled storm [{name}]: {r}; profiles in"
                        f" {out if args.profile_server else '-'},"
                        f" {cout if args.profile_client else '-'}")  # fmt: skip
                    continue
                result = runner.run(
                    measure(name, count, args.timeout, args.max_handshakes, args.diagnose)
                )
            results["loops"][name] = {"loop": _loop_description(name), **result}
    finally:
        kill_children()
    if args.profile_server or args.profile_client:
        return 0
    results["seconds"] = time.perf_counter() - started
    all_rows = [r for res in results["loops"].values() for r in rows(res)]
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    else:
        print(
            f"reconnect storm: {count:,} sessions cut at once by the server, resumed, vs raw"
            f" asyncio fresh connections (64 in flight); two processes; Python"
            f" {results['python']}; {results['seconds']:.0f} s"
        )
        for res in results["loops"].values():
            print(f"\nloop: {res['loop']} (both processes)")
            print(format_rows(rows(res), baseline="raw asyncio"))
    failed = any(r.verdict == "FAIL" for r in all_rows)
    return 1 if failed and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
