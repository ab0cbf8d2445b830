"""The tunnel across a change of the client's address (network namespaces, as in the
recovery tests): ``sessionlayer serve --allow-tunnel`` and an echo target in namespace a,
``sessionlayer tunnel`` and the application in namespace b.  Half way through a stream
b's address changes; the old TCP connection goes silent, the keepalive gives it up, the
session resumes from the new address, and the application's one TCP connection carries
on: every byte arrives once, in order, both ways."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import queue
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
from tests.faults.netns import NetnsPair, require_netns

REPO = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=str(REPO / "src"), PYTHONUNBUFFERED="1")
WAIT = 30.0  #: the longest any one line may take to come

# An echo target on the namespace's loopback; prints its port, then per connection the
# SHA-256 of what it received.
TARGET = """
import hashlib, socket, threading
server = socket.create_server(("127.0.0.1", 0))
print(server.getsockname()[1], flush=True)
def serve(conn):
    digest = hashlib.sha256()
    with conn:
        while data := conn.recv(65536):
            digest.update(data)
            conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
    print("received", digest.hexdigest(), flush=True)
while True:
    conn, _ = server.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""

# The application: one TCP connection to the tunnel; sends SIZE octets in 32 KiB pieces,
# reading each one's echo; half way it says "half" and waits for a line on stdin.
APP = """
import hashlib, random, socket, sys
port, size = int(sys.argv[1]), int(sys.argv[2])
data = random.Random(1).randbytes(size)
conn = socket.create_connection(("127.0.0.1", port), timeout=30)
got = bytearray()
for i in range(0, size, 32768):
    if i == size // 2:
        print("half", len(got), flush=True)
        sys.stdin.readline()
    piece = data[i:i + 32768]
    conn.sendall(piece)
    while len(got) < i + len(piece):
        block = conn.recv(65536)
        if not block:
            sys.exit("EOF before the echo")
        got += block
conn.shutdown(socket.SHUT_WR)
rest = conn.recv(1)
print("done", got == data, rest == b"", hashlib.sha256(data).hexdigest(), flush=True)
"""

_names = itertools.count()


class Lines:
    """A process's stdout line by line, with bounded waits (a reader thread)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self._lines: queue.Queue[str] = queue.Queue()
        assert proc.stdout is not None
        threading.Thread(target=self._read, args=(proc.stdout,), daemon=True).start()

    def _read(self, stdout: IO[str]) -> None:
        with contextlib.suppress(OSError, ValueError):
            for line in stdout:
                self._lines.put(line)

    def get(self, timeout: float = WAIT) -> str:
        try:
            return self._lines.get(timeout=timeout).rstrip("\n")
        except queue.Empty:
            raise AssertionError(f"no line within {timeout} s (exit {self.proc.poll()})"
                                 ) from None  # fmt: skip

    def until(self, pattern: str, timeout: float = WAIT) -> re.Match[str]:
        while True:
            line = self.get(timeout)
            if m := re.search(pattern, line):
                return m


@pytest.fixture
def pair() -> Iterator[NetnsPair]:
    require_netns()
    with NetnsPair(f"slu{os.getpid()}x{next(_names)}") as made:
        yield made


def py(*args: str) -> list[str]:
    return [sys.executable, *args]


def test_a_tunnelled_connection_survives_a_change_of_the_client_address(
    pair: NetnsPair, tmp_path: Path
) -> None:
    size = 8 << 20
    text = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, "env": ENV}
    target = Lines(pair.run("a", py("-c", TARGET), **text))
    target_port = int(target.get())
    serve = Lines(pair.run("a", py(
        "-m", "sessionlayer", "serve", "--host", "0.0.0.0", "--port", "0", "--store", "memory",
        "--data-dir", str(tmp_path / "srv"), "--allow-tunnel", f"127.0.0.1:{target_port}",
        "--admin", "127.0.0.1:0"), **text))  # fmt: skip
    admin = serve.until(r"admin on http://([\d.:]+)").group(1)
    port = int(serve.until(r"listening on tcp://[\d.]+:(\d+)").group(1))
    tunnel_proc = pair.run("b", py(
        "-m", "sessionlayer", "tunnel", "--listen", "0", "--via", f"{pair.ip_a}:{port}",
        "--keepalive", "0.3", "--give-up", "30"), **text)  # fmt: skip
    tunnel = Lines(tunnel_proc)
    tunnel_port = int(tunnel.until(r"listening on [\d.]+:(\d+),").group(1))
    old = pair.ip_b
    app_proc = pair.run("b", py("-c", APP, str(tunnel_port), str(size)),
                        stdin=subprocess.PIPE, **text)  # fmt: skip
    app = Lines(app_proc)
    assert app.until(r"^half (\d+)").group(1) == str(size // 2)

    def sessions() -> list[dict[str, object]]:
        done = subprocess.run(
            ["ip", "netns", "exec", pair.ns_a, *py("-m", "sessionlayer", "status", admin,
                                                  "--json")],
            capture_output=True, text=True, env=ENV, timeout=WAIT, check=True,
        )  # fmt: skip
        rows: list[dict[str, object]] = json.loads(done.stdout)["sessions"]
        return rows

    (before,) = sessions()
    assert str(before["peer"]).startswith(f"{old}:")
    new = pair.change_address("b")
    assert app_proc.stdin is not None
    app_proc.stdin.write("go\n")  # the second half goes into the dead connection first
    app_proc.stdin.flush()
    done = app.until(r"^done (\w+) (\w+) (\w+)", timeout=60)
    assert done.group(1) == "True" and done.group(2) == "True"  # echo identical, then EOF
    assert target.until(r"^received (\w+)").group(1) == done.group(3)  # identical up too
    (after,) = sessions()
    assert str(after["peer"]).startswith(f"{new}:")
    assert after["id"] == before["id"] and int(str(after["resumes"])) >= 1
    tunnel_proc.terminate()
    summary = tunnel.until(r"stopped \((\d+) connections carried.* (\d+) interruptions\)")
    assert summary.group(1) == "1" and int(summary.group(2)) >= 1
