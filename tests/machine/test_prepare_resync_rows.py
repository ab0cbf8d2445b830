"""PREPARE(RS) in every state where the peer's RS can follow it (X.225 7.26, Annex A).

Over a transport expedited flow a resync requestor sends PR-RS ahead of its RS.  STA19
(waiting for our recovery after the peer's EXCEPTION DATA) takes the RS, so the PREPARE
leads to STA15B as elsewhere; where the RS itself is discarded (our AI or AD outstanding,
STA05B and STA05C; our RS answered, STA15C) the PREPARE is discarded too.  Each had no PR-RS
row, so the PREPARE alone aborted (AB 0x05) a crossing that is fine without the expedited
flow.  A PREPARE(MAA) that crossed our AI or AD is discarded too, as its MAA (AEA) is.
"""

from __future__ import annotations

import pytest

from sessionlayer.machine import (
    ActivityInterruptConfirm,
    ActivityInterruptIndication,
    ProviderAbortIndication,
    ResyncIndication,
    SessionConfig,
)
from sessionlayer.spdu import FunctionalUnit, ResyncType

from .helpers import BASIC, SessionPair

FU = FunctionalUnit
ACTIVITY = FU.HALF_DUPLEX | FU.ACTIVITY | FU.RESYNC | FU.MINOR_SYNC | FU.EXPEDITED


def tex_pair(units: FunctionalUnit) -> SessionPair:
    p = SessionPair(SessionConfig(functional_units=units, transport_expedited=True))
    p.connect()
    return p


def no_abort(events: list[object]) -> None:
    assert not [e for e in events if isinstance(e, ProviderAbortIndication)], events


def test_prepare_resync_in_sta19() -> None:
    p = tex_pair(BASIC)
    p.resp.exception_report(3)
    p.pump()
    assert (p.init.state, p.resp.state) == ("STA19", "STA20")
    p.resp.resync(ResyncType.ABANDON)
    (pr,) = p.resp.expedited_to_send()
    p.init.receive_expedited(pr, now=0)
    assert p.init.state == "STA15B"
    for tsdu in p.resp.data_to_send():
        p.init.receive_tsdu(tsdu, now=0)
    ev = p.init.events()
    no_abort(ev)
    assert isinstance(ev[-1], ResyncIndication) and p.init.state == "STA11A"


def test_prepare_resync_crossing_our_interrupt() -> None:
    p = tex_pair(ACTIVITY)
    p.init.activity_start(b"a")
    p.pump()
    p.init.activity_interrupt()  # STA05B
    p.resp.resync(ResyncType.ABANDON)  # crossing: PR-RS, then GT + RS
    for tsdu in p.resp.expedited_to_send() + p.resp.data_to_send():
        p.init.receive_tsdu(tsdu, now=0)
    no_abort(p.init.events())
    assert p.init.state == "STA05B"
    ev = p.pump()
    no_abort(ev["init"] + ev["resp"])
    assert isinstance(ev["resp"][0], ActivityInterruptIndication)
    p.resp.activity_interrupt_response()
    ev = p.pump()
    assert isinstance(ev["init"][0], ActivityInterruptConfirm)
    assert p.init.state == p.resp.state == "STA713"


def test_prepare_resync_after_our_answered_resync() -> None:
    """STA15C: our RS was answered (PR-RA overtook the RA); the peer's user resynchronizes
    again at once, and that PR-RS overtakes the RA too: the RS comes after the RA."""
    p = tex_pair(BASIC)
    p.init.resync(ResyncType.ABANDON)
    p.pump()
    p.resp.resync_response()
    (pr_ra,) = p.resp.expedited_to_send()
    ra = p.resp.data_to_send()
    p.init.receive_expedited(pr_ra, now=0)
    assert p.init.state == "STA15C"
    p.resp.resync(ResyncType.ABANDON)
    (pr_rs,) = p.resp.expedited_to_send()
    rs = p.resp.data_to_send()
    p.init.receive_expedited(pr_rs, now=0)
    assert p.init.state == "STA15C"
    for tsdu in ra + rs:
        p.init.receive_tsdu(tsdu, now=0)
    ev = p.init.events()
    no_abort(ev)
    assert isinstance(ev[-1], ResyncIndication) and p.init.state == "STA11A"


@pytest.mark.parametrize("request_", ["activity_interrupt", "activity_discard"])
def test_prepare_major_ack_crossing_our_interrupt_or_discard(request_: str) -> None:
    """STA05B, STA05C: the peer answered our AE with PR-MAA and AEA while our AI (AD) was on
    its way; both are discarded (the AI or AD wins, 7.24), and the answer to it follows."""
    p = tex_pair(ACTIVITY)
    p.init.activity_start(b"a")
    p.pump()
    p.init.activity_end()
    p.pump()
    getattr(p.init, request_)()
    p.resp.activity_end_response()
    for tsdu in p.resp.expedited_to_send() + p.resp.data_to_send():
        p.init.receive_tsdu(tsdu, now=0)
    no_abort(p.init.events())
    assert p.init.state in ("STA05B", "STA05C")
