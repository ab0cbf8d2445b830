"""``sessionlayer demo``: two peers on loopback, every SPDU they exchange shown.

A server and a client in one process: connect with a negotiated codec,
data both ways, a confirmed major synchronization point (a checkpoint),
and an orderly release.  The client's wire is decoded as it goes, so the
session layer can be watched at work.  Nothing to install, no network
beyond 127.0.0.1.
"""

from __future__ import annotations

import asyncio
from typing import TextIO

from .aio import Options, Session, connect, serve
from .dissect import StreamDissector, record_line
from .machine import SessionConfig
from .spdu.codes import FunctionalUnit

__all__ = ["run_demo"]

_UNITS = (
    FunctionalUnit.DUPLEX
    | FunctionalUnit.MINOR_SYNC
    | FunctionalUnit.MAJOR_SYNC
    | FunctionalUnit.RESYNC
    | FunctionalUnit.TYPED_DATA
    | FunctionalUnit.EXPEDITED
)


class _Tap:
    """Decodes what one endpoint reads and writes, one line per TPDU/SPDU."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.dissectors = {"out": StreamDissector(), "in": StreamDissector()}

    def __call__(self, direction: str, data: bytes) -> None:
        arrow = "client -> server" if direction == "out" else "server -> client"
        for record in self.dissectors[direction].feed(data):
            line = record_line(record).strip()
            if line.startswith("COTP DT") and record.tpdu is not None:
                continue  # the TSDU's SPDUs follow on their own lines
            self.out.write(f"  {arrow}  {line}\n")


async def _demo(out: TextIO) -> None:
    config = SessionConfig(functional_units=_UNITS)
    options = Options(keepalive_interval=None, idle_timeout=None)

    async def handler(session: Session) -> None:
        async for data in session:
            await session.send(data.upper())

    def say(text: str) -> None:
        out.write(f"\n{text}\n")

    async with await serve(
        handler, "127.0.0.1", 0, config=config, supported={"codec": ["json", "cbor"]}
    ) as server:
        say(f"server listening on 127.0.0.1:{server.port}; the client connects (COTP CR/CC, CN/AC)")
        tap = _Tap(out)
        session = await connect(
            "127.0.0.1", server.port, config=config, options=options,
            offers={"codec": ["msgpack", "json"]}, trace=tap,
        )  # fmt: skip
        say(f"session {session.id} open; negotiated {session.chosen}; sending two messages")
        for text in (b"hello", b"session layer"):
            await session.send(text)
            out.write(f"  received back: {await session.receive()!r}\n")
        say("a major synchronization point: a checkpoint the server confirms")
        serial = await session.sync(major=True)
        out.write(f"  confirmed checkpoint, serial number {serial}\n")
        say("orderly release: FINISH answered by DISCONNECT")
        await session.release()
        out.write(f"  state: {session.state}\n")


def run_demo(out: TextIO) -> int:
    asyncio.run(asyncio.wait_for(_demo(out), 30))
    return 0
