"""ISO 8073 class 0 TPDUs, as carried by RFC 1006 (sans-I/O codec).

Each TPDU is a frozen dataclass; :func:`encode_tpdu` and :func:`decode_tpdu`
convert between them and bytes (one TPDU, without the TPKT header).

Decoding is exact: a TPDU that decodes re-encodes to the same octets,
parameter order included (kept in ``param_order``, which equality ignores),
except that a Preferred Maximum TPDU Size with leading zero octets is
re-encoded in its shortest form.  Bad input raises only
:class:`~sessionlayer.errors.DecodeError`; an invalid TPDU handed to the
encoder raises :class:`~sessionlayer.errors.EncodeError`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeAlias

from sessionlayer.errors import DecodeError, EncodeError
from sessionlayer.transport.codes import DisconnectReason, ParameterCode, RejectCause, TpduCode

__all__ = [
    "DT_EOT_HEADER",
    "DT_HEADER_SIZE",
    "DT_MORE_HEADER",
    "TPDU",
    "ConnectionConfirm",
    "ConnectionRequest",
    "Data",
    "DisconnectReason",
    "DisconnectRequest",
    "Error",
    "ExpeditedData",
    "Parameter",
    "ParameterCode",
    "RejectCause",
    "TpduCode",
    "decode_tpdu",
    "encode_tpdu",
    "tpdu_size_code",
]


MIN_TPDU_SIZE_CODE = 0x07  #: 128 octets
MAX_TPDU_SIZE_CODE = 0x0D  #: 8192 octets: the largest ISO 8073 defines, and what we propose
#: The largest code a TPDU may carry: RFC 1006 stacks also use 0x0E (16384), 0x0F (32768)
#: and 0x10 (65531, what a TPKT holds).  Taken as sizes like any other (libiec61850
#: takes any code, capped at its own maximum); what this side agrees to stays its own.
MAX_RFC1006_SIZE_CODE = 0x10
_MAX_TPDU_OCTETS = 0xFFFF - 4  #: a TPKT's payload at most
_SIZE_CODES = (MIN_TPDU_SIZE_CODE, MAX_RFC1006_SIZE_CODE)  #: the codes a TPDU may carry
MAX_HEADER_LI = 254  #: LI 255 is reserved
MAX_ED_DATA = 16  #: RFC 1006: 1..16 octets of expedited data
_EOT = 0x80
DT_HEADER_SIZE = 3  #: class 0 DT header: LI, code, EOT/TPDU-NR
#: The whole class 0 DT header (LI 2, DT, EOT/TPDU-NR) of the last DT of a TSDU, and of the others.
DT_EOT_HEADER = bytes([DT_HEADER_SIZE - 1, TpduCode.DT, _EOT])
DT_MORE_HEADER = bytes([DT_HEADER_SIZE - 1, TpduCode.DT, 0])

_NAMED = frozenset(
    {
        ParameterCode.TPDU_SIZE,
        ParameterCode.CALLING_TSAP,
        ParameterCode.CALLED_TSAP,
        ParameterCode.PREFERRED_MAX_TPDU_SIZE,
    }
)


def tpdu_size_code(octets: int) -> int:
    """The TPDU Size parameter code for *octets* (a power of 2, 128..8192)."""
    code = octets.bit_length() - 1
    if not MIN_TPDU_SIZE_CODE <= code <= MAX_TPDU_SIZE_CODE or octets != 1 << code:
        raise EncodeError(f"TPDU size {octets} is not a power of 2 from 128 to 8192")
    return code


@dataclass(frozen=True, slots=True)
class Parameter:
    """One variable-part parameter, kept as it was on the wire."""

    code: int
    value: bytes


@dataclass(frozen=True)
class _ConnectTpdu:
    dst_ref: int = 0
    src_ref: int = 0
    class_option: int = 0  #: class in the high 4 bits, options in the low 4
    calling_tsap: bytes | None = None
    called_tsap: bytes | None = None
    tpdu_size: int | None = None  #: the code: 0x07 (128) .. 0x0D (8192), or up to 0x10
    preferred_max_tpdu_size: int | None = None  #: in multiples of 128 octets
    other_params: tuple[Parameter, ...] = ()  #: parameters not named above, in order
    user_data: bytes = b""
    #: parameter codes in wire order; None = TPDU size, called, calling, preferred, others
    param_order: tuple[int, ...] | None = field(default=None, compare=False)

    @property
    def tpdu_size_octets(self) -> int | None:
        """The proposed maximum TPDU size in octets (None when absent: 128 applies); code
        0x10 says 65531, the most a TPKT holds."""
        if self.tpdu_size is None:
            return None
        return min(1 << self.tpdu_size, _MAX_TPDU_OCTETS)

    @property
    def preferred_max_tpdu_octets(self) -> int | None:
        """The Preferred Maximum TPDU Size in octets, when present."""
        if self.preferred_max_tpdu_size is None:
            return None
        return self.preferred_max_tpdu_size * 128

    @property
    def protocol_class(self) -> int:
        return self.class_option >> 4


@dataclass(frozen=True)
class ConnectionRequest(_ConnectTpdu):
    """CR TPDU (ISO 8073 13.3)."""


@dataclass(frozen=True)
class ConnectionConfirm(_ConnectTpdu):
    """CC TPDU (ISO 8073 13.4)."""


@dataclass(frozen=True)
class DisconnectRequest:
    """DR TPDU (ISO 8073 13.5); ``reason`` is a :class:`DisconnectReason` value."""

    dst_ref: int = 0
    src_ref: int = 0
    reason: int = DisconnectReason.NOT_SPECIFIED
    params: tuple[Parameter, ...] = ()
    user_data: bytes = b""


@dataclass(frozen=True)
class Data:
    """DT TPDU, class 0 normal format (ISO 8073 13.7)."""

    user_data: bytes = b""
    eot: bool = True  #: last TPDU of the TSDU
    tpdu_nr: int = 0  #: 0..127; 0 in class 0


@dataclass(frozen=True)
class ExpeditedData:
    """ED TPDU in the RFC 1006 form: the DT layout with code 0x10, 1..16 octets."""

    user_data: bytes = b"\x00"
    eot: bool = True
    tpdu_nr: int = 0


@dataclass(frozen=True)
class Error:
    """ER TPDU (ISO 8073 13.12); ``cause`` is a :class:`RejectCause` value."""

    dst_ref: int = 0
    cause: int = RejectCause.NOT_SPECIFIED
    params: tuple[Parameter, ...] = ()

    @property
    def invalid_tpdu(self) -> bytes | None:
        """The rejected TPDU's header (parameter 0xC1), when present."""
        return next((p.value for p in self.params if p.code == 0xC1), None)


TPDU: TypeAlias = (
    ConnectionRequest | ConnectionConfirm | DisconnectRequest | Data | ExpeditedData | Error
)

# ------------------------------------------------------------------ encoding


def encode_tpdu(tpdu: TPDU, *, max_size: int | None = None) -> bytes:
    """Encode one TPDU; with *max_size*, refuse one longer than that many octets."""
    if isinstance(tpdu, _ConnectTpdu):
        out = _encode_connect(tpdu)
    elif isinstance(tpdu, DisconnectRequest):
        fixed = struct.pack(">BHHB", TpduCode.DR, *_refs(tpdu), _octet(tpdu.reason, "reason"))
        out = _frame(fixed + _encode_params(tpdu.params), tpdu.user_data)
    elif isinstance(tpdu, Data):
        out = _frame(_nr_header(TpduCode.DT, tpdu.eot, tpdu.tpdu_nr), tpdu.user_data)
    elif isinstance(tpdu, ExpeditedData):
        if not 1 <= len(tpdu.user_data) <= MAX_ED_DATA:
            raise EncodeError(f"ED carries 1..{MAX_ED_DATA} octets, not {len(tpdu.user_data)}")
        out = _frame(_nr_header(TpduCode.ED, tpdu.eot, tpdu.tpdu_nr), tpdu.user_data)
    elif isinstance(tpdu, Error):
        fixed = struct.pack(">BHB", TpduCode.ER, _ref(tpdu.dst_ref), _octet(tpdu.cause, "cause"))
        out = _frame(fixed + _encode_params(tpdu.params), b"")
    else:
        raise EncodeError(f"not a TPDU: {tpdu!r}")
    if max_size is not None and len(out) > max_size:
        raise EncodeError(f"TPDU of {len(out)} octets exceeds the TPDU size {max_size}")
    return out


def _encode_connect(tpdu: _ConnectTpdu) -> bytes:
    code = TpduCode.CR if isinstance(tpdu, ConnectionRequest) else TpduCode.CC
    if tpdu.protocol_class != 0:
        raise EncodeError(f"protocol class {tpdu.protocol_class}: only class 0 is supported")
    option = _octet(tpdu.class_option, "class option")
    fixed = struct.pack(">BHHB", code, *_refs(tpdu), option)
    return _frame(fixed + _encode_params(_connect_params(tpdu)), tpdu.user_data)


def _connect_params(tpdu: _ConnectTpdu) -> list[Parameter]:
    named: dict[int, bytes] = {}
    if tpdu.tpdu_size is not None:
        if not MIN_TPDU_SIZE_CODE <= tpdu.tpdu_size <= MAX_RFC1006_SIZE_CODE:
            raise EncodeError(f"TPDU size code {tpdu.tpdu_size:#x} is not in 0x07..0x10")
        named[ParameterCode.TPDU_SIZE] = bytes([tpdu.tpdu_size])
    if tpdu.called_tsap is not None:
        named[ParameterCode.CALLED_TSAP] = tpdu.called_tsap
    if tpdu.calling_tsap is not None:
        named[ParameterCode.CALLING_TSAP] = tpdu.calling_tsap
    if tpdu.preferred_max_tpdu_size is not None:
        named[ParameterCode.PREFERRED_MAX_TPDU_SIZE] = _uint(tpdu.preferred_max_tpdu_size)
    for param in tpdu.other_params:
        if param.code in _NAMED:
            raise EncodeError(f"parameter {param.code:#04x} must be given by its named field")
    return _in_order(named, list(tpdu.other_params), tpdu.param_order or ())


def _in_order(
    named: dict[int, bytes], others: list[Parameter], order: tuple[int, ...]
) -> list[Parameter]:
    """Lay out parameters following *order*; what it does not mention goes last."""
    out: list[Parameter] = []
    for code in order:
        if code in named:
            out.append(Parameter(code, named.pop(code)))
            continue
        match = next((i for i, p in enumerate(others) if p.code == code), None)
        if match is not None:
            out.append(others.pop(match))
    out.extend(Parameter(code, value) for code, value in named.items())
    return out + others


def _uint(value: int) -> bytes:
    if not 0 <= value <= 0xFFFFFFFF:
        raise EncodeError(f"preferred maximum TPDU size {value} does not fit 4 octets")
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


def _encode_params(params: tuple[Parameter, ...] | list[Parameter]) -> bytes:
    out = bytearray()
    for param in params:
        if len(param.value) > 255:
            raise EncodeError(f"parameter {param.code:#04x} value exceeds 255 octets")
        out += bytes([_octet(param.code, "parameter code"), len(param.value)]) + param.value
    return bytes(out)


def _frame(header: bytes, user_data: bytes) -> bytes:
    if len(header) > MAX_HEADER_LI:
        raise EncodeError(f"TPDU header of {len(header)} octets exceeds {MAX_HEADER_LI}")
    return bytes([len(header)]) + header + bytes(user_data)


def _nr_header(code: int, eot: bool, nr: int) -> bytes:
    if not 0 <= nr <= 0x7F:
        raise EncodeError(f"TPDU-NR {nr} is not in 0..127")
    return bytes([code, (_EOT if eot else 0) | nr])


def _refs(tpdu: _ConnectTpdu | DisconnectRequest) -> tuple[int, int]:
    return _ref(tpdu.dst_ref), _ref(tpdu.src_ref)


def _ref(value: int) -> int:
    if not 0 <= value <= 0xFFFF:
        raise EncodeError(f"reference {value} is not in 0..65535")
    return value


def _octet(value: int, what: str) -> int:
    if not 0 <= value <= 0xFF:
        raise EncodeError(f"{what} {value} is not in 0..255")
    return int(value)


# ------------------------------------------------------------------ decoding


def decode_tpdu(data: bytes | bytearray | memoryview) -> TPDU:
    """Decode exactly one TPDU (the payload of one TPKT)."""
    buf = bytes(data)
    if len(buf) < 2:
        raise DecodeError(f"TPDU of {len(buf)} octets is too short", offset=0, reflect=buf)
    li = buf[0]
    if li == 0xFF:
        raise DecodeError("TPDU length indicator 255 is reserved", offset=0, reflect=buf)
    if li + 1 > len(buf):
        raise DecodeError(f"TPDU LI {li} runs past its {len(buf)} octets", offset=0, reflect=buf)
    if li == 0:
        raise DecodeError("TPDU LI 0: no TPDU code", offset=0, reflect=buf)
    code = buf[1]
    if code == TpduCode.CR or code == TpduCode.CC:
        # Every client of a server sends the same CR, and a server answers each with the
        # same CC: the (immutable) TPDU decoded once, by its octets.
        known = _CONNECT_CACHE.get(buf)
        if known is not None:
            return known
        tpdu = _decode_connect(buf, li)
        if len(buf) <= _CONNECT_CACHE_OCTETS:
            if len(_CONNECT_CACHE) >= _CONNECT_CACHE_MAX:
                _CONNECT_CACHE.clear()  # bounded: a peer chooses the octets
            _CONNECT_CACHE[buf] = tpdu
        return tpdu
    decoder = _DECODERS.get(code)
    if decoder is None:
        raise DecodeError(f"TPDU code {buf[1]:#04x} is not used in class 0", offset=1, reflect=buf)
    return decoder(buf, li)


_CONNECT_CACHE: dict[bytes, TPDU] = {}
_CONNECT_CACHE_MAX = 64
_CONNECT_CACHE_OCTETS = 256  #: longer ones (user data in a CR) are decoded each time


_CONNECT_FIXED = struct.Struct(">HHB")
_TPDU_SIZE = int(ParameterCode.TPDU_SIZE)
_PREFERRED = int(ParameterCode.PREFERRED_MAX_TPDU_SIZE)
_CALLING = int(ParameterCode.CALLING_TSAP)
_CALLED = int(ParameterCode.CALLED_TSAP)
_NAMED_CODES = frozenset(int(code) for code in _NAMED)


def _decode_connect(buf: bytes, li: int) -> TPDU:
    """CR or CC in one pass over the parameters (each named one at most once); anything
    else takes :func:`_decode_connect_general`, which raises the errors."""
    cls = ConnectionRequest if buf[1] == TpduCode.CR else ConnectionConfirm
    if li < 6:
        return _decode_connect_general(buf, li)
    end = li + 1
    named: dict[int, bytes] = {}
    others: list[Parameter] = []
    order: list[int] = []
    pos = 7
    while pos < end:
        if pos + 2 > end:
            return _decode_connect_general(buf, li)
        code = buf[pos]
        stop = pos + 2 + buf[pos + 1]
        if stop > end:
            return _decode_connect_general(buf, li)
        value = buf[pos + 2 : stop]
        order.append(code)
        if code in _NAMED_CODES:
            if code in named:
                return _decode_connect_general(buf, li)
            named[code] = value
        else:
            others.append(Parameter(code, value))
        pos = stop
    size = named.get(_TPDU_SIZE)
    if size is not None and (len(size) != 1 or not _SIZE_CODES[0] <= size[0] <= _SIZE_CODES[1]):
        return _decode_connect_general(buf, li)
    preferred = named.get(_PREFERRED)
    if preferred is not None and not 1 <= len(preferred) <= 4:
        return _decode_connect_general(buf, li)
    dst_ref, src_ref, class_option = _CONNECT_FIXED.unpack_from(buf, 2)
    return cls(
        dst_ref=dst_ref,
        src_ref=src_ref,
        class_option=class_option,
        calling_tsap=named.get(_CALLING),
        called_tsap=named.get(_CALLED),
        tpdu_size=None if size is None else size[0],
        preferred_max_tpdu_size=None if preferred is None else int.from_bytes(preferred, "big"),
        other_params=tuple(others),
        user_data=buf[end:],
        param_order=tuple(order),
    )


def _decode_connect_general(buf: bytes, li: int) -> TPDU:
    cls = ConnectionRequest if buf[1] == TpduCode.CR else ConnectionConfirm
    _need(buf, li, 6, cls.__name__)
    dst_ref, src_ref, class_option = struct.unpack_from(">HHB", buf, 2)
    params = _decode_params(buf, 7, li + 1)
    size = _single(params, ParameterCode.TPDU_SIZE)
    if size is not None and (len(size) != 1 or not _SIZE_CODES[0] <= size[0] <= _SIZE_CODES[1]):
        raise DecodeError(f"invalid TPDU size parameter {size.hex()}", offset=7, reflect=buf)
    preferred = _single(params, ParameterCode.PREFERRED_MAX_TPDU_SIZE)
    if preferred is not None and not 1 <= len(preferred) <= 4:
        raise DecodeError("preferred maximum TPDU size is not 1..4 octets", reflect=buf)
    return cls(
        dst_ref=dst_ref,
        src_ref=src_ref,
        class_option=class_option,
        calling_tsap=_single(params, ParameterCode.CALLING_TSAP),
        called_tsap=_single(params, ParameterCode.CALLED_TSAP),
        tpdu_size=None if size is None else size[0],
        preferred_max_tpdu_size=None if preferred is None else int.from_bytes(preferred, "big"),
        other_params=tuple(p for p in params if p.code not in _NAMED),
        user_data=buf[li + 1 :],
        param_order=tuple(p.code for p in params),
    )


def _decode_dr(buf: bytes, li: int) -> TPDU:
    _need(buf, li, 6, "DR")
    dst_ref, src_ref, reason = struct.unpack_from(">HHB", buf, 2)
    params = tuple(_decode_params(buf, 7, li + 1))
    return DisconnectRequest(dst_ref, src_ref, reason, params, buf[li + 1 :])


def _decode_dt(buf: bytes, li: int) -> TPDU:
    if li != 2:
        raise DecodeError(f"class 0 DT has LI 2, not {li}", offset=0, reflect=buf)
    return Data(buf[3:], eot=bool(buf[2] & _EOT), tpdu_nr=buf[2] & 0x7F)


def _decode_ed(buf: bytes, li: int) -> TPDU:
    if li != 2:
        raise DecodeError(f"RFC 1006 ED has LI 2, not {li}", offset=0, reflect=buf)
    if not 1 <= len(buf) - 3 <= MAX_ED_DATA:
        raise DecodeError(f"ED carries 1..{MAX_ED_DATA} octets", offset=3, reflect=buf)
    return ExpeditedData(buf[3:], eot=bool(buf[2] & _EOT), tpdu_nr=buf[2] & 0x7F)


def _decode_er(buf: bytes, li: int) -> TPDU:
    _need(buf, li, 4, "ER")
    if len(buf) != li + 1:
        raise DecodeError("ER TPDU carries no user data", offset=li + 1, reflect=buf)
    dst_ref, cause = struct.unpack_from(">HB", buf, 2)
    return Error(dst_ref, cause, tuple(_decode_params(buf, 5, li + 1)))


def _need(buf: bytes, li: int, minimum: int, name: str) -> None:
    if li < minimum:
        raise DecodeError(f"{name} header LI {li} is below {minimum}", offset=0, reflect=buf)


def _decode_params(buf: bytes, start: int, end: int) -> list[Parameter]:
    params: list[Parameter] = []
    pos = start
    while pos < end:
        if pos + 2 > end or pos + 2 + buf[pos + 1] > end:
            raise DecodeError("parameter runs past the TPDU header", offset=pos, reflect=buf)
        size = buf[pos + 1]
        params.append(Parameter(buf[pos], buf[pos + 2 : pos + 2 + size]))
        pos += 2 + size
    return params


def _single(params: list[Parameter], code: int) -> bytes | None:
    values = [p.value for p in params if p.code == code]
    if len(values) > 1:
        raise DecodeError(f"parameter {code:#04x} appears {len(values)} times")
    return values[0] if values else None


_DECODERS: dict[int, Callable[[bytes, int], TPDU]] = {
    TpduCode.CR: _decode_connect,
    TpduCode.CC: _decode_connect,
    TpduCode.DR: _decode_dr,
    TpduCode.DT: _decode_dt,
    TpduCode.ED: _decode_ed,
    TpduCode.ER: _decode_er,
}
