"""``SessionMachine``: the transport side, the outputs, timers and read-only state."""

from __future__ import annotations

from ..errors import DecodeError
from ..spdu.codec import decode_tsdu, encode
from ..spdu.codes import Enclosure, FunctionalUnit, Token
from ..spdu.segment import SegmentAssembler
from ..spdu.types import (
    SPDU,
    Abort,
    ConnectDataOverflow,
    ConnectionId,
    DataTransfer,
    GiveTokens,
    MajorSyncAck,
    MinorSyncPoint,
    PleaseTokens,
    TypedData,
)
from .config import SessionConfig
from .core import Ctx, Role
from .events import Event
from .requests import _Requests
from .table import STATES, TABLE

__all__ = ["SessionMachine", "DATA_PREFIX"]

#: GIVE TOKENS and DATA TRANSFER, both with empty parameter fields: what precedes the user
#: data of every S-DATA when :attr:`SessionMachine.plain_data` holds (measured on the wire
#: of every libiec61850 peer too).
DATA_PREFIX = b"\x01\x00\x01\x00"
_BEGIN = int(Enclosure.BEGIN)


class SessionMachine(_Requests):
    """One end of one session connection, as an X.225 session protocol machine.

    Feed it user requests (methods such as :meth:`send_data`), TSDUs
    (:meth:`receive_tsdu`), transport events and the time; read back events
    (:meth:`next_event`) and TSDUs (:meth:`data_to_send`).  It never performs I/O.
    """

    __slots__ = ()

    def __init__(self, role: Role, config: SessionConfig | None = None) -> None:
        super().__init__(role, config)

    # ------------------------------------------------------------ transport side

    def transport_connected(self, *, expedited: bool = False) -> None:
        """T-CONNECT confirm (initiator) or indication (responder).

        ``expedited``: the transport expedited flow was agreed (RFC 1006: the expedited
        option in CR/CC); EX and PR SPDUs then go to :meth:`expedited_to_send` (X.225 7.12,
        7.26), else EX travels on the normal flow and PR is not sent."""
        self._tc_up = True
        self._tex = expedited or self.config.transport_expedited
        if self._state == "STA01B":
            self._transport_event("TCONcnf")
        elif self._state == "STA01" and self.role == "responder" and not self._ended:
            self._transport_event("TCONind")

    def transport_disconnected(self) -> None:
        """T-DISCONNECT indication: the transport connection is gone."""
        self._tc_up = False
        if not self._ended:
            self._transport_event("TDISind")
        self._tim = None

    def _transport_event(self, inp: str) -> None:
        ctx = Ctx()
        for row in TABLE.get((self._state, inp), ()):
            if self._failing(row, ctx) is None:
                self._apply(row, ctx)
                return
        if inp == "TDISind":
            self._state = "STA01"
            self._finish()

    def receive_tsdu(self, data: bytes, *, now: float) -> None:
        """T-DATA indication: one TSDU from the peer.  Never raises for bad input.

        ``now`` is the caller's clock: a protocol error arms TIM at ``now + abort_timeout``.
        """
        self._now = now
        if self._ended:
            return
        self._tc_up = True
        try:
            spdus = decode_tsdu(
                data, version=self._version, extended=self.config.extended_concatenation
            )
        except DecodeError as exc:
            self._protocol_error(str(exc), exc.reflect or bytes(data[:9]), reason=exc.reason)
            return
        for spdu in spdus:
            aborting = self._state == "STA16"
            self._receive_one(spdu)
            if self._ended or (self._state == "STA16" and not aborting):
                return  # the rest of a TSDU that caused an abort is not looked at

    def receive_expedited(self, data: bytes, *, now: float) -> None:
        """T-EXPEDITED-DATA indication: PR or EX on the transport expedited flow."""
        self.receive_tsdu(data, now=now)

    def _receive_one(self, spdu: SPDU) -> None:
        # (A later segment of a GT or PT states no tokens: the first one does, and the whole
        # SSDU is looked at once reassembled.)
        if isinstance(spdu, GiveTokens | PleaseTokens) and not spdu.tokens and (
            spdu.enclosure is None
        ):
            if spdu.user_data is None:
                return  # an empty GT/PT only carries the category-2 SPDU after it
            # The user data would belong to an S-TOKEN-GIVE/-PLEASE of no tokens, which
            # X.215 has not: refused out loud rather than dropped.
            self._protocol_error(
                f"{spdu.kind} with user data but no Token Item",
                encode(spdu, version=self._version)[:9],
            )
            return
        # CDO's Enclosure Item belongs to connect data overflow (7.3), not to segmenting.
        if getattr(spdu, "enclosure", None) is not None and not isinstance(
            spdu, ConnectDataOverflow
        ):
            whole = self._reassemble(spdu)
            if whole is not None:
                self._receive_one(whole)  # (its enclosure is None now)
            return
        self._receive_spdu(self._input_name(spdu), spdu)

    def _reassemble(self, spdu: SPDU) -> SPDU | None:
        """Feed a segment to the assembler: the whole SPDU, or None (more to come, or the
        segment was a protocol error and the machine is aborting)."""
        if isinstance(spdu, DataTransfer | TypedData) and not self._tsdu_recv:
            # No TSDU maximum size was agreed toward us (7.1, 7.4): no segmenting, so no
            # Enclosure Item on DT or TD.
            self._protocol_error(
                f"{spdu.kind} with an Enclosure Item, but no segmenting was agreed",
                encode(spdu, version=self._version)[:9],
            )
            return None
        if self._assembler is None or (
            isinstance(spdu, Abort) and (spdu.enclosure or 0) & _BEGIN
        ):
            # (An ABORT may cut an SSDU short: its first segment drops what was under way.)
            self._assembler = SegmentAssembler(self.config.max_ssdu_size)
        try:
            return self._assembler.feed(spdu)
        except DecodeError as exc:
            self._protocol_error(str(exc), reason=exc.reason)
            return None

    def _input_name(self, spdu: SPDU) -> str:
        """The table input an SPDU is.  SI 42 is AEA while an activity end is awaited; a MIP
        with Sync Type Item bit 2 is MIP-d (data separation)."""
        if isinstance(spdu, MajorSyncAck) and (
            self._state == "STA04B" or (self._end_pending and self._state == "STA15A")
        ):
            return "AEA"
        if isinstance(spdu, MinorSyncPoint) and (spdu.sync_type or 0) & 2:
            return "MIP-d"
        return spdu.kind

    # ------------------------------------------------------------ time

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` should next be called (the caller's clock), or None."""
        return self._tim

    def handle_timer(self, now: float) -> None:
        """Tell the machine the time; an expired TIM releases the transport."""
        self._now = now
        if self._tim is not None and now >= self._tim:
            self._tim = None
            self._transport_event("TIM")

    # ------------------------------------------------------------ outputs

    def next_event(self) -> Event | None:
        """The oldest indication or confirm not yet read, or None."""
        return self._pending_events.pop(0) if self._pending_events else None

    def events(self) -> list[Event]:
        """Every pending event, oldest first (drains the queue)."""
        out, self._pending_events = self._pending_events, None
        return out if out is not None else []

    def data_to_send(self) -> list[bytes]:
        """TSDUs for the transport's normal flow, in order (drains the queue)."""
        out, self._pending_out = self._pending_out, None
        return out if out is not None else []

    def expedited_to_send(self) -> list[bytes]:
        """TSDUs for the transport expedited flow (PR, and EX when configured)."""
        out, self._pending_exp = self._pending_exp, None
        return out if out is not None else []

    @property
    def wants_transport_disconnect(self) -> bool:
        """True once the machine asks for T-DISCONNECT (send ``data_to_send()`` first)."""
        return self._tdis

    # ------------------------------------------------------------ read-only state

    @property
    def state(self) -> str:
        """The X.225 Annex A state, e.g. ``"STA713"``."""
        return self._state

    @property
    def plain_data(self) -> bool:
        """True when S-DATA, both ways, is just GIVE TOKENS + DATA TRANSFER with empty
        parameter fields and changes nothing in the machine.

        That holds in STA713 (data transfer) when no data token exists (duplex), no TSDU
        maximum size was agreed and either activity management is not selected or an
        activity is in progress: the table's rows for an S-DATA request and for a received
        DT then only send or indicate (X.225 7.11).
        A binding may then write ``DATA_PREFIX + data`` itself and deliver a received TSDU
        that starts with ``DATA_PREFIX`` as data, without calling the machine: the fast path
        of ``sessionlayer.aio``.  Anything else must go through the machine.
        """
        return self._state == "STA713" and (self._plain_units or (self._plain_act and self._vact))

    @property
    def may_send_data(self) -> bool:
        """An S-DATA request is allowed now (X.225 7.11): STA713, the data token ours where
        it exists, and an activity in progress where activity management is selected."""
        return (
            self._state == "STA713" and not (self._available & ~self._owned & Token.DATA)
            and (not self._fu & FunctionalUnit.ACTIVITY or self._vact)
        )  # fmt: skip

    @property
    def control_pending(self) -> bool:
        """S-CONTROL-GIVE was requested and the peer's GIVE TOKENS ACK has not come (STA18)."""
        return self._state == "STA18"

    @property
    def state_name(self) -> str:
        return STATES[self._state]

    @property
    def is_open(self) -> bool:
        """The session connection is established and not yet being torn down."""
        return self._state not in (
            "STA01", "STA01B", "STA01C", "STA01D", "STA02A", "STA02B", "STA08", "STA16",
        )  # fmt: skip

    @property
    def is_closed(self) -> bool:
        """The session connection is over (released, refused or aborted)."""
        return self._ended

    @property
    def is_ending(self) -> bool:
        """Over, or aborting: an AB went out (STA16) and no request is taken any more."""
        return self._ended or self._state == "STA16"

    @property
    def tokens_owned(self) -> Token:
        return self._owned

    @property
    def tokens_available(self) -> Token:
        return self._available

    @property
    def functional_units(self) -> FunctionalUnit:
        return self._fu

    @property
    def version(self) -> int:
        return self._version

    @property
    def tsdu_max_send(self) -> int:
        return self._tsdu_send

    @property
    def tsdu_max_receive(self) -> int:
        return self._tsdu_recv

    @property
    def extended_concatenation(self) -> bool:
        """The peer said it can receive extended concatenation (we never send it)."""
        return self._peer_extended

    @property
    def va(self) -> int:
        """V(A): the lowest serial number of a sync point still to be confirmed."""
        return self._va

    @property
    def vm(self) -> int:
        """V(M): the serial number of the next sync point."""
        return self._vm

    @property
    def vr(self) -> int:
        """V(R): the lowest serial number a resync restart may go back to."""
        return self._vr

    @property
    def vms(self) -> int:
        """V(Ms): the next serial number on this side's sending flow (V(M) without symmetric
        synchronize, where one numbering serves both directions)."""
        return self._vm

    @property
    def vas(self) -> int:
        """V(As): the lowest unconfirmed serial number on the sending flow (V(A))."""
        return self._va

    @property
    def vrs(self) -> int:
        """V(Rs): the lowest restart point on the sending flow (V(R))."""
        return self._vr

    @property
    def vmr(self) -> int:
        """V(Mr): the next serial number expected on the receiving flow (V(M))."""
        return self._vmr if self._ss else self._vm

    @property
    def var(self) -> int:
        """V(Ar): the lowest serial number on the receiving flow not yet confirmed (V(A))."""
        return self._var if self._ss else self._va

    @property
    def vrr(self) -> int:
        """V(Rr): the lowest restart point on the receiving flow (V(R))."""
        return self._vrr if self._ss else self._vr

    @property
    def vsc(self) -> bool:
        """Vsc: this user may answer minor sync points."""
        return self._vsc

    @property
    def activity_in_progress(self) -> bool:
        """Vact."""
        return self._vact

    @property
    def activity_id(self) -> bytes | None:
        return self._activity_id

    @property
    def initial_serial(self) -> int | None:
        return self._initial_serial

    @property
    def symmetric_sync(self) -> bool:
        """Symmetric synchronize was selected: each direction numbers its own sync points."""
        return self._ss

    @property
    def second_initial_serial(self) -> int | None:
        """PI 55 as negotiated (symmetric synchronize): the responder-to-initiator flow."""
        return self._second_initial_serial

    @property
    def peer_connection_id(self) -> ConnectionId | None:
        return self._peer_connection_id

    @property
    def peer_user_data(self) -> bytes | None:
        """User data of the peer's CN (responder) or AC (initiator)."""
        return self._peer_user_data
