"""Haproxy in front of two plain TCP echo backends (threads) on loopback."""

from __future__ import annotations

import contextlib
import shutil
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from tests.faults.haproxy import Haproxy, _listening


class Backend:
    """A TCP server on 127.0.0.1 that greets each connection with its name, then echoes.
    `kill()` closes the listener and every connection, as a crashed server would."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = ("127.0.0.1", self.listener.getsockname()[1])
        self.conns: list[socket.socket] = []
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # killed
            self.conns.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.sendall(f"{self.name}\n".encode())
            while data := conn.recv(65536):
                conn.sendall(data)
        except OSError:
            pass

    def kill(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self.listener.close()
        self.threads[0].join(timeout=5)
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)  # wakes the blocked recv()
            conn.close()
        for thread in self.threads:
            thread.join(timeout=5)


@pytest.fixture
def backends() -> Iterator[list[Backend]]:
    made = [Backend("one"), Backend("two")]
    yield made
    for backend in made:
        if backend.listener.fileno() != -1:
            backend.kill()


def greeting(port: int) -> tuple[socket.socket, str]:
    """A connection through haproxy and the name of the backend that answered ("" when
    haproxy closed it: no backend reachable)."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=5)
    reader = conn.makefile("rb")
    line = reader.readline().decode().strip()
    reader.close()
    return conn, line


@pytest.mark.parametrize("balance", ["roundrobin", "leastconn"])
def test_connections_reach_both_backends(backends: list[Backend], balance: str) -> None:
    with Haproxy([b.address for b in backends], balance=balance) as lb:
        opened = [greeting(lb.port) for _ in range(4)]  # held open: leastconn alternates too
        try:
            assert sorted(name for _, name in opened) == ["one", "one", "two", "two"]
            conn, _ = opened[0]
            conn.sendall(b"ping")
            assert conn.recv(4) == b"ping"
        finally:
            for conn, _ in opened:
                conn.close()


def test_killed_backend_is_taken_out(backends: list[Backend]) -> None:
    with Haproxy([b.address for b in backends]) as lb:
        assert lb.status() == {"s0": "UP", "s1": "UP"}
        backends[0].kill()
        start, names = time.monotonic(), list[str]()
        while names[-3:] != ["two"] * 3:  # new connections go to the live one, soon
            assert time.monotonic() - start < 3, names
            conn, name = greeting(lb.port)
            conn.close()
            names.append(name)
        assert set(names) <= {"two", ""}  # "": haproxy closed it, no backend at hand
        assert lb.wait_status("s0", "DOWN", timeout=3) < 3
        assert lb.status()["s1"] == "UP"
        assert "sessions/s0 is DOWN" in lb.log()


def test_stop_ends_the_process_and_cleans_up(backends: list[Backend]) -> None:
    with Haproxy([backends[0].address]) as lb:
        proc, directory, port = lb.proc, lb.dir, lb.port
        assert proc is not None and directory is not None and directory.exists()
    assert proc.poll() is not None
    assert not directory.exists()
    deadline = time.monotonic() + 5
    while _listening(port) and time.monotonic() < deadline:
        time.sleep(0.01)  # bounded poll: the listener goes with the process
    assert not _listening(port)


def test_missing_haproxy_skips_or_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda _: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        Haproxy([("127.0.0.1", 1)]).__enter__()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        Haproxy([("127.0.0.1", 1)]).__enter__()
