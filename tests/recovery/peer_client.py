"""A sessionlayer client for tests/recovery/test_netns.py (run inside a network namespace).

``peer_client.py HOST PORT``: opens a resumable session and reads commands on stdin, one
a line:

- ``send K``: send the next K messages (``peer_common.message(b"u", j)``); the server
  answers each with one of its own, which this side checks (in order, each once).  Once
  the answers to everything sent so far have arrived: ``{"event": "received", ...}``.
- ``release``: wait until neither side has anything unconfirmed, release the session,
  report ``done`` (counts, check errors, interruptions, resumes) and exit.

It reports ``connected``, each ``interrupted``, each failed resume try (``try_failed``) and
each ``resumed`` (with the tries it took) as JSON lines on stdout.  Any exception is
reported as ``failed`` (and the exit status is 1).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from peer_common import Checker, arguments, message, options, report, settle

import sessionlayer
from sessionlayer.machine.events import TypedDataIndication
from sessionlayer.recovery import Interrupted, Resumed


class FailedTries(logging.Handler):
    """Reports each failed resume try (the reconnector logs them at DEBUG)."""

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.msg, str) and record.msg.startswith("session %s: resume try"):
            report("try_failed", attempt=record.args[1], error=record.args[2])  # type: ignore[index]


async def main(args: argparse.Namespace) -> None:
    logger = logging.getLogger("sessionlayer")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(FailedTries())
    session = await sessionlayer.connect(args.host, args.port, options=options(args))
    report("connected", session=session.id, resumable=session.resumable)
    checker = Checker(b"d")
    sent = 0
    target = 0  # answers expected so far
    settled = asyncio.Event()

    async def watch() -> None:
        async for event in session.events():
            if isinstance(event, Interrupted):
                report("interrupted", reason=event.reason)
            elif isinstance(event, Resumed):
                report("resumed", outcome=event.outcome, attempts=event.attempts,
                       downtime=round(event.downtime, 3),
                       replayed=event.replayed_messages)  # fmt: skip
            elif isinstance(event, TypedDataIndication) and event.data == b"settled":
                settled.set()

    async def receive() -> None:
        async for data in session:
            checker.check(data)
            if checker.count == target:
                report("received", count=checker.count, errors=checker.errors)

    tasks = [asyncio.create_task(watch()), asyncio.create_task(receive())]
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    while line := (await stdin.readline()).decode().split():
        if line[0] == "send":
            target += int(line[1])
            while sent < target:
                await session.send(message(b"u", sent))
                sent += 1
        elif line[0] == "release":
            await settle(session)
            await session.send_typed(b"settle?")
            async with asyncio.timeout(10):
                await settled.wait()
            await session.release()
            break
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    report("done", sent=sent, received=checker.count, errors=checker.errors,
           interruptions=session.interruptions, resumes=session.resumes,
           state=session.state)  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    try:
        asyncio.run(main(arguments(parser)))
    except Exception as exc:
        report("failed", error=repr(exc))
        sys.exit(1)
