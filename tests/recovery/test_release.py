"""Releasing a resumable session while an acknowledgement point is in flight."""

from __future__ import annotations

import dataclasses

import sessionlayer

from .helpers import FAST, owned, run


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
