"""Every SPDU of a resume decodes in Debian's tshark with nothing malformed: the first
connection (CN with the recovery hello and symmetric synchronize, AC with the token, DTs,
acknowledgement MIP/MIA), the resumed one (CN with the resume token and count, AC with the
outcome, the replayed DTs; a fast connect: the CN in 128-octet DTs right behind the CR),
a checkpoint (MAP/MAA) and the release.  The client's trace is
split into its TCP connections (each begins with the client's COTP CR), written as pcaps,
and dissected; with CI set a missing tshark fails."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.tools import require_tshark

import sessionlayer
from sessionlayer.capture import Direction, write_pcap
from sessionlayer.recovery import Resumed

from .helpers import FAST, LIMIT, cut, next_of

EXPERT_ERROR = 0x800000
#: SI codes (tshark's ses.type) each connection must show.
FIRST = {13: "CN", 14: "AC", 1: "DT", 49: "MIP", 50: "MIA"}
RESUMED = {13: "CN", 14: "AC", 1: "DT", 41: "MAP", 42: "MAA", 9: "FN", 10: "DN"}


def _is_cr(data: bytes) -> bool:
    return len(data) >= 6 and data[:2] == b"\x03\x00" and data[5] & 0xF0 == 0xE0


async def conversation() -> tuple[list[list[tuple[Direction, bytes]]], int]:
    links: list[list[tuple[Direction, bytes]]] = []

    def trace(direction: str, data: bytes) -> None:
        if direction == "out" and _is_cr(data):
            links.append([])
        links[-1].append(("C->S" if direction == "out" else "S->C", bytes(data)))

    async def echo(session: sessionlayer.Session) -> None:
        async for data in session:
            await session.send(data)

    opts = dataclasses.replace(FAST, ack_interval=0.01)
    async with await sessionlayer.serve(echo, options=opts) as server:
        session = await sessionlayer.connect("127.0.0.1", server.port, options=opts,
                                             trace=trace)  # fmt: skip
        for i in range(20):
            await session.send(b"before %d" % i)
            assert await asyncio.wait_for(session.receive(), LIMIT) == b"before %d" % i
        journal = session._conn.journal
        assert journal is not None
        async with asyncio.timeout(LIMIT):  # an acknowledgement point is set, and confirmed
            while journal.acked < 20:
                await asyncio.sleep(0.005)
        await session.send(b"lost?")
        cut(session)
        await session.send(b"while away")
        await next_of(session, Resumed)
        for expected in (b"lost?", b"while away"):
            assert await asyncio.wait_for(session.receive(), LIMIT) == expected
        await session.sync(major=True, user_data=b"checkpoint")
        await session.release()
        port = server.port
    return links, port


def test_tshark_reads_every_spdu_of_a_resume(tmp_path: Path) -> None:
    tshark = require_tshark()
    links, port = asyncio.run(asyncio.wait_for(conversation(), 30))
    assert len(links) == 2
    # The resume is a fast connect (the first connection's welcome offered it): the CN in
    # 128-octet DTs right behind the CR, before the server's CC.
    assert [d for d, _ in links[1][:2]] == ["C->S", "C->S"], links[1][:3]
    assert links[1][1][1][5] == 0xF0 and len(links[1][1][1]) > 132
    for number, (chunks, expected) in enumerate(zip(links, (FIRST, RESUMED), strict=True)):
        path = tmp_path / f"link{number}.pcap"
        write_pcap(path, chunks, client=("127.0.0.1", 40000 + number), server=("127.0.0.1", port))
        command = [tshark, "-n", "-r", str(path), "-d", f"tcp.port=={port},tpkt", "-T", "pdml",
                   "--disable-protocol", "pres", "--disable-protocol", "t125"]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        seen: set[int] = set()
        for packet in ET.fromstring(done.stdout).iter("packet"):
            fields = list(packet.iter("field"))
            names = [proto.get("name") for proto in packet.iter("proto")]
            assert "_ws.malformed" not in names, (number, names)
            severities = [int(f.get("show", "0")) for f in fields
                          if f.get("name") == "_ws.expert.severity"]  # fmt: skip
            assert max(severities, default=0) < EXPERT_ERROR, (number, names)
            seen |= {int(f.get("show", "-1")) for f in fields if f.get("name") == "ses.type"}
        missing = {name for code, name in expected.items() if code not in seen}
        assert not missing, (number, missing, sorted(seen))
