"""Files a long-running relay writes stay bounded on disk (sessionlayer/rotation.py): a
file rotates after the write that filled it, ``keep`` old ones at most; ``reopen`` starts a
new file after logrotate moved it; a rotation that cannot be done is said once.  A rotated
pcap: every file stands alone (its header, a handshake for each connection still open) and
Debian's tshark decodes each with nothing malformed, while the streams read across the
files carry exactly what was written."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from tests.tools import require_tshark

from sessionlayer.capture import PcapWriter, read_tcp_streams
from sessionlayer.rotation import MIN_SIZE, RotatingFile, parse_size
from sessionlayer.transport import Rfc1006Connection


def test_sizes() -> None:
    assert [parse_size(t) for t in ("4096", "64k", "100M", "1g", "2MiB", " 8 kb ")] == [
        4096, 64 << 10, 100 << 20, 1 << 30, 2 << 20, 8 << 10]  # fmt: skip
    for bad in ("", "0", "-1", "1.5M", "10T", "abc", "4095", "3k", "\u0664k"):
        with pytest.raises(ValueError, match="not a size"):
            parse_size(bad)


def test_a_full_file_rotates_after_its_write_and_keeps_at_most_keep(tmp_path: Path) -> None:
    path = tmp_path / "f.log"
    f = RotatingFile(path, max_bytes=10, keep=2)
    lines = [b"%d-123456789\n" % i for i in range(5)]  # (each one fills a file)
    for line in lines:
        f.write(line)
        assert f.full
        f.rotate_if_full("--log")
    f.close()
    assert f.rotations == 5
    assert path.read_bytes() == b""  # (the new one after the last)
    assert (tmp_path / "f.log.1").read_bytes() == lines[4]
    assert (tmp_path / "f.log.2").read_bytes() == lines[3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.log", "f.log.1", "f.log.2"]


def test_keep_zero_and_append_and_reopen_after_a_move(tmp_path: Path) -> None:
    path = tmp_path / "f.log"
    path.write_bytes(b"before\n")
    f = RotatingFile(path, max_bytes=100, keep=0)
    assert f.size == 7  # (appended to: what was there stays)
    f.write(b"x" * 100)
    f.rotate_if_full("--log")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.log"]  # no old one kept
    f.write(b"after\n")
    f.flush()
    path.rename(tmp_path / "moved.log")  # (logrotate)
    f.write(b"still the moved one\n")
    f.reopen()
    f.write(b"new\n")
    f.close()
    assert (tmp_path / "moved.log").read_bytes() == b"after\nstill the moved one\n"
    assert path.read_bytes() == b"new\n"


def test_a_rotation_that_fails_is_said_once_and_the_file_grows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f.log"
    f = RotatingFile(path, max_bytes=4, keep=1)

    def refused(src: str, dst: str) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("os.replace", refused)
    with caplog.at_level(logging.WARNING, "sessionlayer"):
        for _ in range(3):
            f.write(b"12345")
            f.rotate_if_full("--log")
    f.close()
    assert path.read_bytes() == b"12345" * 3
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and "cannot rotate: Permission denied" in warned[0]


def _pair() -> tuple[Rfc1006Connection, Rfc1006Connection, bytes, bytes]:
    initiator, responder = Rfc1006Connection("initiator"), Rfc1006Connection("responder")
    cr = initiator.connect(b"\x00\x01", b"\x00\x01", 8192)
    responder.receive_data(cr)
    cc = responder.accept()
    initiator.receive_data(cc)
    return initiator, responder, cr, cc


def test_a_rotated_pcap_stands_alone_in_every_file_and_loses_nothing(
    tmp_path: Path, libiec61850: list[dict[str, Any]]
) -> None:
    """Two connections carry libiec61850's SPDUs (real presentation and MMS inside) across
    a rotation every 1,500 octets."""
    tshark = require_tshark()
    spdus = [bytes.fromhex(v["session"]) for v in libiec61850
             if v["session"] and v["dir"] == "C->S" and "rust" not in v["name"]]  # fmt: skip
    assert spdus
    path = tmp_path / "relay.pcap"
    writer = PcapWriter(path, max_bytes=1500, keep=100)
    initiator, _, cr, cc = _pair()
    first = writer.open_stream(("127.0.0.1", 40001), ("127.0.0.1", 102), 1.0)
    second = writer.open_stream(("127.0.0.1", 40002), ("127.0.0.1", 102), 1.0)
    sent: dict[int, bytes] = {40001: b"", 40002: b""}
    for stream, port in ((first, 40001), (second, 40002)):
        stream.write("C->S", cr, 1.0)
        stream.write("S->C", cc, 1.0)
        sent[port] += cr
    for i in range(40):
        stream, port = (first, 40001) if i % 2 else (second, 40002)
        tpkt = initiator.send_tsdu(spdus[i % len(spdus)])
        stream.write("C->S", tpkt, 2.0 + i)
        sent[port] += tpkt
    first.close(50.0)
    second.close(50.0)
    writer.close()
    files = sorted(tmp_path.glob("relay.pcap*"), key=lambda p: -int(p.suffix[1:] or 0)
                   if p.suffix[1:].isdigit() else 0)  # fmt: skip
    assert writer.rotations >= 2 and len(files) == writer.rotations + 1
    got: dict[int, bytes] = {40001: b"", 40002: b""}
    for file in files:
        streams = read_tcp_streams(file)  # (each file: its own handshakes)
        for s in streams:
            if s.dst[1] == 102:
                got[s.src[1]] += s.data
        done = subprocess.run(
            [tshark, "-n", "-r", str(file), "-d", "tcp.port==102,tpkt", "-T", "fields",
             "-e", "frame.protocols", "-e", "_ws.malformed", "-e", "tcp.analysis.flags"],
            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr
        for line in done.stdout.splitlines():
            protocols, *rest = line.split("\t")
            assert not any(rest), (file.name, line)  # nothing malformed, no TCP anomaly
            assert "tcp" in protocols
    assert got == sent


def test_a_new_files_handshakes_do_not_count_toward_its_size(tmp_path: Path) -> None:
    """Many connections open: each new pcap file starts with their handshakes, more than
    ``max_bytes`` here; it still holds ``max_bytes`` of new packets before it rotates
    (it rotated at every write, keeping files of handshakes only)."""
    writer = PcapWriter(tmp_path / "many.pcap", max_bytes=1500, keep=1000)
    streams = [writer.open_stream(("127.0.0.1", 41000 + i), ("127.0.0.1", 102), 1.0)
               for i in range(20)]  # fmt: skip
    for i in range(200):
        streams[i % 20].write("C->S", bytes(100), 2.0)
    writer.close()
    assert writer.rotations > 3
    handshakes = 24 + 20 * 3 * (16 + 54)  # (the file header; a record header and a frame)
    for n in range(1, writer.rotations - 2):  # (each full one once all 20 were open: news)
        assert (tmp_path / f"many.pcap.{n}").stat().st_size >= handshakes + 1500


def test_a_file_closed_after_a_failed_write_is_not_rotated_open_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A write that reached max_bytes, then failed (the disk full): the file is closed, "not
    written from now on"; rotate_if_full must not rotate (dropping the oldest kept file)
    and open a new one, whose next write fails and warns again."""
    path = tmp_path / "log"
    rotating = RotatingFile(path, max_bytes=10, keep=2)
    rotating.write(b"x" * 10)
    rotating.close()  # (what the writer does when its write failed)
    rotating.rotate_if_full("--log")
    assert rotating.closed and sorted(p.name for p in tmp_path.iterdir()) == ["log"]
    assert rotating.write(b"more") == 0


@pytest.mark.parametrize("append", [True, False])
def test_a_new_file_is_its_owners_only(tmp_path: Path, append: bool) -> None:
    """A relay's ``--pcap`` and ``--log`` were made with the umask's mode (0644): any local
    user could read the captured sessions, the credentials of their connect requests in
    the clear where the relay ends TLS.  New files, rotated ones too, are 0600; a file
    that exists keeps its mode."""
    old = os.umask(0o022)
    try:
        f = RotatingFile(tmp_path / "cap", append=append, max_bytes=MIN_SIZE, keep=2)
        f.write(b"x" * MIN_SIZE)
        f.rotate_if_full("--pcap")
        f.write(b"y" * 10)
        f.close()
        kept = tmp_path / "kept"
        kept.write_bytes(b"before")
        kept.chmod(0o640)
        RotatingFile(kept, append=append).close()
    finally:
        os.umask(old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cap", "cap.1", "kept"]
    for name in ("cap", "cap.1"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
    assert (tmp_path / "cap").read_bytes() == b"y" * 10
    assert stat.S_IMODE(kept.stat().st_mode) == 0o640
    assert kept.read_bytes() == (b"before" if append else b"")
