"""Concatenation: which SPDUs may share a TSDU, and which SPDU an SI names.

X.225 6.3.7 sorts SPDUs into three categories:

* category 0 (GT, PT) may stand alone, or come first and be followed by
  one category-2 SPDU;
* category 1 SPDUs are always alone in their TSDU;
* category 2 SPDUs never stand alone: each follows a category-0 SPDU.

Under *basic* concatenation (always in force) a TSDU is therefore one
category-1 SPDU, or a category-0 SPDU optionally followed by one
category-2 SPDU.  The pairs a receiver accepts are those ISODE accepts:
GT before the SPDUs a token holder initiates, PT before the replies.

*Extended* concatenation (Protocol Options bit 1) lets a TSDU carry several
such pairs in a row; user information (DT) may only come last.

Several SPDUs share an SI code; the position in the TSDU (category) and,
for MAP/AE, the Sync Type Item tell them apart.  MAA and AEA are encoded
identically; the decoder reports SI 42 as MAA and the protocol machine
reads it as AEA when it is waiting for one.
"""

from __future__ import annotations

from ..errors import DecodeError
from .types import (
    SPDU,
    Abort,
    AbortAccept,
    Accept,
    ActivityDiscard,
    ActivityDiscardAck,
    ActivityEnd,
    ActivityEndAck,
    ActivityInterrupt,
    ActivityInterruptAck,
    ActivityResume,
    ActivityStart,
    CapabilityData,
    CapabilityDataAck,
    Connect,
    ConnectDataOverflow,
    DataTransfer,
    Disconnect,
    ExceptionData,
    ExceptionReport,
    Expedited,
    Finish,
    GiveTokens,
    GiveTokensAck,
    GiveTokensConfirm,
    MajorSyncAck,
    MajorSyncPoint,
    MinorSyncAck,
    MinorSyncPoint,
    NotFinished,
    OverflowAccept,
    PleaseTokens,
    Prepare,
    Refuse,
    Resynchronize,
    ResynchronizeAck,
    TypedData,
)
from .units import iter_units

__all__ = ["CATEGORY_1", "AFTER_GT", "AFTER_PT", "resolve", "check_concatenation"]

#: SI -> the SPDU a TSDU may hold alone.
CATEGORY_1: dict[int, type[SPDU]] = {
    cls.si: cls
    for cls in (
        Connect, Accept, Refuse, Finish, Disconnect, NotFinished, Abort, AbortAccept,
        GiveTokensConfirm, GiveTokensAck, Expedited, Prepare, TypedData,
        ConnectDataOverflow, OverflowAccept,
    )
}  # fmt: skip

#: SI -> category-2 SPDU that may follow GIVE TOKENS (MAP/AE resolved by content).
AFTER_GT: dict[int, type[SPDU]] = {
    cls.si: cls
    for cls in (
        DataTransfer, MinorSyncPoint, MajorSyncPoint, Resynchronize, ActivityStart,
        ActivityResume, ActivityDiscard, ActivityInterrupt, CapabilityData,
    )
}  # fmt: skip

#: SI -> category-2 SPDU that may follow PLEASE TOKENS.
AFTER_PT: dict[int, type[SPDU]] = {
    cls.si: cls
    for cls in (
        MinorSyncAck, MajorSyncAck, ResynchronizeAck, ActivityDiscardAck,
        ActivityInterruptAck, CapabilityDataAck, ExceptionReport, ExceptionData,
    )
}  # fmt: skip

_ALLOWED_AFTER: dict[type[SPDU], frozenset[type[SPDU]]] = {
    GiveTokens: frozenset(AFTER_GT.values()) | {ActivityEnd},
    PleaseTokens: frozenset(AFTER_PT.values()) | {ActivityEndAck},
}


def resolve(
    si: int,
    before: list[type[SPDU]],
    buf: bytes,
    params_at: int,
    params_end: int,
    extended: bool,
) -> type[SPDU]:
    """Which SPDU class does ``si`` name here, given the SPDUs before it?"""
    leader = before[-1] if before else None
    if leader is None or (extended and leader.category == 2):
        if si == 1:
            return GiveTokens
        if si == 2:
            return PleaseTokens
        if leader is None:
            cls = CATEGORY_1.get(si)
            if cls is not None:
                return cls
        later = AFTER_GT.get(si) or AFTER_PT.get(si)
        if later is not None:
            raise DecodeError(
                f"{later.kind} (SI {si}, category 2) must follow GIVE TOKENS or PLEASE TOKENS",
                offset=params_at,
            )
        raise DecodeError(f"SI {si} is not an SPDU that can begin a TSDU", offset=params_at)
    if leader is GiveTokens:
        cls = AFTER_GT.get(si)
        if cls is MajorSyncPoint and not _has_sync_type(buf, params_at, params_end):
            return ActivityEnd
    elif leader is PleaseTokens:
        cls = AFTER_PT.get(si)
    else:
        cls = None
    if cls is None:
        raise DecodeError(
            f"SI {si} may not follow {leader.kind} in one TSDU"
            + ("" if extended else " (basic concatenation)"),
            offset=params_at,
        )
    return cls


def _has_sync_type(buf: bytes, start: int, end: int) -> bool:
    """SI 41 is a MAP when its Sync Type Item (PI 15) says "not the end of an activity"
    (bit 0x01); without the PI, or with that bit clear, it is an AE (as ISODE reads it:
    the same octets must not mean S-SYNC-MAJOR here and S-ACTIVITY-END there)."""
    for code, at, stop in iter_units(buf, start, end):
        if code == 15:
            return stop > at and bool(buf[at] & 0x01)
    return False


def check_concatenation(kinds: list[type[SPDU]], *, extended: bool = False) -> None:
    """Raise :class:`DecodeError` unless these SPDUs may form one TSDU."""
    if not kinds:
        raise DecodeError("a TSDU holds at least one SPDU")
    first = kinds[0]
    if first.category == 1:
        if len(kinds) > 1:
            raise DecodeError(f"{first.kind} must be alone in its TSDU")
        return
    i = 0
    while i < len(kinds):
        leader = kinds[i]
        if leader.category != 0:
            raise DecodeError(f"{leader.kind} must follow GIVE TOKENS or PLEASE TOKENS")
        follower = kinds[i + 1] if i + 1 < len(kinds) else None
        if follower is None:
            return
        if follower not in _ALLOWED_AFTER[leader]:
            raise DecodeError(f"{follower.kind} may not follow {leader.kind} in one TSDU")
        i += 2
        if i < len(kinds):
            if not extended:
                raise DecodeError("more than two SPDUs in a TSDU needs extended concatenation")
            if follower.user_info:
                raise DecodeError(f"{follower.kind} carries user information and must come last")
