"""The X.225 state table, as data.

Everything that moves the session protocol machine is in this file; the file does not know
which role it plays.  Each row is keyed by (state, input) and says: when (predicates, all of
which must hold; ``!name`` negates), do (actions, in order) and next (the new state, or
``SAME``).  Rows with the same key are tried in order; the first whose predicates hold wins.

A (state, input) pair with no row, or whose rows all fail, is invalid:

* a user request (``S...req`` / ``S...rsp``) raises a :class:`~sessionlayer.errors.LocalError`
  subclass chosen from the failing predicate (``PREDICATE_KINDS``) and sends nothing;
* an SPDU or transport event is a protocol error: AB with Transport Disconnect = 0x05 is
  queued, ``ProviderAbortIndication`` reported, and the machine goes to STA16 (or, when
  exception reports are configured, PT + ER and STA20 for the cases ``ER_STATES`` x
  ``ER_INPUTS`` name, X.225 7.27).

State names are those of X.225 Annex A (STA01D and STA02B, connect data overflow, from the
version-2 table); ``ref`` names the state table entry's state and the clause of section 7
whose element of procedure the row implements (7.x), plus Table A-4 or the numbered action
([nn]) when the row updates the synchronization point variables.  Input names follow Annex A
too: ``SDTreq`` is an S-DATA request, ``SSYNmdreq`` an S-SYNC-MINOR request with data
separation, ``SRELrsp+`` a positive S-RELEASE response, ``DT`` a received DATA TRANSFER SPDU,
``MIP-d`` a MINOR SYNC POINT with data separation, ``TDISind`` a T-DISCONNECT indication,
``TIM`` timer expiry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = [
    "Row",
    "SAME",
    "STATES",
    "USER_INPUTS",
    "SPDU_INPUTS",
    "TRANSPORT_INPUTS",
    "INPUTS",
    "PREDICATE_KINDS",
    "ER_STATES",
    "ER_INPUTS",
    "TABLE",
    "ROWS",
]

SAME: Final = "="

#: X.225 Annex A states used here, with their names.
STATES: Final[dict[str, str]] = {
    "STA01": "Idle, no transport connection",
    "STA01B": "Wait for T-CONNECT confirm",
    "STA01C": "Idle, transport connected",
    "STA01D": "Wait for the CONNECT DATA OVERFLOW SPDU",
    "STA02A": "Wait for the ACCEPT SPDU",
    "STA02B": "Wait for the OVERFLOW ACCEPT SPDU",
    "STA03": "Wait for the DISCONNECT SPDU",
    "STA04A": "Wait for the MAJOR SYNC ACK SPDU or PREPARE SPDU",
    "STA04B": "Wait for the ACTIVITY END ACK SPDU or PREPARE SPDU",
    "STA05A": "Wait for the RESYNCHRONIZE ACK SPDU or PREPARE SPDU",
    "STA05B": "Wait for the ACTIVITY INTERRUPT ACK SPDU or PREPARE SPDU",
    "STA05C": "Wait for the ACTIVITY DISCARD ACK SPDU or PREPARE SPDU",
    "STA08": "Wait for S-CONNECT response",
    "STA09": "Wait for S-RELEASE response",
    "STA10A": "Wait for S-SYNC-MAJOR response",
    "STA10B": "Wait for S-ACTIVITY-END response",
    "STA11A": "Wait for S-RESYNCHRONIZE response",
    "STA11B": "Wait for S-ACTIVITY-INTERRUPT response",
    "STA11C": "Wait for S-ACTIVITY-DISCARD response",
    "STA15A": "After PREPARE, wait for MAJOR SYNC ACK or ACTIVITY END ACK SPDU",
    "STA15B": "After PREPARE, wait for RESYNCHRONIZE, ACTIVITY INTERRUPT or DISCARD SPDU",
    "STA15C": "After PREPARE, wait for RESYNCHRONIZE ACK SPDU",
    "STA15D": "After PREPARE, wait for ABORT SPDU",
    "STA16": "Wait for T-DISCONNECT indication",
    "STA18": "Wait for GIVE TOKENS ACK SPDU",
    "STA19": "Wait for a recovery request",
    "STA20": "Wait for a recovery SPDU",
    "STA21": "Wait for CAPABILITY DATA ACK SPDU",
    "STA22": "Wait for S-CAPABILITY-DATA response",
    "STA713": "Data transfer state",
}

USER_INPUTS: Final = (
    "SCONreq", "SCONrsp+", "SCONrsp-", "SDTreq", "STDreq", "SEXreq", "SCDreq", "SCDrsp",
    "SGTreq", "SPTreq", "SCGreq", "SSYNmreq", "SSYNmdreq", "SSYNmrsp", "SSYNMreq", "SSYNMrsp",
    "SRSYNreq", "SRSYNrsp", "SUERreq", "SACTSreq", "SACTRreq", "SACTIreq", "SACTIrsp",
    "SACTDreq", "SACTDrsp", "SACTEreq", "SACTErsp", "SRELreq", "SRELrsp+", "SRELrsp-",
    "SUABreq",
)  # fmt: skip

SPDU_INPUTS: Final = (
    "CN", "OA", "CDO", "AC", "RF", "FN", "DN", "NF", "AB", "AA", "DT", "EX", "TD", "CD", "CDA",
    "GT", "PT", "GTC", "GTA", "MIP", "MIP-d", "MIA", "MAP", "MAA", "RS", "RA", "PR", "ER", "ED",
    "AS", "AR", "AI", "AIA", "AD", "ADA", "AE", "AEA",
)  # fmt: skip

TRANSPORT_INPUTS: Final = ("TCONind", "TCONcnf", "TDISind", "TIM")

INPUTS: Final = USER_INPUTS + SPDU_INPUTS + TRANSPORT_INPUTS

#: What kind of local error a failing predicate means for a user request.
PREDICATE_KINDS: Final[dict[str, str]] = {
    **{p: "fu" for p in (
        "fu_expedited", "fu_typed", "fu_cd", "fu_sync", "fu_major", "fu_resync",
        "fu_activity", "fu_exceptions", "fu_negrel", "fu_ds", "fu_ss",
    )},
    **{p: "token" for p in (
        "own_data", "own_minor", "own_major", "own_release", "own_all", "own_given",
        "want_tokens", "lack_data", "give_data",
    )},
    **{p: "state" for p in (
        "tc_up", "in_act", "no_act", "act_ok", "initiator", "collision", "pending_fn",
    )},
    **{p: "param" for p in ("sn_room", "mia_args", "rs_args", "ra_args", "overflow")},
    # Predicates on received SPDUs (a failure is a protocol error).
    **{p: "remote" for p in (
        "peer_data", "peer_minor", "peer_major", "peer_release", "peer_all", "cn_ok", "ac_ok",
        "gt_ok", "pt_ok", "mip_ok", "mia_ok", "map_ok", "maa_ok", "ae_ok", "rs_ok", "rs_wins",
        "ar_ok",
        "ra_ok", "pr_maa", "pr_rs", "pr_ra", "pr_ab", "gt_data", "no_release_token",
        "cn_overflow", "cdo_room", "cdo_end", "oa_ok", "ds_clear", "ds_keep", "aea_crossed",
        "ex_room",
    )},
}  # fmt: skip


@dataclass(frozen=True)
class Row:
    """One entry of the state table."""

    state: str
    input: str
    when: tuple[str, ...]
    do: tuple[str, ...]
    next: str
    ref: str


# (state, input, predicates, actions, next state, reference).  Predicates and actions are
# space-separated names: predicate ``p`` is SessionMachine._p_p, action ``a`` is _a_a.
_R = tuple[str, str, str, str, str, str]

_CONNECT: list[_R] = [
    ("STA01", "SCONreq", "tc_up overflow", "send", "STA02B", "STA01; 7.1 (Data Overflow)"),
    ("STA01", "SCONreq", "tc_up", "send", "STA02A", "STA01; 7.1"),
    ("STA01", "SCONreq", "", "", "STA01B", "STA01; 6.1 (T-CONNECT request by the binding)"),
    ("STA01", "TCONind", "", "", "STA01C", "STA01; 6.1"),
    ("STA01", "TDISind", "", "", "STA01", "STA01; 6.6"),
    *[
        row
        for st in ("STA01", "STA01C")
        for row in (
            (st, "CN", "cn_overflow cn_ok", "keep_cn send_oa", "STA01D", f"{st}; 7.1, 7.2"),
            (st, "CN", "cn_ok", "conn_ind", "STA08", f"{st}; 7.1"),
            (st, "CN", "", "refuse_spm start_tim", "STA16", f"{st}; 7.5"),
        )
    ],
    ("STA01B", "TCONcnf", "overflow", "send_cn", "STA02B", "STA01B; 7.1 (Data Overflow)"),
    ("STA01B", "TCONcnf", "", "send_cn", "STA02A", "STA01B; 7.1"),
    ("STA01B", "TDISind", "", "tdis_ind", "STA01", "STA01B; 6.6"),
    ("STA01B", "SUABreq", "", "tdisreq", "STA01", "STA01B; 7.9"),
    ("STA01C", "TDISind", "", "", "STA01", "STA01C; 6.6"),
    # Connect data overflow (7.2, 7.3): OA answers the CN, CDOs carry the rest of its data.
    ("STA01D", "CDO", "cdo_room !cdo_end", "keep_cdo", SAME, "STA01D; 7.3"),
    ("STA01D", "CDO", "cdo_room", "keep_cdo conn_ind", "STA08", "STA01D; 7.3"),
    ("STA01D", "CDO", "", "refuse_big start_tim", "STA16", "STA01D; 7.3, 7.5 (over the limit)"),
    ("STA01D", "AB", "", "tdisreq", "STA01", "STA01D; 7.9"),
    ("STA01D", "TDISind", "", "", "STA01", "STA01D; 6.6"),
    ("STA02B", "OA", "oa_ok", "send_cdo", "STA02A", "STA02B; 7.2, 7.3"),
    ("STA02B", "RF", "", "refuse_cnf tdisreq", "STA01", "STA02B; 7.5"),
    ("STA02B", "AC", "", "no_overflow", SAME, "STA02B; 7.2 (AC without OA: AB, STA16)"),
    ("STA02A", "AC", "ac_ok", "conn_cnf", "STA713", "STA02A; 7.4, Table A-4 (AC)"),
    ("STA02A", "RF", "", "refuse_cnf tdisreq", "STA01", "STA02A; 7.5"),
    ("STA08", "SCONrsp+", "", "accept send", "STA713", "STA08; 7.4, Table A-4 (SCONrsp)"),
    ("STA08", "SCONrsp-", "", "send start_tim", "STA16", "STA08; 7.5"),
]

_DATA_TRANSFER: list[_R] = [
    # Data, typed data, capability data (7.11, 7.13, 7.14, 7.15).
    ("STA713", "SDTreq", "own_data act_ok", "send", SAME, "STA713; 7.11"),
    ("STA713", "DT", "peer_data act_ok", "data_ind", SAME, "STA713; 7.11"),
    ("STA713", "STDreq", "fu_typed", "send", SAME, "STA713; 7.13"),
    ("STA713", "TD", "fu_typed", "typed_ind", SAME, "STA713; 7.13"),
    ("STA713", "SCDreq", "fu_cd no_act own_all", "send", "STA21", "STA713; 7.14"),
    ("STA713", "CD", "fu_cd no_act peer_all", "cd_ind", "STA22", "STA713; 7.14"),
    ("STA21", "CDA", "", "cd_cnf", "STA713", "STA21; 7.15"),
    ("STA22", "SCDrsp", "", "send", "STA713", "STA22; 7.15"),
    # Tokens (7.16 - 7.19).
    ("STA713", "SGTreq", "own_given", "send give", SAME, "STA713; 7.16"),
    ("STA713", "GT", "gt_ok", "gt_ind", SAME, "STA713; 7.16"),
    ("STA713", "SPTreq", "want_tokens", "send", SAME, "STA713; 7.17"),
    ("STA713", "PT", "pt_ok", "pt_ind", SAME, "STA713; 7.17"),
    # A PT is indicated too while this end waits for the confirm of a major sync point,
    # activity end, give control or capability data of its own (the user may give the
    # tokens once the machine is back in STA713).  While a resync is under way (STA05A,
    # STA15B, STA15C) it is discarded (p185), unless a data separation point of ours is
    # unconfirmed (p81, as for DT: below); in STA05B, STA05C, STA19 and STA20 it is
    # discarded as well.
    *[
        (st, "PT", "pt_ok", "pt_ind", SAME, f"{st}; 7.17")
        for st in ("STA04A", "STA04B", "STA15A", "STA18", "STA21")
    ],
    ("STA19", "PT", "pt_ok", "discard", SAME, "STA19; 7.17, 7.27 (discarded)"),
    # Tokens may be given while a major sync point or activity end is outstanding, by
    # either side (the version-2 table's SGTreq row, p54: ALL(II, GT), and GT, p59:
    # ALL(AA, GT)), and the side that answers may ask for tokens meanwhile, as from STA09
    # and STA22 (SPTreq, p53); the PT is indicated in STA04A/04B/15A, STA03 and STA21 above.
    *[
        (st, "SGTreq", "own_given", "send give", SAME, f"{st}; 7.16")
        for st in ("STA04A", "STA04B", "STA15A", "STA10A", "STA10B")
    ],
    *[
        (st, "GT", "gt_ok", "gt_ind", SAME, f"{st}; 7.16 (a GT that crossed a MAP or AE)")
        for st in ("STA04A", "STA04B", "STA15A", "STA10A", "STA10B")
    ],
    *[
        (st, "SPTreq", "want_tokens", "send", SAME, f"{st}; 7.17")
        for st in ("STA10A", "STA10B", "STA09", "STA22")
    ],
    # The side that has to answer a major sync point or activity end may send data and
    # typed data before it answers (the version-2 table's SDTreq, p03, and STDreq, p06, in
    # STA10A and STA10B): its dialogue unit ends with its own response, and the other side
    # takes them before the MAA (AEA) in STA04A/04B, or STA15A after a PREPARE (DT, TD).
    *[
        row
        for st in ("STA10A", "STA10B")
        for row in (
            (st, "SDTreq", "own_data act_ok", "send", SAME, f"{st}; 7.11 (before the answer)"),
            (st, "STDreq", "fu_typed", "send", SAME, f"{st}; 7.13 (before the answer)"),
        )
    ],
    ("STA713", "SCGreq", "fu_activity no_act own_all", "send give_all", "STA18", "STA713; 7.18"),
    ("STA713", "GTC", "fu_activity no_act peer_all", "gtc_ind", SAME, "STA713; 7.18, 7.19"),
    ("STA18", "GTA", "", "", "STA713", "STA18; 7.19"),
    # Typed data needs no token: the peer's TD may cross our GTC or CD (the version-2
    # table's TD rows in STA18 and STA21, p06).
    *[
        (st, "TD", "fu_typed", "typed_ind", SAME, f"{st}; 7.13 (a TD that crossed our {spdu})")
        for st, spdu in (("STA18", "GTC"), ("STA21", "CD"))
    ],
    # (The version-2 table also takes DT in STA18 and STA21 under FU(FD), p70.  Both states
    # exist only with activity management and outside an activity (SCGreq and SCDreq need
    # no_act; capability data needs the activity unit), where X.215 allows no S-DATA and
    # STA713 refuses a DT (act_ok): a DT there is a protocol error as it is in STA713, so
    # these states have no DT row.)
    # Minor synchronize (7.20, 7.21); with symmetric synchronize each direction has its own
    # serial numbers (the predicates and actions follow FU(SS), Table A-4 and [62]-[66]).
    (
        "STA713",
        "SSYNmreq",
        "fu_sync own_minor own_data act_ok sn_room",
        "send mip_sent",
        SAME,
        "STA713; 7.20, Table A-4 (SSYNmreq)",
    ),
    (
        "STA713",
        "SSYNmdreq",
        "fu_ds own_data act_ok sn_room",
        "send mip_sent ds_sent",
        SAME,
        "STA713; 7.20 (data separation), [42]",
    ),
    (
        "STA713",
        "MIP",
        "fu_sync peer_minor peer_data act_ok mip_ok",
        "mip_ind",
        SAME,
        "STA713; 7.20, Table A-4 (MIP)",
    ),
    (
        "STA713",
        "MIP-d",
        "fu_ds peer_data act_ok mip_ok",
        "mip_ind ds_rcvd",
        SAME,
        "STA713; 7.20 (data separation), [45]",
    ),
    (
        "STA713",
        "SSYNmrsp",
        "fu_sync mia_args",
        "send mia_sent",
        SAME,
        "STA713; 7.21, Table A-4 (SSYNmrsp)",
    ),
    ("STA713", "MIA", "fu_sync mia_ok", "mia_cnf", SAME, "STA713; 7.21, Table A-4 (MIA)"),
    # A minor sync ack or (symmetric synchronize) point crossing a major sync point.
    *[
        (st, "MIA", "fu_sync mia_ok !maa_ok", "mia_cnf", SAME, f"{st}; 7.21")
        for st in ("STA04A", "STA04B", "STA15A")
    ],
    *[
        (st, inp, f"{fu} fu_ss peer_data act_ok mip_ok", do, SAME, f"{st}; 7.20 (symmetric)")
        for st in ("STA04A", "STA04B")
        for inp, fu, do in (("MIP", "fu_sync", "mip_ind"), ("MIP-d", "fu_ds", "mip_ind ds_rcvd"))
    ],
    # Major synchronize (7.22, 7.23).
    (
        "STA713",
        "SSYNMreq",
        "fu_major own_major own_minor own_data act_ok sn_room",
        "send map_sent",
        "STA04A",
        "STA713; 7.22, Table A-4 (SSYNMreq)",
    ),
    (
        "STA713",
        "MAP",
        "fu_major peer_major act_ok map_ok",
        "map_ind",
        "STA10A",
        "STA713; 7.22, Table A-4 (MAP)",
    ),
    ("STA10A", "SSYNMrsp", "", "send maa_sent", "STA713", "STA10A; 7.23, Table A-4 (SSYNMrsp)"),
    ("STA04A", "MAA", "maa_ok", "maa_cnf", "STA713", "STA04A; 7.23, Table A-4 (MAA)"),
    ("STA15A", "MAA", "maa_ok", "maa_cnf recall_ex", "STA713", "STA15A; 7.23, 7.26, [6]"),
    # Exceptions (7.27, 7.28).
    # With activity management, only inside an activity ([not FU(ACT) or Vact], p50/p51).
    ("STA713", "SUERreq", "fu_exceptions act_ok lack_data", "send", "STA20", "STA713; 7.28"),
    ("STA713", "ED", "fu_exceptions act_ok own_data", "ed_ind", "STA19", "STA713; 7.28"),
    # The side without the data token sends ED; one that crossed a request of ours comes
    # while we wait for its answer (our MAP or AE, STA04A/04B; our FN, STA03), or after we
    # gave the data token away (the peer then takes our GT as its recovery): indicated,
    # and, while we hold the data token, this end recovers (STA19) as from STA713 (the
    # version-2 table's ED rows in STA03, STA04A and STA04B).
    *[
        row
        for st in ("STA04A", "STA04B", "STA03")
        for row in (
            (st, "ED", "fu_exceptions act_ok own_data", "ed_ind", "STA19", f"{st}; 7.28"),
            (st, "ED", "fu_exceptions act_ok", "ed_ind", SAME, f"{st}; 7.28 (data token given)"),
        )
    ],
    ("STA713", "ED", "fu_exceptions act_ok", "ed_ind", SAME, "STA713; 7.28 (data token given)"),
    ("STA713", "ER", "fu_exceptions", "er_ind", "STA19", "STA713; 7.27"),
    ("STA19", "SGTreq", "give_data", "send give", "STA713", "STA19; 7.16"),
    ("STA20", "GT", "gt_ok gt_data", "gt_ind", "STA713", "STA20; 7.16"),
    # A GT without the data token (one that crossed our ER or ED: the peer gave the release
    # token, say) is taken and indicated, and this end keeps waiting (p60), not a protocol
    # error.
    ("STA20", "GT", "gt_ok", "gt_ind", SAME, "STA20; 7.16 (a GT that crossed our ER or ED)"),
    # A sync point that crossed our ED or ER is not indicated, but numbers the dialogue as
    # it does on the peer's side, so that both agree on V(M) after the recovery (the
    # version-2 table's MIP, MAP and AE rows in STA20: [23], [31]); one that fails the
    # checks is discarded as before.
    ("STA20", "MIP", "fu_sync peer_minor peer_data act_ok mip_ok", "mip_taken", SAME,
     "STA20; 7.20, [23] (not indicated)"),
    ("STA20", "MAP", "fu_major peer_major act_ok map_ok", "map_taken", SAME,
     "STA20; 7.22, [31] (not indicated)"),
    ("STA20", "AE", "fu_activity in_act peer_major ae_ok", "map_taken", SAME,
     "STA20; 7.35, [31] (not indicated)"),
    *[
        ("STA20", inp, "", "discard", SAME, "STA20; 7.27 (discarded)")
        for inp in ("MIP", "MAP", "AE")
    ],
]

_RESYNC: list[_R] = [
    (
        "STA713",
        "SRSYNreq",
        "fu_resync act_ok rs_args",
        "send rs_sent",
        "STA05A",
        "STA713; 7.24, Table A-4 (SRSYNreq)",
    ),
    ("STA713", "RS", "fu_resync act_ok rs_ok", "rs_ind", "STA11A", "STA713; 7.24, Table A-4 (RS)"),
    (
        "STA11A",
        "SRSYNrsp",
        "ra_args",
        "send ra_sent",
        "STA713",
        "STA11A; 7.25, Table A-4 (SRSYNrsp)",
    ),
    ("STA05A", "RA", "ra_ok", "ra_cnf", "STA713", "STA05A; 7.25, Table A-4 (RA)"),
    ("STA15C", "RA", "ra_ok", "ra_cnf", "STA713", "STA15C; 7.25, 7.26"),
    # Resync collisions (7.24): the winner keeps waiting for RA, the loser answers.
    ("STA05A", "RS", "rs_ok rs_wins", "rs_ind", "STA11A", "STA05A; 7.24 (collision)"),
    ("STA05A", "RS", "rs_ok", "discard", SAME, "STA05A; 7.24 (collision, ours wins)"),
    # Resync and activity interrupt/discard take precedence over major sync / activity end.
    *[
        (st, "SRSYNreq", "fu_resync act_ok rs_args", "send rs_sent", "STA05A", f"{st}; 7.24")
        for st in ("STA04A", "STA04B", "STA10A", "STA10B", "STA19", "STA20")
    ],
    *[
        (st, "RS", "fu_resync rs_ok", "rs_ind", "STA11A", f"{st}; 7.24")
        for st in ("STA04A", "STA04B", "STA10A", "STA10B", "STA15B", "STA19", "STA20")
    ],
]

_ACTIVITY: list[_R] = [
    (
        "STA713",
        "SACTSreq",
        "fu_activity no_act own_major own_minor own_data",
        "send as_sent",
        SAME,
        "STA713; 7.29, Table A-4 (SACTSreq)",
    ),
    (
        "STA713",
        "AS",
        "fu_activity no_act peer_major",
        "as_ind",
        SAME,
        "STA713; 7.29, Table A-4 (AS)",
    ),
    (
        "STA713",
        "SACTRreq",
        "fu_activity no_act own_major own_minor own_data",
        "send ar_sent",
        SAME,
        "STA713; 7.30, Table A-4 (SACTRreq)",
    ),
    (
        "STA713",
        "AR",
        "fu_activity no_act peer_major ar_ok",
        "ar_ind",
        SAME,
        "STA713; 7.30, Table A-4 (AR)",
    ),
    (
        "STA713",
        "SACTEreq",
        "fu_activity in_act own_major own_minor own_data sn_room",
        "send ae_sent",
        "STA04B",
        "STA713; 7.35, Table A-4 (SACTEreq)",
    ),
    (
        "STA713",
        "AE",
        "fu_activity in_act peer_major ae_ok",
        "ae_ind",
        "STA10B",
        "STA713; 7.35, Table A-4 (AE)",
    ),
    ("STA10B", "SACTErsp", "", "send aea_sent", "STA713", "STA10B; 7.36, Table A-4 (SACTErsp)"),
    ("STA04B", "AEA", "maa_ok", "aea_cnf", "STA713", "STA04B; 7.36, Table A-4 (AEA)"),
    ("STA15A", "AEA", "maa_ok", "aea_cnf recall_ex", "STA713", "STA15A; 7.36, 7.26, [6]"),
    *[
        (st, "SACTIreq", "fu_activity in_act own_major", "send", "STA05B", f"{st}; 7.31")
        for st in ("STA713", "STA04A", "STA04B", "STA19", "STA20")
    ],
    *[
        (st, "SACTDreq", "fu_activity in_act own_major", "send", "STA05C", f"{st}; 7.33")
        for st in ("STA713", "STA04A", "STA04B", "STA19", "STA20")
    ],
    # Only the holder of the major/activity token interrupts or discards (7.31, 7.33; p40,
    # AA(ma)): from the other side, AI and AD are protocol errors.
    *[
        (st, "AI", "fu_activity in_act peer_major", "ai_ind", "STA11B", f"{st}; 7.31")
        for st in ("STA713", "STA05A", "STA10A", "STA10B", "STA15B", "STA19", "STA20")
    ],
    *[
        (st, "AD", "fu_activity in_act peer_major", "ad_ind", "STA11C", f"{st}; 7.33")
        for st in ("STA713", "STA05A", "STA10A", "STA10B", "STA15B", "STA19", "STA20")
    ],
    # The peer resynchronized, interrupted or discarded the activity while our AEA was on its
    # way (it may, from STA04B; it discards the AEA): its request takes precedence over the
    # activity end (7.24), so the activity is taken up again here and the request met.
    ("STA713", "RS", "fu_resync aea_crossed rs_ok", "reopen rs_ind", "STA11A",
     "STA713; 7.24 (an RS that crossed our AEA)"),
    ("STA713", "AI", "aea_crossed peer_major", "reopen ai_ind", "STA11B",
     "STA713; 7.31 (an AI that crossed our AEA)"),
    ("STA713", "AD", "aea_crossed peer_major", "reopen ad_ind", "STA11C",
     "STA713; 7.33 (an AD that crossed our AEA)"),
    # An AS or AR that crossed our ED or ER (STA20) is not indicated, but the activity is
    # under way on both sides, with its serial numbers ([12], [26], [27]), so that the
    # recovery (the peer's AI, AD or RS) finds it; after a PREPARE(RS) the version-2 table
    # indicates them (STA15B) before the RS that follows.
    *[
        row
        for st, ind in (("STA20", "taken"), ("STA15B", "ind"))
        for row in (
            (st, "AS", "fu_activity no_act peer_major", f"as_{ind}", SAME, f"{st}; 7.29, [26]"),
            (st, "AR", "fu_activity no_act peer_major ar_ok", f"ar_{ind}", SAME,
             f"{st}; 7.30, [27]"),
            (st, "AS", "", "discard", SAME, f"{st}; 7.29 (discarded)"),
            (st, "AR", "", "discard", SAME, f"{st}; 7.30 (discarded)"),
        )
    ],
    ("STA11B", "SACTIrsp", "", "send act_over_peer", "STA713", "STA11B; 7.32"),
    ("STA05B", "AIA", "", "aia_cnf", "STA713", "STA05B; 7.32"),
    ("STA11C", "SACTDrsp", "", "send act_over_peer", "STA713", "STA11C; 7.34"),
    ("STA05C", "ADA", "", "ada_cnf", "STA713", "STA05C; 7.34"),
]

_RELEASE: list[_R] = [
    ("STA713", "SRELreq", "no_act own_all", "send", "STA03", "STA713; 7.6"),
    ("STA713", "FN", "no_act peer_release", "fn_ind", "STA09", "STA713; 7.6"),
    ("STA03", "DN", "pending_fn", "dn_cnf fn_ind", "STA09", "STA03; 7.7 (collision)"),
    ("STA03", "DN", "", "dn_cnf tdisreq", "STA01", "STA03; 7.7"),
    ("STA03", "NF", "fu_negrel", "nf_cnf", "STA713", "STA03; 7.8"),
    # Release collision (no release token): the initiator's user answers first (7.6).
    ("STA03", "FN", "no_release_token initiator", "fn_ind collide", "STA09", "STA03; 7.6"),
    ("STA03", "FN", "no_release_token", "keep_fn", SAME, "STA03; 7.6 (collision)"),
    ("STA03", "DT", "peer_data", "data_ind", SAME, "STA03; 7.11"),
    ("STA03", "TD", "fu_typed", "typed_ind", SAME, "STA03; 7.13"),
    ("STA03", "PT", "pt_ok", "pt_ind", SAME, "STA03; 7.17 (a PT that crossed our FN)"),
    # An RS that crossed our FN (possible only without activity management: with it, RS
    # needs an activity and FN none) takes precedence: the peer discards the FN (STA05A)
    # and the release is over (the version-2 table's RS rows in STA03: not Vcoll, not
    # FU(ACT), FU(RESYN); PR-RS below).
    ("STA03", "RS", "fu_resync !fu_activity !collision rs_ok", "rs_ind", "STA11A",
     "STA03; 7.24 (an RS that crossed our FN)"),
    ("STA09", "SRELrsp+", "collision", "send", "STA03", "STA09; 7.7 (collision)"),
    ("STA09", "SRELrsp+", "", "send start_tim", "STA16", "STA09; 7.7"),
    ("STA09", "SRELrsp-", "fu_negrel !collision", "send", "STA713", "STA09; 7.8"),
    ("STA04A", "DT", "peer_data", "data_ind", SAME, "STA04A; 7.11 (duplex)"),
    ("STA04B", "DT", "peer_data", "data_ind", SAME, "STA04B; 7.11 (duplex)"),
    # Typed data needs no token: the peer's TD may cross our MAP as its DT does.
    ("STA04A", "TD", "fu_typed", "typed_ind", SAME, "STA04A; 7.13 (a TD that crossed our MAP)"),
    ("STA04B", "TD", "fu_typed", "typed_ind", SAME, "STA04B; 7.13 (a TD that crossed our MAP)"),
    # STA15A is STA04A/04B after the peer's PR-MAA (7.26), which overtook its MAA (AEA) on
    # the expedited flow: what the normal flow brings before the MAA the peer sent before
    # it, from STA10A/10B, so it is delivered as in STA04A/04B (the version-2 table's DT,
    # p05; TD, p06; GT, p59, with the GT row above), not discarded.
    ("STA15A", "DT", "peer_data", "data_ind", SAME, "STA15A; 7.11, 7.26 (sent before the MAA)"),
    ("STA15A", "TD", "fu_typed", "typed_ind", SAME, "STA15A; 7.13, 7.26 (sent before the MAA)"),
    # An EX, though, came behind the PREPARE on the expedited flow: the peer sent it after
    # its MAA (AEA), so it is held ([10]) and indicated after the MAA's confirm ([6]), never
    # ahead of it.  At most EX_HELD_MAX are held (more: AB 0x11); an abort drops them.
    ("STA15A", "EX", "fu_expedited ex_room", "hold_ex", SAME, "STA15A; 7.12, 7.26, [10]"),
    ("STA15A", "EX", "fu_expedited", "ex_over", SAME, "STA15A; 7.12 (over the bound)"),
]

_PREPARE: list[_R] = [
    ("STA04A", "PR", "pr_maa", "", "STA15A", "STA04A; 7.26"),
    ("STA04B", "PR", "pr_maa", "", "STA15A", "STA04B; 7.26"),
    ("STA05A", "PR", "pr_ra", "", "STA15C", "STA05A; 7.26"),
    # Our RS crossed the peer's MAA (it answered our MAP first): the MAA is discarded in
    # STA05A, and so is its PREPARE (the resync takes precedence, 7.24).
    ("STA05A", "PR", "pr_maa", "discard", SAME, "STA05A; 7.26 (a PR-MAA that crossed our RS)"),
    # Resynchronize collision (7.24) over a transport expedited flow: the peer's PR-RS ahead
    # of its RS changes nothing here; its RS, next, meets the collision rules of STA05A.
    ("STA05A", "PR", "pr_rs", "", SAME, "STA05A; 7.26 (resync collision)"),
    *[
        row
        for st in ("STA713", "STA03", "STA04A", "STA04B", "STA10A", "STA10B", "STA19", "STA20")
        for row in (
            (st, "PR", "pr_rs ds_clear", "", "STA15B", f"{st}; 7.26"),
            (st, "PR", "pr_rs", "", SAME, f"{st}; 7.26 (data separation: nothing discarded)"),
        )
    ],
    # Where the RS that follows a PREPARE(RS) is discarded (our AI or AD outstanding, STA05B,
    # STA05C; our RS answered, STA15C; the peer's MAA on its way behind its PR-MAA, STA15A:
    # its RS comes after the MAA), the PREPARE is discarded too (7.26; the version-2 table
    # keeps STA05B and STA05C, and queues it in STA15C).
    *[
        (st, "PR", "pr_rs", "discard", SAME, f"{st}; 7.26 (its RS is discarded, or comes later)")
        for st in ("STA05B", "STA05C", "STA15A", "STA15C")
    ],
    # Our AI or AD crossed the peer's MAA (AEA) to our MAP (AE): the MAA is discarded in
    # STA05B and STA05C, and so is its PREPARE (the version-2 table's PR-MAA rows there).
    *[
        (st, "PR", "pr_maa", "discard", SAME, f"{st}; 7.26 (a PR-MAA that crossed our {spdu})")
        for st, spdu in (("STA05B", "AI"), ("STA05C", "AD"))
    ],
    # Data separation: what arrives while a resync is under way (ours outstanding, STA05A;
    # the peer's, heralded by its PR-RS, STA15B; ours answered, the RA heralded by PR-RA,
    # STA15C) is kept when a separation point we sent is still unconfirmed, else discarded:
    # the version-2 table's p185 (Discard-rcv-flow and not p81).  Every resync here takes
    # in both flows, so Discard-rcv-flow holds in all three states.  (Read literally the
    # transcription delivers in STA15B whenever p185 is false, that is nearly always,
    # since nothing sets Discard-rcv-flow before the RS arrives: that would undo the
    # PREPARE's purpose, 7.26, which is to discard what the RS will purge anyway.)
    *[
        row
        for st in ("STA05A", "STA15B", "STA15C")
        for row in (
            (st, "DT", "peer_data ds_keep", "data_ind", SAME, f"{st}; 7.24 (data separation)"),
            (st, "TD", "fu_typed ds_keep", "typed_ind", SAME, f"{st}; 7.24 (data separation)"),
            (st, "PT", "pt_ok ds_keep", "pt_ind", SAME, f"{st}; 7.17 (data separation)"),
            (st, "DT", "", "discard", SAME, f"{st}; 7.24 (discarded)"),
            (st, "TD", "", "discard", SAME, f"{st}; 7.24 (discarded)"),
            (st, "PT", "pt_ok", "discard", SAME, f"{st}; 7.17, 7.24 (discarded)"),
        )
    ],
]

# States in which the connection exists (abort, expedited data, transport loss apply).
CONNECTED: Final = (
    "STA03", "STA04A", "STA04B", "STA05A", "STA05B", "STA05C", "STA09", "STA10A", "STA10B",
    "STA11A", "STA11B", "STA11C", "STA15A", "STA15B", "STA15C", "STA15D", "STA18", "STA19",
    "STA20", "STA21", "STA22", "STA713",
)  # fmt: skip

# States that throw away normal-flow SPDUs until the one they wait for (7.24, 7.26, 7.31).
_DISCARDING: Final = ("STA05A", "STA05B", "STA05C", "STA15A", "STA15B", "STA15C", "STA15D",
                      "STA20")  # fmt: skip
_DISCARDED: Final = (
    "DT", "TD", "CD", "CDA", "GT", "PT", "GTC", "GTA", "MIP", "MIP-d", "MIA", "MAP", "MAA", "AEA",
    "AS", "AR", "AE", "ED", "ER", "RS", "RA", "AI", "AIA", "AD", "ADA", "FN", "NF", "DN",
)  # fmt: skip

#: Exception reports (7.27): with the exceptions unit selected and
#: ``SessionConfig.exception_reports`` set, an SPDU of these kinds that the table rejects in
#: these states is answered with PT + ER instead of AB, provided the data token is the
#: peer's (so that its holder can recover); this end then waits in STA20.
ER_STATES: Final = ("STA713",)
ER_INPUTS: Final = (
    "DT", "TD", "CD", "CDA", "GT", "PT", "GTC", "GTA", "MIP", "MIP-d", "MIA", "MAP", "MAA",
    "AEA", "AS", "AR", "AE", "AIA", "ADA", "RA",
)  # fmt: skip


def _everywhere() -> list[_R]:
    rows: list[_R] = []
    for st in ("STA02A", "STA02B", "STA08", *CONNECTED):
        drop = " drop_ex" if st == "STA15A" else ""  # (what STA15A holds goes with an abort)
        rows.append((st, "SUABreq", "", "send start_tim" + drop, "STA16", f"{st}; 7.9"))
        rows.append((st, "AB", "", "ab_ind tdisreq", "STA01", f"{st}; 7.9"))
        rows.append((st, "TDISind", "", "tdis_ind", "STA01", f"{st}; 6.6"))
    for st in CONNECTED:
        rows.append((st, "SEXreq", "fu_expedited", "send", SAME, f"{st}; 7.12"))
        if st != "STA15A":
            rows.append((st, "EX", "fu_expedited", "ex_ind", SAME, f"{st}; 7.12"))
        if st not in ("STA15D",):
            drop = "drop_ex" if st == "STA15A" else ""
            rows.append((st, "PR", "pr_ab", drop, "STA15D", f"{st}; 7.26"))
    rows += [
        ("STA16", "SUABreq", "", "", SAME, "STA16; 7.9 (already aborting)"),
        ("STA16", "AA", "", "tdisreq", "STA01", "STA16; 7.10"),
        ("STA16", "TDISind", "", "", "STA01", "STA16; 6.6"),
        ("STA16", "TIM", "", "tdisreq", "STA01", "STA16; 4.3 (TIM)"),
    ]
    return rows


def _discards(taken: set[tuple[str, str]]) -> list[_R]:
    rows: list[_R] = []
    for st in _DISCARDING:
        for inp in _DISCARDED:
            if (st, inp) not in taken:
                # A PT is discarded only when it is valid (p53, ALL(AV, RT): it names
                # available tokens); one that names a token no unit made available is a
                # protocol error here as in STA713.  STA15D throws everything away.
                when = "pt_ok" if inp == "PT" and st != "STA15D" else ""
                rows.append((st, inp, when, "discard", SAME, f"{st}; 7.24, 7.26 (discarded)"))
    for inp in SPDU_INPUTS:
        if inp not in ("AA",):
            rows.append(("STA16", inp, "", "discard", SAME, "STA16; 7.9 (ignored)"))
    return rows


def _build() -> tuple[tuple[Row, ...], dict[tuple[str, str], tuple[Row, ...]]]:
    raw = _CONNECT + _DATA_TRANSFER + _RESYNC + _ACTIVITY + _RELEASE + _PREPARE + _everywhere()
    raw += _discards({(r[0], r[1]) for r in raw})
    rows = tuple(
        Row(st, inp, tuple(when.split()), tuple(do.split()), nxt, "X.225 A " + ref)
        for st, inp, when, do, nxt, ref in raw
    )
    table: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        table.setdefault((row.state, row.input), []).append(row)
    return rows, {key: tuple(value) for key, value in table.items()}


ROWS, TABLE = _build()
