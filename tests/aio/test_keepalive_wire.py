"""Keepalive probes on the wire stay valid ISO 8327, as Debian's tshark reads them.

A relay between a sessionlayer client and server records every byte each way.  The
client probes after a short silence: a PLEASE TOKENS SPDU with an empty parameter field
(``02 00``), answered with a GIVE TOKENS SPDU with an empty parameter field (``01 00``),
each one TSDU in a TPKT + COTP DT.  The recorded conversation is written as a pcap and
dissected by tshark, an independent decoder: the probe must read as Please Token, the
answer as Give Token, with nothing malformed in the whole conversation.  With CI set a
missing tshark fails the test instead of skipping it.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

from tests.tools import require_tshark

import sessionlayer
from sessionlayer import Options
from sessionlayer.agent import PING, PONG
from sessionlayer.capture import Direction, write_pcap
from sessionlayer.transport import Data, TpktParser, decode_tpdu

EXPERT_ERROR = 0x800000  # _ws.expert.severity of "error"


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 8))  # type: ignore[arg-type]



class Relay:
    """A TCP relay to ``target`` that records what passes, in order, each way."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.chunks: list[tuple[Direction, bytes]] = []
        self.tsdus: dict[Direction, list[bytes]] = {"C->S": [], "S->C": []}
        self.seen = {PING: asyncio.Event(), PONG: asyncio.Event()}
        self._parsers = {"C->S": TpktParser(), "S->C": TpktParser()}
        self._tasks: set[asyncio.Task[None]] = set()

    async def _pump(self, direction: Direction, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> None:  # fmt: skip
        try:
            while data := await reader.read(65536):
                self.chunks.append((direction, data))
                for payload in self._parsers[direction].feed(data):
                    tpdu = decode_tpdu(payload)
                    if isinstance(tpdu, Data):  # one TSDU per DT here: all are small
                        self.tsdus[direction].append(tpdu.user_data)
                        wanted = PING if direction == "C->S" else PONG
                        if tpdu.user_data == wanted:
                            self.seen[wanted].set()
                writer.write(data)
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:  # fmt: skip
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        await asyncio.gather(
            self._pump("C->S", reader, up_writer), self._pump("S->C", up_reader, writer)
        )

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[int]:
        def start(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.ensure_future(self._connection(reader, writer))
            self._tasks.add(task)

        server = await asyncio.start_server(start, "127.0.0.1", 0)
        try:
            yield server.sockets[0].getsockname()[1]
        finally:
            server.close()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await server.wait_closed()


async def record_keepalive() -> tuple[Relay, int]:
    """A session through the relay that stays quiet until a probe went both ways."""
    proceed = asyncio.Event()

    async def handler(session: sessionlayer.Session) -> None:
        await proceed.wait()
        await session.send(b"after the probe")
        await session.receive()

    # Only the client probes (the server's interval is far away); nobody gives up early.
    client_opts = Options(keepalive_interval=0.1, idle_timeout=None)
    server_opts = Options(keepalive_interval=60, idle_timeout=None)
    async with await sessionlayer.serve(handler, options=server_opts) as server:
        relay = Relay(server.port)
        async with relay.running() as port:
            async with await sessionlayer.connect(
                "127.0.0.1", port, options=client_opts
            ) as session:
                await asyncio.wait_for(relay.seen[PING].wait(), 4)
                await asyncio.wait_for(relay.seen[PONG].wait(), 4)
                proceed.set()
                assert await session.receive() == b"after the probe"
                await session.send(b"bye")
        return relay, server.port


def test_probe_and_answer_bytes() -> None:
    relay, _ = run(record_keepalive())
    # PT and GT, each an SPDU with an empty parameter field, each a TSDU of its own.
    assert bytes.fromhex("0200") == PING and bytes.fromhex("0100") == PONG
    assert PING in relay.tsdus["C->S"]
    assert PONG in relay.tsdus["S->C"]
    # The probes did not disturb the session: the data after them arrived.
    assert relay.tsdus["C->S"].index(PING) < len(relay.tsdus["C->S"]) - 1
    wire = b"".join(data for direction, data in relay.chunks if direction == "C->S")
    assert bytes.fromhex("0300 0009 02f0 80 0200") in wire  # TPKT + COTP DT (EOT) + PT
    wire = b"".join(data for direction, data in relay.chunks if direction == "S->C")
    assert bytes.fromhex("0300 0009 02f0 80 0100") in wire  # TPKT + COTP DT (EOT) + GT


def test_tshark_reads_probes_as_please_and_give_tokens(tmp_path: Path) -> None:
    tshark = require_tshark()
    relay, port = run(record_keepalive())
    path = tmp_path / "keepalive.pcap"
    write_pcap(path, relay.chunks, server=("127.0.0.1", port))
    # The session user data here is ours (a hello, b"bye"), not presentation PDUs: stop the
    # dissection at the session layer, so that "malformed" can only be about X.225.
    command = [tshark, "-n", "-r", str(path), "-d", f"tcp.port=={port},tpkt"]
    command += ["--disable-protocol", "pres", "-T", "pdml"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    root = ET.fromstring(done.stdout)

    spdus: list[tuple[str, str, str]] = []  # (type, length, showname) of each SPDU
    for packet in root.iter("packet"):
        names = [proto.get("name") for proto in packet.iter("proto")]
        fields = list(packet.iter("field"))
        assert not any(f.get("name") == "_ws.malformed" for f in fields), names
        assert "_ws.malformed" not in names
        severities = [int(f.get("show", "0")) for f in fields
                      if f.get("name") == "_ws.expert.severity"]  # fmt: skip
        assert max(severities, default=0) < EXPERT_ERROR, names
        for proto in packet.iter("proto"):
            if proto.get("name") != "ses":
                continue
            kinds = [f for f in proto.iter("field") if f.get("name") == "ses.type"]
            lengths = [f for f in proto.iter("field") if f.get("name") == "ses.length"]
            for kind, length in zip(kinds, lengths, strict=False):
                spdus.append((kind.get("show", ""), length.get("show", ""),
                              kind.get("showname", "")))  # fmt: skip

    please = [s for s in spdus if s[0] == "2" and s[1] == "0"]
    give = [s for s in spdus if s[0] == "1" and s[1] == "0"]
    assert please and "please token" in please[0][2].lower(), spdus
    assert give and "give token" in give[0][2].lower(), spdus
