"""``sync()`` calls waiting together toward a peer that answers only the last minor sync
point (an OSI stack may: one MIA confirms every point before it, X.215), or none of them
but the major point after them (the MAA confirms them all): each call returns its own
point's serial number, and none waits for ever.  Before, confirms were handed out one
per MIA, oldest call first: the first call got the last point's serial and the others
hung.  A raw responder (tests/rawpeer.py) over real TCP."""

from __future__ import annotations

import asyncio

from tests.rawpeer import RawPeer, accept_session, raw_server

import sessionlayer
from sessionlayer import FunctionalUnit as FU
from sessionlayer import Options, SessionConfig
from sessionlayer.machine import MajorSyncIndication, MinorSyncIndication

LIMIT = 10.0
CONFIG = SessionConfig(functional_units=FU.DUPLEX | FU.MINOR_SYNC | FU.MAJOR_SYNC | FU.RESYNC)
OPTIONS = Options(resume=False, keepalive_interval=None, idle_timeout=None)


def _run(answer_with_major: bool) -> tuple[list[int], list[int]]:
    async def main() -> tuple[list[int], list[int]]:
        seen: list[int] = []

        async def responder(raw: RawPeer) -> None:
            machine = await accept_session(raw, CONFIG)
            while True:
                machine.receive_tsdu(await raw.tsdu(), now=0.0)
                for event in machine.events():
                    if isinstance(event, MinorSyncIndication):
                        seen.append(event.serial)
                        if len(seen) == 3 and not answer_with_major:
                            machine.minor_sync_response(event.serial)  # (the last only)
                    elif isinstance(event, MajorSyncIndication):
                        machine.major_sync_response()
                for tsdu in machine.data_to_send():
                    raw.send_tsdu(tsdu)

        async with raw_server(responder) as port:
            session = await sessionlayer.connect("127.0.0.1", port, config=CONFIG,
                                                 options=OPTIONS)  # fmt: skip
            calls = [asyncio.create_task(session.sync()) for _ in range(3)]
            if answer_with_major:
                major = await asyncio.wait_for(session.sync(major=True), LIMIT)
                assert major == 3
            got = await asyncio.wait_for(asyncio.gather(*calls), LIMIT)
            session.abort()
            await asyncio.wait_for(session.wait_closed(), LIMIT)
        return list(got), seen

    return asyncio.run(main())


def test_one_mia_for_the_last_point_confirms_each_waiting_sync() -> None:
    got, seen = _run(answer_with_major=False)
    assert got == seen == [0, 1, 2]


def test_a_major_sync_ack_confirms_the_minor_syncs_it_was_not_asked_about() -> None:
    got, seen = _run(answer_with_major=True)
    assert got == seen == [0, 1, 2]
