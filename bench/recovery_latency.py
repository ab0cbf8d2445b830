"""Time from a restored transport connection to data flowing again (issue 8).

    python -m bench.recovery_latency                 # 300 cuts; asyncio, then uvloop
    python -m bench.recovery_latency --loop asyncio  # one loop
    python -m bench.recovery_latency --quick         # 50 cuts
    python -m bench.recovery_latency --json

Client, server and a small cutting TCP proxy (bench/cutproxy.py) run on one event loop in
this process, on 127.0.0.1: client -> proxy -> server.  The server's handler echoes what it
reads.  Each cut: the client ping-pongs ``--warm`` (20) 64 B round trips, so the session is
live and quiet (nothing in flight either way); then the proxy resets both of its sockets
(SO_LINGER 0 + abort: an RST to the client and one to the server) and the client at once
sends a 64 B probe.  The server's handler stamps the probe's arrival (``perf_counter``, then
a future: no sleeps) and echoes it; the client waits for the echo and goes on.

Reported, p50 and p99 (nearest rank) over ``--cuts`` cuts:

* **restored -> data**: from the moment the proxy accepted the client's new TCP connection
  (the proxy's accept callback: on the same loop, within one loop turn of the client's
  connect completing) to the probe's arrival at the server's application.  It covers the
  proxy's own connect to the server, COTP CR/CC and the CN/AC with the resume token, and
  the replay of the probe.  Target p99 < 50 ms;
* **cut -> data**: from the cut to the probe's arrival (adds noticing the RST);
* the client's ``Resumed.downtime`` (from the loss it noticed to the resume) and the TCP
  connections the proxy accepted per cut (1 when the first try worked).

Beside it, in the same run, the same with ``resume=False`` (**new session**): the
application sees its ``receive()`` fail, opens a new session through the proxy with
``connect()`` and sends the probe on it: what an application without recovery does.  Both
use bench/aio.py's options (no keepalive, no idle timer); the resumable client's backoff
has first step 0 (reconnect at once).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import platform
import statistics
import sys
import time
from typing import Any

import sessionlayer
from bench.aio import OPTIONS, Row, _loop_description, _percentile, format_rows, log
from bench.cutproxy import CutProxy
from bench.setup import _factory, loops
from sessionlayer.recovery import Backoff, Resumed

HOST = "127.0.0.1"
ON = dataclasses.replace(OPTIONS, resume=True, backoff=Backoff(first=0))
OFF = OPTIONS
LIMIT = 10.0  #: the longest one cut may take before the run fails
CUTS, QUICK_CUTS, WARM = 300, 50, 20
perf = time.perf_counter


class Echo:
    """The server's handler: echoes; stamps each probe's arrival into ``arrival``."""

    def __init__(self) -> None:
        self.arrival: asyncio.Future[float] | None = None

    async def __call__(self, session: sessionlayer.Session) -> None:
        async for data in session:
            if data[:5] == b"probe" and self.arrival is not None:
                self.arrival.set_result(perf())
                while session.next_event_nowait() is not None:
                    pass  # (Interrupted, Resumed: unread events would pause reading)
            await session.send(data)


async def _ping(client: sessionlayer.Session, count: int, payload: bytes) -> None:
    for _ in range(count):
        await client.send(payload)
        assert await client.receive() == payload


async def run(resume: bool, cuts: int, warm: int) -> dict[str, Any]:
    """``cuts`` cuts of one session (``resume``), or of a session per cut (not)."""
    loop = asyncio.get_running_loop()
    echo = Echo()
    options = ON if resume else OFF
    server = await sessionlayer.serve(echo, HOST, 0, options=options)
    proxy = await CutProxy.start(server.port)
    ping = b"p" * 64
    restored: list[float] = []
    from_cut: list[float] = []
    downtime: list[float] = []
    tries: list[int] = []
    try:
        client = await sessionlayer.connect(HOST, proxy.port, options=options)
        assert client.resumable is resume
        await _ping(client, 200, ping)  # warm-up
        gc.collect()
        for i in range(cuts):
            await _ping(client, warm, ping)
            probe = b"probe%059d" % i
            echo.arrival = loop.create_future()
            accepted = len(proxy.accepted)
            cut = perf()
            proxy.cut()
            async with asyncio.timeout(LIMIT):
                if resume:
                    await client.send(probe)  # kept in the journal, replayed on the resume
                else:
                    try:
                        await client.receive()
                        raise AssertionError("the cut session still delivered data")
                    except (sessionlayer.SessionLayerError, ConnectionError):
                        pass  # the session is gone: open a new one
                    client = await sessionlayer.connect(HOST, proxy.port, options=options)
                    await client.send(probe)
                arrived = await echo.arrival
                assert await client.receive() == probe
            restored.append(arrived - proxy.accepted[-1])
            from_cut.append(arrived - cut)
            tries.append(len(proxy.accepted) - accepted)
            while (event := client.next_event_nowait()) is not None:
                if isinstance(event, Resumed):
                    downtime.append(event.downtime)
        if resume:
            assert client.resumes == cuts, (client.resumes, cuts)
        client.abort()
    finally:
        await proxy.close()
        server.close()
        await server.wait_closed()
    out: dict[str, Any] = {"cuts": cuts}
    for key, samples in (("restored", restored), ("from_cut", from_cut), ("downtime", downtime)):
        ordered = sorted(samples)
        if ordered:
            out[key] = {"p50_ms": _percentile(ordered, 50) * 1e3,  # type: ignore[arg-type]
                        "p99_ms": _percentile(ordered, 99) * 1e3,  # type: ignore[arg-type]
                        "max_ms": ordered[-1] * 1e3}  # fmt: skip
    out["tries_per_cut"] = statistics.fmean(tries)
    return out


async def measure(cuts: int, warm: int) -> dict[str, Any]:
    out = {}
    for name, resume in (("new session", False), ("resumed", True)):
        r = out[name] = await run(resume, cuts, warm)
        log(
            f"{name:<11} restored->data p50 {r['restored']['p50_ms']:.2f} ms"
            f" p99 {r['restored']['p99_ms']:.2f} ms; cut->data p50"
            f" {r['from_cut']['p50_ms']:.2f} p99 {r['from_cut']['p99_ms']:.2f} ms;"
            f" {r['tries_per_cut']:.2f} TCP connections per cut ({cuts} cuts)"
        )
    return out


def rows(result: dict[str, Any]) -> list[Row]:
    on, off = result["resumed"], result["new session"]
    out = [
        Row("restored -> data p50", "ms", on["restored"]["p50_ms"], off["restored"]["p50_ms"]),
        Row("restored -> data p99", "ms", on["restored"]["p99_ms"], off["restored"]["p99_ms"],
            "<=50", absolute=True),
        Row("cut -> data p50", "ms", on["from_cut"]["p50_ms"], off["from_cut"]["p50_ms"]),
        Row("cut -> data p99", "ms", on["from_cut"]["p99_ms"], off["from_cut"]["p99_ms"]),
        Row("TCP connections per cut", "mean", on["tries_per_cut"], off["tries_per_cut"]),
    ]  # fmt: skip
    if "downtime" in on:
        out.append(Row("Resumed.downtime p50", "ms", on["downtime"]["p50_ms"], None))
        out.append(Row("Resumed.downtime p99", "ms", on["downtime"]["p99_ms"], None))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.recovery_latency",
        description="time from a restored transport connection to data flowing again",
    )
    parser.add_argument("--loop", choices=("both", "asyncio", "uvloop"), default="both")
    parser.add_argument("--cuts", type=int, default=0, help=f"cuts (default {CUTS})")
    parser.add_argument("--warm", type=int, default=WARM, help="round trips before each cut")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_CUTS} cuts")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the tables")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    cuts = args.cuts or (QUICK_CUTS if args.quick else CUTS)
    names, skipped = loops(args.loop)
    if skipped:
        log(f"uvloop left out: {skipped}")
    results: dict[str, Any] = {
        "python": platform.python_version(),
        "cuts": cuts,
        "warm": args.warm,
        "uvloop_skipped": skipped,
        "loops": {},
    }
    started = perf()
    for name in names:
        with asyncio.Runner(loop_factory=_factory(name)) as runner:
            result = runner.run(measure(cuts, args.warm))
        results["loops"][name] = {"loop": _loop_description(name), **result}
    results["seconds"] = perf() - started
    all_rows = [r for res in results["loops"].values() for r in rows(res)]
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    else:
        print(
            f"time to data after a cut, through a resetting proxy: {cuts} cuts, resumed vs"
            f" a new session; Python {results['python']}; {results['seconds']:.0f} s"
        )
        for res in results["loops"].values():
            print(f"\nloop: {res['loop']}")
            print(format_rows(rows(res), baseline="new session", measured="resumed"))
    failed = any(r.verdict == "FAIL" for r in all_rows)
    return 1 if failed and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
