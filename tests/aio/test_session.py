"""Sessions over real TCP (and TLS) on loopback."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trustme

import sessionlayer
from sessionlayer import ConnectRefused, FunctionalUnit, Options, SessionAborted
from sessionlayer.errors import AbortReason, RefuseReason
from sessionlayer.machine import DEFAULT_FUNCTIONAL_UNITS
from sessionlayer.machine import events as ev


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))  # type: ignore[arg-type]


async def echo(session: sessionlayer.Session) -> None:
    async for data in session:
        await session.send(data)


def test_echo_release_and_ids() -> None:
    async def main() -> None:
        seen: list[str] = []

        async def handler(session: sessionlayer.Session) -> None:
            seen.append(session.id)
            await echo(session)

        async with await sessionlayer.serve(handler, "127.0.0.1", 0) as server:
            session = await sessionlayer.connect("127.0.0.1", server.port)
            async with session:
                await session.send(b"hello")
                assert await session.receive() == b"hello"
                (info,) = server.sessions
                assert info.id == session.id
                assert info.messages_in == 1 and info.bytes_in > 0
            assert session.closed and session.state == "released"
            assert seen == [session.id]
            assert len(session.id) == 32

    run(main())


def test_many_messages_in_order() -> None:
    async def main() -> None:
        async with await sessionlayer.serve(echo) as server:
            async with await sessionlayer.connect("127.0.0.1", server.port) as session:
                for i in range(200):
                    await session.send(i.to_bytes(4, "big") * (i % 50 + 1))
                for i in range(200):
                    assert await session.receive() == i.to_bytes(4, "big") * (i % 50 + 1)

    run(main())


@pytest.mark.parametrize("tpdu_size", [8192, 65408])
def test_bursts_of_small_and_large_messages_keep_their_order(tpdu_size: int) -> None:
    """Frames held back to share a write (past the 64 KiB flush too) and TSDUs of several
    TPDUs, whole in one read or cut across reads, all arrive in order."""
    sizes = [0, 1, 64, 70_000, 3, 65_536, 9000, *([100] * 1500), 200_000, 5]
    options = Options(tpdu_size=tpdu_size, max_buffered_bytes=1 << 22, max_tsdu_size=1 << 22)

    async def main() -> None:
        async with await sessionlayer.serve(echo, options=options) as server:
            session = await sessionlayer.connect("127.0.0.1", server.port, options=options)
            async with session:
                for i, size in enumerate(sizes):
                    await session.send(bytes([i % 251]) * size)
                for i, size in enumerate(sizes):
                    assert await session.receive() == bytes([i % 251]) * size

    run(main())


def test_a_send_while_not_receiving_still_goes_out() -> None:
    """A message written after an earlier one went straight out is held for the end of the
    loop iteration; it must go out even when this side never waits for data."""

    async def main() -> None:
        got: asyncio.Queue[bytes] = asyncio.Queue()

        async def handler(session: sessionlayer.Session) -> None:
            async for data in session:
                got.put_nowait(data)

        quiet = Options(keepalive_interval=None, idle_timeout=None)  # no other writes
        async with await sessionlayer.serve(handler, options=quiet) as server:
            session = await sessionlayer.connect("127.0.0.1", server.port, options=quiet)
            async with session:
                for data in (b"first", b"second", b"third"):
                    await session.send(data)
                    assert await asyncio.wait_for(got.get(), 5) == data

    run(main())


def test_negotiation_picks_common_codec_in_initiator_order() -> None:
    async def main() -> None:
        chosen: list[dict[str, str]] = []

        async def handler(session: sessionlayer.Session) -> None:
            chosen.append(session.chosen)

        async with await sessionlayer.serve(
            handler, supported={"codec": ["msgpack", "json"]}
        ) as server:
            session = await sessionlayer.connect(
                "127.0.0.1", server.port, offers={"codec": ["cbor", "json", "msgpack"]}
            )
            assert session.chosen == {"codec": "json"}
            await session.release()
        assert chosen == [{"codec": "json"}]

    run(main())


def test_no_common_codec_is_refused_with_reason() -> None:
    async def main() -> None:
        async with await sessionlayer.serve(echo, supported={"codec": ["json"]}) as server:
            with pytest.raises(ConnectRefused) as info:
                await sessionlayer.connect("127.0.0.1", server.port, offers={"codec": ["xml"]})
            assert info.value.reason == RefuseReason.USER_DATA
            assert "no common codec" in str(info.value)
            assert server.sessions == []

    run(main())


def check_password(request: sessionlayer.ConnectRequest) -> bool:
    import hmac

    creds = request.credentials or {}
    return hmac.compare_digest(creds.get("password", "").encode(), b"s3cret")


def test_authentication_accepts_and_refuses() -> None:
    async def main() -> None:
        async with await sessionlayer.serve(echo, authenticate=check_password) as server:
            good = await sessionlayer.connect(
                "127.0.0.1", server.port, credentials={"user": "a", "password": "s3cret"}
            )
            await good.release()
            with pytest.raises(ConnectRefused) as info:
                await sessionlayer.connect(
                    "127.0.0.1", server.port, credentials={"user": "a", "password": "nope"}
                )
            assert "authentication failed" in str(info.value)
            assert server.sessions == []

    run(main())


def test_async_authenticate_can_refuse_with_its_own_reason() -> None:
    async def deny(request: sessionlayer.ConnectRequest) -> None:
        await asyncio.sleep(0)
        raise sessionlayer.Refuse("account locked")

    async def main() -> None:
        async with await sessionlayer.serve(echo, authenticate=deny) as server:
            with pytest.raises(ConnectRefused, match="account locked") as info:
                await sessionlayer.connect("127.0.0.1", server.port)
            # .message is the responder's own text; str() says what kind of refusal too
            assert info.value.message == "account locked"
            assert str(info.value) == "session refused (user data): account locked"
            assert info.value.reason == sessionlayer.RefuseReason.USER_DATA

    run(main())


def test_user_abort_reaches_the_peer() -> None:
    async def main() -> None:
        outcome: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

        async def handler(session: sessionlayer.Session) -> None:
            try:
                await session.receive()
            except SessionAborted as exc:
                outcome.set_result(exc)

        async with await sessionlayer.serve(handler) as server:
            session = await sessionlayer.connect("127.0.0.1", server.port)
            session.abort()
            exc = await outcome
            assert isinstance(exc, SessionAborted) and exc.by_peer

    run(main())


def test_max_sessions_refuses_with_congestion() -> None:
    async def main() -> None:
        gate = asyncio.Event()

        async def hold(session: sessionlayer.Session) -> None:
            await gate.wait()

        async with await sessionlayer.serve(hold, max_sessions=2) as server:
            a = await sessionlayer.connect("127.0.0.1", server.port)
            b = await sessionlayer.connect("127.0.0.1", server.port)
            with pytest.raises(ConnectRefused) as info:
                await sessionlayer.connect("127.0.0.1", server.port)
            assert info.value.reason == RefuseReason.SPM_CONGESTION
            gate.set()
            for s in (a, b):
                await s.wait_closed()

    run(main())


@pytest.fixture(scope="module")
def tls_pair() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server)
    ca.configure_trust(server)
    server.verify_mode = ssl.CERT_REQUIRED
    client = ssl.create_default_context()
    ca.configure_trust(client)
    ca.issue_cert("client.example").configure_cert(client)
    return server, client


def test_mutual_tls(tls_pair: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, client_ctx = tls_pair

    async def main() -> None:
        certs: list[Any] = []

        def who(request: sessionlayer.ConnectRequest) -> bool:
            certs.append(request.tls)
            return True

        async with await sessionlayer.serve(echo, tls=server_ctx, authenticate=who) as server:
            async with await sessionlayer.connect(
                "127.0.0.1", server.port, tls=client_ctx, server_hostname="localhost"
            ) as session:
                await session.send(b"over tls")
                assert await session.receive() == b"over tls"
        subject = dict(x[0] for x in certs[0]["subject"])
        assert "client.example" in str(certs[0]) or subject

    run(main())


def test_tls_client_without_trust_fails(tls_pair: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, _ = tls_pair

    async def main() -> None:
        async with await sessionlayer.serve(echo, tls=server_ctx) as server:
            with pytest.raises(ssl.SSLError):
                await sessionlayer.connect(
                    "127.0.0.1", server.port, tls=ssl.create_default_context(),
                    server_hostname="localhost",
                )

    run(main())


def test_sync_points_are_confirmed() -> None:
    async def main() -> None:
        config = sessionlayer.SessionConfig(
            functional_units=sessionlayer.FunctionalUnit.DUPLEX
            | sessionlayer.FunctionalUnit.MINOR_SYNC
            | sessionlayer.FunctionalUnit.MAJOR_SYNC
        )
        async with await sessionlayer.serve(echo, config=config) as server:
            async with await sessionlayer.connect(
                "127.0.0.1", server.port, config=config
            ) as session:
                await session.send(b"a")
                first = await session.sync(major=True)
                second = await session.sync()
                assert second == first + 1
                assert await session.receive() == b"a"

    run(main())


def test_idle_timeout_detects_a_silent_peer() -> None:
    """A peer that completes the handshake and then says nothing, and reads nothing."""

    async def main() -> None:
        stalled = asyncio.Event()

        async def silent(session: sessionlayer.Session) -> None:
            session._conn.agent.keepalive = False  # never answer probes
            transport = session._conn.transport
            assert transport is not None
            transport.pause_reading()
            stalled.set()
            await asyncio.Event().wait()

        # (resume=False: a resumable session would reconnect instead, see tests/recovery)
        opts = Options(keepalive_interval=0.2, idle_timeout=0.6, resume=False)
        async with await sessionlayer.serve(silent) as server:
            session = await sessionlayer.connect("127.0.0.1", server.port, options=opts)
            await stalled.wait()
            with pytest.raises(SessionAborted) as info:
                await session.receive()
            assert "idle timeout" in str(info.value)
            assert info.value.reason & AbortReason.NO_REASON

    run(main())


def test_keepalive_keeps_a_quiet_session_alive() -> None:
    async def main() -> None:
        opts = Options(keepalive_interval=0.1, idle_timeout=0.5)

        async def quiet(session: sessionlayer.Session) -> None:
            await asyncio.sleep(1.2)
            await session.send(b"still here")

        async with await sessionlayer.serve(quiet, options=opts) as server:
            async with await sessionlayer.connect(
                "127.0.0.1", server.port, options=opts
            ) as session:
                assert await session.receive() == b"still here"

    run(main())


def test_backpressure_with_a_non_reading_peer() -> None:
    async def main() -> None:
        started = asyncio.Event()
        release = asyncio.Event()

        async def lazy(session: sessionlayer.Session) -> None:
            started.set()
            await release.wait()
            async for _ in session:
                pass

        limit = 64 * 1024
        server_opts = Options(max_buffered_bytes=limit)
        client_opts = Options(write_buffer_high=limit)
        async with await sessionlayer.serve(lazy, options=server_opts) as server:
            session = await sessionlayer.connect("127.0.0.1", server.port, options=client_opts)
            await started.wait()
            chunk = b"x" * 4096
            sent = 0
            blocked = False
            for _ in range(2000):
                try:
                    await asyncio.wait_for(session.send(chunk), 0.5)
                except TimeoutError:
                    blocked = True
                    break
                sent += len(chunk)
            assert blocked, "send never waited: no backpressure"
            (info,) = server.sessions
            assert info.bytes_in < 8 * 1024 * 1024
            release.set()
            session.abort()

    run(main())


def test_send_expedited_takes_octets_only_and_waits_for_the_write_buffer() -> None:
    """An int is no message (bytes(5) would be five zero octets), a bytearray is; and while
    the transport is above its high-water mark send_expedited() waits, as send() does (a
    flood toward a peer that stopped reading queued without limit)."""
    config = sessionlayer.SessionConfig(
        functional_units=DEFAULT_FUNCTIONAL_UNITS | FunctionalUnit.EXPEDITED)

    async def main() -> None:
        got: asyncio.Queue[bytes] = asyncio.Queue()

        async def handler(session: sessionlayer.Session) -> None:
            async for event in session.events():
                if isinstance(event, ev.ExpeditedDataIndication):
                    got.put_nowait(bytes(event.data))

        options = Options(resume=False)
        async with await sessionlayer.serve(handler, config=config, options=options) as server:
            session = await sessionlayer.connect("127.0.0.1", server.port, config=config,
                                                 options=options)  # fmt: skip
            for message in (5, "text"):
                with pytest.raises(TypeError, match="a message is bytes"):
                    await session.send_expedited(message)  # type: ignore[arg-type]
            await session.send_expedited(bytearray(b"ok"))
            assert await asyncio.wait_for(got.get(), 10) == b"ok"
            conn = session._conn
            conn.pause_writing()  # (what the transport says above write_buffer_high)
            sending = asyncio.ensure_future(session.send_expedited(b"later"))
            assert await asyncio.wait_for(got.get(), 10) == b"later"  # written, ...
            assert not sending.done()  # ... and it waits for the buffer to drain
            conn.resume_writing()
            await asyncio.wait_for(sending, 10)
            await session.release()

    run(main())


def test_one_bad_peer_does_not_disturb_others() -> None:
    async def main() -> None:
        async with await sessionlayer.serve(echo) as server:
            good = await sessionlayer.connect("127.0.0.1", server.port)
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"\x03\x00\x00\x07\x02\xf0\x80" + b"garbage not a tpkt")
            await writer.drain()
            assert await reader.read() == b""  # the server dropped that connection
            writer.close()
            await good.send(b"fine")
            assert await good.receive() == b"fine"
            await good.release()

    run(main())


Handler = Callable[[sessionlayer.Session], Awaitable[None]]


def test_readers_waiting_when_the_session_ends() -> None:
    """A reader waiting in ``async for`` ends at the peer's release, one in receive() gets
    SessionClosed; after an abort both get SessionAborted."""

    async def main() -> None:
        ended: asyncio.Future[list[bytes]] = asyncio.get_running_loop().create_future()

        async def handler(session: sessionlayer.Session) -> None:
            ended.set_result([data async for data in session])

        async with await sessionlayer.serve(handler) as server:
            session = await sessionlayer.connect("127.0.0.1", server.port)
            await session.send(b"one")
            waiting = asyncio.ensure_future(session.receive())
            await session.release()
            assert await ended == [b"one"]
            with pytest.raises(sessionlayer.SessionClosed):
                await waiting

            session = await sessionlayer.connect("127.0.0.1", server.port)
            iterating = anext(aiter(session))  # nothing buffered: this waits at once
            session.abort()
            with pytest.raises(SessionAborted):
                await iterating

    run(main())


def test_data_for_a_cancelled_reader_is_kept() -> None:
    async def main() -> None:
        async with await sessionlayer.serve(echo) as server:
            async with await sessionlayer.connect("127.0.0.1", server.port) as session:
                # A task cancelled while it waits: its future is cancelled, then the
                # coroutine is closed (what Task.cancel() does, without a loop turn).
                reader = session.receive()
                waiter = reader.send(None)
                waiter.cancel()
                reader.close()
                await session.send(b"kept")
                assert await session.receive() == b"kept"

    run(main())


def test_data_handed_to_a_reader_cancelled_before_it_ran_is_kept() -> None:
    """The message reached the reader's future, then its task was cancelled before it
    ran (a timeout, a TaskGroup): the message is not lost, the next receive() gets it."""

    async def main() -> None:
        async with await sessionlayer.serve(echo) as server:
            async with await sessionlayer.connect("127.0.0.1", server.port) as session:
                reader = asyncio.ensure_future(session.receive())
                await asyncio.sleep(0)  # (it waits on the data future)
                await session.send(b"kept")
                async with asyncio.timeout(10):
                    while session.messages_in == 0:  # (the echo has come: future resolved)
                        await asyncio.sleep(0)
                assert not reader.done()
                reader.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await reader
                assert await asyncio.wait_for(session.receive(), 10) == b"kept"

    run(main())


def test_a_second_reader_at_once_is_an_error_not_a_hang() -> None:
    async def main() -> None:
        async with await sessionlayer.serve(echo) as server:
            async with await sessionlayer.connect("127.0.0.1", server.port) as session:
                first = asyncio.ensure_future(session.receive())
                await asyncio.sleep(0)
                with pytest.raises(RuntimeError, match="another task is already waiting"):
                    await session.receive()
                with pytest.raises(RuntimeError):
                    await anext(aiter(session))
                await session.send(b"to the first")
                assert await asyncio.wait_for(first, 10) == b"to the first"

    run(main())


def test_a_resync_ends_the_syncs_it_purged() -> None:
    """A sync() whose point a resynchronization purged raises SyncPurged (it waited for
    ever, and the next sync() got its confirm); later ones get their own."""

    async def main() -> None:
        async with await sessionlayer.serve(echo) as server:
            async with await sessionlayer.connect("127.0.0.1", server.port) as session:
                purged = asyncio.ensure_future(session.sync())
                await asyncio.sleep(0)  # (the MIP is out)
                serial = await asyncio.wait_for(session.resync(), 10)
                with pytest.raises(sessionlayer.SyncPurged):
                    await asyncio.wait_for(purged, 10)
                assert await asyncio.wait_for(session.sync(), 10) == serial
                assert await asyncio.wait_for(session.sync(), 10) == serial + 1

    run(main())


def test_abort_with_user_data_it_cannot_send_raises_and_aborts_nothing() -> None:
    async def main() -> None:
        async with await sessionlayer.serve(echo) as server:
            session = await sessionlayer.connect("127.0.0.1", server.port)
            for bad in ("text", 5, b"x" * 100_000):
                with pytest.raises(sessionlayer.LocalError):
                    session.abort(bad)  # type: ignore[arg-type]
            assert not session.closed
            await session.send(b"still open")
            assert await asyncio.wait_for(session.receive(), 10) == b"still open"
            session.abort(b"bye")
            assert session.closed

    run(main())


def test_arguments_of_the_wrong_kind_are_refused_before_any_socket() -> None:
    """A TypeError (ValueError for a port) at the call: nothing opened, nothing left to
    leak, the server sees no connection."""

    async def main() -> None:
        async with await sessionlayer.serve(echo) as server:
            port = server.port
            for kwargs in ({"offers": ["a"]}, {"offers": {"codec": "json"}},
                           {"credentials": "abc"}, {"options": {}}, {"config": {}},
                           {"data": "hello"}, {"calling_tsel": "01"}):  # fmt: skip
                with pytest.raises(TypeError):
                    await sessionlayer.connect("127.0.0.1", port, **kwargs)
            for bad_port in (-1, 0, 70000, "102"):
                with pytest.raises(ValueError, match="port"):
                    await sessionlayer.connect("127.0.0.1", bad_port)  # type: ignore[arg-type]
            assert server.handshakes == 0 and server.stats.accepted == 0
            for bad in ({"handler": None}, {"handler": "h"}, {"max_handshakes": 0},
                        {"max_sessions": -1}, {"options": {}}):  # fmt: skip
                args = {"handler": echo, **bad}
                with pytest.raises((TypeError, ValueError)):
                    await sessionlayer.serve(args.pop("handler"), **args)
            session = await sessionlayer.connect("127.0.0.1", port)
            for message in (5, "text", [1, 2]):
                with pytest.raises(TypeError, match="a message is bytes"):
                    await session.send(message)  # type: ignore[arg-type]
            await session.send(bytearray(b"ok"))
            assert await asyncio.wait_for(session.receive(), 10) == b"ok"
            await session.release()

    run(main())


def test_a_handler_that_is_not_async_ends_its_session_with_an_abort() -> None:
    def not_async(session: sessionlayer.Session) -> None:
        pass

    async def main() -> None:
        async with await sessionlayer.serve(not_async) as server:  # type: ignore[arg-type]
            session = await sessionlayer.connect("127.0.0.1", server.port)
            with pytest.raises(SessionAborted, match="aborted by the peer"):
                await asyncio.wait_for(session.receive(), 10)
            assert server.stats.ended == {"aborted": 1} and server.sessions == []

    run(main())


@pytest.mark.parametrize("answer", ["raises", "a str", "too long"])
def test_a_callback_that_fails_ends_its_session_with_an_abort(answer: str) -> None:
    """``on_release`` that raises or answers what cannot be sent: an AB (the peer is told
    the session was aborted, not that TCP vanished) and the reason on this side."""
    ended: list[BaseException] = []

    def on_release(event: Any) -> Any:
        if answer == "raises":
            raise ValueError("the application's mistake")
        return "yes" if answer == "a str" else b"x" * 70_000

    async def handler(session: sessionlayer.Session) -> None:
        session.on_release = on_release
        try:
            async for _ in session:
                pass
        except SessionAborted as exc:
            ended.append(exc)

    async def main() -> None:
        async with await sessionlayer.serve(handler) as server:
            session = await sessionlayer.connect("127.0.0.1", server.port)
            with pytest.raises(SessionAborted, match="aborted by the peer"):
                await asyncio.wait_for(session.release(), 10)
        assert ended and "on_release failed" in str(ended[0])

    run(main())


def test_close_ends_connections_in_handshake_and_waits_for_them() -> None:
    async def main() -> None:
        server = await sessionlayer.serve(echo)
        port = server.port
        reader, writer = await asyncio.open_connection("127.0.0.1", port)  # (no CR)
        async with asyncio.timeout(10):
            while server.handshakes == 0:
                await asyncio.sleep(0)
        server.close()
        await asyncio.wait_for(server.wait_closed(), 10)
        assert await asyncio.wait_for(reader.read(), 10) == b""  # dropped
        assert server.port == port  # (still known once closed)
        writer.close()
        await writer.wait_closed()

    run(main())


def test_tls_toward_a_plain_server_says_so(tls_pair: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    _, client_ctx = tls_pair

    async def main() -> None:
        async with await sessionlayer.serve(echo) as server:
            with pytest.raises(ConnectionResetError, match="does the server use TLS"):
                await sessionlayer.connect("127.0.0.1", server.port, tls=client_ctx,
                                           server_hostname="localhost")  # fmt: skip

    run(main())


def test_a_resync_that_crosses_the_peers_major_sync_ack_goes_through() -> None:
    """sync(major=True), then resync() at once: the peer answered the MAP first (its MAA,
    and PR-MAA, cross our RS): it takes the restart to the V(R) of before, this side
    discards the MAA and its PREPARE; the major sync raises SyncPurged and the session
    goes on (both sides aborted each other for a protocol error)."""

    async def main() -> None:
        async with await sessionlayer.serve(echo) as server:
            async with await sessionlayer.connect("127.0.0.1", server.port) as session:
                major = asyncio.ensure_future(session.sync(major=True))
                await asyncio.sleep(0)  # (the MAP is out)
                serial = await asyncio.wait_for(session.resync(), 10)
                with pytest.raises(sessionlayer.SyncPurged):
                    await asyncio.wait_for(major, 10)
                await session.send(b"after")
                assert await asyncio.wait_for(session.receive(), 10) == b"after"
                assert await asyncio.wait_for(session.sync(major=True), 10) == serial

    run(main())


def test_a_clear_connect_to_a_tls_server_says_it_may_expect_tls(
    tls_pair: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    """The server reads a clear CR as a broken TLS hello and closes: the client's error
    says what most often causes that (and, with TLS, what a mutual TLS server wants)."""
    server_ctx, _ = tls_pair
    no_cert = ssl.create_default_context()
    no_cert.check_hostname, no_cert.verify_mode = False, ssl.CERT_NONE

    async def main() -> None:
        async with await sessionlayer.serve(echo, tls=server_ctx) as server:
            with pytest.raises(SessionAborted, match=r"COTP CR \(does it expect TLS\?\)"):
                await sessionlayer.connect("127.0.0.1", server.port)
            with pytest.raises((SessionAborted, ssl.SSLError)) as info:
                await sessionlayer.connect("127.0.0.1", server.port, tls=no_cert)
            if isinstance(info.value, SessionAborted):  # (TLS 1.3: the alert comes later)
                assert "client certificate" in str(info.value), info.value

    run(main())


#: Symmetric synchronize (a resumable session) with activity management.
IN_ACTIVITIES = sessionlayer.SessionConfig(
    functional_units=sessionlayer.FunctionalUnit.DUPLEX | sessionlayer.FunctionalUnit.ACTIVITY
    | sessionlayer.FunctionalUnit.SYMMETRIC_SYNC | sessionlayer.FunctionalUnit.MAJOR_SYNC)


async def _crossed(on_checkpoint: Any = None, *, end: bool = False) -> tuple[Any, int, Any, Any]:
    """A resumable session (symmetric synchronize) whose client sets a confirmed minor sync
    point just as the server sets a checkpoint (``end``: ends the activity the client
    started), neither having read the other's: the client reads nothing until its MIP is
    out, so the server gets the MIP in STA04A (STA04B).  Returns the client's sync()
    outcome, its point's serial, the server's request (a future of its serial), and (the
    server, the client's session, the server's session)."""
    ready, go = asyncio.Event(), asyncio.Event()
    served: list[sessionlayer.Session] = []
    major: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def handler(session: sessionlayer.Session) -> None:
        served.append(session)
        if end:
            async for event in session.events():
                if isinstance(event, sessionlayer.machine.ActivityStartIndication):
                    break
        await session.sync(major=True)  # (fetches the major/activity token)
        ready.set()
        await go.wait()
        task = asyncio.ensure_future(
            session.end_activity(b"done") if end else session.sync(major=True, user_data=b"cp"))
        while session.machine.state not in ("STA04A", "STA04B"):  # (the MAP or AE is out)
            await asyncio.sleep(0)
        ready.set()
        major.set_result(await task)
        await echo(session)

    config = IN_ACTIVITIES if end else None
    server = await sessionlayer.serve(handler, config=config)
    session = await sessionlayer.connect("127.0.0.1", server.port, config=config)
    session.on_checkpoint = on_checkpoint
    if end:
        await session.start_activity(b"a1")
    await asyncio.wait_for(ready.wait(), 10)
    ready.clear()
    transport = session._conn.transport
    assert transport is not None and session.machine.symmetric_sync
    transport.pause_reading()
    go.set()
    await asyncio.wait_for(ready.wait(), 10)
    point = session.machine.vms  # (the serial its MIP gets: its own sending flow)
    minor = asyncio.ensure_future(session.sync(user_data=b"mine"))
    while session.machine.vms == point:  # (until the MIP is out; the MAP is not read)
        await asyncio.sleep(0)
    transport.resume_reading()
    outcome: Any
    try:
        outcome = await asyncio.wait_for(minor, 10)
    except Exception as exc:  # (what the test looks at)
        outcome = exc
    return outcome, point, major, (server, session, served[0])


def test_a_minor_sync_crossed_by_the_peers_major_sync_raises_sync_superseded() -> None:
    """The server's MAP supersedes the client's confirmed MIP (X.225 Table A-4): no MIA
    comes, and sync() raises SyncSuperseded at once (it waited for ever; the next sync()
    then got nothing either, its confirm taken by the first).  Both sides count the point
    answered (the counts a resume exchanges agree), and the session goes on."""

    async def main() -> None:
        outcome, point, major, (server, session, served) = await _crossed()
        async with server, session:
            assert isinstance(outcome, sessionlayer.SyncSuperseded), outcome
            serial = await asyncio.wait_for(major, 10)
            assert (outcome.major, outcome.activity_end) == (serial, False)
            assert outcome.serial == point
            assert await asyncio.wait_for(session.sync(), 10) == outcome.serial + 1
            await session.send(b"after")
            assert await asyncio.wait_for(session.receive(), 10) == b"after"
            mine, theirs = session._conn.journal, served._conn.journal
            assert mine is not None and theirs is not None
            assert mine.requests is not None and theirs.requests is not None
            assert not mine.requests.asked
            assert mine.requests.confirmed == theirs.requests.answered

    run(main())


def test_a_minor_sync_crossed_by_a_checkpoint_the_application_answers_ends_first() -> None:
    """on_checkpoint answers the server's checkpoint itself (its MAA waits for it): the
    client's superseded sync() raises while on_checkpoint still works, and the checkpoint
    is confirmed once it returns."""

    async def main() -> None:
        release = asyncio.Event()
        seen: list[int] = []

        async def on_checkpoint(checkpoint: sessionlayer.Checkpoint) -> None:
            seen.append(checkpoint.serial)
            if checkpoint.user_data == b"cp":  # (the one that crosses the client's point)
                await release.wait()

        outcome, point, major, (server, session, _) = await _crossed(on_checkpoint)
        async with server, session:
            assert isinstance(outcome, sessionlayer.SyncSuperseded), outcome
            assert not major.done() and session.machine.state == "STA10A"
            release.set()
            serial = await asyncio.wait_for(major, 10)
            assert seen == [serial - 1, serial] and outcome.major == serial
            assert outcome.serial == point
            assert await asyncio.wait_for(session.sync(), 10) == outcome.serial + 1

    run(main())


def test_a_minor_sync_crossed_by_the_peers_activity_end_raises_sync_superseded() -> None:
    async def main() -> None:
        outcome, point, end, (server, session, _) = await _crossed(end=True)
        async with server, session:
            assert isinstance(outcome, sessionlayer.SyncSuperseded), outcome
            serial = await asyncio.wait_for(end, 10)
            assert (outcome.serial, outcome.major, outcome.activity_end) == (point, serial, True)
            assert not session.machine.activity_in_progress
            await session.start_activity(b"a2")  # the session goes on
            assert await asyncio.wait_for(session.sync(), 10) == 1  # (a new activity: 1)
            await asyncio.wait_for(session.end_activity(), 10)

    run(main())


def test_an_on_checkpoint_still_running_when_the_session_ends_is_cancelled() -> None:
    """The client aborts while the server's on_checkpoint still makes its checkpoint
    durable: that task is the session's, and is cancelled with it (it was left pending
    after server.wait_closed())."""

    async def main() -> None:
        entered = asyncio.Event()
        cancelled = asyncio.Event()

        async def on_checkpoint(checkpoint: sessionlayer.Checkpoint) -> None:
            entered.set()
            try:
                await asyncio.Event().wait()  # (a write to storage that hangs)
            except asyncio.CancelledError:
                cancelled.set()
                raise

        async def handler(session: sessionlayer.Session) -> None:
            session.on_checkpoint = on_checkpoint
            async for _ in session:
                pass

        async with await sessionlayer.serve(handler) as server:
            session = await sessionlayer.connect("127.0.0.1", server.port)
            sync = asyncio.ensure_future(session.sync(major=True))
            await asyncio.wait_for(entered.wait(), 10)
            session.abort()
            with pytest.raises(SessionAborted):
                await sync
        await asyncio.wait_for(cancelled.wait(), 10)  # (server.wait_closed() returned)

    run(main())
