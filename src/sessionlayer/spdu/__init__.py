"""The ISO 8327-1 / X.225 SPDU codec: syntax only, no sockets, no clocks."""

from .codec import decode_tsdu, encode, encode_tsdu
from .codes import (
    DEFAULT_REQUIREMENTS,
    PI,
    SI,
    Enclosure,
    ExceptionReason,
    FunctionalUnit,
    PrepareType,
    ProtocolOption,
    ResyncType,
    Token,
    TokenSetting,
    Version,
)
from .segment import SegmentAssembler, segment
from .types import *  # noqa: F403
from .types import __all__ as _types_all

__all__ = [
    "decode_tsdu",
    "encode",
    "encode_tsdu",
    "segment",
    "SegmentAssembler",
    "PI",
    "SI",
    "DEFAULT_REQUIREMENTS",
    "Enclosure",
    "ExceptionReason",
    "FunctionalUnit",
    "PrepareType",
    "ProtocolOption",
    "ResyncType",
    "Token",
    "TokenSetting",
    "Version",
    *_types_all,
]
