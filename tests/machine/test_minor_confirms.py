"""One MIA, MAA or AEA confirms every minor sync point before it (X.215: the answer to a
minor sync point confirms those before it; X.225 Table A-4: V(A) = serial + 1 on the MIA,
V(A) = V(M) on the MAA and AEA).  A peer may answer only the last of several points (an
OSI stack that is not sessionlayer, which answers each): every confirmed point of ours
still waiting then gets its own MinorSyncConfirm, in order, so each ``sync()`` waiting for
one gets its own serial and none waits for ever."""

from __future__ import annotations

from sessionlayer.machine import (
    MajorSyncConfirm,
    MinorSyncConfirm,
    SessionConfig,
)
from sessionlayer.machine import events as ev
from sessionlayer.spdu import FunctionalUnit

from .helpers import SessionPair

FU = FunctionalUnit
UNITS = FU.DUPLEX | FU.MINOR_SYNC | FU.MAJOR_SYNC | FU.RESYNC


def _pair(units: FunctionalUnit = UNITS) -> SessionPair:
    p = SessionPair(SessionConfig(functional_units=units))
    p.connect()
    return p


def _points(p: SessionPair, confirms: list[bool]) -> list[int]:
    serials = [p.init.minor_sync(confirm=c) for c in confirms]
    got = p.pump()
    assert [type(e) for e in got["resp"]] == [ev.MinorSyncIndication] * len(confirms)
    return [int(s) for s in serials]


def test_one_mia_for_the_last_point_confirms_every_one_before_it() -> None:
    p = _pair()
    serials = _points(p, [True, True, True])
    p.resp.minor_sync_response(serials[-1], user_data=b"last")
    got = p.pump()["init"]
    assert got == [MinorSyncConfirm(serials[0], None), MinorSyncConfirm(serials[1], None),
                   MinorSyncConfirm(serials[2], b"last")]  # fmt: skip
    # Confirmed is confirmed: a later point is answered on its own as before.
    (later,) = _points(p, [True])
    p.resp.minor_sync_response(later)
    assert p.pump()["init"] == [MinorSyncConfirm(later, None)]


def test_an_mia_in_the_middle_confirms_up_to_it_and_no_further() -> None:
    p = _pair()
    serials = _points(p, [True, False, True, True])
    p.resp.minor_sync_response(serials[2])
    got = p.pump()["init"]
    # (the point sent without confirm=True waits for nothing: no confirm is made up for it)
    assert got == [MinorSyncConfirm(serials[0], None), MinorSyncConfirm(serials[2], None)]
    p.resp.minor_sync_response(serials[3])
    assert p.pump()["init"] == [MinorSyncConfirm(serials[3], None)]


def test_a_major_sync_ack_confirms_the_minor_points_it_was_not_asked_about() -> None:
    p = _pair()
    serials = _points(p, [True, True])
    major = p.init.major_sync(user_data=b"cp")
    got = p.pump()
    assert [type(e) for e in got["resp"]] == [ev.MajorSyncIndication]
    p.resp.major_sync_response()
    got = p.pump()["init"]
    assert got[:2] == [MinorSyncConfirm(serials[0], None), MinorSyncConfirm(serials[1], None)]
    assert len(got) == 3 and isinstance(got[2], MajorSyncConfirm) and got[2].serial == major


def test_an_activity_end_ack_confirms_the_minor_points_of_the_activity() -> None:
    p = _pair(UNITS | FU.ACTIVITY)
    p.init.activity_start(b"A1")
    p.pump()
    serials = _points(p, [True])
    end = p.init.activity_end()
    assert [type(e) for e in p.pump()["resp"]] == [ev.ActivityEndIndication]
    p.resp.activity_end_response()
    got = p.pump()["init"]
    assert got[0] == MinorSyncConfirm(serials[0], None)
    assert len(got) == 2 and isinstance(got[1], ev.ActivityEndConfirm) and got[1].serial == end


def test_an_answer_to_a_point_that_asked_for_none_is_not_taken_for_a_later_ones() -> None:
    """Point 0 without confirm, point 1 with; the peer answers 0: nothing confirms 1 yet
    (a sync() waiting for 1 would have taken 0's confirm for its own), then 1's MIA does."""
    p = _pair()
    serials = _points(p, [False, True])
    p.resp.minor_sync_response(serials[0])
    assert p.pump()["init"] == []
    p.resp.minor_sync_response(serials[1])
    assert p.pump()["init"] == [MinorSyncConfirm(serials[1], None)]


def test_an_answer_to_a_point_that_asked_for_none_is_told_when_nothing_waits() -> None:
    p = _pair()
    (serial,) = _points(p, [False])
    p.resp.minor_sync_response(serial, user_data=b"anyway")
    assert p.pump()["init"] == [MinorSyncConfirm(serial, b"anyway")]
