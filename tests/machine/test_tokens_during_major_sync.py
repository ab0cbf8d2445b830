"""Tokens and data around an outstanding major sync point or activity end (X.225 7.16,
7.17, 7.22, 7.26).

The version-2 state table lets either side give tokens it holds while a MAP or AE is
unanswered (SGTreq in STA04A, STA04B, STA15A, STA10A and STA10B, p54; the GT is taken there,
p59), and the side that has to answer ask for tokens (SPTreq in STA10A, STA10B, and as well
in STA09 and STA22, p53).  In STA15A, which is STA04A/04B after the peer's PREPARE (MAA)
overtook its MAA, the DT, TD and GT still ahead of the MAA are delivered, as in STA04A.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from sessionlayer.machine import (
    ALL_FUNCTIONAL_UNITS,
    DataIndication,
    Event,
    MajorSyncConfirm,
    SessionConfig,
    SessionMachine,
    TokenGiveIndication,
    TokenPleaseIndication,
    TypedDataIndication,
)
from sessionlayer.spdu import FunctionalUnit, Token

from .helpers import SessionPair

FU = FunctionalUnit
#: Half-duplex with every unit but activity management and capability data.
BASIC = ALL_FUNCTIONAL_UNITS & ~FU.ACTIVITY & ~FU.CAPABILITY_DATA


def pair(units: FunctionalUnit, **kw: object) -> SessionPair:
    p = SessionPair(SessionConfig(functional_units=units, **kw))  # type: ignore[arg-type]
    p.connect()
    return p


def nothing(p: SessionPair) -> None:
    pass


def resp_holds_release(p: SessionPair) -> None:
    p.init.give_tokens(Token.RELEASE)
    p.pump()


def in_activity(p: SessionPair) -> None:
    p.init.activity_start(b"A1")
    p.pump()


@dataclass(frozen=True)
class Case:
    name: str
    units: FunctionalUnit
    before: Callable[[SessionPair], object]
    wait: Callable[[SessionPair], object]  # the initiator's request: it waits for the answer
    states: tuple[str, str]  # (the initiator's, the responder's) once it arrived
    acting: str  # "init" or "resp": who gives or asks while the answer is outstanding
    act: Callable[[SessionMachine], object]
    seen: Event  # what the other side indicates
    answer: Callable[[SessionPair], object]


GIVE_DATA = (lambda m: m.give_tokens(Token.DATA), TokenGiveIndication(Token.DATA))
GIVE_RELEASE = (lambda m: m.give_tokens(Token.RELEASE), TokenGiveIndication(Token.RELEASE))
ASK_DATA = (lambda m: m.please_tokens(Token.DATA), TokenPleaseIndication(Token.DATA, None))


def major(p: SessionPair) -> None:
    p.init.major_sync()


def major_answer(p: SessionPair) -> None:
    p.resp.major_sync_response()


def end(p: SessionPair) -> None:
    p.init.activity_end()


def end_answer(p: SessionPair) -> None:
    p.resp.activity_end_response()


def release(p: SessionPair) -> None:
    p.init.release()


def refuse(p: SessionPair) -> None:
    p.resp.release_response(accept=False, now=0.0)


def capability(p: SessionPair) -> None:
    p.init.send_capability_data(b"c")


def capability_answer(p: SessionPair) -> None:
    p.resp.capability_data_response()


ALL = ALL_FUNCTIONAL_UNITS
CASES = [
    Case("STA04A-gives", BASIC, nothing, major, ("STA04A", "STA10A"), "init", *GIVE_DATA,
         major_answer),
    Case("STA04B-gives", ALL, in_activity, end, ("STA04B", "STA10B"), "init", *GIVE_DATA,
         end_answer),
    Case("STA10A-gives", BASIC, resp_holds_release, major, ("STA04A", "STA10A"), "resp",
         *GIVE_RELEASE, major_answer),
    Case("STA10B-gives", ALL, lambda p: (resp_holds_release(p), in_activity(p)), end,
         ("STA04B", "STA10B"), "resp", *GIVE_RELEASE, end_answer),
    Case("STA10A-asks", BASIC, nothing, major, ("STA04A", "STA10A"), "resp", *ASK_DATA,
         major_answer),
    Case("STA10B-asks", ALL, in_activity, end, ("STA04B", "STA10B"), "resp", *ASK_DATA,
         end_answer),
    Case("STA09-asks", BASIC, nothing, release, ("STA03", "STA09"), "resp", *ASK_DATA, refuse),
    Case("STA22-asks", ALL, nothing, capability, ("STA21", "STA22"), "resp", *ASK_DATA,
         capability_answer),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_tokens_given_or_asked_for_while_an_answer_is_outstanding(case: Case) -> None:
    p = pair(case.units)
    case.before(p)
    case.wait(p)
    p.pump()
    assert (p.init.state, p.resp.state) == case.states
    acting = p.init if case.acting == "init" else p.resp
    case.act(acting)  # (raised LocalError before: no SGTreq / SPTreq row there)
    assert acting.state == (case.states[0] if acting is p.init else case.states[1])
    seen = p.pump()
    assert seen["resp" if case.acting == "init" else "init"] == [case.seen]
    assert (p.init.state, p.resp.state) == case.states  # (no AB either way)
    case.answer(p)
    p.pump()
    assert p.init.state == p.resp.state == "STA713"
    assert p.init.tokens_owned == p.resp.tokens_available & ~p.resp.tokens_owned
    if isinstance(case.seen, TokenGiveIndication):
        receiver = p.resp if acting is p.init else p.init
        assert receiver.tokens_owned & case.seen.tokens


def _prepared(p: SessionPair) -> tuple[bytes, bytes]:
    """The responder answers the initiator's MAP: its PREPARE (MAA) reaches the initiator
    first (STA15A); the MAA itself is returned, not delivered."""
    p.resp.receive_tsdu(p.init.data_to_send()[0], now=0.0)
    assert p.resp.events()
    p.resp.major_sync_response()
    (pr,) = p.resp.expedited_to_send()
    (maa,) = p.resp.data_to_send()
    p.init.receive_expedited(pr, now=0.0)
    assert p.init.state == "STA15A"
    return pr, maa


#: Duplex (data both ways), typed data, expedited, major sync and the release token.
DUPLEX = (
    FU.DUPLEX | FU.TYPED_DATA | FU.EXPEDITED | FU.MAJOR_SYNC | FU.RESYNC | FU.NEGOTIATED_RELEASE
)

SENT_BEFORE_THE_MAA: dict[str, tuple[Callable[[SessionMachine], object], Event]] = {
    "DT": (lambda m: m.send_data(b"d"), DataIndication(b"d")),
    "TD": (lambda m: m.send_typed_data(b"t"), TypedDataIndication(b"t")),
    "GT": (lambda m: m.give_tokens(Token.RELEASE), TokenGiveIndication(Token.RELEASE)),
}


@pytest.mark.parametrize("kind", SENT_BEFORE_THE_MAA, ids=list(SENT_BEFORE_THE_MAA))
def test_what_the_peer_sent_before_its_maa_is_delivered_in_sta15a(kind: str) -> None:
    p = pair(DUPLEX, transport_expedited=True)
    resp_holds_release(p)
    p.init.major_sync()
    send, expected = SENT_BEFORE_THE_MAA[kind]
    send(p.resp)  # before the MAP arrived
    (sent,) = p.resp.data_to_send()
    _pr, maa = _prepared(p)
    p.init.receive_tsdu(sent, now=0.0)
    assert p.init.state == "STA15A" and p.init.data_to_send() == []
    assert p.init.events() == [expected]  # (discarded before)
    p.init.receive_tsdu(maa, now=0.0)
    assert p.init.state == "STA713"
    assert [type(e) for e in p.init.events()] == [MajorSyncConfirm]
    assert p.init.tokens_owned == p.resp.tokens_available & ~p.resp.tokens_owned


def test_tokens_may_be_given_in_sta15a() -> None:
    p = pair(BASIC | FU.EXPEDITED, transport_expedited=True)
    p.init.major_sync()
    _pr, maa = _prepared(p)
    p.init.give_tokens(Token.DATA)  # (raised LocalError before)
    (gt,) = p.init.data_to_send()
    p.resp.receive_tsdu(gt, now=0.0)
    assert p.resp.events() == [TokenGiveIndication(Token.DATA)]
    p.init.receive_tsdu(maa, now=0.0)
    assert p.init.state == p.resp.state == "STA713"
    assert p.resp.tokens_owned == Token.DATA and not p.init.tokens_owned & Token.DATA
