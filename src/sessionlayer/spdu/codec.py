"""Encode SPDUs to octets and decode TSDUs to SPDUs.

``encode(spdu)`` builds one SPDU; ``encode_tsdu(*spdus)`` checks the
concatenation rules and joins them; ``decode_tsdu(data)`` splits a TSDU
into its SPDUs, telling apart the SPDUs that share an SI code.

Every malformed input raises :class:`DecodeError` (a protocol error the
session aborts with); every invalid SPDU handed to the encoder raises
:class:`EncodeError` and nothing is produced.
"""

from __future__ import annotations

from typing import Any

from ..errors import AbortReason, DecodeError, EncodeError
from .concat import check_concatenation, resolve
from .spec import Entry, Group, Grouped, Param, UserData
from .types import SPDU, Connect, ConnectAcceptItem, DataTransfer, GiveTokens, Refuse
from .units import MAX_LI, encode_li, encode_unit, iter_units, read_li

__all__ = ["encode", "encode_tsdu", "decode_tsdu", "V1_USER_DATA", "V2_CONNECT_USER_DATA"]

V1_USER_DATA = 512
V2_CONNECT_USER_DATA = 10240
_EXTENDED_USER_DATA = 194
_GT_DT_HEAD = b"\x01\x00\x01\x00"  #: GT (LI 0) + DT (LI 0): the MMS data TSDU
_GIVE_TOKENS = GiveTokens()  #: immutable, so one instance serves every fast-path decode


# ------------------------------------------------------------------ encoding


def encode(spdu: SPDU, *, version: int = 2) -> bytes:
    """Encode one SPDU for protocol ``version`` (1 or 2)."""
    if not isinstance(spdu, SPDU):
        raise EncodeError(f"not an SPDU: {spdu!r}")
    version = _effective_version(spdu, version)
    params = _encode_entries(spdu, spdu.SPEC, version, spdu.kind)
    if len(params) > MAX_LI:
        raise EncodeError(
            f"{spdu.kind}: parameter field of {len(params)} octets exceeds 65535;"
            " segment the user data"
        )
    head = bytes((spdu.si,)) + encode_li(len(params)) + params
    if not spdu.user_info:
        return head
    data = getattr(spdu, "user_data", b"")
    if not isinstance(data, bytes | bytearray | memoryview):
        raise EncodeError(f"{spdu.kind}: user data must be bytes")
    limit = spdu.user_info_limit
    if limit is not None and len(data) > limit:
        raise EncodeError(f"{spdu.kind}: {len(data)} octets of user data, at most {limit}")
    return head + bytes(data)


def encode_tsdu(*spdus: SPDU, version: int = 2, extended: bool = False) -> bytes:
    """Encode SPDUs into one TSDU, refusing a concatenation X.225 does not allow."""
    for spdu in spdus:
        if not isinstance(spdu, SPDU):
            raise EncodeError(f"not an SPDU: {spdu!r}")
    try:
        check_concatenation([type(s) for s in spdus], extended=extended)
    except DecodeError as exc:
        raise EncodeError(str(exc)) from None
    return b"".join(encode(s, version=version) for s in spdus)


def _effective_version(spdu: SPDU, version: int) -> int:
    if version not in (1, 2):
        raise EncodeError(f"protocol version must be 1 or 2, not {version}")
    if isinstance(spdu, Connect):
        # A CN's limits follow the versions it proposes itself (X.225 7.1).
        item = spdu.item
        offered = item.version if isinstance(item, ConnectAcceptItem) else None
        if not isinstance(offered, int):
            return 2  # absent (or invalid, which the parameter checks refuse)
        return 2 if offered & 2 else 1
    return version


def _encode_entries(obj: Any, spec: tuple[Entry, ...], version: int, where: str) -> bytes:
    out = bytearray()
    for entry in spec:
        if isinstance(entry, UserData):
            out += _encode_user_data(obj, entry, version, where)
            continue
        if isinstance(entry.name, tuple):
            value: Any = tuple(getattr(obj, n) for n in entry.name)
            present = value[0] is not None
            if not present and any(v is not None for v in value):
                raise EncodeError(f"{where}: {entry.name[1]} needs {entry.name[0]}")
        else:
            value = getattr(obj, entry.name)
            present = value is not None
        if not present:
            if entry.required:
                raise EncodeError(f"{where}: {entry.name} is required")
            continue
        if isinstance(entry, Group):
            if not isinstance(value, entry.cls):
                raise EncodeError(f"{where}: {entry.name} must be a {entry.cls.__name__}")
            raw = _encode_entries(value, value.SPEC, version, f"{where}.{entry.name}")
        else:
            problem = entry.fmt.check(value)
            if problem is not None:
                raise EncodeError(f"{where}: {entry.name}: {problem}")
            raw = entry.fmt.encode(value)
            if isinstance(obj, Refuse) and version == 1 and len(raw) > V1_USER_DATA + 1:
                raise EncodeError(f"{where}: more than 512 octets of user data in version 1")
        out += encode_unit(entry.code, raw)
    return bytes(out)


def _encode_user_data(obj: Any, entry: UserData, version: int, where: str) -> bytes:
    data = getattr(obj, entry.name)
    if data is None:
        if entry.required:
            raise EncodeError(f"{where}: user data is required")
        return b""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise EncodeError(f"{where}: user data must be bytes")
    limit = _user_data_limit(entry, version)
    if limit is not None and len(data) > limit:
        raise EncodeError(
            f"{where}: {len(data)} octets of user data, at most {limit} in version {version}"
        )
    code = entry.code
    if entry.extended and len(data) > V1_USER_DATA:
        code = _EXTENDED_USER_DATA
    return encode_unit(code, bytes(data))


def _user_data_limit(entry: UserData, version: int) -> int | None:
    return entry.limit_v1 if version == 1 else entry.limit_v2


# ------------------------------------------------------------------ decoding


def decode_tsdu(
    data: bytes | bytearray | memoryview,
    *,
    version: int = 2,
    extended: bool = False,
) -> tuple[SPDU, ...]:
    """Split one TSDU into SPDUs and decode each.

    ``version`` is the negotiated protocol version (its user-data limits
    apply; a CN follows its own).  ``extended`` allows extended
    concatenation, which only a peer that offered it may receive.
    """
    buf = bytes(data)
    if buf[:4] == _GT_DT_HEAD:
        # Fast path for the commonest TSDU (every MMS data exchange): GT and DT
        # without parameters, then the user information.  The general path
        # gives the same SPDUs; this one skips the parameter machinery.
        return (_GIVE_TOKENS, DataTransfer(user_data=buf[4:]))
    return _decode_tsdu(buf, version, extended)


def _decode_tsdu(buf: bytes, version: int, extended: bool) -> tuple[SPDU, ...]:
    """The general path of :func:`decode_tsdu`."""
    if not buf:
        raise DecodeError("empty TSDU", offset=0)
    spdus: list[SPDU] = []
    pos = 0
    end = len(buf)
    while pos < end:
        si = buf[pos]
        param_len, params_at = read_li(buf, pos + 1, end)
        params_end = params_at + param_len
        if params_end > end:
            raise DecodeError(
                f"SPDU with SI {si} claims {param_len} parameter octets,"
                f" only {end - params_at} remain",
                offset=pos,
                reflect=buf[pos : pos + 9],
            )
        cls = resolve(si, [type(s) for s in spdus], buf, params_at, params_end, extended)
        stop = end if cls.user_info else params_end
        spdus.append(_decode_spdu(cls, buf, pos, params_at, params_end, stop, version))
        pos = stop
    check_concatenation([type(s) for s in spdus], extended=extended)
    return tuple(spdus)


def _decode_spdu(
    cls: type[SPDU], buf: bytes, pos: int, start: int, end: int, stop: int, version: int
) -> SPDU:
    try:
        if cls is Connect:
            version = _connect_version(buf, start, end)
        values = _decode_entries(buf, start, end, cls.SPEC, version, cls.kind)
        if cls.user_info:
            data = buf[end:stop]
            limit = cls.user_info_limit
            if limit is not None and len(data) > limit:
                raise DecodeError(f"{len(data)} octets of user data, at most {limit}")
            values["user_data"] = data
        return cls(**values)
    except DecodeError as exc:
        raise DecodeError(
            f"{cls.kind}: {exc.message}",
            offset=pos,
            reason=exc.reason,
            reflect=buf[pos : pos + 9],
        ) from None


def _connect_version(buf: bytes, start: int, end: int) -> int:
    """The highest version a CN proposes (PI 22 inside PGI 5), or 2 when absent."""
    for code, s, e in iter_units(buf, start, end):
        if code == 5:
            for inner, s2, e2 in iter_units(buf, s, e):
                if inner == 22 and e2 - s2 == 1:
                    return 2 if buf[s2] & 2 else 1
    return 2


def _decode_entries(
    buf: bytes, start: int, end: int, spec: tuple[Entry, ...], version: int, where: str
) -> dict[str, Any]:
    by_code = _codes(spec)
    values: dict[str, Any] = {}
    seen: set[int] = set()
    for code, s, e in iter_units(buf, start, end):
        entry = by_code.get(code)
        if entry is None:
            raise DecodeError(f"parameter {code} is not allowed in {where}")
        key = entry.code
        if key in seen:
            raise DecodeError(f"parameter {code} appears twice in {where}")
        seen.add(key)
        raw = buf[s:e]
        if isinstance(entry, UserData):
            values[entry.name] = _decode_user_data(entry, code, raw, version, where)
        elif isinstance(entry, Group):
            inner = _decode_entries(buf, s, e, entry.cls.SPEC, version, f"{where} PGI {code}")
            values[entry.name] = _make_group(entry.cls, inner)
        else:
            _decode_param(entry, raw, values, version, where)
    for entry in spec:
        if entry.required and entry.code not in seen:
            raise DecodeError(f"mandatory parameter {entry.code} missing from {where}")
    return values


def _decode_param(
    entry: Param, raw: bytes, values: dict[str, Any], version: int, where: str
) -> None:
    try:
        value = entry.fmt.decode(raw)
    except DecodeError as exc:
        raise DecodeError(f"parameter {entry.code}: {exc.message}") from None
    if isinstance(entry.name, tuple):
        if where == "RF" and version == 1 and len(raw) > V1_USER_DATA + 1:
            raise DecodeError("more than 512 octets of user data in version 1")
        for name, part in zip(entry.name, value, strict=True):
            values[name] = part
    else:
        values[entry.name] = value


def _decode_user_data(entry: UserData, code: int, raw: bytes, version: int, where: str) -> bytes:
    if code == _EXTENDED_USER_DATA:
        if version == 1:
            raise DecodeError("Extended User Data (PGI 194) needs version 2")
        if len(raw) <= V1_USER_DATA:
            raise DecodeError(
                f"Extended User Data (PGI 194) of {len(raw)} octets; at most 512 belong in PGI 193"
            )
    elif entry.extended and len(raw) > V1_USER_DATA:
        raise DecodeError(f"{len(raw)} octets of user data in PGI 193; more than 512 need PGI 194")
    limit = _user_data_limit(entry, version)
    if limit is not None and len(raw) > limit:
        if limit == 0:
            raise DecodeError(f"user data is not allowed in {where} in version {version}")
        raise DecodeError(
            f"{len(raw)} octets of user data, at most {limit} in version {version}",
            reason=AbortReason.TRANSPORT_RELEASED | AbortReason.PROTOCOL_ERROR,
        )
    return raw


def _make_group(cls: type[Grouped], values: dict[str, Any]) -> Grouped:
    return cls(**values)


_CODE_CACHE: dict[int, dict[int, Entry]] = {}


def _codes(spec: tuple[Entry, ...]) -> dict[int, Entry]:
    table = _CODE_CACHE.get(id(spec))
    if table is None:
        table = {}
        for entry in spec:
            table[entry.code] = entry
            if isinstance(entry, UserData) and entry.extended:
                table[_EXTENDED_USER_DATA] = entry
            if isinstance(entry, UserData) and entry.also is not None:
                table[entry.also] = entry
        _CODE_CACHE[id(spec)] = table
    return table
