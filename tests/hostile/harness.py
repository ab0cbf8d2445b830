"""The hostile-client harness: a real server process, good clients, raw attackers.

* :func:`start_server` runs ``server_proc.py`` (an echo server) in a subprocess and
  returns a :class:`ServerProc`: its port, ``status()`` / ``sessions()`` / ``rss()`` /
  ``fds()`` (from the status file it rewrites every 0.2 s), ``wait_status(pred)``,
  ``log_records()`` and ``stop()``.
* :func:`good_streamers` runs n sessionlayer clients that stream mixed-size echo
  messages and check every byte, bounded by count and time.
* :func:`attack` opens a raw TCP connection, optionally does the COTP and session
  handshakes first, sends octets and reports how the connection ended
  (:class:`Outcome`: closed by the server after how long, AB with which reason, RF with
  which reason, still open at the deadline).  :func:`cr`, :func:`cn`, :func:`dt` and
  :func:`tsdu` build the octets.

Everything is bounded: every wait has a deadline, every loop a count and a time limit.
Real TCP on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sessionlayer
from sessionlayer.agent.hello import Hello
from sessionlayer.errors import DecodeError
from sessionlayer.machine import SessionConfig, SessionMachine
from sessionlayer.spdu import SPDU, Abort, Accept, Refuse, decode_tsdu, encode_tsdu
from sessionlayer.transport import (
    Data,
    DisconnectRequest,
    Rfc1006Connection,
    TpktParser,
    TsduAssembler,
    decode_tpdu,
    encode_tpkt,
    segment_tsdu,
)

__all__ = [
    "Outcome",
    "ServerProc",
    "StreamResult",
    "attack",
    "cn",
    "cr",
    "dt",
    "good_streamers",
    "start_server",
    "tsdu",
]

SERVER_SCRIPT = Path(__file__).with_name("server_proc.py")
SRC = Path(__file__).resolve().parents[2] / "src"
START_TIMEOUT = 10.0
POLL = 0.05  #: the period of every polling loop here (each has a deadline)


# ------------------------------------------------------------------ the server process


def _poll(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Call ``check()`` every POLL s until it returns something truthy; TimeoutError
    after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(POLL)


@dataclass
class ServerProc:
    """A running ``server_proc.py``."""

    proc: subprocess.Popen[bytes]
    port: int
    workdir: Path
    log_path: Path
    status_path: Path
    stderr_path: Path

    # -------------------------------------------------------- status

    def status(self) -> dict[str, Any]:
        """The latest status: sessions, rss (bytes), fds, time, seq, stopped."""
        status: dict[str, Any] = json.loads(self.status_path.read_text())
        return status

    def fresh_status(self, timeout: float = 2.0) -> dict[str, Any]:
        """A status written after this call began (so it reflects what happened before)."""
        since = time.time()

        def newer() -> dict[str, Any] | None:
            self._check_alive()
            status = self.status()
            return status if status["time"] > since else None

        result: dict[str, Any] = _poll(newer, timeout, "a fresh status")
        return result

    def wait_status(self, predicate: Callable[[dict[str, Any]], bool], timeout: float,
                    what: str = "server status") -> dict[str, Any]:  # fmt: skip
        """Poll fresh statuses until ``predicate(status)`` holds; TimeoutError (with the
        last status) after ``timeout`` s."""
        last: list[dict[str, Any]] = []

        def check() -> dict[str, Any] | None:
            status = self.fresh_status()
            last[:] = [status]
            return status if predicate(status) else None

        try:
            result: dict[str, Any] = _poll(check, timeout, what)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; last status {last}") from None
        return result

    def sessions(self) -> int:
        return int(self.fresh_status()["sessions"])

    def rss(self) -> int:
        """Resident set size in bytes."""
        return int(self.fresh_status()["rss"])

    def fds(self) -> int:
        """Open file descriptors."""
        return int(self.fresh_status()["fds"])

    # -------------------------------------------------------- log

    def log_records(self) -> list[dict[str, Any]]:
        """Every log record so far: dicts with level, logger, message, exc_text."""
        lines = self.log_path.read_text().splitlines() if self.log_path.exists() else []
        return [json.loads(line) for line in lines if line.strip()]

    def log_text(self) -> str:
        """The raw log and the process's stderr (for "Traceback" checks)."""
        parts = [p.read_text() for p in (self.log_path, self.stderr_path) if p.exists()]
        return "\n".join(parts)

    # -------------------------------------------------------- lifetime

    def _check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"the server exited with {self.proc.returncode}:\n{self.log_text()[-4000:]}"
            )

    def stop(self, timeout: float = 8.0) -> int:
        """SIGTERM, then wait up to ``timeout`` s (SIGKILL after that); the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        return int(self.proc.returncode)

    def __enter__(self) -> ServerProc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_server(tmp_path: Path, *, max_sessions: int = 1000, log_level: str = "INFO",
                 timeout: float = START_TIMEOUT, **options: Any) -> ServerProc:  # fmt: skip
    """Start ``server_proc.py`` with ``sessionlayer.Options(**options)``; return once it
    listens (its port file appeared), or raise TimeoutError / RuntimeError."""
    workdir = Path(tmp_path)
    workdir.mkdir(parents=True, exist_ok=True)
    port_file = workdir / "port"
    status_path = workdir / "status.json"
    log_path = workdir / "server.log"
    stderr_path = workdir / "server.stderr"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH")) if p)
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen(
            [
                sys.executable,
                str(SERVER_SCRIPT),
                "--port-file",
                str(port_file),
                "--status-file",
                str(status_path),
                "--log",
                str(log_path),
                "--options",
                json.dumps(options),
                "--max-sessions",
                str(max_sessions),
                "--log-level",
                log_level,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
        )
    server = ServerProc(proc, 0, workdir, log_path, status_path, stderr_path)

    def listening() -> int | None:
        server._check_alive()
        text = port_file.read_text() if port_file.exists() else ""
        return int(text) if text.strip() else None

    try:
        server.port = _poll(listening, timeout, "the server's port file")
    except BaseException:
        server.stop()
        raise
    return server


# ------------------------------------------------------------------ good clients


@dataclass
class StreamResult:
    """What :func:`good_streamers` did: totals over all clients, and every error."""

    clients: int = 0
    messages: int = 0
    octets: int = 0
    errors: list[str] = field(default_factory=list)
    elapsed: float = 0.0


#: Message sizes the streamers mix: tiny, one TPDU, several TPDUs, up to the 32 KiB limit.
SIZES = (1, 7, 100, 1000, 8000, 8190, 20_000, 32_000)  # the battery allows 32 KiB TSDUs


async def _stream_one(port: int, index: int, deadline: float, max_messages: int,
                      result: StreamResult, stop: Callable[[], bool]) -> None:  # fmt: skip
    rng = random.Random(index)
    options = sessionlayer.Options(connect_timeout=5, handshake_timeout=5)
    try:
        async with await sessionlayer.connect("127.0.0.1", port, options=options) as session:
            result.clients += 1
            for count in range(max_messages):
                if time.monotonic() >= deadline or stop():
                    break
                size = rng.choice(SIZES)
                message = rng.randbytes(size)
                async with asyncio.timeout(5):
                    await session.send(message)
                    echoed = await session.receive()
                if echoed != message:
                    result.errors.append(
                        f"client {index} message {count}: {size} octets sent,"
                        f" {len(echoed)} came back, not the same"
                    )
                    return
                result.messages += 1
                result.octets += size
    except Exception as exc:  # reported, not raised: the caller asserts on errors
        result.errors.append(f"client {index}: {type(exc).__name__}: {exc}")


async def good_streamers(port: int, n: int = 20, duration: float = 5.0,
                         max_messages: int = 10_000,
                         stop: Callable[[], bool] | None = None) -> StreamResult:  # fmt: skip
    """``n`` sessionlayer clients, each streaming echo messages of mixed sizes (``SIZES``)
    for ``duration`` s or ``max_messages`` messages or until ``stop()`` is true (checked
    before each message; e.g. a ``threading.Event().is_set``), whichever comes first,
    checking every byte that comes back.  Errors are collected, never raised."""
    stop = stop or (lambda: False)
    result = StreamResult()
    started = time.monotonic()
    deadline = started + duration
    async with asyncio.timeout(duration + 15):
        await asyncio.gather(
            *(_stream_one(port, i, deadline, max_messages, result, stop) for i in range(n))
        )
    result.elapsed = time.monotonic() - started
    return result


# ------------------------------------------------------------------ raw octets


def cr() -> bytes:
    """A COTP CR (TPDU size 8192) in a TPKT, as a sessionlayer client sends it."""
    return Rfc1006Connection("initiator").connect()


def cn(config: SessionConfig | None = None, user_data: bytes | None = None) -> bytes:
    """The TSDU of a CN SPDU (not framed; see :func:`dt`): by default with a hello."""
    machine = SessionMachine("initiator", config)
    machine.transport_connected()
    machine.connect(user_data=Hello().encode() if user_data is None else user_data)
    (out,) = machine.data_to_send()
    return out


def tsdu(*spdus: SPDU) -> bytes:
    """SPDUs as one TSDU (not framed)."""
    return encode_tsdu(*spdus)


def dt(data: bytes, tpdu_size: int = 8192) -> bytes:
    """A TSDU in TPKT-framed DT TPDUs."""
    return b"".join(encode_tpkt(t) for t in segment_tsdu(data, tpdu_size))


@dataclass
class Outcome:
    """How a raw connection ended."""

    closed: bool = False  #: the server closed (FIN or RST) before the deadline
    reset: bool = False  #: ... with a reset
    after: float | None = None  #: seconds from the last octet sent to the close
    connected: bool = False  #: a CC came
    accepted: bool = False  #: an AC came
    abort_reason: int | None = None  #: AB: its Transport Disconnect PV (None: absent)
    aborted: bool = False  #: an AB came
    refuse_reason: int | None = None  #: RF: its Reason Code
    refused: bool = False  #: an RF came
    disconnected: bool = False  #: a COTP DR came
    received: bytes = b""  #: every octet the server sent
    spdus: list[SPDU] = field(default_factory=list)
    error: str | None = None  #: the server's octets did not parse

    @property
    def still_open(self) -> bool:
        return not self.closed


class Reader:
    """Parses what the server sends (leniently: a parse error is recorded, not raised)."""

    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome
        self.parser = TpktParser()
        self.assembler = TsduAssembler(1 << 24)

    def feed(self, data: bytes) -> None:
        out = self.outcome
        out.received += data
        if out.error is not None:
            return
        try:
            for payload in self.parser.feed(data):
                self._tpdu(decode_tpdu(payload))
        except DecodeError as exc:
            out.error = f"{type(exc).__name__}: {exc}"

    def _tpdu(self, tpdu: Any) -> None:
        out = self.outcome
        if isinstance(tpdu, Data):
            whole = self.assembler.feed(tpdu)
            if whole is not None:
                for spdu in decode_tsdu(whole):
                    self._spdu(spdu)
        elif isinstance(tpdu, DisconnectRequest):
            out.disconnected = True
        elif type(tpdu).__name__ == "ConnectionConfirm":
            out.connected = True

    def _spdu(self, spdu: SPDU) -> None:
        out = self.outcome
        out.spdus.append(spdu)
        if isinstance(spdu, Accept):
            out.accepted = True
        elif isinstance(spdu, Abort):
            out.aborted, out.abort_reason = True, spdu.transport_disconnect
        elif isinstance(spdu, Refuse):
            out.refused, out.refuse_reason = True, spdu.reason


async def _read_until(reader: asyncio.StreamReader, parse: Reader, deadline: float,
                      until: Callable[[], bool] | None = None) -> bool:  # fmt: skip
    """Read until ``until()`` holds (True), EOF or reset (False, outcome.closed set), or
    the deadline (False)."""
    out = parse.outcome
    while until is None or not until():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        try:
            async with asyncio.timeout(left):
                data = await reader.read(65536)
        except TimeoutError:
            return False
        except ConnectionError:
            out.closed = out.reset = True
            return False
        if not data:
            out.closed = True
            return False
        parse.feed(data)
    return True


async def attack(port: int, payload: bytes | Sequence[bytes] = b"", *,
                 handshake: str = "none", config: SessionConfig | None = None,
                 timeout: float = 3.0, hold: asyncio.Event | None = None) -> Outcome:  # fmt: skip
    """One raw connection: ``handshake`` "none" (send ``payload`` at once), "cotp" (CR,
    wait for the CC, then ``payload``) or "session" (CR/CC, a CN with a hello from a
    machine with ``config``, wait for the AC, then ``payload``).  ``payload`` is octets,
    or several pieces written one after the other.  Then read until the server closes,
    or ``timeout`` s after the last octet went out (then ``still_open``), or, with
    ``hold``, until that event is set (then the connection is closed by us).
    """
    out = Outcome()
    parse = Reader(out)
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
    try:
        deadline = time.monotonic() + timeout
        if handshake in ("cotp", "session"):
            writer.write(cr())
            if not await _read_until(reader, parse, deadline, lambda: out.connected):
                return out
        if handshake == "session":
            writer.write(dt(cn(config)))
            done = await _read_until(reader, parse, deadline, lambda: bool(out.spdus))
            if done and not out.accepted:  # refused or aborted: how does it end?
                answered = time.monotonic()
                await _read_until(reader, parse, answered + timeout)
                if out.closed:
                    out.after = time.monotonic() - answered
                return out
            if not done:
                return out
        pieces = [payload] if isinstance(payload, bytes | bytearray) else list(payload)
        for piece in pieces:
            if piece:
                writer.write(piece)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        sent = time.monotonic()
        if hold is not None:
            waiting = asyncio.ensure_future(hold.wait())
            reading = asyncio.ensure_future(_read_until(reader, parse, sent + timeout))
            await asyncio.wait([waiting, reading], return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
            reading.cancel()
            await asyncio.gather(waiting, reading, return_exceptions=True)
        else:
            await _read_until(reader, parse, sent + timeout)
        if out.closed:
            out.after = time.monotonic() - sent
        return out
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 2)
