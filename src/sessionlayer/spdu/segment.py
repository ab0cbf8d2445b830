"""Segmenting: one SSDU carried by several SPDUs, marked by the Enclosure Item.

When a non-zero TSDU maximum size was agreed at connect (X.225 7.37, v2),
an SPDU that would be larger is sent as several SPDUs of the same kind.
The Enclosure Item (PI 25) says where each one sits: 1 = first, 0 = middle,
2 = last, 3 = the whole SSDU.  The first segment carries every parameter
the unsegmented SPDU would have had; the others carry the enclosure, their
share of the user data, and the parameters their kind requires, with the
first segment's values (the codec refuses an SPDU without them).
"""

from __future__ import annotations

import dataclasses
from typing import Any, cast

from ..errors import AbortReason, DecodeError, EncodeError
from .codec import encode
from .codes import Enclosure
from .types import SPDU

__all__ = ["segment", "SegmentAssembler"]

_BEGIN = int(Enclosure.BEGIN)
_END = int(Enclosure.END)
#: Transport Disconnect of the AB for an SSDU over the limit: released, implementation
#: restriction (X.225 8.3.9).
_RESTRICTION = AbortReason.TRANSPORT_RELEASED | AbortReason.IMPLEMENTATION_RESTRICTION


def _replace(spdu: SPDU, **changes: Any) -> SPDU:
    """``dataclasses.replace`` for any SPDU class."""
    new: SPDU = dataclasses.replace(cast(Any, spdu), **changes)
    return new


def _empty_of(spdu: SPDU) -> SPDU:
    """The same kind of SPDU with only the fields a later segment keeps: the parameters its
    kind cannot go without, with the first segment's values (a serial number, a resync
    type, an activity id: a segment never states one that differs), the rest left out."""
    required: set[str] = set()
    for entry in type(spdu).SPEC:
        if getattr(entry, "required", False):
            names = entry.name if isinstance(entry.name, tuple) else (entry.name,)
            required.update(names)
    keep: dict[str, object] = {}
    for f in dataclasses.fields(cast(Any, spdu)):
        if f.name in ("enclosure", "user_data"):
            continue
        no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        keep[f.name] = getattr(spdu, f.name) if no_default or f.name in required else f.default
    return _replace(spdu, **keep)


def segment(spdu: SPDU, max_size: int, *, version: int = 2) -> list[SPDU]:
    """Split ``spdu`` so that each encoded SPDU is at most ``max_size`` octets.

    An SPDU that fits is returned unchanged (no Enclosure Item).  One whose user data is
    more than a single SPDU's length indicator can carry (65,535 octets of parameters) is
    segmented too: what a CONNECT DATA OVERFLOW of more than that needs (X.225 7.3).
    """
    if not hasattr(spdu, "enclosure") or not hasattr(spdu, "user_data"):
        raise EncodeError(f"{spdu.kind} cannot be segmented")
    try:
        whole: int | None = len(encode(spdu, version=version))
    except EncodeError:  # (too long for one SPDU: the first segment says why, if not that)
        whole = None
    if whole is not None and whole <= max_size:
        return [spdu]
    data = spdu.user_data or b""
    head = _replace(spdu, enclosure=_BEGIN, user_data=b"")
    rest = _replace(_empty_of(spdu), enclosure=0, user_data=b"")
    most = max(len(data), 1)
    head_room = _room(head, max_size, version, most)
    rest_room = _room(rest, max_size, version, most)
    if head_room < 1 or rest_room < 1:
        raise EncodeError(f"TSDU maximum size {max_size} leaves no room for user data")
    pieces: list[SPDU] = []
    first = data[:head_room]
    pieces.append(_replace(head, user_data=first))
    pos = len(first)
    while pos < len(data):
        chunk = data[pos : pos + rest_room]
        pos += len(chunk)
        flag = _END if pos >= len(data) else 0
        pieces.append(_replace(rest, enclosure=flag, user_data=chunk))
    if len(pieces) == 1:
        pieces[0] = _replace(pieces[0], enclosure=_BEGIN | _END)
    return pieces


def _room(template: SPDU, max_size: int, version: int, most: int) -> int:
    """How many octets of user data a segment shaped like *template* can carry.

    Adding user data can lengthen two length indicators from one octet to
    three (the User Data PGI's and the SPDU's) once they pass 254, so try the
    estimate and step down until the encoded segment fits.
    """
    room = min(max_size - len(encode(template, version=version)), most)
    while room > 0:
        filled = _replace(template, user_data=bytes(room))
        if len(encode(filled, version=version)) <= max_size:
            break
        room -= 1
    return room


class SegmentAssembler:
    """Collects segments of one SSDU; gives back the whole SPDU at the end.

    ``feed`` returns the reassembled SPDU (with enclosure None) when the
    segment is the last or the only one, else None.  ``max_size`` bounds the
    user data held, so a peer cannot make us buffer without limit: past it,
    ``feed`` raises :class:`DecodeError` whose ``reason`` is 0x11 (released,
    implementation restriction).  Memory grows with the segments that arrived,
    never with ``max_size``.
    """

    __slots__ = ("_first", "_parts", "_size", "max_size")

    def __init__(self, max_size: int = 1 << 20) -> None:
        self.max_size = max_size
        self._first: SPDU | None = None
        self._parts: list[bytes] = []
        self._size = 0

    @property
    def pending(self) -> bool:
        return self._first is not None

    def feed(self, spdu: SPDU) -> SPDU | None:
        flag = getattr(spdu, "enclosure", None)
        data = getattr(spdu, "user_data", None) or b""
        if self._first is None:
            if flag is None or flag == _BEGIN | _END:
                return _replace(spdu, enclosure=None)
            if flag != _BEGIN:
                raise DecodeError(f"{spdu.kind} segment arrived without a first segment")
            self._first = spdu
            self._parts = [data]
            self._size = len(data)
            self._check_size()
            return None
        if type(spdu) is not type(self._first):
            raise DecodeError(f"{spdu.kind} arrived inside a segmented {self._first.kind}")
        if flag not in (0, _END):
            raise DecodeError(f"{spdu.kind} segment with enclosure {flag} inside an SSDU")
        self._size += len(data) or flag != _END  # (an empty segment counts as 1)
        self._check_size()
        self._parts.append(data)
        if flag != _END:
            return None
        whole = b"".join(self._parts)
        first = self._first
        self._first, self._parts, self._size = None, [], 0
        return _replace(first, enclosure=None, user_data=whole)

    def _check_size(self) -> None:
        if self._size > self.max_size:
            size = self._size
            self._first, self._parts, self._size = None, [], 0
            raise DecodeError(
                f"segmented SSDU of over {size} octets exceeds the limit of {self.max_size}",
                reason=_RESTRICTION,
            )
