#!/usr/bin/env python3
"""A real libiec61850 MMS client (IedConnection from the PyPI package ``pyiec61850-ng``).

TEST-ONLY: pyiec61850-ng is GPL-3.0; sessionlayer never imports it. This script runs in its own
process and is talked to over loopback TCP only.

    python tests/interop/iec61850_client.py --host 127.0.0.1 --port N [--abort]

It connects (COTP CR/CC, session CN/AC, MMS initiate), reads
``testmodelSENSORS/GGIO1.AnIn1.mag.f`` with FC MX, prints ``{"value": 42.5}`` (JSON, one line)
on stdout, then ends the association:

* default: ``IedConnection_release`` (MMS conclude, then session FN carrying ACSE RLRQ, which
  the peer must answer with DN carrying RLRE), then ``IedConnection_close``;
* ``--abort``: ``IedConnection_abort`` (session AB carrying ACSE ABRT; no reply expected).

Note that ``IedConnection_close`` alone sends neither FN nor AB: it just closes the TCP socket.

Exit codes (a one-line reason is printed on stderr):
0 ok; 1 connect failed; 2 pyiec61850 not usable; 3 read failed; 4 release/abort failed.
"""

from __future__ import annotations

import argparse
import json
import sys

REFERENCE = "testmodelSENSORS/GGIO1.AnIn1.mag.f"

EXIT_OK = 0
EXIT_CONNECT = 1
EXIT_NO_LIBRARY = 2
EXIT_READ = 3
EXIT_END = 4


def _err(msg: str) -> None:
    print(f"iec61850_client: {msg}", file=sys.stderr, flush=True)


def load_iec():  # type: ignore[no-untyped-def]
    try:
        import pyiec61850  # noqa: F401  (runs the native loader)
        from pyiec61850 import pyiec61850 as iec
    except Exception as exc:
        _err(
            f"cannot import pyiec61850 (pip install pyiec61850-ng) with {sys.executable}: "
            f"{type(exc).__name__}: {exc}"
        )
        sys.exit(EXIT_NO_LIBRARY)
    return iec


def _error_code(result: object) -> int:
    # SWIG maps the trailing IedClientError* out-parameter to (return value, error).
    if isinstance(result, tuple):
        return int(result[-1])
    return int(result)  # type: ignore[call-overload]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--abort", action="store_true", help="abort (AB) instead of release (FN)")
    ap.add_argument("--reference", default=REFERENCE, help="object reference to read (FC MX)")
    ap.add_argument(
        "--timeout-ms", type=int, default=5000, help="connect and per-request timeout (ms)"
    )
    args = ap.parse_args(argv)

    iec = load_iec()

    def describe(err: int) -> str:
        return f"{iec.IedClientError_toString(err)} (IedClientError {err})"

    con = iec.IedConnection_create()
    try:
        iec.IedConnection_setConnectTimeout(con, args.timeout_ms)
        iec.IedConnection_setRequestTimeout(con, args.timeout_ms)
        err = _error_code(iec.IedConnection_connect(con, args.host, args.port))
        if err != iec.IED_ERROR_OK:
            _err(f"connect to {args.host}:{args.port} failed: {describe(err)}")
            return EXIT_CONNECT

        value, err = iec.IedConnection_readFloatValue(con, args.reference, iec.IEC61850_FC_MX)
        if err != iec.IED_ERROR_OK:
            _err(f"read {args.reference} [MX] failed: {describe(err)}")
            iec.IedConnection_abort(con)
            return EXIT_READ
        print(json.dumps({"value": value}), flush=True)

        if args.abort:
            what, err = "abort", _error_code(iec.IedConnection_abort(con))
        else:
            what, err = "release", _error_code(iec.IedConnection_release(con))
        if err != iec.IED_ERROR_OK:
            _err(f"{what} failed: {describe(err)}")
            return EXIT_END
        return EXIT_OK
    finally:
        iec.IedConnection_close(con)
        iec.IedConnection_destroy(con)


if __name__ == "__main__":
    sys.exit(main())
