"""A confirmed request that had not gone out yet when the connection was lost (it waited
for the peer's tokens, for the resume, or behind the replay) is made once, on the
connection where it goes out, and answered there.

Before, its confirm was waited for from the moment the request was asked for, so a lost
connection told it "made again" (``Relink``) while it still waited to be made at all: on
the connection where it then went out it was made a second time at once, and the machine,
still waiting for the first one's answer, refused (``SSYNMreq is not allowed in state
STA04A``).  tests/cli/test_files.py::test_a_transfer_survives_cuts hit it under load: a
checkpoint asked for just as the connection was lost, the next connection lost before its
replay was out."""

from __future__ import annotations

import asyncio
import dataclasses

import sessionlayer
from sessionlayer.aio.client import RESUMABLE_CONFIG
from sessionlayer.machine import events as ev
from sessionlayer.recovery import Interrupted, Resumed
from sessionlayer.spdu.codes import Token, TokenSetting

from .helpers import FAST, LIMIT, cut, next_of, owned, run

#: The major/activity token starts on the server's side: the client's checkpoint asks for
#: it first (PLEASE TOKENS), on every connection (tokens go back to their places).
TOKEN_AWAY = dataclasses.replace(
    RESUMABLE_CONFIG, token_setting={Token.MAJOR_ACTIVITY: TokenSetting.RESPONDER}
)


def test_a_checkpoint_waiting_for_the_token_at_the_cut_is_set_once() -> None:
    """The client's checkpoint waits for the peer's GIVE TOKENS (unread: the client does
    not read) when the connection is lost; after the resume it asks for the token again
    and goes out once."""

    async def main() -> None:
        asked = asyncio.Event()
        points: list[bytes | None] = []

        async def handler(session: sessionlayer.Session) -> None:
            async def watch() -> None:
                async for event in session.events():
                    if isinstance(event, ev.TokenPleaseIndication):
                        asked.set()
                    elif isinstance(event, ev.MajorSyncIndication):
                        points.append(event.user_data)

            watcher = asyncio.create_task(watch())
            try:
                async for _ in session:
                    pass
            finally:
                watcher.cancel()

        async with await sessionlayer.serve(handler, options=FAST) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port, options=FAST,
                                                config=TOKEN_AWAY)  # fmt: skip
            async with owned(client):
                assert not client._conn.machine.tokens_owned & Token.MAJOR_ACTIVITY
                transport = client._conn.transport
                assert transport is not None
                transport.pause_reading()  # (the token the server gives is never read)
                sync = asyncio.ensure_future(client.sync(major=True, user_data=b"cp"))
                async with asyncio.timeout(LIMIT):
                    await asyncio.shield(asked.wait())  # the server was asked for the token
                assert not sync.done()
                cut(client)
                serial = await asyncio.wait_for(sync, LIMIT)
                assert isinstance(serial, int) and client.resumes == 1
                await client.sync(major=True, user_data=b"next")  # (the session goes on)
                await client.release()
        assert points == [b"cp", b"next"]

    run(main())


def test_a_checkpoint_asked_for_in_an_outage_is_set_once_when_a_replay_is_cut() -> None:
    """The checkpoint is asked for while detached; the next connection is lost while its
    replay is still going out (the server does not read: the replay stalls); once the
    one after it is resumed, the checkpoint goes out once, behind the whole replay."""
    count = 256  # 16 MiB: more than the kernel holds for a peer that does not read

    async def main() -> None:
        gate = asyncio.Event()
        got: list[bytes] = []
        at_checkpoint: list[int] = []

        async def handler(session: sessionlayer.Session) -> None:
            session.on_checkpoint = lambda _: at_checkpoint.append(len(got))
            await gate.wait()  # (until then its connection pauses reading: the peer stalls)
            async for data in session:
                got.append(data)

        # (The server stops reading after 64 KiB unread: its kernel's receive buffer does
        # not grow either, and the replay is far more than the kernels hold.)
        slow_reader = dataclasses.replace(FAST, max_buffered_bytes=64 * 1024)
        async with await sessionlayer.serve(handler, options=slow_reader) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port, options=FAST)
            async with owned(client):
                await client.send(b"first")
                cut(client)
                await next_of(client, Interrupted)
                for i in range(count):
                    await client.send(b"%d:" % i + bytes(64 * 1024))
                sync = asyncio.ensure_future(client.sync(major=True, user_data=b"cp"))
                await next_of(client, Resumed)
                assert client._conn.replaying and not sync.done()  # (behind the replay)
                cut(client)
                await next_of(client, Interrupted)
                gate.set()
                serial = await asyncio.wait_for(sync, LIMIT)
                assert isinstance(serial, int) and client.resumes == 2
                await client.release()
        assert len(got) == count + 1 and got[-1].startswith(b"%d:" % (count - 1))
        assert at_checkpoint == [count + 1]  # once, and after every message before it

    run(main())
