"""The data fast path: S-DATA framed and deframed without the general machinery.

While the machine's ``plain_data`` holds, every S-DATA is the TSDU
``DATA_PREFIX + data`` (GT and DT with empty parameter fields), carried in
ISO 8073 DT TPDUs in TPKTs.  :func:`frame_data` builds exactly the octets the
general path (machine, then :class:`~sessionlayer.transport.Rfc1006Connection`)
would build, in one go; :class:`PlainReader` pulls such TSDUs out of the
byte stream and hands anything else back to the general path.  A test holds
both paths to the same octets.
"""

from __future__ import annotations

import struct

from ..errors import AbortReason, DecodeError
from ..machine import DATA_PREFIX

__all__ = ["frame_data", "PlainReader"]

_TPKT = struct.Struct(">BBH")
_DT_EOT = b"\x02\xf0\x80"
_DT_MORE = b"\x02\xf0\x00"
_HEAD = 4 + 3  # TPKT header + class 0 DT header
_FIRST = _HEAD + len(DATA_PREFIX)
_EOT_PREFIX = _DT_EOT + DATA_PREFIX
_MORE_PREFIX = _DT_MORE + DATA_PREFIX
_TPKT_V3 = 0x0300  # TPKT version 3 and the reserved octet, as one big-endian 16-bit field
# The TPKT header and the next 3 (DT header) or 7 (DT header and DATA_PREFIX) octets in one
# struct call: (version+reserved, TPKT length, the octets after the TPKT header).
_DT = struct.Struct(">HH3s")
_FIRST_DT = struct.Struct(">HH7s")
_pack_first = _FIRST_DT.pack


def frame_data(data: bytes, tpdu_size: int) -> bytes:
    """TPKT + DT TPDUs carrying the TSDU ``DATA_PREFIX + data``, each TPDU <= ``tpdu_size``."""
    room = tpdu_size - 3
    n = len(data)
    if n + 4 <= room:
        return _pack_first(_TPKT_V3, n + _FIRST, _EOT_PREFIX) + data
    view = memoryview(data)
    first = room - 4
    parts: list[bytes | memoryview] = [_TPKT.pack(3, 0, room + _HEAD), _DT_MORE, DATA_PREFIX]
    parts.append(view[:first])
    pos = first
    while pos < n:
        chunk = view[pos : pos + room]
        pos += room
        parts.append(_TPKT.pack(3, 0, len(chunk) + _HEAD))
        parts.append(_DT_EOT if pos >= n else _DT_MORE)
        parts.append(chunk)
    return b"".join(parts)


_UNUSED: list[memoryview] = []  # never appended to


class PlainReader:
    """Takes plain-data TSDUs off the front of the byte stream.

    :meth:`feed` appends the user data of each whole plain-data TSDU to ``out``
    and returns the octets from the first TPDU that is something else (for the
    general path, which then owns the stream until it is idle again).  A TPDU
    or TSDU cut short at the end of a chunk is held as views of the chunks,
    not copied, and given back as raw octets by :meth:`take` when the general
    path has to take over.
    """

    __slots__ = ("_eot", "_head", "_left", "_parts", "_raw", "_size", "max_tsdu_size")

    def __init__(self, max_tsdu_size: int) -> None:
        self.max_tsdu_size = max_tsdu_size
        self._head = b""  # the start of a TPDU header cut short
        # Octets of the TSDU under way (headers included) and its user data: shared empty
        # lists until a TSDU spans TPDUs (see _header), so an idle session holds none.
        self._raw: list[memoryview] = _UNUSED
        self._parts: list[memoryview] = _UNUSED
        self._left = 0  # octets of the current TPDU still to come
        self._eot = False  # the current TPDU ends its TSDU
        self._size = 0  # user data of the TSDU under way, with the prefix

    @property
    def pending(self) -> bool:
        """Octets of a partial TPDU or TSDU are held."""
        return bool(self._head or self._raw)

    def take(self) -> bytes:
        """Give back, as they came, the octets held; the reader is empty after."""
        held = b"".join([*self._raw, self._head])
        self._head, self._left, self._size = b"", 0, 0
        self._raw.clear()
        self._parts.clear()
        return held

    def feed(self, data: bytes, out: list[bytes]) -> bytes:
        """Append whole messages to ``out``; return what the general path must take."""
        pos, n = 0, len(data)
        view: memoryview | None = None
        while pos < n:
            if not self._raw and not self._head:
                pos = _whole_messages(data, pos, out, self.max_tsdu_size)  # the common case
                if pos >= n:
                    break
            if view is None:
                view = memoryview(data)
            if self._left:
                pos = self._continue(view, pos, out)
                continue
            step = self._header(data, view, pos)
            if step < 0:
                return self.take() + data[pos:]
            pos += step
            if self._left == 0 and self._raw and self._eot:
                self._complete(out)
        return b""

    def _continue(self, view: memoryview, pos: int, out: list[bytes]) -> int:
        """More of the current TPDU's user data."""
        k = min(self._left, len(view) - pos)
        piece = view[pos : pos + k]
        self._raw.append(piece)
        self._parts.append(piece)
        self._left -= k
        if not self._left and self._eot:
            self._complete(out)
        return pos + k

    def _header(self, data: bytes, view: memoryview, pos: int) -> int:
        """Read (the rest of) a TPDU header; return octets used, or -1 to hand over."""
        if self._raw is _UNUSED:
            self._raw, self._parts = [], []
        need = _HEAD if self._raw else _FIRST
        held = len(self._head)
        hdr = self._head + data[pos : pos + need - held] if held else data[pos : pos + need]
        if not _plausible(hdr, need):
            return -1
        if len(hdr) < need:
            self._head = hdr
            return len(hdr) - held
        length = (hdr[2] << 8) | hdr[3]
        self._size += length - _HEAD
        if self._size > self.max_tsdu_size:
            size = self._size
            self.take()
            raise DecodeError(
                f"TSDU of at least {size} octets exceeds the maximum {self.max_tsdu_size}",
                reason=AbortReason.TRANSPORT_RELEASED | AbortReason.IMPLEMENTATION_RESTRICTION,
            )
        self._raw.append(memoryview(hdr) if held else view[pos : pos + need])
        self._head = b""
        self._left = length - need
        self._eot = hdr[6] == 0x80
        return need - held

    def _complete(self, out: list[bytes]) -> None:
        parts = self._parts
        out.append(bytes(parts[0]) if len(parts) == 1 else b"".join(parts))
        parts.clear()
        self._raw.clear()
        self._size = 0


def _plausible(hdr: bytes, need: int) -> bool:
    """Could ``hdr`` (all or the start of a TPDU header) begin a plain-data DT TPDU?"""
    n = len(hdr)
    if n >= 2 and (hdr[0] != 3 or hdr[1]):
        return False
    if n >= 4 and ((hdr[2] << 8) | hdr[3]) < need:
        return False
    if n >= 7 and hdr[4:7] != _DT_EOT and hdr[4:7] != _DT_MORE:
        return False
    return not (need == _FIRST and n >= _FIRST and hdr[_HEAD:_FIRST] != DATA_PREFIX)


def _whole_messages(buf: bytes, pos: int, out: list[bytes], limit: int) -> int:
    """Take every whole plain-data TSDU from ``buf[pos:]``; stop at the first octet that
    needs more care (a TSDU cut short, or anything else).  Returns where it stopped.

    The hot loop of the fast path: one struct call checks a TPDU's header and the
    DATA_PREFIX; a TSDU in one TPDU (the common case) costs one slice.
    """
    n = len(buf)
    append = out.append
    unpack = _FIRST_DT.unpack_from
    while n - pos >= _FIRST:
        tpkt, length, head = unpack(buf, pos)
        end = pos + length
        if tpkt != _TPKT_V3 or end > n or length < _FIRST or length - _HEAD > limit:
            break
        if head == _EOT_PREFIX:
            append(buf[pos + _FIRST : end])
            pos = end
        elif head != _MORE_PREFIX or (end := _spanning(buf, pos, end, out, limit)) < 0:
            break
        else:
            pos = end
    return pos


def _spanning(buf: bytes, pos: int, end: int, out: list[bytes], limit: int) -> int:
    """A TSDU in several TPDUs, its first (without EOT) at ``buf[pos:end]``: when all of
    its TPDUs are in ``buf``, append its user data (one join of views, no other copy) and
    return where it ends; otherwise -1 (the caller leaves it to the stateful path)."""
    n = len(buf)
    view = memoryview(buf)
    parts = [view[pos + _FIRST : end]]
    size = end - pos - _HEAD
    unpack = _DT.unpack_from
    pos = end
    while n - pos >= _HEAD:
        tpkt, length, dt = unpack(buf, pos)
        end = pos + length
        size += length - _HEAD
        if tpkt != _TPKT_V3 or end > n or length < _HEAD or size > limit:
            return -1
        parts.append(view[pos + _HEAD : end])
        pos = end
        if dt == _DT_EOT:
            out.append(b"".join(parts))
            return pos
        if dt != _DT_MORE:
            return -1
    return -1
