"""The commands that serve until stopped (``serve``, ``relay``, ``tunnel``), run as the user
runs them: a second SIGTERM or SIGINT during the orderly stop is ignored (``timeout -s TERM``
signals the process, then its group; a second Ctrl-C), and the command still stops in order
and exits 0."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

import pytest

from .files_helpers import ENV, LIMIT, Serve, cli

PIPE = asyncio.subprocess.PIPE


async def started(*argv: str, where: str = "stdout") -> asyncio.subprocess.Process:
    """``sessionlayer ARGV...`` in a process of its own, once it said it listens (on
    ``where``)."""
    proc = await asyncio.create_subprocess_exec(*cli(*argv), env=ENV, stdout=PIPE, stderr=PIPE)
    stream = proc.stdout if where == "stdout" else proc.stderr
    assert stream is not None
    async with asyncio.timeout(LIMIT):
        while b"listening" not in (line := await stream.readline()):
            if not line:
                raise RuntimeError(f"{argv[0]} ended: {(await proc.communicate())!r}")
    return proc


async def signalled(proc: asyncio.subprocess.Process, signum: int) -> tuple[int, str, str]:
    """``signum`` twice back to back, then again every few milliseconds while the process
    stops (a held Ctrl-C): (its exit status, the rest of its stdout, of its stderr)."""
    # (os.kill: Popen.send_signal polls first, and a poll that reaps the process leaves
    # asyncio's child watcher an unknown pid, reported as status 255)
    for _ in range(2):
        os.kill(proc.pid, signum)
    async with asyncio.timeout(LIMIT):
        while True:
            try:
                await asyncio.wait_for(proc.wait(), 0.005)
                break
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):  # (it just ended)
                    os.kill(proc.pid, signum)
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
@pytest.mark.parametrize("command", ["serve", "relay", "tunnel"])
def test_signals_during_the_stop_are_ignored_and_it_exits_0(tmp_path: Path, command: str,
                                                            signum: int) -> None:  # fmt: skip
    """It used to remove its handlers before the slow part of its stop: the next signal
    ended it (143 or 130, the session never released)."""

    async def main() -> None:
        server = None
        try:
            if command == "serve":
                server = await Serve(tmp_path / "srv").start()
                assert server.proc is not None
                proc = server.proc
            elif command == "relay":
                proc = await started("relay", "--listen", "127.0.0.1:0", "--upstream",
                                     "127.0.0.1:9", where="stderr")  # fmt: skip
            else:
                server = await Serve(tmp_path / "srv", "--allow-tunnel", "127.0.0.1:9").start()
                proc = await started("tunnel", "--listen", "0", "--via",
                                     f"127.0.0.1:{server.port}")  # fmt: skip
            status, out, err = await signalled(proc, signum)
            assert status == 0, (status, out, err)
            said = err if command == "relay" else out
            assert f"sessionlayer {command}: stopped (" in said, (out, err)
            assert err.count("stopping already") <= 1, err
            assert "Traceback" not in out + err, err
        finally:
            if server is not None:
                await server.stop()

    asyncio.run(main())
