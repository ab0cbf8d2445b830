"""Silent death and roaming, with real network namespaces (tests/faults/netns.py): the
server (peer_server.py) runs in namespace a, the client (peer_client.py) in b, each a
process of its own.  (a) The link goes down: packets vanish, no FIN, no RST; both sides
find out by their keepalive and idle timeout, the client retries until the link is back
and the session resumes.  (b) The client's address changes: its TCP connection is dead,
it reconnects from the new address and the server resumes the session from there.  Every
message arrives once and in order both ways (each side checks what it receives).

The phases are coordinated on the peers' JSON lines (bounded waits), not on sleeps."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from tests.faults.netns import NetnsPair, require_netns

import sessionlayer

HERE = Path(__file__).parent
#: What the peers are started with: the sessionlayer this test imports (not an installed
#: one), and the peer scripts' folder first on their path (as ``python script.py`` has it).
ENV = {**os.environ, "PYTHONPATH": str(Path(sessionlayer.__file__).parents[1])}
#: keepalive 0.3 s and idle timeout 1 s on both sides; the server waits 30 s for the
#: client, the client tries for 30 s.
PEER_ARGS = ["--keepalive", "0.3", "--idle", "1.0", "--resume-timeout", "30", "--give-up", "30"]
BATCH = 400  #: messages each way per phase (sizes 1 octet to 16 KB)
WAIT = 15.0  #: the longest any one expected line may take

_names = itertools.count()


class Peer:
    """A peer process: its JSON lines (read by a thread, waited for with bounds), its
    stdin, its stderr in a file (shown when a wait fails)."""

    def __init__(self, name: str, proc: subprocess.Popen[str], stderr: Path) -> None:
        self.name = name
        self.proc = proc
        self.stderr = stderr
        self.seen: list[dict[str, Any]] = []
        self._lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        assert proc.stdout is not None
        threading.Thread(target=self._read, args=(proc.stdout,), daemon=True).start()

    def _read(self, stdout: IO[str]) -> None:
        with contextlib.suppress(OSError, ValueError):  # closed at teardown
            for line in stdout:
                try:
                    self._lines.put(json.loads(line))
                except ValueError:
                    self._lines.put({"event": "garbage", "line": line})
        self._lines.put(None)  # the process closed its stdout (it ended)

    def expect(self, event: str, where: Callable[[dict[str, Any]], bool] = lambda _: True,
               timeout: float = WAIT) -> dict[str, Any]:  # fmt: skip
        """The next line of ``event`` that ``where`` accepts (others are kept in ``seen``);
        fails after ``timeout`` s, or when the process ends or reports a failure."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self._lines.get(timeout=max(left, 0))
            except queue.Empty:
                pytest.fail(f"{self.name}: no {event!r} within {timeout} s; saw {self.seen}"
                            f"\n{self.errors()}")  # fmt: skip
            if line is None:
                self._lines.put(None)
                pytest.fail(f"{self.name} ended before {event!r}; saw {self.seen}\n{self.errors()}")
            self.seen.append(line)
            if line["event"] in ("failed", "garbage"):
                pytest.fail(f"{self.name}: {line}\n{self.errors()}")
            if line["event"] == event and where(line):
                return line

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def errors(self) -> str:
        return self.stderr.read_text()[-3000:] if self.stderr.exists() else ""


@pytest.fixture
def pair() -> Iterator[NetnsPair]:
    """Two fresh namespaces; on the way out every process in them is killed and the
    namespaces deleted (NetnsPair.close)."""
    require_netns()
    with NetnsPair(f"slr{os.getpid()}x{next(_names)}") as made:
        yield made


def start(pair: NetnsPair, tmp_path: Path, server_args: list[str] = PEER_ARGS,
          ) -> tuple[Peer, Peer, dict[str, Any]]:  # fmt: skip
    """The server in a, the client in b, connected: (server, client, the server's
    ``accepted`` line)."""

    def run(side: str, name: str, argv: list[str], **kwargs: Any) -> Peer:
        stderr = tmp_path / f"{name}.stderr"
        with stderr.open("w") as err:  # (the child has its own descriptor)
            proc = pair.run(side, [sys.executable, str(HERE / f"peer_{name}.py"), *argv],
                            stdout=subprocess.PIPE, stderr=err, text=True, env=ENV,
                            **kwargs)  # fmt: skip
        return Peer(name, proc, stderr)

    server = run("a", "server", server_args)
    port = server.expect("listening")["port"]
    client = run("b", "client", [pair.ip_a, str(port), *PEER_ARGS], stdin=subprocess.PIPE)
    client.expect("connected", lambda line: line["resumable"])
    accepted = server.expect("accepted")
    return server, client, accepted


def phase(client: Peer, total: int) -> None:
    """Send a batch; wait until every answer so far has arrived, checked."""
    client.send(f"send {BATCH}")
    line = client.expect("received", lambda line: line["count"] == total)
    assert line["errors"] == []


def finish(server: Peer, client: Peer, total: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Release; both sides' final reports, checked: everything once and in order."""
    client.send("release")
    done = client.expect("done")
    ended = server.expect("ended")
    assert done["errors"] == [] and ended["errors"] == [], (done, ended)
    assert done["sent"] == done["received"] == total, done
    assert ended["received"] == ended["sent"] == total, ended
    assert ended["error"] is None, ended
    assert done["state"] == "released", done
    assert done["interruptions"] == done["resumes"] >= 1, done
    assert client.proc.wait(timeout=WAIT) == 0
    assert server.proc.wait(timeout=WAIT) == 0
    return done, ended


def test_a_silent_link_down_is_found_by_keepalive_and_the_session_resumes(
    pair: NetnsPair, tmp_path: Path
) -> None:
    server, client, accepted = start(pair, tmp_path)
    assert accepted["peer"][0] == pair.ip_b
    phase(client, BATCH)
    pair.link_down()  # from now on packets vanish, both ways: no FIN, no RST, no error
    client.send(f"send {BATCH}")  # into the dead link: kept in the journal, replayed
    # Both sides find the silence by their keepalive and idle timeout (1 s).
    assert "no traffic" in client.expect("interrupted")["reason"]
    assert "no traffic" in server.expect("interrupted")["reason"]
    # The client tries to reconnect meanwhile: its tries time out (SYNs vanish too).
    client.expect("try_failed")
    client.expect("try_failed")
    pair.link_up()
    resumed = client.expect("resumed")
    assert resumed["outcome"] == "resumed" and resumed["attempts"] >= 3, resumed
    assert server.expect("resumed")["peer"][0] == pair.ip_b
    client.expect("received", lambda line: line["count"] == 2 * BATCH)
    phase(client, 3 * BATCH)
    done, _ = finish(server, client, 3 * BATCH)
    assert done["interruptions"] == 1, done
    print({"client": client.seen, "server": server.seen})


def test_a_client_whose_address_changes_resumes_from_the_new_one(
    pair: NetnsPair, tmp_path: Path
) -> None:
    """The server's idle timeout is longer here (5 s): the client is back before the
    server has noticed anything, and the server gives up the dead connection for the new
    one."""
    server, client, accepted = start(pair, tmp_path, [*PEER_ARGS, "--idle", "5"])
    old = pair.ip_b
    assert accepted["peer"][0] == old
    phase(client, BATCH)
    new = pair.change_address("b")  # the old address is gone, and its TCP connection dead
    client.send(f"send {BATCH}")
    client.expect("interrupted")  # (found by the keepalive, or an error from the kernel)
    resumed = client.expect("resumed")
    assert resumed["outcome"] == "resumed"
    assert server.expect("interrupted")["reason"] == "a new connection resumed the session"
    assert server.expect("resumed")["peer"][0] == new != old
    client.expect("received", lambda line: line["count"] == 2 * BATCH)
    phase(client, 3 * BATCH)
    done, _ = finish(server, client, 3 * BATCH)
    assert done["interruptions"] == 1, done
    print({"client": client.seen, "server": server.seen})
