"""A PLEASE TOKENS in a state that discards it must still be valid (X.225 7.17, Annex A);
a GIVE TOKENS that crossed our exception report is taken (7.16).

The version-2 table discards a PT in STA05A-C, STA15B, STA15C, STA19 and STA20 only under
p53 (ALL(AV, RT): every token it names is available).  One naming a token no selected
unit made available is a protocol error there, as in STA713: AB with Transport Disconnect
0x05, S-P-ABORT, STA16.  A valid one is still discarded, with no AB.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sessionlayer.errors import AbortReason
from sessionlayer.machine import ALL_FUNCTIONAL_UNITS, ProviderAbortIndication, SessionConfig
from sessionlayer.spdu import (
    Abort,
    FunctionalUnit,
    PleaseTokens,
    ResyncType,
    Token,
    decode_tsdu,
    encode_tsdu,
)

from .helpers import SessionPair, sta19, sta20

#: Every version-1 unit but negotiated release: the release token is not available.
UNITS = ALL_FUNCTIONAL_UNITS & ~FunctionalUnit.NEGOTIATED_RELEASE


def in_activity() -> SessionPair:
    p = SessionPair(SessionConfig(functional_units=UNITS, transport_expedited=True))
    p.connect()
    p.init.activity_start(b"A1")
    p.pump()
    return p


def sta05a(p: SessionPair) -> None:
    p.init.resync(ResyncType.ABANDON)


def sta05b(p: SessionPair) -> None:
    p.init.activity_interrupt()


def sta05c(p: SessionPair) -> None:
    p.init.activity_discard()


def sta15b(p: SessionPair) -> None:
    p.resp.resync(ResyncType.ABANDON)
    (pr,) = p.resp.expedited_to_send()
    p.init.receive_expedited(pr, now=0.0)  # (its RS not delivered)


def sta15c(p: SessionPair) -> None:
    p.init.resync(ResyncType.ABANDON)
    for tsdu in p.init.expedited_to_send() + p.init.data_to_send():
        p.resp.receive_tsdu(tsdu, now=0.0)
    p.resp.resync_response()
    (pr,) = p.resp.expedited_to_send()
    p.init.receive_expedited(pr, now=0.0)  # (its RA not delivered)


ENTRIES: dict[str, Callable[[SessionPair], None]] = {
    "STA05A": sta05a, "STA05B": sta05b, "STA05C": sta05c, "STA15B": sta15b,
    "STA15C": sta15c, "STA19": sta19, "STA20": sta20,
}  # fmt: skip


@pytest.mark.parametrize("valid", [True, False], ids=["valid", "unavailable"])
@pytest.mark.parametrize("entry", ENTRIES, ids=list(ENTRIES))
def test_a_pt_naming_an_unavailable_token_is_a_protocol_error(entry: str, valid: bool) -> None:
    p = in_activity()
    ENTRIES[entry](p)
    assert p.init.state == entry
    p.init.data_to_send()
    p.init.events()
    asked = Token.MAJOR_ACTIVITY if valid else Token.RELEASE
    p.init.receive_tsdu(encode_tsdu(PleaseTokens(tokens=int(asked))), now=0.0)
    if valid:
        assert p.init.state == entry and p.init.data_to_send() == []
        assert p.init.events() == []  # (discarded)
        return
    assert p.init.state == "STA16"  # (discarded before)
    sent = [s for t in p.init.data_to_send() for s in decode_tsdu(t)]
    assert [s.transport_disconnect for s in sent if isinstance(s, Abort)] == [0x05]
    (event,) = p.init.events()
    assert isinstance(event, ProviderAbortIndication) and event.local
    assert event.reason == AbortReason.TRANSPORT_RELEASED | AbortReason.PROTOCOL_ERROR


def test_a_gt_without_the_data_token_that_crossed_our_report_is_taken() -> None:
    """STA20 (X.225 7.16, 7.27; p60: ALL(AA, GT) and dk not in GT): the peer gave a token
    before our EXCEPTION REPORT reached it.  The GT is indicated and this end keeps
    waiting for the data token (it was a protocol error: AB 0x05)."""
    p = SessionPair(SessionConfig(functional_units=ALL_FUNCTIONAL_UNITS))
    p.connect()
    p.init.activity_start(b"A1")  # (an exception report is an activity's, p50/p51)
    p.pump()
    p.init.give_tokens(Token.DATA | Token.RELEASE)
    p.pump()
    p.init.exception_report(3)
    assert p.init.state == "STA20"
    (er,) = p.init.data_to_send()
    p.resp.give_tokens(Token.RELEASE)  # crossing our ER
    (gt,) = p.resp.data_to_send()
    p.init.receive_tsdu(gt, now=0.0)
    assert p.init.state == "STA20" and p.init.data_to_send() == []  # (no AB)
    assert [type(e).__name__ for e in p.init.events()] == ["TokenGiveIndication"]
    p.resp.receive_tsdu(er, now=0.0)
    assert p.resp.state == "STA19"
    p.resp.give_tokens(Token.DATA)  # the recovery
    p.pump()
    assert p.init.state == p.resp.state == "STA713"
    assert p.init.tokens_owned & Token.DATA and p.init.tokens_owned & Token.RELEASE
    assert p.init.tokens_owned == p.resp.tokens_available & ~p.resp.tokens_owned
