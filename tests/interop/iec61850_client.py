#!/usr/bin/env python3
"""A real libiec61850 MMS client (IedConnection from the PyPI package ``pyiec61850-ng``).

TEST-ONLY: pyiec61850-ng is GPL-3.0; sessionlayer never imports it. This script runs in its own
process and is talked to over loopback TCP only.

    python tests/interop/iec61850_client.py --host 127.0.0.1 --port N [--abort]

It connects (COTP CR/CC, session CN/AC, MMS initiate), reads
``testmodelSENSORS/GGIO1.AnIn1.mag.f`` with FC MX, prints ``{"value": 42.5}`` (JSON, one line)
on stdout, then ends the association:

* default: ``IedConnection_release`` (MMS conclude; on the conclude response libiec61850 sends
  session FN carrying ACSE RLRQ), then waits until the peer has ended the connection (DN, or
  TCP closed), then ``IedConnection_close``;
* ``--abort``: ``IedConnection_abort`` (session AB carrying ACSE ABRT); libiec61850 then waits
  for the peer to close TCP and reports a timeout if it does not.

``IedConnection_close`` alone sends neither FN nor AB: it just closes the TCP socket.

libiec61850 1.6.1 client race (worked around here): ``MmsConnection_connectAsync`` sets the MMS
state to CONNECTING *after* starting the association in its background thread. On a fast
loopback peer the thread may finish the whole association (CR/CC, CN/AC, initiate) first; the
late CONNECTING then overwrites CONNECTED, ``IedConnection_connect`` still reports success, and
every request fails at once with "connection-lost" without anything being sent. The signature
(read fails with connection-lost while ``IedConnection_getState`` still says CONNECTED) differs
from a real loss (state CLOSED), so the client then drops that connection (TCP close) and
connects again, up to ``--attempts`` times, saying so on stderr.

Exit codes (a one-line reason is printed on stderr):
0 ok; 1 connect failed; 2 pyiec61850 not usable; 3 read failed; 4 release/abort failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

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


class _StaleConnect(Exception):
    """The connect race above happened: this connection can never carry a request."""


def session(iec, args: argparse.Namespace) -> int:  # type: ignore[no-untyped-def]
    """One connection: connect, read, release/abort. Raises _StaleConnect on the race."""

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
            if (
                err == iec.IED_ERROR_CONNECTION_LOST
                and iec.IedConnection_getState(con) == iec.IED_STATE_CONNECTED
            ):
                raise _StaleConnect
            _err(f"read {args.reference} [MX] failed: {describe(err)}")
            return EXIT_READ
        print(json.dumps({"value": value}), flush=True)

        if args.abort:
            err = _error_code(iec.IedConnection_abort(con))
            if err != iec.IED_ERROR_OK:
                _err(f"abort failed (peer did not close TCP after AB?): {describe(err)}")
                return EXIT_END
            return EXIT_OK

        err = _error_code(iec.IedConnection_release(con))
        if err != iec.IED_ERROR_OK:
            _err(f"release (MMS conclude) failed: {describe(err)}")
            return EXIT_END
        # libiec61850 sends FN once the conclude response is in, and returns without waiting
        # for DN; wait until the peer has ended the connection (DN or TCP close).
        deadline = time.monotonic() + args.timeout_ms / 1000
        while iec.IedConnection_getState(con) != iec.IED_STATE_CLOSED:
            if time.monotonic() > deadline:
                _err(f"peer did not end the connection within {args.timeout_ms} ms after FN")
                return EXIT_END
            time.sleep(0.002)
        return EXIT_OK
    finally:
        iec.IedConnection_close(con)
        iec.IedConnection_destroy(con)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--abort", action="store_true", help="abort (AB) instead of release (FN)")
    ap.add_argument("--reference", default=REFERENCE, help="object reference to read (FC MX)")
    ap.add_argument(
        "--timeout-ms", type=int, default=5000, help="connect and per-request timeout (ms)"
    )
    ap.add_argument(
        "--attempts", type=int, default=5, help="connections to try against the connect race"
    )
    args = ap.parse_args(argv)

    iec = load_iec()
    for attempt in range(1, args.attempts + 1):
        try:
            return session(iec, args)
        except _StaleConnect:
            _err(
                f"attempt {attempt}/{args.attempts}: libiec61850 connect race (MMS state left "
                "at CONNECTING, request not sent); connection dropped"
                + ("; connecting again" if attempt < args.attempts else "")
            )
    _err(f"read {args.reference} [MX] failed: connect race on all {args.attempts} attempts")
    return EXIT_READ


if __name__ == "__main__":
    sys.exit(main())
