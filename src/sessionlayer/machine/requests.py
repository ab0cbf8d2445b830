"""The user side: one method per X.215 request or response primitive.

Each method checks the table first (raising a LocalError and changing nothing when the
primitive is not allowed), then builds and encodes the SPDUs (an encoding problem is a
ParameterError, still before anything changed), then applies the row.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import AbortReason, EncodeError, ParameterError, RefuseReason, StateError
from ..spdu.codec import encode_tsdu
from ..spdu.codes import (
    ExceptionReason,
    FunctionalUnit,
    PrepareType,
    ResyncType,
    Token,
    TokenSetting,
    Version,
)
from ..spdu.types import (
    SPDU,
    Abort,
    Accept,
    ActivityDiscard,
    ActivityDiscardAck,
    ActivityEnd,
    ActivityEndAck,
    ActivityInterrupt,
    ActivityInterruptAck,
    ActivityResume,
    ActivityStart,
    CapabilityData,
    CapabilityDataAck,
    ConnectionId,
    DataTransfer,
    Disconnect,
    ExceptionData,
    Expedited,
    Finish,
    GiveTokens,
    GiveTokensConfirm,
    LinkingInformation,
    MajorSyncAck,
    MajorSyncPoint,
    MinorSyncAck,
    MinorSyncPoint,
    NotFinished,
    PleaseTokens,
    Prepare,
    Refuse,
    Resynchronize,
    ResynchronizeAck,
    TypedData,
)
from ._make import make
from .core import Ctx
from .negotiation import (
    CN_DATA_MAX,
    TOKEN_SHIFT,
    build_connect,
    by_requestor,
    encode_token_setting,
    offered_versions,
    respond,
    respond_received,
)
from .rules import _Rules

__all__ = ["_Requests"]


def _data(value: Any, name: str = "user data") -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, bytes | bytearray | memoryview):
        raise ParameterError(f"{name} must be bytes, not {type(value).__name__}")
    return bytes(value)


#: The longest parameter field a one-octet length indicator holds (X.225 8.2.5).
_ONE_OCTET_LI = 254


def _check_one_octet_li(spdu: bytes, user_data: int, name: str) -> None:
    """ParameterError unless the encoded SPDU's LI is one octet: its other parameters
    (a Connection Identifier above all) count too, not only its ``user_data`` octets."""
    field = len(spdu) - (4 if spdu[1] == 0xFF else 2)
    over = field - _ONE_OCTET_LI
    if over > 0:
        room = max(user_data - over, 0)
        raise ParameterError(
            f"the {name}'s parameter field is {field} octets, {over} over the {_ONE_OCTET_LI}"
            f" a one-octet length indicator holds (one_octet_li): at most {room} octets"
            " of user data with these parameters"
        )


class _Requests(_Rules):
    """S-primitives from the user."""

    __slots__ = ()

    def _request(self, inp: str, build: Any, **args: Any) -> None:
        """Look ``inp`` up, build its TSDUs with ``build(ctx)``, then apply the row."""
        ctx = Ctx(args=args)
        row = self._lookup(inp, ctx)
        if "send" in row.do:
            build(ctx)
        self._apply(row, ctx)

    def _check_size(self, data: bytes | None) -> None:
        limit = self.config.max_user_data
        if data is not None and limit is not None and len(data) > limit:
            raise ParameterError(f"{len(data)} octets of user data, at most {limit}")

    def _prepare(self, ctx: Ctx, kind: PrepareType) -> None:
        """PREPARE on the transport expedited flow, when there is one (X.225 7.26)."""
        if self._tex:
            ctx.exp.append(self._encode(make(Prepare, prepare_type=int(kind))))

    # ------------------------------------------------------------ connection

    def connect(
        self, user_data: bytes | None = None, connection_id: ConnectionId | None = None
    ) -> None:
        """S-CONNECT request: send CN (now, or once the transport is connected).

        More than 10240 octets of user data (version 2 only): the CN carries the first 10240
        with Data Overflow, the rest follows in CONNECT DATA OVERFLOW SPDUs after the peer's
        OVERFLOW ACCEPT (X.225 7.1-7.3).
        """
        if self.role != "initiator":
            raise StateError("only the initiator sends S-CONNECT request")
        data = _data(user_data)
        self._check_size(data)
        rest = data[CN_DATA_MAX:] if data is not None else b""
        if rest and not self.config.versions & Version.V2:
            raise ParameterError(f"{len(data or b'')} octets of connect data need version 2")
        ctx = Ctx(args={"overflow": rest})
        row = self._lookup("SCONreq", ctx)
        cn = build_connect(self.config, data, connection_id)
        try:
            cn_bytes = encode_tsdu(cn)
        except EncodeError as exc:
            raise ParameterError(str(exc)) from None
        if self.config.one_octet_li:
            _check_one_octet_li(cn_bytes, len(cn.user_data or b""), "CN")
        self._cn_bytes, self._overflow_rest = cn_bytes, rest
        ctx.out = [cn_bytes]
        self._apply(row, ctx)

    def accept(
        self,
        user_data: bytes | None = None,
        connection_id: ConnectionId | None = None,
        functional_units: FunctionalUnit | None = None,
        tokens: Token | None = None,
    ) -> None:
        """S-CONNECT response (accept): send AC.

        ``functional_units`` narrows what is selected; ``tokens`` names the tokens this user
        takes among those the initiator left to the called user's choice.
        """
        data = _data(user_data)
        self._check_size(data)
        ctx = Ctx()
        row = self._lookup("SCONrsp+", ctx)
        cn = self._peer_cn
        assert cn is not None
        if functional_units is None and tokens is None:
            result, item, taken = respond_received(cn, self.config)  # the CN came off the wire
        else:
            result, item, taken = respond(cn, self.config, functional_units, tokens)
        ac = make(
            Accept,
            connection_id=connection_id,
            item=item,
            tokens=int(taken) if taken else None,
            requirements=int(result.functional_units),
            responding_ssel=self.config.responding_ssel or cn.called_ssel,
            user_data=data,
        )
        try:
            ac_bytes = encode_tsdu(ac, version=result.version)
        except EncodeError as exc:
            raise ParameterError(str(exc)) from None
        if self.config.one_octet_li:
            _check_one_octet_li(ac_bytes, len(data or b""), "AC")
        ctx.out = [ac_bytes]
        ctx.args["negotiated"] = result
        self._apply(row, ctx)
        self._peer_cn = None  # negotiated: an idle session keeps no decoded CN

    def refuse(
        self, reason: int | None = None, user_data: bytes | None = None, *, now: float
    ) -> None:
        """S-CONNECT response (reject): send RF and start TIM at ``now + abort_timeout``.

        X.225 8.3.5 carries user data only with reason 2 ("rejected by the called SS-user,
        reason in user data"): ``reason`` defaults to 2 with user data and 0 without; another
        reason together with user data is a ParameterError.
        """
        data = _data(user_data)
        if reason is None:
            reason = RefuseReason.USER_DATA if data is not None else RefuseReason.USER_NO_REASON
        elif data is not None and reason != RefuseReason.USER_DATA:
            raise ParameterError("RF user data needs reason 2 (RefuseReason.USER_DATA)")
        cn = self._peer_cn
        code = int(reason)
        self._now = now

        def build(ctx: Ctx) -> None:
            version = 2 if cn is not None and offered_versions(cn) & 2 else 1
            rf = make(Refuse, transport_disconnect=1, reason=code, user_data=data)
            try:
                ctx.out = [encode_tsdu(rf, version=version)]
            except EncodeError as exc:
                raise ParameterError(str(exc)) from None

        self._request("SCONrsp-", build)

    # ------------------------------------------------------------ data

    def send_data(self, data: bytes) -> None:
        """S-DATA request: GT + DT (segmented when a TSDU maximum size was agreed)."""
        payload = _data(data, "data") or b""

        def build(ctx: Ctx) -> None:
            ctx.out = self._gt(make(DataTransfer, user_data=payload))

        self._request("SDTreq", build)

    def send_typed_data(self, data: bytes) -> None:
        """S-TYPED-DATA request: TD, whoever holds the data token."""
        payload = _data(data, "data") or b""

        def build(ctx: Ctx) -> None:
            ctx.out = self._tsdus(make(TypedData, user_data=payload))

        self._request("STDreq", build)

    def send_expedited(self, data: bytes) -> None:
        """S-EXPEDITED-DATA request: EX (at most 14 octets)."""
        payload = _data(data, "data") or b""

        def build(ctx: Ctx) -> None:
            tsdu = self._encode(make(Expedited, user_data=payload))
            (ctx.exp if self._tex else ctx.out).append(tsdu)

        self._request("SEXreq", build)

    def send_capability_data(self, user_data: bytes | None = None) -> None:
        """S-CAPABILITY-DATA request: GT + CD; the confirm follows the peer's CDA."""
        data = _data(user_data)
        self._request(
            "SCDreq", lambda ctx: self._set(ctx, self._gt(make(CapabilityData, user_data=data)))
        )

    def capability_data_response(self, user_data: bytes | None = None) -> None:
        """S-CAPABILITY-DATA response: PT + CDA."""
        data = _data(user_data)
        self._request(
            "SCDrsp", lambda ctx: self._set(ctx, self._pt(make(CapabilityDataAck, user_data=data)))
        )

    @staticmethod
    def _set(ctx: Ctx, out: list[bytes]) -> None:
        ctx.out = out

    # ------------------------------------------------------------ tokens

    def give_tokens(self, tokens: Token, user_data: bytes | None = None) -> None:
        """S-TOKEN-GIVE request: GT with the tokens (all must be held) and, in version 2
        only, user data (segmented when it does not fit an agreed TSDU maximum size)."""
        wanted = Token(tokens)
        data = _data(user_data)
        self._request(
            "SGTreq",
            lambda ctx: self._set(
                ctx, self._tsdus(make(GiveTokens, tokens=int(wanted), user_data=data))
            ),
            tokens=wanted,
        )

    def please_tokens(self, tokens: Token, user_data: bytes | None = None) -> None:
        """S-TOKEN-PLEASE request: PT asking for tokens this user does not hold (segmented
        when its user data does not fit an agreed TSDU maximum size)."""
        wanted = Token(tokens)
        data = _data(user_data)
        self._request(
            "SPTreq",
            lambda ctx: self._set(
                ctx, self._tsdus(make(PleaseTokens, tokens=int(wanted), user_data=data))
            ),
            tokens=wanted,
        )

    def give_control(self) -> None:
        """S-CONTROL-GIVE request: GTC, handing over every available token."""
        self._request("SCGreq", lambda ctx: self._set(ctx, [self._encode(make(GiveTokensConfirm))]))

    # ------------------------------------------------------------ synchronization

    def minor_sync(
        self,
        confirm: bool = True,
        user_data: bytes | None = None,
        *,
        data_separation: bool = False,
    ) -> int:
        """S-SYNC-MINOR request: GT + MIP.  Returns the sync point's serial number.

        With symmetric synchronize the point numbers this side's sending flow and needs no
        token; ``data_separation`` (data separation unit) sets Sync Type Item bit 2.
        """
        data = _data(user_data)
        serial = self._vm
        sync_type = (0 if confirm else 1) | (2 if data_separation else 0)
        mip = make(
            MinorSyncPoint, sync_type=sync_type or None, serial_number=serial, user_data=data
        )
        inp = "SSYNmdreq" if data_separation else "SSYNmreq"
        self._request(inp, lambda ctx: self._set(ctx, self._gt(mip)), confirm=confirm)
        return serial

    def minor_sync_response(self, serial: int, user_data: bytes | None = None) -> None:
        """S-SYNC-MINOR response: PT + MIA confirming every point up to ``serial``."""
        data = _data(user_data)
        self._request(
            "SSYNmrsp",
            lambda ctx: self._set(
                ctx, self._pt(make(MinorSyncAck, serial_number=serial, user_data=data))
            ),
            serial=serial,
        )

    def major_sync(self, user_data: bytes | None = None) -> int:
        """S-SYNC-MAJOR request: GT + MAP.  Returns the sync point's serial number."""
        data = _data(user_data)
        serial = self._vm
        point = make(MajorSyncPoint, sync_type=1, serial_number=serial, user_data=data)
        self._request("SSYNMreq", lambda ctx: self._set(ctx, self._gt(point)))
        return serial

    def major_sync_response(self, user_data: bytes | None = None) -> None:
        """S-SYNC-MAJOR response: PT + MAA."""
        data = _data(user_data)

        def build(ctx: Ctx) -> None:
            self._prepare(ctx, PrepareType.MAA)
            serial = self._recv_next() - 1
            ctx.out = self._pt(make(MajorSyncAck, serial_number=serial, user_data=data))

        self._request("SSYNMrsp", build)

    def resync(
        self,
        type: ResyncType,
        serial: int | None = None,
        tokens: Mapping[Token, TokenSetting] | None = None,
        user_data: bytes | None = None,
        *,
        second_type: ResyncType | None = None,
        second_serial: int | None = None,
    ) -> None:
        """S-RESYNCHRONIZE request: GT + RS.

        ``serial``: needed for restart (V(R) <= serial <= V(M)) and set; abandon uses V(M).
        ``tokens``: where each available token goes afterwards (INITIATOR = this side, the
        requestor; RESPONDER = the peer; CALLED_CHOICE = the peer's choice).  None keeps
        today's placement.  With symmetric synchronize ``type``/``serial`` concern this
        side's sending flow and ``second_type`` (default: ``type``) / ``second_serial`` its
        receiving flow (default: V(Mr) for abandon and restart, ``serial`` for set).
        """
        kind = ResyncType(type)
        if kind == ResyncType.ABANDON:
            serial = self._vm
        elif serial is None:
            raise ParameterError(f"resync {kind.name.lower()} needs a serial number")
        second_kind: ResyncType | None = None
        if self._ss:
            second_kind = kind if second_type is None else ResyncType(second_type)
            second_serial = self._second_point(second_kind, second_serial, serial)
        elif second_type is not None or second_serial is not None:
            raise ParameterError("a second resync type or serial needs symmetric synchronize")
        if tokens is None:
            setting = self._current_setting(mine=True)
        else:
            setting = {t: TokenSetting.INITIATOR for t in TOKEN_SHIFT if self._available & t}
            setting.update(tokens)
        data = _data(user_data)

        def build(ctx: Ctx) -> None:
            self._prepare(ctx, PrepareType.RS)
            available = self._available
            wire = by_requestor(setting, self.role == "initiator")
            rs = make(
                Resynchronize,
                token_setting=encode_token_setting(wire, available) if available else None,
                resync_type=int(kind),
                serial_number=int(ctx.args["serial"]),
                second_resync_type=None if second_kind is None else int(second_kind),
                second_serial_number=second_serial,
                user_data=data,
            )
            ctx.out = self._gt(rs)

        args = {"second_type": second_kind, "second_serial": second_serial}
        self._request("SRSYNreq", build, type=kind, serial=serial, tokens=setting, **args)

    def _second_point(self, kind: ResyncType, serial: int | None, first: int) -> int:
        """The receiving-flow resync point when the user gave none (symmetric synchronize)."""
        if kind == ResyncType.ABANDON:
            return self._vmr
        if serial is not None:
            return serial
        return first if kind == ResyncType.SET else self._vmr

    def resync_response(
        self,
        serial: int | None = None,
        tokens: Token | None = None,
        user_data: bytes | None = None,
        *,
        second_serial: int | None = None,
    ) -> None:
        """S-RESYNCHRONIZE response: PT + RA.

        ``serial`` defaults to the RS's (restart, set) or V(M) (abandon); ``tokens`` names the
        tokens this user takes among those the requestor left to its choice.  With symmetric
        synchronize ``serial`` is this side's sending flow, ``second_serial`` its receiving
        flow (defaults alike: the proposed point, or V(Mr) for abandon).
        """
        pending = self._resync
        if pending is not None:
            if serial is None:
                serial = self._vm if pending.type == ResyncType.ABANDON else pending.serial
            if self._ss and second_serial is None and pending.second_type is not None:
                abandon = pending.second_type == ResyncType.ABANDON
                second_serial = self._vmr if abandon else pending.second_serial
        choice = Token(tokens or 0)
        owned = self._tokens_after(pending, choice)
        data = _data(user_data)

        def build(ctx: Ctx) -> None:
            assert pending is not None
            self._prepare(ctx, PrepareType.RA)
            setting = None
            if TokenSetting.CALLED_CHOICE in pending.tokens.values():
                final = {
                    t: TokenSetting.RESPONDER if owned & t else TokenSetting.INITIATOR
                    for t in pending.tokens
                }
                wire = by_requestor(final, self.role == "responder")  # the peer asked
                setting = encode_token_setting(wire, self._available)
            ra = make(
                ResynchronizeAck,
                token_setting=setting,
                serial_number=serial,
                second_serial_number=second_serial if self._ss else None,
                user_data=data,
            )
            ctx.out = self._pt(ra)

        args = {"second_serial": second_serial}
        self._request("SRSYNrsp", build, serial=serial, tokens=choice, owned=owned, **args)

    @staticmethod
    def _tokens_after(pending: Any, choice: Token) -> Token:
        """The tokens the resync responder holds afterwards."""
        owned = Token(0)
        if pending is not None:
            for token, value in pending.tokens.items():
                if value == TokenSetting.RESPONDER or (
                    value == TokenSetting.CALLED_CHOICE and choice & token
                ):
                    owned |= token
        return owned

    # ------------------------------------------------------------ exceptions

    def exception_report(
        self, reason: int = ExceptionReason.NO_REASON, user_data: bytes | None = None
    ) -> None:
        """S-U-EXCEPTION-REPORT request: PT + ED (only without the data token)."""
        data = _data(user_data)
        self._request(
            "SUERreq",
            lambda ctx: self._set(
                ctx, self._pt(make(ExceptionData, reason=int(reason), user_data=data))
            ),
        )

    # ------------------------------------------------------------ activities

    def activity_start(self, activity_id: bytes, user_data: bytes | None = None) -> None:
        """S-ACTIVITY-START request: GT + AS."""
        ident = _data(activity_id, "activity id") or b""
        data = _data(user_data)
        self._request(
            "SACTSreq",
            lambda ctx: self._set(
                ctx, self._gt(make(ActivityStart, activity_id=ident, user_data=data))
            ),
            activity_id=ident,
        )

    def activity_resume(
        self,
        activity_id: bytes,
        old_activity_id: bytes,
        serial: int,
        old_connection_id: ConnectionId | None = None,
        user_data: bytes | None = None,
    ) -> None:
        """S-ACTIVITY-RESUME request: GT + AR with linking information."""
        ident = _data(activity_id, "activity id") or b""
        old = old_connection_id or ConnectionId()
        link = LinkingInformation(
            called_ref=old.called_ref,
            calling_ref=old.calling_ref,
            common_ref=old.common_ref,
            additional_ref=old.additional_ref,
            old_activity_id=_data(old_activity_id, "old activity id"),
            serial_number=serial,
        )
        ar = make(ActivityResume, linking=link, activity_id=ident, user_data=_data(user_data))
        if not isinstance(serial, int) or not 0 <= serial < 999999:
            raise ParameterError("serial number must be 0..999998")
        self._request(
            "SACTRreq", lambda ctx: self._set(ctx, self._gt(ar)), activity_id=ident, serial=serial
        )

    def _simple(self, inp: str, spdu: SPDU, leader: str) -> None:
        wrap = self._gt if leader == "GT" else self._pt
        self._request(inp, lambda ctx: self._set(ctx, wrap(spdu)))

    def activity_interrupt(
        self, reason: int = ExceptionReason.NO_REASON, user_data: bytes | None = None
    ) -> None:
        """S-ACTIVITY-INTERRUPT request: GT + AI."""
        spdu = make(ActivityInterrupt, reason=int(reason), user_data=_data(user_data))
        self._simple("SACTIreq", spdu, "GT")

    def activity_interrupt_response(self, user_data: bytes | None = None) -> None:
        """S-ACTIVITY-INTERRUPT response: PT + AIA."""
        self._simple("SACTIrsp", make(ActivityInterruptAck, user_data=_data(user_data)), "PT")

    def activity_discard(
        self, reason: int = ExceptionReason.NO_REASON, user_data: bytes | None = None
    ) -> None:
        """S-ACTIVITY-DISCARD request: GT + AD."""
        spdu = make(ActivityDiscard, reason=int(reason), user_data=_data(user_data))
        self._simple("SACTDreq", spdu, "GT")

    def activity_discard_response(self, user_data: bytes | None = None) -> None:
        """S-ACTIVITY-DISCARD response: PT + ADA."""
        self._simple("SACTDrsp", make(ActivityDiscardAck, user_data=_data(user_data)), "PT")

    def activity_end(self, user_data: bytes | None = None) -> int:
        """S-ACTIVITY-END request: GT + AE.  Returns the sync point's serial number."""
        serial = self._vm
        self._simple(
            "SACTEreq", make(ActivityEnd, serial_number=serial, user_data=_data(user_data)), "GT"
        )
        return serial

    def activity_end_response(self, user_data: bytes | None = None) -> None:
        """S-ACTIVITY-END response: PT + AEA."""
        data = _data(user_data)

        def build(ctx: Ctx) -> None:
            self._prepare(ctx, PrepareType.MAA)
            serial = self._recv_next() - 1
            ctx.out = self._pt(make(ActivityEndAck, serial_number=serial, user_data=data))

        self._request("SACTErsp", build)

    # ------------------------------------------------------------ release and abort

    def release(self, user_data: bytes | None = None) -> None:
        """S-RELEASE request: FN (all available tokens must be held, no activity open),
        segmented when its user data does not fit an agreed TSDU maximum size."""
        data = _data(user_data)
        self._request(
            "SRELreq", lambda ctx: self._set(ctx, self._tsdus(make(Finish, user_data=data)))
        )

    def release_response(
        self, accept: bool = True, user_data: bytes | None = None, *, now: float
    ) -> None:
        """S-RELEASE response: DN (accept) or NF (refuse; negotiated release only),
        segmented when its user data does not fit an agreed TSDU maximum size.

        A DN starts TIM at ``now`` (the caller's clock) + ``abort_timeout``.
        """
        self._now = now
        data = _data(user_data)
        spdu: SPDU = (
            make(Disconnect, user_data=data) if accept else make(NotFinished, user_data=data)
        )
        self._request(
            "SRELrsp+" if accept else "SRELrsp-",
            lambda ctx: self._set(ctx, self._tsdus(spdu)),
        )

    def abort(self, user_data: bytes | None = None, *, now: float) -> None:
        """S-U-ABORT request: AB (Transport Disconnect = released | user abort), segmented
        when its user data does not fit an agreed TSDU maximum size.

        ``now`` (the caller's clock) starts TIM: the transport goes at ``now + abort_timeout``
        unless the peer releases it first.
        """
        self._now = now
        data = _data(user_data)
        reason = AbortReason.TRANSPORT_RELEASED | AbortReason.USER_ABORT

        def build(ctx: Ctx) -> None:
            # (Not before the AC: the peer's table has no PREPARE rows while it waits for
            # the connection to be answered, STA02A/STA02B/STA08.)
            if self._state not in ("STA02A", "STA02B", "STA08"):
                self._prepare(ctx, PrepareType.AB)
            ctx.out = self._tsdus(make(Abort, transport_disconnect=int(reason), user_data=data))

        self._request("SUABreq", build)
