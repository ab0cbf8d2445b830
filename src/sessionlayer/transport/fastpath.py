"""The data fast path: S-DATA framed and deframed without the general machinery.

While the machine's ``plain_data`` holds, every S-DATA is the TSDU
``DATA_PREFIX + data`` (GT and DT with empty parameter fields), carried in
ISO 8073 DT TPDUs in TPKTs.  :func:`frame_data` builds exactly the octets the
general path (machine, then :class:`~sessionlayer.transport.Rfc1006Connection`)
would build, in one go; :class:`PlainReader` pulls such TSDUs out of the
byte stream and hands anything else back to the general path.

It lives with the RFC 1006 code it short-cuts and shares its constants (TPKT header
and version, the class 0 DT headers) and its TSDU-limit error
(:func:`~sessionlayer.transport.reassembly.tsdu_too_large`).  Sans-I/O: bytes in,
bytes out (the one shared receive buffer is per thread).
``tests/transport/test_fastpath.py`` holds both paths to the same octets and errors.
"""

from __future__ import annotations

import struct
import threading
from typing import Any

from ..machine import DATA_PREFIX
from .cotp import DT_EOT_HEADER, DT_HEADER_SIZE, DT_MORE_HEADER
from .reassembly import tsdu_too_large
from .tpkt import TPKT_HEADER_SIZE, TPKT_VERSION

__all__ = [
    "frame_data",
    "frame_pieces",
    "PlainReader",
    "SINGLE_HEAD",
    "SINGLE_SLACK",
    "SINGLE_PREFIX",
    "TPKT_V3",
]

_HEAD = TPKT_HEADER_SIZE + DT_HEADER_SIZE  # TPKT header + class 0 DT header
_FIRST = _HEAD + len(DATA_PREFIX)
_EOT_PREFIX = DT_EOT_HEADER + DATA_PREFIX
_MORE_PREFIX = DT_MORE_HEADER + DATA_PREFIX
# TPKT version 3 and the reserved octet 0, as one big-endian 16-bit field.
_TPKT_V3 = TPKT_VERSION << 8
# The TPKT header and the next 3 (DT header) or 7 (DT header and DATA_PREFIX) octets in one
# struct call: (version+reserved, TPKT length, the octets after the TPKT header).
_DT = struct.Struct(f">HH{DT_HEADER_SIZE}s")
_FIRST_DT = struct.Struct(f">HH{DT_HEADER_SIZE + len(DATA_PREFIX)}s")
_pack_first = _FIRST_DT.pack
_unpack_first = _FIRST_DT.unpack_from

# For a binding that frames or takes a message in one TPDU inline, without a call (what
# frame_data and PlainReader.single do; aio.Connection's write_data and buffer_updated):
#: The octets ahead of the user data of an S-DATA whose TSDU is one TPDU: TPKT, DT (EOT),
#: DATA_PREFIX.
SINGLE_HEAD = _FIRST
#: What a TPDU of such an S-DATA holds besides the user data: DT header and DATA_PREFIX
#: (the user data fits one TPDU while ``len(data) + SINGLE_SLACK <= tpdu_size``).
SINGLE_SLACK = DT_HEADER_SIZE + len(DATA_PREFIX)
#: The octets after the TPKT header of such a TPDU: DT (EOT) and DATA_PREFIX.
SINGLE_PREFIX = _EOT_PREFIX
#: TPKT version 3 and its reserved octet, as the first field ``unpack_single`` gives.
TPKT_V3 = _TPKT_V3
#: ``pack_single(TPKT_V3, len(data) + SINGLE_HEAD, SINGLE_PREFIX) + data`` is such a frame;
#: ``unpack_single(buf, pos)`` gives (TPKT_V3, the TPKT length, SINGLE_PREFIX) for one.
#: (Struct methods, for the binding; not re-exported by sessionlayer.transport.)
pack_single = _pack_first
unpack_single = _unpack_first


def frame_data(data: bytes, tpdu_size: int) -> bytes:
    """TPKT + DT TPDUs carrying the TSDU ``DATA_PREFIX + data``, each TPDU <= ``tpdu_size``."""
    if len(DATA_PREFIX) + len(data) <= tpdu_size - DT_HEADER_SIZE:  # one TPDU
        return _pack_first(_TPKT_V3, len(data) + _FIRST, _EOT_PREFIX) + data
    return b"".join(frame_pieces(data, tpdu_size))


def frame_pieces(data: bytes, tpdu_size: int) -> list[bytes | memoryview]:
    """What :func:`frame_data` joins: TPDU headers and views of ``data`` (not copied), for
    ``transport.writelines`` (which uvloop and asyncio 3.12+ hand to the kernel as they
    are)."""
    room = tpdu_size - DT_HEADER_SIZE  # octets of the TSDU per TPDU
    n = len(data)
    view = memoryview(data)
    if len(DATA_PREFIX) + n <= room:
        return [_pack_first(_TPKT_V3, n + _FIRST, _EOT_PREFIX), view]
    first = room - len(DATA_PREFIX)
    parts: list[bytes | memoryview] = [_pack_first(_TPKT_V3, room + _HEAD, _MORE_PREFIX)]
    parts.append(view[:first])
    pos = first
    while pos < n:
        chunk = view[pos : pos + room]
        pos += room
        parts.append(
            _DT.pack(_TPKT_V3, len(chunk) + _HEAD, DT_EOT_HEADER if pos >= n else DT_MORE_HEADER)
        )
        parts.append(chunk)
    return parts


#: The shared receive buffer (what asyncio reads at most per Protocol.data_received too);
#: a reader's own buffer, while it holds a TSDU cut short, keeps at least this much room
#: for the next read.
READ_SIZE = 256 * 1024
#: A reader's own buffer starts at what it holds, the rest of the TPDU under way (when its
#: header has arrived: at most a TPKT's 65,535 octets) and this much more, and doubles as
#: reads fill it, up to a read of READ_SIZE at a time: it grows with what the peer actually
#: sends (a peer holding 5 octets costs 4 KiB, not a megabyte).  Only a session that
#: receives more than one read's worth at a time has one.
_OWN_MIN = 4096
#: A reader whose reads have filled READ_SIZE (bulk data) keeps a buffer this large: the
#: held octets are then seldom moved to the front (measured on asyncio: 64 KiB messages
#: move ~30% faster than with a 256 KiB buffer).
_OWN_BULK = 4 * READ_SIZE
#: From this TPDU length on, user data is copied straight out of the receive buffer; below
#: it the octets read are first made one ``bytes`` and each message sliced out of that.
_LARGE = 2048
_CUT = -1  # the TSDU under way goes on past the octets read so far
_OTHER = -2  # not plain data: the general path takes over from the TSDU's first octet

_local = threading.local()


class _Shared:
    """A thread's receive buffer, shared by every reader (see :class:`PlainReader`)."""

    __slots__ = ("buf", "reads", "view")

    def __init__(self) -> None:
        self.buf = bytearray(READ_SIZE)
        self.view = memoryview(self.buf)
        #: The view get_buffer returns, by size hint: made once, not on every read.
        self.reads: dict[int, memoryview] = {}


def _shared_buffer() -> _Shared:
    """This thread's :class:`_Shared` buffer."""
    try:
        return _local.shared  # type: ignore[no-any-return]
    except AttributeError:
        _local.shared = _Shared()
        return _local.shared  # type: ignore[no-any-return]


def _read_view(view: memoryview, sizehint: int) -> memoryview:
    """Where a read with this size hint goes (see PlainReader.get_buffer)."""
    return view[: sizehint + sizehint // 8] if sizehint > 0 else view


class _Own(bytearray):
    """A reader's own buffer, with where the TSDU it holds stands (only while one is held:
    an idle reader keeps none of this)."""

    __slots__ = ("end", "next", "size", "start")

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.start = 0  # the held TSDU's first octet
        self.end = 0  # the end of the octets held
        self.next = 0  # from start: the next TPDU header of the held TSDU to check
        self.size = 0  # user data (prefix included) of the held TSDU's whole TPDUs


class PlainReader:
    """Takes plain-data TSDUs off the front of the byte stream.

    The stream is read into the reader's buffer (:meth:`get_buffer`, then :meth:`parse`:
    what an :class:`asyncio.BufferedProtocol` does), so the kernel copies each octet
    once into memory that is used again and again, and each message's user data is
    copied once out of it.  :meth:`parse` appends the user data of every whole
    plain-data TSDU to ``out`` and returns the octets from the first TPDU that is
    something else (for the general path, which then owns the stream until it is idle
    again).

    Reads go to one buffer per thread, shared by all readers: asyncio and uvloop call
    ``get_buffer``, read and call ``buffer_updated`` in one go, and :meth:`parse` leaves
    nothing behind in it.  A TSDU cut short at the end of a read is moved to a buffer
    of the reader's own, where the next reads continue it; that buffer is dropped once
    it is empty again, so an idle session holds none.
    """

    __slots__ = ("_buf", "_shared", "_want", "max_tsdu_size")

    def __init__(self, max_tsdu_size: int) -> None:
        self.max_tsdu_size = max_tsdu_size
        self._shared = _shared_buffer()  # this thread's: readers live on one loop's thread
        self._buf: _Own | None = None  # the reader's own buffer, while octets are held
        #: The room a read into the reader's own buffer gets: doubles each time a read fills
        #: it (up to READ_SIZE), so it grows with what the peer actually sends.
        self._want = _OWN_MIN

    @property
    def pending(self) -> bool:
        """Octets of a partial TPDU or TSDU are held."""
        return self._buf is not None

    def take(self, nbytes: int = 0) -> bytes:
        """Give back, as they came, the octets held and the ``nbytes`` just read into
        :meth:`get_buffer`; the reader is empty after."""
        if self._buf is None:
            return bytes(self._shared.view[:nbytes])
        own = self._buf
        held = bytes(own[own.start : own.end + nbytes])
        self._buf = None
        return held

    def clear(self) -> None:
        """Drop what is held (the connection is gone)."""
        self._buf = None

    def peek(self, nbytes: int) -> bytes:
        """The ``nbytes`` just read into :meth:`get_buffer` (for tracing)."""
        own = self._buf
        if own is None:
            return bytes(self._shared.view[:nbytes])
        return bytes(own[own.end : own.end + nbytes])

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        """Where the next read goes: a little more than ``sizehint`` octets when a hint is
        given, else all the room there is.

        uvloop hints 64 KiB and reads again while a read fills the buffer, so it drains the
        socket in one go; asyncio gives no hint and reads once.  An eighth more than the
        hint lets a message of the hint's size come in one read with its headers (65,558
        octets for 64 KiB of user data): measured, 64 KiB messages then move ~10% faster
        on uvloop than with reads of exactly the hint.
        """
        buf = self._buf
        if buf is None:
            if sizehint < 0:  # (asyncio's hint: all of it)
                return self._shared.view
            reads = self._shared.reads
            view = reads.get(sizehint)
            if view is None:
                view = reads[sizehint] = _read_view(self._shared.view, sizehint)
            return view
        return _read_view(self._room(self._want), sizehint)

    def _room(self, room: int) -> memoryview:
        """Where the next read goes: at least ``room`` octets after those held."""
        buf = self._buf
        if buf is None:
            if room <= READ_SIZE:
                return self._shared.view
            buf = self._buf = _Own(room)
        if len(buf) - buf.end < room:
            held = buf.end - buf.start
            if held + room > len(buf):  # a bigger buffer (a new one: a view may be alive)
                bigger = _Own(max(2 * len(buf), held + room))
                bigger[:held] = buf[buf.start : buf.end]
                bigger.next, bigger.size = buf.next, buf.size
                self._buf = buf = bigger
            else:  # move the held octets to the front (a copy of less than one TSDU)
                buf[:held] = buf[buf.start : buf.end]
            buf.start, buf.end = 0, held
        return memoryview(buf)[buf.end :]

    def feed(self, data: bytes, out: list[bytes]) -> bytes:
        """:meth:`parse` for octets that were read elsewhere: they are copied in first."""
        n = len(data)
        self._room(n)[:n] = data
        return self.parse(n, out)

    def single(self, nbytes: int) -> bytes | None:
        """When the ``nbytes`` just read into :meth:`get_buffer` are one whole plain-data
        TSDU in one TPDU, and nothing was held: its user data.  Otherwise None, and
        :meth:`parse` is next.  (A request or a response is such a read, and this is
        the shortest way to its user data; ``aio.Connection.buffer_updated`` does the same
        inline.)"""
        if self._buf is None and nbytes >= _FIRST:
            shared = self._shared
            tpkt, length, head = _unpack_first(shared.buf, 0)
            whole = length == nbytes and head == _EOT_PREFIX and tpkt == _TPKT_V3
            if whole and length - _HEAD <= self.max_tsdu_size:
                return bytes(shared.view[_FIRST:nbytes])
        return None

    def parse(self, nbytes: int, out: list[bytes]) -> bytes:
        """``nbytes`` were read into :meth:`get_buffer`: append whole messages to ``out``;
        return what the general path must take (b"" when nothing)."""
        own = self._buf
        buf: bytearray
        if own is None:  # the read went to the shared buffer
            buf, view = self._shared.buf, self._shared.view
            pos, end, nxt, size = 0, nbytes, 0, 0
            if nbytes > self._want:  # reads this large arrive: give the own buffer room
                # (a quarter of the shared buffer in one read is bulk data: read as much)
                self._want = READ_SIZE if nbytes >= READ_SIZE // 4 else nbytes
        else:
            buf = own
            view = memoryview(buf)
            pos, end, nxt, size = own.start, own.end + nbytes, own.next, own.size
            if nbytes >= self._want and self._want < READ_SIZE:  # the read filled its room
                self._want = min(READ_SIZE, 2 * self._want)
        limit = self.max_tsdu_size
        while True:
            if not nxt:  # at a TSDU boundary: the common case
                pos = _whole(buf, view, pos, end, out, limit)
                if pos >= end:
                    self._buf = None
                    return b""
            stop, nxt, size = _scan(buf, pos, nxt, end, size, out, limit)
            if stop == _CUT:
                self._keep(buf, pos, end, nxt, size)
                return b""
            if stop == _OTHER:
                # Not plain data: the general path takes this TPDU; the rest stays held
                # here (the caller parses it on: see ``more``) unless it cannot be split.
                length = (buf[pos + 2] << 8) | buf[pos + 3] if end - pos >= 4 else 0
                cut = pos + length
                if length < TPKT_HEADER_SIZE or cut >= end:
                    self._buf = None
                    return bytes(buf[pos:end])
                other = bytes(buf[pos:cut])
                self._keep(buf, cut, end, 0, 0)
                return other
            pos, nxt, size = stop, 0, 0

    def more(self, out: list[bytes]) -> bytes:
        """After :meth:`parse` gave the general path a TPDU that was not plain data: go on
        with what followed it in the read (held), as :meth:`parse` does."""
        if self._buf is None:
            return b""
        return self.parse(0, out)

    def _keep(self, buf: bytearray, pos: int, end: int, nxt: int, size: int) -> None:
        """Keep ``buf[pos:end]``, a TSDU cut short, for the next reads to continue."""
        own = self._buf
        if buf is not own or own is None:  # it is in the shared buffer: into one of our own
            held = end - pos
            if self._want >= READ_SIZE:  # bulk data: a large buffer, as reads are large
                alloc = max(_OWN_BULK, held + READ_SIZE)
            else:
                alloc = held + _rest_of_tpdu(buf, pos + nxt, end) + self._want
            own = self._buf = _Own(alloc)
            own[:held] = buf[pos:end]
            pos, end = 0, held
        own.start, own.end, own.next, own.size = pos, end, nxt, size


def _rest_of_tpdu(buf: bytearray, pos: int, end: int) -> int:
    """Octets still to come of the TPDU at ``buf[pos:end]``, when its TPKT length has
    arrived (else 0)."""
    if end - pos < TPKT_HEADER_SIZE:
        return 0
    return max(0, ((buf[pos + 2] << 8) | buf[pos + 3]) - (end - pos))


def _whole(buf: bytearray, view: memoryview, pos: int, end: int, out: list[bytes],
           limit: int) -> int:  # fmt: skip
    """Append every whole plain-data TSDU in ``buf[pos:end]`` (``view``: all of ``buf``)
    to ``out``; return where it stopped (a TSDU cut short, or anything else)."""
    if end - pos < TPKT_HEADER_SIZE:
        return pos
    length = (buf[pos + 2] << 8) | buf[pos + 3]
    if length > end - pos:  # not even its first TPDU is whole
        return pos
    if length >= _LARGE:
        # Large TPDUs: the user data straight from the buffer (a TSDU in one TPDU comes
        # back as a view, made bytes here; the others are joined already).
        views: list[bytes | memoryview] = []
        pos = _whole_messages(view, pos, end, views, limit)
        out.extend(map(bytes, views))
        return pos
    # Small messages: one copy of the octets read, then a slice (a copy) per message.
    data = bytes(view[pos:end])
    return pos + _whole_messages(data, 0, len(data), out, limit)


def _whole_messages(buf: bytes | memoryview, pos: int, end: int, out: list[Any],
                    limit: int) -> int:  # fmt: skip
    """Take every whole plain-data TSDU from ``buf[pos:end]``; stop at the first octet
    that needs more care (a TSDU cut short, or anything else).  Returns where it stopped.

    The hot loop of the fast path: one struct call checks a TPDU's header and the
    DATA_PREFIX; a TSDU in one TPDU (the common case) costs one slice.
    """
    append = out.append
    unpack = _FIRST_DT.unpack_from
    while end - pos >= _FIRST:
        tpkt, length, head = unpack(buf, pos)
        stop = pos + length
        if tpkt != _TPKT_V3 or stop > end or length < _FIRST or length - _HEAD > limit:
            break
        if head == _EOT_PREFIX:
            append(buf[pos + _FIRST : stop])
            pos = stop
        elif head != _MORE_PREFIX or (stop := _spanning(buf, pos, stop, end, out, limit)) < 0:
            break
        else:
            pos = stop
    return pos


def _spanning(buf: bytes | memoryview, pos: int, stop: int, end: int, out: list[Any],
              limit: int) -> int:  # fmt: skip
    """A TSDU in several TPDUs, its first (without EOT) at ``buf[pos:stop]``: when all of
    its TPDUs are in ``buf[:end]``, append its user data (one join of views, no other
    copy) and return where it ends; otherwise -1 (left to :func:`_scan`)."""
    view = memoryview(buf)
    parts = [view[pos + _FIRST : stop]]
    size = stop - pos - _HEAD
    unpack = _DT.unpack_from
    pos = stop
    while end - pos >= _HEAD:
        tpkt, length, dt = unpack(buf, pos)
        stop = pos + length
        size += length - _HEAD or dt == DT_MORE_HEADER  # (an empty DT counts as 1)
        if tpkt != _TPKT_V3 or stop > end or length < _HEAD or size > limit:
            return -1
        parts.append(view[pos + _HEAD : stop])
        pos = stop
        if dt == DT_EOT_HEADER:
            out.append(b"".join(parts))
            return pos
        if dt != DT_MORE_HEADER:
            return -1
    return -1


def _scan(buf: bytearray, start: int, nxt: int, end: int, size: int, out: list[bytes],
          limit: int) -> tuple[int, int, int]:  # fmt: skip
    """Check the TPDUs of the TSDU at ``buf[start:end]`` from ``start + nxt`` on (``size``:
    the user data of those before).  Returns (where the TSDU ends, 0, 0) when it is whole
    (its user data appended to ``out``), (_CUT, nxt, size) to wait for more octets, or
    (_OTHER, 0, 0) when it is not plain data.  Raises DecodeError past ``limit``."""
    pos = start + nxt
    while True:
        need = _FIRST if pos == start else _HEAD
        if end - pos < need:  # a header cut short: wait for the rest if it may be plain data
            if _plausible(bytes(buf[pos:end]), need):
                return _CUT, pos - start, size
            return _OTHER, 0, 0
        tpkt, length, dt = _DT.unpack_from(buf, pos)
        plain = need == _HEAD or buf[pos + _HEAD : pos + _FIRST] == DATA_PREFIX
        if (
            tpkt != _TPKT_V3
            or length < need
            or not plain
            or (dt != DT_EOT_HEADER and dt != DT_MORE_HEADER)
        ):
            return _OTHER, 0, 0
        total = size + (length - _HEAD or dt == DT_MORE_HEADER)  # (an empty DT: 1)
        if total > limit:
            raise tsdu_too_large(total, limit)
        if end - pos < length:
            return _CUT, pos - start, size
        pos += length
        size = total
        if dt == DT_EOT_HEADER:
            out.append(_join(buf, start, pos))
            return pos, 0, 0


def _join(buf: bytearray, pos: int, end: int) -> bytes:
    """The user data of the whole TSDU at ``buf[pos:end]`` (its TPDUs already checked)."""
    view = memoryview(buf)
    parts = []
    skip = _FIRST
    while pos < end:
        stop = pos + ((buf[pos + 2] << 8) | buf[pos + 3])
        parts.append(view[pos + skip : stop])
        pos, skip = stop, _HEAD
    return b"".join(parts)


def _plausible(hdr: bytes, need: int) -> bool:
    """Could ``hdr`` (all or the start of a TPDU header) begin a plain-data DT TPDU?"""
    n = len(hdr)
    if n >= 2 and (hdr[0] != TPKT_VERSION or hdr[1]):
        return False
    if n >= TPKT_HEADER_SIZE and ((hdr[2] << 8) | hdr[3]) < need:
        return False
    dt = hdr[TPKT_HEADER_SIZE:_HEAD]
    if n >= _HEAD and dt != DT_EOT_HEADER and dt != DT_MORE_HEADER:
        return False
    return not (need == _FIRST and n >= _FIRST and hdr[_HEAD:_FIRST] != DATA_PREFIX)
