"""The predicates (``_p_*``) and actions (``_a_*``) that table rows name.

Predicates read the variables and the input; actions change variables, queue SPDUs and
report events.  The serial-number arithmetic follows X.225 Table A-4; the token rules X.225
5.6 and 7.16-7.19.  Nothing here chooses a next state: the table does.
"""

from __future__ import annotations

from typing import Any

from ..errors import AbortReason, RefuseReason
from ..spdu.codec import encode_tsdu
from ..spdu.codes import (
    DEFAULT_REQUIREMENTS,
    FunctionalUnit,
    PrepareType,
    ResyncType,
    Token,
    TokenSetting,
)
from ..spdu.types import (
    Accept,
    Connect,
    Finish,
    GiveTokensAck,
    Refuse,
)
from . import events as ev
from ._make import make
from .config import tokens_for
from .core import Ctx, Resync, _Core
from .negotiation import (
    TOKEN_SHIFT,
    check_connect,
    decode_token_setting,
    offered_versions,
    read_accept,
)

__all__ = ["_Rules"]

FU = FunctionalUnit
MAX_SERIAL = 999999
#: Which resync type wins a collision (X.225 7.24): abandon, then set, then restart.
_RANK = {ResyncType.ABANDON: 3, ResyncType.SET: 2, ResyncType.RESTART: 1}


def _tokens(spdu: Any) -> Token:
    return Token(getattr(spdu, "tokens", None) or 0)


class _Rules(_Core):
    """Predicates and actions, by the names the state table uses."""

    # ------------------------------------------------------------ predicates: units

    def _p_fu_expedited(self, ctx: Ctx) -> bool:
        return bool(self._fu & FU.EXPEDITED)

    def _p_fu_typed(self, ctx: Ctx) -> bool:
        return bool(self._fu & FU.TYPED_DATA)

    def _p_fu_cd(self, ctx: Ctx) -> bool:
        return bool(self._fu & FU.CAPABILITY_DATA)

    def _p_fu_minor(self, ctx: Ctx) -> bool:
        return bool(self._fu & FU.MINOR_SYNC)

    def _p_fu_major(self, ctx: Ctx) -> bool:
        return bool(self._fu & FU.MAJOR_SYNC)

    def _p_fu_resync(self, ctx: Ctx) -> bool:
        return bool(self._fu & FU.RESYNC)

    def _p_fu_activity(self, ctx: Ctx) -> bool:
        return bool(self._fu & FU.ACTIVITY)

    def _p_fu_exceptions(self, ctx: Ctx) -> bool:
        return bool(self._fu & FU.EXCEPTIONS)

    def _p_fu_negrel(self, ctx: Ctx) -> bool:
        return bool(self._fu & FU.NEGOTIATED_RELEASE)

    # ------------------------------------------------------------ predicates: tokens

    def _p_own_data(self, ctx: Ctx) -> bool:
        return self._owns(Token.DATA)

    def _p_own_minor(self, ctx: Ctx) -> bool:
        return self._owns(Token.MINOR_SYNC)

    def _p_own_major(self, ctx: Ctx) -> bool:
        return self._owns(Token.MAJOR_ACTIVITY)

    def _p_own_release(self, ctx: Ctx) -> bool:
        return self._owns(Token.RELEASE)

    def _p_own_all(self, ctx: Ctx) -> bool:
        return self._owned == self._available

    def _p_own_given(self, ctx: Ctx) -> bool:
        tokens = Token(ctx.args.get("tokens", 0))
        return bool(tokens) and tokens & ~self._owned == 0

    def _p_give_data(self, ctx: Ctx) -> bool:
        return self._p_own_given(ctx) and bool(ctx.args.get("tokens", 0) & Token.DATA)

    def _p_want_tokens(self, ctx: Ctx) -> bool:
        tokens = Token(ctx.args.get("tokens", 0))
        return bool(tokens) and tokens & ~(self._available & ~self._owned) == 0

    def _p_lack_data(self, ctx: Ctx) -> bool:
        return bool(self._available & Token.DATA) and not self._owned & Token.DATA

    def _p_peer_data(self, ctx: Ctx) -> bool:
        return self._peer_owns(Token.DATA)

    def _p_peer_minor(self, ctx: Ctx) -> bool:
        return self._peer_owns(Token.MINOR_SYNC)

    def _p_peer_major(self, ctx: Ctx) -> bool:
        return self._peer_owns(Token.MAJOR_ACTIVITY)

    def _p_peer_release(self, ctx: Ctx) -> bool:
        return self._owned == 0

    def _p_peer_all(self, ctx: Ctx) -> bool:
        return self._owned == 0

    def _p_no_release_token(self, ctx: Ctx) -> bool:
        return not self._available & Token.RELEASE

    def _p_gt_ok(self, ctx: Ctx) -> bool:
        tokens = _tokens(ctx.spdu)
        return bool(tokens) and tokens & ~(self._available & ~self._owned) == 0

    def _p_gt_data(self, ctx: Ctx) -> bool:
        return bool(_tokens(ctx.spdu) & Token.DATA)

    def _p_pt_ok(self, ctx: Ctx) -> bool:
        tokens = _tokens(ctx.spdu)
        return bool(tokens) and tokens & ~self._available == 0

    # ------------------------------------------------------------ predicates: state

    def _p_tc_up(self, ctx: Ctx) -> bool:
        return self._tc_up

    def _p_in_act(self, ctx: Ctx) -> bool:
        return self._vact

    def _p_no_act(self, ctx: Ctx) -> bool:
        return not self._vact

    def _p_act_ok(self, ctx: Ctx) -> bool:
        return not self._fu & FU.ACTIVITY or self._vact

    def _p_initiator(self, ctx: Ctx) -> bool:
        return self.role == "initiator"

    def _p_collision(self, ctx: Ctx) -> bool:
        return self._collision

    def _p_pending_fn(self, ctx: Ctx) -> bool:
        return self._kept_fn is not None

    # ------------------------------------------------------------ predicates: serial numbers

    def _p_sn_room(self, ctx: Ctx) -> bool:
        return self._vm < MAX_SERIAL

    def _p_mia_args(self, ctx: Ctx) -> bool:
        serial = ctx.args.get("serial")
        return isinstance(serial, int) and self._vsc and self._vm > serial >= self._va

    def _p_mia_ok(self, ctx: Ctx) -> bool:
        return not self._vsc and self._vm > ctx.spdu.serial_number >= self._va

    def _p_mip_ok(self, ctx: Ctx) -> bool:
        return bool(ctx.spdu.serial_number == self._vm)

    _p_map_ok = _p_mip_ok
    _p_ae_ok = _p_mip_ok

    def _p_maa_ok(self, ctx: Ctx) -> bool:
        return bool(ctx.spdu.serial_number == self._vm - 1)

    def _settings_ok(self, tokens: dict[Token, TokenSetting]) -> bool:
        return all(self._available & t and v != TokenSetting.RESERVED for t, v in tokens.items())

    def _p_rs_args(self, ctx: Ctx) -> bool:
        kind, serial = ctx.args["type"], ctx.args["serial"]
        if not self._settings_ok(ctx.args["tokens"]):
            return False
        if kind == ResyncType.RESTART:
            return bool(self._vm >= serial >= self._vr)
        return bool(0 <= serial <= MAX_SERIAL)

    def _p_rs_ok(self, ctx: Ctx) -> bool:
        spdu = ctx.spdu
        if spdu.resync_type not in (0, 1, 2):
            return False
        return not (spdu.resync_type == ResyncType.RESTART and spdu.serial_number < self._vr)

    def _p_rs_wins(self, ctx: Ctx) -> bool:
        """Collision: does the peer's RS beat ours? (X.225 7.24, see docs/machine.md)."""
        ours = self._resync
        if ours is None:
            return True
        theirs = ResyncType(ctx.spdu.resync_type)
        if _RANK[theirs] != _RANK[ours.type]:
            return _RANK[theirs] > _RANK[ours.type]
        if theirs == ResyncType.RESTART and ctx.spdu.serial_number != ours.serial:
            return bool(ctx.spdu.serial_number < ours.serial)
        return self.role == "responder"  # the session initiator's request wins

    def _p_ra_args(self, ctx: Ctx) -> bool:
        pending = self._resync
        if pending is None or pending.mine:
            return False
        serial = ctx.args["serial"]
        choice = Token(ctx.args["tokens"] or 0)
        free = Token(0)
        for token, value in pending.tokens.items():
            if value == TokenSetting.CALLED_CHOICE:
                free |= token
        if choice & ~free:
            return False
        if pending.type == ResyncType.RESTART:
            return bool(serial == pending.serial)
        return bool(0 <= serial <= MAX_SERIAL)

    def _p_ra_ok(self, ctx: Ctx) -> bool:
        pending = self._resync
        if pending is None or not pending.mine:
            return False
        serial = ctx.spdu.serial_number
        if pending.type == ResyncType.RESTART:
            return bool(serial == pending.serial)
        if pending.type == ResyncType.ABANDON:
            return bool(serial >= self._vm)
        return True

    # ------------------------------------------------------------ predicates: connect, PR

    def _p_cn_ok(self, ctx: Ctx) -> bool:
        return check_connect(ctx.spdu, self.config) is None

    def _p_ac_ok(self, ctx: Ctx) -> bool:
        return read_accept(ctx.spdu, self.config) is not None

    def _p_pr_maa(self, ctx: Ctx) -> bool:
        return bool(ctx.spdu.prepare_type == PrepareType.MAA)

    def _p_pr_rs(self, ctx: Ctx) -> bool:
        return bool(ctx.spdu.prepare_type == PrepareType.RS)

    def _p_pr_ra(self, ctx: Ctx) -> bool:
        return bool(ctx.spdu.prepare_type == PrepareType.RA)

    def _p_pr_ab(self, ctx: Ctx) -> bool:
        return bool(ctx.spdu.prepare_type == PrepareType.AB)

    # ------------------------------------------------------------ actions: plumbing

    def _a_send(self, ctx: Ctx) -> None:
        self._out.extend(ctx.out)
        self._out_exp.extend(ctx.exp)

    def _a_start_tim(self, ctx: Ctx) -> None:
        self._start_tim()

    def _a_tdisreq(self, ctx: Ctx) -> None:
        self._tdis = True

    def _a_discard(self, ctx: Ctx) -> None:
        pass

    def _a_tdis_ind(self, ctx: Ctx) -> None:
        self._events.append(
            ev.ProviderAbortIndication(AbortReason.TRANSPORT_RELEASED, "transport disconnected")
        )

    def _a_ab_ind(self, ctx: Ctx) -> None:
        spdu = ctx.spdu
        td = spdu.transport_disconnect
        if td is None or td & AbortReason.USER_ABORT:
            self._events.append(ev.UserAbortIndication(spdu.user_data))
        else:
            self._events.append(ev.ProviderAbortIndication(AbortReason(td), "AB from the peer"))

    # ------------------------------------------------------------ actions: connect

    def _a_send_cn(self, ctx: Ctx) -> None:
        self._out.append(self._cn_bytes)

    def _a_conn_ind(self, ctx: Ctx) -> None:
        cn: Connect = ctx.spdu
        self._peer_cn = cn
        self._peer_connection_id = cn.connection_id
        self._peer_user_data = cn.user_data
        item = cn.item
        proposed = FU(cn.requirements if cn.requirements is not None else DEFAULT_REQUIREMENTS)

        self._events.append(
            ev.ConnectIndication(
                user_data=cn.user_data,
                connection_id=cn.connection_id,
                calling_ssel=cn.calling_ssel,
                called_ssel=cn.called_ssel,
                functional_units=proposed,
                versions=offered_versions(cn),
                token_setting=decode_token_setting(
                    item.token_setting if item else None, tokens_for(proposed)
                ),
                initial_serial=item.initial_serial if item else None,
                tsdu_max_size=item.tsdu_max_size if item else None,
            )
        )

    def _a_refuse_spm(self, ctx: Ctx) -> None:
        reason = check_connect(ctx.spdu, self.config) or RefuseReason.SPM_NO_REASON
        version = 2 if offered_versions(ctx.spdu) & 2 else 1
        rf = make(Refuse, transport_disconnect=1, reason=int(reason))
        self._out.append(encode_tsdu(rf, version=version))

    def _a_accept(self, ctx: Ctx) -> None:
        self._adopt(ctx.args["negotiated"])

    def _a_conn_cnf(self, ctx: Ctx) -> None:
        ac: Accept = ctx.spdu
        result = read_accept(ac, self.config)
        assert result is not None
        self._adopt(result)
        self._peer_connection_id = ac.connection_id
        self._peer_user_data = ac.user_data
        self._events.append(
            ev.ConnectConfirm(
                user_data=ac.user_data,
                connection_id=ac.connection_id,
                responding_ssel=ac.responding_ssel,
                functional_units=self._fu,
                version=self._version,
                tokens=self._owned,
                initial_serial=self._initial_serial,
            )
        )

    def _a_refuse_cnf(self, ctx: Ctx) -> None:
        self._events.append(ev.RefuseConfirm(ctx.spdu.reason, ctx.spdu.user_data))

    # ------------------------------------------------------------ actions: data, tokens

    def _a_data_ind(self, ctx: Ctx) -> None:
        self._events.append(ev.DataIndication(ctx.spdu.user_data))

    def _a_typed_ind(self, ctx: Ctx) -> None:
        self._events.append(ev.TypedDataIndication(ctx.spdu.user_data))

    def _a_ex_ind(self, ctx: Ctx) -> None:
        self._events.append(ev.ExpeditedDataIndication(ctx.spdu.user_data))

    def _a_cd_ind(self, ctx: Ctx) -> None:
        self._events.append(ev.CapabilityDataIndication(ctx.spdu.user_data))

    def _a_cd_cnf(self, ctx: Ctx) -> None:
        self._events.append(ev.CapabilityDataConfirm(ctx.spdu.user_data))

    def _a_give(self, ctx: Ctx) -> None:
        self._owned &= ~Token(ctx.args["tokens"])

    def _a_give_all(self, ctx: Ctx) -> None:
        self._owned = Token(0)

    def _a_gt_ind(self, ctx: Ctx) -> None:
        tokens = _tokens(ctx.spdu)
        self._owned |= tokens
        self._events.append(ev.TokenGiveIndication(tokens))

    def _a_pt_ind(self, ctx: Ctx) -> None:
        self._events.append(ev.TokenPleaseIndication(_tokens(ctx.spdu), ctx.spdu.user_data))

    def _a_gtc_ind(self, ctx: Ctx) -> None:
        self._owned = self._available
        self._out.append(self._encode(make(GiveTokensAck)))
        self._events.append(ev.ControlGiveIndication())

    # ------------------------------------------------------------ actions: synchronization

    def _sync_point_sent(self) -> None:
        """Table A-4, SSYNmreq / SSYNMreq / SACTEreq."""
        if self._vsc:
            self._va = self._vm
        self._vm += 1
        self._vsc = False

    def _a_mip_sent(self, ctx: Ctx) -> None:
        self._sync_point_sent()

    def _a_mip_ind(self, ctx: Ctx) -> None:
        """Table A-4, MIP SPDU."""
        serial = self._vm
        if not self._vsc:
            self._va = self._vm
        self._vm += 1
        self._vsc = True
        confirm = not (ctx.spdu.sync_type or 0) & 1
        self._events.append(ev.MinorSyncIndication(serial, confirm, ctx.spdu.user_data))

    def _a_mia_sent(self, ctx: Ctx) -> None:
        self._va = ctx.args["serial"] + 1

    def _a_mia_cnf(self, ctx: Ctx) -> None:
        self._va = ctx.spdu.serial_number + 1
        self._events.append(ev.MinorSyncConfirm(ctx.spdu.serial_number, ctx.spdu.user_data))

    def _a_map_sent(self, ctx: Ctx) -> None:
        self._sync_point_sent()

    def _major_point_received(self) -> int:
        """Table A-4, MAP / AE SPDU."""
        serial = self._vm
        if not self._vsc:
            self._va = self._vm
        self._vm += 1
        return serial

    def _a_map_ind(self, ctx: Ctx) -> None:
        serial = self._major_point_received()
        self._events.append(ev.MajorSyncIndication(serial, ctx.spdu.user_data))

    def _major_acked(self) -> None:
        """Table A-4, SSYNMrsp / SACTErsp / MAA / AEA."""
        self._va = self._vm
        self._vr = self._vm

    def _a_maa_sent(self, ctx: Ctx) -> None:
        self._major_acked()

    def _a_maa_cnf(self, ctx: Ctx) -> None:
        self._major_acked()
        self._events.append(ev.MajorSyncConfirm(ctx.spdu.serial_number, ctx.spdu.user_data))

    def _a_ae_sent(self, ctx: Ctx) -> None:
        self._sync_point_sent()
        self._end_pending = True

    def _a_ae_ind(self, ctx: Ctx) -> None:
        serial = self._major_point_received()
        self._events.append(ev.ActivityEndIndication(serial, ctx.spdu.user_data))

    def _a_aea_sent(self, ctx: Ctx) -> None:
        self._major_acked()
        self._vact = False

    def _a_aea_cnf(self, ctx: Ctx) -> None:
        self._major_acked()
        self._vact = False
        self._end_pending = False
        self._events.append(ev.ActivityEndConfirm(ctx.spdu.serial_number, ctx.spdu.user_data))

    # ------------------------------------------------------------ actions: resynchronize

    def _a_rs_sent(self, ctx: Ctx) -> None:
        args = ctx.args
        self._resync = Resync(True, args["type"], args["serial"], dict(args["tokens"]))

    def _a_rs_ind(self, ctx: Ctx) -> None:
        spdu = ctx.spdu
        kind = ResyncType(spdu.resync_type)
        tokens = decode_token_setting(spdu.token_setting, self._available)
        if spdu.token_setting is None:
            tokens = self._current_setting(mine=False)
        self._resync = Resync(False, kind, spdu.serial_number, tokens)
        if kind == ResyncType.ABANDON:
            self._vm = max(spdu.serial_number, self._vm)
        self._end_pending = False
        self._assembler = type(self._assembler)()
        self._events.append(ev.ResyncIndication(kind, spdu.serial_number, tokens, spdu.user_data))

    def _current_setting(self, *, mine: bool) -> dict[Token, TokenSetting]:
        """Today's token placement as a setting, INITIATOR meaning the resync requestor."""
        out: dict[Token, TokenSetting] = {}
        for token in TOKEN_SHIFT:
            if self._available & token:
                here = bool(self._owned & token)
                out[token] = TokenSetting.INITIATOR if here == mine else TokenSetting.RESPONDER
        return out

    def _resynced(self, serial: int, owned: Token) -> None:
        """Table A-4, SRSYNrsp / RA SPDU."""
        assert self._resync is not None
        kind = self._resync.type
        self._va = self._vm = serial
        if kind != ResyncType.RESTART:
            self._vr = 0
        self._owned = owned & self._available
        self._resync = None
        self._end_pending = False

    def _a_ra_sent(self, ctx: Ctx) -> None:
        self._resynced(ctx.args["serial"], ctx.args["owned"])

    def _a_ra_cnf(self, ctx: Ctx) -> None:
        assert self._resync is not None
        spdu = ctx.spdu
        chosen = Token(0)
        if spdu.token_setting is not None:
            # RA's setting is the acceptor's choice, seen from the requestor (00 = requestor).
            for token, value in decode_token_setting(spdu.token_setting, self._available).items():
                if value == TokenSetting.RESPONDER:
                    chosen |= token
        owned = Token(0)
        for token, value in self._resync.tokens.items():
            if value == TokenSetting.INITIATOR or (
                value == TokenSetting.CALLED_CHOICE and not chosen & token
            ):
                owned |= token
        self._resynced(spdu.serial_number, owned)
        self._assembler = type(self._assembler)()
        self._events.append(ev.ResyncConfirm(spdu.serial_number, self._owned, spdu.user_data))

    # ------------------------------------------------------------ actions: activities

    def _a_as_sent(self, ctx: Ctx) -> None:
        self._vact = True
        self._activity_id = ctx.args["activity_id"]
        self._va = self._vm = self._vr = 1

    def _a_as_ind(self, ctx: Ctx) -> None:
        self._vact = True
        self._activity_id = ctx.spdu.activity_id
        self._va = self._vm = self._vr = 1
        self._events.append(ev.ActivityStartIndication(ctx.spdu.activity_id, ctx.spdu.user_data))

    def _a_ar_sent(self, ctx: Ctx) -> None:
        self._vact = True
        self._activity_id = ctx.args["activity_id"]
        self._va = self._vm = ctx.args["serial"] + 1
        self._vr = 1

    def _a_ar_ind(self, ctx: Ctx) -> None:
        spdu = ctx.spdu
        link = spdu.linking
        self._vact = True
        self._activity_id = spdu.activity_id
        self._va = self._vm = link.serial_number + 1
        self._vr = 1
        self._events.append(
            ev.ActivityResumeIndication(
                spdu.activity_id, link.old_activity_id, link.serial_number, link, spdu.user_data
            )
        )

    def _a_ai_ind(self, ctx: Ctx) -> None:
        self._resync = None
        self._events.append(ev.ActivityInterruptIndication(ctx.spdu.reason, ctx.spdu.user_data))

    def _a_ad_ind(self, ctx: Ctx) -> None:
        self._resync = None
        self._events.append(ev.ActivityDiscardIndication(ctx.spdu.reason, ctx.spdu.user_data))

    def _a_act_over_peer(self, ctx: Ctx) -> None:
        """AIA/ADA sent: the activity is over; every token goes to the requestor."""
        self._vact = False
        self._activity_id = None
        self._owned = Token(0)
        self._end_pending = False

    def _act_over_mine(self) -> None:
        self._vact = False
        self._activity_id = None
        self._owned = self._available
        self._end_pending = False
        self._resync = None

    def _a_aia_cnf(self, ctx: Ctx) -> None:
        self._act_over_mine()
        self._events.append(ev.ActivityInterruptConfirm(ctx.spdu.user_data))

    def _a_ada_cnf(self, ctx: Ctx) -> None:
        self._act_over_mine()
        self._events.append(ev.ActivityDiscardConfirm(ctx.spdu.user_data))

    # ------------------------------------------------------------ actions: exceptions

    def _a_ed_ind(self, ctx: Ctx) -> None:
        self._events.append(ev.UserExceptionReportIndication(ctx.spdu.reason, ctx.spdu.user_data))

    def _a_er_ind(self, ctx: Ctx) -> None:
        self._events.append(ev.ProviderExceptionReportIndication(ctx.spdu.reflect))

    # ------------------------------------------------------------ actions: release

    def _a_fn_ind(self, ctx: Ctx) -> None:
        fn = ctx.spdu if isinstance(ctx.spdu, Finish) else self._kept_fn
        self._kept_fn = None
        self._events.append(ev.ReleaseIndication(fn.user_data if fn is not None else None))

    def _a_keep_fn(self, ctx: Ctx) -> None:
        self._kept_fn = ctx.spdu

    def _a_collide(self, ctx: Ctx) -> None:
        self._collision = True

    def _a_dn_cnf(self, ctx: Ctx) -> None:
        self._collision = False
        self._events.append(ev.ReleaseConfirm(True, ctx.spdu.user_data))

    def _a_nf_cnf(self, ctx: Ctx) -> None:
        self._events.append(ev.ReleaseConfirm(False, ctx.spdu.user_data))
