"""The state table: well-formed, every (state, input) pair behaves, paired machines agree."""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sessionlayer.machine as machine_pkg
from sessionlayer.errors import LocalError
from sessionlayer.machine import (
    ALL_FUNCTIONAL_UNITS,
    DEFAULT_FUNCTIONAL_UNITS,
    ROWS,
    STATES,
    SYMMETRIC_FUNCTIONAL_UNITS,
    TABLE,
    ActivityDiscardIndication,
    ActivityEndIndication,
    ActivityInterruptIndication,
    CapabilityDataIndication,
    Event,
    MajorSyncIndication,
    ProviderAbortIndication,
    ProviderExceptionReportIndication,
    ResyncIndication,
    SessionConfig,
    SessionMachine,
    UserExceptionReportIndication,
    tokens_for,
)
from sessionlayer.machine.core import Resync
from sessionlayer.machine.table import (
    ER_INPUTS,
    INPUTS,
    PREDICATE_KINDS,
    SAME,
    SPDU_INPUTS,
    USER_INPUTS,
)
from sessionlayer.spdu import (
    SPDU,
    Abort,
    AbortAccept,
    Accept,
    ActivityDiscard,
    ActivityDiscardAck,
    ActivityEnd,
    ActivityInterrupt,
    ActivityInterruptAck,
    ActivityResume,
    ActivityStart,
    CapabilityData,
    CapabilityDataAck,
    Connect,
    ConnectAcceptItem,
    ConnectDataOverflow,
    DataTransfer,
    Disconnect,
    ExceptionData,
    ExceptionReport,
    Expedited,
    Finish,
    FunctionalUnit,
    GiveTokens,
    GiveTokensAck,
    GiveTokensConfirm,
    MajorSyncAck,
    MajorSyncPoint,
    MinorSyncAck,
    MinorSyncPoint,
    NotFinished,
    OverflowAccept,
    PleaseTokens,
    Prepare,
    Refuse,
    Resynchronize,
    ResynchronizeAck,
    ResyncType,
    Token,
    TypedData,
    decode_tsdu,
    encode_tsdu,
)

from .helpers import SessionPair

FU = FunctionalUnit
ROOT = Path(__file__).resolve().parents[2]
#: Version 2, half-duplex: symmetric synchronize and data separation with every other unit.
SS_ALL = (ALL_FUNCTIONAL_UNITS & ~FU.MINOR_SYNC) | FU.SYMMETRIC_SYNC | FU.DATA_SEPARATION


# ---------------------------------------------------------------- the table itself


def test_every_row_names_known_states_predicates_and_actions() -> None:
    for row in ROWS:
        assert row.state in STATES, row
        assert row.next == SAME or row.next in STATES, row
        assert row.input in INPUTS, row
        assert row.ref.startswith("X.225 A " + row.state), row
        for name in row.when:
            assert name.lstrip("!") in PREDICATE_KINDS, row
            assert hasattr(SessionMachine, "_p_" + name.lstrip("!")), row
        for action in row.do:
            assert hasattr(SessionMachine, "_a_" + action), row


def test_every_state_is_reachable_and_every_input_used() -> None:
    targets = {r.next for r in ROWS} | {"STA01"}
    assert set(STATES) <= targets
    assert {r.input for r in ROWS} == set(INPUTS)


def test_state_diagram_is_up_to_date() -> None:
    spec = importlib.util.spec_from_file_location(
        "diagram", ROOT / "docs" / "make_state_diagram.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert (ROOT / "docs" / "state-diagram.md").read_text() == mod.render(), (
        "run: python docs/make_state_diagram.py"
    )


def test_exports() -> None:
    for name in machine_pkg.__all__:
        assert hasattr(machine_pkg, name), name
    events = [n for n in machine_pkg.__all__ if n.endswith(("Indication", "Confirm"))]
    assert len(events) >= 30
    for name in events:
        cls = getattr(machine_pkg, name)
        assert issubclass(cls, Event) and cls.__dataclass_params__.frozen


def test_core_imports_no_io() -> None:
    src = ROOT / "src" / "sessionlayer" / "machine"
    for path in src.glob("*.py"):
        text = path.read_text()
        for banned in ("import socket", "import asyncio", "import time", "import ssl"):
            assert banned not in text, (path, banned)


# ---------------------------------------------------------------- every (state, input) pair

USER_CALLS: dict[str, Callable[[SessionMachine], object]] = {
    "SCONreq": lambda m: m.connect(b"c"),
    "SCONrsp+": lambda m: m.accept(b"a"),
    "SCONrsp-": lambda m: m.refuse(now=0.0),
    "SDTreq": lambda m: m.send_data(b"d"),
    "STDreq": lambda m: m.send_typed_data(b"t"),
    "SEXreq": lambda m: m.send_expedited(b"e"),
    "SCDreq": lambda m: m.send_capability_data(b"c"),
    "SCDrsp": lambda m: m.capability_data_response(),
    "SGTreq": lambda m: m.give_tokens(Token.DATA),
    "SPTreq": lambda m: m.please_tokens(Token.DATA),
    "SCGreq": lambda m: m.give_control(),
    "SSYNmreq": lambda m: m.minor_sync(),
    "SSYNmdreq": lambda m: m.minor_sync(data_separation=True),
    "SSYNmrsp": lambda m: m.minor_sync_response(m.vmr - 1),
    "SSYNMreq": lambda m: m.major_sync(),
    "SSYNMrsp": lambda m: m.major_sync_response(),
    "SRSYNreq": lambda m: m.resync(ResyncType.SET, 1),
    "SRSYNrsp": lambda m: m.resync_response(),
    "SUERreq": lambda m: m.exception_report(),
    "SACTSreq": lambda m: m.activity_start(b"a"),
    "SACTRreq": lambda m: m.activity_resume(b"b", b"a", 1),
    "SACTIreq": lambda m: m.activity_interrupt(),
    "SACTIrsp": lambda m: m.activity_interrupt_response(),
    "SACTDreq": lambda m: m.activity_discard(),
    "SACTDrsp": lambda m: m.activity_discard_response(),
    "SACTEreq": lambda m: m.activity_end(),
    "SACTErsp": lambda m: m.activity_end_response(),
    "SRELreq": lambda m: m.release(),
    "SRELrsp+": lambda m: m.release_response(True, now=0.0),
    "SRELrsp-": lambda m: m.release_response(False, now=0.0),
    "SUABreq": lambda m: m.abort(now=0.0),
}

GT, PT = GiveTokens(), PleaseTokens()
SAMPLES: dict[str, tuple[SPDU, ...]] = {
    "CN": (Connect(requirements=int(ALL_FUNCTIONAL_UNITS)),),
    "OA": (OverflowAccept(version=2),),
    "CDO": (ConnectDataOverflow(enclosure=2, user_data=b"c"),),
    "AC": (Accept(),),
    "RF": (Refuse(reason=0),),
    "FN": (Finish(),),
    "DN": (Disconnect(),),
    "NF": (NotFinished(),),
    "AB": (Abort(transport_disconnect=3),),
    "AA": (AbortAccept(),),
    "DT": (GT, DataTransfer(user_data=b"d")),
    "EX": (Expedited(user_data=b"e"),),
    "TD": (TypedData(user_data=b"t"),),
    "CD": (GT, CapabilityData()),
    "CDA": (PT, CapabilityDataAck()),
    "GT": (GiveTokens(tokens=int(Token.DATA)),),
    "PT": (PleaseTokens(tokens=int(Token.DATA)),),
    "GTC": (GiveTokensConfirm(),),
    "GTA": (GiveTokensAck(),),
    "MIP": (GT, MinorSyncPoint(serial_number=1)),
    "MIP-d": (GT, MinorSyncPoint(sync_type=2, serial_number=1)),
    "MIA": (PT, MinorSyncAck(serial_number=0)),
    "MAP": (GT, MajorSyncPoint(serial_number=1)),
    "MAA": (PT, MajorSyncAck(serial_number=0)),
    "AEA": (PT, MajorSyncAck(serial_number=0)),
    "RS": (GT, Resynchronize(resync_type=2, serial_number=1)),
    "RA": (PT, ResynchronizeAck(serial_number=1)),
    "PR": (Prepare(prepare_type=2),),
    "ER": (PT, ExceptionReport(reflect=b"r")),
    "ED": (PT, ExceptionData(reason=0)),
    "AS": (GT, ActivityStart(activity_id=b"a")),
    "AR": (GT, ActivityResume(activity_id=b"b")),
    "AI": (GT, ActivityInterrupt()),
    "AIA": (PT, ActivityInterruptAck()),
    "AD": (GT, ActivityDiscard()),
    "ADA": (PT, ActivityDiscardAck()),
    "AE": (GT, ActivityEnd(serial_number=1)),
}


def forced(
    state: str, role: str, units: FunctionalUnit, owned: int, vact: bool, **config: Any
) -> SessionMachine:
    """A machine put straight into ``state`` with plausible variables."""
    cfg = SessionConfig(functional_units=ALL_FUNCTIONAL_UNITS, **config)
    m = SessionMachine(role, cfg)  # type: ignore[arg-type]
    m._state = state
    m._tc_up = True
    if state not in ("STA01", "STA01B", "STA01C", "STA01D", "STA02A", "STA02B", "STA08"):
        m._fu = units
        m._owned = Token(owned) & tokens_for(units)
        m._vact = vact
        m._vm, m._va, m._vr = 1, 1, 1
        m._vmr, m._var, m._vrr = 1, 1, 1
    if state in ("STA08", "STA01D"):
        m._peer_cn = Connect(
            requirements=int(ALL_FUNCTIONAL_UNITS),
            item=ConnectAcceptItem(version=2),
            data_overflow=1 if state == "STA01D" else None,
        )
    if state == "STA02B":
        m._overflow_rest = b"more"
    if state in ("STA05A", "STA15C"):
        m._resync = Resync(True, ResyncType.SET, 1, {})
    if state == "STA11A":
        m._resync = Resync(False, ResyncType.SET, 1, {})
    if state in ("STA02A", "STA02B"):
        m._cn_bytes = encode_tsdu(Connect())
    if state in ("STA04A", "STA04B", "STA10A", "STA10B"):
        m._vm = 2
    return m


def expected_states(state: str, inp: str) -> set[str]:
    return {state if r.next == SAME else r.next for r in TABLE.get((state, inp), ())}


pairs = st.tuples(
    st.sampled_from(sorted(STATES)),
    st.sampled_from(list(INPUTS)),
    st.sampled_from(["initiator", "responder"]),
    st.sampled_from([FU.DUPLEX, FU.HALF_DUPLEX, ALL_FUNCTIONAL_UNITS, DEFAULT_FUNCTIONAL_UNITS,
                     SS_ALL, SYMMETRIC_FUNCTIONAL_UNITS]),
    st.integers(0, 0x55),
    st.booleans(),
)  # fmt: skip


@given(pairs)
@settings(max_examples=3000, deadline=None)
def test_every_state_input_pair_transitions_or_fails_as_defined(case: tuple[Any, ...]) -> None:
    check_pair(*case)


def test_every_state_input_pair_exhaustively() -> None:
    for state in STATES:
        for inp in INPUTS:
            for role in ("initiator", "responder"):
                for units in (FU.DUPLEX, ALL_FUNCTIONAL_UNITS, SS_ALL):
                    for owned, vact in ((0, False), (0x55, True), (0x55, False)):
                        check_pair(state, inp, role, units, owned, vact)


def check_pair(
    state: str,
    inp: str,
    role: str,
    units: FunctionalUnit,
    owned: int,
    vact: bool,
    **config: Any,
) -> None:
    m = forced(state, role, units, owned, vact, **config)
    allowed = expected_states(state, inp)
    if inp in USER_INPUTS:
        before = (m.state, m.tokens_owned, m.vm, m.va, m.vr)
        try:
            USER_CALLS[inp](m)
        except LocalError:
            assert (m.state, m.tokens_owned, m.vm, m.va, m.vr) == before
            assert m.data_to_send() == m.expedited_to_send() == m.events() == []
            return
        assert m.state in allowed, (state, inp)
        return
    if inp in SPDU_INPUTS:
        m.receive_tsdu(encode_tsdu(*SAMPLES[inp]), now=0.0)
        name = "AEA" if inp == "MAA" and state == "STA04B" else inp
        allowed = expected_states(state, name)
    elif inp == "TDISind":
        m.transport_disconnected()
        allowed |= {"STA01"}
    elif inp == "TIM":
        m._tim = 0.0
        m.handle_timer(1.0)
        allowed |= {state}
    elif inp in ("TCONind", "TCONcnf"):
        m.transport_connected()  # the machine tells TCONind from TCONcnf by its state
        allowed = expected_states(state, "TCONind") | expected_states(state, "TCONcnf") | {state}
    if m.state in allowed:
        return
    sent = [s for t in m.data_to_send() for s in decode_tsdu(t)]
    if m.state == "STA20" and config.get("exception_reports"):
        # Not in the table, reported instead (X.225 7.27): PT + ER, S-P-EXCEPTION-REPORT.
        assert (state, inp in ER_INPUTS) == ("STA713", True), (state, inp)
        assert [type(s) for s in sent] == [PleaseTokens, ExceptionReport]
        assert any(isinstance(e, ProviderExceptionReportIndication) and e.local for e in m.events())
        return
    # Not in the table: a protocol error, answered with AB 0x05.
    assert m.state == "STA16", (state, inp, m.state)
    aborts = [s for s in sent if isinstance(s, Abort)]
    assert [a.transport_disconnect for a in aborts] == [0x05]
    assert any(isinstance(e, ProviderAbortIndication) and e.local for e in m.events())


def test_exception_reports_replace_ab_in_data_transfer() -> None:
    """With ``exception_reports``, errors in STA713 while the peer holds the data token are
    answered with PT + ER (decoded by the codec); everything else still gets AB."""
    for state in ("STA713", "STA03", "STA19", "STA20"):
        for inp in SPDU_INPUTS:
            for units in (ALL_FUNCTIONAL_UNITS, SS_ALL, FU.DUPLEX):
                for owned, vact in ((0, True), (0x54, False), (0x55, True)):
                    check_pair(state, inp, "initiator", units, owned, vact, exception_reports=True)


# ---------------------------------------------------------------- random paired sequences

OPS: list[str] = [
    "data", "typed", "expedited", "give", "please", "minor", "minor_ds", "minor_rsp", "major",
    "resync", "act_start", "act_end", "act_interrupt", "act_discard", "control", "capability",
    "exception",
]  # fmt: skip


def run_op(m: SessionMachine, op: str, arg: int) -> None:
    token = [Token.DATA, Token.MINOR_SYNC, Token.MAJOR_ACTIVITY, Token.RELEASE][arg % 4]
    calls: dict[str, Callable[[], object]] = {
        "data": lambda: m.send_data(b"d"),
        "typed": lambda: m.send_typed_data(b"t"),
        "expedited": lambda: m.send_expedited(b"e"),
        "give": lambda: m.give_tokens(token),
        "please": lambda: m.please_tokens(token),
        "minor": lambda: m.minor_sync(confirm=bool(arg & 1)),
        "minor_ds": lambda: m.minor_sync(data_separation=True),
        "minor_rsp": lambda: m.minor_sync_response(m.vmr - 1),
        "major": lambda: m.major_sync(),
        "resync": lambda: m.resync(ResyncType(arg % 3), m.vm),
        "act_start": lambda: m.activity_start(bytes([arg % 200 + 1])),
        "act_end": lambda: m.activity_end(),
        "act_interrupt": lambda: m.activity_interrupt(),
        "act_discard": lambda: m.activity_discard(),
        "control": lambda: m.give_control(),
        "capability": lambda: m.send_capability_data(),
        "exception": lambda: m.exception_report(),
    }
    with contextlib.suppress(LocalError):
        calls[op]()


def answer(m: SessionMachine, ev: Event) -> None:
    """What a well-behaved user does with an indication that needs a response."""
    if isinstance(ev, MajorSyncIndication):
        m.major_sync_response()
    elif isinstance(ev, ActivityEndIndication):
        m.activity_end_response()
    elif isinstance(ev, ResyncIndication):
        m.resync_response()
    elif isinstance(ev, ActivityInterruptIndication):
        m.activity_interrupt_response()
    elif isinstance(ev, ActivityDiscardIndication):
        m.activity_discard_response()
    elif isinstance(ev, CapabilityDataIndication):
        m.capability_data_response()
    elif isinstance(ev, UserExceptionReportIndication) and m.state == "STA19":
        m.give_tokens(Token.DATA)


def settle(p: SessionPair) -> None:
    for _ in range(50):
        ev = p.pump()
        assert not any(isinstance(e, ProviderAbortIndication) for e in ev["init"] + ev["resp"])
        if not ev["init"] and not ev["resp"]:
            return
        for e in ev["init"]:
            if p.init.state != "STA713" or not isinstance(e, MajorSyncIndication):
                answer(p.init, e)
        for e in ev["resp"]:
            answer(p.resp, e)
    raise AssertionError("the pair never settled")


@pytest.mark.parametrize(
    "units",
    [
        ALL_FUNCTIONAL_UNITS,
        DEFAULT_FUNCTIONAL_UNITS,
        SYMMETRIC_FUNCTIONAL_UNITS,
        SYMMETRIC_FUNCTIONAL_UNITS | FU.ACTIVITY,
    ],
    ids=["with-activities", "without-activities", "symmetric", "symmetric-activities"],
)
@given(
    st.lists(
        st.tuples(st.sampled_from(["init", "resp", "both"]), st.sampled_from(OPS),
                  st.integers(0, 11)),
        max_size=25,
    )
)  # fmt: skip
@settings(max_examples=250, deadline=None)
def test_random_requests_keep_the_pair_in_agreement(
    units: FunctionalUnit, script: list[tuple[str, str, int]]
) -> None:
    p = SessionPair(
        SessionConfig(functional_units=units, initial_serial=3, second_initial_serial=20)
    )
    p.connect()
    for who, op, arg in script:
        if who in ("init", "both"):
            run_op(p.init, op, arg)
        if who in ("resp", "both"):
            run_op(p.resp, op, arg)
        settle(p)
        if p.init.state == p.resp.state == "STA713":
            available = p.init.tokens_available
            assert available == p.resp.tokens_available
            assert p.init.tokens_owned & p.resp.tokens_owned == 0
            assert p.init.tokens_owned | p.resp.tokens_owned == available
            # Each flow's serial numbers agree at both ends (one shared flow without
            # symmetric synchronize, where vms == vmr == vm).
            assert (p.init.vms, p.init.vrs) == (p.resp.vmr, p.resp.vrr)
            assert (p.init.vmr, p.init.vrr) == (p.resp.vms, p.resp.vrs)
            assert p.init.vm == p.init.vms and p.init.vr == p.init.vrs
            assert p.init.activity_in_progress == p.resp.activity_in_progress
            assert p.init.activity_id == p.resp.activity_id
