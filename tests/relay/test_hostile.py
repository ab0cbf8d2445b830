"""Hostile clients against ``sessionlayer relay`` (a process of its own), while relayed
sessions run.

The relay runs from the command line with a 1 s handshake timeout, a 1 s TIM, a 32 KiB
size limit and its status file; the upstream is a sessionlayer echo server (plain X.225)
in a thread of this process that counts every session it gets.  Twelve good clients
stream mixed-size echo messages through the relay all along, checking every byte.  Each
test is one attack over raw TCP (tests/hostile/harness.py): garbage, wrong TPKT versions,
oversized length indicators, SPDUs out of state, slow-loris CNs, 500 idle connections.
None of them reaches the upstream (only the attacks made after an AC have an upstream
session, which sees nothing but the relay's AB); each gets the right AB or its connection
closed within the configured time.  The last test checks the aftermath: every streamer's
bytes came back, the relay's sessions are back to the streamers', no traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tests.hostile import harness as H
from tests.relay.cliproc import RelayProcess

import sessionlayer
from sessionlayer import FunctionalUnit, Options, SessionConfig
from sessionlayer.spdu import Accept, GiveTokens, MajorSyncPoint

pytestmark = pytest.mark.hostile

STREAMERS = 12
HANDSHAKE_TIMEOUT = 1.0
ABORT_TIMEOUT = 1.0
MAX_SIZE = 32 * 1024
CLOSE_WITHIN = 2.0
PROTOCOL_ERROR = 0x05
NO_REASON = 0x09
PLAIN = Options(keepalive_interval=None, idle_timeout=None, resume=False,
                connect_timeout=5, handshake_timeout=5)  # fmt: skip
SIZES = (1, 7, 100, 1000, 8000, 8190, 20_000, 32_000)
STREAM_LIMIT = 120.0


@dataclass
class Upstream:
    """A sessionlayer echo server in a thread of its own; what it saw."""

    port: int = 0
    sessions: int = 0
    aborted: int = 0  #: sessions that ended with an abort
    data_in_aborted: int = 0  #: messages the aborted sessions received before
    errors: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)
    stop: asyncio.Event | None = None
    loop: asyncio.AbstractEventLoop | None = None

    def run(self) -> None:
        async def echo(session: sessionlayer.Session) -> None:
            self.sessions += 1
            received = 0
            try:
                async for data in session:
                    received += 1
                    await session.send(data)
            except sessionlayer.SessionAborted:
                self.aborted += 1
                self.data_in_aborted += received

        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            self.stop = asyncio.Event()
            async with await sessionlayer.serve(
                echo, config=SessionConfig.kernel_duplex(), options=PLAIN,
                accept_data=lambda request: b"echo",
            ) as server:  # fmt: skip
                self.port = server.port
                self.ready.set()
                await self.stop.wait()

        try:
            asyncio.run(main())
        except Exception as exc:  # reported by the aftermath
            self.errors.append(repr(exc))
            self.ready.set()

    def shutdown(self) -> None:
        if self.loop is not None and self.stop is not None:
            self.loop.call_soon_threadsafe(self.stop.set)


@dataclass
class Streams:
    clients: int = 0
    messages: int = 0
    errors: list[str] = field(default_factory=list)


async def _stream_one(port: int, index: int, result: Streams, stop: threading.Event) -> None:
    rng = random.Random(index)
    deadline = time.monotonic() + STREAM_LIMIT
    try:
        async with await sessionlayer.connect(
            "127.0.0.1", port, user_data=b"hello", config=SessionConfig.kernel_duplex(),
            options=PLAIN,
        ) as session:  # fmt: skip
            result.clients += 1
            while not stop.is_set() and time.monotonic() < deadline:
                message = rng.randbytes(rng.choice(SIZES))
                async with asyncio.timeout(10):
                    await session.send(message)
                    echoed = await session.receive()
                if echoed != message:
                    result.errors.append(f"client {index}: {len(message)} octets sent, "
                                         f"{len(echoed)} came back, not the same")  # fmt: skip
                    return
                result.messages += 1
    except Exception as exc:
        result.errors.append(f"client {index}: {type(exc).__name__}: {exc}")


@dataclass
class Battery:
    relay: RelayProcess
    upstream: Upstream
    status: Path
    streams: Streams
    stop: threading.Event
    attacks_with_a_session: int = 0

    def status_now(self, timeout: float = 5.0) -> dict[str, Any]:
        """A status written after this call began."""
        since = time.time()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
                document: dict[str, Any] = json.loads(self.status.read_text())
                if document["time"] > since:
                    return document
            time.sleep(0.05)  # (the relay rewrites the file every second; bounded above)
        raise TimeoutError("no fresh status from the relay")


@pytest.fixture(scope="module")
def battery(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Battery]:
    upstream = Upstream()
    up_thread = threading.Thread(target=upstream.run, name="upstream", daemon=True)
    up_thread.start()
    assert upstream.ready.wait(10) and upstream.port, upstream.errors
    status = tmp_path_factory.mktemp("relay") / "status.json"
    relay = RelayProcess(
        "--listen", "127.0.0.1:0", "--upstream", f"127.0.0.1:{upstream.port}",
        "--handshake-timeout", str(HANDSHAKE_TIMEOUT), "--abort-timeout", str(ABORT_TIMEOUT),
        "--max-size", str(MAX_SIZE), "--max-handshakes", "256", "--status", str(status),
        "--idle-timeout", "30",
    )  # fmt: skip
    stop = threading.Event()
    streams = Streams()

    def stream() -> None:
        async def all_of_them() -> None:
            await asyncio.gather(*(_stream_one(relay.port, i, streams, stop)
                                   for i in range(STREAMERS)))  # fmt: skip

        asyncio.run(all_of_them())

    thread = threading.Thread(target=stream, name="streamers", daemon=True)
    try:
        relay.wait_listening()
        thread.start()
        deadline = time.monotonic() + 15
        # Both ends: a streamer counts once it has the relay's AC, the upstream once its
        # handler runs, which may be a little later (the attacks compare upstream counts).
        while (streams.clients < STREAMERS or upstream.sessions < STREAMERS) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.05)  # (waiting for the streamers' handshakes; bounded)
        assert streams.clients == STREAMERS, streams.errors
        assert upstream.sessions == STREAMERS, upstream
        yield Battery(relay, upstream, status, streams, stop)
    finally:
        stop.set()
        thread.join(STREAM_LIMIT + 20)
        if relay.proc.poll() is None:
            relay.stop()
        upstream.shutdown()
        up_thread.join(20)


def run(coro: Any, timeout: float = 30) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def _tpkt(payload: bytes, length: int | None = None, version: int = 3) -> bytes:
    size = len(payload) + 4 if length is None else length
    return struct.pack(">BBH", version, 0, size) + payload


def upstream_untouched(battery: Battery, before: int) -> None:
    assert battery.upstream.sessions == before, "an attack reached the upstream"


# ------------------------------------------------------------------ before any CN


@pytest.mark.parametrize("payload", [
    pytest.param(b"\xde\xad\xbe\xef" * 64, id="garbage"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", id="http"),
    pytest.param(_tpkt(H.cr()[4:], version=2), id="tpkt-version-2"),
    pytest.param(_tpkt(H.cr()[4:], version=0xFF), id="tpkt-version-255"),
    pytest.param(b"\x03\x01" + H.cr()[2:], id="tpkt-reserved-octet"),
    pytest.param(_tpkt(b"\x0e\xe0\x00", length=3), id="tpkt-length-below-7"),
    pytest.param(_tpkt(b"\xfe" + H.cr()[5:]), id="cotp-li-254"),
    pytest.param(_tpkt(b"\xfe\x99" + bytes(65529)), id="tpkt-65535-garbage"),
])  # fmt: skip
def test_malformed_transport_is_closed(battery: Battery, payload: bytes) -> None:
    before = battery.upstream.sessions
    out = run(H.attack(battery.relay.port, payload, timeout=CLOSE_WITHIN + 1))
    assert out.closed and out.after is not None and out.after < CLOSE_WITHIN, out
    assert not out.accepted
    upstream_untouched(battery, before)


@pytest.mark.parametrize("tsdu", [
    pytest.param(b"\x01\x00\x01\x00" + b"data first", id="dt-before-cn"),
    pytest.param(H.tsdu(Accept(requirements=2)), id="ac-from-the-client"),
    pytest.param(b"\x0d\xff\xff\xff" + bytes(20), id="cn-li-65535"),
    pytest.param(b"\x0d\x03\x05\x01", id="cn-pgi-past-its-end"),
    pytest.param(b"\xee\x00", id="unknown-si"),
])  # fmt: skip
def test_bad_or_out_of_state_spdus_before_the_cn_get_ab_0x05(battery: Battery,
                                                              tsdu: bytes) -> None:  # fmt: skip
    before = battery.upstream.sessions
    out = run(H.attack(battery.relay.port, H.dt(tsdu), handshake="cotp",
                       timeout=CLOSE_WITHIN + 1))  # fmt: skip
    assert out.connected and out.closed, out
    assert out.after is not None and out.after < CLOSE_WITHIN, out
    assert out.aborted and out.abort_reason == PROTOCOL_ERROR, out
    upstream_untouched(battery, before)


def test_a_tsdu_over_max_size_before_the_cn_gets_ab_0x11(battery: Battery) -> None:
    """70 KB in one TSDU (DTs of 8192), over what any connect-phase SPDU takes (65,539
    octets: before the AC the relay's 32 KiB max_size does not bound a CN or CDO): AB 0x11
    as soon as that is passed, never relayed."""
    before = battery.upstream.sessions
    out = run(H.attack(battery.relay.port, H.dt(b"\x0d" + bytes(70_000)), handshake="cotp",
                       timeout=CLOSE_WITHIN + 1))  # fmt: skip
    assert out.closed and out.after is not None and out.after < CLOSE_WITHIN, out
    assert out.aborted and out.abort_reason == 0x11, out
    upstream_untouched(battery, before)


def test_a_cn_whose_overflow_never_comes_is_closed_at_the_handshake_timeout(
    battery: Battery,
) -> None:
    """A version-2 CN with 40 KB of user data: 10,240 in the CN, Data Overflow set; the
    relay answers OA and the CDOs never come."""
    before = battery.upstream.sessions
    big = H.cn(SessionConfig(versions=2), user_data=bytes(40_000))
    out = run(H.attack(battery.relay.port, H.dt(big), handshake="cotp",
                       timeout=HANDSHAKE_TIMEOUT + 3))  # fmt: skip
    assert out.closed and not out.accepted, out
    assert out.after is not None and out.after < HANDSHAKE_TIMEOUT + 1.0, out
    upstream_untouched(battery, before)


def test_slow_loris_cns_are_cut_off_at_the_handshake_timeout(battery: Battery) -> None:
    """CR + CN, one octet every 0.1 s, from 40 connections: none becomes a session."""
    before = battery.upstream.sessions
    data = H.cr() + H.dt(H.cn(user_data=b"slow"))

    async def loris() -> tuple[bool, float]:
        reader, writer = await asyncio.open_connection("127.0.0.1", battery.relay.port)
        started = time.monotonic()
        try:
            for octet in data:
                writer.write(bytes([octet]))
                with contextlib.suppress(TimeoutError):
                    if await asyncio.wait_for(reader.read(65536), 0.1) == b"":
                        break
                if time.monotonic() - started > HANDSHAKE_TIMEOUT + 3:
                    break
            with contextlib.suppress(TimeoutError, ConnectionError):
                while await asyncio.wait_for(reader.read(65536), HANDSHAKE_TIMEOUT + 3):
                    pass
            return reader.at_eof(), time.monotonic() - started
        except ConnectionError:
            return True, time.monotonic() - started
        finally:
            writer.close()

    async def main() -> list[tuple[bool, float]]:
        return list(await asyncio.gather(*(loris() for _ in range(40))))

    for closed, took in run(main()):
        assert closed and took < HANDSHAKE_TIMEOUT + 1.0, (closed, took)
    upstream_untouched(battery, before)


def test_500_idle_connections_are_closed(battery: Battery) -> None:
    """500 connections that never send an octet (max_handshakes is 256): each is closed at
    the handshake timeout from its accept, those over the limit too (they waited, unread,
    for a slot: the time waited counts)."""
    before = battery.upstream.sessions

    async def main() -> list[H.Outcome]:
        return list(await asyncio.gather(
            *(H.attack(battery.relay.port, timeout=HANDSHAKE_TIMEOUT + 4) for _ in range(500))
        ))  # fmt: skip

    outcomes = run(main(), timeout=HANDSHAKE_TIMEOUT + 30)
    still_open = [o for o in outcomes if o.still_open]
    assert not still_open, f"{len(still_open)} of 500 idle connections were left open"
    assert all(o.after is not None and o.after < HANDSHAKE_TIMEOUT + 2.0 for o in outcomes)
    upstream_untouched(battery, before)


def test_cr_then_nothing_is_closed_at_the_handshake_timeout(battery: Battery) -> None:
    before = battery.upstream.sessions
    out = run(H.attack(battery.relay.port, b"", handshake="cotp",
                       timeout=HANDSHAKE_TIMEOUT + 3))  # fmt: skip
    assert out.connected and out.closed, out
    assert out.after is not None and out.after < HANDSHAKE_TIMEOUT + 1.0, out
    upstream_untouched(battery, before)


# ------------------------------------------------------------------ after the AC


DUPLEX = SessionConfig(functional_units=FunctionalUnit.DUPLEX)


@pytest.mark.parametrize("payload", [
    pytest.param(H.dt(H.tsdu(GiveTokens(), MajorSyncPoint(serial_number=0, sync_type=1))),
                 id="map-without-the-unit"),
    pytest.param(H.dt(b"\x01\xff\xff\xff"), id="dt-li-65535"),
    pytest.param(H.dt(H.tsdu(Accept(requirements=2))), id="second-ac"),
    pytest.param(H.dt(b"\x01\x00\x01\x00" + bytes(MAX_SIZE + 100)), id="tsdu-over-max-size"),
])  # fmt: skip
def test_after_the_ac_the_upstream_sees_only_the_relays_abort(battery: Battery,
                                                              payload: bytes) -> None:  # fmt: skip
    upstream = battery.upstream
    sessions, aborted, data = upstream.sessions, upstream.aborted, upstream.data_in_aborted
    out = run(H.attack(battery.relay.port, payload, handshake="session", config=DUPLEX,
                       timeout=CLOSE_WITHIN + 1))  # fmt: skip
    assert out.accepted and out.closed and out.aborted, out
    assert out.abort_reason in (PROTOCOL_ERROR, 0x11), out
    assert out.after is not None and out.after < CLOSE_WITHIN, out
    deadline = time.monotonic() + 5
    while upstream.aborted == aborted and time.monotonic() < deadline:
        time.sleep(0.02)  # (the upstream's thread notes the abort; bounded)
    assert upstream.sessions == sessions + 1 and upstream.aborted == aborted + 1
    assert upstream.data_in_aborted == data  # nothing of the attack was relayed
    battery.attacks_with_a_session += 1


# ------------------------------------------------------------------ the aftermath


def test_aftermath(battery: Battery) -> None:
    # The streamers still stream after every attack: a few more round trips each.
    before = battery.streams.messages
    deadline = time.monotonic() + 10
    while battery.streams.messages < before + 2 * STREAMERS and time.monotonic() < deadline:
        time.sleep(0.02)  # (waiting on the streamers' thread; bounded)
    assert battery.streams.messages >= before + 2 * STREAMERS, battery.streams.errors
    battery.stop.set()
    deadline = time.monotonic() + 20
    while battery.streams.clients and time.monotonic() < deadline:
        status = battery.status_now()
        if len(status["sessions"]) == 0:
            break
    streams = battery.streams
    assert not streams.errors, streams.errors
    assert streams.messages > STREAMERS * 5, streams.messages
    status = battery.status_now()
    assert status["sessions"] == [], status["sessions"]
    expected = STREAMERS + battery.attacks_with_a_session
    assert battery.upstream.sessions == expected, (battery.upstream.sessions, expected)
    assert not battery.upstream.errors
    code, _, stderr = battery.relay.stop()
    assert code == 0, stderr
    assert "Traceback" not in stderr and "ERROR" not in stderr, stderr[-3000:]
