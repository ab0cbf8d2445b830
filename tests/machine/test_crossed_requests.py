"""SPDUs a correct peer sends before our request reaches it (X.225 9.3 d: every correct
sequence is accepted).  Each used to be a protocol error (AB 0x05) here.

* TYPED DATA needs no token: it may cross our GIVE TOKENS CONFIRM (STA18) or CAPABILITY
  DATA (STA21): indicated (the version-2 table's TD rows there).
* EXCEPTION DATA comes from the side without the data token: it may cross our MAP (STA04A),
  AE (STA04B) or FN (STA03), and this end, holding the data token, recovers (STA19); or it
  crosses the GIVE TOKENS that handed the data token over, which the peer then takes as the
  recovery: indicated, and the data transfer goes on.  Our MIP, MAP or AE that the peer gets
  while it waits for the recovery (STA20) is not indicated there, but numbered (V(M)), as
  the version-2 table's [23] and [31] say: before, it was dropped and the two ends
  disagreed on V(M) after the recovery.
* With activity management, S-U-EXCEPTION-REPORT is an activity's (p50/p51: [not FU(ACT) or
  Vact]), so it can never cross a GTC or CD, which need no activity.
* An RS crossing our FN (no activity management) takes precedence: the peer discards the FN.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sessionlayer.errors import StateError
from sessionlayer.machine import (
    ALL_FUNCTIONAL_UNITS,
    ControlGiveIndication,
    ProviderAbortIndication,
    ResyncConfirm,
    ResyncIndication,
    SessionMachine,
    TokenGiveIndication,
    TypedDataIndication,
    UserExceptionReportIndication,
)
from sessionlayer.spdu import FunctionalUnit, ResyncType, Token

from .helpers import BASIC, SessionPair, pair

FU = FunctionalUnit


def cross(
    p: SessionPair,
    mine: Callable[[SessionMachine], object],
    theirs: Callable[[SessionMachine], object],
) -> None:
    """The initiator's request and the responder's cross on the wire."""
    mine(p.init)
    theirs(p.resp)
    to_resp, to_init = p.init.data_to_send(), p.resp.data_to_send()
    for tsdu in to_init:
        p.init.receive_tsdu(tsdu, now=0)
    for tsdu in to_resp:
        p.resp.receive_tsdu(tsdu, now=0)


def events(p: SessionPair) -> tuple[list[object], list[object]]:
    got = p.init.events(), p.resp.events()
    for side in got:
        assert not [e for e in side if isinstance(e, ProviderAbortIndication)], got
    return got


@pytest.mark.parametrize("request_", ["give_control", "send_capability_data"])
def test_typed_data_crossing_control_or_capability_data(request_: str) -> None:
    p = pair(functional_units=ALL_FUNCTIONAL_UNITS)
    cross(p, lambda m: getattr(m, request_)(), lambda m: m.send_typed_data(b"t"))
    ev_init, _ = events(p)
    assert ev_init == [TypedDataIndication(b"t")]
    ev = p.pump()
    assert not [e for e in ev["init"] + ev["resp"] if isinstance(e, ProviderAbortIndication)]
    if request_ == "give_control":
        assert p.init.state == "STA713" and p.init.tokens_owned == 0
    else:
        assert p.init.state == "STA21" and p.resp.state == "STA22"


@pytest.mark.parametrize(
    "request_",
    [lambda m: m.major_sync(), lambda m: m.minor_sync(), lambda m: m.release()],
    ids=["MAP", "MIP", "FN"],
)
def test_exception_data_crossing_a_request(request_: Callable[[SessionMachine], object]) -> None:
    p = pair(functional_units=BASIC)
    cross(p, request_, lambda m: m.exception_report(3))
    ev_init, ev_resp = events(p)
    assert isinstance(ev_init[0], UserExceptionReportIndication)
    assert ev_resp == []  # not indicated there (STA20); a MAP or MIP still numbered
    assert (p.init.state, p.resp.state) == ("STA19", "STA20")
    assert p.init.vm == p.resp.vm
    p.init.give_tokens(Token.DATA)  # the recovery
    ev = p.pump()
    assert isinstance(ev["resp"][0], TokenGiveIndication)
    assert p.init.state == p.resp.state == "STA713"


def test_exception_data_crossing_activity_end() -> None:
    p = pair(functional_units=ALL_FUNCTIONAL_UNITS)
    p.init.activity_start(b"a")
    p.pump()
    cross(p, lambda m: m.activity_end(), lambda m: m.exception_report(3))
    ev_init, _ = events(p)
    assert isinstance(ev_init[0], UserExceptionReportIndication)
    assert (p.init.state, p.resp.state) == ("STA19", "STA20")


def test_exception_data_crossing_the_data_token() -> None:
    p = pair(functional_units=BASIC)
    cross(p, lambda m: m.give_tokens(Token.DATA), lambda m: m.exception_report(3))
    ev_init, ev_resp = events(p)
    assert isinstance(ev_init[0], UserExceptionReportIndication)
    assert isinstance(ev_resp[0], TokenGiveIndication)
    assert p.init.state == p.resp.state == "STA713"
    assert p.resp.tokens_owned & Token.DATA and not p.init.tokens_owned & Token.DATA


def test_exception_report_needs_an_activity() -> None:
    p = pair(functional_units=ALL_FUNCTIONAL_UNITS)
    with pytest.raises(StateError):
        p.resp.exception_report(3)
    assert p.resp.data_to_send() == [] and p.resp.state == "STA713"


def test_resync_crossing_release() -> None:
    p = pair(functional_units=FU.DUPLEX | FU.RESYNC | FU.MINOR_SYNC)
    cross(p, lambda m: m.release(), lambda m: m.resync(ResyncType.ABANDON))
    ev_init, ev_resp = events(p)
    assert isinstance(ev_init[0], ResyncIndication) and ev_resp == []
    assert (p.init.state, p.resp.state) == ("STA11A", "STA05A")
    p.init.resync_response()
    ev = p.pump()
    assert isinstance(ev["resp"][0], ResyncConfirm)
    assert p.init.state == p.resp.state == "STA713"


def test_control_give_still_reaches_the_peer() -> None:
    p = pair(functional_units=ALL_FUNCTIONAL_UNITS)
    p.init.give_control()
    ev = p.pump()
    assert isinstance(ev["resp"][0], ControlGiveIndication)
