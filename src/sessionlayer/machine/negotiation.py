"""Connect-time negotiation (X.225 5.7, 7.1, 7.4): CN and AC built and read, pure functions.

Versions: the responder picks the highest version both offer (no common one: RF 0x84).
Functional units: the responder's choice is the intersection of the CN's Session User
Requirements (default 0x0349 when PI 20 is absent) with what it supports, then trimmed so that
exactly one of half-duplex/duplex remains and each unit's prerequisite is present.  Tokens:
the CN's Token Setting Item places each available token on the initiator's side, the
responder's, or leaves it to the called user's choice; the AC's Token Item names the tokens
the responder took among those left to its choice.  TSDU maximum sizes: each direction uses
the smaller non-zero value of sender's and receiver's proposal (0 = no limit), version 2 only;
a CN without them (PI 21 absent) means no segmenting in either direction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import RefuseReason
from ..spdu.codes import DEFAULT_REQUIREMENTS, FunctionalUnit, Token, TokenSetting
from ..spdu.types import Accept, Connect, ConnectAcceptItem, ConnectionId, OverflowAccept
from ._make import make
from .config import SessionConfig, token_bits, token_flag, unit_flag

__all__ = [
    "Negotiated",
    "V2_UNITS",
    "CN_DATA_MAX",
    "trim_units",
    "TOKEN_SHIFT",
    "encode_token_setting",
    "decode_token_setting",
    "by_requestor",
    "build_connect",
    "offered_versions",
    "check_connect",
    "respond",
    "read_accept",
    "overflow_accept",
    "initial_serial",
    "ISN_UNITS",
]

FU = FunctionalUnit
#: The units that number synchronization points without activities: with any of them and
#: without activity management the CN and the AC carry the Initial Serial Number (PI 23),
#: X.225 8.3.1 / 8.3.2 (Connect/Accept Item); activity start and resume set the numbers
#: themselves (Table A-4, SACTSreq / AR).
ISN_UNITS = FU.MINOR_SYNC | FU.MAJOR_SYNC | FU.RESYNC | FU.SYMMETRIC_SYNC
SYNC_UNITS = ISN_UNITS | FU.ACTIVITY
#: Two bits per token in PI 26 (and in RS/RA), low bits first.
TOKEN_SHIFT: dict[Token, int] = {
    Token.DATA: 0,
    Token.MINOR_SYNC: 2,
    Token.MAJOR_ACTIVITY: 4,
    Token.RELEASE: 6,
}
#: Functional units that exist only in protocol version 2 (X.225 5.5).
V2_UNITS = FU.SYMMETRIC_SYNC | FU.DATA_SEPARATION
# Plain-int copies of the masks for the hot paths (Flag arithmetic is ~50x an int's).
_HALF_DUPLEX = int(FU.HALF_DUPLEX)
_DUPLEX = int(FU.DUPLEX)
_EXCEPTIONS = int(FU.EXCEPTIONS)
_ACTIVITY = int(FU.ACTIVITY)
_CAPABILITY_DATA = int(FU.CAPABILITY_DATA)
_SYMMETRIC_SYNC = int(FU.SYMMETRIC_SYNC)
_MINOR_SYNC = int(FU.MINOR_SYNC)
_DATA_SEPARATION = int(FU.DATA_SEPARATION)
_V2_UNITS = int(V2_UNITS)
_ISN_UNITS = int(ISN_UNITS)
_SYNC_UNITS = int(SYNC_UNITS)
#: (token, its bits, its shift in PI 26), in TOKEN_SHIFT's order.
_TOKEN_BITS: tuple[tuple[Token, int, int], ...] = tuple(
    (token, int(token), shift) for token, shift in TOKEN_SHIFT.items()
)
_SETTINGS = tuple(TokenSetting(v) for v in range(4))
#: CN user data beyond this travels in CONNECT DATA OVERFLOW SPDUs (X.225 7.1, 7.3).
CN_DATA_MAX = 10240


@dataclass(frozen=True)
class Negotiated:
    """The outcome of connect negotiation, from one end's point of view."""

    functional_units: FunctionalUnit
    version: int
    tsdu_send: int
    tsdu_receive: int
    initial_serial: int | None
    owned: Token
    peer_extended: bool
    second_initial_serial: int | None = None


def encode_token_setting(settings: Mapping[Token, TokenSetting], available: Token | int) -> int:
    """PI 26 value for the available tokens (tokens not named: INITIATOR, i.e. 00)."""
    value = 0
    bits = int(available)
    for token, mask, shift in _TOKEN_BITS:
        if bits & mask:
            value |= int(settings.get(token, TokenSetting.INITIATOR)) << shift
    return value


_FLIP = {
    TokenSetting.INITIATOR: TokenSetting.RESPONDER,
    TokenSetting.RESPONDER: TokenSetting.INITIATOR,
}


def by_requestor(
    settings: Mapping[Token, TokenSetting], requestor_initiated: bool
) -> dict[Token, TokenSetting]:
    """RS/RA Token Setting Item values between the wire and the requestor's view.

    On the wire (PI 26 in RS and RA) 00 is the session initiator's side and 01 the session
    responder's, as in the CN (X.225 8.3.1 / 8.3.24 use the same item; ISODE and Wireshark
    name the values "initiator" and "responder").  The machine's API reads INITIATOR as the
    resync requestor's side; the two agree when the requestor initiated the session, else
    00 and 01 swap (the mapping is its own inverse).
    """
    if requestor_initiated:
        return dict(settings)
    return {token: _FLIP.get(value, value) for token, value in settings.items()}


def decode_token_setting(value: int | None, available: Token) -> dict[Token, TokenSetting]:
    """PI 26 value -> setting per available token (absent PI: all INITIATOR)."""
    out: dict[Token, TokenSetting] = {}
    bits = int(available)
    value = value or 0
    for token, mask, shift in _TOKEN_BITS:
        if bits & mask:
            out[token] = _SETTINGS[(value >> shift) & 3]
    return out


def _min0(a: int, b: int) -> int:
    """The smaller of two sizes, 0 meaning "no limit"."""
    if not a:
        return b
    if not b:
        return a
    return min(a, b)


def trim_units(units: FunctionalUnit, version2: bool = True) -> FunctionalUnit:
    """Drop what cannot be used: both duplex modes, units missing a prerequisite.

    Symmetric synchronize and data separation need version 2; data separation needs
    symmetric synchronize; symmetric synchronize replaces minor synchronize (docs/machine.md).
    """
    return unit_flag(_trim(int(units), version2))


def _trim(units: int, version2: bool) -> int:
    """:func:`trim_units` on plain ints."""
    if not version2:
        units &= ~_V2_UNITS
    if units & _HALF_DUPLEX and units & _DUPLEX:
        units &= ~_DUPLEX
    if not units & _HALF_DUPLEX:
        units &= ~_EXCEPTIONS
    if not units & _ACTIVITY:
        units &= ~_CAPABILITY_DATA
    if units & _SYMMETRIC_SYNC:
        units &= ~_MINOR_SYNC
    else:
        units &= ~_DATA_SEPARATION
    return units


def build_connect(
    config: SessionConfig, user_data: bytes | None, connection_id: ConnectionId | None
) -> Connect:
    """The CN an initiator sends for ``config``; user data beyond 10240 octets is not in it
    (Data Overflow = 1 says that CDOs will carry the rest, X.225 7.1)."""
    units, item = _connect_item(config)
    overflow = user_data is not None and len(user_data) > CN_DATA_MAX
    return make(
        Connect,
        connection_id=connection_id,
        item=item,
        requirements=units,
        calling_ssel=config.calling_ssel,
        called_ssel=config.called_ssel,
        data_overflow=1 if overflow else None,
        user_data=user_data[:CN_DATA_MAX] if user_data is not None else None,
    )


def _connect_item(config: SessionConfig) -> tuple[int, ConnectAcceptItem]:
    """The CN's Session User Requirements and Connect/Accept Item for ``config``: one
    (immutable) item per configuration, so that its octets are encoded once too."""
    key = _config_key(config)
    try:
        hit = _CONNECT_ITEMS.get(key)
    except TypeError:
        return _make_connect_item(config)
    if hit is not None:
        return hit
    out = _make_connect_item(config)
    if len(_CONNECT_ITEMS) >= _CACHE_MAX:
        _CONNECT_ITEMS.clear()
    _CONNECT_ITEMS[key] = out
    return out


def _make_connect_item(config: SessionConfig) -> tuple[int, ConnectAcceptItem]:
    v2 = bool(int(config.versions) & 2)
    units = int(config.functional_units)
    if not v2:
        units &= ~_V2_UNITS
    available = token_bits(units)
    sizes = (config.tsdu_max_send, config.tsdu_max_receive)
    ss = bool(units & _SYMMETRIC_SYNC)
    item = ConnectAcceptItem(
        protocol_options=1 if config.extended_concatenation else 0,
        tsdu_max_size=sizes if v2 and any(sizes) else None,
        version=int(config.versions),
        initial_serial=_initial_serial(units, config.initial_serial),
        token_setting=encode_token_setting(config.token_setting, available) if available else None,
        second_initial_serial=config.second_initial_serial if ss else None,
    )
    return units, item


def initial_serial(units: FunctionalUnit, configured: int | None) -> int | None:
    """The Initial Serial Number (PI 23) a CN or AC carries for these units, or None.

    X.225 8.3.1 / 8.3.2: it is present when minor synchronize, major synchronize or
    resynchronize is proposed (selected, in the AC) and activity management is not; the
    default value is 0 (sent as "0").  With activity management only a configured value
    is sent.
    """
    return _initial_serial(int(units), configured)


def _initial_serial(units: int, configured: int | None) -> int | None:
    if not units & _SYNC_UNITS:
        return None
    if configured is None and units & _ISN_UNITS and not units & _ACTIVITY:
        return 0
    return configured


def offered_versions(cn: Connect) -> int:
    """Version bits a CN offers; without PI 22, v2 if the user data needs it, else v1."""
    if cn.item is not None and cn.item.version is not None:
        return cn.item.version & 3
    return 2 if cn.user_data is not None and len(cn.user_data) > 512 else 1


def check_connect(cn: Connect, config: SessionConfig) -> RefuseReason | None:
    """Why the SPM itself must refuse this CN, or None when the user may decide."""
    common = offered_versions(cn) & int(config.versions)
    if not common or ((cn.data_overflow or 0) & 1 and not common & 2):
        return RefuseReason.VERSION_NOT_SUPPORTED  # Data Overflow needs version 2 (7.1)
    units = _responder_bits(cn, config)
    if not units & (_HALF_DUPLEX | _DUPLEX):
        return RefuseReason.IMPLEMENTATION_RESTRICTION
    setting = cn.item.token_setting if cn.item is not None else None
    if setting:
        available = token_bits(units)
        for _token, mask, shift in _TOKEN_BITS:
            if available & mask and (setting >> shift) & 3 == TokenSetting.RESERVED:
                return RefuseReason.SPM_NO_REASON
    return None


def _responder_bits(cn: Connect, config: SessionConfig) -> int:
    proposed = cn.requirements if cn.requirements is not None else DEFAULT_REQUIREMENTS
    v2 = bool(offered_versions(cn) & int(config.versions) & 2)
    return _trim(int(proposed) & int(config.functional_units), v2)


def respond(
    cn: Connect,
    config: SessionConfig,
    units: FunctionalUnit | None,
    choice: Token | None,
) -> tuple[Negotiated, ConnectAcceptItem, Token | None]:
    """Negotiate as responder: the outcome, the AC's Connect/Accept Item and Token Item.

    ``units`` narrows the functional units further (the user's choice in accept());
    ``choice`` names the tokens the responder takes among those left to its choice.
    """
    version = 2 if offered_versions(cn) & int(config.versions) & 2 else 1
    selected = _responder_bits(cn, config)
    if units is not None:
        narrowed = selected & int(units) | (selected & (_HALF_DUPLEX | _DUPLEX))
        selected = _trim(narrowed, version == 2)
    available = token_bits(selected)
    item = cn.item or _EMPTY_ITEM
    owned, taken = _responder_tokens(item.token_setting or 0, available, config, choice)
    i2r, r2i = _responder_sizes(item, config) if version == 2 else (0, 0)
    isn, isn2 = _initial_serials(item, config, selected)
    result = Negotiated(
        functional_units=unit_flag(selected),
        version=version,
        tsdu_send=r2i,
        tsdu_receive=i2r,
        initial_serial=isn,
        owned=token_flag(owned),
        peer_extended=bool((item.protocol_options or 0) & 1),
        second_initial_serial=isn2,
    )
    ac_item = ConnectAcceptItem(
        protocol_options=1 if config.extended_concatenation else 0,
        tsdu_max_size=(i2r, r2i) if i2r or r2i else None,
        version=version,
        initial_serial=isn,
        second_initial_serial=isn2,
    )
    return result, ac_item, (token_flag(taken) if taken is not None else None)


_EMPTY_ITEM = ConnectAcceptItem()


def _responder_sizes(item: ConnectAcceptItem, config: SessionConfig) -> tuple[int, int]:
    """The TSDU maximum sizes (initiator->responder, responder->initiator) a responder agrees
    to: each the smaller non-zero of the CN's proposal and its own.

    A CN without PI 21 says that its sender does not segment (X.225 8.3.1, as ISODE reads
    it; libiec61850's client takes no Enclosure Item): then the answer carries none either
    and neither direction is segmented, whatever this end is configured with.
    """
    if item.tsdu_max_size is None:
        return 0, 0
    i2r, r2i = item.tsdu_max_size
    return _min0(i2r, config.tsdu_max_receive), _min0(r2i, config.tsdu_max_send)


def _initial_serials(
    item: ConnectAcceptItem, config: SessionConfig, selected: int
) -> tuple[int | None, int | None]:
    """The responder's Initial Serial Number and (symmetric synchronize) Second one."""
    if not selected & _SYNC_UNITS:
        return None, None
    isn = config.initial_serial if config.initial_serial is not None else item.initial_serial
    isn = _initial_serial(selected, isn)
    if not selected & _SYMMETRIC_SYNC:
        return isn, None
    isn2 = config.second_initial_serial
    return isn, isn2 if isn2 is not None else item.second_initial_serial


def _responder_tokens(
    setting: int, available: int, config: SessionConfig, choice: Token | None
) -> tuple[int, int | None]:
    """The tokens the responder holds and those it took by its choice (None: no Token Item),
    from the CN's Token Setting Item and the tokens that exist."""
    owned = 0
    taken = 0
    has_choice = False
    chosen = int(choice) if choice is not None else 0
    for token, mask, shift in _TOKEN_BITS:
        if not available & mask:
            continue
        value = (setting >> shift) & 3
        if value == TokenSetting.RESPONDER:
            owned |= mask
        elif value == TokenSetting.CALLED_CHOICE:
            has_choice = True
            if choice is not None:
                mine = bool(chosen & mask)
            else:
                mine = config.called_choice.get(token) == TokenSetting.RESPONDER
            if mine:
                owned |= mask
                taken |= mask
    return owned, (taken if has_choice and taken else None)


def read_accept(ac: Accept, config: SessionConfig) -> Negotiated | None:
    """Negotiate as initiator from the AC; None when the AC is unacceptable."""
    item = ac.item or _EMPTY_ITEM
    offered = int(config.versions)
    if item.version is None:
        version = 1 if offered & 1 else 2
    elif item.version in (1, 2) and item.version & offered:
        version = item.version
    else:
        return None
    answered = ac.requirements if ac.requirements is not None else DEFAULT_REQUIREMENTS
    units = _trim(int(answered) & int(config.functional_units), version == 2)
    if not units & (_HALF_DUPLEX | _DUPLEX):
        return None
    available = token_bits(units)
    owned = 0
    theirs = ac.tokens or 0
    for token, mask, _shift in _TOKEN_BITS:
        if not available & mask:
            continue
        setting = config.token_setting.get(token, TokenSetting.INITIATOR)
        if setting == TokenSetting.INITIATOR or (
            setting == TokenSetting.CALLED_CHOICE and not theirs & mask
        ):
            owned |= mask
    i2r, r2i = _initiator_sizes(item, config) if version == 2 else (0, 0)
    isn = item.initial_serial if item.initial_serial is not None else config.initial_serial
    isn2 = item.second_initial_serial
    if isn2 is None:
        isn2 = config.second_initial_serial
    return Negotiated(
        functional_units=unit_flag(units),
        version=version,
        tsdu_send=i2r,
        tsdu_receive=r2i,
        initial_serial=isn if units & _SYNC_UNITS else None,
        owned=token_flag(owned),
        peer_extended=bool((item.protocol_options or 0) & 1),
        second_initial_serial=isn2 if units & _SYMMETRIC_SYNC else None,
    )


def _initiator_sizes(item: ConnectAcceptItem, config: SessionConfig) -> tuple[int, int]:
    """The TSDU maximum sizes (initiator->responder, responder->initiator) an initiator takes
    from the AC's PI 21: none when its CN proposed none (it then does not segment, and a
    responder that names sizes anyway does not turn segmenting on)."""
    if not (config.tsdu_max_send or config.tsdu_max_receive):
        return 0, 0
    return item.tsdu_max_size or (0, 0)


# Every client of a server sends the same CN parameters (and a server answers each with the
# same AC): the machine negotiates once per distinct CN (AC) and configuration.  The keys
# hold the configuration by value (a client makes one per connect()), with the types of the
# two serial numbers (True == 1, but only 1 encodes); one that cannot be hashed (a bytearray
# selector) is not cached.
_CACHE_MAX = 64
_ConfigKey = tuple[SessionConfig, type, type]
_RESPONSES: dict[
    tuple[_ConfigKey, ConnectAcceptItem | None, int | None, int],
    tuple[Negotiated, ConnectAcceptItem, Token | None],
] = {}
_ACCEPTS: dict[
    tuple[_ConfigKey, ConnectAcceptItem | None, int | None, int | None], Negotiated | None
] = {}
_CONNECT_ITEMS: dict[_ConfigKey, tuple[int, ConnectAcceptItem]] = {}
_MISSING = object()


def _config_key(config: SessionConfig) -> _ConfigKey:
    return (config, type(config.initial_serial), type(config.second_initial_serial))


def respond_received(
    cn: Connect, config: SessionConfig
) -> tuple[Negotiated, ConnectAcceptItem, Token | None]:
    """``respond(cn, config, None, None)`` for a CN decoded from the wire (its values plain
    ints and octets, so equal CNs negotiate alike), from a bounded cache."""
    key = (_config_key(config), cn.item, cn.requirements, offered_versions(cn))
    try:
        hit = _RESPONSES.get(key)
    except TypeError:  # unhashable configuration
        return respond(cn, config, None, None)
    if hit is not None:
        return hit
    out = respond(cn, config, None, None)
    if len(_RESPONSES) >= _CACHE_MAX:
        _RESPONSES.clear()
    _RESPONSES[key] = out
    return out


def read_received_accept(ac: Accept, config: SessionConfig) -> Negotiated | None:
    """``read_accept(ac, config)`` for an AC decoded from the wire, from a bounded cache."""
    key = (_config_key(config), ac.item, ac.requirements, ac.tokens)
    try:
        hit = _ACCEPTS.get(key, _MISSING)
    except TypeError:
        return read_accept(ac, config)
    if hit is not _MISSING:
        return hit  # type: ignore[return-value]
    out = read_accept(ac, config)
    if len(_ACCEPTS) >= _CACHE_MAX:
        _ACCEPTS.clear()
    _ACCEPTS[key] = out
    return out


def overflow_accept(cn: Connect, config: SessionConfig) -> OverflowAccept:
    """The OA a responder sends for a CN with Data Overflow (X.225 7.2): version 2 and the
    TSDU maximum sizes it will use (the smaller non-zero of the CN's and its own; none when
    the CN proposes none)."""
    i2r, r2i = _responder_sizes(cn.item or _EMPTY_ITEM, config)
    return make(OverflowAccept, tsdu_max_size=(i2r, r2i) if i2r or r2i else None, version=2)
