"""ACTIVITY INTERRUPT and ACTIVITY DISCARD need the major/activity token (X.225 7.31, 7.33).

Only its holder may send AI or AD (Annex A, p40: AA(ma), the token is the peer's).  One
from the side that does not hold it, while this end does, is a protocol error in every state
that takes AI/AD: AB with Transport Disconnect 0x05, S-P-ABORT, STA16; as any other SPDU
needing a token the peer lacks.  From the holder it is indicated as before.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sessionlayer.errors import AbortReason
from sessionlayer.machine import (
    ALL_FUNCTIONAL_UNITS,
    ActivityDiscardIndication,
    ActivityInterruptIndication,
    ProviderAbortIndication,
    SessionConfig,
)
from sessionlayer.spdu import (
    SPDU,
    Abort,
    ActivityDiscard,
    ActivityInterrupt,
    FunctionalUnit,
    GiveTokens,
    ResyncType,
    Token,
    decode_tsdu,
    encode_tsdu,
)

from .helpers import SessionPair, sta19, sta20

FU = FunctionalUnit
MAJOR = Token.MAJOR_ACTIVITY


def in_activity(**kw: object) -> SessionPair:
    """The initiator started an activity; it holds every token."""
    p = SessionPair(SessionConfig(functional_units=ALL_FUNCTIONAL_UNITS, **kw))  # type: ignore[arg-type]
    p.connect()
    p.init.activity_start(b"A1")
    p.pump()
    assert p.init.tokens_owned & MAJOR
    return p


def sta713(p: SessionPair) -> None:
    pass


def sta05a(p: SessionPair) -> None:
    p.init.resync(ResyncType.ABANDON)  # (not delivered: our RS is outstanding)


def sta15b(p: SessionPair) -> None:
    p.resp.resync(ResyncType.ABANDON)
    (pr,) = p.resp.expedited_to_send()
    p.init.receive_expedited(pr, now=0.0)  # (its RS not delivered: PREPARE came first)


def after_our_aea(p: SessionPair) -> None:
    """We answered the peer's AE, and it gave us the major/activity token since: the AEA
    crossing window is open (an AI or AD of the peer's would reopen the activity)."""
    p.init.give_tokens(MAJOR | Token.DATA | Token.MINOR_SYNC)
    p.pump()
    p.resp.activity_end()
    p.pump()
    p.init.activity_end_response()
    p.pump()
    p.resp.give_tokens(MAJOR)
    p.pump()
    assert not p.init.activity_in_progress and p.init.tokens_owned & MAJOR


ENTRIES: dict[str, Callable[[SessionPair], None]] = {
    "STA713": sta713,
    "STA05A": sta05a,
    "STA15B": sta15b,
    "STA19": sta19,
    "STA20": sta20,
    "STA713-after-AEA": after_our_aea,
}


@pytest.mark.parametrize("spdu", [ActivityInterrupt(), ActivityDiscard()], ids=["AI", "AD"])
@pytest.mark.parametrize("entry", ENTRIES, ids=list(ENTRIES))
def test_ai_or_ad_from_the_side_without_the_token_is_a_protocol_error(
    entry: str, spdu: SPDU
) -> None:
    p = in_activity(transport_expedited=True)
    ENTRIES[entry](p)
    assert p.init.state == entry.split("-")[0]
    assert p.init.tokens_owned & MAJOR
    p.init.data_to_send()
    p.init.events()
    p.init.receive_tsdu(encode_tsdu(GiveTokens(), spdu), now=0.0)
    assert p.init.state == "STA16"
    sent = [s for t in p.init.data_to_send() for s in decode_tsdu(t)]
    assert [s.transport_disconnect for s in sent if isinstance(s, Abort)] == [0x05]
    (event,) = p.init.events()
    assert isinstance(event, ProviderAbortIndication) and event.local
    assert event.reason == AbortReason.TRANSPORT_RELEASED | AbortReason.PROTOCOL_ERROR


@pytest.mark.parametrize("spdu", [ActivityInterrupt(), ActivityDiscard()], ids=["AI", "AD"])
def test_ai_or_ad_from_the_holder_is_still_indicated(spdu: SPDU) -> None:
    p = in_activity()
    p.init.give_tokens(MAJOR)
    p.pump()
    p.init.receive_tsdu(encode_tsdu(GiveTokens(), spdu), now=0.0)
    kind = (
        ActivityInterruptIndication
        if isinstance(spdu, ActivityInterrupt)
        else (ActivityDiscardIndication)
    )
    assert [type(e) for e in p.init.events()] == [kind]
    assert p.init.state in ("STA11B", "STA11C")
