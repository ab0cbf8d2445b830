"""sessionlayer as the responder of a real OSI client: the libiec61850 MMS client.

Our server speaks only the session layer, so the presentation/ACSE/MMS answers come from
the libiec61850 capture (tests/vectors): the AC's user data (ACSE AARE + MMS initiate
response), the read response (42.5) and the conclude response.  libiec61850's client runs
in its own process (pyiec61850-ng, GPL, test-only), connects, reads the float, and then
releases the association (MMS conclude, then FN with ACSE RLRQ, answered by our DN with
the captured RLRE) or
aborts it (AB with ACSE ABRT).  Everything it sent must have passed our state table.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import sessionlayer
from sessionlayer import SessionConfig
from sessionlayer.spdu import decode_tsdu

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "libiec61850.json"
FRAMES = {frame["name"]: bytes.fromhex(frame["session"]) for frame in json.loads(
    VECTORS.read_text())}  # fmt: skip
DATA_PREFIX = bytes.fromhex("01000100")  # GT + DT with empty parameter fields


def _user_data(name: str) -> bytes:
    spdu = decode_tsdu(FRAMES[name])[-1]
    data = getattr(spdu, "user_data", None)
    assert data is not None, name
    return bytes(data)


def _pdu(name: str) -> bytes:
    tsdu = FRAMES[name]
    assert tsdu.startswith(DATA_PREFIX), name
    return tsdu[len(DATA_PREFIX) :]


AC_DATA = _user_data("AC SPDU (libiec61850 server)")
READ_REQUEST = _pdu("GT+DT carrying MMS read request")
READ_RESPONSE = _pdu("GT+DT carrying MMS read response (float 42.5)")
CONCLUDE_REQUEST = _pdu("GT+DT MMS conclude-request")
CONCLUDE_RESPONSE = _pdu("GT+DT MMS conclude-response")
RELEASE_REQUEST = _user_data("FN SPDU (carries ACSE RLRQ)")
RELEASE_RESPONSE = _user_data("DN SPDU (carries ACSE RLRE)")


async def _serve_mms(abort: bool, run_client: Any, config: SessionConfig | None = None,
                     options: sessionlayer.Options | None = None,
                     ) -> tuple[Any, list[dict[str, Any]]]:  # fmt: skip
    """Our server (the kernel_duplex profile unless ``config``) answering the captured MMS
    dialogue; the client's result and what each session saw (with the TSDU sizes agreed)."""
    seen: list[dict[str, Any]] = []

    async def handler(session: sessionlayer.Session) -> None:
        machine = session.machine
        record: dict[str, Any] = {"requests": [], "outcome": None, "done": asyncio.Event(),
                                  "sizes": (machine.tsdu_max_send, machine.tsdu_max_receive)}
        seen.append(record)

        def release(event: Any) -> bytes:  # the DN carries ACSE's release response
            record["fn"] = event.user_data
            return RELEASE_RESPONSE

        session.on_release = release
        try:
            async for pdu in session:
                record["requests"].append(pdu)
                if pdu == READ_REQUEST:
                    await session.send(READ_RESPONSE)
                elif pdu == CONCLUDE_REQUEST:
                    await session.send(CONCLUDE_RESPONSE)
            record["outcome"] = "released"
        except sessionlayer.SessionAborted as exc:
            record["outcome"] = ("aborted", exc.by_peer)
        finally:
            record["done"].set()

    async with await sessionlayer.serve(
        handler, config=config or SessionConfig.kernel_duplex(), options=options,
        accept_data=lambda request: AC_DATA,
    ) as server:  # fmt: skip
        result = await asyncio.to_thread(run_client, server.port, abort, check=False)
        # The client is done; each handler ends as its session does (the release or abort
        # the client sent, or its TCP close).
        await asyncio.wait_for(asyncio.gather(*(r["done"].wait() for r in seen)), 10)
    return result, seen


def test_libiec61850_client_reads_and_releases(run_iec61850_client: Any) -> None:
    result, seen = asyncio.run(asyncio.wait_for(_serve_mms(False, run_iec61850_client), 30))
    assert result.ok, result.stderr
    assert result.value == 42.5
    served = [s for s in seen if s["requests"]]  # (the client may retry a raced connect)
    assert served, seen
    last = served[-1]
    assert last["requests"] == [READ_REQUEST, CONCLUDE_REQUEST]
    assert last["fn"] == RELEASE_REQUEST  # the FN carried ACSE RLRQ; our DN, RLRE
    assert last["outcome"] == "released"


def test_libiec61850_client_aborts(run_iec61850_client: Any) -> None:
    result, seen = asyncio.run(asyncio.wait_for(_serve_mms(True, run_iec61850_client), 30))
    assert result.ok, result.stderr
    assert result.value == 42.5
    served = [s for s in seen if s["requests"]]
    assert served and served[-1]["outcome"] == ("aborted", True), seen
