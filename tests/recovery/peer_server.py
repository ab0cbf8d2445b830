"""A sessionlayer server for tests/recovery/test_netns.py (run inside a network namespace).

Listens on every address, prints ``{"event": "listening", "port": ...}``; for its one
session it checks every message the client sends (``peer_common.message(b"u", j)``, in
order) and answers each with the next of its own (``message(b"d", j)``).  It reports the
session's ``accepted`` (with the peer's address), each ``interrupted`` and ``resumed``
(with the peer's address then), and at the end ``ended`` with the counts and any error;
then it exits.  A typed data ``settle?`` is answered with ``settled`` once nothing this
side sent waits for confirmation (so that the client's release crosses nothing).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from peer_common import Checker, arguments, message, options, report, settle

import sessionlayer
from sessionlayer.machine.events import TypedDataIndication
from sessionlayer.recovery import Interrupted, Resumed


async def main(args: argparse.Namespace) -> None:
    ended = asyncio.Event()

    async def handler(session: sessionlayer.Session) -> None:
        report("accepted", peer=list(session.peer[:2]), session=session.id)
        checker = Checker(b"u")
        sent = 0
        error = None

        async def watch() -> None:
            async for event in session.events():
                if isinstance(event, Interrupted):
                    report("interrupted", reason=event.reason)
                elif isinstance(event, Resumed):
                    report("resumed", peer=list(session.peer[:2]), outcome=event.outcome,
                           replayed=event.replayed_messages)  # fmt: skip
                elif isinstance(event, TypedDataIndication) and event.data == b"settle?":
                    await settle(session)
                    await session.send_typed(b"settled")

        watcher = asyncio.create_task(watch())
        try:
            async for data in session:
                checker.check(data)
                await session.send(message(b"d", sent))
                sent += 1
        except Exception as exc:  # reported; the test fails on it
            error = repr(exc)
        finally:
            watcher.cancel()
            with contextlib.suppress(BaseException):
                await watcher
            report("ended", received=checker.count, sent=sent, errors=checker.errors,
                   interruptions=session.interruptions, resumes=session.resumes,
                   error=error)  # fmt: skip
            ended.set()

    async with await sessionlayer.serve(handler, "0.0.0.0", 0, options=options(args)) as server:
        report("listening", port=server.port)
        await ended.wait()  # (the test kills this process if it never comes)


if __name__ == "__main__":
    asyncio.run(main(arguments(argparse.ArgumentParser(description=__doc__))))
