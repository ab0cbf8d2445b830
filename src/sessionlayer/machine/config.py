"""What one end of a session connection proposes and accepts at connect time."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import TypeVar

from ..spdu.codes import FunctionalUnit, Token, TokenSetting, Version

__all__ = [
    "SessionConfig",
    "DEFAULT_FUNCTIONAL_UNITS",
    "ALL_FUNCTIONAL_UNITS",
    "SYMMETRIC_FUNCTIONAL_UNITS",
    "FU_TOKENS",
    "tokens_for",
]

#: Every functional unit of version 1, with half-duplex (the token-driven mode).  Symmetric
#: synchronize and data separation (version 2) are left out: symmetric synchronize replaces
#: minor synchronize when both are selected (see SYMMETRIC_FUNCTIONAL_UNITS).
ALL_FUNCTIONAL_UNITS = (
    FunctionalUnit.HALF_DUPLEX
    | FunctionalUnit.EXPEDITED
    | FunctionalUnit.MINOR_SYNC
    | FunctionalUnit.MAJOR_SYNC
    | FunctionalUnit.RESYNC
    | FunctionalUnit.ACTIVITY
    | FunctionalUnit.NEGOTIATED_RELEASE
    | FunctionalUnit.CAPABILITY_DATA
    | FunctionalUnit.EXCEPTIONS
    | FunctionalUnit.TYPED_DATA
)

#: Offered by default: duplex (data both ways, no data token) with expedited and typed data,
#: minor and major synchronize and resynchronize.  The minor-sync and major/activity tokens
#: start on the initiator's side.  Half-duplex, activities, capability data, exceptions and
#: negotiated release are in ALL_FUNCTIONAL_UNITS (with activity management selected, X.215
#: allows data only inside an activity).
DEFAULT_FUNCTIONAL_UNITS = (
    FunctionalUnit.DUPLEX
    | FunctionalUnit.EXPEDITED
    | FunctionalUnit.TYPED_DATA
    | FunctionalUnit.MINOR_SYNC
    | FunctionalUnit.MAJOR_SYNC
    | FunctionalUnit.RESYNC
)

#: The version-2 profile: duplex with expedited and typed data, symmetric synchronize (each
#: direction numbers its own sync points), data separation, major synchronize, resynchronize.
SYMMETRIC_FUNCTIONAL_UNITS = (
    FunctionalUnit.DUPLEX
    | FunctionalUnit.EXPEDITED
    | FunctionalUnit.TYPED_DATA
    | FunctionalUnit.SYMMETRIC_SYNC
    | FunctionalUnit.DATA_SEPARATION
    | FunctionalUnit.MAJOR_SYNC
    | FunctionalUnit.RESYNC
)

#: Which functional unit makes each token available (X.225 5.6).
FU_TOKENS: tuple[tuple[Token, FunctionalUnit], ...] = (
    (Token.DATA, FunctionalUnit.HALF_DUPLEX),
    (Token.MINOR_SYNC, FunctionalUnit.MINOR_SYNC),
    (Token.MAJOR_ACTIVITY, FunctionalUnit.MAJOR_SYNC | FunctionalUnit.ACTIVITY),
    (Token.RELEASE, FunctionalUnit.NEGOTIATED_RELEASE),
)


#: The unit bits that decide which tokens exist (the union of FU_TOKENS' needs).
_TOKEN_UNITS = 0
for _token, _needs in FU_TOKENS:
    _TOKEN_UNITS |= int(_needs)
#: tokens_for, by the token-deciding unit bits of ``units``: plain ints, built on first use
#: (``enum.Flag`` arithmetic costs ~0.6 us an operation, an int lookup ~0.03 us).
_TOKENS_BY_UNITS: dict[int, int] = {}
_TOKEN_FLAGS: dict[int, Token] = {}
_FLAG_CACHE_MAX = 256


def token_bits(units: int) -> int:
    """``int(tokens_for(units))`` for an int (or FunctionalUnit) mask: a table lookup."""
    key = int(units) & _TOKEN_UNITS
    out = _TOKENS_BY_UNITS.get(key)
    if out is None:
        out = 0
        for token, needs in FU_TOKENS:
            if key & needs:
                out |= token
        _TOKENS_BY_UNITS[key] = out = int(out)
    return out


F = TypeVar("F", Token, FunctionalUnit)


def _cached_flag(cache: dict[int, F], cls: type[F], bits: int) -> F:
    """``cls(bits)``, from ``cache``: the same member object without ``Flag.__call__``."""
    flag = cache.get(bits)
    if flag is None:
        flag = cls(bits)
        if len(cache) < _FLAG_CACHE_MAX:  # bounded: a peer chooses the bits
            cache[bits] = flag
    return flag


_UNIT_FLAGS: dict[int, FunctionalUnit] = {}


def token_flag(bits: int) -> Token:
    """``Token(bits)``, from a cache."""
    return _cached_flag(_TOKEN_FLAGS, Token, bits)


def unit_flag(bits: int) -> FunctionalUnit:
    """``FunctionalUnit(bits)``, from a cache."""
    return _cached_flag(_UNIT_FLAGS, FunctionalUnit, bits)


def tokens_for(units: FunctionalUnit) -> Token:
    """The tokens that exist on a connection with these functional units."""
    return token_flag(token_bits(units))


_EMPTY: Mapping[Token, TokenSetting] = MappingProxyType({})


def _frozen(mapping: Mapping[Token, TokenSetting]) -> Mapping[Token, TokenSetting]:
    if not mapping and type(mapping) in (dict, MappingProxyType):
        return _EMPTY  # read-only and empty: one serves every config
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class SessionConfig:
    """Connect-time parameters of one session protocol machine (X.225 7.1, 7.4)."""

    functional_units: FunctionalUnit = DEFAULT_FUNCTIONAL_UNITS
    """Session User Requirements (PI 20).  Initiator: what the CN proposes.  Responder: what
    it is willing to accept; the result is the intersection with the CN's proposal."""

    versions: Version = Version.V1 | Version.V2
    """Protocol versions offered (PI 22).  ``Version.V2`` alone puts exactly 2 on the wire,
    which libiec61850's server requires; the responder picks the highest common version."""

    token_setting: Mapping[Token, TokenSetting] = field(default_factory=dict, hash=False)
    """Initiator: initial position proposed for each token (PI 26); a token not named here
    starts on the initiator's side.  ``TokenSetting.CALLED_CHOICE`` leaves it to the
    responder.  Only tokens whose functional unit is proposed are sent."""

    called_choice: Mapping[Token, TokenSetting] = field(default_factory=dict, hash=False)
    """Responder: where each token left to "called SS-user's choice" goes when ``accept()``
    is called without ``tokens=`` (default: the initiator's side)."""

    tsdu_max_send: int = 0
    """Largest TSDU this end will send (PI 21); 0 = no limit, no segmenting."""

    tsdu_max_receive: int = 0
    """Largest TSDU this end will accept (PI 21); 0 = no limit.  Segmenting needs version 2."""

    extended_concatenation: bool = False
    """Protocol Options bit 1 (PI 19): this end can receive extended concatenated SPDUs."""

    initial_serial: int | None = None
    """Initial Serial Number (PI 23).  X.225 8.3.1 / 8.3.2: the CN carries it whenever minor
    synchronize, major synchronize, resynchronize (or symmetric synchronize) is proposed and
    activity management is not, and the AC whenever such a unit is selected without activity
    management; None then sends 0 ("0").  With activity management it is sent only when
    set.  The responder sends its own value if set, else echoes the CN's.  With symmetric
    synchronize it numbers the initiator-to-responder flow."""

    second_initial_serial: int | None = None
    """Second Initial Serial Number (PI 55, version 2): with symmetric synchronize, the first
    serial number of the responder-to-initiator flow.  Same rules as ``initial_serial``."""

    calling_ssel: bytes | None = None
    """Calling Session Selector (PI 51) in the CN, at most 16 octets."""

    called_ssel: bytes | None = None
    """Called Session Selector (PI 52) in the CN, at most 16 octets."""

    responding_ssel: bytes | None = None
    """Responding Session Selector (PI 52) in the AC; None echoes the CN's called selector."""

    max_user_data: int | None = None
    """Cap on connect/accept user data; None = the version's limit (512 in v1, 10240 in v2).
    The libiec61850 profile sets 232: with its own parameters (no Connection Identifier)
    that is what a CN with a one-octet length indicator holds (see ``one_octet_li``)."""

    one_octet_li: bool = False
    """The CN (initiator) and the AC (responder) keep a one-octet length indicator: a
    parameter field of at most 254 octets (X.225 8.2.5), for peers that read no other
    form (libiec61850's server drops the connection, its client rejects the AC).  The
    encoded SPDU is checked, every parameter counted (the Connection Identifier, PGI 1,
    too: the cap of ``max_user_data`` alone does not count them); ``connect()`` or the
    accept raises ParameterError, saying how much user data fits.  The kernel_duplex and
    libiec61850 profiles set it."""

    transport_expedited: bool = False
    """Take the transport expedited flow as given: EX SPDUs and PREPARE SPDUs go to
    ``expedited_to_send()``.  Over RFC 1006 leave it False: the expedited option is then
    negotiated in COTP CR/CC whenever the expedited data unit is proposed (RFC 1006 5.2
    carries ED TPDUs), and ``transport_connected(expedited=...)`` says whether it was agreed;
    without it EX travels on the normal flow and PREPARE is not sent (X.225 7.12, 7.26)."""

    exception_reports: bool = False
    """X.225 7.27: with the exceptions unit selected, answer a protocol error in data transfer
    (an SPDU the state table rejects while the peer holds the data token) with PT + ER and
    wait in STA20 for the peer's recovery, instead of aborting.  False: always AB."""

    max_ssdu_size: int = 1 << 20
    """Most user data this end reassembles from the segments of one DT/TD/... SSDU (X.225
    segmenting, with a TSDU maximum size agreed): 1 MiB.  Past it the machine aborts with
    AB, Transport Disconnect 0x11 (released, implementation restriction)."""

    max_connect_data: int = 10240 + 65536
    """Responder: most CN user data it collects, the CN's 10240 octets and the CONNECT DATA
    OVERFLOW SPDUs' together (X.225 7.3): 75,776 octets.  Past it the SPM refuses the
    connection with RF reason 0x86 (implementation restriction).  At least 10240."""

    abort_timeout: float = 10.0
    """X.225 timer TIM in seconds: how long to wait for the peer to release the transport
    after this end sent AB, DN or RF before releasing it itself."""

    def __hash__(self) -> int:
        # The generated hash would hash every field on each call, and every setup looks its
        # configuration up in the negotiation caches: kept once made (not a field, so that
        # equality, repr and replace() know nothing of it).
        known: int | None = self.__dict__.get("_hash")
        if known is None:
            known = hash(tuple(getattr(self, f.name) for f in fields(self)
                               if (f.compare if f.hash is None else f.hash)))  # fmt: skip
            object.__setattr__(self, "_hash", known)
        return known

    def __post_init__(self) -> None:
        object.__setattr__(self, "token_setting", _frozen(self.token_setting))
        object.__setattr__(self, "called_choice", _frozen(self.called_choice))
        versions = self.versions
        if type(versions) in (Version, int):  # int arithmetic: Flag's costs ~0.6 us an operation
            offered = int(versions) & 3
        else:
            offered = versions & (Version.V1 | Version.V2)
        if not offered:
            raise ValueError("offer at least one protocol version")
        for serial in (self.initial_serial, self.second_initial_serial):
            if serial is not None and not 0 <= serial <= 999999:
                raise ValueError("initial serial number must be 0..999999")
        if self.max_ssdu_size < 1:
            raise ValueError("max_ssdu_size must be positive")
        if self.max_connect_data < 10240:
            raise ValueError("max_connect_data is at least 10240 (a CN's own user data)")
        for size in (self.tsdu_max_send, self.tsdu_max_receive):
            if size and not 64 <= size <= 65535:
                raise ValueError("a TSDU maximum size is 0 or 64..65535")

    @classmethod
    def kernel_duplex(cls, **changes: object) -> SessionConfig:
        """The duplex-only kernel profile of the MMS stack (libiec61850 and its peers).

        Kernel + duplex, version 2 only, no tokens, no segmenting, user data capped at 232
        octets, the CN and the AC kept within a one-octet length indicator (libiec61850's
        server reads no other CN, its client takes no other AC).  232 is what libiec61850's
        own CN holds; the Connection Identifier that ``sessionlayer.connect()`` adds (20
        octets, its 16-octet common reference) leaves 212 with libiec61850's selectors.
        """
        base: dict[str, object] = {
            "functional_units": FunctionalUnit.DUPLEX,
            "versions": Version.V2,
            "max_user_data": 232,
            "one_octet_li": True,
        }
        base.update(changes)
        return cls(**base)  # type: ignore[arg-type]

    @classmethod
    def libiec61850_profile(cls, **changes: object) -> SessionConfig:
        """Alias of :meth:`kernel_duplex`, with libiec61850's default selectors (0x0001)."""
        base: dict[str, object] = {"calling_ssel": b"\x00\x01", "called_ssel": b"\x00\x01"}
        base.update(changes)
        return cls.kernel_duplex(**base)
