"""``python -m bench`` (``make bench``): every benchmark, each beside its baseline.

1. the SPDU decoder against plain ``bytes`` slicing (bench/codec.py);
2. sessions over loopback TCP against raw asyncio (bench/aio.py): throughput,
   ping-pong latency and idle sessions; and the Python calls per S-DATA on that path
   (bench/calls.py: a count the host does not move);
3. session setup and idle memory with client and server in separate processes, on
   asyncio and on uvloop when installed (bench/setup.py; the issue 7 targets);
4. session recovery (issue 8), each beside its peer in the same run: throughput with
   recovery on vs off (bench/recovery.py), time to data after a cut through a resetting
   proxy, resumed vs a new session (bench/recovery_latency.py), checkpoints, data and
   sessions with the SQLite and Redis stores vs none (bench/recovery_stores.py), and a
   reconnect storm of 5,000 sessions vs raw asyncio connections (bench/recovery_storm.py);
5. a file transfer (1 GiB, a checkpoint every 64 MiB; 256 MiB with --quick): sessionlayer
   send beside a plain Python TCP copy and rsync to a local rsync daemon (bench/files.py);
6. the relay (bench/relay.py): throughput and added ping-pong latency through
   ``sessionlayer relay``, beside the direct path and a byte pipe, in the same run;
7. the TCP tunnel beside a direct TCP connection (bench/tunnel.py), and RPC calls/s and
   latency beside grpc.aio with raw bytes and raw asyncio (bench/rpc.py; issue 12).

Arguments go to bench/aio.py (``--quick``, ``--loop asyncio|uvloop``, ``--json``, ...);
bench/setup.py and the recovery benchmarks get ``--quick``, ``--json``, ``--check`` and
``--loop`` from them (without ``--loop``, or with ``--loop auto``, they run both loops);
bench/files.py, bench/relay.py, bench/tunnel.py and bench/rpc.py get ``--quick`` and
``--json``.
"""

from __future__ import annotations

import sys

from bench import (
    aio,
    calls,
    codec,
    files,
    recovery,
    recovery_latency,
    recovery_stores,
    recovery_storm,
    relay,
    rpc,
    setup,
    tunnel,
)


def setup_args(args: list[str]) -> list[str]:
    """The arguments of bench/aio.py that bench/setup.py understands too."""
    out = [a for a in args if a in ("--quick", "--json", "--check")]
    loop = "both"
    for i, arg in enumerate(args):
        if arg == "--uvloop":
            loop = "uvloop"
        elif arg == "--loop" and i + 1 < len(args):
            loop = args[i + 1]
        elif arg.startswith("--loop="):
            loop = arg.partition("=")[2]
    return [*out, "--loop", "both" if loop == "auto" else loop]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    status = codec.main([])
    print()
    status = status or aio.main(args)
    print()
    status = status or calls.main([a for a in args if a in ("--quick", "--json")])
    print()
    status = status or setup.main(setup_args(args))
    for bench in (recovery, recovery_latency, recovery_stores, recovery_storm):
        print()
        status = status or bench.main(setup_args(args))
    print()
    status = status or files.main([a for a in args if a in ("--quick", "--json")])
    short = [a for a in args if a in ("--quick", "--json")]
    print()
    status = status or relay.main(short)
    print()
    status = status or tunnel.main(short)
    print()
    return status or rpc.main(short)


if __name__ == "__main__":
    raise SystemExit(main())
