"""Sessions through the SQLite and the Redis session stores, beside no store (issue 8).

    python -m bench.recovery_stores                 # asyncio, then uvloop when installed
    python -m bench.recovery_stores --loop asyncio  # one loop
    python -m bench.recovery_stores --quick         # short runs: a smoke run
    python -m bench.recovery_stores --json

With a store, a server records each resumable session (a ``put`` when it is accepted, a
``delete`` when it ends) and each checkpoint: the peer's MAP is confirmed (MAA) only once
``store.update(checkpoint=...)`` returned.  The journal stays in memory.  So, with the
server's ``store=`` None, ``open_store("sqlite:<tmp>/bench.db")`` (WAL, ``synchronous=NORMAL``,
the default) and ``open_store("redis://127.0.0.1:<port>/0")``, all in this process on one
event loop, on 127.0.0.1, with recovery on (bench/aio.py's options and ``resume=True``):

* **checkpoints/s**: one session; the client ``await``-s ``session.sync(major=True,
  user_data=...)`` (a confirmed major sync point, 8 octets of user data) one after the
  other, up to ``--checkpoints`` or for ``--duration`` seconds, after 50 unmeasured ones;
  the rate and the p50 of one round trip;
* **one-way 64 B msgs/s**: bench/aio.py's ``one_way`` (median of ``--repeat`` runs, fresh
  connections): with a store it should equal no store, the data path calling no store
  method (a run of 360,448 messages made 4 ``put`` and 4 ``delete`` calls: one each per
  connection).  No target: the runs of one configuration spread by up to 1.7x here (see
  the note: min-max), more than any difference between stores;
* **sessions/s**: ``connect()`` then ``release()``, one session at a time (``--sessions``):
  the per-session record (put, delete) beside the handshake.

Redis is Debian's ``/usr/bin/redis-server`` started here on a free loopback port with
``--save "" --appendonly no`` (no persistence) and killed at the end; without it (or
without redis-py, the ``redis`` extra) the Redis rows are left out with a note.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import sessionlayer
from bench.aio import (
    OPTIONS,
    Impl,
    Row,
    SessionlayerClient,
    _loop_description,
    _percentile,
    format_rows,
    log,
    one_way,
    sessionlayer_servers,
)
from bench.setup import _factory, loops
from sessionlayer.stores import open_store

HOST = "127.0.0.1"
ON = dataclasses.replace(OPTIONS, resume=True)
REDIS = "/usr/bin/redis-server"
perf = time.perf_counter


# ============================================================ redis-server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _die_with_parent() -> None:
    """(In the child, Linux) SIGKILL when this process ends, however it ends."""
    with contextlib.suppress(Exception):
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@contextlib.contextmanager
def redis_server(directory: str) -> Iterator[tuple[str | None, str]]:
    """(url, "") of a redis-server of our own, killed on leaving; (None, why) without one."""
    path = shutil.which("redis-server") or (REDIS if os.access(REDIS, os.X_OK) else None)
    if path is None:
        yield None, "redis-server is not installed (apt-get install redis-server)"
        return
    try:
        import redis  # noqa: F401  (the redis extra: what RedisStore needs)
    except ImportError:
        yield None, "redis-py is not installed (pip install 'sessionlayer[redis]')"
        return
    port = _free_port()
    argv = [path, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
            "--dir", directory, "--logfile", os.path.join(directory, "redis.log")]  # fmt: skip
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not _answers_ping(port):
            try:  # the pause between two tries, and the check that it still runs
                process.wait(timeout=0.02)
            except subprocess.TimeoutExpired:
                if time.monotonic() < deadline:
                    continue
            yield None, f"redis-server did not answer on port {port}"
            return
        yield f"redis://{HOST}:{port}/0", ""
    finally:
        process.kill()
        process.wait(timeout=10)


# ============================================================ the measurements


async def _sink(session: sessionlayer.Session) -> None:
    """Reads the data and the events (each checkpoint is a MajorSyncIndication: unread, the
    server would stop reading after ``Options.max_queued_events`` of them)."""

    async def events() -> None:
        async for _ in session.events():
            pass

    task = asyncio.ensure_future(events())
    try:
        async for _ in session:
            pass
    finally:
        task.cancel()


async def _settled(server: sessionlayer.Server) -> None:
    """Wait until the server's own store writes are done, before the records are counted.
    Teardown, not timing: it reads the server's private set of writes in flight (its
    tasks include the store's sweep, which runs until close()), there being no public way
    to wait for them but ``wait_closed()``."""
    async with asyncio.timeout(10):
        while server._writes:
            await asyncio.gather(*server._writes, return_exceptions=True)


async def checkpoints(store: Any, count: int, duration: float) -> dict[str, float]:
    server = await sessionlayer.serve(_sink, HOST, 0, options=ON, store=store)
    try:
        client = await sessionlayer.connect(HOST, server.port, options=ON)
        assert client.resumable
        for i in range(50):  # warm-up
            await client.sync(major=True, user_data=b"warm%04d" % i)
        samples: list[float] = []
        start = perf()
        deadline = start + duration
        for i in range(count):
            t0 = perf()
            await client.sync(major=True, user_data=b"cp%06d" % i)
            samples.append(perf() - t0)
            if perf() >= deadline:
                break
        elapsed = perf() - start
        if store is not None:  # the last checkpoint is in the store, as it was confirmed
            record = await store.get(client.id)
            assert record is not None and record.checkpoint is not None
            assert record.checkpoint.user_data == b"cp%06d" % (len(samples) - 1)
        await client.release()
        await _settled(server)
    finally:
        server.close()
        await server.wait_closed()
    samples.sort()
    return {"checkpoints": len(samples), "seconds": elapsed,
            "per_s": len(samples) / elapsed, "p50_us": _percentile(samples, 50) * 1e6,  # type: ignore[arg-type]
            "p99_us": _percentile(samples, 99) * 1e6}  # type: ignore[arg-type]  # fmt: skip


async def throughput(store: Any, repeat: int, duration: float) -> dict[str, Any]:
    each = Impl("store", await sessionlayer_servers(ON, store=store),
                functools.partial(SessionlayerClient.open, options=ON))  # fmt: skip
    try:
        await one_way(each, 64, 2000, 1.0)  # warm-up
        runs = [await one_way(each, 64, 1_000_000, duration) for _ in range(repeat)]
        for server in each.servers.servers:
            await _settled(server)
    finally:
        for close in each.servers.closers:
            await close()
    best = statistics.median_low(sorted(r["msgs_per_s"] for r in runs))
    return {**next(r for r in runs if r["msgs_per_s"] == best), "runs": runs}


async def sessions(store: Any, count: int) -> dict[str, float]:
    """``count`` sessions opened and released one after the other; ``left``: records of
    those released sessions still in the store once the server's writes are done (0 when
    every ``delete`` came after its session's ``put``)."""
    server = await sessionlayer.serve(_sink, HOST, 0, options=ON, store=store)
    ids = set()

    async def one() -> None:
        session = await sessionlayer.connect(HOST, server.port, options=ON)
        ids.add(session.id)
        await session.release()

    try:
        for _ in range(20):  # warm-up
            await one()
        start = perf()
        for _ in range(count):
            await one()
        elapsed = perf() - start
        await _settled(server)
        left = len([r for r in await store.list() if r.id in ids]) if store is not None else 0
    finally:
        server.close()
        await server.wait_closed()
    return {"sessions": count + 20, "seconds": elapsed, "per_s": count / elapsed, "left": left}


async def measure(stores: dict[str, str | None], args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, url in stores.items():
        store = open_store(url) if url is not None else None
        try:
            r = out[name] = {
                "checkpoints": await checkpoints(store, args.checkpoints, args.duration),
                "one_way_64": await throughput(store, args.repeat, args.duration),
                "sessions": await sessions(store, args.sessions),
            }
        finally:
            if store is not None:
                await store.close()
        log(
            f"store {name:<6} {r['checkpoints']['per_s']:>8,.0f} checkpoints/s"
            f" (p50 {r['checkpoints']['p50_us']:.0f} us),"
            f" one-way 64 B {r['one_way_64']['msgs_per_s']:>10,.0f} msg/s,"
            f" {r['sessions']['per_s']:,.0f} sessions/s ({r['sessions']['left']} records left)"
        )
    return out


def _spread(r: dict[str, Any]) -> str:
    rates = [run["msgs_per_s"] for run in r["runs"]]
    return f"{min(rates):,.0f}-{max(rates):,.0f}"


def _left(r: dict[str, Any]) -> str:
    if not r["left"]:
        return ""
    return (
        f"{r['left']} of {r['sessions']} released sessions' records were left in the"
        " store (their delete reached it before their put)"
    )


def rows(result: dict[str, Any], notes: dict[str, str]) -> list[Row]:
    none = result["none"]
    out = [
        Row("checkpoints, no store", "checkpoints/s", none["checkpoints"]["per_s"], None),
        Row("checkpoint p50, no store", "us", none["checkpoints"]["p50_us"], None),
    ]
    for name, label in (("sqlite", "SQLite"), ("redis", "Redis")):
        r = result.get(name)
        if r is None:
            out.append(Row(f"{label} store", "-", None, None, "", notes.get(name, "")))
            continue
        out += [
            Row(f"checkpoints, {label}", "checkpoints/s", r["checkpoints"]["per_s"],
                none["checkpoints"]["per_s"]),
            Row(f"checkpoint p50, {label}", "us", r["checkpoints"]["p50_us"],
                none["checkpoints"]["p50_us"]),
            Row(f"one-way 64 B, {label}", "msg/s", r["one_way_64"]["msgs_per_s"],
                none["one_way_64"]["msgs_per_s"], "",
                f"runs {_spread(r['one_way_64'])} vs no store {_spread(none['one_way_64'])}"),
            Row(f"connect+release, {label}", "sessions/s", r["sessions"]["per_s"],
                none["sessions"]["per_s"], "", _left(r["sessions"])),
        ]  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.recovery_stores",
        description="checkpoints, one-way data and sessions with the SQLite and Redis stores",
    )
    parser.add_argument("--loop", choices=("both", "asyncio", "uvloop"), default="both")
    parser.add_argument("--quick", action="store_true", help="short runs: a smoke run")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the tables")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--checkpoints", type=int, default=5000, help="at most, per store")
    parser.add_argument("--sessions", type=int, default=300, help="connect+release, per store")
    parser.add_argument("--repeat", type=int, default=3, help="one-way runs (median)")
    parser.add_argument("--duration", type=float, default=2.0, help="at most this long a run")
    args = parser.parse_args(argv)
    if args.quick:
        args.checkpoints, args.sessions, args.repeat, args.duration = 500, 50, 1, 0.5
    names, skipped = loops(args.loop)
    if skipped:
        log(f"uvloop left out: {skipped}")
    results: dict[str, Any] = {"python": platform.python_version(), "uvloop_skipped": skipped,
                               "loops": {}}  # fmt: skip
    started = perf()
    with (
        tempfile.TemporaryDirectory(prefix="bench-stores-") as tmp,
        redis_server(tmp) as (redis_url, why),
    ):
        notes = {"redis": f"left out: {why}"} if redis_url is None else {}
        results["redis"] = redis_url or why
        for name in names:
            db = os.path.join(tmp, f"bench-{name}.db")
            stores = {"none": None, "sqlite": f"sqlite:{db}"}
            if redis_url is not None:
                stores["redis"] = redis_url
            with asyncio.Runner(loop_factory=_factory(name)) as runner:
                result = runner.run(measure(stores, args))
            results["loops"][name] = {"loop": _loop_description(name), "stores": result,
                                      "notes": notes}  # fmt: skip
    results["seconds"] = perf() - started
    all_rows = [r for res in results["loops"].values() for r in rows(res["stores"], notes)]
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    else:
        print(
            f"session stores: checkpoints (sync(major=True) round trips), one-way 64 B and"
            f" sessions, beside no store; Python {results['python']}; redis-server"
            f" {results['redis']}; {results['seconds']:.0f} s"
        )
        for res in results["loops"].values():
            print(f"\nloop: {res['loop']}")
            print(format_rows(rows(res["stores"], notes), baseline="no store", measured="store"))
    failed = any(r.verdict == "FAIL" for r in all_rows)
    return 1 if failed and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
