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
from .formats import U8, Octets
from .spec import Entry, Group, Grouped, Param, UserData
from .types import (
    SPDU,
    Connect,
    ConnectAcceptItem,
    DataTransfer,
    GiveTokens,
    MajorSyncPoint,
    Refuse,
)
from .units import MAX_LI, encode_li, encode_unit, iter_units, read_li

__all__ = ["encode", "encode_tsdu", "decode_tsdu", "V1_USER_DATA", "V2_CONNECT_USER_DATA"]

V1_USER_DATA = 512
V2_CONNECT_USER_DATA = 10240
_EXTENDED_USER_DATA = 194
_GT_DT_HEAD = b"\x01\x00\x01\x00"  #: GT (LI 0) + DT (LI 0): the MMS data TSDU
_GIVE_TOKENS = GiveTokens()  #: immutable, so one instance serves every fast-path decode


def _check_enclosure(value: int, version: int) -> None:
    """The Enclosure Item (PI 25): segmenting, version 2 only; bits 1 and 2 only."""
    if version == 1:
        raise DecodeError("Enclosure Item (segmenting) in version 1")
    if value & ~_ENCLOSURE_BITS:
        raise DecodeError(f"Enclosure Item {value:#04x}: only bits 0x01 and 0x02 are defined")


_ENCLOSURE_BITS = 0x03  #: beginning (0x01), end (0x02) of an SSDU
_ENCLOSURE_PI = 25


# ------------------------------------------------------------------ encoding


def encode(spdu: SPDU, *, version: int = 2) -> bytes:
    """Encode one SPDU for protocol ``version`` (1 or 2)."""
    if not isinstance(spdu, SPDU):
        raise EncodeError(f"not an SPDU: {spdu!r}")
    version = _effective_version(spdu, version)
    if type(spdu) is MajorSyncPoint and type(spdu.sync_type) is int and not spdu.sync_type & 1:
        raise EncodeError("MAP: the Sync Type Item needs bit 0x01 (not the end of an"
                          " activity): without it SI 41 is an AE")  # fmt: skip
    params: bytes | bytearray | None = None
    if type(spdu) is not Refuse:
        params = _encode_fast(spdu, _plan(spdu.SPEC), version)
    if params is None:
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
    if len(spdus) == 1:
        only = spdus[0]
        if isinstance(only, SPDU) and only.category != 2:
            return encode(only, version=version)  # alone in its TSDU: always allowed
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
            if entry.code == _ENCLOSURE_PI:
                try:
                    _check_enclosure(value, version)
                except DecodeError as exc:
                    raise EncodeError(f"{where}: {exc.message}") from None
            raw = entry.fmt.encode(value)
            if isinstance(obj, Refuse) and version == 1 and len(raw) > V1_USER_DATA + 1:
                raise EncodeError(f"{where}: more than 512 octets of user data in version 1")
        out += encode_unit(entry.code, raw)
    return bytes(out)


# A spec compiled for the fast paths: one tuple per entry, (tag, entry, name, code, extra),
# tag _PARAM (any format), _BYTE (U8: one octet), _OCTETS (Octets: extra is (min, max)),
# _PAIR (a PI held in a tuple of fields: RF's
# reason, left to the general path), _GROUP (extra: the Grouped class), _DATA (user data).
# The fast paths handle the well-formed cases only and answer None for anything else; the
# general code then runs and raises exactly its own errors.
_PARAM, _BYTE, _PAIR, _GROUP, _DATA, _OCTETS = range(6)
_Plan = tuple[tuple[int, Any, str, int, Any], ...]
#: (the spec, its plan, plan items by PI/PGI code, names of the required entries)
_Compiled = tuple[tuple[Entry, ...], _Plan, dict[int, Any], tuple[str, ...]]
_PLANS: dict[int, _Compiled] = {}


def _compile(spec: tuple[Entry, ...]) -> _Compiled:
    items: list[tuple[int, Any, str, int, Any]] = []
    for entry in spec:
        if isinstance(entry, UserData):
            items.append((_DATA, entry, entry.name, entry.code, None))
        elif isinstance(entry, Group):
            items.append(
                (_GROUP, entry, entry.name, entry.code, (entry.cls, _compiled(entry.cls.SPEC)))
            )
        elif isinstance(entry.name, tuple):
            items.append((_PAIR, entry, "", entry.code, None))
        else:
            if type(entry.fmt) is Octets:
                bounds = (entry.fmt.min_len, entry.fmt.max_len)
                items.append((_OCTETS, entry, entry.name, entry.code, bounds))
                continue
            tag = _BYTE if entry.fmt == U8 else _PARAM
            items.append((tag, entry, entry.name, entry.code, None))
    plan = tuple(items)
    by_code = {code: item for code, item in ((e.code, i) for e, i in zip(spec, plan, strict=True))}
    for entry, item in zip(spec, plan, strict=True):
        if isinstance(entry, UserData):
            if entry.extended:
                by_code[_EXTENDED_USER_DATA] = item
            if entry.also is not None:
                by_code[entry.also] = item
    required = tuple(
        entry.name if isinstance(entry.name, str) else ""  # "": never fast (RF's pair)
        for entry in spec
        if entry.required
    )
    return spec, plan, by_code, required


def _compiled(spec: tuple[Entry, ...]) -> _Compiled:
    got = _PLANS.get(id(spec))
    if got is None or got[0] is not spec:
        got = _PLANS[id(spec)] = _compile(spec)
    return got


def _plan(spec: tuple[Entry, ...]) -> _Plan:
    return _compiled(spec)[1]


#: Encoded PGI values by the identity of the (immutable) value: the negotiation caches hand
#: every session the same Connect/Accept Item, so its octets are computed once.  The entry
#: holds the value, so the id stays its own.  Groups hold no user data: version-independent.
#: One table per class (new Connection Identifiers each time do not push the items out).
_GROUP_OCTETS: dict[type[Grouped], dict[int, tuple[Grouped, bytes]]] = {}
_GROUP_OCTETS_MAX = 64
#: Decoded PGI values by class and octets (immutable, so shared): every CN from a server's
#: clients carries the same Connect/Accept Item.  One table per class, so that the Connection
#: Identifiers (new references each time) do not push the items out.
_GROUP_VALUES: dict[type[Grouped], dict[bytes, Grouped]] = {}
_GROUP_VALUE_OCTETS = 64


def _encode_fast(obj: Any, plan: _Plan, version: int) -> bytearray | None:
    """:func:`_encode_entries` for well-formed values; None sends the caller to it."""
    out = bytearray()
    for tag, entry, name, code, extra in plan:
        if tag == _PAIR:
            return None
        value = getattr(obj, name)
        if value is None:
            if entry.required:
                return None
            continue
        if tag == _BYTE:
            if type(value) is not int or not 0 <= value <= 255:
                return None
            if code == _ENCLOSURE_PI and (version == 1 or value & ~_ENCLOSURE_BITS):
                return None  # (the general path says why)
            out += bytes((code, 1, value))
            continue
        if tag == _GROUP:
            if type(value) is not extra[0]:
                return None
            octets = _GROUP_OCTETS.get(extra[0])
            if octets is None:
                octets = _GROUP_OCTETS[extra[0]] = {}
            known = octets.get(id(value))
            if known is not None and known[0] is value:
                raw: bytes | bytearray = known[1]
            else:
                inner = _encode_fast(value, extra[1][1], version)
                if inner is None:
                    return None
                raw = bytes(inner)
                if len(octets) >= _GROUP_OCTETS_MAX:
                    octets.clear()
                octets[id(value)] = (value, raw)
        elif tag == _DATA:
            if type(value) is not bytes:
                return None
            limit = entry.limit_v1 if version == 1 else entry.limit_v2
            if limit is not None and len(value) > limit:
                return None
            if entry.extended and len(value) > V1_USER_DATA:
                code = _EXTENDED_USER_DATA
            raw = value
        elif tag == _OCTETS:
            if type(value) is not bytes or not extra[0] <= len(value) <= extra[1]:
                return None
            raw = value
        else:
            fmt = entry.fmt
            if fmt.check(value) is not None:
                return None
            raw = fmt.encode(value)
        size = len(raw)
        if size < 255:
            out += bytes((code, size))
        elif size <= MAX_LI:
            out += bytes((code, 0xFF, size >> 8, size & 0xFF))
        else:
            return None
        out += raw
    return out


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
    if len(spdus) == 1 and spdus[0].category == 1:
        return (spdus[0],)  # a category-1 SPDU alone: what check_concatenation accepts
    check_concatenation([type(s) for s in spdus], extended=extended)
    return tuple(spdus)


def _decode_spdu(
    cls: type[SPDU], buf: bytes, pos: int, start: int, end: int, stop: int, version: int
) -> SPDU:
    try:
        if cls is Connect:
            found = _connect_version_fast(buf, start, end)
            version = found if found is not None else _connect_version(buf, start, end)
        values = _decode_fast(buf, start, end, _compiled(cls.SPEC), version)
        if values is None:
            values = _decode_entries(buf, start, end, cls.SPEC, version, cls.kind)
        if "enclosure" in values:
            _check_enclosure(values["enclosure"], version)
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


def _connect_version_fast(buf: bytes, start: int, end: int) -> int | None:
    """:func:`_connect_version` with one-octet length indicators only (None: anything else;
    the general scan then decides or raises)."""
    found: int | None = None
    pos = start
    while pos < end:  # the whole field, as the general scan checks it all first
        unit = _unit_fast(buf, pos, end)
        if unit is None:
            return None
        code, at, pos = unit
        if code == 5:
            inner = at
            while inner < pos:
                if inner + 2 > pos or buf[inner + 1] == 0xFF:
                    return None
                value = inner + 2
                inner = value + buf[inner + 1]
                if inner > pos:
                    return None
                if found is None and buf[value - 2] == 22 and inner - value == 1:
                    found = 2 if buf[value] & 2 else 1
    return 2 if found is None else found


def _decode_entries(
    buf: bytes, start: int, end: int, spec: tuple[Entry, ...], version: int, where: str
) -> dict[str, Any]:
    by_code = _codes(spec)
    values: dict[str, Any] = {}
    seen: dict[int, int] = {}  #: the entry's code -> the code it came under
    for code, s, e in iter_units(buf, start, end):
        entry = by_code.get(code)
        if entry is None:
            raise DecodeError(f"parameter {code} is not allowed in {where}")
        key = entry.code
        first = seen.get(key)
        if first is not None:
            if first != code:  # the parameter's other code (PGI 193 and 194: user data)
                raise DecodeError(f"parameters {first} and {code} both appear in {where}")
            raise DecodeError(f"parameter {code} appears twice in {where}")
        seen[key] = code
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


def _unit_fast(buf: bytes, pos: int, end: int) -> tuple[int, int, int] | None:
    """The PI/PGI unit at ``buf[pos:end]`` as (code, where its value starts, where it ends),
    or None when it is not well formed (the general scan then decides or raises)."""
    if pos + 2 > end:
        return None
    size = buf[pos + 1]
    at = pos + 2
    if size == 0xFF:  # three-octet LI (over 254 octets; a shorter value in it is refused)
        if pos + 4 > end:
            return None
        size = (buf[pos + 2] << 8) | buf[pos + 3]
        if size < 255:
            return None
        at = pos + 4
    stop = at + size
    return None if stop > end else (buf[pos], at, stop)


def _decode_fast(
    buf: bytes, start: int, end: int, compiled: _Compiled, version: int
) -> dict[str, Any] | None:
    """:func:`_decode_entries` for a well-formed parameter field; None sends the caller to
    it (which then raises its own error, or agrees)."""
    by_code, required = compiled[2], compiled[3]
    values: dict[str, Any] = {}
    pos = start
    while pos < end:
        unit = _unit_fast(buf, pos, end)
        if unit is None:
            return None
        code, at, pos = unit
        size = pos - at
        item = by_code.get(code)
        if item is None:
            return None
        tag, entry, name, _code, extra = item
        if tag == _PAIR or name in values:
            return None
        if tag == _BYTE:
            if size != 1:
                return None
            values[name] = buf[at]
        elif tag == _OCTETS:
            if not extra[0] <= size <= extra[1]:
                return None
            values[name] = buf[at:pos]
        elif tag == _PARAM:
            try:
                values[name] = entry.fmt.decode(buf[at:pos])
            except DecodeError:
                return None
        elif tag == _GROUP:
            raw = buf[at:pos]
            seen = _GROUP_VALUES.get(extra[0])
            group = seen.get(raw) if seen is not None else None
            if group is None:
                inner = _decode_fast(buf, at, pos, extra[1], version)
                if inner is None:
                    return None
                group = extra[0](**inner)
                if seen is None:
                    seen = _GROUP_VALUES[extra[0]] = {}
                if len(raw) <= _GROUP_VALUE_OCTETS:
                    if len(seen) >= _GROUP_OCTETS_MAX:
                        seen.clear()
                    seen[raw] = group
            values[name] = group
        else:  # _DATA
            if code == _EXTENDED_USER_DATA:
                if version == 1 or size <= V1_USER_DATA:
                    return None
            elif entry.extended and size > V1_USER_DATA:
                return None
            limit = entry.limit_v1 if version == 1 else entry.limit_v2
            if limit is not None and size > limit:
                return None
            values[name] = buf[at:pos]
    for name in required:
        if name not in values:
            return None
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
