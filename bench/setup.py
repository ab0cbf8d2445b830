"""Session setup rate and idle memory, client and server in separate processes (issue 7).

    python -m bench.setup                   # 5,000 sessions; asyncio, then uvloop if installed
    python -m bench.setup --loop asyncio    # one loop (client and server both run it)
    python -m bench.setup --quick           # 1,000 sessions, a smoke run
    python -m bench.setup --repeat 3        # median of 3 runs per implementation
    python -m bench.setup --json            # machine-readable results on stdout
    python -m bench.setup --check           # exit 1 when a target is missed
    python -m bench.setup --loop asyncio --profile-server cprofile      # or pyinstrument

For each implementation, a server runs alone in a child process (bench/aio_idle.py, on
``--loop``): sessionlayer ``serve()`` with a handler that waits in ``async for`` (an idle
session), or the raw ``asyncio.Protocol`` baseline (bench/aio_baseline.py), which answers a
length-prefixed hello with one reply.  This process is the client, on the same loop. It
opens 50 sessions and closes them (first-use costs), takes the server's RSS, then opens
``--count`` sessions with 64 in flight. A session counts once the server's confirm arrived:
the AC for sessionlayer (``connect()`` returned), the reply to the hello for the baseline.
Then the server's RSS is read again once it reports every session live (``/proc/<pid>/statm``
of the server alone, after a ``gc.collect()`` there), every session is aborted and the
server process ends (it is killed if it does not quit, and at exit whatever happened).

Reported: sessions/s over the opens, (RSS after - RSS before) / sessions, and the CPU time
each process used while opening, per session (the server's from ``/proc/<pid>/stat``, the
client's from ``time.process_time()``), which shows which side limits the rate, and the
rate the busier side's CPU allows ("CPU-bound": what a machine with a free core for each
process would measure; on a shared machine it varies far less than the measured rate).

``--profile-server cprofile|pyinstrument`` profiles the server while it takes the opens
(sessionlayer, or ``--profile-impl baseline``), with no table: the profile goes to
``--profile-out`` (``{loop}`` is replaced by the loop's name; pyinstrument writes a text
report there), and for cProfile the top functions are printed.  pyinstrument is not a
project dependency: ``pip install pyinstrument``.

Targets (issue 7): setup >= 0.5x and idle RSS per session <= 1.5x the baseline's.
The client uses bench/aio.py's ``OPTIONS`` (plain sessions, ``resume=False``); the server no
keepalive, no idle timer and plain sessions too (the issue 7 figures; bench/recovery_storm.py
measures resumable ones).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from typing import Any

import sessionlayer
from bench.aio import Row, _loop_description, _probe, format_rows, idle, kill_children, log
from bench.aio_idle import raise_nofile

COUNT = 5_000
QUICK_COUNT = 1_000
SETUP_TARGET = ">=0.5"
RSS_TARGET = "<=1.5"
IMPLS = ("baseline", "sessionlayer")


def loops(choice: str) -> tuple[list[str], str | None]:
    """The loops to run for ``--loop`` and, when uvloop is left out, why."""
    if choice == "asyncio":
        return ["asyncio"], None
    try:
        import uvloop
    except ImportError:
        why = "uvloop is not installed (pip install -e '.[bench]')"
        if choice == "uvloop":
            sys.exit(f"--loop uvloop: {why}")
        return ["asyncio"], why
    problem = _probe(uvloop.new_event_loop)
    if problem is not None:
        why = f"sessionlayer does not run on uvloop {uvloop.__version__}: {problem}"
        if choice == "uvloop":
            sys.exit(f"--loop uvloop: {why}")
        return ["asyncio"], why
    return (["uvloop"] if choice == "uvloop" else ["asyncio", "uvloop"]), None


def _factory(loop_name: str) -> Any:
    if loop_name != "uvloop":
        return None
    import uvloop

    return uvloop.new_event_loop


async def measure(loop_name: str, count: int, repeat: int, timeout: float) -> dict[str, Any]:
    """``repeat`` runs of each implementation, alternating; the median of each figure."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in IMPLS}
    for i in range(repeat):
        for name in IMPLS:
            r = await idle(name, loop_name, count, timeout)
            runs[name].append(r)
            log(
                f"setup [{loop_name} {i + 1}/{repeat}] {name:<12} opened {r['opened']:,}"
                f" in {r['seconds']:.2f} s ({r['conns_per_s']:,.0f}/s),"
                f" server RSS {r['rss_per_session']:,.0f} B/session,"
                f" CPU server {r['server_cpu_s']:.2f} s client {r['client_cpu_s']:.2f} s"
                + (f"  [{r['error']}]" if r["error"] else "")
            )
            if r["error"]:
                break
    out: dict[str, Any] = {}
    for name, rs in runs.items():
        opened = min(r["opened"] for r in rs)
        out[name] = {
            "requested": count,
            "opened": opened,
            "errors": [r["error"] for r in rs if r["error"]],
            "sessions_per_s": statistics.median(r["conns_per_s"] for r in rs),
            "rss_per_session": statistics.median(r["rss_per_session"] for r in rs),
            "server_cpu_us": _median_per_session(rs, "server_cpu_s") * 1e6,
            "client_cpu_us": _median_per_session(rs, "client_cpu_s") * 1e6,
            "runs": rs,
        }
    return out


async def profile_server(
    loop_name: str, impl: str, count: int, timeout: float, tool: str, out: str
) -> dict[str, Any]:
    """One run of ``impl`` whose server profiles the opens with ``tool`` into ``out``."""
    r = await idle(
        impl, loop_name, count, timeout, "--profile", tool, "--profile-out", out, profile=True
    )
    log(
        f"profiled setup [{loop_name}] {impl}: {r['opened']:,} sessions in {r['seconds']:.2f} s"
        f" ({r['conns_per_s']:,.0f}/s under the profiler), server CPU {r['server_cpu_s']:.2f} s;"
        f" profile in {out}"
    )
    return r


def _print_pstats(path: str, sessions: int, top: int = 30) -> None:
    import pstats

    stats = pstats.Stats(path)
    print(f"{path}: {stats.total_calls:,} calls, {stats.total_calls / sessions:,.0f} per session")
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


def _median_per_session(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] / r["opened"] if r["opened"] else float("nan") for r in runs)


def rows(result: dict[str, Any]) -> list[Row]:
    sl, base = result["sessionlayer"], result["baseline"]
    count = sl["requested"]
    note = ""
    for name in IMPLS:
        r = result[name]
        if r["opened"] < r["requested"] or r["errors"]:
            note += f"{name}: {r['opened']:,} of {r['requested']:,} opened ({r['errors']}); "
    return [
        Row(f"setup {count:,}", "sessions/s", sl["sessions_per_s"], base["sessions_per_s"],
            SETUP_TARGET, note),
        Row(f"idle {count:,} server RSS", "B/session", sl["rss_per_session"],
            base["rss_per_session"], RSS_TARGET),
        Row("server CPU per setup", "us", sl["server_cpu_us"], base["server_cpu_us"]),
        Row("client CPU per setup", "us", sl["client_cpu_us"], base["client_cpu_us"]),
        Row("setup, CPU-bound", "sessions/s", _cpu_bound(sl), _cpu_bound(base)),
    ]  # fmt: skip


def _cpu_bound(r: dict[str, Any]) -> float | None:
    """The rate if each process had a core to itself: 1 / the busier side's CPU per session
    (steadier than the measured rate on a shared machine)."""
    busiest = max(r["server_cpu_us"], r["client_cpu_us"])
    return 1e6 / busiest if busiest > 0 else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.setup",
        description="session setup and idle memory, client and server in two processes",
    )
    parser.add_argument(
        "--loop",
        choices=("both", "asyncio", "uvloop"),
        default="both",
        help="event loop of both processes (both: asyncio, then uvloop when installed)",
    )
    parser.add_argument("--count", type=int, default=0, help=f"sessions (default {COUNT:,})")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_COUNT:,} sessions")
    parser.add_argument("--repeat", type=int, default=1, help="runs per implementation (median)")
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="at most this many seconds of opening a run"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of the tables")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--profile-server", choices=("cprofile", "pyinstrument"), help="profile the server"
    )
    parser.add_argument("--profile-impl", choices=IMPLS, default="sessionlayer")
    parser.add_argument("--profile-out", default="/tmp/profile-setup-server-{loop}.prof")
    args = parser.parse_args(argv)
    count = args.count or (QUICK_COUNT if args.quick else COUNT)
    soft, hard = raise_nofile()
    if soft < count + 256:
        log(f"RLIMIT_NOFILE is {soft} (hard {hard}): fewer than {count:,} sessions may open")
    names, skipped = loops(args.loop)
    if skipped:
        log(f"uvloop left out: {skipped}")
    results: dict[str, Any] = {
        "python": platform.python_version(),
        "sessionlayer": sessionlayer.__version__,
        "count": count,
        "repeat": args.repeat,
        "rlimit_nofile": [soft, hard],
        "uvloop_skipped": skipped,
        "loops": {},
    }
    if args.profile_server:
        try:
            for name in names:
                out = args.profile_out.replace("{loop}", name)
                with asyncio.Runner(loop_factory=_factory(name)) as runner:
                    r = runner.run(
                        profile_server(
                            name, args.profile_impl, count, args.timeout, args.profile_server, out
                        )
                    )
                if args.profile_server == "cprofile":
                    _print_pstats(out, r["opened"])
        finally:
            kill_children()
        return 0
    started = time.perf_counter()
    try:
        for name in names:
            with asyncio.Runner(loop_factory=_factory(name)) as runner:
                result = runner.run(measure(name, count, args.repeat, args.timeout))
            result["loop"] = _loop_description(name)
            results["loops"][name] = result
    finally:
        kill_children()  # a server child left behind by an error or ^C
    results["seconds"] = time.perf_counter() - started
    all_rows: list[Row] = []
    for result in results["loops"].values():
        result["rows"] = [
            {"metric": r.metric, "unit": r.unit, "sessionlayer": r.sl, "baseline": r.base,
             "ratio": r.ratio, "target": r.target or None, "result": r.verdict or None}
            for r in rows(result)
        ]  # fmt: skip
        all_rows += rows(result)
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    else:
        print(
            f"session setup, client and server in two processes: {count:,} sessions,"
            f" 64 in flight, median of {args.repeat}; Python {results['python']};"
            f" {results['seconds']:.0f} s"
        )
        if skipped:
            print(f"uvloop left out: {skipped}")
        for result in results["loops"].values():
            print(f"\nloop: {result['loop']} (both processes)")
            print(format_rows(rows(result), baseline="raw asyncio"))
    failed = any(r.verdict == "FAIL" for r in all_rows)
    return 1 if failed and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
