"""TSDU segmenting and reassembly over class 0 DT TPDUs (ISO 8073 6.3).

A TSDU longer than the negotiated TPDU size minus the 3-octet DT header is
sent as several DT TPDUs; only the last has EOT set.
"""

from __future__ import annotations

from sessionlayer.errors import AbortReason, DecodeError, EncodeError
from sessionlayer.transport.cotp import DT_EOT_HEADER, DT_HEADER_SIZE, Data, encode_tpdu

__all__ = [
    "DEFAULT_MAX_TSDU_SIZE",
    "DT_HEADER_SIZE",
    "TsduAssembler",
    "segment_tsdu",
    "tsdu_too_large",
]

DEFAULT_MAX_TSDU_SIZE = 1 << 20  #: 1 MiB


def tsdu_too_large(size: int, limit: int) -> DecodeError:
    """The error for a TSDU of at least *size* octets received over a *limit* of this side's
    (an implementation restriction: the peer did nothing wrong).  One message and reason for
    :class:`TsduAssembler` and the fast path (:mod:`sessionlayer.transport.fastpath`)."""
    return DecodeError(
        f"TSDU of at least {size} octets exceeds the maximum {limit}",
        reason=AbortReason.TRANSPORT_RELEASED | AbortReason.IMPLEMENTATION_RESTRICTION,
    )


def segment_tsdu(tsdu: bytes, max_tpdu_size: int) -> list[bytes]:
    """Encode *tsdu* as DT TPDUs of at most *max_tpdu_size* octets each, header included.

    An empty TSDU becomes one empty DT with EOT set.
    """
    room = max_tpdu_size - DT_HEADER_SIZE
    if room < 1:
        raise EncodeError(f"TPDU size {max_tpdu_size} leaves no room for user data")
    if len(tsdu) <= room:  # one DT (what encode_tpdu(Data(tsdu)) gives)
        return [DT_EOT_HEADER + bytes(tsdu)]
    view = memoryview(tsdu)
    starts = range(0, max(len(view), 1), room)
    last = starts[-1]
    return [
        encode_tpdu(Data(bytes(view[start : start + room]), eot=start == last)) for start in starts
    ]


class TsduAssembler:
    """Collects the user data of DT TPDUs until one with EOT completes a TSDU.

    A TSDU larger than *max_tsdu_size* raises :class:`DecodeError` with the
    implementation-restriction reason (the peer did nothing wrong, but this
    side will not hold it).  An empty DT without EOT counts as one octet, as on the
    fast path.
    """

    __slots__ = ("_parts", "_size", "max_tsdu_size")

    def __init__(self, max_tsdu_size: int = DEFAULT_MAX_TSDU_SIZE) -> None:
        if max_tsdu_size < 1:
            raise ValueError("max_tsdu_size must be positive")
        self.max_tsdu_size = max_tsdu_size
        self._parts: list[bytes] | None = None  # made by a TSDU in several DTs
        self._size = 0

    @property
    def pending(self) -> int:
        """Octets of an incomplete TSDU held so far."""
        return self._size

    def feed(self, tpdu: Data) -> bytes | None:
        """Add one DT; return the whole TSDU if it carried EOT, else None.  An empty DT
        without EOT counts as one octet (else a peer could send them without end, each
        held, none counted)."""
        self._size += len(tpdu.user_data) or not tpdu.eot
        if self._size > self.max_tsdu_size:
            size, self._parts, self._size = self._size, None, 0
            raise tsdu_too_large(size, self.max_tsdu_size)
        if tpdu.eot and self._parts is None:  # a TSDU in one DT
            self._size = 0
            return tpdu.user_data
        if self._parts is None:
            self._parts = []
        self._parts.append(tpdu.user_data)
        if not tpdu.eot:
            return None
        tsdu = b"".join(self._parts)
        self._parts, self._size = None, 0
        return tsdu
