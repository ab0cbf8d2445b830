"""The server side of session setup in one process, without sockets, phase by phase.

    python -m bench.setup_cpu [N] [time|cprofile|pyinstrument] [asyncio|uvloop]

Captures the CR and CN a real ``connect()`` sends, then feeds them to N server protocols
(``Server._protocol()`` + ``connection_made`` on a fake transport, 64 at a time) and times
each phase: protocol creation, CR -> CC, CN -> AC (hello, negotiation, Session, handler
task), the handler's first step.  No kernel, no client: what the Python code costs.
``cprofile`` / ``pyinstrument`` write /tmp/setup-cpu-<loop>.prof / .txt.  NOGC=1 in the
environment disables the garbage collector.
"""

import argparse
import asyncio
import cProfile
import gc
import os
import sys
import time

import sessionlayer
from bench.aio import OPTIONS
from bench.setup_sides import FakeTransport, feed



def _count(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"not a number of sessions: {text!r} (1 or more)")
    return int(text)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """``[N] [time|cprofile|pyinstrument] [asyncio|uvloop]``, as the docstring says
    (``--help`` prints it; a mistake is argparse's usage line, exit 2: it was a
    ValueError's traceback)."""
    p = argparse.ArgumentParser(
        prog="python -m bench.setup_cpu",
        description="The server side of session setup in one process, without sockets,"
        " phase by phase.")  # fmt: skip
    p.add_argument("n", nargs="?", type=_count, default=5000, metavar="N",
                   help="sessions to set up (5000)")  # fmt: skip
    p.add_argument("mode", nargs="?", choices=("time", "cprofile", "pyinstrument"),
                   default="time", help="time them (the default), or profile them into"
                   " /tmp/setup-cpu-LOOP.prof / .txt")  # fmt: skip
    p.add_argument("loop", nargs="?", choices=("asyncio", "uvloop"), default="asyncio",
                   help="the event loop (asyncio)")  # fmt: skip
    return p.parse_args(argv)


N, MODE, LOOP = 5000, "time", "asyncio"  # (parse_args() sets them when run)


async def capture():
    out = []

    async def h(s):
        async for _ in s:
            pass

    server = await sessionlayer.serve(
        h, "127.0.0.1", 0, options=sessionlayer.Options(keepalive_interval=None, idle_timeout=None)
    )
    s = await sessionlayer.connect(
        "127.0.0.1", server.port, options=OPTIONS, trace=lambda d, b: out.append((d, bytes(b)))
    )
    s.abort()
    server.close()
    await server.wait_closed()
    return [b for d, b in out if d == "out"][:2]


async def main():
    cr, cn = await capture()
    print(f"CR {len(cr)} B, CN {len(cn)} B", file=sys.stderr)

    async def handler(session):
        async for data in session:
            await session.send(data)

    server = await sessionlayer.serve(
        handler,
        "127.0.0.1",
        0,
        options=sessionlayer.Options(keepalive_interval=None, idle_timeout=None),
        max_sessions=100_000,
        max_handshakes=100_000,
    )
    # warm-up
    for _ in range(200):
        p = server._protocol()
        p.connection_made(FakeTransport())
        feed(p, cr)
        feed(p, cn)
    await asyncio.sleep(0)
    gc.collect()
    if os.environ.get("NOGC"):
        gc.disable()
    t = {"protocol+connection_made": 0.0, "CR->CC": 0.0, "CN->AC": 0.0, "handler first step": 0.0}
    pc = time.perf_counter
    protos = []
    prof = cProfile.Profile() if MODE == "cprofile" else None
    if MODE == "pyinstrument":
        import pyinstrument

        prof = pyinstrument.Profiler(interval=0.0001, async_mode="disabled")
        prof.start()
    elif prof:
        prof.enable()
    t_all = pc()
    c_all = time.process_time()
    BATCH = 64
    for _ in range(0, N, BATCH):
        batch = []
        a = pc()
        for _ in range(BATCH):
            p = server._protocol()
            tr = FakeTransport()
            p.connection_made(tr)
            batch.append((p, tr))
        b = pc()
        for p, _tr in batch:
            feed(p, cr)
        c = pc()
        for p, _tr in batch:
            feed(p, cn)
        d = pc()
        await asyncio.sleep(0)  # handler tasks take their first step
        e = pc()
        t["protocol+connection_made"] += b - a
        t["CR->CC"] += c - b
        t["CN->AC"] += d - c
        t["handler first step"] += e - d
        protos += batch
    wall = pc() - t_all
    cpu = time.process_time() - c_all
    if MODE == "cprofile":
        prof.disable()
        prof.dump_stats(f"/tmp/setup-cpu-{LOOP}.prof")
    elif MODE == "pyinstrument":
        prof.stop()
        with open(f"/tmp/setup-cpu-{LOOP}.txt", "w") as f:
            f.write(prof.output_text(unicode=False, color=False, show_all=False))
    n = len(protos)
    assert all(len(tr.out) == 2 for _, tr in protos), [len(tr.out) for _, tr in protos[:3]]
    print(
        f"{n} sessions, {wall / n * 1e6:.1f} us wall,"
        f" {cpu / n * 1e6:.1f} us CPU per session ({MODE})"
    )
    for k, v in t.items():
        print(f"  {k:28s} {v / n * 1e6:7.1f} us")
    print(f"  live sessions: {len(server._live)}; handler tasks {len(server._handlers)}")
    sys.stdout.flush()
    os._exit(0)  # no teardown of N sessions


if __name__ == "__main__":
    _ns = parse_args()
    N, MODE, LOOP = _ns.n, _ns.mode, _ns.loop
    factory = None
    if LOOP == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as r:
        r.run(main())
