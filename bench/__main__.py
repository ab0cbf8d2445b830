"""``python -m bench`` (``make bench``): every benchmark, each beside its baseline.

1. the SPDU decoder against plain ``bytes`` slicing (bench/codec.py);
2. sessions over loopback TCP against raw asyncio (bench/aio.py): throughput,
   ping-pong latency and idle sessions.

Arguments go to bench/aio.py (``--quick``, ``--loop asyncio|uvloop``, ``--json``, ...).
"""

from __future__ import annotations

import sys

from bench import aio, codec


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    status = codec.main([])
    print()
    return status or aio.main(args)


if __name__ == "__main__":
    raise SystemExit(main())
