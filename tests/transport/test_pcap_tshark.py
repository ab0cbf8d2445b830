"""Bytes from our RFC 1006 encoder, written by write_pcap, decoded by Debian's tshark.

tshark is an independent decoder: every TPKT/COTP frame must dissect as such,
with valid IP/TCP checksums and nothing marked malformed.  Runs whenever CI is
set (a missing tshark is then a failure); elsewhere it skips without tshark.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from tests.tools import require_tshark

from sessionlayer.capture import Direction, write_pcap
from sessionlayer.transport import Rfc1006Connection

EXPERT_ERROR = 0x800000  # _ws.expert.severity of "error"
FIELDS = [
    "frame.number",
    "frame.protocols",
    "_ws.malformed",
    "_ws.expert.severity",
    "ip.checksum.status",
    "tcp.checksum.status",
    "tcp.len",
    "cotp.type",
    "tpkt.length",
]



def _conversation(libiec61850: list[dict[str, Any]]) -> list[tuple[Direction, bytes]]:
    initiator = Rfc1006Connection("initiator")
    responder = Rfc1006Connection("responder")
    cr = initiator.connect(b"\x00\x01", b"\x00\x01", 8192)
    responder.receive_data(cr)
    cc = responder.accept()
    initiator.receive_data(cc)
    segments: list[tuple[Direction, bytes]] = [("C->S", cr), ("S->C", cc)]
    for vector in libiec61850:
        if vector["session"] and "rust" not in vector["name"]:
            sender = initiator if vector["dir"] == "C->S" else responder
            segments.append((vector["dir"], sender.send_tsdu(bytes.fromhex(vector["session"]))))
    big = bytes(range(256)) * 80  # 20480 octets: three DTs of at most 8192
    segments.append(("S->C", responder.send_tsdu(big)))
    return segments


def _dissect(tshark: str, path: Path) -> list[dict[str, str]]:
    command = [tshark, "-n", "-r", str(path), "-o", "tcp.check_checksum:TRUE"]
    command += ["-o", "ip.check_checksum:TRUE", "-T", "fields", "-E", "separator=/t"]
    for name in FIELDS:
        command += ["-e", name]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    rows = [line.split("\t") for line in done.stdout.splitlines()]
    return [dict(zip(FIELDS, row, strict=True)) for row in rows]


def test_tshark_decodes_our_tpkt_cotp(tmp_path: Path, libiec61850: list[dict[str, Any]]) -> None:
    tshark = require_tshark()
    path = tmp_path / "rfc1006.pcap"
    segments = _conversation(libiec61850)
    write_pcap(path, segments)
    rows = _dissect(tshark, path)
    assert len(rows) == 3 + len(segments) + 3  # handshake, data, FINs
    for row in rows:
        assert row["_ws.malformed"] == "", row
        severities = [int(s) for s in row["_ws.expert.severity"].split(",") if s]
        assert max(severities, default=0) < EXPERT_ERROR, row
        assert row["ip.checksum.status"] == "1", row
        assert row["tcp.checksum.status"] == "1", row
    data_rows = [row for row in rows if row["tcp.len"] not in ("", "0")]
    assert len(data_rows) == len(segments)
    assert all(":tpkt:cotp" in row["frame.protocols"] for row in data_rows)
    assert data_rows[0]["cotp.type"] == "0x0e"  # CR
    assert data_rows[1]["cotp.type"] == "0x0d"  # CC
    assert ":ses:" in data_rows[2]["frame.protocols"]  # the CN, under COTP DT
    assert data_rows[-1]["cotp.type"] == "0x0f,0x0f,0x0f"
    assert data_rows[-1]["tpkt.length"] == "8196,8196,4109"  # 20480 - 2 * 8189 + 3 + 4
