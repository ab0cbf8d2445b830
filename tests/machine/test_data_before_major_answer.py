"""Data from the side that has to answer a major sync point or activity end (X.225 7.11,
7.13, 7.22, 7.35; Annex A STA10A, STA10B).

The version-2 table takes an S-DATA request (SDTreq, p03: the data token not the peer's)
and an S-TYPED-DATA request (STDreq, p06) in STA10A and STA10B: the answering side's
dialogue unit ends with its own S-SYNC-MAJOR (S-ACTIVITY-END) response, and the other side
takes that data before the MAA (AEA), in STA04A/04B, as data that crossed its MAP.  Both
raised StateError there before.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sessionlayer.errors import TokenError
from sessionlayer.machine import (
    ActivityEndConfirm,
    DataIndication,
    MajorSyncConfirm,
    SessionConfig,
    SessionMachine,
    TokenGiveIndication,
    TypedDataIndication,
)
from sessionlayer.machine.events import Event
from sessionlayer.spdu import FunctionalUnit, Token

from .helpers import SessionPair

FU = FunctionalUnit
DUPLEX = FU.DUPLEX | FU.TYPED_DATA | FU.MAJOR_SYNC | FU.RESYNC
ACTIVITY = FU.DUPLEX | FU.TYPED_DATA | FU.MAJOR_SYNC | FU.MINOR_SYNC | FU.ACTIVITY
HALF = FU.HALF_DUPLEX | FU.TYPED_DATA | FU.MAJOR_SYNC | FU.MINOR_SYNC | FU.RESYNC


def pair(units: FunctionalUnit) -> SessionPair:
    p = SessionPair(SessionConfig(functional_units=units))
    p.connect()
    return p


def major(p: SessionPair) -> None:
    p.init.major_sync(b"point")


def end(p: SessionPair) -> None:
    p.init.activity_start(b"A1")
    p.pump()
    p.init.activity_end()


SENDS: dict[str, tuple[Callable[[SessionMachine], object], Event]] = {
    "DT": (lambda m: m.send_data(b"d"), DataIndication(b"d")),
    "TD": (lambda m: m.send_typed_data(b"t"), TypedDataIndication(b"t")),
}
WAITS = {
    "STA10A": (DUPLEX, major, ("STA04A", "STA10A"), MajorSyncConfirm,
               lambda m: m.major_sync_response()),
    "STA10B": (ACTIVITY, end, ("STA04B", "STA10B"), ActivityEndConfirm,
               lambda m: m.activity_end_response()),
}  # fmt: skip


@pytest.mark.parametrize("kind", SENDS)
@pytest.mark.parametrize("state", WAITS)
def test_the_answering_side_may_send_data_before_it_answers(state: str, kind: str) -> None:
    units, ask, states, confirm, answer = WAITS[state]
    send, seen = SENDS[kind]
    p = pair(units)
    ask(p)
    p.pump()
    assert (p.init.state, p.resp.state) == states
    send(p.resp)  # (raised StateError before: no SDTreq / STDreq row there)
    assert p.resp.state == states[1]
    assert p.pump()["init"] == [seen]  # before the answer, in STA04A/04B
    assert (p.init.state, p.resp.state) == states
    answer(p.resp)
    assert [type(e) for e in p.pump()["init"]] == [confirm]
    assert p.init.state == p.resp.state == "STA713"


def test_half_duplex_data_needs_the_data_token_there_too() -> None:
    p = pair(HALF)
    p.init.major_sync()
    p.pump()
    assert p.resp.state == "STA10A"
    with pytest.raises(TokenError):
        p.resp.send_data(b"d")  # the MAP's sender holds the data token
    p.init.give_tokens(Token.DATA)  # (STA04A may give it, p54)
    assert p.pump()["resp"] == [TokenGiveIndication(Token.DATA)]
    p.resp.send_data(b"d")
    assert p.pump()["init"] == [DataIndication(b"d")]
    p.resp.major_sync_response()
    assert [type(e) for e in p.pump()["init"]] == [MajorSyncConfirm]
