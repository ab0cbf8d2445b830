"""A ``--pcap`` or ``--log`` that can no longer be written (the disk is full, the reader
of ``--log -`` went away) is said once, as a WARNING, and is not written from then on:
the relayed sessions go on as if it were not there.  (They were dropped, every one, each
with an "internal error" traceback, while the relay kept accepting.)"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from tests.relay.helpers import run

import sessionlayer
from sessionlayer import Options, SessionConfig
from sessionlayer.capture import PcapWriter
from sessionlayer.relay import start

PLAIN = Options(keepalive_interval=None, idle_timeout=None, resume=False)
SRC = Path(__file__).resolve().parents[2] / "src"
FULL = "/dev/full"  # (every write: ENOSPC)


async def _echo(session: sessionlayer.Session) -> None:
    async for data in session:
        await session.send(data)


async def _three_sessions(port: int) -> None:
    for n in range(3):
        async with await sessionlayer.connect("127.0.0.1", port, options=PLAIN,
                                              config=SessionConfig.kernel_duplex()) as s:
            await s.send(b"x%d" % n * 5000)
            assert await asyncio.wait_for(s.receive(), 10) == b"x%d" % n * 5000


def test_a_pcap_on_a_full_disk_is_said_once_and_the_sessions_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        async with await sessionlayer.serve(_echo, config=SessionConfig.kernel_duplex(),
                                            options=PLAIN) as up:  # fmt: skip
            pcap = PcapWriter(FULL)
            async with await start(("127.0.0.1", up.port), pcap=pcap) as relay:
                await _three_sessions(relay.port)
            pcap.close()
            assert relay.stats.ended["released"] == 3, relay.stats.ended

    with caplog.at_level(logging.WARNING, "sessionlayer"):
        run(main(), 60)
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1, lines
    assert f"--pcap {FULL}: cannot write: No space left on device" in lines[0]
    assert "internal error" not in caplog.text


def test_log_to_a_standard_output_nobody_reads_is_said_once_and_the_sessions_go_on() -> None:
    async def main() -> tuple[int, str]:
        async with await sessionlayer.serve(_echo, config=SessionConfig.kernel_duplex(),
                                            options=PLAIN) as up:  # fmt: skip
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(
                p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p))
            read_end, write_end = os.pipe()
            os.close(read_end)  # (the reader of --log - went away: EPIPE)
            with tempfile.TemporaryFile() as err:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "sessionlayer", "relay", "--listen", "127.0.0.1:0",
                    "--upstream", f"127.0.0.1:{up.port}", "--log", "-",
                    stdin=subprocess.DEVNULL, stdout=write_end, stderr=err, env=env)
                os.close(write_end)
                try:
                    port = await _listening(err)
                    await _three_sessions(port)
                finally:
                    proc.terminate()
                    code = await asyncio.wait_for(proc.wait(), 20)
                err.seek(0)
                return code, err.read().decode()

    code, err = run(main(), 60)
    assert code == 0, err
    assert "Traceback" not in err and "internal error" not in err, err
    assert "Exception ignored" not in err and "BrokenPipe" not in err, err
    assert err.count("cannot write") == 1, err
    assert "--log -: cannot write" in err, err
    assert "stopped (3 sessions relayed)" in err, err
    assert err.count("released by the client") == 3, err


async def _listening(err: object) -> int:
    async with asyncio.timeout(20):
        while True:
            text = os.pread(err.fileno(), 1 << 16, 0).decode()  # type: ignore[attr-defined]
            if "listening on 127.0.0.1:" in text:
                return int(text.split("listening on 127.0.0.1:")[1].split(",")[0])
            await asyncio.sleep(0.02)  # (polling a file; bounded by the timeout)


def test_a_status_file_that_cannot_be_written_is_said_once_not_every_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """``--status`` in a directory removed after the start: one line, not one a second
    (86,400 a day), and one more when it is written again."""
    from sessionlayer.commands import admin
    from sessionlayer.commands import relay as command
    from sessionlayer.relay.server import Relay

    monkeypatch.setattr(command, "STATUS_PERIOD", 0.0)
    writes = 0
    reached: dict[int, asyncio.Event] = {}
    real = admin.relay_json

    def counted(relay: Relay) -> dict[str, object]:
        nonlocal writes
        writes += 1
        if writes in reached:
            reached[writes].set()
        return real(relay)

    monkeypatch.setattr(admin, "relay_json", counted)
    path = tmp_path / "gone" / "status.json"

    async def main() -> None:
        reached[50], reached[60] = asyncio.Event(), asyncio.Event()
        writer = asyncio.ensure_future(command._write_status(Relay(("127.0.0.1", 1)), path))
        await reached[50].wait()  # (50 periods with the directory gone)
        path.parent.mkdir()
        await reached[60].wait()
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)

    run(main(), 30)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2, lines
    assert f"--status {path}: No such file or directory" in lines[0], lines
    assert lines[1].endswith(f"--status {path}: written again"), lines
    assert path.exists()
