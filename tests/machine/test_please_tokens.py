"""PLEASE TOKENS (PT) received while this end waits for a confirm of its own (X.225 7.17).

The peer's PT crossed our request.  X.225 Annex A (the version-2 state table's PT row)
indicates it (S-TOKEN-PLEASE) in STA04A, STA04B, STA15A, STA18 and STA21, and discards it
in STA05A (unless a data separation point of ours is unconfirmed), STA05B, STA05C and
STA19.  Neither is a protocol error: no AB goes out, and the exchange ends in STA713.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from sessionlayer.machine import (
    ALL_FUNCTIONAL_UNITS,
    SYMMETRIC_FUNCTIONAL_UNITS,
    SessionConfig,
    TokenPleaseIndication,
)
from sessionlayer.spdu import (
    FunctionalUnit,
    PleaseTokens,
    ResyncType,
    Token,
    encode_tsdu,
)

from .helpers import SessionPair

FU = FunctionalUnit
#: Half-duplex with every unit but activity management and capability data.
BASIC = ALL_FUNCTIONAL_UNITS & ~FU.ACTIVITY & ~FU.CAPABILITY_DATA
ASKED = Token.MAJOR_ACTIVITY  # what the responder asks for (the initiator starts with it)


def pair(units: FunctionalUnit, **kw: Any) -> SessionPair:
    p = SessionPair(SessionConfig(functional_units=units, **kw))
    p.connect()
    return p


def in_activity(p: SessionPair) -> None:
    p.init.activity_start(b"A1")
    p.pump()


def exception_data(p: SessionPair) -> None:
    """The responder (without the data token) reports; the initiator goes to STA19."""
    p.resp.exception_report(3)
    p.pump()


@dataclass(frozen=True)
class Case:
    state: str
    units: FunctionalUnit
    before: Callable[[SessionPair], object]  # sets the pair up (pumped)
    request: Callable[[SessionPair], object]  # the initiator's request the PT crosses
    answer: Callable[[SessionPair], object]  # the responder's answer to it
    indicated: bool


def nothing(p: SessionPair) -> None:
    pass


CASES = [
    Case("STA04A", BASIC, nothing, lambda p: p.init.major_sync(),
         lambda p: p.resp.major_sync_response(), True),
    Case("STA04B", ALL_FUNCTIONAL_UNITS, in_activity, lambda p: p.init.activity_end(),
         lambda p: p.resp.activity_end_response(), True),
    Case("STA18", ALL_FUNCTIONAL_UNITS, nothing, lambda p: p.init.give_control(),
         nothing, True),
    Case("STA21", ALL_FUNCTIONAL_UNITS, nothing, lambda p: p.init.send_capability_data(b"c"),
         lambda p: p.resp.capability_data_response(), True),
    Case("STA05A", BASIC, nothing, lambda p: p.init.resync(ResyncType.ABANDON),
         lambda p: p.resp.resync_response(), False),
    Case("STA05B", ALL_FUNCTIONAL_UNITS, in_activity, lambda p: p.init.activity_interrupt(),
         lambda p: p.resp.activity_interrupt_response(), False),
    Case("STA05C", ALL_FUNCTIONAL_UNITS, in_activity, lambda p: p.init.activity_discard(),
         lambda p: p.resp.activity_discard_response(), False),
    Case("STA19", BASIC, exception_data, nothing,
         lambda p: p.init.give_tokens(Token.DATA), False),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.state for c in CASES])
def test_a_pt_that_crossed_our_request(case: Case) -> None:
    p = pair(case.units)
    case.before(p)
    case.request(p)
    assert p.init.state == case.state
    held = p.init.data_to_send()  # (our request: not delivered yet)
    if case.state == "STA19":  # the peer's machine sends no PT from STA20: made by hand
        pt = encode_tsdu(PleaseTokens(tokens=int(ASKED)))
    else:
        p.resp.please_tokens(ASKED)
        (pt,) = p.resp.data_to_send()
    p.init.receive_tsdu(pt, now=0.0)
    assert p.init.state == case.state
    assert p.init.data_to_send() == [] and p.init.expedited_to_send() == []  # no AB
    expected = [TokenPleaseIndication(ASKED, None)] if case.indicated else []
    assert p.init.events() == expected
    for tsdu in held:
        p.resp.receive_tsdu(tsdu, now=0.0)
    p.resp.events()
    case.answer(p)
    p.pump()
    assert p.init.state == p.resp.state == "STA713"
    assert p.init.tokens_owned == p.resp.tokens_available & ~p.resp.tokens_owned


def test_a_pt_after_the_prepare_of_a_major_sync_ack_is_indicated() -> None:
    """STA15A: the peer's PREPARE (MAA) came ahead of its PT and MAA (7.26)."""
    p = pair(BASIC | FU.EXPEDITED, transport_expedited=True)
    p.init.major_sync()
    (map_,) = p.init.data_to_send()
    p.resp.please_tokens(ASKED)  # before the MAP arrived
    p.resp.receive_tsdu(map_, now=0.0)
    p.resp.major_sync_response()
    (pr,) = p.resp.expedited_to_send()
    pt, maa = p.resp.data_to_send()
    p.init.receive_expedited(pr, now=0.0)
    assert p.init.state == "STA15A"
    p.init.receive_tsdu(pt, now=0.0)
    assert p.init.state == "STA15A" and p.init.data_to_send() == []
    assert p.init.events() == [TokenPleaseIndication(ASKED, None)]
    p.init.receive_tsdu(maa, now=0.0)
    assert p.init.state == "STA713"
    p.init.give_tokens(ASKED)  # the tokens asked for can be given now
    p.pump()
    assert p.resp.tokens_owned & ASKED


@pytest.mark.parametrize("separation", [True, False])
def test_a_pt_during_our_resync_is_kept_after_our_separation_point(separation: bool) -> None:
    """STA05A with data separation: p185 discards a PT only when no separation point of
    ours is unconfirmed (p81), as it does a DT."""
    p = pair(SYMMETRIC_FUNCTIONAL_UNITS, initial_serial=5, second_initial_serial=50)
    if separation:
        p.init.minor_sync(data_separation=True)
    p.init.resync(ResyncType.ABANDON)
    assert p.init.state == "STA05A"
    p.init.data_to_send()  # (the RS)
    p.init.receive_tsdu(encode_tsdu(PleaseTokens(tokens=int(ASKED))), now=0.0)
    assert p.init.state == "STA05A" and p.init.data_to_send() == []
    assert p.init.events() == ([TokenPleaseIndication(ASKED, None)] if separation else [])
