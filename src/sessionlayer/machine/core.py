"""The machine's variables and the one place that walks the state table.

``_Core`` holds every variable X.225 names (4.5, 5.8: V(A), V(M), V(R), Vsc, Vact, the
tokens, the negotiated units and sizes; with symmetric synchronize V(As), V(Ms), V(Rs) for the
sending flow, kept in V(A), V(M), V(R), and V(Ar), V(Mr), V(Rr) for the receiving flow; V(Ado)
and V(Adi) for data separation) and three loops: ``_lookup``/``_apply`` for user requests,
``_receive_spdu`` for SPDUs, ``_protocol_error`` (or ``_exception_report``) for everything
the table rejects.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import (
    AbortReason,
    EncodeError,
    FunctionalUnitError,
    ParameterError,
    StateError,
    TokenError,
)
from ..spdu.codec import encode, encode_tsdu
from ..spdu.codes import Enclosure, FunctionalUnit, ResyncType, Token, TokenSetting
from ..spdu.segment import SegmentAssembler, segment
from ..spdu.types import (
    SPDU,
    Abort,
    Connect,
    ConnectionId,
    DataTransfer,
    ExceptionReport,
    Finish,
    GiveTokens,
    PleaseTokens,
    TypedData,
)
from ._make import make
from .config import SessionConfig, token_bits, token_flag
from .events import Event, ProviderAbortIndication, ProviderExceptionReportIndication
from .negotiation import Negotiated
from .rare import Rarely
from .table import ER_INPUTS, ER_STATES, PREDICATE_KINDS, SAME, TABLE, Row

__all__ = ["Role", "Ctx", "Resync", "_Core", "PROTOCOL_ERROR", "RESTRICTION"]

Role = Literal["initiator", "responder"]
PROTOCOL_ERROR = AbortReason.TRANSPORT_RELEASED | AbortReason.PROTOCOL_ERROR
#: AB for what this implementation will not hold (an SSDU or connect data over its limit).
RESTRICTION = AbortReason.TRANSPORT_RELEASED | AbortReason.IMPLEMENTATION_RESTRICTION
#: The SPDUs that carry an Enclosure Item on every TSDU once segmenting is agreed.
SEGMENTED_KINDS = (DataTransfer, TypedData)
WHOLE_SSDU = int(Enclosure.BEGIN | Enclosure.END)
_NO_UNITS = FunctionalUnit(0)
_NO_TOKENS = Token(0)
_SYMMETRIC_SYNC = int(FunctionalUnit.SYMMETRIC_SYNC)
_ACTIVITY = int(FunctionalUnit.ACTIVITY)
_DATA_TOKEN = int(Token.DATA)
_ERRORS: dict[str, type[Exception]] = {
    "fu": FunctionalUnitError,
    "token": TokenError,
    "state": StateError,
    "param": ParameterError,
}


@dataclass
class Ctx:
    """One input on its way through the table: the SPDU or the request's arguments, and the
    TSDUs the request built (queued by the ``send`` action, only once every check passed)."""

    spdu: Any = None
    args: dict[str, Any] = field(default_factory=dict)
    out: list[bytes] = field(default_factory=list)
    exp: list[bytes] = field(default_factory=list)


@dataclass(frozen=True)
class Resync:
    """A resynchronization under way: who asked, its type, serial number, token setting.

    Seen from this end: ``type``/``serial`` concern its sending flow (the only flow without
    symmetric synchronize), ``second_type``/``second_serial`` its receiving flow.
    """

    mine: bool
    type: ResyncType
    serial: int
    tokens: dict[Token, TokenSetting]
    second_type: ResyncType | None = None
    second_serial: int | None = None


#: Each row's predicates as (name, negated, method name), by the row's identity (the entry
#: holds the row, so the id stays its own): the table walk builds no strings.
_CHECKS: dict[int, tuple[Row, tuple[tuple[str, bool, str], ...]]] = {}


def _checks(row: Row) -> tuple[Row, tuple[tuple[str, bool, str], ...]]:
    if len(_CHECKS) >= 4096:  # the table has ~500 rows; more means rows made on the fly
        _CHECKS.clear()
    entry = (row, tuple((n, n.startswith("!"), "_p_" + n.lstrip("!")) for n in row.when))
    _CHECKS[id(row)] = entry
    return entry


class _Rare:
    """The machine's fields few sessions use (an idle server session has none)."""

    __slots__ = (
        "activity_id", "adi", "ado", "assembler", "collision", "crossed", "end_pending",
        "held_ex", "kept_fn", "overflow_in", "overflow_rest", "overflow_size", "resync",
        "second_initial_serial", "tsdu_recv", "tsdu_send", "unconfirmed", "vact",
    )  # fmt: skip

    def __init__(self) -> None:
        self.second_initial_serial: int | None = None
        self.ado: int = -1
        self.adi: int = -1
        self.vact: bool = False
        self.activity_id: bytes | None = None
        self.resync: Resync | None = None
        self.end_pending: bool = False
        self.collision: bool = False
        self.kept_fn: Finish | None = None
        self.assembler: SegmentAssembler | None = None
        self.overflow_rest: bytes = b""
        self.overflow_in: list[bytes] | None = None
        self.overflow_size: int = 0
        self.tsdu_send: int = 0
        self.tsdu_recv: int = 0
        self.crossed: tuple[int, int] | None = None
        self.unconfirmed: tuple[int, ...] = ()
        self.held_ex: tuple[bytes, ...] = ()


class _Core:
    """State, variables and the table walk shared by the machine's parts."""

    # Slots: a server holds one machine per live session, and a dict per machine
    # would be the largest part of an idle session's memory.
    __slots__ = (
        "_available_tokens",
        "_cn_bytes",
        "_ended",
        "_fu",
        "_initial_serial",
        "_now",
        "_owned",
        "_peer_cn",
        "_peer_connection_id",
        "_peer_extended",
        "_peer_user_data",
        "_pending_events",
        "_pending_exp",
        "_pending_out",
        "_plain_act",
        "_plain_units",
        "_state",
        "_tc_up",
        "_tdis",
        "_tex",
        "_tim",
        "_va",
        "_var",
        "_version",
        "_vm",
        "_vmr",
        "_vr",
        "_vrr",
        "_vsc",
        "config",
        "rare",
        "role",
    )

    def __init__(self, role: Role, config: SessionConfig | None = None) -> None:
        if role not in ("initiator", "responder"):
            raise ValueError(f"role must be 'initiator' or 'responder', not {role!r}")
        self.role: Role = role
        #: The fields few sessions use (activities, resynchronization, data separation,
        #: connect data overflow, TSDU maximum sizes, collisions): see ``machine/rare.py``.
        self.rare: _Rare | None = None
        self.config = config if config is not None else SessionConfig()
        self._state = "STA01"
        self._ended = False
        self._tc_up = False
        # The output queues (see the _events, _out and _out_exp properties): lists made on
        # first use and handed over whole by the drains, so an idle machine holds none.
        self._pending_events: list[Event] | None = None
        self._pending_out: list[bytes] | None = None
        self._pending_exp: list[bytes] | None = None
        self._cn_bytes = b""  # (initiator) the CN, until the transport is up to send it
        self._tdis = False
        self._tex = self.config.transport_expedited  # see transport_connected
        self._now = 0.0
        self._tim: float | None = None
        # Negotiated at connect.
        self._fu = _NO_UNITS
        self._available_tokens = _NO_TOKENS  # tokens_for(self._fu), kept in step with it
        self._plain_units = False  # see SessionMachine.plain_data
        self._plain_act = False
        self._version = 2 if int(self.config.versions) & 2 else 1
        self._peer_extended = False
        self._initial_serial: int | None = None
        # Tokens and synchronization point variables (X.225 5.8, Table A-4).
        self._owned = _NO_TOKENS
        self._va = 0  # V(A), or V(As) with symmetric synchronize
        self._vm = 0  # V(M) / V(Ms)
        self._vr = 0  # V(R) / V(Rs)
        self._var = 0  # V(Ar): symmetric synchronize, receiving flow
        self._vmr = 0  # V(Mr)
        self._vrr = 0  # V(Rr)
        self._vsc = False
        # Connection establishment and release.
        self._peer_cn: Connect | None = None
        self._peer_connection_id: ConnectionId | None = None
        self._peer_user_data: bytes | None = None
        # Connect data overflow (7.2, 7.3).

    def more(self) -> _Rare:
        """The machine's rare part, made now if it has none."""
        rare = self.rare
        if rare is None:
            rare = self.rare = _Rare()
        return rare

    _second_initial_serial: Rarely[int | None] = Rarely(None)
    _ado: Rarely[int] = Rarely(-1)
    _adi: Rarely[int] = Rarely(-1)
    _vact: Rarely[bool] = Rarely(False)
    _activity_id: Rarely[bytes | None] = Rarely(None)
    _resync: Rarely[Resync | None] = Rarely(None)
    _end_pending: Rarely[bool] = Rarely(False)
    _collision: Rarely[bool] = Rarely(False)
    _kept_fn: Rarely[Finish | None] = Rarely(None)
    _assembler: Rarely[SegmentAssembler | None] = Rarely(None)
    _overflow_rest: Rarely[bytes] = Rarely(b"")
    _overflow_in: Rarely[list[bytes] | None] = Rarely(None)
    _overflow_size: Rarely[int] = Rarely(0)
    _tsdu_send: Rarely[int] = Rarely(0)
    _tsdu_recv: Rarely[int] = Rarely(0)
    #: (V(R), V(Rr)) before the MAA or AEA we sent last: a resync restart that crossed it
    #: may go back to them (see _p_rs_ok); an RS, AI or AD that crossed our AEA takes the
    #: activity up again (see _p_aea_crossed).
    _crossed: Rarely[tuple[int, int] | None] = Rarely(None)
    #: The serial numbers of our minor sync points that asked for a confirmation and have
    #: none yet, oldest first: those the peer's MAP or AE settles are told of
    #: (MinorSyncSuperseded, see _Sync._superseded).
    _unconfirmed: Rarely[tuple[int, ...]] = Rarely(())
    #: The user data of the EXPEDITED DATA SPDUs that came after the peer's PREPARE (MAA)
    #: in STA15A, indicated after the MAA or AEA it heralded (X.225 7.26, [10] and [6]).
    _held_ex: Rarely[tuple[bytes, ...]] = Rarely(())

    # ------------------------------------------------------------ output queues

    @property
    def _events(self) -> list[Event]:
        """Indications and confirms not read yet (SessionMachine.events drains them)."""
        if self._pending_events is None:
            self._pending_events = []
        return self._pending_events

    @property
    def _out(self) -> list[bytes]:
        """TSDUs for the transport's normal flow (SessionMachine.data_to_send)."""
        if self._pending_out is None:
            self._pending_out = []
        return self._pending_out

    @property
    def _out_exp(self) -> list[bytes]:
        """TSDUs for the transport's expedited flow (SessionMachine.expedited_to_send)."""
        if self._pending_exp is None:
            self._pending_exp = []
        return self._pending_exp

    # ------------------------------------------------------------ derived values

    @property
    def _available(self) -> Token:
        return self._available_tokens

    def _owns(self, token: Token) -> bool:
        """This end may act as holder of ``token``: it is not available, or it is ours."""
        return not self._available & token or bool(self._owned & token)

    def _peer_owns(self, token: Token) -> bool:
        return not self._available & token or not self._owned & token

    @property
    def _ss(self) -> bool:
        """Symmetric synchronize is selected: each direction numbers its own sync points."""
        return bool(int(self._fu) & _SYMMETRIC_SYNC)

    # ------------------------------------------------------------ table walk

    def _failing(self, row: Row, ctx: Ctx) -> str | None:
        """The first predicate of ``row`` that does not hold, or None."""
        known = _CHECKS.get(id(row))
        if known is None or known[0] is not row:
            known = _checks(row)
        for name, negate, method in known[1]:
            if bool(getattr(self, method)(ctx)) == negate:
                return name
        return None

    def _lookup(self, inp: str, ctx: Ctx) -> Row:
        """The row a user request takes, or raise the LocalError its failure means."""
        rows = () if self._ended else TABLE.get((self._state, inp), ())
        if not rows:
            where = "after the session ended" if self._ended else f"in state {self._state}"
            raise StateError(f"{inp} is not allowed {where}")
        failures: list[str] = []
        for row in rows:
            failed = self._failing(row, ctx)
            if failed is None:
                return row
            failures.append(failed)
        # The first failure that is not "unit not selected" says most (rows for other units).
        kinds = [PREDICATE_KINDS.get(f.lstrip("!"), "state") for f in failures]
        index = next((i for i, kind in enumerate(kinds) if kind != "fu"), 0)
        first, kind = failures[index], kinds[index]
        error = _ERRORS.get(kind, StateError)
        raise error(f"{inp} refused in state {self._state}: condition {first!r} does not hold")

    def _apply(self, row: Row, ctx: Ctx) -> None:
        before = self._state
        for action in row.do:
            getattr(self, "_a_" + action)(ctx)
        if row.next != SAME:
            self._state = row.next
        if self._state == "STA01" and (before != "STA01" or row.input == "TDISind"):
            self._finish()

    def _finish(self) -> None:
        self._ended = True
        self._tim = None
        self._resync = None
        self._held_ex = ()

    def _receive_spdu(self, inp: str, spdu: SPDU) -> None:
        ctx = Ctx(spdu=spdu)
        for row in TABLE.get((self._state, inp), ()):
            if self._failing(row, ctx) is None:
                self._apply(row, ctx)
                return
        reflect = encode(spdu, version=self._version)[:9]
        if self._may_report(inp):
            self._exception_report(reflect)
            return
        self._protocol_error(f"{inp} SPDU is not valid in state {self._state}", reflect)

    def _may_report(self, inp: str) -> bool:
        """X.225 7.27: answer this protocol error with ER rather than AB?"""
        units = FunctionalUnit.EXCEPTIONS | FunctionalUnit.HALF_DUPLEX
        return (
            self.config.exception_reports
            and self._fu & units == units
            and self._state in ER_STATES
            and inp in ER_INPUTS
            and not self._owned & Token.DATA
        )

    def _exception_report(self, reflect: bytes) -> None:
        """PT + ER (Reflect Parameter Values), S-P-EXCEPTION-REPORT, wait for recovery."""
        er = make(ExceptionReport, reflect=reflect)
        self._out.append(encode_tsdu(make(PleaseTokens), er, version=self._version))
        self._events.append(ProviderExceptionReportIndication(reflect, local=True))
        self._state = "STA20"
        self._assembler = None

    def _protocol_error(
        self, message: str, reflect: bytes = b"", reason: AbortReason = PROTOCOL_ERROR
    ) -> None:
        """The peer broke the protocol: AB (0x05 + Reflect Parameter), S-P-ABORT, STA16.

        ``reason`` is the Transport Disconnect value (RESTRICTION: over a local limit).
        """
        if self._ended or self._state == "STA16":
            return
        abort = make(Abort, transport_disconnect=int(reason), reflect=reflect[:9] or None)
        self._out.append(encode_tsdu(abort, version=self._version))
        self._events.append(ProviderAbortIndication(reason, message, local=True))
        self._state = "STA16"
        self._resync = None
        self._held_ex = ()
        self._start_tim()

    def _start_tim(self) -> None:
        self._tim = self._now + self.config.abort_timeout

    # ------------------------------------------------------------ building TSDUs

    def _encode(self, *spdus: SPDU) -> bytes:
        try:
            return encode_tsdu(*spdus, version=self._version)
        except EncodeError as exc:
            raise ParameterError(str(exc)) from None

    def _tsdus(self, spdu: SPDU, leader: SPDU | None = None) -> list[bytes]:
        """``spdu`` (after ``leader``, GT or PT) as TSDUs, segmented when a size was agreed.

        Once a TSDU maximum size is agreed for this direction, every DT and TD carries the
        Enclosure Item, 3 (the whole SSDU) when it fits one TSDU (X.225 7.11, 7.13 with
        segmenting: the receiver reassembles by it and rejects a DT without it).
        """
        head = (leader,) if leader is not None else ()
        limit = self._tsdu_send
        if limit and isinstance(spdu, SEGMENTED_KINDS) and spdu.enclosure is None:
            spdu = dataclasses.replace(spdu, enclosure=WHOLE_SSDU)
        whole = self._encode(*head, spdu)
        if not limit or len(whole) <= limit or not hasattr(spdu, "enclosure"):
            return [whole]
        room = limit - (len(self._encode(*head)) if head else 0)
        try:
            pieces = segment(spdu, room, version=self._version)
        except EncodeError as exc:
            raise ParameterError(str(exc)) from None
        return [self._encode(*head, piece) for piece in pieces]

    def _gt(self, spdu: SPDU) -> list[bytes]:
        return self._tsdus(spdu, make(GiveTokens))

    def _pt(self, spdu: SPDU) -> list[bytes]:
        return self._tsdus(spdu, make(PleaseTokens))

    def _adopt(self, result: Negotiated) -> None:
        """Take on the outcome of connect negotiation (Table A-4, SCONrsp / AC)."""
        units = result.functional_units
        self._fu = units
        bits = token_bits(units)
        available = token_flag(bits)
        self._available_tokens = available
        self._version = result.version
        send, receive = result.tsdu_send, result.tsdu_receive
        self._tsdu_send, self._tsdu_recv = send, receive
        self._peer_extended = result.peer_extended
        self._initial_serial = result.initial_serial
        self._owned = token_flag(int(result.owned) & bits)
        self._second_initial_serial = result.second_initial_serial
        first = result.initial_serial or 0
        second = result.second_initial_serial or 0
        ss = bool(int(units) & _SYMMETRIC_SYNC)
        if ss and self.role == "responder":
            first, second = second, first  # PI 23 numbers the initiator's sending flow
        self._va = self._vm = first
        self._var = self._vmr = second if ss else first
        self._vr = self._vrr = 0
        self._vsc = False
        # S-DATA takes the plain STA713 rows (7.11) when no data token exists, nothing is
        # segmented and no activity rule applies: see SessionMachine.plain_data.
        plain = not bits & _DATA_TOKEN and not send and not receive
        self._plain_units = plain and not int(units) & _ACTIVITY
        # With activity management S-DATA is plain too while an activity is in progress
        # (the STA713 rows' only other condition, act_ok, is then Vact).
        self._plain_act = plain and bool(int(units) & _ACTIVITY)
