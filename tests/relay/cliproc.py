"""``sessionlayer relay`` in a process of its own, for the tests that go through the command
line: start it, read the port it listens on, stop it with SIGTERM; every wait bounded."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0


class RelayProcess:
    """A running ``python -m sessionlayer relay ...``; its stderr goes to a file (a pipe
    nobody drains would block a relay that logs a lot)."""

    def __init__(self, *args: str) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH")) if p)
        self._err = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sessionlayer", "relay", *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._err, env=env,
        )  # fmt: skip
        self.port = 0
        self.banner = ""

    def stderr(self) -> str:
        self._err.flush()
        return os.pread(self._err.fileno(), 1 << 24, 0).decode("utf-8", "replace")

    def wait_listening(self, timeout: float = START_TIMEOUT) -> int:
        """Wait for the "listening on HOST:PORT" line on stderr; the port."""
        deadline = time.monotonic() + timeout
        pattern = re.compile(r"^.*listening on \S+?:(\d+).*$", re.M)
        while (found := pattern.search(text := self.stderr())) is None:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the relay exited {self.proc.returncode}: {text}")
            if time.monotonic() >= deadline:
                raise TimeoutError(f"the relay did not start within {timeout} s: {text}")
            time.sleep(0.02)  # (polling a file; bounded by the deadline)
        self.banner = found[0]
        self.port = int(found[1])
        return self.port

    def wait_for(self, pattern: str, timeout: float = START_TIMEOUT) -> re.Match[str]:
        """The first match of ``pattern`` in the relay's stderr, once it is there."""
        deadline = time.monotonic() + timeout
        while (found := re.search(pattern, text := self.stderr())) is None:
            if self.proc.poll() is not None or time.monotonic() >= deadline:
                raise TimeoutError(f"no {pattern!r} on the relay's stderr: {text}")
            time.sleep(0.02)  # (polling a file; bounded by the deadline)
        return found

    def stop(self) -> tuple[int, str, str]:
        """SIGTERM, then (returncode, stdout, stderr); SIGKILL if it does not stop."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate(timeout=STOP_TIMEOUT)
        err = self.stderr()
        self._err.close()
        return self.proc.returncode, out.decode(), err

    def __enter__(self) -> RelayProcess:
        self.wait_listening()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.stop()
