"""Reading TCP streams from pcap/pcapng (real captures, crafted ones) and write_pcap."""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path
from typing import Any

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessionlayer.capture import (
    Direction,
    Gap,
    Segment,
    Stream,
    read_capture,
    read_tcp_streams,
    write_pcap,
)
from sessionlayer.errors import DecodeError
from sessionlayer.transport import (
    ConnectRequested,
    Rfc1006Connection,
    TpktParser,
    TransportConnected,
    TsduReceived,
)

V4_A, V4_B = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])


def _vector_frames(libiec61850: list[dict[str, Any]], direction: str) -> list[bytes]:
    return [
        bytes.fromhex(v["tpkt"] + v["cotp"] + v["session"])
        for v in libiec61850
        if v["dir"] == direction
        and v["frame"] in (4, 6, 8, 9, 10, 11)
        and "rust server" not in v["name"]
    ]


def test_read_capture(vectors_dir: Path, libiec61850: list[dict[str, Any]]) -> None:
    client, server = read_tcp_streams(vectors_dir / "libiec61850-read.pcapng")
    assert (client.src, client.dst) == (("127.0.0.1", 36278), ("127.0.0.1", 10102))
    assert (server.src, server.dst) == (client.dst, client.src)
    assert (len(client.data), len(server.data), client.missing) == (421, 524, 0)
    assert client.data.startswith(b"".join(_vector_frames(libiec61850, "C->S")))
    assert server.data.startswith(b"".join(_vector_frames(libiec61850, "S->C")))
    assert [s.frame for s in client.segments] == [4, 8, 10, 12, 14, 16, 18]
    assert client.segments[0] == Segment(4, client.segments[0].timestamp, 0, 22)
    assert client.locate(22).frame == 8
    assert client.locate(420).frame == 18
    with pytest.raises(IndexError):
        client.locate(421)


def test_read_abort_capture(vectors_dir: Path, libiec61850: list[dict[str, Any]]) -> None:
    client, _server = read_tcp_streams(vectors_dir / "libiec61850-abort.pcapng")
    [ab] = [v for v in libiec61850 if v["name"].startswith("AB SPDU")]
    frame = bytes.fromhex(ab["tpkt"] + ab["cotp"] + ab["session"])
    assert client.data.endswith(frame)
    assert client.locate(len(client.data) - len(frame)).frame == ab["frame"]


def test_replay_capture_through_connections(vectors_dir: Path) -> None:
    client, server = read_tcp_streams(vectors_dir / "libiec61850-read.pcapng")
    responder = Rfc1006Connection("responder")
    events = responder.receive_data(client.data[:22])
    assert isinstance(events[0], ConnectRequested)
    assert responder.accept() == server.data[:22]
    tsdus = responder.receive_data(client.data[22:])
    assert len(tsdus) == 6 and all(isinstance(e, TsduReceived) for e in tsdus)
    initiator = Rfc1006Connection()
    assert initiator.connect(b"\0\1", b"\0\1") == client.data[:22]
    events = initiator.receive_data(server.data)
    assert isinstance(events[0], TransportConnected)
    assert len(events) == 7


def test_write_then_read_round_trip(tmp_path: Path) -> None:
    segments: list[tuple[Direction, bytes]] = [
        ("C->S", b"\x03\x00\x00\x07\x02\xf0\x80"),
        ("S->C", bytes(range(256)) * 400),  # split at the MSS
        ("C->S", b"second"),
        ("S->C", b""),  # nothing to send: no packet
    ]
    path = tmp_path / "out.pcap"
    write_pcap(path, segments, server=("127.0.0.1", 10102))
    client, server = read_tcp_streams(path)
    assert client.src == ("127.0.0.1", 40000)
    assert server.src == ("127.0.0.1", 10102)
    assert client.data == segments[0][1] + b"second"
    assert server.data == segments[1][1]
    assert [s.frame for s in server.segments] == [5, 6]
    assert [s.frame for s in client.segments] == [4, 7]


@settings(max_examples=25)
@given(
    st.lists(st.tuples(st.sampled_from(["C->S", "S->C"]), st.binary(max_size=3000)), max_size=6),
    st.integers(100, 2000),
)
def test_write_read_round_trip_any_segments(
    segments: list[tuple[Direction, bytes]], mss: int
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "any.pcap"
        write_pcap(path, segments, mss=mss)
        streams = {s.src[1]: s.data for s in read_tcp_streams(path)}
    for port, direction in ((40000, "C->S"), (102, "S->C")):
        sent = b"".join(data for d, data in segments if d == direction)
        assert streams.get(port, b"") == sent


def test_write_rejects_bad_direction(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_pcap(tmp_path / "x.pcap", [("up", b"x")])  # type: ignore[list-item]


# ------------------------------------------------------------------ crafted captures


def _tcp(seq: int, data: bytes, flags: int = 0x18, sport: int = 1, dport: int = 102) -> Any:
    return dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, flags=flags, data=data)


def _ipv4(tcp: Any, src: bytes = V4_A, dst: bytes = V4_B) -> bytes:
    return bytes(dpkt.ip.IP(src=src, dst=dst, p=6, data=tcp))


def _ipv6(tcp: Any) -> bytes:
    src, dst = b"\x20\x01" + bytes(13) + b"\x01", b"\x20\x01" + bytes(13) + b"\x02"
    return bytes(dpkt.ip6.IP6(src=src, dst=dst, nxt=6, hlim=64, plen=len(tcp), data=tcp))


def _write(path: Path, frames: list[bytes], linktype: int = 1, ng: bool = False) -> Path:
    with path.open("wb") as f:
        module = dpkt.pcapng if ng else dpkt.pcap
        writer = module.Writer(f, linktype=linktype)
        for i, frame in enumerate(frames):
            writer.writepkt(frame, ts=1000 + i)
    return path


def _ether(ip: bytes, ethertype: int = 0x0800) -> bytes:
    return bytes(12) + struct.pack(">H", ethertype) + ip


def _vlan(frame: bytes) -> bytes:
    return frame[:12] + b"\x81\x00\x00\x05" + frame[12:]


def test_retransmissions_overlaps_and_reordering(tmp_path: Path) -> None:
    isn = 0xFFFFFFF0  # the sequence numbers wrap inside the stream
    frames = [
        _tcp(isn, b"", flags=0x02),
        _tcp(isn + 1, b"hello "),
        _tcp((isn + 13) % 2**32, b"world"),  # arrives before the segment it follows
        _tcp(isn + 7, b"there "),
        _tcp(isn + 1, b"hello "),  # retransmitted
        _tcp(isn + 10, b"re world!"),  # overlaps: only "!" is new
    ]
    path = _write(tmp_path / "r.pcap", [_ether(_ipv4(t)) for t in frames])
    [stream] = read_tcp_streams(path)
    assert stream.data == b"hello there world!"
    assert [(s.frame, s.offset, s.length) for s in stream.segments] == [
        (2, 0, 6),
        (4, 6, 6),
        (6, 12, 6),  # the earliest-starting copy of each octet is the one kept
    ]


def test_gap_and_no_handshake(tmp_path: Path) -> None:
    frames = [_tcp(500, b"abc"), _tcp(506, b"ghi"), _tcp(497, b"xyz")]
    [stream] = read_tcp_streams(_write(tmp_path / "g.pcap", [_ether(_ipv4(t)) for t in frames]))
    assert stream.data == b"xyzabcghi"
    assert stream.missing == 3
    assert stream.gaps == (Gap(offset=6, octets=3, frame=2),)  # before "ghi", in frame 2


def test_new_syn_starts_a_new_stream(tmp_path: Path) -> None:
    frames = [_tcp(10, b"", 0x02), _tcp(11, b"one"), _tcp(90, b"", 0x02), _tcp(91, b"two")]
    streams = read_tcp_streams(_write(tmp_path / "n.pcap", [_ether(_ipv4(t)) for t in frames]))
    assert [s.data for s in streams] == [b"one", b"two"]


@pytest.mark.parametrize(
    ("linktype", "wrap"),
    [
        (1, lambda ip, v6: _ether(ip, 0x86DD if v6 else 0x0800)),
        (1, lambda ip, v6: _vlan(_ether(ip, 0x86DD if v6 else 0x0800))),
        (101, lambda ip, v6: ip),
        (0, lambda ip, v6: struct.pack("<I", 30 if v6 else 2) + ip),
        (108, lambda ip, v6: struct.pack(">I", 30 if v6 else 2) + ip),
        (113, lambda ip, v6: bytes(14) + (b"\x86\xdd" if v6 else b"\x08\x00") + ip),
        (276, lambda ip, v6: (b"\x86\xdd" if v6 else b"\x08\x00") + bytes(18) + ip),
    ],
)
@pytest.mark.parametrize("v6", [False, True])
@pytest.mark.parametrize("ng", [False, True])
def test_link_types(tmp_path: Path, linktype: int, wrap: Any, v6: bool, ng: bool) -> None:
    tcp = _tcp(7, b"payload", sport=3000)
    frame = wrap(_ipv6(tcp) if v6 else _ipv4(tcp), v6)
    [stream] = read_tcp_streams(_write(tmp_path / "l.cap", [frame], linktype, ng))
    assert stream.data == b"payload"
    assert stream.src == (("2001::1" if v6 else "10.0.0.1"), 3000)


def test_non_tcp_and_broken_packets_are_skipped(tmp_path: Path) -> None:
    udp = bytes(dpkt.ip.IP(src=V4_A, dst=V4_B, p=17, data=dpkt.udp.UDP(data=b"x")))
    frames = [_ether(udp), _ether(b"\x45\x00"), _ether(b""), _ether(_ipv4(_tcp(1, b"ok")))]
    [stream] = read_tcp_streams(_write(tmp_path / "s.pcap", frames))
    assert stream == Stream(stream.src, stream.dst, b"ok", stream.segments)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not a capture at all",
        b"\xd4\xc3\xb2\xa1" + bytes(10),  # pcap magic, truncated header
        b"\x0a\x0d\x0d\x0a" + bytes(30),  # pcapng magic, broken section header
    ],
)
def test_invalid_files_raise_decode_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.pcap"
    path.write_bytes(content)
    with pytest.raises(DecodeError):
        read_tcp_streams(path)


@pytest.mark.parametrize("ng", [False, True])
def test_a_capture_cut_short_keeps_the_frames_before(tmp_path: Path, ng: bool) -> None:
    """Cut in a packet's header or in its data: read_capture has the frames before it
    and says where; read_tcp_streams raises (before: both raised, "got 8, 16 needed")."""
    frames = [_ether(_ipv4(_tcp(1 + 4 * i, b"%04d" % i))) for i in range(5)]
    data = _write(tmp_path / "whole.cap", frames, ng=ng).read_bytes()
    whole = read_capture(tmp_path / "whole.cap")
    assert (whole.frames, whole.problem) == (5, None)
    assert whole.streams[0].data == b"00000001000200030004"
    start = len(_write(tmp_path / "four.cap", frames[:4], ng=ng).read_bytes())  # of frame 5
    for cut in (start + 8, start + 30, len(data) - 1):  # in its header, its data, its end
        path = tmp_path / f"cut{cut}.cap"
        path.write_bytes(data[:cut])
        capture = read_capture(path)
        assert capture.problem == ("capture cut short after frame 4 (the file ends partway"
                                   " through frame 5)"), cut  # fmt: skip
        assert capture.frames == 4 and capture.streams[0].data == b"0000000100020003"
        with pytest.raises(DecodeError, match="cut short after frame 4"):
            read_tcp_streams(path)


def test_a_broken_block_keeps_the_frames_before(tmp_path: Path) -> None:
    frames = [_ether(_ipv4(_tcp(1, b"ok")))]
    path = _write(tmp_path / "b.pcapng", frames, ng=True)
    path.write_bytes(path.read_bytes() + struct.pack("<II", 6, 13) + bytes(8))
    capture = read_capture(path)
    assert capture.problem == "capture unreadable after frame 1: pcapng block of 13 octets"
    assert capture.streams[0].data == b"ok"


def _idb(linktype: int, tsresol: int | None = None, order: str = "<") -> bytes:
    options = b"" if tsresol is None else struct.pack(order + "HHB3x", 9, 1, tsresol)
    return _block(1, struct.pack(order + "HHI", linktype, 0, 65535) + options, order)


def _epb(interface: int, units: int, frame: bytes, order: str = "<") -> bytes:
    body = struct.pack(order + "IIIII", interface, units >> 32, units & 0xFFFFFFFF, len(frame),
                       len(frame)) + frame + bytes(-len(frame) % 4)  # fmt: skip
    return _block(6, body, order)


def _block(kind: int, body: bytes, order: str) -> bytes:
    """A pcapng block (its body a multiple of 4 octets long)."""
    return (
        struct.pack(order + "II", kind, 12 + len(body))
        + body
        + struct.pack(order + "I", 12 + len(body))
    )


def _shb(order: str = "<") -> bytes:
    return struct.pack(order + "IIIHHqI", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1, 28)


def test_pcapng_interfaces_each_with_their_link_type_and_resolution(tmp_path: Path) -> None:
    """Each packet is read as its interface says: interface 0 Ethernet in microseconds,
    interface 1 raw IP in nanoseconds, interface 2 (described after packets of the others)
    Linux cooked in 1/1024 s; then a big-endian section whose interface 0 is raw IP (before:
    every packet was taken as one of the first interface, in its resolution)."""
    t = 1_700_000_000
    ip = [_ipv4(_tcp(1 + 2 * i, b"%02d" % i, sport=7)) for i in range(6)]
    sll = bytes(14) + b"\x08\x00"
    data = (
        _shb()
        + _idb(1)
        + _idb(101, tsresol=9)
        + _epb(1, t * 10**9 + 500_000_000, ip[1])  # t + 0.5 s
        + _epb(0, t * 10**6, _ether(ip[0]))  # t
        + _idb(113, tsresol=0x8A)
        + _epb(2, (t + 1) * 1024, sll + ip[2])
        + _epb(1, (t + 2) * 10**9, ip[3])
        + _shb(">")
        + _idb(101, order=">")
        + _epb(0, (t + 3) * 10**6, ip[4], ">")
        + _epb(0, (t + 4) * 10**6, ip[5], ">")
    )
    path = tmp_path / "m.pcapng"
    path.write_bytes(data)
    [stream] = read_tcp_streams(path)
    assert stream.data == b"000102030405"
    assert [(s.frame, s.timestamp - t) for s in stream.segments] == [
        (2, 0.0), (1, 0.5), (3, 1.0), (4, 2.0), (5, 3.0), (6, 4.0)]  # fmt: skip
    path.write_bytes(data + _epb(1, 0, ip[0], ">"))  # an interface its section lacks
    capture = read_capture(path)
    assert capture.problem == ("capture unreadable after frame 6: a packet of interface 1,"
                               " which no interface block describes")  # fmt: skip


def test_an_interface_of_another_link_type_is_skipped(tmp_path: Path) -> None:
    data = (_shb() + _idb(105) + _idb(101) + _epb(0, 0, bytes(40))
            + _epb(1, 0, _ipv4(_tcp(1, b"ok"))))  # fmt: skip
    path = tmp_path / "o.pcapng"
    path.write_bytes(data)
    [stream] = read_tcp_streams(path)
    assert stream.data == b"ok"


def test_unsupported_link_type(tmp_path: Path) -> None:
    with pytest.raises(DecodeError, match="link type"):
        read_tcp_streams(_write(tmp_path / "u.pcap", [b"\x00" * 40], linktype=105))


def test_missing_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_tcp_streams(tmp_path / "nowhere.pcap")


def test_tpkt_stream_from_capture_parses(vectors_dir: Path) -> None:
    for stream in read_tcp_streams(vectors_dir / "libiec61850-abort.pcapng"):
        payloads = TpktParser().feed(stream.data)
        assert sum(len(p) + 4 for p in payloads) == len(stream.data)
