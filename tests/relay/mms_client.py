#!/usr/bin/env python3
"""A real libiec61850 MMS client (IedConnection, pyiec61850-ng) for the relay tests.

TEST-ONLY: pyiec61850-ng is GPL-3.0; sessionlayer never imports it.

    python tests/relay/mms_client.py --port N [--steps read,dataset,write,release]

Steps, in order, on one association; each prints one JSON line on stdout:

* ``read``: ``GGIO1.AnIn1.mag.f`` [MX] -> ``{"read": 42.5}``;
* ``dataset``: the data set ``LLN0.Plates`` -> ``{"dataset": members, "strings": [...]}``
  (the six strings of the first and of the last plate);
* ``write``: ``GGIO1.SetPt.setMag.f`` [SP] := 12.25, then read back -> ``{"write": 12.25}``;
* ``release`` (MMS conclude, FN; then until the connection is closed), ``abort`` (AB),
  ``closed`` (wait, up to the timeout, until the peer ends the connection: ``{"closed": s}``).

The connect race of libiec61850 1.6.1 (see tests/interop/iec61850_client.py) is retried
the same way.  Exit codes: 0 ok, 1 connect failed, 2 no pyiec61850, 3 a step failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "interop"))

import iec61850_client as base

DATASET = "testmodelSENSORS/LLN0.Plates"
SETPOINT = "testmodelSENSORS/GGIO1.SetPt.setMag.f"


def _say(**record: object) -> None:
    print(json.dumps(record), flush=True)


def _strings(iec, value) -> list[str]:  # type: ignore[no-untyped-def]
    """The visible strings of one DPL structure, in order."""
    out = []
    for i in range(iec.MmsValue_getArraySize(value)):
        element = iec.MmsValue_getElement(value, i)
        if iec.MmsValue_getType(element) == iec.MMS_VISIBLE_STRING:
            out.append(iec.MmsValue_toString(element))
    return out


class StepFailed(Exception):
    pass


def run_steps(iec, con, args) -> None:  # type: ignore[no-untyped-def]
    def check(err: int, what: str) -> None:
        if err != iec.IED_ERROR_OK:
            raise StepFailed(f"{what}: {iec.IedClientError_toString(err)} ({err})")

    for step in args.steps.split(","):
        if step == "read":
            value, err = iec.IedConnection_readFloatValue(con, base.REFERENCE, iec.IEC61850_FC_MX)
            if err == iec.IED_ERROR_CONNECTION_LOST and (
                iec.IedConnection_getState(con) == iec.IED_STATE_CONNECTED
            ):
                raise base._StaleConnect
            check(err, "read")
            _say(read=value)
        elif step == "dataset":
            # (IedConnection_readDataSetValues wants a ClientDataSet the binding cannot make:
            # the same MMS read of the named variable list, one level down.)
            mms = iec.IedConnection_getMmsConnection(con)
            domain, _, name = DATASET.partition("/")
            values = iec.MmsConnection_readNamedVariableListValues(
                mms, None, domain, name.replace(".", "$"), True
            )
            if values is None:
                raise StepFailed("read data set: no values")
            size = iec.MmsValue_getArraySize(values)
            first = _strings(iec, iec.MmsValue_getElement(values, 0))
            last = _strings(iec, iec.MmsValue_getElement(values, size - 1))
            iec.MmsValue_delete(values)
            _say(dataset=size, strings=[first, last])
        elif step == "write":
            err = base._error_code(
                iec.IedConnection_writeFloatValue(con, SETPOINT, iec.IEC61850_FC_SP, 12.25)
            )
            check(err, "write")
            value, err = iec.IedConnection_readFloatValue(con, SETPOINT, iec.IEC61850_FC_SP)
            check(err, "read back")
            _say(write=value)
        elif step == "abort":
            check(base._error_code(iec.IedConnection_abort(con)), "abort")
            _say(abort=True)
        elif step == "release":
            check(base._error_code(iec.IedConnection_release(con)), "release")
            _say(release=wait_closed(iec, con, args.timeout_ms / 1000))
        elif step == "closed":
            _say(closed=wait_closed(iec, con, args.timeout_ms / 1000))
        else:
            raise StepFailed(f"unknown step {step!r}")


def wait_closed(iec, con, timeout: float) -> float | None:  # type: ignore[no-untyped-def]
    """Seconds until the connection is closed (by the peer), or None at the timeout."""
    start = time.monotonic()
    while iec.IedConnection_getState(con) != iec.IED_STATE_CLOSED:
        if time.monotonic() - start > timeout:
            return None
        time.sleep(0.002)
    return round(time.monotonic() - start, 3)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--steps", default="read,release")
    ap.add_argument("--timeout-ms", type=int, default=5000)
    ap.add_argument("--attempts", type=int, default=5)
    ap.add_argument("--tls-ca", metavar="FILE", help="connect over TLS (libiec61850's"
                    " mbedtls), trusting this CA's certificate")
    args = ap.parse_args(argv)
    iec = base.load_iec()
    tls = None
    if args.tls_ca:
        tls = iec.TLSConfiguration_create()
        iec.TLSConfiguration_setClientMode(tls)
        if not iec.TLSConfiguration_addCACertificateFromFile(tls, args.tls_ca):
            base._err(f"cannot load {args.tls_ca}")
            return base.EXIT_CONNECT
    for attempt in range(1, args.attempts + 1):
        con = iec.IedConnection_create() if tls is None else (
            iec.IedConnection_createWithTlsSupport(tls))  # fmt: skip
        try:
            iec.IedConnection_setConnectTimeout(con, args.timeout_ms)
            iec.IedConnection_setRequestTimeout(con, args.timeout_ms)
            err = base._error_code(iec.IedConnection_connect(con, args.host, args.port))
            if err != iec.IED_ERROR_OK:
                base._err(f"connect failed: {iec.IedClientError_toString(err)} ({err})")
                _say(connect=iec.IedClientError_toString(err))
                return base.EXIT_CONNECT
            run_steps(iec, con, args)
            return base.EXIT_OK
        except base._StaleConnect:
            base._err(f"attempt {attempt}: libiec61850 connect race; connecting again")
        except StepFailed as exc:
            base._err(str(exc))
            _say(failed=str(exc))
            return base.EXIT_READ
        finally:
            iec.IedConnection_close(con)
            iec.IedConnection_destroy(con)
    return base.EXIT_READ


if __name__ == "__main__":
    sys.exit(main())
