"""An ACTIVITY START or RESUME that the receiver does not indicate at once still starts the
activity (X.225 Annex A: [12] Vact = true, [26] / [27] the serial numbers).

It crosses our EXCEPTION REPORT (we wait for the recovery in STA20: not indicated), or a
PREPARE(RS) overtook it (STA15B: the version-2 table indicates it there, ahead of the RS).
It used to be dropped: this end kept Vact false while the peer's was true, and the peer's
recovery (AD) or next activity SPDU (AI) was refused with AB 0x05.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sessionlayer.machine import (
    ALL_FUNCTIONAL_UNITS,
    ActivityDiscardIndication,
    ActivityInterruptIndication,
    ActivityStartIndication,
    ProviderAbortIndication,
    ProviderExceptionReportIndication,
    ResyncIndication,
    SessionConfig,
    SessionMachine,
)
from sessionlayer.spdu import ResyncType
from sessionlayer.spdu.codec import encode_tsdu
from sessionlayer.spdu.types import DataTransfer, GiveTokens

from .helpers import SessionPair

UNITS = ALL_FUNCTIONAL_UNITS


def no_abort(events: list[object]) -> None:
    assert not [e for e in events if isinstance(e, ProviderAbortIndication)], events


@pytest.mark.parametrize(
    "begin",
    [lambda m: m.activity_start(b"a1"), lambda m: m.activity_resume(b"a2", b"a1", 4)],
    ids=["AS", "AR"],
)
def test_activity_crossing_our_exception_report(begin: Callable[[SessionMachine], None]) -> None:
    p = SessionPair(
        SessionConfig(functional_units=UNITS),
        SessionConfig(functional_units=UNITS, exception_reports=True),
    )
    p.connect()
    # The responder reports a DT outside an activity (PT + ER, STA20); before the report
    # arrives the initiator begins an activity.
    p.resp.receive_tsdu(encode_tsdu(GiveTokens(), DataTransfer(user_data=b"x")), now=0)
    assert p.resp.state == "STA20"
    begin(p.init)
    for tsdu in p.init.data_to_send():
        p.resp.receive_tsdu(tsdu, now=0)
    ev = p.resp.events()
    no_abort(ev)
    assert [type(e) for e in ev] == [ProviderExceptionReportIndication]  # (not indicated)
    assert p.resp.activity_in_progress and p.resp.vm == p.init.vm
    ev = p.pump()
    assert p.init.state == "STA19"
    p.init.activity_discard()  # the recovery
    ev = p.pump()
    no_abort(ev["resp"])
    assert isinstance(ev["resp"][0], ActivityDiscardIndication)


def test_activity_start_overtaken_by_prepare() -> None:
    config = SessionConfig(functional_units=UNITS, transport_expedited=True)
    p = SessionPair(config)
    p.connect()
    p.init.activity_start(b"a1")
    p.init.resync(ResyncType.SET, 4)
    for tsdu in p.init.expedited_to_send() + p.init.data_to_send():
        p.resp.receive_tsdu(tsdu, now=0)
    ev = p.resp.events()
    no_abort(ev)
    assert [type(e) for e in ev] == [ActivityStartIndication, ResyncIndication]
    p.resp.resync_response()
    p.pump()
    assert p.init.activity_in_progress and p.resp.activity_in_progress
    p.init.activity_interrupt()
    ev = p.pump()
    no_abort(ev["resp"])
    assert isinstance(ev["resp"][0], ActivityInterruptIndication)
