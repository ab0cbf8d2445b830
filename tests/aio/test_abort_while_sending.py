"""A server's abort reaches a client that is still sending, with its user data: the server
sends a FIN behind its AB and reads on (dropping what comes) until the client closes, or
TIM (X.225 7.9: the AB's sender waits for the transport disconnect).  Before, it closed at
once: the peer's next segments met a closed socket, whose RST made the peer's TCP drop the
AB unread ("the transport connection was lost"), and a sender whose every ``send()``
returned at once spun on the dead transport without yielding, for good."""

from __future__ import annotations

import asyncio
import time

import pytest
from tests.rawpeer import RawPeer
from tests.tools import tls_contexts

import sessionlayer
from sessionlayer import Options, SessionAborted, SessionConfig
from sessionlayer.machine import events as ev

from .test_session import run

PIECE = b"x" * 60_000
#: Sends of PIECE a sender makes at most (bounded: a sender that never heard of the abort
#: stops here and fails the test rather than spinning).
MOST = 20_000


async def stream_until_aborted(session: sessionlayer.Session) -> SessionAborted | None:
    for _ in range(MOST):
        try:
            await session.send(PIECE)
        except SessionAborted as exc:
            return exc
    return None


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_a_peer_streaming_when_the_server_aborts_hears_the_abort_and_its_user_data(
    tls: bool,
) -> None:
    async def handler(session: sessionlayer.Session) -> None:
        got = 0
        async for data in session:
            got += len(data)
            if got > 200_000:
                session.abort(user_data=b"disk full")
                return

    async def main() -> None:
        server_tls, client_tls = tls_contexts() if tls else (None, None)
        async with await sessionlayer.serve(handler, "127.0.0.1", 0, tls=server_tls) as server:
            for _ in range(5):  # (the RST lost the AB in most runs)
                session = await sessionlayer.connect(
                    "127.0.0.1", server.port, options=Options(resume=False), tls=client_tls,
                    server_hostname="localhost" if tls else None,
                )  # fmt: skip
                failure = await stream_until_aborted(session)
                assert failure is not None, "every send() returned: the abort never came"
                assert failure.by_peer and failure.user_data == b"disk full", failure
                await session.wait_closed()

    run(main())


def test_the_aborting_side_closes_when_the_peer_closes_or_at_tim() -> None:
    """A raw client reads the server's AB and then the FIN behind it; the server's
    connection is gone once the client closes, and when the client does not close, at TIM."""

    async def main() -> None:
        accepted: asyncio.Queue[sessionlayer.Session] = asyncio.Queue()

        async def handler(session: sessionlayer.Session) -> None:
            await accepted.put(session)
            await session.wait_closed()

        config = SessionConfig(abort_timeout=0.5)
        async with await sessionlayer.serve(handler, "127.0.0.1", 0, config=config) as server:
            for closes in (True, False):
                raw, machine = await RawPeer.client(server.port)
                session = await accepted.get()
                started = time.monotonic()
                session.abort(user_data=b"bye")
                machine.receive_tsdu(await raw.tsdu(), now=0.0)
                event = machine.next_event()
                assert isinstance(event, ev.UserAbortIndication) and event.user_data == b"bye"
                assert await raw.reader.read(1) == b""  # the FIN behind the AB
                if closes:
                    raw.writer.close()
                await asyncio.wait_for(session.wait_closed(), 5)
                waited = time.monotonic() - started
                if closes:
                    assert waited < 0.4, waited  # the peer's close, not TIM
                else:
                    assert waited >= 0.45, waited  # TIM (abort_timeout) closed it
                    raw.writer.close()

    run(main())
