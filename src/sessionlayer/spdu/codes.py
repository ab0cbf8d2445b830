"""Numbers that appear on the wire: SI codes, PI/PGI codes and bit fields.

Sources: X.225 (1988) clause 8.3 and its version-2 amendments, as
summarised in docs/wire-reference.md.  Plain integers, grouped in enums so
that code reads by name; the SPDU fields themselves hold plain ``int``.
"""

from __future__ import annotations

import enum

from ..errors import AbortReason, RefuseReason

__all__ = [
    "SI",
    "PI",
    "Token",
    "TokenSetting",
    "FunctionalUnit",
    "Enclosure",
    "ResyncType",
    "PrepareType",
    "ExceptionReason",
    "ProtocolOption",
    "Version",
    "AbortReason",
    "RefuseReason",
    "DEFAULT_REQUIREMENTS",
]


class SI(enum.IntEnum):
    """SPDU identifiers (X.225 8.3, table 10).  Several SPDUs share a code."""

    ER = 0  # EXCEPTION REPORT (category 2)
    DT = 1  # DATA TRANSFER (category 2); GIVE TOKENS (category 0) shares it
    PT = 2  # PLEASE TOKENS (category 0)
    EX = 5
    PR = 7
    NF = 8
    FN = 9
    DN = 10
    RF = 12
    CN = 13
    AC = 14
    CDO = 15
    OA = 16
    GTC = 21
    GTA = 22
    AB = 25  # ABORT (category 1); ACTIVITY INTERRUPT (category 2) shares it
    AA = 26  # ABORT ACCEPT (category 1); ACTIVITY INTERRUPT ACK shares it
    AR = 29
    TD = 33
    RA = 34
    MAP = 41  # MAJOR SYNC POINT; ACTIVITY END shares it
    MAA = 42  # MAJOR SYNC ACK; ACTIVITY END ACK shares it
    AS = 45
    ED = 48
    MIP = 49
    MIA = 50
    RS = 53
    AD = 57
    ADA = 58
    CD = 61
    CDA = 62

    # Aliases for the SPDUs that share a code.
    GT = 1
    AI = 25
    AIA = 26
    AE = 41
    AEA = 42


class PI(enum.IntEnum):
    """Parameter (PI) and parameter group (PGI) identifiers, X.225 8.3."""

    CONNECTION_ID = 1  # PGI
    CONNECT_ACCEPT_ITEM = 5  # PGI
    CALLED_REFERENCE = 9
    CALLING_REFERENCE = 10
    COMMON_REFERENCE = 11
    ADDITIONAL_REFERENCE = 12
    SYNC_TYPE = 15
    TOKEN_ITEM = 16
    TRANSPORT_DISCONNECT = 17
    PROTOCOL_OPTIONS = 19
    REQUIREMENTS = 20
    TSDU_MAX_SIZE = 21
    VERSION = 22
    INITIAL_SERIAL = 23
    PREPARE_TYPE = 24
    ENCLOSURE = 25
    TOKEN_SETTING = 26
    RESYNC_TYPE = 27
    LINKING_INFORMATION = 33  # PGI
    ACTIVITY_ID = 41
    SERIAL_NUMBER = 42
    MIA_USER_DATA = 46
    REFLECT = 49
    REASON = 50
    CALLING_SSEL = 51
    CALLED_SSEL = 52  # Responding Session Selector in AC
    SECOND_RESYNC_TYPE = 53
    SECOND_SERIAL_NUMBER = 54
    SECOND_INITIAL_SERIAL = 55
    UPPER_LIMIT_SERIAL = 56
    LARGE_INITIAL_SERIAL = 57
    LARGE_SECOND_INITIAL_SERIAL = 58
    DATA_OVERFLOW = 60
    USER_DATA = 193  # PGI
    EXTENDED_USER_DATA = 194  # PGI


class Token(enum.IntFlag):
    """Token Item bits (PI 16) in GT, PT and AC."""

    DATA = 0x01
    MINOR_SYNC = 0x04
    MAJOR_ACTIVITY = 0x10
    RELEASE = 0x40


#: Every token, in the order the Token Setting Item packs them (low bits first).
ALL_TOKENS: tuple[Token, ...] = (
    Token.DATA,
    Token.MINOR_SYNC,
    Token.MAJOR_ACTIVITY,
    Token.RELEASE,
)


class TokenSetting(enum.IntEnum):
    """One token's two bits in the Token Setting Item (PI 26)."""

    INITIATOR = 0
    RESPONDER = 1
    CALLED_CHOICE = 2
    RESERVED = 3


class FunctionalUnit(enum.IntFlag):
    """Session User Requirements bits (PI 20)."""

    HALF_DUPLEX = 0x0001
    DUPLEX = 0x0002
    EXPEDITED = 0x0004
    MINOR_SYNC = 0x0008
    MAJOR_SYNC = 0x0010
    RESYNC = 0x0020
    ACTIVITY = 0x0040
    NEGOTIATED_RELEASE = 0x0080
    CAPABILITY_DATA = 0x0100
    EXCEPTIONS = 0x0200
    TYPED_DATA = 0x0400
    SYMMETRIC_SYNC = 0x0800
    DATA_SEPARATION = 0x1000


#: PI 20 absent means this (X.225 8.3.1.9; ISODE SR_DEFAULT).
DEFAULT_REQUIREMENTS = 0x0349


class Enclosure(enum.IntFlag):
    """Enclosure Item (PI 25) bits for segmented SSDUs."""

    BEGIN = 0x01
    END = 0x02


class ResyncType(enum.IntEnum):
    """Resync Type (PI 27) in RS."""

    RESTART = 0
    ABANDON = 1
    SET = 2


class PrepareType(enum.IntEnum):
    """Prepare Type (PI 24) in PR."""

    MAA = 1
    RS = 2
    RA = 3
    AB = 4


class ExceptionReason(enum.IntEnum):
    """Reason Code (PI 50) in ED, AI and AD; also ER's meaning of S-P-EXCEPTION."""

    NO_REASON = 0
    RECEIVING_ABILITY_JEOPARDIZED = 1
    SEQUENCE_ERROR = 3
    LOCAL_USER_ERROR = 5
    UNRECOVERABLE_PROCEDURAL_ERROR = 6
    DEMAND_DATA_TOKEN = 128


class ProtocolOption(enum.IntFlag):
    """Protocol Options (PI 19)."""

    EXTENDED_CONCATENATION = 0x01


class Version(enum.IntFlag):
    """Version Number (PI 22)."""

    V1 = 0x01
    V2 = 0x02
