"""Invalid input from the peer -> AB on the wire; invalid local requests -> nothing at all."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessionlayer.errors import AbortReason, LocalError
from sessionlayer.machine import (
    ALL_FUNCTIONAL_UNITS,
    FunctionalUnitError,
    ParameterError,
    ProviderAbortIndication,
    ProviderExceptionReportIndication,
    SessionConfig,
    SessionMachine,
    StateError,
    TokenError,
)
from sessionlayer.spdu import (
    SPDU,
    Abort,
    Accept,
    ActivityEnd,
    Connect,
    DataTransfer,
    ExceptionReport,
    FunctionalUnit,
    GiveTokens,
    MajorSyncAck,
    MinorSyncPoint,
    PleaseTokens,
    ResynchronizeAck,
    Token,
    encode,
    encode_tsdu,
)

from .helpers import SessionPair, decode

FU = FunctionalUnit
PROTOCOL_ERROR = AbortReason.TRANSPORT_RELEASED | AbortReason.PROTOCOL_ERROR


def connected(role: str = "initiator", **kw: object) -> SessionMachine:
    kw.setdefault("functional_units", ALL_FUNCTIONAL_UNITS & ~FU.ACTIVITY & ~FU.CAPABILITY_DATA)
    p = SessionPair(SessionConfig(**kw))  # type: ignore[arg-type]
    p.connect()
    return p.init if role == "initiator" else p.resp


def assert_aborted(m: SessionMachine, reflect: bytes | None = None) -> None:
    (tsdu,) = m.data_to_send()
    (ab,) = decode(tsdu)
    assert isinstance(ab, Abort)
    assert ab.transport_disconnect == PROTOCOL_ERROR == 0x05
    if reflect is not None:
        assert ab.reflect == reflect[:9]
    (ev,) = m.events()
    assert isinstance(ev, ProviderAbortIndication) and ev.local
    assert ev.reason == PROTOCOL_ERROR
    assert m.state == "STA16" and m.get_timer() is not None


BAD_IN_STA713: list[tuple[str, str, tuple[SPDU, ...]]] = [
    # (case, role receiving, SPDUs)
    ("DT while we hold the data token", "initiator", (GiveTokens(), DataTransfer(user_data=b"x"))),
    ("GT for tokens we hold", "initiator", (GiveTokens(tokens=int(Token.DATA)),)),
    ("MIP with the wrong serial", "responder",
     (GiveTokens(), MinorSyncPoint(serial_number=99))),
    ("MAA without MAP", "responder", (PleaseTokens(), MajorSyncAck(serial_number=0))),
    ("RA without RS", "responder", (PleaseTokens(), ResynchronizeAck(serial_number=0))),
    ("AC after connect", "initiator", (Accept(),)),
    ("CN after connect", "responder", (Connect(),)),
    ("AE without the activity unit", "responder", (GiveTokens(), ActivityEnd(serial_number=0))),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "role", "spdus"), BAD_IN_STA713, ids=[c for c, _, _ in BAD_IN_STA713]
)
def test_invalid_spdu_is_answered_with_ab(case: str, role: str, spdus: tuple[SPDU, ...]) -> None:
    m = connected(role)
    m.receive_tsdu(encode_tsdu(*spdus), now=0.0)
    assert_aborted(m, reflect=encode(spdus[-1])[:9])
    assert m.wants_transport_disconnect is False
    m.handle_timer(m.get_timer() or 0.0)
    assert m.wants_transport_disconnect and m.is_closed
    m.receive_tsdu(b"\x01\x00\x01\x00late", now=0.0)  # ignored once closed
    assert m.data_to_send() == [] and m.events() == []


@pytest.mark.parametrize(
    ("case", "role", "spdus"), BAD_IN_STA713, ids=[c for c, _, _ in BAD_IN_STA713]
)
def test_invalid_spdu_is_answered_with_er_when_configured(
    case: str, role: str, spdus: tuple[SPDU, ...]
) -> None:
    """X.225 7.27: with exception reports on, the side without the data token (the
    responder here) sends PT + ER with the Reflect Parameter Values; the other still AB."""
    m = connected(role, exception_reports=True)
    m.receive_tsdu(encode_tsdu(*spdus), now=0.0)
    reportable = role == "responder" and spdus[-1].kind not in ("CN", "AC")
    if not reportable:
        assert_aborted(m, reflect=encode(spdus[-1])[:9])
        return
    (tsdu,) = m.data_to_send()
    pt, er = decode(tsdu)
    assert isinstance(pt, PleaseTokens) and isinstance(er, ExceptionReport)
    assert er.reflect == encode(spdus[-1])[:9]
    assert m.events() == [ProviderExceptionReportIndication(er.reflect, local=True)]
    assert m.state == "STA20" and m.get_timer() is None


@pytest.mark.parametrize(
    "raw",
    [b"\xff", b"\x0d\x05\x05\x03\x13\x01", b"\x01\x00\x0d\x00", b"\x19\x03\x11\x01"],
)
def test_undecodable_tsdu_is_answered_with_ab(raw: bytes) -> None:
    m = connected()
    m.receive_tsdu(raw, now=0.0)
    assert_aborted(m)


def test_data_before_connect_is_a_protocol_error() -> None:
    m = SessionMachine("responder")
    m.receive_tsdu(b"\x01\x00\x01\x00x", now=0.0)
    assert_aborted(m, reflect=b"\x01\x00x")


def test_only_the_first_error_is_answered() -> None:
    m = connected()
    m.receive_tsdu(b"\xff", now=0.0)
    assert_aborted(m)
    m.receive_tsdu(b"\xff", now=0.0)
    assert m.data_to_send() == [] and m.events() == []


@given(st.binary(max_size=40))
@settings(max_examples=300, deadline=None)
def test_any_bytes_either_work_or_abort_with_protocol_error(raw: bytes) -> None:
    m = connected(functional_units=FU.DUPLEX)
    m.receive_tsdu(raw, now=0.0)  # never raises
    for tsdu in m.data_to_send():
        for spdu in decode(tsdu):
            if isinstance(spdu, Abort):
                assert spdu.transport_disconnect == 0x05
    if m.state == "STA16":
        assert any(isinstance(e, ProviderAbortIndication) for e in m.events())


LOCAL: list[tuple[str, type[LocalError], Callable[[SessionMachine], object]]] = [
    ("data without the data token", TokenError, lambda m: m.send_data(b"x")),
    ("give a token we lack", TokenError, lambda m: m.give_tokens(Token.DATA)),
    ("please no token at all", TokenError, lambda m: m.please_tokens(Token(0))),
    ("minor sync without the token", TokenError, lambda m: m.minor_sync()),
    ("activity without the unit", FunctionalUnitError, lambda m: m.activity_start(b"a")),
    ("capability data without the unit", FunctionalUnitError,
     lambda m: m.send_capability_data()),
    ("response nobody asked for", StateError, lambda m: m.major_sync_response()),
    ("minor sync response for an unknown point", ParameterError,
     lambda m: m.minor_sync_response(1234)),
    ("release without all tokens", TokenError, lambda m: m.release()),
    ("connect twice", StateError, lambda m: m.connect()),
    ("refuse with data but not reason 2", ParameterError, lambda m: m.refuse(0x83, b"x", now=0.0)),
    ("accept as initiator", StateError, lambda m: m.accept()),
    ("expedited too long", ParameterError, lambda m: m.send_expedited(bytes(15))),
    ("resync restart beyond V(M)", ParameterError,
     lambda m: m.resync(0, 99)),
]  # fmt: skip


@pytest.mark.parametrize(("case", "error", "call"), LOCAL, ids=[c for c, _, _ in LOCAL])
def test_invalid_local_request_sends_nothing(
    case: str, error: type[LocalError], call: Callable[[SessionMachine], object]
) -> None:
    m = connected("responder")
    before = (m.state, m.tokens_owned, m.va, m.vm, m.vr, m.vsc)
    with pytest.raises(error):
        call(m)
    assert m.data_to_send() == [] and m.expedited_to_send() == [] and m.events() == []
    assert (m.state, m.tokens_owned, m.va, m.vm, m.vr, m.vsc) == before


def test_requests_after_the_end_are_state_errors() -> None:
    m = connected()
    m.transport_disconnected()
    m.events()
    with pytest.raises(StateError):
        m.send_data(b"x")
    with pytest.raises(StateError):
        m.abort(now=0.0)
