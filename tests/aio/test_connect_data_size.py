"""Connect user data over what one CN carries (10,240 octets, version 2) goes in CONNECT DATA
OVERFLOW SPDUs after the responder's OVERFLOW ACCEPT (X.225 7.1-7.3), over real TCP, up
to the responder's ``SessionConfig.max_connect_data`` (75,776 octets by default); past it
the responder refuses (RF 0x86) and the client's error says how much it sent.  Before, a
rest of more than 65,535 octets (what one SPDU's length indicator holds) was encoded as one
CDO: an internal error aborted the connect."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tests.tools import echo

import sessionlayer
from sessionlayer import ConnectRefused, Options
from sessionlayer.errors import RefuseReason
from sessionlayer.machine import SessionConfig
from sessionlayer.spdu.codec import decode_tsdu, encode
from sessionlayer.spdu.segment import SegmentAssembler, segment
from sessionlayer.spdu.types import ConnectDataOverflow

LIMIT = SessionConfig().max_connect_data  #: 75,776: the CN's 10,240 and 65,536 in CDOs


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_a_cdo_longer_than_one_spdu_holds_is_segmented() -> None:
    cdo = ConnectDataOverflow(user_data=bytes(range(256)) * 300)  # 76,800 octets
    pieces = segment(cdo, 65000, version=2)
    assert len(pieces) == 2
    assert [p.enclosure for p in pieces] == [1, 2]
    assembler = SegmentAssembler(1 << 20)
    whole = None
    for piece in pieces:
        wire = encode(piece, version=2)
        assert len(wire) <= 65000
        (got,) = decode_tsdu(wire)
        whole = assembler.feed(got)
    assert whole is not None and whole.user_data == cdo.user_data


async def _raw_server(config: SessionConfig | None = None) -> tuple[Any, list[bytes]]:
    """A server that answers raw connect user data (what an OSI client sends), noting it."""
    seen: list[bytes] = []

    def accept_data(request: sessionlayer.ConnectRequest) -> bytes:
        seen.append(bytes(request.data or b""))
        return b"ok"

    server = await sessionlayer.serve(echo, accept_data=accept_data, config=config)
    return server, seen


@pytest.mark.parametrize("size", [10240, 10241, LIMIT])
def test_connect_user_data_up_to_the_responders_limit_arrives_whole(size: int) -> None:
    data = bytes(i % 251 for i in range(size))

    async def main() -> None:
        server, seen = await _raw_server()
        async with server:
            session = await sessionlayer.connect("127.0.0.1", server.port, user_data=data)
            assert session.peer_data == b"ok"
            session.abort()
        assert seen == [data]

    run(main())


def test_connect_user_data_past_the_responders_limit_is_refused_saying_how_much() -> None:
    async def main() -> None:
        server, seen = await _raw_server()
        async with server:
            with pytest.raises(ConnectRefused) as info:
                await sessionlayer.connect("127.0.0.1", server.port, user_data=bytes(LIMIT + 1))
        assert info.value.reason == RefuseReason.IMPLEMENTATION_RESTRICTION
        assert f"{LIMIT + 1} octets of connect user data" in str(info.value)
        assert "max_connect_data" in str(info.value)
        assert seen == []

    run(main())


def test_a_hello_with_more_data_than_one_cdo_holds_arrives_whole() -> None:
    """The hello carries ``data`` in hex: 60,000 octets make a CN of over 120,000."""
    data = bytes(i % 253 for i in range(60000))
    got: list[bytes] = []

    def authenticate(request: sessionlayer.ConnectRequest) -> bool:
        got.append(request.data)
        return True

    async def main() -> None:
        config = SessionConfig(max_connect_data=1 << 20)
        async with await sessionlayer.serve(echo, authenticate=authenticate,
                                            config=config) as server:  # fmt: skip
            async with await sessionlayer.connect("127.0.0.1", server.port, data=data,
                                                  options=Options(resume=False)) as session:
                await session.send(b"after")
                assert await session.receive() == b"after"
        assert got == [data]

    run(main())
