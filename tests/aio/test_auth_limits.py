"""An async ``authenticate`` that never returns holds nothing for good: its wait ends with
its connection (the server's handshake deadline, or the peer gone), it is cancelled, and
the connect request no longer counts against ``max_sessions``; on the resume path too."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from tests import tools
from tests.recovery.helpers import raw_resume
from tests.tools import echo as _echo
from tests.tools import loop_factory

import sessionlayer
from sessionlayer import Options
from sessionlayer.aio.server import ConnectRequest
from sessionlayer.recovery import ANONYMOUS, issue

LIMIT = 20.0
SERVER = Options(handshake_timeout=0.5)
CLIENT = Options(handshake_timeout=LIMIT)  # (the server's deadline is the one that ends it)
CANCELLED = "had not returned when its connection ended"


class Hanging:
    """An authenticate() that never returns for the user "slow" (an LDAP call without a
    timeout), or on a resume; it counts how many of its waits were cancelled."""

    def __init__(self, *, on_resume: bool = False) -> None:
        self.on_resume = on_resume
        self.waiting = 0
        self.cancelled = 0
        self.all_cancelled = asyncio.Event()

    async def __call__(self, request: ConnectRequest) -> bool:
        slow = (request.credentials or {}).get("user") == "slow"
        if not (request.resuming if self.on_resume else slow):
            return True
        self.waiting += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            if self.cancelled == self.waiting:
                self.all_cancelled.set()
            raise
        return True


def _cancelled_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if CANCELLED in r.getMessage()]


@pytest.mark.parametrize("rounds", [1, 3])
def test_authenticate_that_hangs_past_the_handshake_deadline_frees_its_place(
    rounds: int, caplog: pytest.LogCaptureFixture
) -> None:
    """max_sessions=2, and rounds of two clients whose authenticate() hangs: the server's
    handshake deadline closes each (no RF: an answer it never had), the wait is cancelled,
    and the next round, then good clients, find both places free (before, the first round
    held them for good: every later CN got SPM congestion)."""
    auth = Hanging()

    async def slow(port: int) -> BaseException | None:
        try:
            session = await sessionlayer.connect("127.0.0.1", port, options=CLIENT,
                                                 credentials={"user": "slow"})  # fmt: skip
        except (sessionlayer.SessionLayerError, OSError) as exc:
            return exc
        session.abort()
        return None

    async def main() -> None:
        async with await sessionlayer.serve(_echo, authenticate=auth, options=SERVER,
                                            max_sessions=2) as server:  # fmt: skip
            loop = asyncio.get_running_loop()
            for done in range(1, rounds + 1):
                started = loop.time()
                outcomes = await asyncio.gather(slow(server.port), slow(server.port))
                # Closed by the server's deadline (0.5 s), not by the client's own (20 s).
                for outcome in outcomes:
                    assert outcome is not None, outcomes
                    assert not isinstance(outcome, sessionlayer.ConnectRefused), outcomes
                assert loop.time() - started < LIMIT / 2
                await asyncio.wait_for(auth.all_cancelled.wait(), LIMIT)
                auth.all_cancelled.clear()
                assert auth.cancelled == auth.waiting == 2 * done
            session = await sessionlayer.connect("127.0.0.1", server.port, options=CLIENT,
                                                 credentials={"user": "good"})  # fmt: skip
            await session.send(b"in")
            assert await asyncio.wait_for(session.receive(), LIMIT) == b"in"
            second = await sessionlayer.connect("127.0.0.1", server.port, options=CLIENT)
            assert len(server.sessions) == 2  # (both places: none is held by the hung)
            session.abort()
            second.abort()
            assert server.stats.refused["spm_congestion"] == 0

    with caplog.at_level(logging.INFO, logger="sessionlayer"):
        asyncio.run(asyncio.wait_for(main(), 60))
    assert len(_cancelled_lines(caplog)) == 2 * rounds, caplog.text


def test_authenticate_whose_client_leaves_is_cancelled_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A client that gives up (its own handshake timeout, far below the server's) ends
    the wait as well: its authenticate() is cancelled when the connection goes."""
    auth = Hanging()
    server_opts = Options(handshake_timeout=LIMIT * 3)

    async def main() -> None:
        async with await sessionlayer.serve(_echo, authenticate=auth, options=server_opts,
                                            max_sessions=1) as server:  # fmt: skip
            with pytest.raises(TimeoutError):
                await sessionlayer.connect("127.0.0.1", server.port,
                                           options=Options(handshake_timeout=0.3),
                                           credentials={"user": "slow"})  # fmt: skip
            await asyncio.wait_for(auth.all_cancelled.wait(), LIMIT)
            session = await sessionlayer.connect("127.0.0.1", server.port, options=CLIENT)
            session.abort()

    with caplog.at_level(logging.INFO, logger="sessionlayer"):
        asyncio.run(asyncio.wait_for(main(), 60))
    assert len(_cancelled_lines(caplog)) == 1, caplog.text


def test_authenticate_that_hangs_on_a_resume_frees_its_place(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The same on the resume path: resumes (of sessions this server does not hold, which
    count against max_sessions while they are checked) whose authenticate() hangs are
    closed at the deadline and cancelled; fresh sessions are accepted afterwards."""
    auth = Hanging(on_resume=True)

    async def resume(port: int, n: int) -> Any:
        token = issue(b"s" * 32, f"{n:032x}", 0, ANONYMOUS)
        try:
            return await raw_resume(port, token)
        except OSError as exc:  # closed without an answer
            return exc

    async def main() -> None:
        async with await sessionlayer.serve(_echo, authenticate=auth, options=SERVER,
                                            max_sessions=2) as server:  # fmt: skip
            for done in (1, 2):
                outcomes = await asyncio.gather(resume(server.port, 2 * done),
                                                resume(server.port, 2 * done + 1))  # fmt: skip
                assert all(isinstance(o, OSError) for o in outcomes), outcomes
                await asyncio.wait_for(auth.all_cancelled.wait(), LIMIT)
                auth.all_cancelled.clear()
                assert auth.cancelled == 2 * done
            first = await sessionlayer.connect("127.0.0.1", server.port, options=CLIENT)
            second = await sessionlayer.connect("127.0.0.1", server.port, options=CLIENT)
            first.abort()
            second.abort()
            assert server.stats.refused["spm_congestion"] == 0

    with caplog.at_level(logging.INFO, logger="sessionlayer"):
        asyncio.run(asyncio.wait_for(main(), 60))
    assert len(_cancelled_lines(caplog)) == 4, caplog.text


# ---------------------------------------------------------------- TLS handshakes counted


@pytest.fixture(scope="module")
def tls_contexts() -> tuple[Any, Any]:
    return tools.tls_contexts()


def _run_on(loop: str, coro: Any) -> None:
    """Run ``coro`` (bounded) on asyncio's loop or uvloop's; nothing may reach the loop's
    exception handler ("socket.accept() out of system resource" and the like)."""
    errors: list[dict[str, Any]] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _, c: errors.append(c))
        await asyncio.wait_for(coro, 60)

    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        runner.run(main())
    assert not errors, errors


async def _until(condition: Any) -> None:
    """Wait (bounded) until the server has taken in what the test did."""
    async with asyncio.timeout(LIMIT):
        while not condition():
            await asyncio.sleep(0.01)


async def _closed(reader: asyncio.StreamReader) -> bool:
    try:
        return await reader.read() == b""
    except ConnectionError:
        return True


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_connections_in_their_tls_handshake_count_as_in_handshake(
    loop: str, tls_contexts: tuple[Any, Any]
) -> None:
    """A TLS server counts a connection from its TCP accept: silent TCP connections (no
    ClientHello) take the handshake slots, then the queue, and the rest are closed at
    once, long before any deadline (asyncio's own TLS server held every one in a TLS
    handshake of its own, uncounted: 400 of them took every file descriptor).  When the
    counted ones go, a good TLS client connects."""
    server_tls, client_tls = tls_contexts

    async def main() -> None:
        opts = Options(handshake_timeout=LIMIT * 3, keepalive_interval=None)
        async with await sessionlayer.serve(_echo, options=opts, tls=server_tls,
                                            max_handshakes=2, max_waiting=3) as server:  # fmt: skip
            silent = [await asyncio.open_connection("127.0.0.1", server.port)
                      for _ in range(12)]  # fmt: skip
            await _until(lambda: server.stats.refused["handshake_limit"] == 7)
            assert server.handshakes == 2 and server.queued == 3
            excess = silent[5:]
            async with asyncio.timeout(LIMIT):  # (not the handshake timeout: at once)
                assert all(await asyncio.gather(*(_closed(r) for r, _ in excess)))
            for _, writer in silent:
                writer.transport.abort()  # the counted ones leave: their slots free up
            await _until(lambda: server.handshakes == 0 and server.queued == 0)
            session = await asyncio.wait_for(sessionlayer.connect(
                "127.0.0.1", server.port, tls=client_tls, server_hostname="localhost",
                options=Options(resume=False)), LIMIT)  # fmt: skip
            await session.send(b"ping")
            assert await asyncio.wait_for(session.receive(), LIMIT) == b"ping"
            await session.release()
            await _until(lambda: server.handshakes == 0 and server.queued == 0)

    _run_on(loop, main())


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_the_handshake_deadline_of_a_tls_connection_runs_from_its_accept(
    loop: str, tls_contexts: tuple[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """One deadline, ``handshake_timeout`` from the TCP accept, over the wait for a slot
    and the TLS handshake: silent connections, in a slot or queued, are closed when it
    passes, and a good TLS client connects afterwards within its own timeout."""
    server_tls, client_tls = tls_contexts

    async def main() -> None:
        opts = Options(handshake_timeout=0.5, keepalive_interval=None)
        async with await sessionlayer.serve(_echo, options=opts, tls=server_tls,
                                            max_handshakes=2, max_waiting=4) as server:  # fmt: skip
            running = asyncio.get_running_loop()
            started = running.time()
            silent = [await asyncio.open_connection("127.0.0.1", server.port)
                      for _ in range(6)]  # fmt: skip
            await _until(lambda: server.handshakes == 2 and server.queued == 4)
            async with asyncio.timeout(LIMIT):
                assert all(await asyncio.gather(*(_closed(r) for r, _ in silent)))
            assert running.time() - started >= 0.5
            assert server.handshakes == 0 and server.queued == 0
            for _, writer in silent:
                writer.close()
            session = await sessionlayer.connect(
                "127.0.0.1", server.port, tls=client_tls, server_hostname="localhost",
                options=Options(resume=False, connect_timeout=LIMIT, handshake_timeout=LIMIT))
            await session.send(b"ping")
            assert await asyncio.wait_for(session.receive(), LIMIT) == b"ping"
            await session.release()

    with caplog.at_level(logging.WARNING, logger="sessionlayer"):
        _run_on(loop, main())
    timeouts = [r for r in caplog.records if "within the handshake timeout" in r.getMessage()]
    assert len(timeouts) == 6, caplog.text


def test_a_tls_server_closed_at_once_stops_listening(tls_contexts: tuple[Any, Any]) -> None:
    """Its listening sockets go with close(), even when it comes before the accept loops
    ran (they were closed only by those loops: a cancelled one never ran its cleanup)."""
    server_tls, _ = tls_contexts

    async def main() -> None:
        server = await sessionlayer.serve(_echo, tls=server_tls)
        port = server.port
        server.close()
        await asyncio.wait_for(server.wait_closed(), LIMIT)
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", port)

    asyncio.run(main())
