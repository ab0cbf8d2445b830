"""``Options.max_tsdu_size`` bounds the TSDUs of a session once it is set up, never the
connect phase's (CN, CDO, OA, AC, RF: X.225's own limits apply there): before, a client
with max_tsdu_size=200 could not take a sessionlayer server's AC (210 octets), and a server
with 64 refused every hello.  Below MIN_TSDU_SIZE (64) the option is refused."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tests.tools import echo

import sessionlayer
from sessionlayer import Options, SessionAborted
from sessionlayer.agent.options import MIN_TSDU_SIZE
from sessionlayer.errors import AbortReason, ParameterError
from sessionlayer.machine import SessionConfig


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_a_tsdu_size_under_the_minimum_is_refused() -> None:
    assert MIN_TSDU_SIZE == 64
    for bad in (1, 63):
        with pytest.raises(ValueError, match="max_tsdu_size must be at least 64"):
            Options(max_tsdu_size=bad)
    assert Options(max_tsdu_size=64).max_tsdu_size == 64


@pytest.mark.parametrize(("server_max", "client_max"), [(64, None), (None, 64), (200, 200)])
def test_the_smallest_limits_still_set_up_a_session(server_max: int | None,
                                                    client_max: int | None) -> None:  # fmt: skip
    def options(size: int | None) -> Options:
        return Options() if size is None else Options(max_tsdu_size=size)

    async def main() -> None:
        async with await sessionlayer.serve(echo, options=options(server_max),
                                            supported={"codec": ["json"]}) as server:  # fmt: skip
            session = await sessionlayer.connect(
                "127.0.0.1", server.port, options=options(client_max),
                offers={"codec": ["cbor", "json"]}, data=b"d" * 300,
            )  # fmt: skip
            async with session:
                assert session.chosen == {"codec": "json"}
                most = min(x for x in (server_max, client_max, 1 << 20) if x) - 4
                await session.send(b"m" * most)  # (GT and DT take 4 octets)
                assert await session.receive() == b"m" * most
                if server_max is not None:  # (what the server takes, said in its welcome)
                    with pytest.raises(ParameterError, match="nothing was sent"):
                        await session.send(b"m" * (server_max - 3))

    run(main())


def test_the_limit_applies_once_the_session_is_set_up() -> None:
    """Raw X.225 user data (no hello: the client is not told the limit): a CN of 2,000
    octets is taken by a server whose limit is 64, a data TSDU over 64 aborts (AB 0x11)."""

    async def main() -> None:
        config = SessionConfig.kernel_duplex(max_user_data=None, one_octet_li=False)
        small = Options(max_tsdu_size=64, keepalive_interval=None, idle_timeout=None)
        answer = b"a" * 500
        async with await sessionlayer.serve(echo, options=small, config=config,
                                            accept_data=lambda _: answer) as server:  # fmt: skip
            session = await sessionlayer.connect(
                "127.0.0.1", server.port, user_data=b"c" * 2000, config=config,
                options=Options(resume=False, max_tsdu_size=64),
            )  # fmt: skip
            assert session.peer_data == b"a" * 500
            await session.send(b"x" * 60)
            assert await session.receive() == b"x" * 60
            await session.send(b"x" * 61)
            with pytest.raises(SessionAborted) as info:
                await session.receive()
            assert info.value.reason & AbortReason.IMPLEMENTATION_RESTRICTION

    run(main())
