"""Length indicators and PI/PGI units: the bottom of the SPDU codec.

X.225 8.2.5: a length indicator (LI) is one octet for 0-254; for 255-65535
it is the octet 0xFF followed by two octets, most significant first.  We
never emit the long form for a value under 255 and refuse it on input
(ISODE does the same; libiec61850 cannot read the long form at all).
"""

from __future__ import annotations

from ..errors import DecodeError, EncodeError

__all__ = ["MAX_LI", "encode_li", "read_li", "encode_unit", "iter_units"]

MAX_LI = 65535


def encode_li(length: int) -> bytes:
    """Encode a length indicator in the shortest form X.225 allows."""
    if length < 0 or length > MAX_LI:
        raise EncodeError(f"length {length} does not fit a length indicator (0..65535)")
    if length < 255:
        return bytes((length,))
    return bytes((0xFF, length >> 8, length & 0xFF))


def read_li(buf: bytes | memoryview, pos: int, end: int) -> tuple[int, int]:
    """Read the LI at ``buf[pos]``; return (length, position after the LI)."""
    if pos >= end:
        raise DecodeError("truncated: length indicator missing", offset=pos)
    first = buf[pos]
    if first != 0xFF:
        return first, pos + 1
    if pos + 3 > end:
        raise DecodeError("truncated: three-octet length indicator cut short", offset=pos)
    length = (buf[pos + 1] << 8) | buf[pos + 2]
    if length < 255:
        raise DecodeError(
            f"three-octet length indicator holds {length}, which must use one octet",
            offset=pos,
        )
    return length, pos + 3


def encode_unit(code: int, value: bytes) -> bytes:
    """One PI or PGI unit: code, LI, value."""
    return bytes((code,)) + encode_li(len(value)) + value


def iter_units(buf: bytes | memoryview, pos: int, end: int) -> list[tuple[int, int, int]]:
    """Split ``buf[pos:end]`` into units; return (code, value start, value end) each."""
    units: list[tuple[int, int, int]] = []
    while pos < end:
        code = buf[pos]
        length, start = read_li(buf, pos + 1, end)
        stop = start + length
        if stop > end:
            raise DecodeError(
                f"parameter {code} claims {length} octets but only {end - start} remain",
                offset=pos,
            )
        units.append((code, start, stop))
        pos = stop
    return units
