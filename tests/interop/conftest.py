"""Fixtures that run the REAL libiec61850 peers on loopback, for interop tests.

The peers come from the PyPI package ``pyiec61850-ng`` (libiec61850 1.6.1 via SWIG; GPL-3.0,
a TEST-ONLY dependency). They run as separate processes (``iec61850_server.py`` and
``iec61850_client.py`` beside this file) started with ``sys.executable``, so the interpreter that
runs pytest must have pyiec61850-ng installed. sessionlayer itself never imports it.

Fixtures:

``iec61850_server`` -> int
    The TCP port of a fresh libiec61850 MMS server on 127.0.0.1 serving
    ``testmodelSENSORS/GGIO1.AnIn1.mag.f`` [MX] = 42.5. Function-scoped (about 0.1 s to start).
``iec61850_server_handle`` -> :class:`Iec61850Server`
    The same server with its process and stderr, for tests that want to look at them.
    (``iec61850_server`` uses it: a test asking for both gets the same server.)
``run_iec61850_client`` -> ``run(port, abort=False, *, host=..., reference=..., timeout=...,
check=True) -> ClientResult``
    Runs the libiec61850 client once against ``host:port``: connect, read, then release
    (MMS conclude + session FN, expects DN) or, with ``abort=True``, abort (session AB).

If pyiec61850 cannot be loaded by ``sys.executable``, the tests using these fixtures are skipped,
except when the environment variable ``CI`` is set (to anything but "", "0", "false", "no"):
then they FAIL, so that CI never passes without having run the real peers.

A server that dies while a test runs (e.g. crashed by bytes the test sent) makes that test
error at teardown, with the server's exit code and stderr.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import selectors
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest
from tests.tools import unavailable

HERE = Path(__file__).resolve().parent
SERVER_SCRIPT = HERE / "iec61850_server.py"
CLIENT_SCRIPT = HERE / "iec61850_client.py"

HOST = "127.0.0.1"
REFERENCE = "testmodelSENSORS/GGIO1.AnIn1.mag.f"
VALUE = 42.5
PIP_REQUIREMENT = "pyiec61850-ng==1.6.1.10"

READY_TIMEOUT = 15.0  # seconds to wait for the READY line (normally ~0.1 s)
STOP_TIMEOUT = 5.0  # seconds for a graceful stop before SIGTERM, then SIGKILL
CLIENT_TIMEOUT = 15.0  # seconds for one client run (its own timeouts are 5 s)


# ----------------------------------------------------------------------------- availability


@functools.cache
def _probe_pyiec61850() -> tuple[bool, str]:
    """Run the server script's --check with sys.executable: (usable, versions or reason)."""
    try:
        proc = subprocess.run(
            [sys.executable, str(SERVER_SCRIPT), "--check"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"{type(exc).__name__}: {exc}"
    if proc.returncode == 0:
        return True, proc.stdout.strip()
    return False, (proc.stderr.strip() or proc.stdout.strip() or f"exit {proc.returncode}")


def require_pyiec61850() -> str:
    """Return the peers' versions; skip (locally) or fail (under CI) if they cannot run."""
    ok, detail = _probe_pyiec61850()
    if ok:
        return detail
    msg = (
        f"the libiec61850 interop peers cannot run: pyiec61850 does not load with "
        f"{sys.executable} ({detail}). Install the test dependency: pip install "
        f"'{PIP_REQUIREMENT}'"
    )
    unavailable(msg)


@pytest.fixture(scope="session")
def iec61850_available() -> str:
    """The peers' versions, e.g. 'pyiec61850-ng 1.6.1.10, libiec61850 1.6.1'."""
    return require_pyiec61850()


# ----------------------------------------------------------------------------- server


@dataclasses.dataclass
class Iec61850Server:
    host: str
    port: int
    process: subprocess.Popen[bytes]
    _stderr: IO[bytes]

    def alive(self) -> bool:
        return self.process.poll() is None

    def stderr(self) -> str:
        """Everything the server wrote to stderr (and to stdout after READY) so far."""
        self._stderr.flush()
        return os.pread(self._stderr.fileno(), 1 << 20, 0).decode("utf-8", "replace")


def _wait_ready(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """Read the child's stdout until 'READY <port>'; return the port. No sleeping."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    buf = b""
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no READY line from the server within {timeout} s")
            if not sel.select(remaining):
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                raise EOFError("server closed stdout before printing READY")
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                words = line.decode("utf-8", "replace").split()
                if len(words) == 2 and words[0] == "READY" and words[1].isdigit():
                    return int(words[1])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Close stdin (graceful stop), then SIGTERM, then SIGKILL; always reap."""
    if proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()
    for action in (None, proc.terminate, proc.kill):
        if proc.poll() is not None:
            break
        if action is not None:
            action()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(STOP_TIMEOUT)
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


@contextlib.contextmanager
def start_iec61850_server(
    *, value: float = VALUE, port: int = 0, host: str = HOST
) -> Iterator[Iec61850Server]:
    """Run iec61850_server.py (port 0 = any free port) until the block ends.

    Raises RuntimeError if it does not get ready, and AssertionError after the block if the
    server had died during it or did not stop cleanly.
    """
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [
                sys.executable,
                str(SERVER_SCRIPT),
                "--host",
                host,
                "--port",
                str(port),
                "--value",
                repr(value),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
        )
        server: Iec61850Server | None = None
        try:
            try:
                ready_port = _wait_ready(proc, READY_TIMEOUT)
            except (TimeoutError, EOFError) as exc:
                _stop(proc)
                tmp = Iec61850Server(host, port, proc, err)
                raise RuntimeError(
                    f"libiec61850 server did not start: {exc}; exit code {proc.returncode}; "
                    f"stderr:\n{tmp.stderr()}"
                ) from None
            server = Iec61850Server(host, ready_port, proc, err)
            try:
                yield server
            except BaseException as exc:
                if proc.poll() is not None:
                    exc.add_note(
                        f"the libiec61850 server had exited with code {proc.returncode}; "
                        f"stderr:\n{server.stderr()}"
                    )
                raise
        finally:
            died = proc.poll()
            _stop(proc)
        if server is not None:
            if died is not None:
                raise AssertionError(
                    f"the libiec61850 server on port {server.port} died during the test "
                    f"(exit code {died}); stderr:\n{server.stderr()}"
                )
            if proc.returncode != 0:
                raise AssertionError(
                    f"the libiec61850 server on port {server.port} did not stop cleanly "
                    f"(exit code {proc.returncode}); stderr:\n{server.stderr()}"
                )


@pytest.fixture
def iec61850_server_handle(iec61850_available: str) -> Iterator[Iec61850Server]:
    with start_iec61850_server() as server:
        yield server


@pytest.fixture
def iec61850_server(iec61850_server_handle: Iec61850Server) -> int:
    """Port of a running libiec61850 server on 127.0.0.1 (42.5 at REFERENCE, FC MX)."""
    return iec61850_server_handle.port


# ----------------------------------------------------------------------------- client


@dataclasses.dataclass
class ClientResult:
    returncode: int
    stdout: str
    stderr: str
    value: float | None  # from the {"value": ...} line, if the read succeeded

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run_client(
    port: int,
    abort: bool = False,
    *,
    host: str = HOST,
    reference: str = REFERENCE,
    timeout: float = CLIENT_TIMEOUT,
    check: bool = True,
) -> ClientResult:
    """Run iec61850_client.py once. With check=True, a non-zero exit raises AssertionError."""
    cmd = [
        sys.executable,
        str(CLIENT_SCRIPT),
        "--host",
        host,
        "--port",
        str(port),
        "--reference",
        reference,
    ]
    if abort:
        cmd.append("--abort")
    try:
        proc = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(
            f"libiec61850 client against {host}:{port} did not finish in {timeout} s; "
            f"stdout: {exc.stdout!r}; stderr: {exc.stderr!r}"
        ) from None
    value = None
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            value = json.loads(line).get("value")
    result = ClientResult(proc.returncode, proc.stdout, proc.stderr, value)
    if check and not result.ok:
        raise AssertionError(
            f"libiec61850 client against {host}:{port} (abort={abort}) exited "
            f"{proc.returncode}: {proc.stderr.strip()}"
        )
    return result


@pytest.fixture
def run_iec61850_client(iec61850_available: str) -> Callable[..., ClientResult]:
    """``run_iec61850_client(port, abort=False, *, host, reference, timeout, check)``."""
    return run_client
