"""The commands that serve until stopped (``serve``, ``relay``, ``tunnel``), run as the user
runs them: a second SIGTERM or SIGINT during the orderly stop is ignored (``timeout -s TERM``
signals the process, then its group; a second Ctrl-C), and the command still stops in order
and exits 0."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from pathlib import Path

import pytest

from .files_helpers import ENV, LIMIT, Serve, cli

PIPE = asyncio.subprocess.PIPE


async def started(*argv: str, where: str = "stdout",
                  lines: list[str] | None = None) -> asyncio.subprocess.Process:  # fmt: skip
    """``sessionlayer ARGV...`` in a process of its own, once it said it listens (on
    ``where``; the lines read from it up to there appended to ``lines``)."""
    proc = await asyncio.create_subprocess_exec(*cli(*argv), env=ENV, stdout=PIPE, stderr=PIPE)
    stream = proc.stdout if where == "stdout" else proc.stderr
    assert stream is not None
    async with asyncio.timeout(LIMIT):
        while True:
            line = await stream.readline()
            if not line:
                raise RuntimeError(f"{argv[0]} ended: {(await proc.communicate())!r}")
            if lines is not None:
                lines.append(line.decode())
            if b"listening" in line:
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


def test_with_log_format_json_every_line_on_stdout_is_json(tmp_path: Path) -> None:
    """``serve --log-format json`` (with ``--admin``) and ``tunnel --log-format json``: every
    line on stdout is a JSON object, the last one that it stopped (serve's admin and stop
    lines and tunnel's stop line were text).  The relay says what it does on stderr: its
    stdout is ``--log -``'s JSON lines only."""

    async def main() -> None:
        server = await Serve(tmp_path / "srv", "--allow-tunnel", "127.0.0.1:9").start()
        try:
            for argv, where, count in [
                (["serve", "--port", "0", "--data-dir", str(tmp_path / "json"), "--admin",
                  "127.0.0.1:0", "--log-format", "json"], "stdout", 3),
                (["tunnel", "--listen", "0", "--via", f"127.0.0.1:{server.port}",
                  "--log-format", "json"], "stdout", 2),
                (["relay", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:9", "--log",
                  "-"], "stderr", 0),
            ]:  # fmt: skip
                lines: list[str] = []
                proc = await started(*argv, where=where, lines=lines)
                proc.send_signal(signal.SIGTERM)
                async with asyncio.timeout(LIMIT):
                    out, err = await proc.communicate()
                assert proc.returncode == 0, (argv, out, err)
                text = ("".join(lines) if where == "stdout" else "") + out.decode()
                said = [json.loads(line) for line in text.splitlines()]
                assert len(said) == count and all(isinstance(o, dict) for o in said), text
                if count:
                    assert "listening" in said[-2] and "stopped" in said[-1], said
                if argv[0] == "serve":
                    assert said[0]["admin"].startswith("http://127.0.0.1:"), said
                    assert said[-1]["sessions_kept"] is True, said
                if argv[0] == "relay":
                    assert "sessionlayer relay: stopped (" in err.decode(), err
        finally:
            await server.stop()

    asyncio.run(main())


def test_an_admin_port_alone_is_on_the_loopback(tmp_path: Path) -> None:
    """``serve --admin 0`` (a free port, as ``--port 0``): it served the admin endpoint, an
    unauthenticated list of sessions, on 0.0.0.0, every interface (``0`` was the host)."""

    async def main() -> None:
        lines: list[str] = []
        proc = await started("serve", "--port", "0", "--data-dir", str(tmp_path), "--admin",
                             "0", "--log-format", "json", lines=lines)  # fmt: skip
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(LIMIT):
            _, err = await proc.communicate()
        assert proc.returncode == 0, err
        admin = json.loads(lines[0])["admin"]
        assert admin == f"http://127.0.0.1:{json.loads(lines[0])['port']}", lines

    asyncio.run(main())
