"""``sessionlayer decode --pcap`` on captures that are not whole: segments not captured,
frames cut by the snapshot length.  Each crafted capture is also dissected by Debian's
tshark (the independent decoder), and decode must show an SPDU in every frame where tshark
shows one, and none elsewhere.  tshark is required in CI; elsewhere it skips without it.
"""

from __future__ import annotations

import io
import json
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import dpkt
from tests.tools import require_tshark

from sessionlayer.capture import Direction, _connection_packets, read_tcp_streams
from sessionlayer.cli import main
from sessionlayer.dissect import StreamDissector

CLIENT, SERVER = ("127.0.0.1", 40000), ("127.0.0.1", 102)


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(args), stdout=out, stderr=err, stdin=io.StringIO(""))
    return code, out.getvalue(), err.getvalue()


def conversation(vectors_dir: Path) -> list[tuple[Direction, bytes]]:
    """The TCP payloads of the libiec61850 read capture, in the order they were sent
    (CR, CC, CN, AC, then MMS reads in DTs, FN, DN)."""
    client, server = read_tcp_streams(vectors_dir / "libiec61850-read.pcapng")
    pieces = [(seg.frame, direction, stream.data[seg.offset : seg.offset + seg.length])
              for direction, stream in (("C->S", client), ("S->C", server))
              for seg in stream.segments]  # fmt: skip
    return [(direction, payload) for _, direction, payload in sorted(pieces)]


def write(path: Path, frames: list[bytes]) -> Path:
    with path.open("wb") as f:
        writer = dpkt.pcap.Writer(f, snaplen=262144, linktype=dpkt.pcap.DLT_EN10MB)
        for index, frame in enumerate(frames):
            writer.writepkt(frame, ts=1_700_000_000 + index / 1000)
    return path


def frames_of(segments: list[tuple[Direction, bytes]]) -> list[bytes]:
    return [bytes(p) for p in _connection_packets(CLIENT, SERVER, segments, 65483)]


def tshark_ses(path: Path) -> Counter[int]:
    """How many SPDUs tshark shows in each frame."""
    command = [require_tshark(), "-n", "-r", str(path), "-Y", "ses", "-T", "fields",
               "-e", "frame.number", "-e", "ses.type"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.stdout.strip(), done.stderr
    counts: Counter[int] = Counter()
    for line in done.stdout.splitlines():
        number, types = line.split("\t")
        counts[int(number)] = len(types.split(","))
    return counts


def decode_ses(path: Path) -> tuple[int, Counter[int], list[str]]:
    """decode's exit status, how many SPDUs it shows in each frame, its stderr lines."""
    code, out, err = run("decode", "--json", "--pcap", str(path))
    spdus: list[dict[str, Any]] = json.loads(out)
    return code, Counter(spdu["frame"] for spdu in spdus), err.splitlines()


def whole(tmp_path: Path, vectors_dir: Path) -> int:
    """How many SPDUs decode shows in the whole capture."""
    path = write(tmp_path / "whole.pcap", frames_of(conversation(vectors_dir)))
    code, counts, errors = decode_ses(path)
    assert (code, errors) == (0, [])
    return sum(counts.values())


def test_a_segment_not_captured_is_reported_and_decoding_resumes(
    tmp_path: Path, vectors_dir: Path
) -> None:
    """The CN sent in three segments, the middle one not captured: the CN is lost (before:
    its TPKT was completed with the next segments' octets, and the stream's framing lost
    with it), and every later SPDU of that direction decodes, as in tshark."""
    segments = conversation(vectors_dir)
    cn = segments[2][1]
    assert segments[2][0] == "C->S" and cn[7:8] == b"\x0d" and len(cn) > 120  # the CN
    segments[2:3] = [("C->S", cn[:60]), ("C->S", cn[60:120]), ("C->S", cn[120:])]
    frames = frames_of(segments)
    path = write(tmp_path / "lost.pcap", frames[:6] + frames[7:])  # without frame 7
    code, ours, errors = decode_ses(path)
    assert ours == tshark_ses(path)
    assert 6 not in ours and 7 not in ours and ours[8] == 1  # the CN lost; the AC
    assert sum(ours.values()) == whole(tmp_path, vectors_dir) - 1  # all but the CN
    assert errors == ["sessionlayer decode: 60 octets not captured before frame 7"]
    assert code == 2


def test_frames_cut_by_the_snapshot_length(tmp_path: Path, vectors_dir: Path) -> None:
    """Captured with a snapshot length of 154 octets (100 of TCP payload): the TPKTs longer
    than that are lost, each with an error line, and every other one decodes (before: the
    CN was built from unrelated octets, and nothing after it decoded)."""
    frames = frames_of(conversation(vectors_dir))
    path = write(tmp_path / "snap.pcap", [frame[:154] for frame in frames])
    code, ours, errors = decode_ses(path)
    theirs = tshark_ses(path)
    assert ours == theirs
    long = [n for n, frame in enumerate(frames, 1) if len(frame) > 154]
    assert long and not set(long) & set(ours) and len(ours) >= 8
    assert len(errors) == len(long)  # (each is followed by a frame of its direction)
    assert all(" octets not captured before frame " in line for line in errors)
    assert code == 2


def test_a_gap_at_a_tpkt_boundary_loses_only_what_it_held(
    tmp_path: Path, vectors_dir: Path
) -> None:
    """A whole TPKT not captured: the next one decodes at once."""
    frames = frames_of(conversation(vectors_dir))
    dropped = 9  # an MMS read request (GT+DT) from the client
    path = write(tmp_path / "drop.pcap", frames[: dropped - 1] + frames[dropped:])
    code, ours, errors = decode_ses(path)
    assert ours == tshark_ses(path)
    assert sum(ours.values()) == whole(tmp_path, vectors_dir) - 2  # all but a GT+DT
    assert len(errors) == 1 and errors[0].endswith("octets not captured before frame 10")
    assert code == 2


def test_dissector_resynchronises_after_a_gap() -> None:
    """Fed segment by segment: after gap(), segments that do not start a TPKT are
    skipped; what the gap cut is dropped, not joined to what follows."""
    dt = bytes.fromhex("0300000b02f080") + bytes.fromhex("01000100")  # GT+DT, no data
    dissector = StreamDissector()
    assert len(dissector.feed(dt)) == 3  # COTP DT, GT, DT
    assert dissector.feed(dt[:5]) == []  # a TPKT cut by ...
    [gap] = dissector.gap(9, frame=4)
    assert (gap.error, gap.offset) == ("9 octets not captured before frame 4", 16)
    assert dissector.feed(dt[3:]) == []  # (the rest of the one after it)
    assert dissector.feed(b"\x03\x00\x00\x05\x00") == []  # 03 00 but too short for COTP
    records = dissector.feed(dt)
    assert [r.offset for r in records] == [16 + 8 + 5] * 3
    assert records[1].tsdu_index == 1
    assert dissector.finish() == []


def test_a_capture_cut_short_decodes_up_to_the_cut(tmp_path: Path, vectors_dir: Path) -> None:
    """The file ends partway through a packet: every frame before it decodes, as in
    tshark, then one error line, exit status 2 (before: "unreadable capture: got 8, 16
    needed at least" and nothing decoded)."""
    frames = frames_of(conversation(vectors_dir))
    data = write(tmp_path / "whole.pcap", frames).read_bytes()
    dn = len(frames) - 3  # the DN, before the FINs
    start = len(write(tmp_path / "before.pcap", frames[: dn - 1]).read_bytes())
    for cut in (start + 8, start + 16 + 40):  # in its record header, in its data
        path = tmp_path / "cut.pcap"
        path.write_bytes(data[:cut])
        code, ours, errors = decode_ses(path)
        assert ours == tshark_ses(path) and max(ours) == dn - 1  # the FN, and all before
        assert errors == [f"sessionlayer decode: capture cut short after frame {dn - 1} (the"
                          f" file ends partway through frame {dn})"]  # fmt: skip
        assert code == 2


def test_pcapng_interfaces_each_with_their_link_type(tmp_path: Path, vectors_dir: Path) -> None:
    """Interface 0 Ethernet (HTTP), interface 1 raw IP in nanoseconds (the OSI
    association), their packets interleaved: decode shows what tshark shows, in time order
    (before: every packet was read as Ethernet in microseconds, "no TPKT stream found")."""
    from tests.test_capture import _epb, _idb, _shb

    web = [("C->S", b"GET / HTTP/1.0\r\n\r\n"), ("S->C", b"HTTP/1.0 200 OK\r\n\r\n")]
    http = [bytes(p) for p in _connection_packets(("10.0.0.1", 5555), ("10.0.0.2", 80), web,
                                                  1460)]  # fmt: skip
    osi = [bytes(dpkt.ethernet.Ethernet(f).data) for f in frames_of(conversation(vectors_dir))]
    t = 1_700_000_000
    blocks = [_shb(), _idb(1), _idb(101, tsresol=9)]
    blocks += [_epb(0, t * 10**6 + 2 * i * 1000, frame) for i, frame in enumerate(http)]
    blocks += [_epb(1, t * 10**9 + (2 * i + 1) * 10**6, ip) for i, ip in enumerate(osi)]
    path = tmp_path / "two.pcapng"
    path.write_bytes(b"".join(blocks))
    code, out, err = run("decode", "--pcap", str(path))
    assert (code, err) == (0, "")
    shown = [int(line.split()[0][1:]) for line in out.splitlines()]
    assert shown == sorted(shown)
    assert shown[0] == len(http) + 4 and shown[-1] == len(http) + len(osi) - 3  # CR ... DN
    _, ours, _ = decode_ses(path)
    assert ours == tshark_ses(path) and len(ours) == 12


def test_a_capture_begun_inside_a_tpkt_decodes_from_the_next_one(
    tmp_path: Path, vectors_dir: Path
) -> None:
    """Capture started in the middle of the CN (no SYN, the CN's first segment not
    captured): that direction decodes from its first segment that starts a TPKT, after one
    line saying what came before it, as in tshark (before: the whole direction was skipped,
    its stream not taken for a TPKT stream)."""
    segments = conversation(vectors_dir)
    cn = segments[2][1]
    assert segments[2][0] == "C->S" and cn[7:8] == b"\x0d" and len(cn) > 120  # the CN
    segments[2:3] = [("C->S", cn[:60]), ("C->S", cn[60:120]), ("C->S", cn[120:])]
    path = write(tmp_path / "late.pcap", frames_of(segments)[6:])  # from the CN's 2nd piece
    code, ours, errors = decode_ses(path)
    assert ours == tshark_ses(path)
    assert 1 not in ours and 2 not in ours and ours[3] == 1  # the CN's end; the AC
    assert sum(ours.values()) == whole(tmp_path, vectors_dir) - 1  # all but the CN
    skipped = len(cn) - 60
    assert errors == [f"sessionlayer decode: {skipped} octets before frame 4 not decoded"
                      " (the capture starts inside the connection)"]  # fmt: skip
    assert code == 2
