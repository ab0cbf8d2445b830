"""Fast connect over TCP (``Options.fast_connect``): a client that connected to a
sessionlayer server once sends its next CN right behind the CR, in one write, and gets
CC and AC in one answer; the first connection to an address, a server that does not offer
it, a client that turned it off and peers that speak only X.225 stay plain ISO 8073; a
fast connect that fails before the CC makes the next connection to that address plain."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import pytest
from tests.rawpeer import RawPeer, raw_server

import sessionlayer
from sessionlayer import Options, SessionAborted
from sessionlayer.aio import fast_connect
from sessionlayer.transport import ConnectRequested

LIMIT = 5.0
PLAIN = Options(fast_connect=False)


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 20))  # type: ignore[arg-type]


def _kinds(trace: list[tuple[str, bytes]]) -> list[str]:
    """Each chunk of a client's handshake trace, by its first TPDU: CR, CC or DT."""
    names = {0xE0: "CR", 0xD0: "CC", 0xF0: "DT"}
    return [f"{d}:{names.get(data[5] & 0xF0, '?')}" for d, data in trace]


async def _connect_traced(port: int, options: Options | None = None,
                          ) -> tuple[sessionlayer.Session, list[tuple[str, bytes]]]:  # fmt: skip
    trace: list[tuple[str, bytes]] = []
    session = await sessionlayer.connect(
        "127.0.0.1", port, options=options,
        trace=lambda direction, data: trace.append((direction, bytes(data))),
    )  # fmt: skip
    return session, trace


async def _echo(session: sessionlayer.Session) -> None:
    async for data in session:
        await session.send(data)


def test_the_second_connection_sends_its_cn_behind_the_cr() -> None:
    async def main() -> None:
        async with await sessionlayer.serve(_echo) as server:
            first, trace1 = await _connect_traced(server.port)
            assert _kinds(trace1)[:4] == ["out:CR", "in:CC", "out:DT", "in:DT"]  # plain
            assert fast_connect.is_known("127.0.0.1", server.port, False)
            second, trace2 = await _connect_traced(server.port)
            # CR and CN written at once (the tap sees each), before anything was read;
            # CC and AC in one answer.
            assert _kinds(trace2)[:2] == ["out:CR", "out:DT"]
            assert trace2[2][0] == "in" and trace2[2][1][5] == 0xD0
            assert trace2[2][1].count(b"SLW1") == 1  # (the AC's welcome behind the CC)
            assert second.id != first.id and len(server.sessions) == 2
            for session in (first, second):
                await session.send(b"ping")
                assert await asyncio.wait_for(session.receive(), LIMIT) == b"ping"
                await session.release()

    run(main())


def test_no_fast_connect_to_a_server_that_does_not_offer_it_or_when_turned_off() -> None:
    async def main() -> None:
        async with await sessionlayer.serve(_echo, options=PLAIN) as server:
            for _ in range(2):
                session, trace = await _connect_traced(server.port)
                assert _kinds(trace)[:2] == ["out:CR", "in:CC"]
                await session.release()
            assert not fast_connect.is_known("127.0.0.1", server.port, False)
        async with await sessionlayer.serve(_echo) as server:
            for _ in range(2):
                session, trace = await _connect_traced(server.port, PLAIN)
                assert _kinds(trace)[:2] == ["out:CR", "in:CC"]
                await session.release()
            assert not fast_connect.is_known("127.0.0.1", server.port, False)

    run(main())


def test_a_fast_connect_that_fails_before_the_cc_makes_the_next_plain() -> None:
    """An address learned as fast, where now a peer closes on the CR: the connect fails
    with the clear error of a plain one, and the address is forgotten."""

    async def main() -> None:
        seen: list[int] = []

        async def closes(raw: RawPeer) -> None:
            assert isinstance(await raw.next(), ConnectRequested)
            seen.append(raw.rfc._parser.buffered)  # what came behind the CR
            raw.writer.close()

        async with raw_server(closes) as port:
            fast_connect.learn("127.0.0.1", port, False, True)
            with pytest.raises(SessionAborted, match="without answering the COTP CR"):
                await sessionlayer.connect("127.0.0.1", port)
            assert not fast_connect.is_known("127.0.0.1", port, False)
            with pytest.raises(SessionAborted, match="without answering the COTP CR"):
                await sessionlayer.connect("127.0.0.1", port)
        assert seen[0] > 0 and seen[1] == 0  # the CN came behind the first CR only

    run(main())


def test_raw_user_data_never_goes_fast() -> None:
    """``connect(user_data=...)`` speaks to an OSI stack: the CN waits for the CC even
    toward an address learned as fast."""

    async def main() -> None:
        behind: list[int] = []

        async def peer(raw: RawPeer) -> None:
            assert isinstance(await raw.next(), ConnectRequested)
            behind.append(raw.rfc._parser.buffered)
            raw.writer.close()

        async with raw_server(peer) as port:
            fast_connect.learn("127.0.0.1", port, False, True)
            with pytest.raises(SessionAborted):
                await sessionlayer.connect("127.0.0.1", port, user_data=b"osi")
            assert behind == [0]
            fast_connect.forget("127.0.0.1", port, False)

    run(main())


def test_the_cache_is_bounded() -> None:
    for port in range(fast_connect.LIMIT + 10):
        fast_connect.learn("192.0.2.1", port, False, True)
    assert not fast_connect.is_known("192.0.2.1", 0, False)  # the oldest went first
    assert fast_connect.is_known("192.0.2.1", fast_connect.LIMIT + 9, False)
    assert len(fast_connect._KNOWN) <= fast_connect.LIMIT
    for port in range(fast_connect.LIMIT + 10):
        fast_connect.forget("192.0.2.1", port, False)
