"""Fixtures of the relay tests: the real libiec61850 peers of ``mms_server.py`` and
``mms_client.py`` (pyiec61850-ng, GPL, test-only, each in its own process).

As in tests/interop: when pyiec61850 cannot be loaded the tests that use these are
skipped, except under CI (``CI`` set), where they fail.  Every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import selectors
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from tests.interop.conftest import _stop, _wait_ready, require_pyiec61850

HERE = Path(__file__).resolve().parent
SERVER = HERE / "mms_server.py"
CLIENT = HERE / "mms_client.py"
READY_TIMEOUT = 20.0
CLIENT_TIMEOUT = 30.0


@dataclasses.dataclass
class MmsServer:
    port: int
    process: subprocess.Popen[bytes]
    _stderr: IO[bytes]

    def stop_connections(self) -> None:
        """libiec61850 stops serving: every client connection is closed (no AB)."""
        assert self.process.stdin is not None
        self.process.stdin.write(b"STOP\n")
        self.process.stdin.flush()

    def stderr(self) -> str:
        self._stderr.flush()
        return os.pread(self._stderr.fileno(), 1 << 20, 0).decode("utf-8", "replace")


@contextlib.contextmanager
def start_mms_server(plates: int = 30) -> Iterator[MmsServer]:
    require_pyiec61850()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, str(SERVER), "--port", "0", "--plates", str(plates)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
        )  # fmt: skip
        try:
            try:
                port = _wait_ready(proc, READY_TIMEOUT)
            except (TimeoutError, EOFError) as exc:
                raise RuntimeError(f"mms_server.py did not start: {exc}") from None
            server = MmsServer(port, proc, err)
            yield server
            assert proc.poll() is None, f"the MMS server died:\n{server.stderr()}"
        finally:
            _stop(proc)


@pytest.fixture
def mms_server() -> Iterator[MmsServer]:
    with start_mms_server() as server:
        yield server


@dataclasses.dataclass
class ClientRun:
    returncode: int
    records: list[dict[str, Any]]
    stderr: str

    def get(self, key: str) -> Any:
        """The value of the last record holding ``key`` (KeyError if none)."""
        for record in reversed(self.records):
            if key in record:
                return record[key]
        raise KeyError(f"no {key!r} in {self.records}; stderr: {self.stderr}")


def _records(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def run_mms_client(port: int, steps: str, timeout_ms: int = 5000,
                   tls_ca: str | None = None) -> ClientRun:  # fmt: skip
    """mms_client.py once against 127.0.0.1:port (blocking; run it in a thread from async
    code); over TLS trusting ``tls_ca`` (a PEM file) when given."""
    require_pyiec61850()
    cmd = [sys.executable, str(CLIENT), "--port", str(port), "--steps", steps,
           "--timeout-ms", str(timeout_ms), *(["--tls-ca", tls_ca] if tls_ca else [])]
    done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=CLIENT_TIMEOUT, check=False)  # fmt: skip
    return ClientRun(done.returncode, _records(done.stdout), done.stderr)


class MmsClientProcess:
    """mms_client.py running in the background: read its records as they come."""

    def __init__(self, port: int, steps: str, timeout_ms: int = 5000) -> None:
        require_pyiec61850()
        cmd = [sys.executable, str(CLIENT), "--port", str(port), "--steps", steps,
               "--timeout-ms", str(timeout_ms)]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)  # fmt: skip
        self.records: list[dict[str, Any]] = []
        self._buf = b""

    def next_record(self, timeout: float = 15.0) -> dict[str, Any]:
        """The next JSON line on the client's stdout (no sleeping: a selector)."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no line from the client within {timeout} s")
                if sel.select(left):
                    chunk = os.read(fd, 4096)
                    if not chunk:
                        raise EOFError(f"the client exited: {self.finish().stderr}")
                    self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        record: dict[str, Any] = json.loads(line)
        self.records.append(record)
        return record

    def finish(self, timeout: float = CLIENT_TIMEOUT) -> ClientRun:
        out, err = self.proc.communicate(timeout=timeout)
        self.records += _records(self._buf.decode() + out.decode())
        self._buf = b""
        return ClientRun(self.proc.returncode, self.records, err.decode())

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=CLIENT_TIMEOUT)
