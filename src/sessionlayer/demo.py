"""``sessionlayer demo`` (``make demo``): the session layer at work, on loopback.

A ``sessionlayer serve`` process and a client in this one: the client sends a file of a
few tens of MiB as one activity with checkpoints, through a fault injector that cuts the
TCP connection a few times, and once the server is killed (SIGKILL) and started again.
What crossed the wire is drawn as a ladder of SPDUs with the X.215 service of each
(connect and negotiation, tokens, activity start, checkpoints, each interruption and
resume, the restart and the resume from the checkpoint, activity end, release), written
as an SVG file too, and summed up.  Nothing to install, no network beyond 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

__all__ = ["run_demo"]

MIB = 1 << 20
SIZE = 24 * MIB  #: the file sent
CHECKPOINT = 4 * MIB  #: a checkpoint every this many octets
CUTS_AT = (0.15, 0.35)  #: fractions of the file at which the connection is cut
RESTART_AT = 0.6  #: ... and the server killed and started again


class _Cutter:
    """The built-in fault injector: a TCP relay to the server that can reset every
    connection it carries (as a broken network would)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.writers: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.cuts = 0

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            _reset(writer)
            return
        self.writers |= {writer, up_writer}
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.ensure_future(self._pump(src, dst))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await src.read(1 << 16):
                dst.write(data)
                await dst.drain()
        _reset(dst)

    def cut(self) -> None:
        self.cuts += 1
        for writer in list(self.writers):
            _reset(writer)
        self.writers.clear()

    async def close(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0): a cut, not an orderly close."""
    sock = writer.get_extra_info("socket")
    with contextlib.suppress(OSError):
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00" * 2)
    writer.transport.abort()


class _Server:
    """``sessionlayer serve`` in a process of its own (so it can be killed)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0

    async def start(self) -> int:
        argv = [sys.executable, "-m", "sessionlayer", "serve", "--port", str(self.port),
                "--data-dir", str(self.data_dir), "--log-format", "json"]  # fmt: skip
        env = dict(os.environ)
        src = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = await asyncio.create_subprocess_exec(
            *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
        )
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        if not line:
            raise RuntimeError("the demo's server did not start")
        self.port = int(json.loads(line)["port"])
        return self.port

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 10)
            if self.proc.returncode is None:
                await self.kill()


class _Notes(logging.Handler):
    """The client's recovery log lines, as notes on the ladder."""

    def __init__(self, ladder: Any, clock: Any) -> None:
        super().__init__(logging.DEBUG)  # (a failed resume try is a DEBUG line)
        self.ladder = ladder
        self.clock = clock
        self.resumes = 0

    def emit(self, record: logging.LogRecord) -> None:
        message, args = record.msg, record.args
        if not isinstance(message, str) or not isinstance(args, tuple):
            return
        if message.endswith(": interrupted") or ": interrupted " in message:
            self.ladder.note("the connection is lost: the session waits, the client"
                             " reconnects (S-CONNECT with the resume token)", self.clock(),
                             kind="recovery")  # fmt: skip
        elif message.startswith("session %s: resume try %d failed") and len(args) == 3:
            what = (f"try {args[1]} to resume found no server (it is down): the client waits a"
                    " little longer each time (backoff) and tries again" if args[1] == 1 else
                    f"try {args[1]}: still no server")  # fmt: skip
            self.ladder.note(what, self.clock(), kind="recovery")
        elif message.startswith("session %s: resumed (%s)") and len(args) == 4:
            self.resumes += 1
            _, outcome, downtime, replayed = args
            if outcome == "checkpoint":
                what = (f"the session is resumed from its last checkpoint after {downtime:.3f}"
                        " s: the restarted server had only its store, so both sides go"
                        " back to the checkpoint and the data after it is sent again")
            else:
                what = (f"the session is resumed in place after {downtime:.3f} s (the server"
                        f" kept its state): {replayed} unacknowledged messages replayed,"
                        " none lost, none twice")
            self.ladder.note(what, self.clock(), kind="recovery")


async def _demo(out: TextIO, svg_path: Path) -> None:
    from .aio import Options
    from .apps.files import send_file
    from .ladder import Ladder
    from .recovery import Backoff

    started = time.monotonic()

    def clock() -> float:
        return time.monotonic() - started

    ladder = Ladder()
    with tempfile.TemporaryDirectory(prefix="sessionlayer-demo-") as tmp:
        root = Path(tmp)
        source = root / "demo.bin"
        source.write_bytes(os.urandom(SIZE))
        server = _Server(root / "server")
        port = await server.start()
        cutter = _Cutter(port)
        relay_port = await cutter.start()
        out.write(f"a sessionlayer server listens on 127.0.0.1:{port}; the fault injector"
                  f" relays 127.0.0.1:{relay_port} to it\n")  # fmt: skip
        out.write(f"sending {SIZE // MIB} MiB as one activity, a checkpoint every"
                  f" {CHECKPOINT // MIB} MiB; the connection is cut at"
                  f" {', '.join(f'{int(c * 100)} %' for c in CUTS_AT)} and the server is"
                  f" killed at {int(RESTART_AT * 100)} %\n\n")  # fmt: skip
        faults = list(CUTS_AT)
        restart: list[bool] = [False]
        pending: set[asyncio.Task[Any]] = set()

        async def kill_and_restart() -> None:
            ladder.note("the server process is killed (SIGKILL): its live state is gone",
                        clock(), kind="fault")  # fmt: skip
            await server.kill()
            await server.start()
            ladder.note("the server is started again on its SQLite store", clock(),
                        kind="fault")  # fmt: skip

        def progress(state: dict[str, Any]) -> None:
            done = state["done"] / max(state["size"], 1)
            if faults and done >= faults[0]:
                faults.pop(0)
                ladder.note("the fault injector resets the TCP connection", clock(),
                            kind="fault")  # fmt: skip
                cutter.cut()
            elif not restart[0] and done >= RESTART_AT:
                restart[0] = True
                task = asyncio.ensure_future(kill_and_restart())
                pending.add(task)  # (kept: its failure is raised below)

        def tap(direction: str, data: bytes) -> None:
            ladder.wire(direction, data, clock())  # (a COTP CR starts a new connection there)

        notes = _Notes(ladder, clock)
        logger = logging.getLogger("sessionlayer")
        logger.addHandler(notes)
        level = logger.level
        logger.setLevel(logging.DEBUG)
        try:
            result = await send_file(
                source, "127.0.0.1", relay_port, checkpoint=CHECKPOINT,
                state_dir=root / "state", progress=progress, trace=tap,
                options=Options(tpdu_size=65408, backoff=Backoff(first=0, cap=0.2)),
            )  # fmt: skip
        finally:
            logger.removeHandler(notes)
            logger.setLevel(level)
            outcomes = await asyncio.gather(*pending, return_exceptions=True)
            cuts = cutter.cuts
            await cutter.close()
            await server.stop()
            for failed in outcomes:  # (the send's own failure would be its consequence)
                if isinstance(failed, Exception):
                    raise RuntimeError(f"the demo's server could not be restarted: {failed}"
                                       ) from failed  # fmt: skip
        received = root / "server" / "files" / "demo.bin"
        same = received.is_file() and (
            hashlib.sha256(received.read_bytes()).hexdigest()
            == hashlib.sha256(source.read_bytes()).hexdigest() == result.sha256
        )  # fmt: skip
    out.write(ladder.render_text(width=100, color=out.isatty()))
    out.write("\n")
    svg_path.write_text(ladder.render_svg())
    out.write(f"\nthe ladder as a picture: {svg_path}\n\n")
    out.write("summary\n")
    out.write(f"  a {result.size}-octet file sent as one activity in"
              f" {time.monotonic() - started:.1f} s ({result.sent} octets sent in all: what"
              " followed the checkpoint was sent again after the restart)\n")  # fmt: skip
    out.write(f"  {cuts} cuts and 1 server restart; {result.reconnects} resumes"
              f" ({result.reconnects - result.restores} in place, {result.restores} from a"
              " checkpoint)\n")  # fmt: skip
    out.write(f"  {result.checkpoints} checkpoints confirmed by the server\n")
    out.write(f"  SHA-256 {'OK' if same else 'MISMATCH'}: {result.sha256}\n")
    if not same:
        raise RuntimeError("the file that arrived is not the file sent")


def run_demo(out: TextIO, svg_path: Path | None = None) -> int:
    if svg_path is None:  # a file of this run's own (another run's is not overwritten)
        handle, name = tempfile.mkstemp(prefix="sessionlayer-demo-", suffix=".svg")
        os.close(handle)
        svg_path = Path(name)
    asyncio.run(asyncio.wait_for(_demo(out, svg_path), 120))
    return 0
