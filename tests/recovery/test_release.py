"""Releasing a resumable session while an acknowledgement point is in flight."""

from __future__ import annotations

import dataclasses

import pytest

import sessionlayer
from sessionlayer import SessionAborted

from .helpers import FAST, owned, run

BUG_FN_AFTER_MIP = (
    "src bug: release() right after an acknowledgement point aborts the session. The agent"
    " sets its acknowledgement points (agent.py acknowledge, a confirmed MIP) on its own;"
    " release() (session.py line 497) sends FN at once, which the table allows in STA713"
    " with a MIA outstanding (table.py line 385); the peer answers the MIP with a MIA"
    " before its DN, and STA03 has no row for MIA (table.py lines 385-395): 'MIA SPDU is"
    " not valid in state STA03', AB.  With the default options: send 1 MiB, then release."
)


@pytest.mark.xfail(strict=True, raises=SessionAborted, reason=BUG_FN_AFTER_MIP)
def test_a_release_right_after_an_acknowledgement_point_completes() -> None:
    """ack_bytes=1: every message is followed at once by an acknowledgement point (MIP);
    release() goes out behind it, before the MIA can have come back (no await between)."""

    async def main() -> None:
        async def handler(session: sessionlayer.Session) -> None:
            async for _ in session:
                pass

        options = dataclasses.replace(FAST, ack_bytes=1)
        async with await sessionlayer.serve(handler, options=options) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port, options=options)
            async with owned(client):
                await client.send(b"one")
                journal = client._conn.journal
                assert journal is not None and journal.held == 1  # the MIP is out, unconfirmed
                await client.release()
                assert client.state == "released"

    run(main())
