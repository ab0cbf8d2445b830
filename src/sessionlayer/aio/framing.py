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


def frame_data(data: bytes, tpdu_size: int) -> bytes:
    """TPKT + DT TPDUs carrying the TSDU ``DATA_PREFIX + data``, each TPDU <= ``tpdu_size``."""
    room = tpdu_size - 3
    n = len(data)
    if n + 4 <= room:
        return _TPKT.pack(3, 0, n + _FIRST) + _DT_EOT + DATA_PREFIX + data
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


class PlainReader:
    """Takes plain-data TSDUs off the front of the byte stream.

    :meth:`feed` returns the user data of each whole plain-data TSDU, and the
    octets from the first TPDU that is something else (for the general path,
    which then owns the stream until it is idle again).  A TPDU or TSDU cut
    short at the end of ``data`` is kept for the next call, or given back as
    raw octets by :meth:`take` when the general path has to take over.
    """

    __slots__ = ("_frames", "_rest", "_size", "max_tsdu_size")

    def __init__(self, max_tsdu_size: int) -> None:
        self.max_tsdu_size = max_tsdu_size
        self._rest = b""  # the start of a TPDU not yet whole
        self._frames: list[bytes] = []  # whole TPDUs of a TSDU not yet whole
        self._size = 0

    @property
    def pending(self) -> bool:
        """Octets of a partial TPDU or TSDU are held."""
        return bool(self._rest or self._frames)

    def take(self) -> bytes:
        """Give back, as they came, the octets held; the reader is empty after."""
        held = b"".join(self._frames) + self._rest
        self._frames.clear()
        self._rest = b""
        self._size = 0
        return held

    def feed(self, data: bytes, out: list[bytes]) -> bytes:
        """Append whole messages to ``out``; return what the general path must take."""
        buf = self._rest + data if self._rest else data
        self._rest = b""
        pos, n = 0, len(buf)
        frames = self._frames
        while pos < n:
            avail = n - pos
            if avail < 4:
                break
            length = (buf[pos + 2] << 8) | buf[pos + 3]
            need = _HEAD if frames else _FIRST
            if buf[pos] != 3 or buf[pos + 1] or length < need:
                return self._hand_over(buf, pos)
            if avail < need:
                break
            cotp = buf[pos + 4 : pos + 7]
            if cotp != _DT_EOT and cotp != _DT_MORE:
                return self._hand_over(buf, pos)
            if not frames and buf[pos + _HEAD : pos + _FIRST] != DATA_PREFIX:
                return self._hand_over(buf, pos)
            if avail < length:
                break
            self._size += length - _HEAD
            if self._size > self.max_tsdu_size:
                size = self._size
                self.take()
                raise DecodeError(
                    f"TSDU of at least {size} octets exceeds the maximum {self.max_tsdu_size}",
                    reason=AbortReason.TRANSPORT_RELEASED | AbortReason.IMPLEMENTATION_RESTRICTION,
                )
            end = pos + length
            if cotp == _DT_EOT:
                if frames:
                    frames.append(buf[pos:end])
                    out.append(_payload(frames))
                    frames.clear()
                else:
                    out.append(buf[pos + _FIRST : end])
                self._size = 0
            else:
                frames.append(buf[pos:end])
            pos = end
        self._rest = buf[pos:]
        return b""

    def _hand_over(self, buf: bytes, pos: int) -> bytes:
        return self.take() + buf[pos:]


def _payload(frames: list[bytes]) -> bytes:
    """The user data of a TSDU from its whole DT TPDUs (the first holds the prefix)."""
    first, *rest = frames
    return b"".join([first[_FIRST:], *(frame[_HEAD:] for frame in rest)])
