"""sessionlayer.connect against the real libiec61850 MMS server (pyiec61850-ng).

The presentation, ACSE and MMS bytes are opaque to the session layer: they
come from the captured libiec61850 client (tests/vectors/libiec61850.json).
"""

from __future__ import annotations

import asyncio
from typing import Any

import sessionlayer
from sessionlayer import Options, SessionAborted, SessionConfig

NO_PROBES = Options(keepalive_interval=None, idle_timeout=None)
FLOAT_42_5 = bytes.fromhex("08422a0000")


def frame(vectors: list[dict[str, Any]], name: str) -> bytes:
    (hit,) = [v for v in vectors if v["name"].startswith(name)]
    return bytes.fromhex(hit["session"])


def user_data_of(vectors: list[dict[str, Any]], name: str, skip: int) -> bytes:
    return frame(vectors, name)[skip:]


async def open_mms(
    port: int, vectors: list[dict[str, Any]], options: Options = NO_PROBES
) -> sessionlayer.Session:
    from sessionlayer.spdu import decode_tsdu

    (cn,) = decode_tsdu(frame(vectors, "CN SPDU"))
    return await sessionlayer.connect(
        "127.0.0.1",
        port,
        user_data=cn.user_data,  # type: ignore[attr-defined]
        config=SessionConfig.libiec61850_profile(),
        options=options,
        calling_tsel=b"\x00\x01",
        called_tsel=b"\x00\x01",
    )


def test_read_and_release(iec61850_server: int, libiec61850: list[dict[str, Any]]) -> None:
    read_request = user_data_of(libiec61850, "GT+DT carrying MMS read request", 4)
    conclude = user_data_of(libiec61850, "GT+DT MMS conclude-request", 4)
    from sessionlayer.spdu import decode_tsdu

    (fn,) = decode_tsdu(frame(libiec61850, "FN SPDU"))

    async def main() -> None:
        session = await open_mms(iec61850_server, libiec61850)
        assert session.peer_data and session.peer_data[:1] == b"\x31"  # CP-type (PPDU)
        await session.send(read_request)
        response = await asyncio.wait_for(session.receive(), 10)
        assert FLOAT_42_5 in response
        await session.send(conclude)
        concluded = await asyncio.wait_for(session.receive(), 10)
        assert concluded.endswith(bytes.fromhex("8c00"))  # MMS conclude-response
        dn_data = await session.release(user_data=fn.user_data)  # type: ignore[attr-defined]
        assert dn_data is not None and dn_data[:1] == b"\x61"  # ACSE RLRE in P-DATA
        assert session.state == "released"

    asyncio.run(asyncio.wait_for(main(), 30))


def test_abort_then_the_server_serves_again(
    iec61850_server: int, libiec61850: list[dict[str, Any]]
) -> None:
    from sessionlayer.spdu import decode_tsdu

    (ab,) = decode_tsdu(frame(libiec61850, "AB SPDU"))
    read_request = user_data_of(libiec61850, "GT+DT carrying MMS read request", 4)

    async def main() -> None:
        session = await open_mms(iec61850_server, libiec61850)
        session.abort(user_data=ab.user_data)  # type: ignore[attr-defined]
        assert session.state == "aborted"
        try:
            await session.receive()
        except SessionAborted as exc:
            assert not exc.by_peer
        else:
            raise AssertionError("receive after abort must raise")
        again = await open_mms(iec61850_server, libiec61850)
        await again.send(read_request)
        assert FLOAT_42_5 in await asyncio.wait_for(again.receive(), 10)
        again.abort()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_large_tpdu_offer_falls_back_to_8192(
    iec61850_server: int, libiec61850: list[dict[str, Any]]
) -> None:
    """libiec61850 ignores the preferred maximum TPDU size parameter: 8192 applies."""
    read_request = user_data_of(libiec61850, "GT+DT carrying MMS read request", 4)
    big = Options(keepalive_interval=None, idle_timeout=None, tpdu_size=65408)

    async def main() -> None:
        session = await open_mms(iec61850_server, libiec61850, big)
        assert session._conn.agent.rfc.tpdu_size == 8192
        await session.send(read_request)
        assert FLOAT_42_5 in await asyncio.wait_for(session.receive(), 10)
        session.abort()

    asyncio.run(asyncio.wait_for(main(), 30))
