"""What the relay's ``--log`` shows: one record per SPDU (and per COTP connection TPDU)
each way on each leg, decoded from the octets as they crossed the wire, sans I/O.

A :class:`WireTap` follows one direction of one leg with its own TPKT parser and TSDU
assembler (bounded like the leg itself, by ``RelayOptions.max_size``), independent of the
protocol machine: what it shows is what was sent, valid or not.  Once the framing is lost
it reports that once and stops.
"""

from __future__ import annotations

from typing import Any

from ..errors import DecodeError
from ..spdu import decode_tsdu
from ..spdu.describe import plain
from ..spdu.types import SPDU
from ..transport import (
    ConnectionConfirm,
    ConnectionRequest,
    Data,
    DisconnectRequest,
    ExpeditedData,
    TpktParser,
    TsduAssembler,
    decode_tpdu,
)
from ..transport.cotp import TPDU, Error

__all__ = ["WireTap", "spdu_record"]


def spdu_record(spdu: SPDU) -> dict[str, Any]:
    """``{"spdu": "CN", "si": 13, "params": {...}, "user_data": octets}``: the parameters
    as plain JSON values, the user data only as its length."""
    fields = spdu.fields()
    data = fields.pop("user_data", None)
    out: dict[str, Any] = {"spdu": spdu.kind, "si": spdu.si,
                           "params": {k: plain(v) for k, v in fields.items()}}  # fmt: skip
    if data is not None:
        out["user_data"] = len(data)
    return out


def _tpdu_record(tpdu: TPDU) -> dict[str, Any] | None:
    if isinstance(tpdu, ConnectionRequest | ConnectionConfirm):
        return {
            "tpdu": "CR" if isinstance(tpdu, ConnectionRequest) else "CC",
            "tpdu_size": tpdu.tpdu_size_octets,
            "calling_tsap": None if tpdu.calling_tsap is None else tpdu.calling_tsap.hex(),
            "called_tsap": None if tpdu.called_tsap is None else tpdu.called_tsap.hex(),
        }
    if isinstance(tpdu, DisconnectRequest):
        return {"tpdu": "DR", "reason": tpdu.reason}
    if isinstance(tpdu, Error):
        return {"tpdu": "ER", "cause": tpdu.cause}
    return None


class WireTap:
    """One direction of one leg: octets in, records out."""

    __slots__ = ("_assembler", "_parser", "failed")

    def __init__(self, max_tsdu_size: int) -> None:
        self._parser = TpktParser()
        self._assembler = TsduAssembler(max_tsdu_size)
        self.failed = False

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        if self.failed:
            return []
        try:
            payloads = self._parser.feed(data)
        except DecodeError as exc:
            self.failed = True
            return [{"error": f"TPKT framing lost: {exc}"}]
        out: list[dict[str, Any]] = []
        for payload in payloads:
            out += self._payload(payload)
        return out

    def _payload(self, payload: bytes) -> list[dict[str, Any]]:
        try:
            tpdu = decode_tpdu(payload)
        except DecodeError as exc:
            return [{"error": f"malformed TPDU: {exc}"}]
        if isinstance(tpdu, Data):
            try:
                tsdu = self._assembler.feed(tpdu)
            except DecodeError as exc:
                self.failed = True
                return [{"error": str(exc)}]
            return [] if tsdu is None else self._tsdu(tsdu)
        if isinstance(tpdu, ExpeditedData):
            return self._tsdu(tpdu.user_data, expedited=True)
        record = _tpdu_record(tpdu)
        return [] if record is None else [record]

    @staticmethod
    def _tsdu(tsdu: bytes, expedited: bool = False) -> list[dict[str, Any]]:
        try:
            spdus = decode_tsdu(tsdu, extended=True)
        except DecodeError as exc:
            return [{"error": f"malformed SPDU: {exc}", "octets": len(tsdu)}]
        records = [spdu_record(spdu) for spdu in spdus]
        if expedited:
            for record in records:
                record["expedited"] = True
        return records
