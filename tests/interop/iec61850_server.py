#!/usr/bin/env python3
"""A real libiec61850 MMS server (from the PyPI package ``pyiec61850-ng``) for interop tests.

TEST-ONLY: pyiec61850-ng is GPL-3.0; sessionlayer never imports it. This script runs in its own
process and is talked to over loopback TCP only.

    python tests/interop/iec61850_server.py --port N [--host 127.0.0.1] [--value 42.5]

It builds, in code, an IED model named ``testmodel`` with one logical device ``SENSORS`` (so the
MMS domain is ``testmodelSENSORS``) holding

    LLN0.Mod             (ENS)
    GGIO1.AnIn1          (MV, float)  -> testmodelSENSORS/GGIO1.AnIn1.mag.f  [MX] = 42.5

which is the model the captured frames in shared/vectors/libiec61850.json were taken from
(MMS variable ``testmodelSENSORS`` / ``GGIO1$MX$AnIn1$mag$f``).

Protocol with the parent process:
* once the listening socket is up, exactly one line ``READY <port>`` is printed on stdout
  (``--port 0`` picks a free port and reports it there); stdout is then redirected to stderr,
  so the parent sees EOF on the pipe right after READY;
* the server runs until its stdin reaches EOF, or it gets SIGTERM / SIGINT
  (``--no-stdin`` ignores stdin, for running it by hand in the background);
* diagnostics go to stderr.

Exit codes: 0 clean stop, 2 pyiec61850 not usable, 3 could not listen on the port, 1 other.
``--check`` only verifies that pyiec61850 loads, prints its versions and exits 0 (or 2).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import selectors
import signal
import socket
import sys

IED_NAME = "testmodel"
LD_INST = "SENSORS"
REFERENCE = "testmodelSENSORS/GGIO1.AnIn1.mag.f"
DEFAULT_VALUE = 42.5

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_NO_LIBRARY = 2
EXIT_CANNOT_LISTEN = 3


def _err(msg: str) -> None:
    print(f"iec61850_server: {msg}", file=sys.stderr, flush=True)


def load_iec():  # type: ignore[no-untyped-def]
    """Import the SWIG module of pyiec61850-ng, or exit 2 with the reason."""
    try:
        import pyiec61850  # noqa: F401  (runs the native loader)
        from pyiec61850 import pyiec61850 as iec
    except Exception as exc:
        hint = ""
        try:
            from pyiec61850 import _libload

            hint = _libload.load_error_hint()
        except Exception:
            pass
        _err(
            f"cannot import pyiec61850 (pip install pyiec61850-ng) with {sys.executable}: "
            f"{type(exc).__name__}: {exc}" + (f"\n{hint}" if hint else "")
        )
        sys.exit(EXIT_NO_LIBRARY)
    return iec


def versions(iec) -> str:  # type: ignore[no-untyped-def]
    try:
        from importlib.metadata import version

        pkg = version("pyiec61850-ng")
    except Exception:
        pkg = "unknown"
    return f"pyiec61850-ng {pkg}, libiec61850 {iec.LibIEC61850_getVersionString()}"


def build_model(iec, value: float):  # type: ignore[no-untyped-def]
    """Return (model, attribute) for testmodelSENSORS/GGIO1.AnIn1.mag.f."""
    model = iec.IedModel_create(IED_NAME)
    ld = iec.LogicalDevice_create(LD_INST, model)
    lln0 = iec.LogicalNode_create("LLN0", ld)
    iec.CDC_ENS_create("Mod", iec.toModelNode(lln0), 0)
    ggio1 = iec.LogicalNode_create("GGIO1", ld)
    # options 0, isIntegerNotFloat False -> AnIn1.mag.f (FLOAT32, FC MX), q, t
    iec.CDC_MV_create("AnIn1", iec.toModelNode(ggio1), 0, False)
    node = iec.IedModel_getModelNodeByObjectReference(model, REFERENCE)
    if node is None:
        raise RuntimeError(f"model has no {REFERENCE}")
    return model, iec.toDataAttribute(node)


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def start_server(iec, model, attr, host: str, port: int, value: float):  # type: ignore[no-untyped-def]
    """Start an IedServer on host:port; return it, or None if it could not listen."""
    server = iec.IedServer_create(model)
    if server is None:
        raise RuntimeError("IedServer_create failed")
    iec.IedServer_setLocalIpAddress(server, host)
    iec.IedServer_updateFloatAttributeValue(server, attr, value)
    # IedServer_start returns once the listening socket exists (or failed): the server
    # thread sets the state before IsoServer_startListening returns.
    iec.IedServer_start(server, port)
    if not iec.IedServer_isRunning(server):
        iec.IedServer_destroy(server)
        return None
    return server


def wait_for_stop(watch_stdin: bool) -> str:
    """Block until stdin reaches EOF (if watched) or SIGTERM/SIGINT arrives."""
    rfd, wfd = os.pipe()
    os.set_blocking(rfd, False)
    os.set_blocking(wfd, False)
    signal.set_wakeup_fd(wfd, warn_on_full_buffer=False)
    got: list[str] = []

    def on_signal(signum: int, _frame: object) -> None:
        got.append(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sel = selectors.DefaultSelector()
    sel.register(rfd, selectors.EVENT_READ, "signal")
    if watch_stdin:
        sel.register(sys.stdin.fileno(), selectors.EVENT_READ, "stdin")
    try:
        while True:
            if got:
                return got[0]
            for key, _ in sel.select():
                if key.data == "signal":
                    with contextlib.suppress(BlockingIOError):
                        os.read(rfd, 512)
                else:
                    try:
                        data = os.read(key.fd, 4096)
                    except OSError:
                        data = b""
                    if not data:
                        return "stdin EOF"
    finally:
        sel.close()
        signal.set_wakeup_fd(-1)
        os.close(rfd)
        os.close(wfd)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    ap.add_argument("--port", type=int, help="TCP port; 0 picks a free one (reported on READY)")
    ap.add_argument("--value", type=float, default=DEFAULT_VALUE, help=f"{REFERENCE} value")
    ap.add_argument("--no-stdin", action="store_true", help="ignore stdin; stop on SIGTERM only")
    ap.add_argument("--check", action="store_true", help="only check that pyiec61850 loads")
    args = ap.parse_args(argv)

    iec = load_iec()
    if args.check:
        print(versions(iec), flush=True)
        return EXIT_OK
    if args.port is None:
        ap.error("--port is required")

    model, attr = build_model(iec, args.value)
    server = None
    try:
        attempts = 5 if args.port == 0 else 1
        port = args.port
        for _ in range(attempts):
            port = free_port(args.host) if args.port == 0 else args.port
            server = start_server(iec, model, attr, args.host, port, args.value)
            if server is not None:
                break
        if server is None:
            _err(f"cannot listen on {args.host}:{args.port or port} (port in use?)")
            return EXIT_CANNOT_LISTEN

        _err(f"{versions(iec)}; serving {REFERENCE} [MX] = {args.value} on {args.host}:{port}")
        print(f"READY {port}", flush=True)
        # From here on stdout is stderr: the parent may stop reading the pipe after READY, and
        # nothing (libiec61850's own printf included) can then block on a full pipe.
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
        why = wait_for_stop(watch_stdin=not args.no_stdin)
        _err(f"stopping ({why})")
        return EXIT_OK
    finally:
        if server is not None:
            iec.IedServer_stop(server)
            iec.IedServer_destroy(server)
        iec.IedModel_destroy(model)


if __name__ == "__main__":
    sys.exit(main())
