"""TPKT framing, RFC 1006 section 6.

A TPKT is a 4-octet header -- version 3, a reserved octet 0 and the 16-bit
big-endian length of the whole packet, header included -- followed by one
ISO 8073 TPDU.  RFC 1006 bounds the length to 7..65535, so a payload is
3..65531 octets.  Sans-I/O: bytes in, bytes out.
"""

from __future__ import annotations

import struct

from sessionlayer.errors import DecodeError, EncodeError

__all__ = [
    "MAX_TPKT_PAYLOAD",
    "MIN_TPKT_LENGTH",
    "TPKT_HEADER_SIZE",
    "TPKT_VERSION",
    "TpktParser",
    "encode_tpkt",
]

TPKT_VERSION = 3
TPKT_HEADER_SIZE = 4
MIN_TPKT_LENGTH = 7  #: header + the smallest TPDU (a 3-octet DT header)
MAX_TPKT_PAYLOAD = 0xFFFF - TPKT_HEADER_SIZE  #: 65531

_HEADER = struct.Struct(">BBH")


def encode_tpkt(payload: bytes) -> bytes:
    """Return *payload* (one TPDU) framed in a TPKT header."""
    size = len(payload)
    if size + TPKT_HEADER_SIZE < MIN_TPKT_LENGTH:
        raise EncodeError(f"TPKT payload of {size} octets is shorter than a TPDU header")
    if size > MAX_TPKT_PAYLOAD:
        raise EncodeError(f"TPKT payload of {size} octets exceeds {MAX_TPKT_PAYLOAD}")
    return _HEADER.pack(TPKT_VERSION, 0, size + TPKT_HEADER_SIZE) + bytes(payload)


class TpktParser:
    """Incremental TPKT parser: feed it stream bytes, get whole payloads back.

    The result does not depend on how the stream is cut into :meth:`feed`
    calls.  A bad header raises :class:`DecodeError` (``offset`` is its
    position in the stream) and every later call raises it again: a TPKT
    stream that lost its framing cannot be resynchronised.
    """

    __slots__ = ("_buffer", "_consumed", "_error")

    def __init__(self) -> None:
        # Octets of a TPKT cut short: immutable, and the shared b"" while there are none
        # (a connection at a TPKT boundary holds nothing; a bytearray would stay allocated).
        self._buffer = b""
        self._consumed = 0  # stream offset of self._buffer[0]
        self._error: DecodeError | None = None

    @property
    def buffered(self) -> int:
        """Octets received that do not yet make a whole TPKT."""
        return len(self._buffer)

    @property
    def offset(self) -> int:
        """Stream offset of the next TPKT header."""
        return self._consumed

    def feed(self, data: bytes) -> list[bytes]:
        """Add *data* and return the payloads of the TPKTs it completes."""
        if self._error is not None:
            raise self._error
        buf = self._buffer + data if self._buffer else bytes(data)
        payloads: list[bytes] = []
        pos = 0
        while len(buf) - pos >= TPKT_HEADER_SIZE:
            try:
                length = self._check_header(buf, pos)
            except DecodeError:
                if not payloads:
                    raise
                # The TPKTs before it come first (as they would, read one at a time); the
                # error is raised by the next feed (see ``error``).
                self._buffer = buf[pos:]
                return payloads
            if len(buf) - pos < length:
                break
            payloads.append(buf[pos + TPKT_HEADER_SIZE : pos + length])
            pos += length
            self._consumed += length
        self._buffer = buf[pos:]
        return payloads

    def unread(self, payloads: list[bytes]) -> None:
        """Put whole TPKTs back, ahead of what is held: the next :meth:`feed` returns
        *payloads* first (a reader that must act before it reads on)."""
        if payloads:
            octets = b"".join(_HEADER.pack(TPKT_VERSION, 0, len(p) + TPKT_HEADER_SIZE) + p
                              for p in payloads)  # fmt: skip
            self._buffer = octets + self._buffer
            self._consumed -= len(octets)

    def hold(self, data: bytes) -> None:
        """Keep *data* unread: the next :meth:`feed` frames it (with what it is given)."""
        if data:
            self._buffer += bytes(data)

    def take(self) -> bytes:
        """Give up the octets of the partial TPKT held (another reader continues the
        stream from here); the parser is empty after."""
        held, self._buffer = self._buffer, b""
        self._consumed += len(held)
        return held

    @property
    def error(self) -> DecodeError | None:
        """The error that failed the stream (raised by every later :meth:`feed`), if any."""
        return self._error

    def _check_header(self, buf: bytes, pos: int) -> int:
        version, reserved, length = _HEADER.unpack_from(buf, pos)
        problem = None
        if version != TPKT_VERSION:
            problem = f"TPKT version {version}, expected {TPKT_VERSION}"
        elif reserved != 0:  # (libiec61850 refuses it too: it reads version 3, then 0)
            problem = f"TPKT reserved octet is {reserved:#04x}, expected 0"
        elif length < MIN_TPKT_LENGTH:
            problem = f"TPKT length {length} is below the minimum {MIN_TPKT_LENGTH}"
        if problem is not None:
            self._error = DecodeError(
                problem, offset=self._consumed, reflect=buf[pos : pos + TPKT_HEADER_SIZE]
            )
            raise self._error
        return int(length)
