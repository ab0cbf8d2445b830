"""How fast does the SPDU decoder take apart the MMS data TSDU, GT + DT + user data?

The baseline is what any length-prefixed framing costs in Python: read a
2-octet (or, above 65535 octets, 4-octet) big-endian length and slice the
payload out of ``bytes``.  ``decode_tsdu`` does the same job for GT + DT (two
SPDU headers, then the user information to the end of the TSDU) and also
builds two frozen SPDU objects; the ratio says what that costs.

Times come from :func:`time.perf_counter` over a bounded number of calls:
each case is calibrated to about ``--seconds`` per repeat and the best of
``--repeat`` repeats is kept, so the whole run stays well under 30 s.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from sessionlayer.spdu import DataTransfer, GiveTokens, decode_tsdu, encode_tsdu

SIZES = (64, 64 * 1024)  #: user data octets per TSDU
MAX_CALLS = 2_000_000  #: upper bound on calls per repeat, whatever the clock says


@dataclass
class Row:
    case: str
    user_data: int  #: octets of user data per call
    decoder_calls_per_s: float
    decoder_mb_per_s: float
    baseline_calls_per_s: float
    baseline_mb_per_s: float
    ratio: float  #: decoder time / baseline time (1.0 = as fast as slicing)


def gt_dt(size: int) -> bytes:
    """The MMS-profile data TSDU: GT (LI 0), DT (LI 0), then *size* octets of user data."""
    return encode_tsdu(GiveTokens(), DataTransfer(user_data=bytes(range(256)) * (size // 256)
                                                  + bytes(size % 256)))  # fmt: skip


def length_prefixed(size: int) -> tuple[bytes, Callable[[bytes], bytes]]:
    """The same user data behind a plain length prefix, and the function that slices it out."""
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    if size <= 0xFFFF:

        def slice2(buf: bytes) -> bytes:
            n = int.from_bytes(buf[:2], "big")
            return buf[2 : 2 + n]

        return size.to_bytes(2, "big") + payload, slice2

    def slice4(buf: bytes) -> bytes:
        n = int.from_bytes(buf[:4], "big")
        return buf[4 : 4 + n]

    return size.to_bytes(4, "big") + payload, slice4


def _time(func: Callable[[bytes], object], arg: bytes, seconds: float, repeat: int) -> float:
    """Best seconds per call."""
    calls = 1
    while True:  # calibrate: grow until one batch takes about `seconds`
        start = time.perf_counter()
        for _ in range(calls):
            func(arg)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds / 4 or calls >= MAX_CALLS:
            break
        calls = min(MAX_CALLS, calls * 4)
    calls = max(1, min(MAX_CALLS, int(calls * seconds / max(elapsed, 1e-9))))
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(calls):
            func(arg)
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def measure(size: int, seconds: float = 0.3, repeat: int = 5) -> Row:
    tsdu = gt_dt(size)
    gt, dt = decode_tsdu(tsdu)  # and check it is what we think it is
    assert isinstance(gt, GiveTokens) and isinstance(dt, DataTransfer)
    assert len(dt.user_data) == size
    framed, baseline = length_prefixed(size)
    assert baseline(framed) == dt.user_data
    t_dec = _time(decode_tsdu, tsdu, seconds, repeat)
    t_base = _time(baseline, framed, seconds, repeat)
    return Row(
        case="GT+DT",
        user_data=size,
        decoder_calls_per_s=1 / t_dec,
        decoder_mb_per_s=size / t_dec / 1e6,
        baseline_calls_per_s=1 / t_base,
        baseline_mb_per_s=size / t_base / 1e6,
        ratio=t_dec / t_base,
    )


def table(rows: list[Row]) -> str:
    head = (
        f"{'TSDU':<8}{'user data':>10}  {'decode_tsdu calls/s':>20}{'MB/s':>10}"
        f"  {'bytes slicing calls/s':>22}{'MB/s':>10}  {'ratio':>6}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        size = f"{r.user_data // 1024} KiB" if r.user_data >= 1024 else f"{r.user_data} B"
        lines.append(
            f"{r.case:<8}{size:>10}  {r.decoder_calls_per_s:>20,.0f}{r.decoder_mb_per_s:>10,.1f}"
            f"  {r.baseline_calls_per_s:>22,.0f}{r.baseline_mb_per_s:>10,.1f}  {r.ratio:>5.1f}x"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=0.3, help="target time per repeat")
    parser.add_argument("--repeat", type=int, default=5, help="repeats; the best is kept")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows = [measure(size, args.seconds, args.repeat) for size in SIZES]
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
        return 0
    print(f"SPDU decoder vs bytes slicing  (Python {platform.python_version()},"
          f" {platform.machine()})")  # fmt: skip
    print(table(rows))
    print("ratio = decode_tsdu time / slicing time of the same user data behind a 2-octet"
          " (64 B) or 4-octet (64 KiB) length prefix.")  # fmt: skip
    print(f"({time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
