"""NetnsPair: a TCP echo server in namespace a, line clients in namespace b."""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import IO

import pytest
from tests.faults.netns import NetnsPair, _ip, require_netns
from tests.tools import unavailable

# Listens on every address, prints its port; greets each connection with the peer's
# address ("from 10.x.y.z"), then echoes.
SERVER = """
import socket, threading
server = socket.create_server(("0.0.0.0", 0))
print(server.getsockname()[1], flush=True)
def serve(conn, peer):
    with conn:
        conn.sendall(f"from {peer[0]}\\n".encode())
        while data := conn.recv(65536):
            conn.sendall(data)
while True:
    conn, peer = server.accept()
    threading.Thread(target=serve, args=(conn, peer), daemon=True).start()
"""

# A line relay: stdin to the TCP connection, the connection to stdout.
CLIENT = """
import socket, sys, threading
conn = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
conn.settimeout(None)
def down():
    while data := conn.recv(65536):
        sys.stdout.write(data.decode()); sys.stdout.flush()
threading.Thread(target=down, daemon=True).start()
for line in sys.stdin:
    conn.sendall(line.encode())
"""

_names = itertools.count()


class Lines:
    """The stdout of a process, line by line, with bounded waits (a reader thread)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self._lines: queue.Queue[str] = queue.Queue()
        assert proc.stdout is not None
        stdout = proc.stdout
        threading.Thread(target=self._read, args=(stdout,), daemon=True).start()

    def _read(self, stdout: IO[str]) -> None:
        with contextlib.suppress(OSError, ValueError):  # closed at teardown
            for line in stdout:
                self._lines.put(line)

    def get(self, timeout: float = 5.0) -> str:
        return self._lines.get(timeout=timeout).rstrip("\n")

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()


@pytest.fixture
def pair() -> Iterator[NetnsPair]:
    require_netns()
    with NetnsPair(f"slt{os.getpid()}x{next(_names)}") as made:
        yield made


def start(pair: NetnsPair) -> tuple[int, Lines]:
    """The echo server in a: its port, and its output."""
    server = pair.run("a", [sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    out = Lines(server)
    return int(out.get()), out


def client(pair: NetnsPair, port: int) -> Lines:
    """A line client in b connected to the server in a."""
    proc = pair.run(
        "b", [sys.executable, "-c", CLIENT, pair.ip_a, str(port)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    return Lines(proc)


def test_link_down_is_silent_and_link_up_resumes(pair: NetnsPair) -> None:
    port, _ = start(pair)
    conn = client(pair, port)
    assert conn.get() == f"from {pair.ip_b}"
    conn.send("one")
    assert conn.get() == "one"
    pair.link_down()
    conn.send("two")
    # Silence has no event to wait for: no answer, no EOF, no error for 0.5 s.
    with pytest.raises(queue.Empty):
        conn.get(0.5)
    assert conn.proc.poll() is None
    pair.link_up()
    assert conn.get(10) == "two"  # retransmitted on the same connection
    conn.send("three")
    assert conn.get() == "three"


def test_change_address_gives_new_connections_a_new_source(pair: NetnsPair) -> None:
    port, _ = start(pair)
    old = pair.ip_b
    assert client(pair, port).get() == f"from {old}"
    new = pair.change_address("b")
    assert new != old and pair.ip_b == new and new.startswith(pair.net + ".")
    assert client(pair, port).get() == f"from {new}"
    shown = _ip("-n", pair.ns_b, "-o", "-4", "addr", "show", "dev", "veth-b")
    assert f"{new}/24" in shown and f"{old}/24" not in shown


def test_teardown_removes_everything_even_on_failure() -> None:
    require_netns()
    prefix = f"slt{os.getpid()}x{next(_names)}"
    with pytest.raises(RuntimeError, match="boom"), NetnsPair(prefix) as made:
        sleeper = made.run("b", ["sleep", "60"])
        raise RuntimeError("boom")
    assert sleeper.poll() is not None
    assert prefix not in _ip("netns", "list")
    # Entering fails half way (b exists already): what was made (a) is removed again,
    # what was not (b) is left alone.
    _ip("netns", "add", f"{prefix}-b")
    try:
        with pytest.raises(RuntimeError, match="exist"), NetnsPair(prefix):
            pass
        listed = _ip("netns", "list").split()
        assert f"{prefix}-a" not in listed and f"{prefix}-b" in listed
    finally:
        _ip("netns", "delete", f"{prefix}-b")


def test_unavailable_skips_or_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        unavailable("no such tool")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        unavailable("no such tool")
