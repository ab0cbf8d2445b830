"""Helpers of the recovery tests: cutting a session's connection from the inside, and a
raw resume attempt (a sans-I/O agent over a plain TCP connection) for the token tests."""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import sessionlayer
from sessionlayer import Options
from sessionlayer.agent import Hello, Rejection, SessionAgent, Welcome
from sessionlayer.aio.client import RESUMABLE_CONFIG
from sessionlayer.machine import events as ev
from sessionlayer.recovery import Backoff
from sessionlayer.spdu.types import ConnectionId

LIMIT = 20.0  #: the longest any one wait in these tests may take
#: Reconnect at once, a few tries a second, give up after ten seconds.
FAST = Options(backoff=Backoff(first=0, cap=0.05, give_up=10.0))


def run(coro: Awaitable[Any]) -> Any:
    async def main() -> Any:
        errors: list[dict[str, Any]] = []
        asyncio.get_running_loop().set_exception_handler(lambda _, c: errors.append(c))
        result = await asyncio.wait_for(coro, 120)
        assert not errors, errors
        return result

    return asyncio.run(main())


@contextlib.asynccontextmanager
async def owned(session: sessionlayer.Session) -> AsyncIterator[sessionlayer.Session]:
    """The block owns ``session``: if it fails, the session is aborted and its TCP
    connection dropped (and waited for, bounded), so that a failed test leaves no open
    socket behind for a later test's ResourceWarning.  (A block that ends well has
    released the session itself.)"""
    try:
        yield session
    except BaseException:
        session.abort()  # (nothing if it ended already: then it is not resumable either)
        session._conn.abort()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(session.wait_closed(), 5)
        raise


def cut(session: sessionlayer.Session) -> None:
    """Reset the session's TCP connection, as a network failure would (test only)."""
    transport = session._conn.transport
    if transport is not None:
        transport.abort()


def token_of(session: sessionlayer.Session) -> str:
    link = session._conn.link
    assert link is not None and link.token is not None
    return link.token


async def next_of(session: sessionlayer.Session, kind: type) -> Any:
    """The next event of ``kind`` on ``session.events()`` (others skipped)."""
    async with asyncio.timeout(LIMIT):
        async for event in session.events():
            if isinstance(event, kind):
                return event
    raise AssertionError(f"the session ended before a {kind.__name__}")


def reads_until_end(ended: asyncio.Event) -> Callable[[sessionlayer.Session], Awaitable[None]]:
    """A server handler that reads every message and sets ``ended`` when the session was
    released (its ``async for`` ended)."""

    async def handler(session: sessionlayer.Session) -> None:
        async for _ in session:
            pass
        ended.set()

    return handler


def echo_into(got: list[bytes]) -> Callable[[sessionlayer.Session], Awaitable[None]]:
    """A server handler that keeps each message in ``got`` and echoes it."""

    async def handler(session: sessionlayer.Session) -> None:
        async for data in session:
            got.append(data)
            await session.send(data)

    return handler


def echo_keeping(served: list[sessionlayer.Session]) -> Callable[[sessionlayer.Session],
                                                                  Awaitable[None]]:  # fmt: skip
    """A server handler that echoes every message and keeps its session in ``served``."""

    async def handler(session: sessionlayer.Session) -> None:
        served.append(session)
        async for data in session:
            await session.send(data)

    return handler


async def echo_with_checkpoints(port: int, every: int, served: list[sessionlayer.Session],
                                n: int = 300) -> None:  # fmt: skip
    """A client on ``port`` (an :func:`echo_keeping` server, directly or through a relay)
    sends ``n`` messages of 64 KiB, a checkpoint (major sync point) every ``every`` of
    them, while it reads the echoes: both flows carry data and acknowledgement points, so
    the server's points cross the client's MAPs.  Every echo comes back once and in order,
    and the server's journal ends with nothing held (each of its points was confirmed, or
    replaced by one that was)."""
    items = [b"%06d" % i + b"e" * 65530 for i in range(n)]
    client = await sessionlayer.connect("127.0.0.1", port)
    got: list[bytes] = []

    async def read() -> None:
        async for data in client:
            got.append(data)
            if len(got) == n:
                return

    async with owned(client), asyncio.timeout(LIMIT * 2):
        reader = asyncio.create_task(read())
        for i, item in enumerate(items):
            await client.send(item)
            if i % every == every - 1:
                await client.sync(major=True)
        await reader
        assert got == items
        journal = served[-1]._conn.journal
        assert journal is not None
        while journal.held:  # (its last point is set ack_interval after its last echo)
            await asyncio.sleep(0.01)
        await client.release()


def messages(n: int, seed: int, tag: bytes) -> list[bytes]:
    """``n`` messages of mixed sizes (1 octet to 70 KiB), each naming its number."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        size = rng.choice((1, 10, 64, 300, 1500, 8000, 70_000)) if i % 7 else 64
        head = tag + b"%d:" % i
        body = bytes(rng.randrange(256) for _ in range(8)) * (size // 8 + 1)
        out.append((head + body)[: max(size, len(head))])
    return out


async def raw_resume(port: int, token: str, *, recv: int = 0,
                     credentials: dict[str, str] | None = None,
                     tls: ssl.SSLContext | None = None,
                     ) -> tuple[ev.Event, Rejection | Welcome | None]:  # fmt: skip
    """Present ``token`` in a CN over a fresh TCP (or TLS) connection: (the confirm, its
    decoded rejection or welcome)."""
    async with raw_resumed(port, token, recv=recv, credentials=credentials, tls=tls) as answer:
        return answer


@contextlib.asynccontextmanager
async def raw_resumed(port: int, token: str, *, recv: int = 0,
                      credentials: dict[str, str] | None = None,
                      tls: ssl.SSLContext | None = None,
                      ) -> AsyncIterator[tuple[ev.Event, Rejection | Welcome | None]]:  # fmt: skip
    """:func:`raw_resume` whose connection stays open for the block: a session it resumed
    stays attached there (nothing is read from it meanwhile)."""
    agent = SessionAgent("initiator", RESUMABLE_CONFIG, Options())
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=tls, server_hostname="localhost" if tls else None
    )
    try:
        yield await _answer(agent, reader, writer, Hello(
            recovery=True, resume=token, recv=recv, credentials=credentials))  # fmt: skip
    finally:
        writer.close()


async def _answer(agent: SessionAgent, reader: asyncio.StreamReader,
                  writer: asyncio.StreamWriter,
                  hello: Hello) -> tuple[ev.Event, Rejection | Welcome | None]:  # fmt: skip
    loop = asyncio.get_running_loop()
    agent.connection_made(loop.time())
    sent_cn = False
    async with asyncio.timeout(LIMIT):
        while True:
            for data in agent.data_to_send():
                writer.write(data)
            await writer.drain()
            if not sent_cn and agent.rfc.tpdu_size is not None:
                agent.connect(None, ConnectionId(common_ref=b"raw"), hello)
                sent_cn = True
                continue
            for event in agent.events():
                if isinstance(event, ev.RefuseConfirm):
                    return event, Rejection.decode(bytes(event.user_data or b""))
                if isinstance(event, ev.ConnectConfirm):
                    return event, agent.confirmed(event)
                if isinstance(event, ev.ProviderAbortIndication | ev.UserAbortIndication):
                    return event, None
            data = await reader.read(65536)
            if not data:
                agent.connection_lost()
                raise ConnectionError("closed without an answer")
            agent.receive_data(data, loop.time())
