"""``sessionlayer relay --pcap FILE --log FILE`` between the real libiec61850 client and
server: Debian's tshark decodes both legs of the capture (one TCP stream per leg
connection, as seen before TLS) with nothing malformed and no expert error, down to MMS;
the log has one JSON line per SPDU each way on each leg, with the session id."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path
from typing import Any

from tests.relay.cliproc import RelayProcess
from tests.relay.conftest import MmsServer, run_mms_client
from tests.tools import require_tshark

EXPERT_ERROR = 0x800000
#: SI codes each leg must show: CN, AC, DT (GT shares SI 1), FN, DN.
EXPECTED = {13, 14, 1, 9, 10}


def pdml(tshark: str, path: Path, ports: list[int]) -> ET.Element:
    command = [tshark, "-n", "-r", str(path), "-T", "pdml"]
    for port in ports:
        command += ["-d", f"tcp.port=={port},tpkt"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return ET.fromstring(done.stdout)


def field(packet: ET.Element, name: str) -> list[str]:
    return [f.get("show", "") for f in packet.iter("field") if f.get("name") == name]


def test_tshark_decodes_both_legs_and_the_log_has_every_spdu(
    mms_server: MmsServer, tmp_path: Path
) -> None:
    tshark = require_tshark()
    capture, log = tmp_path / "relay.pcap", tmp_path / "relay.jsonl"
    with RelayProcess("--listen", "127.0.0.1:0", "--upstream", f"127.0.0.1:{mms_server.port}",
                      "--pcap", str(capture), "--log", str(log)) as relay:  # fmt: skip
        result = run_mms_client(relay.port, "read,dataset,write,release")
        assert result.returncode == 0, result.stderr
        code, _, stderr = relay.stop()
    assert code == 0, stderr
    assert "Traceback" not in stderr

    root = pdml(tshark, capture, [relay.port, mms_server.port])
    kinds: dict[str, set[int]] = defaultdict(set)  # by the leg's server port
    mms = 0
    for packet in root.iter("packet"):
        protos = [p.get("name") for p in packet.iter("proto")]
        assert "_ws.malformed" not in protos, protos
        severities = [int(s or 0) for s in field(packet, "_ws.expert.severity")]
        assert max(severities, default=0) < EXPERT_ERROR, field(packet, "_ws.expert.message")
        ports = {int(p) for p in field(packet, "tcp.port")}
        leg = "client" if relay.port in ports else "upstream"
        kinds[leg] |= {int(v) for v in field(packet, "ses.type")}
        mms += "mms" in protos
    assert kinds["client"] >= EXPECTED, kinds
    assert kinds["upstream"] >= EXPECTED, kinds
    assert mms >= 8  # tshark reached MMS on both legs (requests and responses)

    records = [json.loads(line) for line in log.read_text().splitlines()]
    sessions = {r["session"] for r in records}
    assert all(len(s) == 32 for s in sessions)
    last = [r for r in records if r["session"] == records[-1]["session"]]
    seen = {(r["leg"], r["dir"], r.get("spdu") or r.get("tpdu")) for r in last}
    for leg, direction, kind in [("client", "in", "CR"), ("client", "out", "CC"),
                                 ("client", "in", "CN"), ("upstream", "out", "CN"),
                                 ("upstream", "in", "AC"), ("client", "out", "AC"),
                                 ("client", "in", "FN"), ("upstream", "out", "FN"),
                                 ("upstream", "in", "DN"), ("client", "out", "DN")]:  # fmt: skip
        assert (leg, direction, kind) in seen, (leg, direction, kind)
    data: Any = [r for r in last if r.get("spdu") == "DT" and r["leg"] == "upstream"]
    assert max(r["user_data"] for r in data) > 40_000  # the data set's response


def test_log_and_pcap_rotate_by_size_and_start_again_on_sighup(
    mms_server: MmsServer, tmp_path: Path
) -> None:
    """``--rotate-size`` bounds both files (``--rotate-keep`` old ones each, every pcap
    file decodes on its own); SIGHUP after logrotate moved them starts new ones."""
    tshark = require_tshark()
    capture, log = tmp_path / "relay.pcap", tmp_path / "relay.jsonl"
    with RelayProcess("--listen", "127.0.0.1:0", "--upstream", f"127.0.0.1:{mms_server.port}",
                      "--pcap", str(capture), "--log", str(log), "--rotate-size", "4k",
                      "--rotate-keep", "3") as relay:  # fmt: skip
        result = run_mms_client(relay.port, "read,dataset,write,release")
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "relay.jsonl.1").exists() and (tmp_path / "relay.pcap.1").exists()
        assert not (tmp_path / "relay.jsonl.4").exists()
        log.rename(tmp_path / "moved.jsonl")
        capture.rename(tmp_path / "moved.pcap")
        relay.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while not (log.exists() and capture.exists()):  # (polling files; bounded)
            assert time.monotonic() < deadline, relay.stderr()
            time.sleep(0.02)
        result = run_mms_client(relay.port, "read,release")
        assert result.returncode == 0, result.stderr
        code, _, stderr = relay.stop()
    assert code == 0, stderr
    assert "Traceback" not in stderr
    records: dict[str, list[Any]] = {}
    for path in tmp_path.glob("*.jsonl*"):
        assert path.stat().st_size < 4 * 1024 + 2048, path  # (rotated after one record)
        records[path.name] = [json.loads(line) for line in path.read_text().splitlines()]
    before = {r["session"] for r in records.pop("moved.jsonl")}
    after = [r for rs in records.values() for r in rs if r["session"] not in before]
    assert any(r.get("spdu") == "CN" for r in after)  # the second client's, in new files
    for path in [*tmp_path.glob("relay.pcap*"), tmp_path / "moved.pcap"]:
        root = pdml(tshark, path, [relay.port, mms_server.port])
        for packet in root.iter("packet"):
            protos = [p.get("name") for p in packet.iter("proto")]
            assert "_ws.malformed" not in protos, (path.name, protos)
