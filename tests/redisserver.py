"""A real ``redis-server`` for the tests (Debian's package ``redis-server``).

``redis_server`` is a session-scoped fixture: one server on a free loopback port for the
whole run, with no persistence (``--save "" --appendonly no``), killed at the end.  A test
that kills or pauses a server starts its own with :func:`running_redis`.  Other test
folders use them with ``from tests.redisserver import redis_server, running_redis``.

Without redis-server the tests that need it are skipped, except in CI (``CI`` set), where
they fail: CI must never skip them (``make sysdeps`` installs it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.tools import unavailable

__all__ = ["RedisServer", "redis_server", "running_redis", "require_redis_server", "free_port"]

#: How long a starting server may take to answer PING.
START_TIMEOUT = 10.0


def require_redis_server() -> str:
    """The path of redis-server: a failure in CI (never a skip there), else a skip."""
    path = shutil.which("redis-server")
    if path is None and os.access("/usr/bin/redis-server", os.X_OK):
        path = "/usr/bin/redis-server"
    if path is None:
        unavailable("redis-server is not installed (make sysdeps, or apt-get install"
                    " redis-server)")  # fmt: skip
    return path


def free_port() -> int:
    """A loopback TCP port nothing listened on a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One running redis-server process."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.log = log

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def kill(self) -> None:
        """SIGKILL, and wait until it is gone (its port then refuses connections)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP: the kernel still accepts connections, nothing answers."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def log_tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return "(no log)"


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _start(path: str, directory: Path) -> RedisServer | None:
    """A server on a free port, once it answers PING; None if it exited (port taken)."""
    port = free_port()
    log = directory / f"redis-{port}.log"
    argv = [path, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(directory), "--logfile", str(log)]  # fmt: skip
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    server = RedisServer(process, port, log)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if _answers_ping(port):
            return server
        try:  # the pause between two tries, and the check that it is still running
            process.wait(timeout=0.02)
        except subprocess.TimeoutExpired:
            continue
        return None
    tail = server.log_tail()
    server.kill()
    pytest.fail(f"redis-server did not answer PING within {START_TIMEOUT} s:\n{tail}")


@contextlib.contextmanager
def running_redis() -> Iterator[RedisServer]:
    """A redis-server of its own for one test (or fixture), killed on leaving."""
    path = require_redis_server()
    with tempfile.TemporaryDirectory(prefix="sessionlayer-redis-") as directory:
        for _ in range(3):  # another process may take the free port before redis does
            server = _start(path, Path(directory))
            if server is not None:
                break
        else:
            logs = sorted(Path(directory).glob("*.log"), key=lambda p: p.stat().st_mtime)
            tail = logs[-1].read_text(errors="replace")[-2000:] if logs else "(no log)"
            pytest.fail(f"redis-server exited at start three times:\n{tail}")
        try:
            yield server
        finally:
            server.kill()  # SIGKILL ends a paused (SIGSTOP) server too


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the whole test session (tests use their own key prefixes)."""
    with running_redis() as server:
        yield server


async def flush(server: RedisServer) -> None:
    """Empty ``server``, as a redis-server restarted without persistence comes back."""
    from redis.asyncio import Redis

    raw = Redis.from_url(server.url)
    try:
        await raw.flushall()
    finally:
        await raw.aclose()
