"""Reading TCP byte streams out of pcap/pcapng captures, and writing them.

:func:`read_tcp_streams` gives, per TCP connection direction, the payload
bytes in sequence order with retransmitted data removed, and where each
segment started (frame number, time).  :func:`write_pcap` does the reverse
for one made-up connection, so bytes from our encoders can be shown to
Wireshark/tshark; :class:`PcapWriter` writes live TCP connections as they
happen (the relay's ``--pcap``: one stream per connection, IPv4 and IPv6).
dpkt does the file formats but for reading pcapng, whose blocks are read here (dpkt's
reader takes every packet as one of the first interface); any problem with a file is
raised as :class:`~sessionlayer.errors.DecodeError`, but :func:`read_capture` keeps
the packets before a file's end cut short or a broken block.
"""

from __future__ import annotations

import bisect
import ipaddress
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Literal, NamedTuple, TypeAlias

import dpkt

from sessionlayer.errors import DecodeError
from sessionlayer.rotation import RotatingFile

__all__ = [
    "Capture",
    "Direction",
    "Endpoint",
    "Gap",
    "PcapStream",
    "PcapWriter",
    "Segment",
    "Stream",
    "read_capture",
    "read_tcp_streams",
    "write_pcap",
]

Endpoint: TypeAlias = tuple[str, int]  #: (IP address as text, TCP port)
Direction: TypeAlias = Literal["C->S", "S->C"]  #: as in the vectors' "dir" field

_PCAP_MAGICS = {b"\xa1\xb2\xc3\xd4", b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\x3c\x4d", b"\x4d\x3c\xb2\xa1"}
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
_LINK_ETHERNET = 1
_LINK_NULL, _LINK_LOOP = 0, 108
_LINK_RAW = frozenset({12, 14, 101, 228, 229})  # raw IP (BSD/OpenBSD variants, v4-, v6-only)
_LINK_SLL, _LINK_SLL2 = 113, 276
_VLAN_TYPES = frozenset({0x8100, 0x88A8, 0x9100})
_TCP_SYN, _TCP_FIN, _TCP_ACK, _TCP_PSH = 0x02, 0x01, 0x10, 0x08
_SEQ_MOD = 1 << 32


class Gap(NamedTuple):
    """Octets of a stream that the capture does not hold (a segment not captured, or
    cut by the snapshot length): :attr:`Stream.data` goes on without them."""

    offset: int  #: position in the stream data of the first octet after the gap
    octets: int  #: how many are missing
    frame: int  #: the frame whose segment comes right after the gap


class Segment(NamedTuple):
    """Where a piece of :attr:`Stream.data` came from."""

    frame: int  #: 1-based frame number in the capture
    timestamp: float  #: seconds since the epoch
    offset: int  #: position of its first new octet in the stream data
    length: int  #: new octets it contributed


@dataclass(frozen=True)
class Stream:
    """The payload of one direction of one TCP connection."""

    src: Endpoint
    dst: Endpoint
    data: bytes
    segments: tuple[Segment, ...] = ()  #: in stream order, one per segment that added data
    missing: int = 0  #: octets never captured (sequence gaps), skipped over
    gaps: tuple[Gap, ...] = ()  #: where they were, in stream order (``missing`` is their sum)

    def locate(self, offset: int) -> Segment:
        """The segment that carried the octet at *offset* of :attr:`data`."""
        if not 0 <= offset < len(self.data):
            raise IndexError(f"offset {offset} outside the {len(self.data)}-octet stream")
        starts = [seg.offset for seg in self.segments]
        return self.segments[bisect.bisect_right(starts, offset) - 1]


# ------------------------------------------------------------------ reading


@dataclass
class _Piece:
    seq: int
    payload: bytes
    frame: int
    timestamp: float


@dataclass
class _Builder:
    src: Endpoint
    dst: Endpoint
    first_frame: int
    isn: int | None = None
    pieces: list[_Piece] = field(default_factory=list)


@dataclass(frozen=True)
class Capture:
    """What :func:`read_capture` read: the TCP streams, and why it stopped early if it did."""

    streams: list[Stream]
    frames: int  #: packets read
    #: Set when the file stops being readable after its header (then ``streams`` hold the
    #: packets before): "capture cut short after frame N ..." or "capture unreadable ...".
    problem: str | None = None


def read_tcp_streams(path: str | os.PathLike[str]) -> list[Stream]:
    """Read a pcap or pcapng file; return its TCP streams that carried data.

    Streams come in the order of their first packet; a new SYN on the same
    addresses with another initial sequence number starts a new stream.  A file
    that is not whole raises :class:`DecodeError` (:func:`read_capture` keeps
    what comes before the break).
    """
    capture = read_capture(path)
    if capture.problem is not None:
        raise DecodeError(f"{os.fspath(path)}: {capture.problem}")
    return capture.streams


def read_capture(path: str | os.PathLike[str]) -> Capture:
    """As :func:`read_tcp_streams`, but a file cut short (or unreadable) after its header
    gives the streams of the packets before the break, and the break in ``problem``.

    In a pcapng file each packet is read with the link type and timestamp resolution of
    its own interface (every section and interface block is followed).
    """
    with open(path, "rb") as fileobj:
        try:
            packets = _packets(fileobj)
        except DecodeError:
            raise
        except _CutShort:
            raise DecodeError(f"{os.fspath(path)}: the file ends inside its header") from None
        except Exception as exc:  # dpkt raises many kinds; translate them here
            raise DecodeError(f"{os.fspath(path)}: unreadable capture: {exc}") from exc
        collector = _Collector()
        problem = None
        try:
            for packet in packets:
                collector.add(*packet)
        except _CutShort:
            problem = (f"capture cut short after frame {collector.frames} (the file ends"
                       f" partway through frame {collector.frames + 1})")  # fmt: skip
        except (DecodeError, dpkt.dpkt.Error, struct.error, ValueError) as exc:
            problem = f"capture unreadable after frame {collector.frames}: {exc}"
    streams = (_assemble(b) for b in sorted(collector.builders, key=lambda b: b.first_frame))
    found = [s for s in streams if s.data]
    if not found and collector.unsupported and problem is None:
        raise DecodeError(f"unsupported link type {min(collector.unsupported)}")
    return Capture(found, collector.frames, problem)


class _CutShort(Exception):
    """The file ends partway through a block or packet."""


class _Reads:
    """A file whose last read came back short (``short``), for dpkt's pcap reader."""

    def __init__(self, fileobj: BinaryIO) -> None:
        self._fileobj = fileobj
        self.short = False

    def read(self, size: int = -1) -> bytes:
        data = self._fileobj.read(size)
        self.short = 0 <= len(data) < size
        return data


def _packets(fileobj: BinaryIO) -> Iterator[tuple[int, float, bytes]]:
    """(link type, time, frame bytes) of each packet of the file: the file header is read
    (and checked) now, the packets as they are asked for."""
    magic = fileobj.read(4)
    fileobj.seek(0)
    if magic == _PCAPNG_MAGIC:
        order = _pcapng_section(fileobj, fileobj.read(8))
        return _pcapng_packets(fileobj, order)
    if magic in _PCAP_MAGICS:
        reads = _Reads(fileobj)
        return _pcap_packets(dpkt.pcap.Reader(reads), reads)
    raise DecodeError(f"not a pcap or pcapng file (starts {magic.hex() or 'empty'})")


def _pcap_packets(reader: Any, reads: _Reads) -> Iterator[tuple[int, float, bytes]]:
    linktype = int(reader.datalink())
    try:
        for timestamp, frame in reader:
            if reads.short:  # (the packet's data: its last read)
                raise _CutShort
            yield linktype, float(timestamp), bytes(frame)
    except dpkt.NeedData:  # a packet header cut short
        raise _CutShort from None


# pcapng (https://datatracker.ietf.org/doc/draft-ietf-opsawg-pcapng/): dpkt's reader
# takes every packet as one of the first interface, so the blocks are read here.
_BT_IDB, _BT_PB, _BT_SPB, _BT_EPB = 1, 2, 3, 6
_OPT_TSRESOL, _OPT_TSOFFSET = 9, 14
_BYTE_ORDERS = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}


class _Interface(NamedTuple):
    linktype: int
    snaplen: int
    units: int  #: timestamp units per second (if_tsresol)
    offset: int  #: seconds added to each timestamp (if_tsoffset)


def _read(fileobj: BinaryIO, size: int) -> bytes:
    data = fileobj.read(size)
    if len(data) < size:
        raise _CutShort
    return data


def _pcapng_section(fileobj: BinaryIO, head: bytes) -> str:
    """Read the section header block that starts with *head* (its type and length);
    return the section's byte order ("<" or ">")."""
    if len(head) < 8:
        raise _CutShort
    order = _BYTE_ORDERS.get(_read(fileobj, 4))
    if order is None:
        raise DecodeError("pcapng section header with an unknown byte-order magic")
    (length,) = struct.unpack(order + "I", head[4:])
    if length < 28 or length % 4:
        raise DecodeError(f"pcapng section header of {length} octets")
    (major,) = struct.unpack(order + "H", _read(fileobj, length - 12)[:2])
    if major != 1:
        raise DecodeError(f"pcapng version {major}, not 1")
    return order


def _pcapng_packets(fileobj: BinaryIO, order: str) -> Iterator[tuple[int, float, bytes]]:
    interfaces: list[_Interface] = []  # (of the current section)
    timestamp = 0.0  # (a simple packet block has none: the one before's)
    while head := fileobj.read(8):
        if head[:4] == _PCAPNG_MAGIC:  # a new section: its own byte order and interfaces
            order, interfaces = _pcapng_section(fileobj, head), []
            continue
        if len(head) < 8:
            raise _CutShort
        kind, length = struct.unpack(order + "II", head)
        if length < 12 or length % 4:
            raise DecodeError(f"pcapng block of {length} octets")
        body = _read(fileobj, length - 8)[:-4]
        if kind == _BT_IDB:
            interfaces.append(_interface(body, order))
            continue
        if kind == _BT_SPB:
            interface, (size,) = _described(interfaces, 0), struct.unpack(order + "I", body[:4])
            yield interface.linktype, timestamp, body[4 : 4 + min(size, interface.snaplen or size)]
            continue
        if kind not in (_BT_EPB, _BT_PB) or len(body) < 20:
            continue  # (other blocks: statistics, name resolution, comments)
        if kind == _BT_EPB:
            number, high, low, caplen = struct.unpack(order + "IIII", body[:16])
        else:
            number, _drops, high, low, caplen = struct.unpack(order + "HHIII", body[:16])
        interface = _described(interfaces, number)
        if 20 + caplen > len(body):
            raise DecodeError(f"pcapng packet of {caplen} octets in a {length}-octet block")
        timestamp = interface.offset + ((high << 32) | low) / interface.units
        yield interface.linktype, timestamp, body[20 : 20 + caplen]


def _described(interfaces: list[_Interface], number: int) -> _Interface:
    if number >= len(interfaces):
        raise DecodeError(f"a packet of interface {number}, which no interface block describes")
    return interfaces[number]


def _interface(body: bytes, order: str) -> _Interface:
    """An interface description block (its body): link type, snapshot length, and the
    timestamps' resolution and offset from its options."""
    if len(body) < 8:
        raise DecodeError("pcapng interface block too short")
    linktype, _reserved, snaplen = struct.unpack(order + "HHI", body[:8])
    units, offset, position = 10**6, 0, 8
    while position + 4 <= len(body):
        code, size = struct.unpack(order + "HH", body[position : position + 4])
        value = body[position + 4 : position + 4 + size]
        if code == 0:
            break
        if code == _OPT_TSRESOL and len(value) == 1:
            units = 2 ** (value[0] & 0x7F) if value[0] & 0x80 else 10 ** value[0]
        elif code == _OPT_TSOFFSET and len(value) == 8:
            (offset,) = struct.unpack(order + "q", value)
        position += 4 + size + (-size % 4)
    return _Interface(linktype, snaplen, units, offset)


class _Collector:
    """The packets' TCP segments, sorted into streams as they are read."""

    def __init__(self) -> None:
        self.current: dict[tuple[Endpoint, Endpoint], _Builder] = {}
        self.builders: list[_Builder] = []
        self.frames = 0
        self.unsupported: set[int] = set()  # link types of packets that were skipped

    def add(self, linktype: int, timestamp: float, frame: bytes) -> None:
        self.frames += 1
        number = self.frames
        try:
            parsed = _tcp(linktype, frame)
        except _UnsupportedLink:
            self.unsupported.add(linktype)
            return
        if parsed is None:
            return
        src, dst, tcp = parsed
        builder = self.current.get((src, dst))
        syn = bool(tcp.flags & _TCP_SYN)
        if builder is None or (syn and builder.isn not in (None, tcp.seq)):
            builder = self.current[(src, dst)] = _Builder(src, dst, number)
            self.builders.append(builder)
        if syn:
            builder.isn = int(tcp.seq)
        elif tcp.data:
            builder.pieces.append(_Piece(int(tcp.seq), bytes(tcp.data), number, timestamp))


class _UnsupportedLink(Exception):
    """A packet of a link type we do not read (skipped, as another interface's may be)."""


def _tcp(linktype: int, frame: bytes) -> tuple[Endpoint, Endpoint, Any] | None:
    """The addresses and dpkt TCP object of a frame, or None if it holds no TCP."""
    packet = _network_layer(linktype, frame)
    if not packet:
        return None
    try:
        if packet[0] >> 4 == 4:
            ip: Any = dpkt.ip.IP(packet)
            if ip.offset != 0 or ip.mf:
                return None  # fragments are not reassembled
        elif packet[0] >> 4 == 6:
            ip = dpkt.ip6.IP6(packet)
        else:
            return None
    except (dpkt.dpkt.Error, struct.error, ValueError, IndexError):
        return None  # a malformed packet in a readable file: skip it, as Wireshark would
    tcp = ip.data
    if not isinstance(tcp, dpkt.tcp.TCP):
        return None
    src = (str(ipaddress.ip_address(bytes(ip.src))), int(tcp.sport))
    dst = (str(ipaddress.ip_address(bytes(ip.dst))), int(tcp.dport))
    return src, dst, tcp


def _network_layer(linktype: int, frame: bytes) -> bytes | None:
    if linktype == _LINK_ETHERNET:
        offset, ethertype = 14, frame[12:14]
        while len(ethertype) == 2 and int.from_bytes(ethertype, "big") in _VLAN_TYPES:
            offset, ethertype = offset + 4, frame[offset + 2 : offset + 4]
        return frame[offset:] if ethertype in (b"\x08\x00", b"\x86\xdd") else None
    if linktype in _LINK_RAW:
        return frame
    if linktype in (_LINK_NULL, _LINK_LOOP):
        return frame[4:]
    if linktype == _LINK_SLL:
        return frame[16:] if frame[14:16] in (b"\x08\x00", b"\x86\xdd") else None
    if linktype == _LINK_SLL2:
        return frame[20:] if frame[0:2] in (b"\x08\x00", b"\x86\xdd") else None
    raise _UnsupportedLink


def _assemble(builder: _Builder) -> Stream:
    """Lay the pieces out by sequence number; overlapping octets are taken once.

    Of two segments covering the same octet, the one starting earlier in
    sequence space wins (ties: the earlier frame).
    """
    pieces = builder.pieces
    if not pieces:
        return Stream(builder.src, builder.dst, b"")
    base = (builder.isn + 1) % _SEQ_MOD if builder.isn is not None else pieces[0].seq
    rel = [(_seq_diff(p.seq, base), p.frame, p) for p in pieces]
    if builder.isn is None:
        low = min(r for r, _, _ in rel)
        rel = [(r - low, f, p) for r, f, p in rel]
    data = bytearray()
    segments: list[Segment] = []
    gaps: list[Gap] = []
    missing = 0
    for start, _, piece in sorted(rel, key=lambda item: (item[0], item[1])):
        end = start + len(piece.payload)
        position = len(data) + missing
        if end <= position:
            continue  # retransmission of data already held
        if start > position:  # a gap in the capture
            gaps.append(Gap(len(data), start - position, piece.frame))
            missing += start - position
            position = start
        new = piece.payload[position - start :]
        segments.append(Segment(piece.frame, piece.timestamp, len(data), len(new)))
        data += new
    return Stream(builder.src, builder.dst, bytes(data), tuple(segments), missing, tuple(gaps))


def _seq_diff(seq: int, base: int) -> int:
    """Signed distance from *base* to *seq* in 32-bit sequence space."""
    return (seq - base + (1 << 31)) % _SEQ_MOD - (1 << 31)


# ------------------------------------------------------------------ writing


def write_pcap(
    path: str | os.PathLike[str],
    segments: Iterable[tuple[Direction, bytes]],
    *,
    client: Endpoint = ("127.0.0.1", 40000),
    server: Endpoint = ("127.0.0.1", 102),
    start_time: float = 1_700_000_000.0,
    mss: int = 65483,
) -> None:
    """Write one TCP connection carrying *segments* as a classic pcap.

    Each item is ("C->S" or "S->C", payload); payloads longer than *mss* are
    split.  The connection opens with a three-way handshake and closes with
    FINs; sequence numbers, lengths and checksums are valid.  Only IPv4.
    """
    packets = _connection_packets(client, server, segments, mss)
    with open(path, "wb") as fileobj:
        writer = dpkt.pcap.Writer(fileobj, snaplen=262144, linktype=dpkt.pcap.DLT_EN10MB)
        for index, packet in enumerate(packets):
            writer.writepkt(bytes(packet), ts=start_time + index * 0.001)


def _connection_packets(
    client: Endpoint, server: Endpoint, segments: Iterable[tuple[Direction, bytes]], mss: int
) -> list[Any]:
    seq = {"C->S": 1_000, "S->C": 5_000}  # next sequence number each side sends
    ends = {"C->S": (client, server), "S->C": (server, client)}
    other = {"C->S": "S->C", "S->C": "C->S"}
    out: list[Any] = []

    def emit(direction: str, flags: int, payload: bytes = b"") -> None:
        (src, dst), reply = ends[direction], other[direction]
        ack = seq[reply] if flags & _TCP_ACK else 0
        out.append(_frame(src, dst, seq[direction], ack, flags, payload))
        seq[direction] = (seq[direction] + len(payload) + bool(flags & (_TCP_SYN | _TCP_FIN)))

    emit("C->S", _TCP_SYN)
    emit("S->C", _TCP_SYN | _TCP_ACK)
    emit("C->S", _TCP_ACK)
    for direction, payload in segments:
        if direction not in ends:
            raise ValueError(f"direction must be 'C->S' or 'S->C', not {direction!r}")
        for start in range(0, len(payload), mss):
            emit(direction, _TCP_PSH | _TCP_ACK, bytes(payload[start : start + mss]))
    emit("C->S", _TCP_FIN | _TCP_ACK)
    emit("S->C", _TCP_FIN | _TCP_ACK)
    emit("C->S", _TCP_ACK)
    return out


def _frame(src: Endpoint, dst: Endpoint, seq: int, ack: int, flags: int, payload: bytes) -> Any:
    tcp = dpkt.tcp.TCP(
        sport=src[1], dport=dst[1], seq=seq, ack=ack, flags=flags, win=65535, data=payload
    )
    if ipaddress.ip_address(src[0]).version == 6:
        ip6 = dpkt.ip6.IP6(
            src=ipaddress.IPv6Address(src[0]).packed,
            dst=ipaddress.IPv6Address(dst[0]).packed,
            nxt=dpkt.ip.IP_PROTO_TCP,
            hlim=64,
            plen=len(tcp),
            data=tcp,
        )
        return dpkt.ethernet.Ethernet(
            src=b"\x00" * 6, dst=b"\x00" * 6, type=dpkt.ethernet.ETH_TYPE_IP6, data=ip6
        )
    ip = dpkt.ip.IP(
        src=ipaddress.IPv4Address(src[0]).packed,
        dst=ipaddress.IPv4Address(dst[0]).packed,
        p=dpkt.ip.IP_PROTO_TCP,
        ttl=64,
        data=tcp,
    )
    ip.df = 1
    return dpkt.ethernet.Ethernet(
        src=b"\x00" * 6, dst=b"\x00" * 6, type=dpkt.ethernet.ETH_TYPE_IP, data=ip
    )


# ------------------------------------------------------------------ live writing


class PcapWriter:
    """A classic pcap file written as TCP connections happen (``sessionlayer relay --pcap``).

    :meth:`open_stream` writes a connection's three-way handshake and returns a
    :class:`PcapStream`; its ``write`` adds segments (split at *mss*), its ``close`` the
    FINs.  Connections interleave in the file in the order things happen; sequence and
    acknowledgement numbers, lengths and checksums are valid, so Wireshark and tshark
    follow each connection as a TCP stream.  Endpoints are IPv4 or IPv6 (a stream's two
    ends must be the same family).  Each packet is written through at once (the file's
    own buffer holds at most a few packets), so memory use does not grow with the file;
    ``timestamp`` is the caller's wall clock (``time.time()``).  ``max_bytes`` and ``keep``
    bound the file on disk (:class:`~sessionlayer.rotation.RotatingFile`): each new file
    starts with the handshakes of the connections still open, and stands alone.
    """

    def __init__(self, path: str | os.PathLike[str], *, mss: int = 65483,
                 snaplen: int = 262144, max_bytes: int | None = None,
                 keep: int = 5) -> None:  # fmt: skip
        self.path = os.fspath(path)
        self.mss = mss
        self.snaplen = snaplen
        self._file = RotatingFile(path, append=False, max_bytes=max_bytes, keep=keep,
                                  what="--pcap")  # fmt: skip
        self._writer = self._header()
        self._file.on_new = self._new_file
        self._open: dict[PcapStream, None] = {}  # (in the order they opened)
        self._streams = 0
        self._now = 0.0  # the last packet's time (a new file's handshakes take it)
        self.packets = 0

    def _header(self) -> Any:
        return dpkt.pcap.Writer(self._file, snaplen=self.snaplen, linktype=dpkt.pcap.DLT_EN10MB)

    def _new_file(self) -> None:
        """A new file (``max_bytes`` reached, or :meth:`reopen`): its header, then each
        connection still open starts again in it with a handshake at its sequence numbers,
        so that every file stands alone in Wireshark."""
        self._writer = self._header()
        for stream in self._open:
            stream.restart(self._now)

    @property
    def closed(self) -> bool:
        return self._file.closed

    @property
    def rotations(self) -> int:
        return self._file.rotations

    def reopen(self) -> None:
        """The file again, after another program moved it (SIGHUP after logrotate)."""
        self._file.reopen()

    def forget(self, stream: PcapStream) -> None:
        """(PcapStream.close) Not open any more: a new file does not start it again."""
        self._open.pop(stream, None)

    def open_stream(self, client: Endpoint, server: Endpoint, timestamp: float) -> PcapStream:
        """A new TCP connection from *client* to *server* (SYN, SYN-ACK, ACK written now)."""
        self.boundary()
        self._streams += 1
        stream = PcapStream(self, client, server, isn=(self._streams * 7919 << 12) % _SEQ_MOD)
        stream.handshake(timestamp)
        self._open[stream] = None
        return stream

    def packet(self, frame: Any, timestamp: float) -> None:
        if self._file.closed:
            return
        self._now = timestamp
        self._writer.writepkt(bytes(frame), ts=timestamp)
        self._file.flush()
        self.packets += 1

    def boundary(self) -> None:
        """Between two packet sequences (a handshake, a write, the FINs): where a full file
        is rotated, so that no sequence is split between two files."""
        self._file.rotate_if_full("--pcap")

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PcapStream:
    """One TCP connection in a :class:`PcapWriter`: "C->S" is from its client."""

    def __init__(self, writer: PcapWriter, client: Endpoint, server: Endpoint,
                 isn: int) -> None:  # fmt: skip
        self.writer = writer
        self.client, self.server = client, server
        self.seq = {"C->S": isn, "S->C": (isn + 0x10000000) % _SEQ_MOD}
        self.finished = False

    def _emit(self, direction: Direction, flags: int, payload: bytes, timestamp: float) -> None:
        src, dst = (self.client, self.server) if direction == "C->S" else (
            self.server, self.client
        )  # fmt: skip
        reply: Direction = "S->C" if direction == "C->S" else "C->S"
        ack = self.seq[reply] if flags & _TCP_ACK else 0
        frame = _frame(src, dst, self.seq[direction], ack, flags, payload)
        self.seq[direction] = (
            self.seq[direction] + len(payload) + bool(flags & (_TCP_SYN | _TCP_FIN))
        ) % _SEQ_MOD
        self.writer.packet(frame, timestamp)

    def handshake(self, timestamp: float) -> None:
        self._emit("C->S", _TCP_SYN, b"", timestamp)
        self._emit("S->C", _TCP_SYN | _TCP_ACK, b"", timestamp)
        self._emit("C->S", _TCP_ACK, b"", timestamp)

    def restart(self, timestamp: float) -> None:
        """(A new file) The connection's handshake again, numbered so that what follows
        goes on at its current sequence numbers."""
        for direction in ("C->S", "S->C"):
            self.seq[direction] = (self.seq[direction] - 1) % _SEQ_MOD
        self.handshake(timestamp)

    def write(self, direction: Direction, payload: bytes, timestamp: float) -> None:
        """Octets sent one way, as one or more segments."""
        if self.finished or not payload:
            return
        self.writer.boundary()
        mss = self.writer.mss
        for start in range(0, len(payload), mss):
            self._emit(direction, _TCP_PSH | _TCP_ACK, bytes(payload[start : start + mss]),
                       timestamp)  # fmt: skip

    def close(self, timestamp: float) -> None:
        """The connection ended (FIN both ways, the last ACK)."""
        if self.finished:
            return
        self.finished = True
        self.writer.boundary()
        self.writer.forget(self)
        self._emit("C->S", _TCP_FIN | _TCP_ACK, b"", timestamp)
        self._emit("S->C", _TCP_FIN | _TCP_ACK, b"", timestamp)
        self._emit("C->S", _TCP_ACK, b"", timestamp)
