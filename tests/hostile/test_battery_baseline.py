"""The hostile-client battery (issue 13): every attack a peer can make on a server.

One server process for the module (``server_proc.py``: echo, max_sessions 24); 20 good
clients stream mixed-size echo messages in a thread of their own all along, checking
every byte.  Each test is one attack over raw TCP; the last test stops the streamers and
checks the aftermath: every streamer's bytes came back, no ERROR record and no traceback
in the server log, sessions back to 0, descriptors back to the baseline, RSS bounded.

The server runs with ``handshake_timeout=1`` (a connection must become a session within
it), ``idle_timeout=2`` (with keepalive probes every 0.5 s, which the good clients answer),
a 32 KiB TSDU limit and 256 KiB of buffered data per connection, as in the issue's attack.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.hostile import harness as H

import sessionlayer
from sessionlayer import FunctionalUnit, RefuseReason
from sessionlayer.agent.hello import Hello
from sessionlayer.errors import AbortReason
from sessionlayer.machine import SessionConfig, SessionMachine
from sessionlayer.spdu import GiveTokens, MajorSyncPoint, TypedData
from sessionlayer.transport import encode_tpdu, encode_tpkt
from sessionlayer.transport.cotp import DisconnectRequest
from sessionlayer.transport.cotp import Error as TpduError

pytestmark = pytest.mark.hostile

STREAMERS = 20
HOLDERS = 76
MAX_SESSIONS = STREAMERS + HOLDERS
IDLE_TIMEOUT = 2.0
HANDSHAKE_TIMEOUT = 1.0
SERVER_OPTIONS: dict[str, Any] = {
    "handshake_timeout": HANDSHAKE_TIMEOUT,
    "idle_timeout": IDLE_TIMEOUT,
    "keepalive_interval": 0.5,
    "max_tsdu_size": 32 * 1024,
    "max_buffered_bytes": 256 * 1024,
}
IMPLEMENTATION_RESTRICTION = AbortReason.TRANSPORT_RELEASED | AbortReason.IMPLEMENTATION_RESTRICTION
NO_REASON = AbortReason.TRANSPORT_RELEASED | AbortReason.NO_REASON
STREAM_LIMIT = 120.0  #: the streamers stop by themselves after this, if nobody stops them
RSS_SLACK = 64 << 20  #: RSS may grow by at most this over the battery
PROTOCOL_ERROR = AbortReason.TRANSPORT_RELEASED | AbortReason.PROTOCOL_ERROR  # 0x05
CLOSE_WITHIN = 2.0  #: a malformed connection is closed within this


def run(coro: Any, timeout: float = 20) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


@dataclass
class Battery:
    server: H.ServerProc
    baseline: dict[str, Any]
    stop: threading.Event
    thread: threading.Thread
    result: list[H.StreamResult]


@pytest.fixture(scope="module")
def battery(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Battery]:
    server = H.start_server(
        tmp_path_factory.mktemp("hostile"), max_sessions=MAX_SESSIONS, **SERVER_OPTIONS
    )
    stop = threading.Event()
    result: list[H.StreamResult] = []

    def stream() -> None:
        coro = H.good_streamers(
            server.port, STREAMERS, STREAM_LIMIT, max_messages=10**9, stop=stop.is_set
        )
        result.append(asyncio.run(coro))

    thread = threading.Thread(target=stream, name="good-streamers", daemon=True)
    try:
        baseline = server.fresh_status()
        thread.start()
        server.wait_status(lambda s: s["sessions"] == STREAMERS, 10, "streamers connected")
        yield Battery(server, baseline, stop, thread, result)
    finally:
        stop.set()
        if thread.is_alive():
            thread.join(STREAM_LIMIT + 20)
        server.stop()


def _tpkt(payload: bytes, length: int | None = None, version: int = 3) -> bytes:
    size = len(payload) + 4 if length is None else length
    return struct.pack(">BBH", version, 0, size) + payload


# ------------------------------------------------------------------ malformed transport


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(_tpkt(H.cr()[4:], version=2), id="tpkt-version-2"),
        pytest.param(_tpkt(H.cr()[4:], version=0xFF), id="tpkt-version-255"),
        pytest.param(b"\x03\x01" + H.cr()[2:], id="tpkt-reserved-octet"),
        pytest.param(_tpkt(b"\x0e\xe0\x00", length=3), id="tpkt-length-below-7"),
        # COTP LI larger than the TPDU that carries it.
        pytest.param(_tpkt(b"\xfe" + H.cr()[5:]), id="cotp-li-254"),
        pytest.param(_tpkt(b"\xff" + H.cr()[5:]), id="cotp-li-255"),
        # A whole TPKT of 65535 octets whose TPDU is garbage.
        pytest.param(_tpkt(b"\xfe\x99" + bytes(65529)), id="tpkt-65535-garbage"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", id="http"),
    ],
)
def test_malformed_transport_is_closed(battery: Battery, payload: bytes) -> None:
    out = run(H.attack(battery.server.port, payload, timeout=CLOSE_WITHIN + 1))
    assert out.closed, out
    assert out.after is not None and out.after < CLOSE_WITHIN, out
    assert not out.connected and not out.accepted


def test_garbage_after_cr(battery: Battery) -> None:
    out = run(H.attack(battery.server.port, b"\xde\xad\xbe\xef" * 8, handshake="cotp"))
    assert out.connected and out.closed, out
    assert out.after is not None and out.after < CLOSE_WITHIN
    assert out.aborted and out.abort_reason == PROTOCOL_ERROR, out


# ------------------------------------------------------------------ malformed session


def test_spdu_with_oversized_li_after_ac(battery: Battery) -> None:
    """A DT SPDU whose 3-octet LI says 65535 parameter octets; none follow."""
    out = run(H.attack(battery.server.port, H.dt(b"\x01\xff\xff\xff"), handshake="session"))
    assert out.accepted and out.closed, out
    assert out.aborted and out.abort_reason == PROTOCOL_ERROR, out


def test_out_of_state_map_is_aborted_on_the_wire(battery: Battery) -> None:
    """MAJOR SYNC POINT on a session that did not negotiate the major sync unit."""
    config = SessionConfig(functional_units=FunctionalUnit.DUPLEX)
    spdus = H.tsdu(GiveTokens(), MajorSyncPoint(serial_number=1, sync_type=1))
    out = run(H.attack(battery.server.port, H.dt(spdus), handshake="session", config=config))
    assert out.accepted and out.closed, out
    # On the wire: TPKT, DT with EOT, then AB (SI 25) whose PI 17 (Transport
    # Disconnect) is 0x05: transport released, protocol error.
    ab_at = out.received.rfind(b"\x02\xf0\x80\x19")
    assert ab_at >= 4, out.received.hex()
    ab = out.received[ab_at + 3 :]
    assert b"\x11\x01\x05" in ab[: 2 + ab[1]], ab.hex()
    assert out.aborted and out.abort_reason == 0x05


# ------------------------------------------------------------------ resources


def test_silent_connections_are_closed_by_the_handshake_timeout(battery: Battery) -> None:
    """300 connections that never send an octet (more than ``max_handshakes``, 256): the
    server closes each by itself, within the handshake timeout (those over the limit at
    once)."""

    async def main() -> list[H.Outcome]:
        return await asyncio.gather(
            *(H.attack(battery.server.port, timeout=HANDSHAKE_TIMEOUT + 3) for _ in range(300))
        )

    outcomes = run(main(), timeout=HANDSHAKE_TIMEOUT + 15)
    still_open = [o for o in outcomes if o.still_open]
    assert not still_open, f"{len(still_open)} of 300 silent connections were left open"
    assert all(o.after is not None and o.after < HANDSHAKE_TIMEOUT + 1.5 for o in outcomes)


async def _slow_loris(port: int, data: bytes, gap: float, limit: float) -> tuple[bool, float]:
    """Send ``data`` an octet every ``gap`` s; (closed by the server, seconds it took)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    try:
        for octet in data:
            if reader.at_eof() or time.monotonic() - started > limit:
                break
            writer.write(bytes([octet]))
            with contextlib.suppress(asyncio.TimeoutError):
                if await asyncio.wait_for(reader.read(65536), gap) == b"":
                    break
        else:
            pass
        with contextlib.suppress(asyncio.TimeoutError, ConnectionError):
            while await asyncio.wait_for(reader.read(65536), limit):
                pass
        return reader.at_eof(), time.monotonic() - started
    except ConnectionError:
        return True, time.monotonic() - started
    finally:
        writer.close()


def test_slow_loris_connect_is_cut_off_at_the_handshake_timeout(battery: Battery) -> None:
    """CR + CN sent one octet every 0.1 s by 50 connections: none becomes a session, each
    is closed within the handshake timeout (before the fix: accepted after 46 s)."""
    data = H.cr() + H.dt(H.cn())

    async def main() -> list[tuple[bool, float]]:
        return list(await asyncio.gather(
            *(_slow_loris(battery.server.port, data, 0.1, HANDSHAKE_TIMEOUT + 3)
              for _ in range(50))
        ))  # fmt: skip

    for closed, took in run(main()):
        assert closed and took < HANDSHAKE_TIMEOUT + 1.0, (closed, took)


# ------------------------------------------------------------------ after the AC


def _dr() -> bytes:
    return encode_tpkt(encode_tpdu(DisconnectRequest(1, 1, 0)))


def _er() -> bytes:
    return encode_tpkt(encode_tpdu(TpduError(1)))


@pytest.mark.parametrize("tpdu", [_dr, _er], ids=["DR", "ER"])
def test_cotp_disconnect_after_ac_closes_the_socket(battery: Battery, tpdu: Any) -> None:
    """Before the fix the session ended but the socket stayed open, uncounted."""
    out = run(H.attack(battery.server.port, tpdu(), handshake="session", timeout=CLOSE_WITHIN))
    assert out.accepted and out.closed, out
    assert out.after is not None and out.after < 1.0, out


def test_cr_and_dr_in_one_segment(battery: Battery) -> None:
    """Before the fix: asyncio's "Fatal error: protocol.buffer_updated() call failed"."""
    out = run(H.attack(battery.server.port, H.cr() + _dr(), timeout=CLOSE_WITHIN))
    assert out.closed and not out.accepted, out


def test_deeply_nested_hello_is_refused_quietly(battery: Battery) -> None:
    """``SLH1`` + ``[`` x 9000 in the CN (v2 extended user data): an RF, and no traceback
    in the log (the aftermath checks the log)."""
    config = SessionConfig(versions=2)
    cn = H.cn(config, user_data=b"SLH1" + b"[" * 9000)
    out = run(H.attack(battery.server.port, H.dt(cn), handshake="cotp", timeout=CLOSE_WITHIN))
    assert out.refused and out.refuse_reason == int(RefuseReason.USER_DATA), out
    assert out.closed, out


def test_idle_session_gets_an_abort_with_its_reason(battery: Battery) -> None:
    """A session that never answers the server's probes: AB 0x09 (no reason), then closed."""
    out = run(H.attack(battery.server.port, b"", handshake="session", timeout=IDLE_TIMEOUT + 3))
    assert out.accepted and out.closed, out
    assert out.aborted and out.abort_reason == NO_REASON, out


def test_flood_of_typed_data_to_an_echo_handler_is_held_back(battery: Battery) -> None:
    """30 KB TYPED DATA SPDUs the handler never reads from events(): before the fix the
    server grew by 310 MiB; now it stops reading once their user data passes
    max_buffered_bytes, so the flood backs up in the flooder's own socket."""
    config = SessionConfig(functional_units=FunctionalUnit.DUPLEX | FunctionalUnit.TYPED_DATA)
    flood = b"".join(H.dt(H.tsdu(TypedData(user_data=b"t" * 30_000))) for _ in range(1200))
    _assert_held_back(battery, config, flood)


def _minor_syncs(config: SessionConfig, count: int, size: int) -> list[bytes]:
    """The TSDUs of ``count`` confirmed minor sync points with ``size`` octets of user data,
    as an initiator sends them right after the AC."""
    initiator, responder = SessionMachine("initiator", config), SessionMachine("responder", config)
    initiator.transport_connected()
    responder.transport_connected()
    initiator.connect(user_data=Hello().encode())
    for tsdu in initiator.data_to_send():
        responder.receive_tsdu(tsdu, now=0.0)
    responder.events()
    responder.accept()
    for tsdu in responder.data_to_send():
        initiator.receive_tsdu(tsdu, now=0.0)
    out = []
    for _ in range(count):
        initiator.minor_sync(confirm=True, user_data=b"m" * size)
        out.extend(initiator.data_to_send())
    return out


def test_sync_points_from_a_peer_that_never_reads(battery: Battery) -> None:
    """GT+MIP with 400 octets of user data, never reading the MIA answers: the server's
    memory stays put (before the fix: +47.5 MiB for 91,000 MIPs).  The echo handler never
    reads events(), so the indications are dropped once past max_queued_events (and said
    at WARNING) and the server may well read the whole flood: its 16 MiB go by at the
    price of their answers, which its kernel holds here; past twice write_buffer_high
    written and unread, reading pauses (tests/aio/test_unread_events.py shows that)."""
    config = SessionConfig(functional_units=FunctionalUnit.DUPLEX | FunctionalUnit.MINOR_SYNC)
    frames = b"".join(H.dt(t) for t in _minor_syncs(config, 40_000, 400))
    _assert_held_back(battery, config, frames, must_block=False)


def _assert_held_back(
    battery: Battery, config: SessionConfig, frames: bytes, must_block: bool = True
) -> None:
    """A session that writes ``frames`` after its AC and never reads: the server must stop
    reading (our writes block; unless not ``must_block``) and not grow by 16 MiB while more
    than that went out."""
    server = battery.server
    before = server.fresh_status()["rss"]

    async def main() -> tuple[int, bool]:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        parse = H.Outcome()
        try:
            writer.write(H.cr())
            await _until(reader, parse, lambda: parse.connected)
            writer.write(H.dt(H.cn(config)))
            await _until(reader, parse, lambda: parse.accepted)  # from now on nothing is read
            sent, chunk = 0, 64 * 1024
            while sent < len(frames):
                writer.write(frames[sent : sent + chunk])
                sent += chunk
                try:
                    await asyncio.wait_for(writer.drain(), 1.0)
                except TimeoutError:
                    return sent, True
            return sent, False
        finally:  # a reset (SO_LINGER 0): a plain close would leave our kernel trying to
            # deliver the unread flood, and the connection alive, for minutes
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()

    sent, blocked = run(main())
    # Our writes blocked before the flood was out (what the kernel's buffers absorb varies,
    # a few MiB on loopback), and the server holds a bounded part of what it took in.
    assert not must_block or (blocked and sent < len(frames)), f"the server read all {sent}"
    grown = server.fresh_status()["rss"] - before
    assert grown < 16 << 20, (grown, sent)


async def _until(reader: asyncio.StreamReader, out: H.Outcome, done: Any) -> None:
    parse = H.Reader(out)
    while not done():
        data = await asyncio.wait_for(reader.read(65536), 5)
        assert data, "the server closed the connection"
        parse.feed(data)


def test_partial_tpdus_hold_little_memory(battery: Battery) -> None:
    """60 sessions that send 5 octets of a TPDU and stop: before the fix the fast-path
    reader gave each a 1 MiB buffer (+60 MiB)."""
    server = battery.server
    before = server.fresh_status()["rss"]
    hold = None

    async def main() -> list[H.Outcome]:
        nonlocal hold
        hold = asyncio.Event()
        piece = H.dt(b"\x01\x00\x01\x00" + b"p" * 1000)[:5]
        attacks = [
            asyncio.ensure_future(H.attack(server.port, piece, handshake="session", hold=hold,
                                           timeout=IDLE_TIMEOUT + 3))
            for _ in range(60)
        ]  # fmt: skip
        await asyncio.to_thread(server.wait_status, lambda s: s["sessions"] >= STREAMERS + 55,
                                10, "the partial sessions")  # fmt: skip
        status = await asyncio.to_thread(server.fresh_status)
        hold.set()
        outcomes = list(await asyncio.gather(*attacks))
        assert status["rss"] - before < 8 << 20, status["rss"] - before
        return outcomes

    for out in run(main()):
        assert out.accepted, out


def test_more_connects_than_max_sessions_are_refused(battery: Battery) -> None:
    """With every slot taken, a CN gets RF reason 0x83 (SPM congestion)."""
    server = battery.server
    server.wait_status(lambda s: s["sessions"] == STREAMERS, 10, "only the streamers")

    async def main() -> list[H.Outcome]:
        holders = [await sessionlayer.connect("127.0.0.1", server.port) for _ in range(HOLDERS)]
        try:
            status = await asyncio.to_thread(
                server.wait_status, lambda s: s["sessions"] == MAX_SESSIONS, 10, "full"
            )
            assert status["sessions"] == MAX_SESSIONS
            return list(
                await asyncio.gather(
                    *(H.attack(server.port, handshake="session") for _ in range(5))
                )
            )
        finally:
            for holder in holders:
                await holder.release()

    for out in run(main()):
        assert out.connected and out.refused and not out.accepted, out
        assert out.refuse_reason == 0x83 == int(RefuseReason.SPM_CONGESTION), out
        assert out.closed, out


# ------------------------------------------------------------------ the aftermath


def test_aftermath(battery: Battery) -> None:
    """Run last: the good streamers were unharmed, and the server is back where it was."""
    battery.stop.set()
    battery.thread.join(STREAM_LIMIT + 20)
    assert not battery.thread.is_alive()
    (streamed,) = battery.result
    assert not streamed.errors, streamed.errors
    assert streamed.clients == STREAMERS
    assert streamed.messages >= STREAMERS, streamed

    server = battery.server
    base = battery.baseline
    server.wait_status(lambda s: s["sessions"] == 0, 10, "sessions back to 0")
    status = server.wait_status(lambda s: s["fds"] <= base["fds"], 10, "fds back to baseline")
    assert status["rss"] < base["rss"] + RSS_SLACK, (status["rss"], base["rss"])

    records = server.log_records()
    errors = [r for r in records if r["level"] in ("ERROR", "CRITICAL")]
    assert not errors, errors
    assert not [r for r in records if r["exc_text"]], "a record carries a traceback"
    assert "Traceback" not in server.log_text()
    assert server.stop() == 0
    assert "Traceback" not in server.log_text()


def test_harness_can_see_an_error(tmp_path: Path) -> None:
    """The checks above can fail: a server whose log has an ERROR is seen as such."""
    server = H.start_server(tmp_path)
    try:
        assert server.sessions() == 0
        assert server.rss() > 0 and server.fds() > 0
    finally:
        assert server.stop() == 0
    with open(server.log_path, "a") as log:
        log.write('{"level": "ERROR", "logger": "x", "message": "boom", "exc_text": null}\n')
    assert [r["message"] for r in server.log_records() if r["level"] == "ERROR"] == ["boom"]
