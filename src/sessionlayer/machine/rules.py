"""The predicates (``_p_*``) and actions (``_a_*``) that table rows name.

Predicates read the variables and the input; actions change variables, queue SPDUs and
report events.  The serial-number arithmetic (Table A-4) is in ``sync.py``; the token rules
here follow X.225 5.6 and 7.16-7.19, connect data overflow 7.1-7.3.  Nothing here chooses a
next state: the table does.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..errors import AbortReason, EncodeError, RefuseReason
from ..spdu.codec import encode_tsdu
from ..spdu.codes import DEFAULT_REQUIREMENTS, Enclosure, FunctionalUnit, PrepareType, Token
from ..spdu.segment import segment
from ..spdu.types import (
    Accept,
    Connect,
    ConnectDataOverflow,
    Finish,
    GiveTokensAck,
    Refuse,
)
from . import events as ev
from ._make import make
from .config import tokens_for, unit_flag
from .core import RESTRICTION, Ctx
from .negotiation import (
    check_connect,
    decode_token_setting,
    offered_versions,
    overflow_accept,
    read_received_accept,
)
from .sync import _Sync

__all__ = ["_Rules"]

FU = FunctionalUnit
#: A CDO's size when the OA named no TSDU maximum size (its LI must stay under 65536).
CDO_CHUNK = 65000
#: The most user data an SPDU carries in protocol version 1 (X.225 8.3; the AC's, 8.3.2).
V1_USER_DATA_MAX = 512
#: EXPEDITED DATA SPDUs held in STA15A until the MAA or AEA (X.225 7.26): past it, AB 0x11.
EX_HELD_MAX = 16


def _tokens(spdu: Any) -> Token:
    return Token(getattr(spdu, "tokens", None) or 0)


class _Rules(_Sync):
    """Predicates and actions, by the names the state table uses."""

    __slots__ = ()

    # ------------------------------------------------------------ predicates: units

    def _p_fu_expedited(self, ctx: Ctx) -> bool:
        return bool(self._fu & FU.EXPEDITED)

    def _p_fu_typed(self, ctx: Ctx) -> bool:
        return bool(self._fu & FU.TYPED_DATA)

    def _p_fu_cd(self, ctx: Ctx) -> bool:
        return bool(self._fu & FU.CAPABILITY_DATA)

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

    def _p_aea_crossed(self, ctx: Ctx) -> bool:
        """No activity now, and the AEA that ended it was ours and the last the peer may
        not have seen (see _crossed)."""
        return not self._vact and self._crossed is not None

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

    # ------------------------------------------------------------ predicates: connect, PR

    def _p_cn_ok(self, ctx: Ctx) -> bool:
        return check_connect(ctx.spdu, self.config) is None

    def _p_ac_ok(self, ctx: Ctx) -> bool:
        """The AC is acceptable; one that selects version 1 carries at most 512 octets of
        user data (the TSDU was decoded under the version-2 limits, before the version was
        known)."""
        result = read_received_accept(ctx.spdu, self.config)
        if result is None:
            return False
        return result.version != 1 or len(ctx.spdu.user_data or b"") <= V1_USER_DATA_MAX

    def _p_cn_overflow(self, ctx: Ctx) -> bool:
        """p204: the CN says more than 10240 octets of user data follow (Data Overflow)."""
        return bool((ctx.spdu.data_overflow or 0) & 1)  # bit 1; bits 2-8 reserved

    def _p_overflow(self, ctx: Ctx) -> bool:
        """p204 at the initiator: CN user data remains for CDOs."""
        return bool(ctx.args.get("overflow") or self._overflow_rest)

    def _p_cdo_room(self, ctx: Ctx) -> bool:
        """The CN's user data and every CDO's so far stay within ``max_connect_data``."""
        first = len(self._peer_cn.user_data or b"") if self._peer_cn is not None else 0
        size = first + self._overflow_size + len(ctx.spdu.user_data or b"")
        return size <= self.config.max_connect_data

    def _p_cdo_end(self, ctx: Ctx) -> bool:
        """p202: the CDO carries the end of the user data (Enclosure Item bit 2)."""
        return bool((ctx.spdu.enclosure or 0) & Enclosure.END)

    def _p_oa_ok(self, ctx: Ctx) -> bool:
        return bool(ctx.spdu.version & 2)

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
        if ctx.exp:  # (rare: the expedited queue is made only for what goes on it)
            self._out_exp.extend(ctx.exp)

    def _a_start_tim(self, ctx: Ctx) -> None:
        self._start_tim()

    def _a_tdisreq(self, ctx: Ctx) -> None:
        self._tdis = True

    def _a_discard(self, ctx: Ctx) -> None:
        pass

    def _a_tdis_ind(self, ctx: Ctx) -> None:
        lost = ev.ProviderAbortIndication(
            AbortReason.TRANSPORT_RELEASED, "transport disconnected", lost=True
        )
        self._events.append(lost)

    def _a_ab_ind(self, ctx: Ctx) -> None:
        spdu = ctx.spdu
        td = spdu.transport_disconnect
        if td is None or td & AbortReason.USER_ABORT:
            self._events.append(ev.UserAbortIndication(spdu.user_data))
        else:
            self._events.append(ev.ProviderAbortIndication(AbortReason(td), _peer_abort(td)))

    # ------------------------------------------------------------ actions: connect

    def _a_send_cn(self, ctx: Ctx) -> None:
        self._out.append(self._cn_bytes)

    def _a_keep_cn(self, ctx: Ctx) -> None:
        """[50]: keep the CN until the overflow data is complete."""
        self._peer_cn = ctx.spdu
        self._overflow_in, self._overflow_size = [], 0

    def _a_send_oa(self, ctx: Ctx) -> None:
        oa = overflow_accept(ctx.spdu, self.config)
        self._out.append(encode_tsdu(oa, version=2))

    def _a_keep_cdo(self, ctx: Ctx) -> None:
        data = ctx.spdu.user_data or b""
        if self._overflow_in is None:
            self._overflow_in = []
        self._overflow_in.append(data)
        self._overflow_size += len(data)

    def _a_send_cdo(self, ctx: Ctx) -> None:
        """[51]: the rest of the CN user data in CDOs, each within the OA's TSDU size."""
        i2r = (ctx.spdu.tsdu_max_size or (0, 0))[0]
        limit = min(x for x in (i2r, self.config.tsdu_max_send, CDO_CHUNK) if x)
        cdo = make(ConnectDataOverflow, user_data=self._overflow_rest)
        try:
            pieces = segment(cdo, limit, version=2)
        except EncodeError:  # an OA size too small for any data: send what the LI allows
            pieces = segment(cdo, CDO_CHUNK, version=2)
        if len(pieces) == 1:
            pieces = [dataclasses.replace(cdo, enclosure=int(Enclosure.BEGIN | Enclosure.END))]
        self._out.extend(encode_tsdu(piece, version=2) for piece in pieces)
        self._overflow_rest = b""

    def _a_conn_ind(self, ctx: Ctx) -> None:
        kept = ctx.spdu if isinstance(ctx.spdu, Connect) else self._peer_cn
        assert kept is not None
        cn: Connect = kept
        if self._overflow_in:
            whole = (cn.user_data or b"") + b"".join(self._overflow_in)
            cn = dataclasses.replace(cn, user_data=whole)
            self._overflow_in, self._overflow_size = None, 0
        self._peer_cn = cn
        self._peer_connection_id = cn.connection_id
        self._peer_user_data = cn.user_data
        item = cn.item
        proposed = unit_flag(
            cn.requirements if cn.requirements is not None else DEFAULT_REQUIREMENTS
        )

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
                second_initial_serial=item.second_initial_serial if item else None,
            )
        )

    def _a_refuse_big(self, ctx: Ctx) -> None:
        """RF 0x86: more connect data overflow than ``max_connect_data`` (7.3, 7.5)."""
        self._overflow_in, self._overflow_size, self._peer_cn = None, 0, None
        reason = int(RefuseReason.IMPLEMENTATION_RESTRICTION)
        rf = make(Refuse, transport_disconnect=1, reason=reason)
        self._out.append(encode_tsdu(rf, version=2))

    def _a_no_overflow(self, ctx: Ctx) -> None:
        """AC while OA was awaited: the responder ignored Data Overflow (PI 60), so the rest
        of the connect data cannot be sent (7.1, 7.2)."""
        self._overflow_rest = b""
        self._protocol_error(
            "the responder does not implement connect data overflow (it accepted without OA)",
            encode_tsdu(ctx.spdu, version=2)[:9],
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
        result = read_received_accept(ac, self.config)
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
                second_initial_serial=self._second_initial_serial,
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

    def _p_ex_room(self, ctx: Ctx) -> bool:
        return len(self._held_ex) < EX_HELD_MAX

    def _a_hold_ex(self, ctx: Ctx) -> None:
        """[10]: an EX after the peer's PREPARE (MAA) was sent after its MAA or AEA."""
        self._held_ex = (*self._held_ex, ctx.spdu.user_data)

    def _a_recall_ex(self, ctx: Ctx) -> None:
        """[6]: the EXs held since the PREPARE, indicated after the MAA's (AEA's) confirm."""
        held, self._held_ex = self._held_ex, ()
        for data in held:
            self._events.append(ev.ExpeditedDataIndication(data))

    def _a_drop_ex(self, ctx: Ctx) -> None:
        self._held_ex = ()

    def _a_ex_over(self, ctx: Ctx) -> None:
        self._protocol_error(
            f"more than {EX_HELD_MAX} EXPEDITED DATA SPDUs after the PREPARE, ahead of its"
            " MAJOR SYNC ACK or ACTIVITY END ACK",
            encode_tsdu(ctx.spdu, version=self._version)[:9],
            RESTRICTION,
        )

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
        self._events.append(ev.TokenGiveIndication(tokens, ctx.spdu.user_data))

    def _a_pt_ind(self, ctx: Ctx) -> None:
        self._events.append(ev.TokenPleaseIndication(_tokens(ctx.spdu), ctx.spdu.user_data))

    def _a_gtc_ind(self, ctx: Ctx) -> None:
        self._owned = self._available
        self._out.append(self._encode(make(GiveTokensAck)))
        self._events.append(ev.ControlGiveIndication())

    # ------------------------------------------------------------ actions: activities

    def _a_as_sent(self, ctx: Ctx) -> None:
        self._vact = True
        self._activity_id = ctx.args["activity_id"]
        self._set_serials(1)

    def _a_as_taken(self, ctx: Ctx) -> None:
        """AS: Vact and the serial numbers ([12], [26]), also where it is not indicated."""
        self._vact = True
        self._activity_id = ctx.spdu.activity_id
        self._set_serials(1)

    def _a_as_ind(self, ctx: Ctx) -> None:
        self._a_as_taken(ctx)
        self._events.append(ev.ActivityStartIndication(ctx.spdu.activity_id, ctx.spdu.user_data))

    def _a_ar_sent(self, ctx: Ctx) -> None:
        self._vact = True
        self._activity_id = ctx.args["activity_id"]
        self._set_serials(ctx.args["serial"] + 1)

    def _a_ar_taken(self, ctx: Ctx) -> None:
        """AR: Vact and the serial numbers ([12], [27]), also where it is not indicated."""
        self._vact = True
        self._activity_id = ctx.spdu.activity_id
        self._set_serials(ctx.spdu.linking.serial_number + 1)

    def _a_ar_ind(self, ctx: Ctx) -> None:
        spdu = ctx.spdu
        link = spdu.linking
        self._a_ar_taken(ctx)
        self._events.append(
            ev.ActivityResumeIndication(
                spdu.activity_id, link.old_activity_id, link.serial_number, link, spdu.user_data
            )
        )

    def _a_reopen(self, ctx: Ctx) -> None:
        """The activity our AEA ended goes on: the peer's request that crossed it wins."""
        self._vact = True

    def _a_ai_ind(self, ctx: Ctx) -> None:
        self._crossed = None  # (nothing that crossed our MAA or AEA can come now)
        self._resync = None
        self._events.append(ev.ActivityInterruptIndication(ctx.spdu.reason, ctx.spdu.user_data))

    def _a_ad_ind(self, ctx: Ctx) -> None:
        self._crossed = None  # (nothing that crossed our MAA or AEA can come now)
        self._resync = None
        self._events.append(ev.ActivityDiscardIndication(ctx.spdu.reason, ctx.spdu.user_data))

    def _a_act_over_peer(self, ctx: Ctx) -> None:
        """AIA/ADA sent: the activity is over; every token goes to the requestor."""
        self._vact = False
        self._activity_id = None
        self._owned = Token(0)
        self._end_pending = False
        self._crossed = None  # (nothing that crossed our MAA or AEA can come now)

    def _act_over_mine(self) -> None:
        self._vact = False
        self._activity_id = None
        self._owned = self._available
        self._end_pending = False
        self._resync = None
        self._crossed = None  # (nothing that crossed our MAA or AEA can come now)

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


def _peer_abort(td: int) -> str:
    """What an AB from the peer's session layer says, in words (its Transport Disconnect)."""
    if td & AbortReason.PROTOCOL_ERROR:
        why = "protocol error: it did not take what was sent"
    elif td & AbortReason.IMPLEMENTATION_RESTRICTION:
        why = "implementation restriction: something was over one of its limits, such as a"
        why += " message larger than its largest TSDU"
    elif td & AbortReason.NO_REASON:
        why = "no reason given"
    else:
        return "AB from the peer"
    return f"AB from the peer ({why}; Transport Disconnect 0x{td:02x})"
