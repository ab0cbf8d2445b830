"""Timeouts and limits over real TCP on loopback, against misbehaving raw-socket peers.

The peers here speak RFC 1006 and X.225 through the sans-I/O cores
(``Rfc1006Connection``, ``SessionMachine``) and then stop doing their part: they never
accept, never answer the CR, the CN or the FN, send a TSDU that is too big, or send an
SPDU that is not one.  Nothing sleeps: each test waits for the error, the bytes or the
end of the connection it expects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections.abc import Awaitable
from typing import Any

import pytest
import trustme
from tests.rawpeer import RawPeer, accept_session, raw_server
from tests.tools import loop_factory

import sessionlayer
from sessionlayer import FunctionalUnit, Options, SessionAborted, SessionConfig
from sessionlayer.errors import AbortReason
from sessionlayer.machine import DEFAULT_FUNCTIONAL_UNITS
from sessionlayer.spdu import decode_tsdu
from sessionlayer.spdu.types import Abort, ActivityDiscard, Finish
from sessionlayer.transport import ConnectRequested

LIMIT = 4.0  # every wait in this file is bounded well under the 10 s a test may take


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 9))  # type: ignore[arg-type]


async def echo(session: sessionlayer.Session) -> None:
    async for data in session:
        await session.send(data)


# ---------------------------------------------------------------- connect and handshake


def test_connect_to_a_backlog_nobody_accepts_times_out() -> None:
    """A listening socket that never calls accept(): the kernel completes the TCP
    handshake for the first connection (its CR then goes unanswered: handshake timeout)
    and drops the SYNs of the next ones once the backlog is full (connect timeout)."""

    async def main() -> None:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        opts = Options(connect_timeout=0.3, handshake_timeout=0.3)
        try:
            for _ in range(3):
                started = time.monotonic()
                with pytest.raises(TimeoutError):
                    await sessionlayer.connect("127.0.0.1", port, options=opts)
                assert time.monotonic() - started < 0.3 + 1.0
        finally:
            listener.close()

    run(main())


def test_server_that_never_answers_the_cr() -> None:
    async def main() -> None:
        gone: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

        async def mute(raw: RawPeer) -> None:
            assert isinstance(await raw.next(), ConnectRequested)  # and never a CC
            gone.set_result(await raw.closed())

        async with raw_server(mute) as port:
            opts = Options(connect_timeout=LIMIT, handshake_timeout=0.3)
            started = time.monotonic()
            # (which limit ran out, in words: a CLI says "cannot reach ...: " and this)
            with pytest.raises(TimeoutError, match=r"^no answer to the connect request within"
                               r" handshake_timeout \(0\.3 s\)"):  # fmt: skip
                await sessionlayer.connect("127.0.0.1", port, options=opts)
            assert 0.3 <= time.monotonic() - started < 0.3 + 1.0
            assert await asyncio.wait_for(gone, LIMIT)  # the client hung up

    run(main())


def test_handshake_timeout_when_the_cn_is_never_answered() -> None:
    async def main() -> None:
        gone: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        seen: list[bytes] = []

        async def no_accept(raw: RawPeer) -> None:
            assert isinstance(await raw.next(), ConnectRequested)
            raw.writer.write(raw.rfc.accept())  # CC ...
            seen.append(await raw.tsdu())  # ... but the CN gets no AC
            gone.set_result(await raw.closed())

        async with raw_server(no_accept) as port:
            opts = Options(connect_timeout=LIMIT, handshake_timeout=0.3)
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                await sessionlayer.connect("127.0.0.1", port, options=opts)
            assert time.monotonic() - started < 0.3 + 1.0
            assert await asyncio.wait_for(gone, LIMIT)
        (cn,) = decode_tsdu(seen[0])
        assert cn.kind == "CN"

    run(main())


def _on_loop(name: str, coro: Awaitable[Any]) -> Any:
    """Run ``coro`` (bounded) on asyncio's loop or on uvloop's."""
    if name == "asyncio":
        return run(coro)
    with asyncio.Runner(loop_factory=loop_factory(name)) as runner:
        return runner.run(asyncio.wait_for(coro, 9))  # type: ignore[arg-type]


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_connections_over_the_handshake_limit_wait_their_turn(loop: str) -> None:
    """``max_handshakes`` 2: two silent connections hold both slots; ten connects made
    meanwhile wait, unread, none closed (uvloop reads once before a pause holds: what it
    read waits too); once the silent ones go, each becomes a session."""

    async def main() -> None:
        opts = Options(handshake_timeout=LIMIT, keepalive_interval=None)
        async with await sessionlayer.serve(echo, "127.0.0.1", 0, options=opts,
                                            max_handshakes=2) as server:  # fmt: skip
            silent = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(2)]
            client = Options(handshake_timeout=LIMIT, resume=False)
            connects = [asyncio.ensure_future(sessionlayer.connect(
                "127.0.0.1", server.port, options=client)) for _ in range(10)]  # fmt: skip
            while server.queued < 10:  # (accepted on the server's side of the loop)
                await asyncio.sleep(0)
            assert server.handshakes == 2 and not any(c.done() for c in connects)
            for _, writer in silent:
                writer.close()
            sessions = await asyncio.gather(*connects)
            for s in sessions:
                await s.send(b"ping")
                assert await s.receive() == b"ping"
                await s.release()
            assert server.stats.refused["handshake_limit"] == 0
            assert server.handshakes == 0 and server.queued == 0

    _on_loop(loop, main())


def test_one_connection_over_the_waiting_limit_is_closed_at_once() -> None:
    """One in handshake, one waiting (``max_waiting`` 1): one more is closed at once.  When
    the waiting one's peer leaves (unnoticed: nothing is read from it), a full queue looks
    before it refuses, and the next connection waits in its place and gets its turn."""

    async def main() -> None:
        opts = Options(handshake_timeout=LIMIT, keepalive_interval=None)
        async with await sessionlayer.serve(echo, "127.0.0.1", 0, options=opts,
                                            max_handshakes=1, max_waiting=1) as server:
            held = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(2)]
            while server.handshakes < 1 or server.queued < 1:
                await asyncio.sleep(0)
            client = Options(handshake_timeout=LIMIT, resume=False)
            started = time.monotonic()
            with pytest.raises(SessionAborted):
                await sessionlayer.connect("127.0.0.1", server.port, options=client)
            assert time.monotonic() - started < 1.0
            assert server.stats.refused["handshake_limit"] == 1
            held[1][1].close()  # the waiting one leaves
            await held[1][1].wait_closed()
            server.sweep_interval = 0.0  # (look at once, not within the second)
            later = asyncio.ensure_future(
                sessionlayer.connect("127.0.0.1", server.port, options=client))
            while len(server._waiting) < 2:  # (the gone one swept, this one queued)
                await asyncio.sleep(0)
            assert server.queued == 1 and server.stats.refused["handshake_limit"] == 1
            held[0][1].close()  # the slot frees: the new one's turn
            session = await later
            await session.send(b"ping")
            assert await session.receive() == b"ping"
            await session.release()
            await held[0][1].wait_closed()

    run(main())


# ---------------------------------------------------------------- release


def test_release_timeout_aborts_the_session() -> None:
    async def main() -> None:
        received: list[Any] = []
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def deaf_to_fn(raw: RawPeer) -> None:
            await accept_session(raw)
            with contextlib.suppress(EOFError):
                while True:
                    received.extend(decode_tsdu(await raw.tsdu()))
            done.set_result(None)

        async with raw_server(deaf_to_fn) as port:
            opts = Options(release_timeout=0.3)
            session = await sessionlayer.connect("127.0.0.1", port, options=opts)
            started = time.monotonic()
            with pytest.raises(SessionAborted) as info:
                await session.release()
            assert 0.3 <= time.monotonic() - started < 0.3 + 1.0
            assert "release timeout" in str(info.value)
            assert session.state == "aborted"
            with pytest.raises(SessionAborted, match="release timeout"):
                await session.receive()
            await asyncio.wait_for(done, LIMIT)
        # On the wire: FN, then (no DN came) AB with Transport Disconnect "user abort".
        assert [type(s) for s in received] == [Finish, Abort]
        assert received[1].transport_disconnect & AbortReason.USER_ABORT

    run(main())


def test_a_release_cancelled_after_its_fn_still_ends_at_the_release_timeout() -> None:
    """release() cancelled once its FN is out (toward a peer that speaks only X.225 and
    never answers): the release timeout is the connection's, so the session is aborted
    then all the same (it stayed in STA03, open for good); a release() made again meanwhile
    waits for that FN's outcome (it raised StateError "SRELreq is not allowed in STA03")."""

    async def main() -> None:
        got_fn = asyncio.Event()
        received: list[Any] = []

        async def deaf_to_fn(raw: RawPeer) -> None:
            await accept_session(raw, user_data=b"osi")
            with contextlib.suppress(EOFError):
                while True:
                    spdus = decode_tsdu(await raw.tsdu())
                    received.extend(spdus)
                    if any(isinstance(s, Finish) for s in spdus):
                        got_fn.set()

        async with raw_server(deaf_to_fn) as port:
            opts = Options(release_timeout=0.5)
            session = await sessionlayer.connect("127.0.0.1", port, options=opts,
                                                 user_data=b"osi")  # fmt: skip
            started = time.monotonic()
            first = asyncio.ensure_future(session.release())
            await asyncio.wait_for(got_fn.wait(), LIMIT)
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first
            assert session.state == "STA03"
            with pytest.raises(SessionAborted, match="release timeout"):
                await asyncio.wait_for(session.release(), LIMIT)
            assert 0.5 <= time.monotonic() - started < 0.5 + 1.0  # (one timeout, not two)
            assert session.state == "aborted"
            await asyncio.wait_for(session.wait_closed(), LIMIT)
        assert [type(s) for s in received] == [Finish, Abort]  # (one FN)

    run(main())


def test_a_release_made_again_after_a_cancelled_one_returns_the_dn() -> None:
    """The FN of a cancelled release() is answered (DN) while a second release() waits:
    that one returns the DN's user data, and the session ends released."""

    async def main() -> None:
        got_fn = asyncio.Event()
        answer = asyncio.Event()

        async def slow_dn(raw: RawPeer) -> None:
            machine = await accept_session(raw)
            machine.receive_tsdu(await raw.tsdu(), now=0.0)
            got_fn.set()
            await answer.wait()
            machine.release_response(accept=True, user_data=b"bye", now=0.0)
            for tsdu in machine.data_to_send():
                raw.send_tsdu(tsdu)
            await raw.closed()

        async with raw_server(slow_dn) as port:
            session = await sessionlayer.connect("127.0.0.1", port,
                                                 options=Options(release_timeout=LIMIT))
            first = asyncio.ensure_future(session.release())
            await asyncio.wait_for(got_fn.wait(), LIMIT)
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first
            second = asyncio.ensure_future(session.release())
            answer.set()  # (the DN comes after the second release() waits for it)
            assert await asyncio.wait_for(second, LIMIT) == b"bye"
            assert session.state == "released"

    run(main())


ACTIVITIES = SessionConfig(functional_units=DEFAULT_FUNCTIONAL_UNITS | FunctionalUnit.ACTIVITY)


def test_a_task_cancelled_inside_an_activity_ends_at_once_and_the_discard_is_bounded() -> None:
    """A task cancelled inside ``async with session.activity()`` toward a peer that never
    answers: the cancellation is prompt (it waited for the ADA with no limit), the AD goes
    out all the same, and with no answer within the release timeout the session is
    aborted (the connection's deadline)."""

    async def main() -> None:
        got_ad = asyncio.Event()

        async def deaf_to_ad(raw: RawPeer) -> None:
            await accept_session(raw, ACTIVITIES)
            with contextlib.suppress(EOFError):
                while True:
                    if any(isinstance(s, ActivityDiscard) for s in decode_tsdu(await raw.tsdu())):
                        got_ad.set()

        async with raw_server(deaf_to_ad) as port:
            session = await sessionlayer.connect("127.0.0.1", port, config=ACTIVITIES,
                                                 options=Options(release_timeout=0.5))
            inside = asyncio.Event()

            async def work() -> None:
                async with session.activity(b"a1"):
                    await session.send(b"chunk")
                    inside.set()
                    await asyncio.Event().wait()  # (long work, to be cancelled)

            task = asyncio.ensure_future(work())
            await asyncio.wait_for(inside.wait(), LIMIT)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(task, 0.5 * LIMIT)
            assert session.state == "STA05C"  # at once: the AD out, its answer not awaited
            await asyncio.wait_for(got_ad.wait(), LIMIT)
            await asyncio.wait_for(session.wait_closed(), LIMIT)
            assert session.state == "aborted"
            with pytest.raises(SessionAborted, match="discard of an activity"):
                await session.receive()

    run(main())


def test_a_task_cancelled_inside_an_activity_leaves_the_session_going_on() -> None:
    """Toward a peer that answers, the discard of a cancelled task's activity completes on
    its own: the session goes on, and the next activity starts and ends."""

    async def main() -> None:
        async def handler(session: sessionlayer.Session) -> None:
            async for _ in session:
                pass

        options = Options(resume=False)
        async with await sessionlayer.serve(handler, config=ACTIVITIES,
                                            options=options) as server:  # fmt: skip
            session = await sessionlayer.connect("127.0.0.1", server.port, config=ACTIVITIES,
                                                 options=options)  # fmt: skip
            inside = asyncio.Event()

            async def work() -> None:
                async with session.activity(b"a1"):
                    await session.send(b"chunk")
                    inside.set()
                    await asyncio.Event().wait()

            task = asyncio.ensure_future(work())
            await asyncio.wait_for(inside.wait(), LIMIT)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            x = session._conn._x
            assert x is not None and x.tasks  # (the discard, waiting for its ADA)
            await asyncio.wait_for(asyncio.wait(set(x.tasks)), LIMIT)
            assert session.state == "STA713" and not session.machine.activity_in_progress
            async with session.activity(b"a2"):
                await session.send(b"again")
            await session.release()

    run(main())


# ---------------------------------------------------------------- limits and bad peers


def test_malformed_tpkt_bytes_get_an_ab_once_cotp_is_up_and_a_drop_before() -> None:
    """As docs/api.md says: a bad TPKT on an open session is answered with AB 0x05 (the
    peer's SessionAborted says so), then the connection closes; before COTP CC there is no
    TPDU size to carry an AB: the connection is dropped, nothing written.  And a TCP
    connection that cannot be made is the OSError connect() documents."""

    async def main() -> None:
        async with await sessionlayer.serve(echo, options=Options(resume=False)) as server:
            session = await sessionlayer.connect("127.0.0.1", server.port,
                                                 options=Options(resume=False))
            transport = session._conn.transport
            assert transport is not None
            transport.write(b"\x07\x00\x00\x08abcd")  # (TPKT version 7)
            with pytest.raises(SessionAborted) as info:
                await asyncio.wait_for(session.receive(), LIMIT)
            assert info.value.reason == AbortReason.TRANSPORT_RELEASED | AbortReason.PROTOCOL_ERROR
            assert not info.value.by_peer and "AB from the peer" in str(info.value)
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"\x07\x00\x00\x08abcd")
            got = b""
            with contextlib.suppress(ConnectionError):  # (a FIN, or a reset: no AB either way)
                got = await asyncio.wait_for(reader.read(), LIMIT)
            assert got == b""
            writer.close()
        with pytest.raises(ConnectionRefusedError):
            await sessionlayer.connect("127.0.0.1", server.port)  # (closed now)

    run(main())


def test_tsdu_above_the_limit_aborts_only_that_session(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bad_id = ""

    async def main() -> None:
        nonlocal bad_id
        outcomes: dict[str, BaseException | None] = {}
        ended = asyncio.Event()

        async def handler(session: sessionlayer.Session) -> None:
            try:
                await echo(session)
                outcomes[session.id] = None
            except SessionAborted as exc:
                outcomes[session.id] = exc
                ended.set()
                raise

        server_opts = Options(max_tsdu_size=4096)
        async with await sessionlayer.serve(handler, options=server_opts) as server:
            good = await sessionlayer.connect("127.0.0.1", server.port)
            # (X.225 user data, no hello: the client does not know the server's limit, as
            # an OSI stack would not; a sessionlayer client refuses to send it, see
            # tests/aio/test_message_size.py)
            bad = await sessionlayer.connect("127.0.0.1", server.port, user_data=b"osi")
            await good.send(b"a" * 4000)  # under the limit (with its SPDU header)
            assert await good.receive() == b"a" * 4000
            await bad.send(b"b" * 5000)  # over it
            with pytest.raises(SessionAborted) as refused:
                await bad.receive()
            # The server said why, in an AB SPDU: implementation restriction.
            assert refused.value.reason & AbortReason.IMPLEMENTATION_RESTRICTION
            await asyncio.wait_for(ended.wait(), LIMIT)
            (bad_id,) = set(outcomes) - {good.id}  # (the server's id for it: no welcome)
            assert isinstance(outcomes[bad_id], SessionAborted)
            # The other session carries on.
            await good.send(b"still here")
            assert await good.receive() == b"still here"
            assert [info.id for info in server.sessions] == [good.id]
            await good.release()
        records = [r for r in caplog.records if getattr(r, "session_id", None) == bad_id]
        assert any("TSDU" in r.getMessage() and bad_id in r.getMessage() for r in records)

    with caplog.at_level(logging.INFO, logger="sessionlayer"):
        run(main())


def test_malformed_spdu_gets_an_abort_on_the_wire(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        ids: list[str] = []

        async def handler(session: sessionlayer.Session) -> None:
            ids.append(session.id)
            await echo(session)

        config = SessionConfig(abort_timeout=0.5)  # TIM: the server hangs up after 0.5 s
        async with await sessionlayer.serve(handler, config=config) as server:
            good = await sessionlayer.connect("127.0.0.1", server.port)
            raw, _ = await RawPeer.client(server.port)
            assert len(server.sessions) == 2
            # A DATA TRANSFER SPDU whose length says 5 parameter octets; 1 follows.
            raw.send_tsdu(b"\x01\x05\x00")
            (ab,) = decode_tsdu(await asyncio.wait_for(raw.tsdu(), LIMIT))
            assert isinstance(ab, Abort)
            assert ab.transport_disconnect is not None
            assert ab.transport_disconnect & AbortReason.PROTOCOL_ERROR
            assert ab.transport_disconnect & AbortReason.TRANSPORT_RELEASED
            assert ab.reflect == b"\x01\x05\x00"
            assert await asyncio.wait_for(raw.closed(), LIMIT)  # TIM released the transport
            raw.writer.close()
            # The other session carries on.
            await good.send(b"unharmed")
            assert await good.receive() == b"unharmed"
            assert [info.id for info in server.sessions] == [good.id]
            await good.release()
        bad_id = next(i for i in ids if i != good.id)
        records = [r for r in caplog.records if getattr(r, "session_id", None) == bad_id]
        assert any(
            r.levelno == logging.WARNING and "protocol error" in r.getMessage()
            and bad_id in r.getMessage()
            for r in records
        )  # fmt: skip

    with caplog.at_level(logging.INFO, logger="sessionlayer"):
        run(main())


def test_session_log_lines_carry_the_session_id(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> str:
        async with await sessionlayer.serve(echo) as server:
            async with await sessionlayer.connect("127.0.0.1", server.port) as session:
                await session.send(b"x")
                await session.receive()
            return session.id

    with caplog.at_level(logging.DEBUG, logger="sessionlayer"):
        sid = run(main())
    about = [r for r in caplog.records if getattr(r, "session_id", None) == sid]
    assert about, caplog.records
    assert all(sid in r.getMessage() for r in about)
    assert any("accepted" in r.getMessage() for r in about)


# ---------------------------------------------------------------- resources


def test_an_aborted_session_is_freed_without_the_garbage_collector() -> None:
    """The failure a session keeps is raised as a copy: no traceback ties the raising
    frames (and the session they hold) to the connection in a reference cycle."""
    import gc

    async def main() -> list[str]:
        ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def handler(session: sessionlayer.Session) -> None:
            try:
                async for _ in session:
                    pass
            finally:
                ended.set_result(None)

        opts = Options(keepalive_interval=None, resume=False)
        async with await sessionlayer.serve(handler, "127.0.0.1", 0, options=opts) as server:
            s = await sessionlayer.connect("127.0.0.1", server.port, options=opts)
            await s.send(b"x")
            gc.collect()
            gc.disable()
            gc.set_debug(gc.DEBUG_SAVEALL)
            try:
                s.abort()
                with pytest.raises(SessionAborted):
                    await s.receive()
                del s
                await asyncio.wait_for(ended, LIMIT)
                for _ in range(3):  # (the handler's task and its callbacks finish)
                    await asyncio.sleep(0)
                gc.collect()
                return sorted({type(o).__name__ for o in gc.garbage
                               if type(o).__module__.startswith("sessionlayer")})  # fmt: skip
            finally:
                gc.set_debug(0)
                gc.garbage.clear()
                gc.enable()

    assert run(main()) == []


def test_tls_connections_that_never_finish_tls_give_their_slot_back() -> None:
    """A TLS connection counts from its accept (its TLS handshake takes a handshake slot):
    TCP connections that close before their TLS handshake (a health check, a port scan)
    give their slot back as that handshake fails, and leave none held."""
    from tests.tools import tls_contexts

    server_tls, client_tls = tls_contexts()

    async def main() -> None:
        opts = Options(handshake_timeout=LIMIT, keepalive_interval=None)
        async with await sessionlayer.serve(echo, "127.0.0.1", 0, options=opts,
                                            tls=server_tls, max_handshakes=1,
                                            max_waiting=1) as server:  # fmt: skip
            for _ in range(3):  # (each closed before its ClientHello)
                _, writer = await asyncio.open_connection("127.0.0.1", server.port)
                writer.close()
                await writer.wait_closed()
                async with asyncio.timeout(LIMIT):  # (its slot comes back as TLS fails)
                    while server.handshakes or server.queued:
                        await asyncio.sleep(0.001)
            session = await sessionlayer.connect("127.0.0.1", server.port, tls=client_tls,
                                                 server_hostname="localhost",
                                                 options=Options(resume=False))  # fmt: skip
            await session.send(b"ping")
            assert await session.receive() == b"ping"
            await session.release()
            assert server.queued == 0 and server.stats.refused["handshake_limit"] == 0

    run(main())


def test_close_ends_the_connections_waiting_for_a_slot() -> None:
    async def main() -> None:
        opts = Options(handshake_timeout=LIMIT, keepalive_interval=None)
        server = await sessionlayer.serve(echo, "127.0.0.1", 0, options=opts, max_handshakes=1)
        _, silent = await asyncio.open_connection("127.0.0.1", server.port)
        later = asyncio.ensure_future(sessionlayer.connect(
            "127.0.0.1", server.port, options=Options(handshake_timeout=LIMIT, resume=False)))
        while server.queued < 1:
            await asyncio.sleep(0)
        server.close()
        silent.close()  # (its slot frees after the close: nobody is admitted to it)
        with pytest.raises(SessionAborted):
            await later
        await asyncio.wait_for(server.wait_closed(), LIMIT)
        assert not server.sessions and server.queued == 0
        await silent.wait_closed()

    run(main())


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_peer_is_the_other_sides_address_while_open_and_after_the_end(
    loop: str, tls: bool
) -> None:
    """``session.peer`` (asked of the transport, not kept: uvloop makes it on demand; kept
    for TLS, whose transport forgets it at the end) is the client's address at the server
    and the server's at the client, in ``info()`` too, and still after the session ended and
    its connection closed."""
    contexts: dict[str, Any] = {}
    if tls:
        ca = trustme.CA()
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
        client_ctx = ssl.create_default_context()
        ca.configure_trust(client_ctx)
        contexts = {"server": {"tls": server_ctx}, "client": {"tls": client_ctx}}

    async def main() -> None:
        got: asyncio.Future[sessionlayer.Session] = asyncio.get_running_loop().create_future()

        async def handler(session: sessionlayer.Session) -> None:
            got.set_result(session)
            async for _ in session:
                pass

        opts = Options(keepalive_interval=None, resume=False)
        async with await sessionlayer.serve(handler, "127.0.0.1", 0, options=opts,
                                            **contexts.get("server", {})) as server:  # fmt: skip
            client = await sessionlayer.connect("127.0.0.1", server.port, options=opts,
                                                **contexts.get("client", {}))  # fmt: skip
            at_server = await got
            assert tuple(client.peer) == ("127.0.0.1", server.port)
            assert tuple(at_server.peer)[1] != server.port
            assert at_server.peer == at_server.info().peer
            now = asyncio.get_running_loop().time()  # (started and age: the loop's clock)
            for s in (client, at_server):
                assert 0 < s.started <= now and 0 <= s.info().age < LIMIT
            await client.release()
            await client.wait_closed()
            await at_server.wait_closed()
            assert tuple(client.peer) == ("127.0.0.1", server.port)
            assert at_server.info().peer == at_server.peer and at_server.peer is not None

    _on_loop(loop, main())
