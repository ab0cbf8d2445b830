"""Debian's haproxy as a real TCP load balancer in front of test backends.

    with Haproxy([("127.0.0.1", p1), ("127.0.0.1", p2)]) as lb:
        ...connect to 127.0.0.1:lb.port...
        lb.wait_status("s0", "DOWN")    # after killing the first backend

Mode tcp, `balance roundrobin` (or `leastconn`), health checks every 200 ms that take a
server out after one failure and back in after one success, connect timeout 1 s, client
and server timeouts 1 h, `option redispatch`. Servers are named s0, s1, ... in the order
given. A stats socket in the temporary directory answers `show stat` (`status()`).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO

from tests.tools import unavailable

CONFIG = """\
global
    maxconn 1024
    stats socket {stats} mode 600 level admin

defaults
    mode tcp
    timeout connect 1s
    timeout client 1h
    timeout server 1h
    timeout check 1s
    retries 2
    option redispatch

listen sessions
    bind 127.0.0.1:{port}
    balance {balance}
{servers}
"""
SERVER = "    server s{index} {host}:{port} check inter 200ms fall 1 rise 1"


def require_haproxy() -> str:
    """The path of haproxy: a skip when missing (a failure in CI)."""
    path = shutil.which("haproxy")
    if path is None:
        unavailable("haproxy is not installed (make sysdeps, or apt-get install haproxy)")
    assert path is not None
    return path


def free_port() -> int:
    """A port of 127.0.0.1 that was free a moment ago (haproxy cannot bind port 0 and say
    which port it got; a lost race shows as a bind error, and `Haproxy` retries)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _listening(port: int) -> bool:
    """Whether something listens on 127.0.0.1:`port` (per /proc/net/tcp: no connection
    made, so no backend sees a probe)."""
    local = f"0100007F:{port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[3] == "0A":  # 0A: LISTEN
            return True
    return False


class Haproxy:
    """haproxy in the foreground (`-db`) as a subprocess, in front of `backends`
    ((host, port) pairs). A context manager; `port` is the frontend's port."""

    def __init__(
        self,
        backends: list[tuple[str, int]],
        *,
        balance: str = "roundrobin",
        startup_timeout: float = 5.0,
    ) -> None:
        if balance not in ("roundrobin", "leastconn"):
            raise ValueError(f"balance must be roundrobin or leastconn, not {balance!r}")
        if not backends:
            raise ValueError("haproxy needs at least one backend")
        self.backends = list(backends)
        self.balance = balance
        self.startup_timeout = startup_timeout
        self.port = 0
        self.dir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    # ------------------------------------------------------------ lifetime

    def __enter__(self) -> Haproxy:
        binary = require_haproxy()
        self.dir = Path(tempfile.mkdtemp(prefix="sl-haproxy-"))
        try:
            for _ in range(3):
                if self._start(binary):
                    return self
            raise RuntimeError(f"haproxy could not bind a free port:\n{self.log()}")
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _start(self, binary: str) -> bool:
        """One attempt on a fresh port: True once it listens, False when the port was
        taken meanwhile; RuntimeError for any other early exit or a timeout."""
        assert self.dir is not None
        self._end_process()
        self.port = free_port()
        config = self.dir / "haproxy.cfg"
        config.write_text(self.config())
        self._log = open(self.dir / "haproxy.log", "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [binary, "-f", str(config), "-db"], stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                if "cannot bind" in self.log() or "Address already in use" in self.log():
                    return False
                raise RuntimeError(f"haproxy exited with {self.proc.returncode}:\n{self.log()}")
            if _listening(self.port) and self._stats_ready():
                return True
            time.sleep(0.01)  # bounded poll: no notification for "listening"
        raise RuntimeError(f"haproxy not listening after {self.startup_timeout} s:\n{self.log()}")

    def _stats_ready(self) -> bool:
        try:
            self.command("show info")
        except OSError:
            return False
        return True

    def stop(self) -> None:
        """Stop haproxy (SIGTERM, then SIGKILL after 5 s) and remove its directory."""
        self._end_process()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def _end_process(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=5)
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    # ------------------------------------------------------------ use

    def config(self) -> str:
        """The configuration text for the current port."""
        assert self.dir is not None
        servers = "\n".join(
            SERVER.format(index=index, host=host, port=port)
            for index, (host, port) in enumerate(self.backends)
        )
        return CONFIG.format(
            stats=self.dir / "stats.sock", port=self.port, balance=self.balance, servers=servers
        )

    def log(self) -> str:
        """What haproxy wrote on stdout and stderr so far."""
        if self.dir is None or not (self.dir / "haproxy.log").exists():
            return ""
        return (self.dir / "haproxy.log").read_text(errors="replace")

    def command(self, line: str, timeout: float = 2.0) -> str:
        """One command on the stats socket (`show stat`, `disable server sessions/s0`...)."""
        assert self.dir is not None
        with socket.socket(socket.AF_UNIX) as conn:
            conn.settimeout(timeout)
            conn.connect(str(self.dir / "stats.sock"))
            conn.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := conn.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def status(self) -> dict[str, str]:
        """Each server's status from `show stat`: {"s0": "UP", "s1": "DOWN", ...}."""
        lines = self.command("show stat").splitlines()
        header = lines[0].lstrip("# ").split(",")
        name, status = header.index("svname"), header.index("status")
        result = {}
        for line in lines[1:]:
            fields = line.split(",")
            if len(fields) > status and fields[name] not in ("FRONTEND", "BACKEND"):
                result[fields[name]] = fields[status].split()[0]  # "UP 1/1" while rising
        return result

    def wait_status(self, server: str, wanted: str, timeout: float = 5.0) -> float:
        """Poll (bounded) until `server` has status `wanted`; returns the seconds it took."""
        start = time.monotonic()
        while (seen := self.status().get(server)) != wanted:
            if time.monotonic() - start > timeout:
                raise TimeoutError(f"{server} is {seen}, not {wanted}, after {timeout} s")
            time.sleep(0.02)
        return time.monotonic() - start
