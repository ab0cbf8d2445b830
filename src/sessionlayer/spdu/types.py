"""Every SPDU of ISO 8327-1 / X.225 (versions 1 and 2) as an immutable value.

Each class names its SI code, its concatenation category and, in ``SPEC``,
the parameters X.225 8.3 allows, in the order the standard gives them.
Fields hold plain Python values (``int``, ``bytes``, tuples); ``None`` means
the parameter is absent.  Several SPDUs share an SI code; the codec tells
them apart by category (AB/AI, AA/AIA, GT/DT) or by content (MAP/AE).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, ClassVar, TypeVar, dataclass_transform

from .formats import REASON_AND_DATA, SERIAL, TSDU_SIZES, U8, U16, Octets
from .spec import Entry, Group, Grouped, Param, UserData

__all__ = [
    "SPDU",
    "ConnectionId",
    "ConnectAcceptItem",
    "LinkingInformation",
    "Connect",
    "OverflowAccept",
    "ConnectDataOverflow",
    "Accept",
    "Refuse",
    "Finish",
    "Disconnect",
    "NotFinished",
    "Abort",
    "AbortAccept",
    "DataTransfer",
    "Expedited",
    "TypedData",
    "CapabilityData",
    "CapabilityDataAck",
    "GiveTokens",
    "PleaseTokens",
    "GiveTokensConfirm",
    "GiveTokensAck",
    "MinorSyncPoint",
    "MinorSyncAck",
    "MajorSyncPoint",
    "MajorSyncAck",
    "Resynchronize",
    "ResynchronizeAck",
    "Prepare",
    "ExceptionReport",
    "ExceptionData",
    "ActivityStart",
    "ActivityResume",
    "ActivityInterrupt",
    "ActivityInterruptAck",
    "ActivityDiscard",
    "ActivityDiscardAck",
    "ActivityEnd",
    "ActivityEndAck",
    "ALL_SPDUS",
    "BY_KIND",
]

_REF = Octets(64)
_SSEL = Octets(16)
_ENCLOSURE = Param("enclosure", 25, U8)
_SERIAL = Param("serial_number", 42, SERIAL, required=True)
_TOKENS = Param("tokens", 16, U8)


# ---------------------------------------------------------------- PGI values


@dataclass(frozen=True, slots=True)
class ConnectionId(Grouped):
    """PGI 1, Connection Identifier (in CN, AC, RF)."""

    called_ref: bytes | None = None
    calling_ref: bytes | None = None
    common_ref: bytes | None = None
    additional_ref: bytes | None = None

    SPEC: ClassVar[tuple[Param, ...]] = (
        Param("called_ref", 9, _REF),
        Param("calling_ref", 10, _REF),
        Param("common_ref", 11, _REF),
        Param("additional_ref", 12, Octets(4)),
    )


@dataclass(frozen=True, slots=True)
class ConnectAcceptItem(Grouped):
    """PGI 5, Connect/Accept Item (in CN and AC)."""

    protocol_options: int | None = None
    tsdu_max_size: tuple[int, int] | None = None
    version: int | None = None
    initial_serial: int | None = None
    token_setting: int | None = None
    second_initial_serial: int | None = None
    upper_limit_serial: int | None = None
    large_initial_serial: bytes | None = None  #: PI 57: not used by us, kept as octets
    large_second_initial_serial: bytes | None = None  #: PI 58: likewise

    SPEC: ClassVar[tuple[Param, ...]] = (
        Param("protocol_options", 19, U8),
        Param("tsdu_max_size", 21, TSDU_SIZES),
        Param("version", 22, U8),
        Param("initial_serial", 23, SERIAL),
        Param("token_setting", 26, U8),
        Param("second_initial_serial", 55, SERIAL),
        Param("upper_limit_serial", 56, SERIAL),
        Param("large_initial_serial", 57, Octets(64, 1)),
        Param("large_second_initial_serial", 58, Octets(64, 1)),
    )


@dataclass(frozen=True, slots=True)
class LinkingInformation(Grouped):
    """PGI 33, Linking Information (in AR): which activity is resumed, and where."""

    called_ref: bytes | None = None
    calling_ref: bytes | None = None
    common_ref: bytes | None = None
    additional_ref: bytes | None = None
    old_activity_id: bytes | None = None
    serial_number: int | None = None

    SPEC: ClassVar[tuple[Param, ...]] = (
        Param("called_ref", 9, _REF),
        Param("calling_ref", 10, _REF),
        Param("common_ref", 11, _REF),
        Param("additional_ref", 12, Octets(4)),
        Param("old_activity_id", 41, Octets(6, 1), required=True),
        Param("serial_number", 42, SERIAL, required=True),
    )


# ---------------------------------------------------------------- SPDU base


class SPDU:
    """Base of every SPDU class."""

    __slots__ = ()

    kind: ClassVar[str]  #: X.225 abbreviation: "CN", "GT", "DT", ...
    name: ClassVar[str]  #: the SPDU's name in X.225
    si: ClassVar[int]
    category: ClassVar[int]  #: 0, 1 or 2 (X.225 6.3.7)
    SPEC: ClassVar[tuple[Entry, ...]] = ()
    #: True when user information follows the parameter field, outside the LI.
    user_info: ClassVar[bool] = False
    #: Largest user information, when it is bounded (EX: 14 octets).
    user_info_limit: ClassVar[int | None] = None

    def fields(self) -> dict[str, Any]:
        """The fields that are present, by name (None ones left out)."""
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is not None:
                out[f.name] = value
        return out


_T = TypeVar("_T")


@dataclass_transform(frozen_default=True)
def _spdu(kind: str, si: int, category: int, name: str) -> Callable[[type[_T]], type[_T]]:
    """Class decorator: a frozen, slotted dataclass with its wire identity."""

    def wrap(cls: type[_T]) -> type[_T]:
        cls.kind = kind  # type: ignore[attr-defined]
        cls.si = si  # type: ignore[attr-defined]
        cls.category = category  # type: ignore[attr-defined]
        cls.name = name  # type: ignore[attr-defined]
        return dataclass(frozen=True, slots=True)(cls)

    return wrap


# ---------------------------------------------------------------- connection


@_spdu("CN", 13, 1, "CONNECT")
class Connect(SPDU):
    connection_id: ConnectionId | None = None
    item: ConnectAcceptItem | None = None
    requirements: int | None = None
    calling_ssel: bytes | None = None
    called_ssel: bytes | None = None
    data_overflow: int | None = None
    user_data: bytes | None = None

    SPEC = (
        Group("connection_id", 1, ConnectionId),
        Group("item", 5, ConnectAcceptItem),
        Param("requirements", 20, U16),
        Param("calling_ssel", 51, _SSEL),
        Param("called_ssel", 52, _SSEL),
        Param("data_overflow", 60, U8),
        UserData(limit_v2=10240, extended=True),
    )


@_spdu("OA", 16, 1, "OVERFLOW ACCEPT")
class OverflowAccept(SPDU):
    tsdu_max_size: tuple[int, int] | None = None
    version: int | None = None

    SPEC = (
        Param("tsdu_max_size", 21, TSDU_SIZES),
        Param("version", 22, U8, required=True),
    )


@_spdu("CDO", 15, 1, "CONNECT DATA OVERFLOW")
class ConnectDataOverflow(SPDU):
    enclosure: int | None = None
    user_data: bytes | None = None

    SPEC = (_ENCLOSURE, UserData(limit_v1=0, required=True))


@_spdu("AC", 14, 1, "ACCEPT")
class Accept(SPDU):
    connection_id: ConnectionId | None = None
    item: ConnectAcceptItem | None = None
    tokens: int | None = None
    requirements: int | None = None
    calling_ssel: bytes | None = None
    responding_ssel: bytes | None = None
    enclosure: int | None = None
    user_data: bytes | None = None

    SPEC = (
        Group("connection_id", 1, ConnectionId),
        Group("item", 5, ConnectAcceptItem),
        _TOKENS,
        Param("requirements", 20, U16),
        Param("calling_ssel", 51, _SSEL),
        Param("responding_ssel", 52, _SSEL),
        _ENCLOSURE,
        UserData(limit_v2=10240),
    )


@_spdu("RF", 12, 1, "REFUSE")
class Refuse(SPDU):
    connection_id: ConnectionId | None = None
    transport_disconnect: int | None = None
    requirements: int | None = None
    version: int | None = None
    enclosure: int | None = None
    reason: int | None = None
    #: Carried inside the Reason Code PI, after the reason octet (reason 2).
    user_data: bytes | None = None

    SPEC = (
        Group("connection_id", 1, ConnectionId),
        Param("transport_disconnect", 17, U8),
        Param("requirements", 20, U16),
        Param("version", 22, U8),
        _ENCLOSURE,
        Param(("reason", "user_data"), 50, REASON_AND_DATA),
    )


# ---------------------------------------------------------------- release and abort


@_spdu("FN", 9, 1, "FINISH")
class Finish(SPDU):
    transport_disconnect: int | None = None
    enclosure: int | None = None
    user_data: bytes | None = None

    SPEC = (Param("transport_disconnect", 17, U8), _ENCLOSURE, UserData())


@_spdu("DN", 10, 1, "DISCONNECT")
class Disconnect(SPDU):
    enclosure: int | None = None
    user_data: bytes | None = None

    SPEC = (_ENCLOSURE, UserData())


@_spdu("NF", 8, 1, "NOT FINISHED")
class NotFinished(SPDU):
    enclosure: int | None = None
    user_data: bytes | None = None

    SPEC = (_ENCLOSURE, UserData())


@_spdu("AB", 25, 1, "ABORT")
class Abort(SPDU):
    transport_disconnect: int | None = None
    reflect: bytes | None = None
    enclosure: int | None = None
    user_data: bytes | None = None

    SPEC = (
        Param("transport_disconnect", 17, U8),
        Param("reflect", 49, Octets(9)),
        _ENCLOSURE,
        UserData(),
    )


@_spdu("AA", 26, 1, "ABORT ACCEPT")
class AbortAccept(SPDU):
    pass


# ---------------------------------------------------------------- data


@_spdu("DT", 1, 2, "DATA TRANSFER")
class DataTransfer(SPDU):
    enclosure: int | None = None
    user_data: bytes = b""

    SPEC = (_ENCLOSURE,)
    user_info = True


@_spdu("EX", 5, 1, "EXPEDITED")
class Expedited(SPDU):
    user_data: bytes = b""

    user_info = True
    user_info_limit = 14


@_spdu("TD", 33, 1, "TYPED DATA")
class TypedData(SPDU):
    enclosure: int | None = None
    user_data: bytes = b""

    SPEC = (_ENCLOSURE,)
    user_info = True


@_spdu("CD", 61, 2, "CAPABILITY DATA")
class CapabilityData(SPDU):
    """CD.  512 octets of user data in version 1; in version 2 as much as any other SPDU's
    (ISODE applies its SX_CDSIZE of 512 below version 2 only, and a version-2 PICS proforma
    lists CD and CDA with the same size as every other SPDU's user data)."""

    enclosure: int | None = None
    user_data: bytes | None = None

    SPEC = (_ENCLOSURE, UserData())


@_spdu("CDA", 62, 2, "CAPABILITY DATA ACK")
class CapabilityDataAck(SPDU):
    """CDA: user data as CD's (512 octets in version 1)."""

    enclosure: int | None = None
    user_data: bytes | None = None

    SPEC = (_ENCLOSURE, UserData())


# ---------------------------------------------------------------- tokens


@_spdu("GT", 1, 0, "GIVE TOKENS")
class GiveTokens(SPDU):
    tokens: int | None = None
    enclosure: int | None = None
    user_data: bytes | None = None

    SPEC = (_TOKENS, _ENCLOSURE, UserData(limit_v1=0))


@_spdu("PT", 2, 0, "PLEASE TOKENS")
class PleaseTokens(SPDU):
    tokens: int | None = None
    enclosure: int | None = None
    user_data: bytes | None = None

    SPEC = (_TOKENS, _ENCLOSURE, UserData())


@_spdu("GTC", 21, 1, "GIVE TOKENS CONFIRM")
class GiveTokensConfirm(SPDU):
    pass


@_spdu("GTA", 22, 1, "GIVE TOKENS ACK")
class GiveTokensAck(SPDU):
    pass


# ---------------------------------------------------------------- synchronization


@_spdu("MIP", 49, 2, "MINOR SYNC POINT")
class MinorSyncPoint(SPDU):
    sync_type: int | None = None  #: 0x01: explicit confirmation not required
    serial_number: int = 0
    enclosure: int | None = None
    user_data: bytes | None = None

    SPEC = (Param("sync_type", 15, U8), _SERIAL, _ENCLOSURE, UserData())


@_spdu("MIA", 50, 2, "MINOR SYNC ACK")
class MinorSyncAck(SPDU):
    """MIA.  Its user data travels in PI 46 (MIA User Data), the code ISODE's table of
    X.225 8.3.21 gives it and the only place an ISODE peer accepts it; PGI 193, the User
    Data of every other SPDU, is accepted too on receipt (one or the other, not both).
    Wireshark shows PI 46 as an unknown parameter, without a warning."""

    serial_number: int = 0
    enclosure: int | None = None
    user_data: bytes | None = None

    SPEC = (_SERIAL, _ENCLOSURE, UserData(code=46, also=193))


@_spdu("MAP", 41, 2, "MAJOR SYNC POINT")
class MajorSyncPoint(SPDU):
    """MAP's Sync Type bit 0x01 says "not the end of an activity"; without it, it is AE."""

    sync_type: int = 0x01
    serial_number: int = 0
    enclosure: int | None = None
    user_data: bytes | None = None

    SPEC = (Param("sync_type", 15, U8, required=True), _SERIAL, _ENCLOSURE, UserData())


@_spdu("MAA", 42, 2, "MAJOR SYNC ACK")
class MajorSyncAck(SPDU):
    serial_number: int = 0
    enclosure: int | None = None
    user_data: bytes | None = None

    SPEC = (_SERIAL, _ENCLOSURE, UserData())


@_spdu("RS", 53, 2, "RESYNCHRONIZE")
class Resynchronize(SPDU):
    token_setting: int | None = None
    resync_type: int = 0
    serial_number: int = 0
    second_resync_type: int | None = None
    second_serial_number: int | None = None
    enclosure: int | None = None
    user_data: bytes | None = None

    SPEC = (
        Param("token_setting", 26, U8),
        Param("resync_type", 27, U8, required=True),
        _SERIAL,
        Param("second_resync_type", 53, U8),
        Param("second_serial_number", 54, SERIAL),
        _ENCLOSURE,
        UserData(),
    )


@_spdu("RA", 34, 2, "RESYNCHRONIZE ACK")
class ResynchronizeAck(SPDU):
    token_setting: int | None = None
    serial_number: int = 0
    second_serial_number: int | None = None
    enclosure: int | None = None
    user_data: bytes | None = None

    SPEC = (
        Param("token_setting", 26, U8),
        _SERIAL,
        Param("second_serial_number", 54, SERIAL),
        _ENCLOSURE,
        UserData(),
    )


@_spdu("PR", 7, 1, "PREPARE")
class Prepare(SPDU):
    prepare_type: int = 1

    SPEC = (Param("prepare_type", 24, U8, required=True),)


# ---------------------------------------------------------------- exceptions


@_spdu("ER", 0, 2, "EXCEPTION REPORT")
class ExceptionReport(SPDU):
    reflect: bytes = b""

    SPEC = (Param("reflect", 49, Octets(65535), required=True),)


@_spdu("ED", 48, 2, "EXCEPTION DATA")
class ExceptionData(SPDU):
    reason: int = 0
    enclosure: int | None = None
    user_data: bytes | None = None

    SPEC = (Param("reason", 50, U8, required=True), _ENCLOSURE, UserData())


# ---------------------------------------------------------------- activities


@_spdu("AS", 45, 2, "ACTIVITY START")
class ActivityStart(SPDU):
    activity_id: bytes = b"\x00"
    enclosure: int | None = None
    user_data: bytes | None = None

    SPEC = (
        Param("activity_id", 41, Octets(6, 1), required=True),
        _ENCLOSURE,
        UserData(),
    )


@_spdu("AR", 29, 2, "ACTIVITY RESUME")
class ActivityResume(SPDU):
    linking: LinkingInformation = LinkingInformation(old_activity_id=b"\x00", serial_number=0)
    activity_id: bytes = b"\x00"
    enclosure: int | None = None
    user_data: bytes | None = None

    SPEC = (
        Group("linking", 33, LinkingInformation, required=True),
        Param("activity_id", 41, Octets(6, 1), required=True),
        _ENCLOSURE,
        UserData(),
    )


@_spdu("AI", 25, 2, "ACTIVITY INTERRUPT")
class ActivityInterrupt(SPDU):
    reason: int | None = None
    enclosure: int | None = None
    user_data: bytes | None = None

    SPEC = (Param("reason", 50, U8), _ENCLOSURE, UserData(limit_v1=0))


@_spdu("AIA", 26, 2, "ACTIVITY INTERRUPT ACK")
class ActivityInterruptAck(SPDU):
    enclosure: int | None = None
    user_data: bytes | None = None

    SPEC = (_ENCLOSURE, UserData(limit_v1=0))


@_spdu("AD", 57, 2, "ACTIVITY DISCARD")
class ActivityDiscard(SPDU):
    reason: int | None = None
    enclosure: int | None = None
    user_data: bytes | None = None

    SPEC = (Param("reason", 50, U8), _ENCLOSURE, UserData(limit_v1=0))


@_spdu("ADA", 58, 2, "ACTIVITY DISCARD ACK")
class ActivityDiscardAck(SPDU):
    enclosure: int | None = None
    user_data: bytes | None = None

    SPEC = (_ENCLOSURE, UserData(limit_v1=0))


@_spdu("AE", 41, 2, "ACTIVITY END")
class ActivityEnd(SPDU):
    """SI 41 without a Sync Type Item, or with its bit 0x01 clear (``sync_type``: what such
    a peer sent, kept so that it re-encodes the same)."""

    sync_type: int | None = None
    serial_number: int = 0
    enclosure: int | None = None
    user_data: bytes | None = None

    SPEC = (Param("sync_type", 15, U8), _SERIAL, _ENCLOSURE, UserData())


@_spdu("AEA", 42, 2, "ACTIVITY END ACK")
class ActivityEndAck(SPDU):
    serial_number: int = 0
    enclosure: int | None = None
    user_data: bytes | None = None

    SPEC = (_SERIAL, _ENCLOSURE, UserData())


ALL_SPDUS: tuple[type[SPDU], ...] = (
    Connect, OverflowAccept, ConnectDataOverflow, Accept, Refuse, Finish, Disconnect,
    NotFinished, Abort, AbortAccept, DataTransfer, Expedited, TypedData, CapabilityData,
    CapabilityDataAck, GiveTokens, PleaseTokens, GiveTokensConfirm, GiveTokensAck,
    MinorSyncPoint, MinorSyncAck, MajorSyncPoint, MajorSyncAck, Resynchronize,
    ResynchronizeAck, Prepare, ExceptionReport, ExceptionData, ActivityStart, ActivityResume,
    ActivityInterrupt, ActivityInterruptAck, ActivityDiscard, ActivityDiscardAck, ActivityEnd,
    ActivityEndAck,
)  # fmt: skip

BY_KIND: dict[str, type[SPDU]] = {cls.kind: cls for cls in ALL_SPDUS}
