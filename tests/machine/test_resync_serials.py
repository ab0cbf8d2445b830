"""Resynchronize serial numbers and preconditions, by X.225 Table A-4 and Annex A.

* SRSYNrsp abandon: sn = V(M).  The responder's answer used to take any serial number, and
  the requestor, which checks an abandon's RA for sn >= V(M) (p49), aborted.
* RS SPDU restart: the only condition is sn >= V(R).  The receiver's V(M) may trail the
  requestor's: a MIP it discarded (ours outstanding in STA05A, a collision; or after the
  peer's PREPARE(RS), STA15B) numbered the point the restart names.  An extra sn <= V(M)
  check aborted those valid resyncs.
* SRSYNreq with activity management selected needs an activity in progress ([¬FU(ACT) OR
  Vact], p29) in every state, as in STA713: from STA19 or STA20 an RS went out that the peer
  (in STA713 by then) refused.
"""

from __future__ import annotations

import pytest

from sessionlayer.errors import ParameterError, StateError
from sessionlayer.machine import (
    ALL_FUNCTIONAL_UNITS,
    ProviderAbortIndication,
    ResyncConfirm,
    ResyncIndication,
    SessionConfig,
)
from sessionlayer.spdu import FunctionalUnit, ResyncType
from sessionlayer.spdu.codec import encode_tsdu
from sessionlayer.spdu.types import DataTransfer, GiveTokens, Resynchronize

from .helpers import BASIC, SessionPair, pair

FU = FunctionalUnit
DUPLEX_SYNC = FU.DUPLEX | FU.MINOR_SYNC | FU.MAJOR_SYNC | FU.RESYNC | FU.EXPEDITED


def no_abort(*events: list[object]) -> None:
    for got in events:
        assert not [e for e in got if isinstance(e, ProviderAbortIndication)], got


def test_abandon_answer_is_vm() -> None:
    p = pair(functional_units=BASIC)
    p.init.minor_sync()
    p.init.minor_sync()
    p.pump()
    p.init.resync(ResyncType.ABANDON)
    (ind,) = p.pump()["resp"]
    assert isinstance(ind, ResyncIndication) and p.resp.vm == 2
    with pytest.raises(ParameterError):
        p.resp.resync_response(serial=0)
    assert p.resp.state == "STA11A" and p.resp.data_to_send() == []
    p.resp.resync_response()  # the default: V(M)
    (cnf,) = p.pump()["init"]
    assert isinstance(cnf, ResyncConfirm) and cnf.serial == 2
    assert p.init.vm == p.resp.vm == 2 and p.init.state == p.resp.state == "STA713"


def test_abandon_answer_may_name_vm_explicitly() -> None:
    p = pair(functional_units=BASIC)
    p.init.minor_sync()
    p.pump()
    p.init.resync(ResyncType.ABANDON)
    p.pump()
    p.resp.resync_response(serial=p.resp.vm)
    (cnf,) = p.pump()["init"]
    assert isinstance(cnf, ResyncConfirm) and cnf.serial == 1


def test_losing_restart_names_a_point_the_winner_discarded() -> None:
    """STA05A, collision: the initiator's MIP reaches the responder while its own abandon is
    outstanding (discarded); the initiator's restart to the point after it comes next."""
    p = pair(functional_units=DUPLEX_SYNC)
    p.resp.resync(ResyncType.ABANDON)
    p.init.minor_sync(confirm=False)
    p.init.resync(ResyncType.RESTART, p.init.vm)
    for tsdu in p.init.data_to_send():
        p.resp.receive_tsdu(tsdu, now=0)
    assert p.resp.state == "STA05A"  # the abandon wins; the restart is discarded
    no_abort(p.resp.events())
    ev = p.pump()
    assert isinstance(ev["init"][0], ResyncIndication)
    p.init.resync_response()
    ev = p.pump()
    no_abort(ev["init"], ev["resp"])
    assert isinstance(ev["resp"][0], ResyncConfirm)
    assert p.init.vm == p.resp.vm and p.init.state == p.resp.state == "STA713"


def test_restart_after_prepare_names_a_discarded_point() -> None:
    """STA15B: the PREPARE(RS) overtook a MIP, which is discarded; the RS restart names the
    point after it, past the receiver's V(M)."""
    config = SessionConfig(functional_units=DUPLEX_SYNC, transport_expedited=True)
    p = SessionPair(config)
    p.connect()
    p.init.minor_sync(confirm=False)
    p.init.resync(ResyncType.RESTART, p.init.vm)
    for tsdu in p.init.expedited_to_send() + p.init.data_to_send():
        p.resp.receive_tsdu(tsdu, now=0)
    ev = p.resp.events()
    no_abort(ev)
    assert isinstance(ev[-1], ResyncIndication) and ev[-1].serial == 1
    p.resp.resync_response()
    ev = p.pump()
    assert isinstance(ev["init"][0], ResyncConfirm)
    assert p.init.vm == p.resp.vm == 1


def test_restart_below_vr_is_still_refused() -> None:
    p = pair(functional_units=BASIC)
    p.init.major_sync()
    p.pump()
    p.resp.major_sync_response()
    p.pump()
    p.init.minor_sync()  # (the peer went on from our MAA: no restart crossed it)
    p.pump()
    assert p.resp.vr == 1
    rs = encode_tsdu(GiveTokens(), Resynchronize(resync_type=0, serial_number=0))
    p.resp.receive_tsdu(rs, now=0)
    (ab,) = p.resp.events()
    assert isinstance(ab, ProviderAbortIndication) and ab.reason == 0x05


def exception_reported() -> SessionPair:
    """Outside an activity: the responder reports the initiator's DT (not allowed there) with
    PT + ER and waits in STA20; the initiator, holding the data token, is in STA19."""
    config = SessionConfig(functional_units=ALL_FUNCTIONAL_UNITS)
    p = SessionPair(
        config, SessionConfig(functional_units=ALL_FUNCTIONAL_UNITS, exception_reports=True)
    )
    p.connect()
    p.resp.receive_tsdu(encode_tsdu(GiveTokens(), DataTransfer(user_data=b"x")), now=0)
    p.pump()
    assert (p.init.state, p.resp.state) == ("STA19", "STA20")
    assert not p.init.activity_in_progress and not p.resp.activity_in_progress
    return p


@pytest.mark.parametrize("side", ["init", "resp"])
def test_resync_needs_an_activity(side: str) -> None:
    p = exception_reported()
    m = getattr(p, side)
    state = m.state
    with pytest.raises(StateError):
        m.resync(ResyncType.ABANDON)
    assert m.data_to_send() == [] and m.state == state


def test_resync_in_activity_from_sta19() -> None:
    p = pair(functional_units=ALL_FUNCTIONAL_UNITS)
    p.init.activity_start(b"a")
    p.pump()
    p.resp.exception_report(3)
    p.pump()
    assert p.init.state == "STA19"
    p.init.resync(ResyncType.ABANDON)
    ev = p.pump()
    assert isinstance(ev["resp"][0], ResyncIndication)
