"""ISO 8073 codes used over RFC 1006: TPDU types, parameters, DR reasons, ER causes."""

from __future__ import annotations

import enum

__all__ = ["DisconnectReason", "ParameterCode", "RejectCause", "TpduCode"]


class TpduCode(enum.IntEnum):
    """TPDU codes (ISO 8073 13.1, table 8) of the TPDUs used over RFC 1006."""

    CR = 0xE0  #: Connection Request (the low 4 bits, CDT, are 0 in class 0)
    CC = 0xD0  #: Connection Confirm
    DR = 0x80  #: Disconnect Request
    DT = 0xF0  #: Data
    ED = 0x10  #: Expedited Data (RFC 1006 section 6 form)
    ER = 0x70  #: TPDU Error


class ParameterCode(enum.IntEnum):
    """Variable-part parameter codes (ISO 8073 13.3.4) handled by name."""

    TPDU_SIZE = 0xC0
    CALLING_TSAP = 0xC1  #: in CR/CC; in ER the same code is "invalid TPDU"
    CALLED_TSAP = 0xC2
    ADDITIONAL_OPTION_SELECTION = 0xC6  #: bit 0x01: expedited data (RFC 1006)
    PREFERRED_MAX_TPDU_SIZE = 0xF0
    ADDITIONAL_INFORMATION = 0xE0  #: in DR


class DisconnectReason(enum.IntEnum):
    """DR reason codes (ISO 8073 13.5.3 d)."""

    NOT_SPECIFIED = 0
    CONGESTION_AT_TSAP = 1
    SESSION_ENTITY_NOT_ATTACHED = 2
    ADDRESS_UNKNOWN = 3
    NORMAL = 128
    REMOTE_CONGESTION = 129
    NEGOTIATION_FAILED = 130
    DUPLICATE_SOURCE_REFERENCE = 131
    MISMATCHED_REFERENCES = 132
    PROTOCOL_ERROR = 133
    REFERENCE_OVERFLOW = 135
    REFUSED = 136
    INVALID_LENGTH = 138


class RejectCause(enum.IntEnum):
    """ER reject causes (ISO 8073 13.12.3 c)."""

    NOT_SPECIFIED = 0
    INVALID_PARAMETER_CODE = 1
    INVALID_TPDU_TYPE = 2
    INVALID_PARAMETER_VALUE = 3
