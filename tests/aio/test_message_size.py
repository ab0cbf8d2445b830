"""A message larger than the peer takes in one TSDU (its ``Options.max_tsdu_size``, said in
its hello or welcome as ``max_tsdu``) is refused before anything is sent: a ParameterError,
and the session goes on.  Before, it went out and the peer aborted the session (AB 0x11),
and the sender only heard "AB from the peer".  A peer that does not say (an OSI stack, or
X.225 user data instead of a hello) is sent what the application sends, and its abort now
says why in words."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

import sessionlayer
from sessionlayer import Options, SessionAborted
from sessionlayer.errors import AbortReason, ParameterError
from sessionlayer.machine import SessionConfig
from sessionlayer.machine import events as ev

LIMIT = 10.0  # s: a bound on each test
SMALL = 4096  #: the small side's max_tsdu_size
#: The longest message in one TSDU of SMALL octets: GT and DT with empty parameter fields
#: (``DATA_PREFIX``, 4 octets) before it; TD (2 octets) for typed data.
MOST = SMALL - 4


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, LIMIT))


async def echo(session: sessionlayer.Session) -> None:
    async for data in session:
        await session.send(data)


@contextlib.asynccontextmanager
async def osi_session() -> AsyncIterator[sessionlayer.Session]:
    """A session to a server that takes TSDUs of SMALL octets at most, opened with X.225
    user data instead of a hello: the client is not told the server's limit."""
    small = Options(max_tsdu_size=SMALL, keepalive_interval=None, idle_timeout=None)
    config = SessionConfig.kernel_duplex()
    async with await sessionlayer.serve(echo, "127.0.0.1", 0, options=small,
                                        config=config) as server:  # fmt: skip
        yield await sessionlayer.connect(
            "127.0.0.1", server.port, user_data=b"osi", config=config,
            options=Options(resume=False, keepalive_interval=None, idle_timeout=None),
        )  # fmt: skip


@pytest.mark.parametrize("resume", [False, True])
def test_a_message_over_the_servers_limit_is_refused_unsent(resume: bool) -> None:
    async def main() -> None:
        small = Options(max_tsdu_size=SMALL)
        async with await sessionlayer.serve(echo, "127.0.0.1", 0, options=small) as server:
            session = await sessionlayer.connect("127.0.0.1", server.port,
                                                 options=Options(resume=resume))  # fmt: skip
            async with session:
                with pytest.raises(ParameterError, match=r"4093 octets.*nothing was sent"):
                    await session.send(b"x" * (MOST + 1))
                await session.send(b"after")  # the session goes on; nothing else came
                assert await session.receive() == b"after"
                await session.send(b"y" * MOST)
                assert await session.receive() == b"y" * MOST

    run(main())


def test_a_handler_is_refused_a_message_over_the_clients_limit() -> None:
    async def main() -> None:
        refused: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

        async def handler(session: sessionlayer.Session) -> None:
            try:
                await session.send(b"z" * (MOST + 1))
            except ParameterError as exc:
                refused.set_result(exc)
            await session.send(b"z" * MOST)
            async for _ in session:
                pass

        async with await sessionlayer.serve(handler, "127.0.0.1", 0) as server:
            session = await sessionlayer.connect("127.0.0.1", server.port,
                                                 options=Options(max_tsdu_size=SMALL))  # fmt: skip
            async with session:
                assert isinstance(await refused, ParameterError)
                assert await session.receive() == b"z" * MOST

    run(main())


def test_a_peer_that_did_not_say_is_sent_it_and_its_abort_says_why() -> None:
    """X.225 user data instead of a hello: no limit is known, the message goes out, the
    server aborts with 0x11 (implementation restriction) and the client's error says so."""

    async def main() -> None:
        async with osi_session() as session:
            await session.send(b"x" * 2 * SMALL)
            with pytest.raises(SessionAborted) as info:
                await session.receive()
            assert info.value.reason & AbortReason.IMPLEMENTATION_RESTRICTION
            assert "implementation restriction" in str(info.value)
            assert "Transport Disconnect 0x11" in str(info.value)

    run(main())


@pytest.mark.parametrize("resume", [False, True])
def test_the_largest_message_allowed_is_the_largest_the_peer_takes(resume: bool) -> None:
    """The check stops exactly where the receiver would abort: S-DATA of ``SMALL - 4``
    octets and S-TYPED-DATA of ``SMALL - 2`` arrive whole (on the fast path and through the
    machine), one octet more is refused unsent."""

    async def main() -> None:
        typed: asyncio.Queue[bytes] = asyncio.Queue()

        async def handler(session: sessionlayer.Session) -> None:
            async def events() -> None:
                async for event in session.events():
                    if isinstance(event, ev.TypedDataIndication):
                        typed.put_nowait(bytes(event.data))

            watcher = asyncio.ensure_future(events())
            try:
                await echo(session)
            finally:
                watcher.cancel()

        small = Options(max_tsdu_size=SMALL)
        async with await sessionlayer.serve(handler, "127.0.0.1", 0, options=small) as server:
            session = await sessionlayer.connect("127.0.0.1", server.port,
                                                 options=Options(resume=resume))  # fmt: skip
            async with session:
                await session.send(b"d" * MOST)
                assert await session.receive() == b"d" * MOST
                with pytest.raises(ParameterError):
                    await session.send(b"d" * (MOST + 1))
                await session.send_typed(b"t" * (MOST + 2))
                assert await asyncio.wait_for(typed.get(), LIMIT) == b"t" * (MOST + 2)
                with pytest.raises(ParameterError, match=r"4095 octets.*4094 at most"):
                    await session.send_typed(b"t" * (MOST + 3))
                await session.send(b"still open")
                assert await session.receive() == b"still open"

    run(main())


@pytest.mark.parametrize(("size", "aborted"), [(MOST, False), (MOST + 1, True)])
def test_the_receiver_takes_what_the_check_allows_and_aborts_past_it(
    size: int, aborted: bool
) -> None:
    """Without the check (X.225 user data, no hello): the receiver takes ``SMALL - 4``
    octets of S-DATA and aborts at one more, so the check's limit is the receiver's."""

    async def main() -> None:
        async with osi_session() as session:
            await session.send(b"x" * size)
            if aborted:
                with pytest.raises(SessionAborted):
                    await session.receive()
            else:
                assert await session.receive() == b"x" * size
                await session.release()

    run(main())
