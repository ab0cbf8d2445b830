"""EXPEDITED DATA after the peer's PREPARE (MAA) (X.225 7.12, 7.26; Annex A STA15A).

The peer answers our MAP (AE) with PR-MAA on the expedited flow and MAA (AEA) on the normal
flow; an EX its user sends after the answer goes on the expedited flow behind the PR, so it
can arrive ahead of the MAA.  The version-2 table holds such an EX in STA15A ([10]) and
indicates it after the S-SYNC-MAJOR (S-ACTIVITY-END) confirm ([6]): the user never sees
it ahead of the confirm of the point the peer set before it.  It used to be indicated at
once.  At most ``EX_HELD_MAX`` are held (more: AB 0x11); an abort drops them.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sessionlayer.errors import AbortReason
from sessionlayer.machine import (
    ActivityEndConfirm,
    ExpeditedDataIndication,
    MajorSyncConfirm,
    ProviderAbortIndication,
    SessionConfig,
    UserAbortIndication,
)
from sessionlayer.machine.rules import EX_HELD_MAX
from sessionlayer.spdu import FunctionalUnit

from .helpers import SessionPair, kinds

FU = FunctionalUnit
MAJOR = FU.DUPLEX | FU.EXPEDITED | FU.MAJOR_SYNC | FU.RESYNC
ACTIVITY = FU.HALF_DUPLEX | FU.EXPEDITED | FU.MAJOR_SYNC | FU.MINOR_SYNC | FU.ACTIVITY


def pair(units: FunctionalUnit) -> SessionPair:
    p = SessionPair(SessionConfig(functional_units=units, transport_expedited=True))
    p.connect()
    return p


def major(p: SessionPair) -> None:
    p.init.major_sync(b"point")
    p.pump()
    p.resp.major_sync_response()


def activity_end(p: SessionPair) -> None:
    p.init.activity_start(b"A1")
    p.pump()
    p.init.activity_end()
    p.pump()
    p.resp.activity_end_response()


def answered(p: SessionPair, answer: Callable[[SessionPair], None]) -> tuple[bytes, bytes]:
    """The responder answers the initiator's MAP (AE): its PR-MAA reaches the initiator
    (STA15A); the MAA (AEA) is returned, not delivered."""
    answer(p)
    (pr,) = p.resp.expedited_to_send()
    (ack,) = p.resp.data_to_send()
    p.init.receive_expedited(pr, now=0.0)
    assert p.init.state == "STA15A"
    return pr, ack


CASES = {"MAA": (MAJOR, major, MajorSyncConfirm), "AEA": (ACTIVITY, activity_end,
                                                          ActivityEndConfirm)}


@pytest.mark.parametrize("ack", CASES)
def test_an_ex_sent_after_the_answer_is_indicated_after_its_confirm(ack: str) -> None:
    units, answer, confirm = CASES[ack]
    p = pair(units)
    _pr, tsdu = answered(p, answer)
    p.resp.send_expedited(b"after 1")
    p.resp.send_expedited(b"after 2")
    for ex in p.resp.expedited_to_send():
        p.init.receive_expedited(ex, now=0.0)
    assert p.init.events() == []  # (indicated at once before, ahead of the confirm)
    assert p.init.state == "STA15A" and p.init.data_to_send() == []
    p.init.receive_tsdu(tsdu, now=0.0)
    events = p.init.events()
    assert [type(e) for e in events] == [confirm, ExpeditedDataIndication,
                                         ExpeditedDataIndication]  # fmt: skip
    assert events[1:] == [ExpeditedDataIndication(b"after 1"),
                          ExpeditedDataIndication(b"after 2")]  # fmt: skip
    assert p.init.state == "STA713"
    # Nothing is held any more: the next EX is indicated at once.
    p.resp.send_expedited(b"later")
    assert p.pump()["init"] == [ExpeditedDataIndication(b"later")]


def test_more_held_than_the_bound_is_an_implementation_restriction() -> None:
    p = pair(MAJOR)
    answered(p, major)
    for n in range(EX_HELD_MAX + 1):
        p.resp.send_expedited(b"x%d" % n)
    for ex in p.resp.expedited_to_send():
        p.init.receive_expedited(ex, now=0.0)
    (abort,) = p.init.events()
    assert isinstance(abort, ProviderAbortIndication)
    assert abort.reason == AbortReason.TRANSPORT_RELEASED | AbortReason.IMPLEMENTATION_RESTRICTION
    assert p.init.state == "STA16"
    assert kinds(p.init.data_to_send()[0]) == ["AB"]


def test_an_abort_drops_what_was_held() -> None:
    p = pair(MAJOR)
    answered(p, major)
    p.resp.send_expedited(b"held")
    (ex,) = p.resp.expedited_to_send()
    p.init.receive_expedited(ex, now=0.0)
    p.resp.abort(b"bye", now=0.0)
    for out in p.resp.data_to_send():
        p.init.receive_tsdu(out, now=0.0)
    assert p.init.events() == [UserAbortIndication(b"bye")]
    assert p.init.state == "STA01"


def test_a_local_abort_in_sta15a_drops_what_was_held() -> None:
    p = pair(MAJOR)
    answered(p, major)
    p.resp.send_expedited(b"held")
    (ex,) = p.resp.expedited_to_send()
    p.init.receive_expedited(ex, now=0.0)
    p.init.abort(now=0.0)
    assert p.init.state == "STA16"
    assert p.init.events() == []
    assert p.init.rare is not None and p.init.rare.held_ex == ()
