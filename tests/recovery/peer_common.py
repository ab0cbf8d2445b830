"""What the network-namespace peers (``peer_server.py``, ``peer_client.py``) share: the
messages (message ``j`` of a direction is the same on both sides, so the receiver checks
each one: exactly once, in order), their options, and the JSON lines they report on."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

import sessionlayer
from sessionlayer import Options
from sessionlayer.recovery import Backoff

SIZES = (1, 9, 64, 300, 1200, 4000, 16000)
#: Until neither side's journal holds anything (``settle``), at most this long.
SETTLE_LIMIT = 10.0


def message(tag: bytes, j: int) -> bytes:
    """Message ``j`` of the ``tag`` direction (b"u": client to server, b"d": back)."""
    return b"%s%d:" % (tag, j) + bytes([j % 256]) * SIZES[(j * 7) % len(SIZES)]


class Checker:
    """Checks that the messages of one direction arrive in order, each once."""

    def __init__(self, tag: bytes) -> None:
        self.tag = tag
        self.count = 0
        self.errors: list[str] = []

    def check(self, data: bytes) -> None:
        if data != message(self.tag, self.count) and len(self.errors) < 5:
            self.errors.append(f"message {self.count}: got {data[:24]!r} ({len(data)} octets)")
        self.count += 1


def report(event: str, **fields: Any) -> None:
    """One JSON line on stdout (the test reads them)."""
    print(json.dumps({"event": event, **fields}), flush=True)


def arguments(parser: argparse.ArgumentParser) -> argparse.Namespace:
    parser.add_argument("--keepalive", type=float, default=0.3)
    parser.add_argument("--idle", type=float, default=1.0)
    parser.add_argument("--resume-timeout", type=float, default=30.0)
    parser.add_argument("--give-up", type=float, default=30.0)
    return parser.parse_args()


def options(args: argparse.Namespace) -> Options:
    """Short liveness (a probe after ``keepalive`` s of silence, the link given up after
    ``idle`` s) and short tries: a connect to an unreachable address fails after 0.5 s."""
    return Options(
        keepalive_interval=args.keepalive, idle_timeout=args.idle,
        resume_timeout=args.resume_timeout, connect_timeout=0.5, handshake_timeout=1.0,
        backoff=Backoff(first=0, cap=0.3, give_up=args.give_up),
    )  # fmt: skip


async def settle(session: sessionlayer.Session) -> None:
    """Wait until everything this side sent was confirmed: no acknowledgement point of
    ours is in flight (one crossing an FN aborts the session: tests/recovery/test_release.py).
    Polled, bounded: a journal has no event for it."""
    async with asyncio.timeout(SETTLE_LIMIT):
        while (journal := session._conn.journal) is not None and journal.held:
            await asyncio.sleep(0.01)
