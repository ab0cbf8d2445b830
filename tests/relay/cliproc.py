"""``sessionlayer relay`` in a process of its own, for the tests that go through the command
line: start it, read the port it listens on, stop it with SIGTERM; every wait bounded."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0


class RelayProcess:
    """A running ``python -m sessionlayer relay ...``."""

    def __init__(self, *args: str) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sessionlayer", "relay", *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )  # fmt: skip
        self.port = 0
        self.banner = ""
        self._err = b""

    def wait_listening(self, timeout: float = START_TIMEOUT) -> int:
        """Read stderr until the "listening on HOST:PORT" line; the port."""
        assert self.proc.stderr is not None
        fd = self.proc.stderr.fileno()
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._err:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"the relay did not start within {timeout} s")
                if sel.select(left):
                    chunk = os.read(fd, 4096)
                    if not chunk:
                        _, err = self.proc.communicate(timeout=STOP_TIMEOUT)
                        raise RuntimeError(f"the relay exited {self.proc.returncode}: "
                                           f"{(self._err + err).decode()}")  # fmt: skip
                    self._err += chunk
        self.banner = self._err.split(b"\n", 1)[0].decode()
        found = re.search(r"listening on \S+?:(\d+)", self.banner)
        assert found, self.banner
        self.port = int(found[1])
        return self.port

    def stop(self) -> tuple[int, str, str]:
        """SIGTERM, then (returncode, stdout, stderr); SIGKILL if it does not stop."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate(timeout=STOP_TIMEOUT)
        return self.proc.returncode, out.decode(), (self._err + err).decode()

    def __enter__(self) -> RelayProcess:
        self.wait_listening()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.stop()
