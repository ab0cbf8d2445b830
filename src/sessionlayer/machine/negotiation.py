"""Connect-time negotiation (X.225 5.7, 7.1, 7.4): CN and AC built and read, pure functions.

Versions: the responder picks the highest version both offer (no common one: RF 0x84).
Functional units: the responder's choice is the intersection of the CN's Session User
Requirements (default 0x0349 when PI 20 is absent) with what it supports, then trimmed so that
exactly one of half-duplex/duplex remains and each unit's prerequisite is present.  Tokens:
the CN's Token Setting Item places each available token on the initiator's side, the
responder's, or leaves it to the called user's choice; the AC's Token Item names the tokens
the responder took among those left to its choice.  TSDU maximum sizes: each direction uses
the smaller non-zero value of sender's and receiver's proposal (0 = no limit), version 2 only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import RefuseReason
from ..spdu.codes import DEFAULT_REQUIREMENTS, FunctionalUnit, Token, TokenSetting, Version
from ..spdu.types import Accept, Connect, ConnectAcceptItem, ConnectionId, OverflowAccept
from ._make import make
from .config import SessionConfig, tokens_for

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


def encode_token_setting(settings: Mapping[Token, TokenSetting], available: Token) -> int:
    """PI 26 value for the available tokens (tokens not named: INITIATOR, i.e. 00)."""
    value = 0
    for token, shift in TOKEN_SHIFT.items():
        if available & token:
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
    for token, shift in TOKEN_SHIFT.items():
        if available & token:
            out[token] = TokenSetting(((value or 0) >> shift) & 3)
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
    if not version2:
        units &= ~V2_UNITS
    if units & FU.HALF_DUPLEX and units & FU.DUPLEX:
        units &= ~FU.DUPLEX
    if not units & FU.HALF_DUPLEX:
        units &= ~FU.EXCEPTIONS
    if not units & FU.ACTIVITY:
        units &= ~FU.CAPABILITY_DATA
    if units & FU.SYMMETRIC_SYNC:
        units &= ~FU.MINOR_SYNC
    else:
        units &= ~FU.DATA_SEPARATION
    return units


def build_connect(
    config: SessionConfig, user_data: bytes | None, connection_id: ConnectionId | None
) -> Connect:
    """The CN an initiator sends for ``config``; user data beyond 10240 octets is not in it
    (Data Overflow = 1 says that CDOs will carry the rest, X.225 7.1)."""
    v2 = bool(config.versions & Version.V2)
    units = config.functional_units if v2 else config.functional_units & ~V2_UNITS
    available = tokens_for(units)
    sizes = (config.tsdu_max_send, config.tsdu_max_receive)
    ss = bool(units & FU.SYMMETRIC_SYNC)
    item = ConnectAcceptItem(
        protocol_options=1 if config.extended_concatenation else 0,
        tsdu_max_size=sizes if v2 and any(sizes) else None,
        version=int(config.versions),
        initial_serial=initial_serial(units, config.initial_serial),
        token_setting=encode_token_setting(config.token_setting, available) if available else None,
        second_initial_serial=config.second_initial_serial if ss else None,
    )
    overflow = user_data is not None and len(user_data) > CN_DATA_MAX
    return make(
        Connect,
        connection_id=connection_id,
        item=item,
        requirements=int(units),
        calling_ssel=config.calling_ssel,
        called_ssel=config.called_ssel,
        data_overflow=1 if overflow else None,
        user_data=user_data[:CN_DATA_MAX] if user_data is not None else None,
    )


def initial_serial(units: FunctionalUnit, configured: int | None) -> int | None:
    """The Initial Serial Number (PI 23) a CN or AC carries for these units, or None.

    X.225 8.3.1 / 8.3.2: it is present when minor synchronize, major synchronize or
    resynchronize is proposed (selected, in the AC) and activity management is not; the
    default value is 0 (sent as "0").  With activity management only a configured value
    is sent.
    """
    if not units & SYNC_UNITS:
        return None
    if configured is None and units & ISN_UNITS and not units & FU.ACTIVITY:
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
    if not common or (cn.data_overflow and not common & 2):
        return RefuseReason.VERSION_NOT_SUPPORTED  # Data Overflow needs version 2 (7.1)
    units = _responder_units(cn, config)
    if not units & (FU.HALF_DUPLEX | FU.DUPLEX):
        return RefuseReason.IMPLEMENTATION_RESTRICTION
    setting = cn.item.token_setting if cn.item is not None else None
    for value in decode_token_setting(setting, tokens_for(units)).values():
        if value == TokenSetting.RESERVED:
            return RefuseReason.SPM_NO_REASON
    return None


def _responder_units(cn: Connect, config: SessionConfig) -> FunctionalUnit:
    proposed = FU(cn.requirements if cn.requirements is not None else DEFAULT_REQUIREMENTS)
    v2 = bool(offered_versions(cn) & int(config.versions) & 2)
    return trim_units(proposed & config.functional_units, v2)


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
    selected = _responder_units(cn, config)
    if units is not None:
        narrowed = selected & units | (selected & (FU.HALF_DUPLEX | FU.DUPLEX))
        selected = trim_units(narrowed, version == 2)
    available = tokens_for(selected)
    item = cn.item or ConnectAcceptItem()
    settings = decode_token_setting(item.token_setting, available)
    owned, taken = _responder_tokens(settings, config, choice)
    i2r, r2i = item.tsdu_max_size or (0, 0)
    if version == 2:
        i2r, r2i = _min0(i2r, config.tsdu_max_receive), _min0(r2i, config.tsdu_max_send)
    else:
        i2r = r2i = 0
    isn, isn2 = _initial_serials(item, config, selected)
    result = Negotiated(
        functional_units=selected,
        version=version,
        tsdu_send=r2i,
        tsdu_receive=i2r,
        initial_serial=isn,
        owned=owned,
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
    return result, ac_item, taken


def _initial_serials(
    item: ConnectAcceptItem, config: SessionConfig, selected: FunctionalUnit
) -> tuple[int | None, int | None]:
    """The responder's Initial Serial Number and (symmetric synchronize) Second one."""
    if not selected & SYNC_UNITS:
        return None, None
    isn = config.initial_serial if config.initial_serial is not None else item.initial_serial
    isn = initial_serial(selected, isn)
    if not selected & FU.SYMMETRIC_SYNC:
        return isn, None
    isn2 = config.second_initial_serial
    return isn, isn2 if isn2 is not None else item.second_initial_serial


def _responder_tokens(
    settings: dict[Token, TokenSetting], config: SessionConfig, choice: Token | None
) -> tuple[Token, Token | None]:
    owned = Token(0)
    taken = Token(0)
    has_choice = False
    for token, value in settings.items():
        if value == TokenSetting.RESPONDER:
            owned |= token
        elif value == TokenSetting.CALLED_CHOICE:
            has_choice = True
            if choice is not None:
                mine = bool(choice & token)
            else:
                mine = config.called_choice.get(token) == TokenSetting.RESPONDER
            if mine:
                owned |= token
                taken |= token
    return owned, (taken if has_choice and taken else None)


def read_accept(ac: Accept, config: SessionConfig) -> Negotiated | None:
    """Negotiate as initiator from the AC; None when the AC is unacceptable."""
    item = ac.item or ConnectAcceptItem()
    offered = int(config.versions)
    if item.version is None:
        version = 1 if offered & 1 else 2
    elif item.version in (1, 2) and item.version & offered:
        version = item.version
    else:
        return None
    answered = FU(ac.requirements if ac.requirements is not None else DEFAULT_REQUIREMENTS)
    units = trim_units(answered & config.functional_units, version == 2)
    if not units & (FU.HALF_DUPLEX | FU.DUPLEX):
        return None
    available = tokens_for(units)
    owned = Token(0)
    for token in TOKEN_SHIFT:
        if not available & token:
            continue
        setting = config.token_setting.get(token, TokenSetting.INITIATOR)
        if setting == TokenSetting.INITIATOR or (
            setting == TokenSetting.CALLED_CHOICE and not (ac.tokens or 0) & token
        ):
            owned |= token
    i2r, r2i = item.tsdu_max_size or (0, 0)
    isn = item.initial_serial if item.initial_serial is not None else config.initial_serial
    isn2 = item.second_initial_serial
    if isn2 is None:
        isn2 = config.second_initial_serial
    return Negotiated(
        functional_units=units,
        version=version,
        tsdu_send=i2r if version == 2 else 0,
        tsdu_receive=r2i if version == 2 else 0,
        initial_serial=isn if units & SYNC_UNITS else None,
        owned=owned,
        peer_extended=bool((item.protocol_options or 0) & 1),
        second_initial_serial=isn2 if units & FU.SYMMETRIC_SYNC else None,
    )


def overflow_accept(cn: Connect, config: SessionConfig) -> OverflowAccept:
    """The OA a responder sends for a CN with Data Overflow (X.225 7.2): version 2 and the
    TSDU maximum sizes it will use (the smaller non-zero of the CN's and its own)."""
    item = cn.item or ConnectAcceptItem()
    i2r, r2i = item.tsdu_max_size or (0, 0)
    i2r, r2i = _min0(i2r, config.tsdu_max_receive), _min0(r2i, config.tsdu_max_send)
    return make(OverflowAccept, tsdu_max_size=(i2r, r2i) if i2r or r2i else None, version=2)
