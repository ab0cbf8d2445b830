"""Turn a captured byte stream into TPDUs and SPDUs, for ``sessionlayer decode``.

Pure: no files, no sockets.  One :class:`StreamDissector` per direction of a
TCP connection (or per hex dump).  A broken TPKT header ends the stream (its
framing is lost); a malformed TSDU is reported and the next one decoded.  Octets
a capture does not hold (:meth:`StreamDissector.gap`) are reported, and decoding
resumes at the first segment after them that starts with a TPKT header, as
Wireshark's does (:func:`dissect_stream`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import DecodeError
from .spdu import decode_tsdu
from .spdu.describe import spdu_summary, spdu_to_dict
from .spdu.types import SPDU
from .transport import (
    DEFAULT_MAX_TSDU_SIZE,
    ConnectionConfirm,
    ConnectionRequest,
    Data,
    DisconnectRequest,
    ExpeditedData,
    TpktParser,
    TsduAssembler,
    decode_tpdu,
)
from .transport.cotp import TPDU

__all__ = ["Record", "StreamDissector", "dissect_spdus", "dissect_stream", "tpdu_summary",
           "looks_like_tpkt", "starts_tpkt"]  # fmt: skip


@dataclass
class Record:
    """One line of output: a TPDU, an SPDU, or an error, with where it came from."""

    offset: int  #: stream offset of the TPKT that completed it
    tpdu: TPDU | None = None
    spdu: SPDU | None = None
    tsdu_index: int | None = None  #: which TSDU of the stream the SPDU belongs to
    error: str | None = None
    context: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        if self.spdu is None:
            raise ValueError("only SPDU records have a JSON form")
        out = spdu_to_dict(self.spdu)
        out.update(self.context)
        if self.tsdu_index is not None:
            out["tsdu"] = self.tsdu_index
        return out


def looks_like_tpkt(data: bytes) -> bool:
    """A TPKT stream starts with version 3 and a zero reserved octet."""
    return len(data) >= 4 and data[0] == 3 and data[1] == 0


def starts_tpkt(data: bytes) -> bool:
    """*data* may start with a TPKT header: 03 00 and a length that holds a COTP header
    (where decoding resumes after a gap, or starts in a capture begun mid-connection)."""
    return looks_like_tpkt(data) and int.from_bytes(data[2:4], "big") >= 7


def dissect_spdus(tsdu: bytes, index: int = 0, offset: int = 0) -> list[Record]:
    """Decode one TSDU (bare SPDUs); a malformed one becomes an error record."""
    try:
        spdus = decode_tsdu(tsdu, extended=True)
    except DecodeError as exc:
        return [Record(offset, tsdu_index=index, error=f"malformed SPDU: {exc}")]
    return [Record(offset, spdu=s, tsdu_index=index) for s in spdus]


class StreamDissector:
    """Feed one direction's bytes; collect :class:`Record` objects."""

    def __init__(self, max_tsdu_size: int = DEFAULT_MAX_TSDU_SIZE) -> None:
        self._max_tsdu_size = max_tsdu_size
        self._tpkt = TpktParser()
        self._tsdu = TsduAssembler(max_tsdu_size)
        self._tsdus = 0
        self._base = 0  # stream offset where self._tpkt started
        self._fed = 0  # octets fed so far
        self._lost = False  # after a gap: looking for a TPKT header
        self.failed: str | None = None

    @property
    def pending(self) -> int:
        """Octets fed that do not make a whole TPKT yet (0: at a TPKT boundary)."""
        return self._tpkt.buffered

    def feed(self, data: bytes) -> list[Record]:
        at, self._fed = self._fed, self._fed + len(data)
        if self._lost:
            if not starts_tpkt(data):
                return []  # (in the TPKT the gap cut)
            self._lost = False
            self._tpkt, self._base = TpktParser(), at
        if self.failed is not None:
            return []
        try:
            start = self._base + self._tpkt.offset
            payloads = self._tpkt.feed(data)
        except DecodeError as exc:
            offset = self._base + (self._tpkt.offset if exc.offset is None else exc.offset)
            self.failed = f"bad TPKT framing at offset {offset}: {exc}"
            return [Record(self._base + self._tpkt.offset, error=self.failed)]
        records: list[Record] = []
        for payload in payloads:
            records += self._payload(payload, start)
            start += 4 + len(payload)
        return records

    def gap(self, octets: int, frame: int | None = None) -> list[Record]:
        """*octets* of the stream, between the last :meth:`feed` and the next, are not in
        the capture (a segment not captured, or cut by the snapshot length; the one after
        them in *frame*).  What they cut (a TPKT, a TSDU) is dropped, and decoding resumes
        at the first later feed that starts with a TPKT header (03 00, a length of at least
        7): feed one segment at a time after a gap, as :func:`dissect_stream` does."""
        self._lost = True
        self.failed = None
        self._tsdu = TsduAssembler(self._max_tsdu_size)
        where = "" if frame is None else f" before frame {frame}"
        return [Record(self._fed, error=f"{octets} octets not captured{where}")]

    def finish(self) -> list[Record]:
        """Report what the stream left unfinished."""
        if self.failed is None and not self._lost and self._tpkt.buffered:
            return [Record(self._base + self._tpkt.offset, error="stream ends inside a TPKT")]
        return []

    def _payload(self, payload: bytes, offset: int) -> list[Record]:
        try:
            tpdu = decode_tpdu(payload)
        except DecodeError as exc:
            return [Record(offset, error=f"malformed TPDU: {exc}")]
        records = [Record(offset, tpdu=tpdu)]
        if isinstance(tpdu, Data):
            try:
                tsdu = self._tsdu.feed(tpdu)
            except DecodeError as exc:
                return [*records, Record(offset, error=str(exc))]
            if tsdu is not None:
                records += dissect_spdus(tsdu, self._tsdus, offset)
                self._tsdus += 1
        elif isinstance(tpdu, ExpeditedData):
            records += dissect_spdus(tpdu.user_data, self._tsdus, offset)
            self._tsdus += 1
        return records


def dissect_stream(data: bytes, starts: Sequence[int] = (),
                   gaps: Iterable[tuple[int, int, int]] = (),
                   max_tsdu_size: int = DEFAULT_MAX_TSDU_SIZE) -> list[Record]:  # fmt: skip
    """The records of one direction of a captured TCP connection (a
    :class:`~sessionlayer.capture.Stream`: its ``data``, the offset in it where each
    segment starts, its ``gaps`` as (offset, octets, frame)).  Each gap is an error record
    ("N octets not captured before frame F"), then decoding resumes at the first segment
    after it that starts a TPKT."""
    dissector = StreamDissector(max_tsdu_size)
    missing = {offset: (octets, frame) for offset, octets, frame in gaps}
    if not missing:
        return dissector.feed(data) + dissector.finish()
    records: list[Record] = []
    for start, end in zip(starts, [*starts[1:], len(data)], strict=True):
        if start in missing:
            records += dissector.gap(*missing[start])
        records += dissector.feed(data[start:end])
    return records + dissector.finish()


def _tsap(value: bytes | None) -> str:
    return "-" if value is None else value.hex()


def tpdu_summary(tpdu: TPDU) -> str:
    """One line naming the TPDU and its fields."""
    if isinstance(tpdu, ConnectionRequest | ConnectionConfirm):
        name = "CR" if isinstance(tpdu, ConnectionRequest) else "CC"
        size = tpdu.tpdu_size_octets
        return (
            f"COTP {name} dst_ref=0x{tpdu.dst_ref:04x} src_ref=0x{tpdu.src_ref:04x}"
            f" class={tpdu.protocol_class} tpdu_size={size if size else '-'}"
            f" calling_tsap={_tsap(tpdu.calling_tsap)} called_tsap={_tsap(tpdu.called_tsap)}"
        )
    if isinstance(tpdu, Data):
        return f"COTP DT eot={int(tpdu.eot)} user_data=<{len(tpdu.user_data)} octets>"
    if isinstance(tpdu, ExpeditedData):
        return f"COTP ED user_data=<{len(tpdu.user_data)} octets>"
    if isinstance(tpdu, DisconnectRequest):
        return (
            f"COTP DR dst_ref=0x{tpdu.dst_ref:04x} src_ref=0x{tpdu.src_ref:04x}"
            f" reason={tpdu.reason}"
        )
    return f"COTP ER dst_ref=0x{tpdu.dst_ref:04x} cause={tpdu.cause}"


def record_line(record: Record) -> str:
    """The text form of one record."""
    if record.error is not None:
        return f"! {record.error}"
    if record.spdu is not None:
        return f"    SES {spdu_summary(record.spdu)}"
    assert record.tpdu is not None
    return tpdu_summary(record.tpdu)
