"""The relay's limits and its upstream's failures, in the test's event loop: max_sessions,
rules at accept, an upstream that is not there, closes early or never answers, stopping
the relay with sessions open, IPv6 with a capture, and the wire log's decoder."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path

import pytest
from tests.hostile import harness as H
from tests.rawpeer import RawPeer, raw_server
from tests.relay.helpers import CONFIG, PLAIN, run, upstream
from tests.tools import echo, unavailable

import sessionlayer
from sessionlayer import ConnectRefused, RefuseReason, SessionAborted
from sessionlayer.capture import PcapWriter, read_tcp_streams
from sessionlayer.errors import AbortReason, ParameterError
from sessionlayer.relay import Policy, RelayOptions, Rule, start
from sessionlayer.relay.wirelog import WireTap
from sessionlayer.transport import ConnectRequested, encode_tpdu, encode_tpkt
from sessionlayer.transport.cotp import DisconnectRequest, ExpeditedData

NO_REASON = AbortReason.TRANSPORT_RELEASED | AbortReason.NO_REASON




async def client(port: int, host: str = "127.0.0.1") -> sessionlayer.Session:
    return await sessionlayer.connect(host, port, user_data=b"hi", config=CONFIG,
                                      options=PLAIN)  # fmt: skip


def test_max_sessions_refuses_with_spm_congestion() -> None:
    async def main() -> None:
        async with await upstream() as up:  # type: ignore[attr-defined]
            options = RelayOptions(max_sessions=1)
            async with await start(("127.0.0.1", up.port), options=options) as relay:
                async with await client(relay.port) as first:
                    with pytest.raises(ConnectRefused) as info:
                        await client(relay.port)
                    assert info.value.reason == RefuseReason.SPM_CONGESTION
                    await first.send(b"still served")
                    assert await first.receive() == b"still served"
                assert relay.stats.refused["SPM_CONGESTION"] == 1

    run(main())


def test_a_denied_address_is_closed_at_accept() -> None:
    async def main() -> None:
        policy = Policy.from_rules([Rule.parse("deny", "peer=127.0.0.0/8")])
        async with await start(("127.0.0.1", 9), policy=policy) as relay:
            out = await H.attack(relay.port, H.cr(), timeout=3)
            assert out.closed and not out.connected, out
            assert relay.stats.rejected["denied"] == 1 and relay.stats.connections == 0

    run(main())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_no_upstream_refuses_with_user_not_attached() -> None:
    async def main() -> None:
        async with await start(("127.0.0.1", _free_port())) as relay:
            with pytest.raises(ConnectRefused) as info:
                await client(relay.port)
            assert info.value.reason == RefuseReason.USER_NOT_ATTACHED
            assert relay.stats.ended["refused"] == 1
            # (the relay's own RF is counted by its reason: it was not, so an alert on
            # refused_total{reason="USER_NOT_ATTACHED"}, the upstream down, never fired)
            assert relay.stats.refused == {"USER_NOT_ATTACHED": 1}

    run(main())


@pytest.mark.parametrize("behaviour", ["close-at-once", "cc-then-close", "cc-then-silence"])
def test_an_upstream_that_does_not_accept(behaviour: str) -> None:
    async def main() -> None:
        done = asyncio.Event()

        async def handler(raw: RawPeer) -> None:
            try:
                if behaviour == "close-at-once":
                    return
                assert isinstance(await raw.next(), ConnectRequested)
                raw.writer.write(raw.rfc.accept())
                if behaviour == "cc-then-silence":
                    await raw.closed()  # reads until the relay gives up the connection
            finally:
                done.set()

        async with raw_server(handler) as port:
            options = RelayOptions(handshake_timeout=1.0)
            async with await start(("127.0.0.1", port), options=options) as relay:
                with pytest.raises(ConnectRefused) as info:
                    await client(relay.port)
                assert info.value.reason == RefuseReason.USER_NOT_ATTACHED
                await asyncio.wait_for(done.wait(), 5)  # the relay closed its upstream
                assert relay.stats.refused == {"USER_NOT_ATTACHED": 1}

    run(main())


def test_stopping_the_relay_aborts_both_legs() -> None:
    async def main() -> None:
        ended: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

        async def upstream_handler(session: sessionlayer.Session) -> None:
            try:
                async for _ in session:
                    pass
            except SessionAborted as exc:
                ended.set_result(exc)

        async with await sessionlayer.serve(upstream_handler, config=CONFIG, options=PLAIN,
                                            accept_data=lambda r: b"ok") as up:  # fmt: skip
            relay = await start(("127.0.0.1", up.port))
            session = await client(relay.port)
            relay.close()
            await asyncio.wait_for(relay.wait_closed(), 5)
            with pytest.raises(SessionAborted) as info:
                await asyncio.wait_for(session.receive(), 5)
            assert info.value.reason == NO_REASON and not info.value.by_peer
            upstream_saw = await asyncio.wait_for(ended, 5)
            assert isinstance(upstream_saw, SessionAborted) and upstream_saw.reason == NO_REASON
            assert relay.sessions == []

    run(main())


def test_the_port_stays_known_once_closed() -> None:
    async def main() -> None:
        relay = await start(("127.0.0.1", 9))
        port = relay.port
        assert port > 0
        relay.close()
        await asyncio.wait_for(relay.wait_closed(), 5)
        assert relay.port == port  # (as Server.port; the listener's sockets are gone)

    run(main())


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_ipv6_legs_in_the_capture(tmp_path: Path) -> None:
    if not _has_ipv6():
        unavailable("no IPv6 loopback (::1)")
    path = tmp_path / "v6.pcap"

    async def main() -> int:
        async with await sessionlayer.serve(echo, "::1", 0, config=CONFIG, options=PLAIN,
                                            accept_data=lambda r: b"ok") as up:  # fmt: skip
            with PcapWriter(path) as pcap:
                async with await start(("::1", up.port), "::1", 0, pcap=pcap) as relay:
                    async with await client(relay.port, "::1") as session:
                        await session.send(b"over ipv6")
                        assert await session.receive() == b"over ipv6"
                        port = relay.port
            return port

    port = run(main())
    streams = read_tcp_streams(path)
    assert {s.src[0] for s in streams} == {"::1"}
    assert len({frozenset((s.src, s.dst)) for s in streams}) == 2  # one per leg connection
    client_leg = [s for s in streams if s.dst[1] == port]
    assert client_leg and b"over ipv6" in client_leg[0].data


# ------------------------------------------------------------------ the wire log's decoder


def test_wiretap_reports_tpdus_spdus_and_errors() -> None:
    tap = WireTap(1024)
    assert tap.feed(H.cr())[0]["tpdu"] == "CR"
    dr = encode_tpkt(encode_tpdu(DisconnectRequest(1, 1, 0)))
    assert tap.feed(dr)[0]["tpdu"] == "DR"
    records = tap.feed(H.dt(b"\x01\x00\x01\x00hello"))
    assert [r["spdu"] for r in records] == ["GT", "DT"] and records[1]["user_data"] == 5
    assert "malformed SPDU" in tap.feed(H.dt(b"\x0d\xff\xff\xff"))[0]["error"]
    ed = encode_tpkt(encode_tpdu(ExpeditedData(b"\x05\x00urgent")))
    assert tap.feed(ed)[0]["expedited"] is True
    assert "malformed TPDU" in tap.feed(b"\x03\x00\x00\x07\x02\x99\x00")[0]["error"]
    assert "exceeds" in tap.feed(H.dt(bytes(2000), tpdu_size=512))[0]["error"]
    assert tap.failed and tap.feed(H.cr()) == []
    broken = WireTap(1024)
    assert "framing" in broken.feed(b"\x04\x00\x00\x07abc")[0]["error"]


@pytest.fixture
def slow_upstream() -> object:
    """A port whose SYNs go unanswered: a listener with a full accept queue (backlog 0 and
    two connections it never accepts), so a connect to it hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(2):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    yield port
    for sock in (*fillers, listener):
        sock.close()


def test_an_upstream_that_never_connects_refuses_after_connect_timeout(
    slow_upstream: int,
) -> None:
    async def main() -> None:
        options = RelayOptions(connect_timeout=0.5, handshake_timeout=5.0)
        async with await start(("127.0.0.1", slow_upstream), options=options) as relay:
            started = asyncio.get_running_loop().time()
            with pytest.raises(ConnectRefused) as info:
                await client(relay.port)
            assert info.value.reason == RefuseReason.USER_NOT_ATTACHED
            assert asyncio.get_running_loop().time() - started < 3.0

    run(main())


def test_a_client_gone_while_the_upstream_connects_ends_the_session(slow_upstream: int) -> None:
    async def main() -> None:
        options = RelayOptions(connect_timeout=5.0)
        async with await start(("127.0.0.1", slow_upstream), options=options) as relay:
            reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
            raw = RawPeer(reader, writer, "initiator")
            writer.write(raw.rfc.connect())
            await raw.next()  # CC
            raw.send_tsdu(H.cn(CONFIG, user_data=b"hi"))
            async with asyncio.timeout(5):
                while relay.stats.relayed == 0:  # the CN was admitted: connecting upstream
                    await asyncio.sleep(0.01)
            writer.close()  # the client goes while the connect hangs
            async with asyncio.timeout(3):
                while relay.live:
                    await asyncio.sleep(0.01)
            assert relay.stats.ended["aborted"] == 1

    run(main())


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_over_max_handshakes_a_connection_waits_its_turn(loop: str) -> None:
    """One silent connection holds the only handshake slot: a session's connection waits,
    unread and not closed (what uvloop reads before the pause holds waits with it), and is
    relayed once the slot frees."""

    async def main() -> None:
        async with await upstream() as up:  # type: ignore[attr-defined]
            options = RelayOptions(max_handshakes=1, handshake_timeout=5.0)
            async with await start(("127.0.0.1", up.port), options=options) as relay:
                _, silent = await asyncio.open_connection("127.0.0.1", relay.port)
                async with asyncio.timeout(5):
                    while relay.handshakes == 0:
                        await asyncio.sleep(0.01)
                    later = asyncio.ensure_future(client(relay.port))
                    while not relay.waiting:
                        await asyncio.sleep(0.01)
                    assert not later.done()
                    silent.close()  # the slot frees
                    session = await later
                await session.send(b"ping")
                assert await session.receive() == b"ping"
                await session.release()
                assert relay.stats.rejected["handshake_limit"] == 0
                await silent.wait_closed()

    run(main(), loop=loop)


def test_over_max_handshakes_and_a_full_queue_one_more_is_closed_at_once() -> None:
    async def main() -> None:
        options = RelayOptions(max_handshakes=1, handshake_timeout=2.0)
        async with await start(("127.0.0.1", 9), options=options) as relay:
            held = [await asyncio.open_connection("127.0.0.1", relay.port)
                    for _ in range(1 + relay.max_waiting)]  # fmt: skip
            async with asyncio.timeout(5):
                while len(relay.waiting) < relay.max_waiting:
                    await asyncio.sleep(0.01)
            out = await H.attack(relay.port, H.cr(), timeout=2)
            assert out.closed and not out.connected and out.after is not None and out.after < 1
            assert relay.stats.rejected["handshake_limit"] == 1
            for _, writer in held:
                writer.close()

    run(main())


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_full_queue_looks_for_clients_that_left_before_it_refuses(loop: str) -> None:
    """The queue is full, then every queued client leaves (unnoticed: nothing is read from
    them).  A session's connection is not closed at once: the full queue looks first,
    drops the ones gone, and the session waits in their place and is relayed once the
    slot frees.  Before, it was refused until the gone ones' handshake timeouts passed."""

    async def main() -> None:
        async with await upstream() as up:  # type: ignore[attr-defined]
            options = RelayOptions(max_handshakes=1, handshake_timeout=10.0)
            async with await start(("127.0.0.1", up.port), options=options) as relay:
                held = [await asyncio.open_connection("127.0.0.1", relay.port)
                        for _ in range(1 + relay.max_waiting)]  # fmt: skip
                async with asyncio.timeout(5):
                    while len(relay.waiting) < relay.max_waiting:
                        await asyncio.sleep(0.01)
                for _, writer in held[1:]:  # the queued ones leave
                    writer.transport.abort()  # (a reset: gone at once)
                relay.sweep_interval = 0.0  # (look at once, not within the second)
                later = asyncio.ensure_future(client(relay.port))
                async with asyncio.timeout(5):
                    while len(relay.waiting) != 1:  # (the gone ones dropped, this one queued)
                        assert not later.done(), later
                        await asyncio.sleep(0.01)
                assert relay.stats.rejected["handshake_limit"] == 0
                held[0][1].close()  # the slot frees: the session's turn
                session = await asyncio.wait_for(later, 5)
                await session.send(b"ping")
                assert await session.receive() == b"ping"
                await session.release()
                assert relay.stats.rejected["handshake_limit"] == 0
                for _, writer in held:
                    writer.close()

    run(main(), loop=loop)


def test_a_denied_selector_gets_rf_0x81_and_no_upstream() -> None:
    async def main() -> None:
        async with await upstream() as up:  # type: ignore[attr-defined]
            policy = Policy.from_rules([Rule.parse("allow", "called=0009")])
            async with await start(("127.0.0.1", up.port), policy=policy) as relay:
                with pytest.raises(ConnectRefused) as info:
                    await client(relay.port)  # no called selector at all
                assert info.value.reason == RefuseReason.SSEL_UNKNOWN
                assert relay.stats.refused["SSEL_UNKNOWN"] == 1 and relay.stats.relayed == 0

    run(main())


def test_a_bug_of_ours_ends_that_session_only(caplog: pytest.LogCaptureFixture) -> None:
    """An ``on_spdu`` callback that raises (standing for any bug in a callback): that
    session's connections are dropped, one ERROR line, and the relay serves the next."""
    calls = {"n": 0}

    def flaky(record: dict[str, object]) -> None:
        calls["n"] += 1
        if record.get("spdu") == "DT" and calls.get("failed") is None:
            calls["failed"] = 1
            raise RuntimeError("a bug in a callback")

    async def main() -> None:
        async with await upstream() as up:  # type: ignore[attr-defined]
            async with await start(("127.0.0.1", up.port), on_spdu=flaky) as relay:
                session = await client(relay.port)
                await session.send(b"boom")
                with pytest.raises((SessionAborted, sessionlayer.SessionClosed)):
                    await asyncio.wait_for(session.receive(), 5)
                async with await client(relay.port) as again:
                    await again.send(b"fine")
                    assert await asyncio.wait_for(again.receive(), 5) == b"fine"

    with caplog.at_level("ERROR", logger="sessionlayer.relay"):
        run(main())
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "internal error" in errors[0].getMessage()


def test_sessions_show_an_upstream_still_connecting(slow_upstream: int) -> None:
    async def main() -> None:
        options = RelayOptions(connect_timeout=5.0)
        async with await start(("127.0.0.1", slow_upstream), options=options) as relay:
            reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
            raw = RawPeer(reader, writer, "initiator")
            writer.write(raw.rfc.connect())
            await raw.next()
            raw.send_tsdu(H.cn(CONFIG, user_data=b"hi"))
            async with asyncio.timeout(5):
                while relay.stats.relayed == 0:
                    await asyncio.sleep(0.01)
            (info,) = relay.sessions
            assert info.phase == "connecting" and info.upstream is not None
            assert info.upstream.state == "connecting" and info.client.state == "STA08"
            assert info.to_dict()["upstream"]["peer"] is None
            writer.close()

    run(main())


def test_between_sessionlayer_peers_the_relay_says_its_own_size_limit() -> None:
    """The hello and the welcome say the largest TSDU each end takes; the relay passes
    them on with its own ``max_size`` where that is less, so neither end sends what the
    relay would abort for: a message over it is a ParameterError, unsent, and the session
    goes on (both ways)."""

    small = 1 << 16

    async def echo_but_too_large_first(session: sessionlayer.Session) -> None:
        async for data in session:
            try:
                await session.send(b"z" * (small - 3))
            except ParameterError:
                await session.send(data)

    async def main() -> None:
        async with await sessionlayer.serve(echo_but_too_large_first,
                                            options=PLAIN) as up:  # fmt: skip
            options = RelayOptions(max_size=small)
            async with await start(("127.0.0.1", up.port), options=options) as relay:
                session = await sessionlayer.connect("127.0.0.1", relay.port, options=PLAIN)
                async with session:
                    with pytest.raises(ParameterError):
                        await session.send(b"x" * (small - 3))
                    await session.send(b"y" * (small - 4))  # the largest it takes
                    assert await session.receive() == b"y" * (small - 4)  # (not the z's)
                assert relay.stats.ended["released"] == 1

    run(main())


def test_the_wire_log_reads_a_connect_larger_than_max_size() -> None:
    """The legs take a connect SPDU up to CONNECT_TSDU_MAX whatever ``max_size`` says; the
    wire log's decoder did not: a 1,000-octet CN behind max_size=200 was relayed, but the
    log said "exceeds the maximum 200" and showed nothing more of that leg.  (Here a
    CN of 200 octets of user data behind max_size=64.)"""
    log: list[dict[str, object]] = []

    async def main() -> None:
        async with await upstream() as up:  # type: ignore[attr-defined]
            options = RelayOptions(max_size=64)
            async with await start(("127.0.0.1", up.port), options=options,
                                   on_spdu=log.append) as relay:  # fmt: skip
                session = await sessionlayer.connect(
                    "127.0.0.1", relay.port, user_data=b"u" * 200, config=CONFIG,
                    options=PLAIN)  # fmt: skip
                await session.send(b"after")
                assert await asyncio.wait_for(session.receive(), 5) == b"after"
                await session.release()

    run(main())
    assert not [r for r in log if "error" in r], [r for r in log if "error" in r]
    spdus = [r.get("spdu") for r in log]
    assert spdus.count("CN") == 2 and "DT" in spdus, spdus  # (both legs' CN, then data)
