"""sessionlayer's server configured with a TSDU maximum size, answering the real libiec61850
MMS client, whose CN carries no TSDU Maximum Size (PI 21).

Without PI 21 in the CN nothing may be segmented: the AC carries no sizes and no DT carries
an Enclosure Item, which libiec61850's client cannot take (its read then fails).  The MMS
answers come from the libiec61850 capture, as in test_sessionlayer_responder.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tests.interop.test_sessionlayer_responder import (
    AC_DATA,
    CONCLUDE_REQUEST,
    CONCLUDE_RESPONSE,
    READ_REQUEST,
    READ_RESPONSE,
    RELEASE_RESPONSE,
)

import sessionlayer
from sessionlayer import Options, SessionConfig

NO_PROBES = Options(keepalive_interval=None, idle_timeout=None)


async def _serve(config: SessionConfig, run_client: Any) -> tuple[Any, list[dict[str, Any]]]:
    """Our server answering the captured read and release; the client's result and, per
    session, the sizes agreed and the requests seen."""
    seen: list[dict[str, Any]] = []

    async def handler(session: sessionlayer.Session) -> None:
        machine = session.machine
        sizes = (machine.tsdu_max_send, machine.tsdu_max_receive)
        record: dict[str, Any] = {"requests": [], "done": asyncio.Event(), "sizes": sizes}
        seen.append(record)
        session.on_release = lambda event: RELEASE_RESPONSE
        try:
            async for pdu in session:
                record["requests"].append(pdu)
                if pdu == READ_REQUEST:
                    await session.send(READ_RESPONSE)
                elif pdu == CONCLUDE_REQUEST:
                    await session.send(CONCLUDE_RESPONSE)
        except sessionlayer.SessionAborted:
            pass
        finally:
            record["done"].set()

    async with await sessionlayer.serve(
        handler, config=config, options=NO_PROBES, accept_data=lambda request: AC_DATA
    ) as server:
        result = await asyncio.to_thread(run_client, server.port, check=False)
        await asyncio.wait_for(asyncio.gather(*(r["done"].wait() for r in seen)), 10)
    return result, seen


@pytest.mark.parametrize("send, receive", [(1024, 0), (0, 1024), (1024, 1024)])
def test_a_configured_tsdu_size_does_not_segment_toward_libiec61850(
    run_iec61850_client: Any, send: int, receive: int
) -> None:
    config = SessionConfig.kernel_duplex(tsdu_max_send=send, tsdu_max_receive=receive)
    result, seen = asyncio.run(asyncio.wait_for(_serve(config, run_iec61850_client), 30))
    assert result.ok, result.stderr
    assert result.value == 42.5  # the read response reached the client, unsegmented
    served = [s for s in seen if s["requests"]]  # (the client may retry a raced connect)
    assert served, seen
    assert served[-1]["requests"] == [READ_REQUEST, CONCLUDE_REQUEST]
    assert all(s["sizes"] == (0, 0) for s in seen), seen
