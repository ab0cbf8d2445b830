"""Synchronization point serial numbers: the predicates and actions of minor and major
synchronize, resynchronize, activity start/resume and data separation.

Without symmetric synchronize one set of variables numbers the dialogue: V(A), V(M), V(R),
Vsc (X.225 Table A-4).  With it (version 2) each direction has its own: the sending flow uses
V(As), V(Ms), V(Rs) (kept in ``_va``, ``_vm``, ``_vr``) and the receiving flow V(Ar), V(Mr),
V(Rr) (``_var``, ``_vmr``, ``_vrr``); the numbered actions [62]-[71] of the version-2 Annex A
say how each moves.  On the wire PI 42 (Serial Number) and PI 27 (Resync Type) concern the
sender's sending flow, PI 54 and PI 53 its receiving flow (action [19]).  Data separation
keeps V(Ado) and V(Adi), the last data-separation points sent and received.
"""

from __future__ import annotations

from typing import Any

from ..spdu.codes import FunctionalUnit, ResyncType, Token, TokenSetting
from . import events as ev
from .core import Ctx, Resync, _Core
from .negotiation import TOKEN_SHIFT, by_requestor, decode_token_setting

__all__ = ["_Sync", "MAX_SERIAL"]

FU = FunctionalUnit
MAX_SERIAL = 999999
RESTART, ABANDON = ResyncType.RESTART, ResyncType.ABANDON
#: Which resync type wins a collision (X.225 7.24): abandon, then set, then restart.
_RANK = {ResyncType.ABANDON: 3, ResyncType.SET: 2, ResyncType.RESTART: 1}


def _rank(resync: Resync) -> int:
    second = _RANK[resync.second_type] if resync.second_type is not None else 0
    return max(_RANK[resync.type], second)


def _flow_ok(kind: Any, serial: Any, vm: int, vr: int) -> bool:
    """A requested resync point for one flow (restart: V(R) <= serial <= V(M))."""
    if not isinstance(serial, int):
        return False
    if kind == RESTART:
        return vm >= serial >= vr
    return 0 <= serial <= MAX_SERIAL


def _restart_ok(kind: Any, serial: Any, vr: int) -> bool:
    """A received RS's point for one flow: a restart needs only sn >= V(R) (Table A-4, RS
    SPDU r:; p32).  It may lie past this end's V(M): the peer's sync points this end
    discarded (a resync collision, STA05A; after a PREPARE(RS), STA15B) numbered it."""
    return kind != RESTART or (isinstance(serial, int) and vr <= serial <= MAX_SERIAL)


def _answer_ok(kind: Any, proposed: Any, serial: Any, vm: int) -> bool:
    """The serial number a resync responder picks for one flow (Table A-4, SRSYNrsp):
    restart, the proposed one; abandon, V(M) (already raised to the RS's serial, [19]);
    set, any serial number."""
    if not isinstance(serial, int):
        return False
    if kind == RESTART:
        return bool(serial == proposed)
    if kind == ABANDON:
        return serial == vm
    return 0 <= serial <= MAX_SERIAL


def _confirm_ok(kind: Any, proposed: Any, got: Any, vm: int) -> bool:
    """An RA's serial number for one flow, seen by the requestor (X.225 p49)."""
    if not isinstance(got, int):
        return False
    if kind == RESTART:
        return bool(got == proposed)
    if kind == ABANDON:
        return MAX_SERIAL >= got >= vm
    return 0 <= got <= MAX_SERIAL


class _Sync(_Core):
    """Serial-number predicates and actions, for both synchronization models."""

    __slots__ = ()

    def _recv_next(self) -> int:
        """The serial number the next sync point received must carry: V(M), or V(Mr)."""
        return self._vmr if self._ss else self._vm

    # ------------------------------------------------------------ predicates: units

    def _p_fu_sync(self, ctx: Ctx) -> bool:
        """Minor or symmetric synchronize (X.225 p17: FU(SS) OR FU(SY))."""
        return bool(self._fu & (FU.MINOR_SYNC | FU.SYMMETRIC_SYNC))

    def _p_fu_ss(self, ctx: Ctx) -> bool:
        return self._ss

    def _p_fu_ds(self, ctx: Ctx) -> bool:
        return bool(self._fu & FU.DATA_SEPARATION)

    # ------------------------------------------------------------ predicates: serial numbers

    def _p_sn_room(self, ctx: Ctx) -> bool:
        return self._vm < MAX_SERIAL

    def _p_mia_args(self, ctx: Ctx) -> bool:
        """SSYNmrsp: p18/p21, or p179 (V(Mr) > serial >= V(Ar)) with symmetric synchronize."""
        serial = ctx.args.get("serial")
        if not isinstance(serial, int):
            return False
        if self._ss:
            return self._vmr > serial >= self._var
        return self._vsc and self._vm > serial >= self._va

    def _p_mia_ok(self, ctx: Ctx) -> bool:
        """MIA: p17/p21, or p176 (V(Ms) > serial >= V(As))."""
        return (self._ss or not self._vsc) and self._vm > ctx.spdu.serial_number >= self._va

    def _p_mip_ok(self, ctx: Ctx) -> bool:
        """MIP/MAP/AE: p19 (serial = V(M)), or p177 (serial = V(Mr)); and V(M) + 1 stays a
        serial number (at most 999999, 6 digits: X.225 8.3.20 Serial Number)."""
        serial = ctx.spdu.serial_number
        return bool(serial == self._recv_next()) and serial < MAX_SERIAL

    def _p_ar_ok(self, ctx: Ctx) -> bool:
        """AR: the resumed activity continues at serial + 1, which must stay <= 999999."""
        return bool(ctx.spdu.linking.serial_number < MAX_SERIAL)

    _p_map_ok = _p_mip_ok
    _p_ae_ok = _p_mip_ok

    def _p_maa_ok(self, ctx: Ctx) -> bool:
        """MAA/AEA: p20 (serial = V(M) - 1), or V(Ms) - 1."""
        return bool(ctx.spdu.serial_number == self._vm - 1)

    def _settings_ok(self, tokens: dict[Token, TokenSetting]) -> bool:
        return all(self._available & t and v != TokenSetting.RESERVED for t, v in tokens.items())

    def _p_rs_args(self, ctx: Ctx) -> bool:
        args = ctx.args
        if not self._settings_ok(args["tokens"]):
            return False
        if not _flow_ok(args["type"], args["serial"], self._vm, self._vr):
            return False
        if not self._ss:
            return True
        return _flow_ok(args.get("second_type"), args.get("second_serial"), self._vmr, self._vrr)

    def _p_rs_ok(self, ctx: Ctx) -> bool:
        """RS: a known type, and a restart not below V(R) (p32, per flow with FU(SS))."""
        spdu = ctx.spdu
        if spdu.resync_type not in (0, 1, 2):
            return False
        # A restart sent before our last MAA reached the peer (it crossed: a resync takes
        # precedence over a major sync, 7.24) names the V(R) of before it.
        vr, vrr = self._vr, self._vrr
        crossed = self._crossed
        if crossed is not None:
            vr, vrr = min(vr, crossed[0]), min(vrr, crossed[1])
        if not self._ss:
            return _restart_ok(spdu.resync_type, spdu.serial_number, vr)
        second = spdu.resync_type if spdu.second_resync_type is None else spdu.second_resync_type
        if second not in (0, 1, 2) or (spdu.second_serial_number is None and second != ABANDON):
            return False
        if not _restart_ok(spdu.resync_type, spdu.serial_number, vrr):
            return False
        return _restart_ok(second, spdu.second_serial_number, vr)

    def _p_rs_wins(self, ctx: Ctx) -> bool:
        """Collision: does the peer's RS beat ours? (X.225 7.24, see docs/machine.md)."""
        ours = self._resync
        if ours is None:
            return True
        theirs = self._incoming_resync(ctx.spdu)
        if _rank(theirs) != _rank(ours):
            return _rank(theirs) > _rank(ours)
        if not self._ss and theirs.type == RESTART and theirs.serial != ours.serial:
            return theirs.serial < ours.serial
        return self.role == "responder"  # the session initiator's request wins

    def _p_ra_args(self, ctx: Ctx) -> bool:
        pending = self._resync
        if pending is None or pending.mine:
            return False
        choice = Token(ctx.args["tokens"] or 0)
        free = Token(0)
        for token, value in pending.tokens.items():
            if value == TokenSetting.CALLED_CHOICE:
                free |= token
        serial = ctx.args["serial"]
        if choice & ~free or not _answer_ok(pending.type, pending.serial, serial, self._vm):
            return False
        if not self._ss:
            return True
        second = ctx.args.get("second_serial")
        return _answer_ok(pending.second_type, pending.second_serial, second, self._vmr)

    def _p_ra_ok(self, ctx: Ctx) -> bool:
        """RA: p49, per flow with FU(SS) (PI 54 is our sending flow, PI 42 our receiving)."""
        pending = self._resync
        if pending is None or not pending.mine:
            return False
        spdu = ctx.spdu
        if not self._ss:
            return _confirm_ok(pending.type, pending.serial, spdu.serial_number, self._vm)
        return _confirm_ok(
            pending.type, pending.serial, spdu.second_serial_number, self._vm
        ) and _confirm_ok(pending.second_type, pending.second_serial, spdu.serial_number, self._vmr)

    # ------------------------------------------------------------ predicates: data separation

    def _p_ds_clear(self, ctx: Ctx) -> bool:
        """p80: no data-separation point received and still unconfirmed (V(Adi) < V(Ar))."""
        return not self._fu & FU.DATA_SEPARATION or self._adi < self._var

    def _p_ds_keep(self, ctx: Ctx) -> bool:
        """p81: a data-separation point sent is unconfirmed (V(Ado) >= V(As)): keep data."""
        return bool(self._fu & FU.DATA_SEPARATION) and self._ado >= self._va

    # ------------------------------------------------------------ actions: minor, major

    def _sync_point_sent(self) -> None:
        """Table A-4, SSYNmreq / SSYNMreq / SACTEreq; [63] with symmetric synchronize."""
        if self._ss:
            self._vm += 1
            return
        if self._vsc:
            self._va = self._vm
        self._vm += 1
        self._vsc = False

    def _a_mip_sent(self, ctx: Ctx) -> None:
        if ctx.args.get("confirm"):
            self._unconfirmed = (*self._unconfirmed, self._vm)
        self._sync_point_sent()

    def _a_mip_ind(self, ctx: Ctx) -> None:
        """Table A-4, MIP SPDU; [62] with symmetric synchronize.  Without it the peer's
        point settles ours (V(A) = V(M)): they get no MIA."""
        serial = self._major_point_received()
        if not self._ss:
            self._superseded(None)
        self._vsc = not self._ss
        sync_type = ctx.spdu.sync_type or 0
        confirm, separation = not sync_type & 1, bool(sync_type & 2)
        self._events.append(ev.MinorSyncIndication(serial, confirm, ctx.spdu.user_data, separation))

    def _a_mip_taken(self, ctx: Ctx) -> None:
        """A MIP that waits for our recovery (STA20) is not indicated, but it numbers the
        dialogue as on the peer's side (the version-2 table's MIP row in STA20: [23])."""
        self._major_point_received()
        self._vsc = not self._ss

    def _a_map_taken(self, ctx: Ctx) -> None:
        """A MAP or AE that waits for our recovery (STA20): not indicated nor answered, but
        numbered (the version-2 table's MAP and AE rows in STA20: [31])."""
        self._major_point_received()

    def _a_mia_sent(self, ctx: Ctx) -> None:
        """[25], or [66] (V(Ar) = serial + 1)."""
        if self._ss:
            self._var = ctx.args["serial"] + 1
        else:
            self._va = ctx.args["serial"] + 1

    def _a_mia_cnf(self, ctx: Ctx) -> None:
        """[25], or [65] (V(As) = serial + 1).  One MIA confirms every minor point up to its
        serial (X.215: a peer may answer only the last of several): each confirmed one that
        waited gets its confirm, in order, the MIA's user data with its own."""
        serial = ctx.spdu.serial_number
        self._va = serial + 1
        if self.rare is not None and self._unconfirmed:
            pending = self._unconfirmed
            self._confirm_earlier(serial)
            self._unconfirmed = tuple(s for s in pending if s > serial)
            if serial not in pending and self._unconfirmed:
                # An answer to a point that asked for none, while a later one that did
                # waits: its confirm would be taken for the later one's (confirms are
                # awaited in order), and it needs none.
                return
        self._events.append(ev.MinorSyncConfirm(serial, ctx.spdu.user_data))

    def _confirm_earlier(self, serial: int) -> None:
        """Our confirmed minor points before ``serial`` that got no MIA of their own: the
        MIA, MAA or AEA for ``serial`` confirms them (V(A) moves past them)."""
        for earlier in self._unconfirmed:
            if earlier < serial:
                self._events.append(ev.MinorSyncConfirm(earlier, None))

    def _a_ds_sent(self, ctx: Ctx) -> None:
        """[42]: V(Ado) = the data-separation point just sent."""
        self._ado = self._vm - 1

    def _a_ds_rcvd(self, ctx: Ctx) -> None:
        """[45]: V(Adi) = the data-separation point just received."""
        self._adi = ctx.spdu.serial_number

    def _a_map_sent(self, ctx: Ctx) -> None:
        self._sync_point_sent()

    def _major_point_received(self) -> int:
        """Table A-4, MIP / MAP / AE SPDU (V(Mr) + 1 with symmetric synchronize)."""
        if self.rare is not None:  # (the peer went on from our MAA or AEA; every ack
            self._crossed = None  # of a resumable session comes here: no descriptor call)
        serial = self._recv_next()
        if self._ss:
            self._vmr += 1
            return serial
        if not self._vsc:
            self._va = self._vm
        self._vm += 1
        return serial

    def _superseded(self, major: int | None, activity_end: bool = False) -> None:
        """The peer's sync point just received settles our confirmed minor sync points
        still waiting for their MIA (Table A-4 MAP / AE / MIP SPDU: V(A) = V(M); with
        symmetric synchronize the peer, whose MAP or AE was out first, has no SSYNmrsp
        until our MAA or AEA, and [64] settles them then): no MIA comes for them."""
        if self.rare is None or not self._unconfirmed:
            return
        pending, self._unconfirmed = self._unconfirmed, ()
        for serial in pending:
            self._events.append(ev.MinorSyncSuperseded(serial, major, activity_end))

    def _a_map_ind(self, ctx: Ctx) -> None:
        serial = self._major_point_received()
        self._superseded(serial)
        self._events.append(ev.MajorSyncIndication(serial, ctx.spdu.user_data))

    def _major_acked(self) -> None:
        """Table A-4, SSYNMrsp / SACTErsp / MAA / AEA ([22]); [64] for both flows."""
        self._va = self._vr = self._vm
        if self.rare is not None:
            self._unconfirmed = ()  # (confirmed with our MAP or AE, or settled: [64])
        if self._ss:
            self._var = self._vrr = self._vmr

    def _a_maa_sent(self, ctx: Ctx) -> None:
        self._crossed = (self._vr, self._vrr)  # (until the peer's next sync point, RS or RA)
        self._major_acked()

    def _a_maa_cnf(self, ctx: Ctx) -> None:
        if self.rare is not None and self._unconfirmed:
            self._confirm_earlier(ctx.spdu.serial_number)
        self._major_acked()
        self._events.append(ev.MajorSyncConfirm(ctx.spdu.serial_number, ctx.spdu.user_data))

    def _a_ae_sent(self, ctx: Ctx) -> None:
        self._sync_point_sent()
        self._end_pending = True

    def _a_ae_ind(self, ctx: Ctx) -> None:
        serial = self._major_point_received()
        self._superseded(serial, activity_end=True)
        self._events.append(ev.ActivityEndIndication(serial, ctx.spdu.user_data))

    def _a_aea_sent(self, ctx: Ctx) -> None:
        self._crossed = (self._vr, self._vrr)  # (an RS, AI or AD may have crossed it)
        self._major_acked()
        self._vact = False

    def _a_aea_cnf(self, ctx: Ctx) -> None:
        if self.rare is not None and self._unconfirmed:
            self._confirm_earlier(ctx.spdu.serial_number)
        self._major_acked()
        self._vact = False
        self._end_pending = False
        self._crossed = None  # (nothing that crossed our MAA or AEA can come now)
        self._events.append(ev.ActivityEndConfirm(ctx.spdu.serial_number, ctx.spdu.user_data))

    def _set_serials(self, serial: int) -> None:
        """[26]/[27] and [69]/[70]: both flows restart at ``serial``, restart floor 1."""
        self._va = self._vm = self._var = self._vmr = serial
        self._vr = self._vrr = 1
        self._ado = self._adi = -1
        self._crossed = None  # (a new activity: nothing crossed it)
        self._unconfirmed = ()

    # ------------------------------------------------------------ actions: resynchronize

    def _a_rs_sent(self, ctx: Ctx) -> None:
        args = ctx.args
        self._unconfirmed = ()  # (purged: X.215)
        self._resync = Resync(
            True,
            args["type"],
            args["serial"],
            dict(args["tokens"]),
            args.get("second_type"),
            args.get("second_serial"),
        )

    def _incoming_resync(self, spdu: Any) -> Resync:
        """An RS seen from this end (its PI 53/54 concern our sending flow)."""
        kind = ResyncType(spdu.resync_type)
        wire = decode_token_setting(spdu.token_setting, self._available)
        tokens = by_requestor(wire, self.role == "responder")  # the peer asked
        if spdu.token_setting is None:
            tokens = self._current_setting(mine=False)
        if not self._ss:
            return Resync(False, kind, spdu.serial_number, tokens)
        second = kind if spdu.second_resync_type is None else ResyncType(spdu.second_resync_type)
        serial = spdu.second_serial_number
        return Resync(
            False, second, self._vm if serial is None else serial, tokens, kind, spdu.serial_number
        )

    def _a_rs_ind(self, ctx: Ctx) -> None:
        self._crossed = None  # (nothing that crossed our MAA or AEA can come now)
        self._unconfirmed = ()  # (purged: X.215)
        spdu = ctx.spdu
        resync = self._incoming_resync(spdu)
        # 7.24: the peer's RS beat our own; our request will get no RA.
        collision = self._resync is not None and self._resync.mine
        self._resync = resync
        if resync.type == ABANDON:  # [19]
            self._vm = max(resync.serial, self._vm)
        if resync.second_type == ABANDON and resync.second_serial is not None:
            self._vmr = max(resync.second_serial, self._vmr)
        self._end_pending = False
        self._assembler = None  # segments under way are dropped
        self._events.append(
            ev.ResyncIndication(
                resync.type,
                resync.serial,
                resync.tokens,
                spdu.user_data,
                resync.second_type,
                resync.second_serial,
                collision,
            )
        )

    def _current_setting(self, *, mine: bool) -> dict[Token, TokenSetting]:
        """Today's token placement as a setting, INITIATOR meaning the resync requestor."""
        out: dict[Token, TokenSetting] = {}
        for token in TOKEN_SHIFT:
            if self._available & token:
                here = bool(self._owned & token)
                out[token] = TokenSetting.INITIATOR if here == mine else TokenSetting.RESPONDER
        return out

    def _resynced(self, serial: int, owned: Token, second: int | None = None) -> None:
        """Table A-4, SRSYNrsp / RA SPDU ([28]); [68] for both flows."""
        assert self._resync is not None
        resync = self._resync
        self._va = self._vm = serial
        if resync.type != RESTART:
            self._vr = 0
        if self._ss and second is not None:
            self._var = self._vmr = second
            if resync.second_type != RESTART:
                self._vrr = 0
        self._owned = owned & self._available
        self._resync = None
        self._unconfirmed = ()
        self._end_pending = False
        self._ado = self._adi = -1

    def _a_ra_sent(self, ctx: Ctx) -> None:
        self._resynced(ctx.args["serial"], ctx.args["owned"], ctx.args.get("second_serial"))

    def _a_ra_cnf(self, ctx: Ctx) -> None:
        assert self._resync is not None
        self._crossed = None  # (nothing that crossed our MAA or AEA can come now)
        spdu = ctx.spdu
        chosen = Token(0)
        if spdu.token_setting is not None:
            # RA's setting is the acceptor's choice (00 = the session initiator's side).
            wire = decode_token_setting(spdu.token_setting, self._available)
            for token, value in by_requestor(wire, self.role == "initiator").items():
                if value == TokenSetting.RESPONDER:
                    chosen |= token
        owned = Token(0)
        for token, value in self._resync.tokens.items():
            if value == TokenSetting.INITIATOR or (
                value == TokenSetting.CALLED_CHOICE and not chosen & token
            ):
                owned |= token
        if self._ss:
            sending, receiving = spdu.second_serial_number, spdu.serial_number
        else:
            sending, receiving = spdu.serial_number, None
        self._resynced(sending, owned, receiving)
        self._assembler = None  # segments under way are dropped
        self._events.append(ev.ResyncConfirm(sending, self._owned, spdu.user_data, receiving))
