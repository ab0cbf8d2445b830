"""The clock is an argument (issue 7): every input that can arm TIM is told the time."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import pytest

from sessionlayer.machine import SessionConfig, SessionMachine

from .helpers import SessionPair

NOW = 5000.0  # a loop clock far from 0, as asyncio's is
TIMEOUT = 7.5


def pair() -> SessionPair:
    p = SessionPair(SessionConfig(abort_timeout=TIMEOUT))
    p.now = NOW
    p.connect()
    return p


@pytest.mark.parametrize(
    "name", ["receive_tsdu", "receive_expedited", "abort", "refuse", "release_response"]
)
def test_now_is_a_required_keyword(name: str) -> None:
    param = inspect.signature(getattr(SessionMachine, name)).parameters["now"]
    assert param.kind is inspect.Parameter.KEYWORD_ONLY
    assert param.default is inspect.Parameter.empty


def check_tim(m: SessionMachine) -> None:
    """TIM runs from the time given: not expired before it, expired at it."""
    assert m.get_timer() == NOW + TIMEOUT
    m.handle_timer(NOW + TIMEOUT - 0.001)
    assert not m.wants_transport_disconnect and not m.is_closed
    m.handle_timer(NOW + TIMEOUT)
    assert m.wants_transport_disconnect and m.is_closed


def test_abort_arms_tim_in_the_future() -> None:
    p = pair()
    p.resp.abort(now=NOW)
    check_tim(p.resp)


def test_release_response_arms_tim_in_the_future() -> None:
    p = pair()
    p.init.release()
    p.pump()
    p.resp.release_response(True, now=NOW)
    check_tim(p.resp)


def test_refuse_arms_tim_in_the_future() -> None:
    p = SessionPair(SessionConfig(abort_timeout=TIMEOUT))
    p.init.transport_connected()
    p.init.connect()
    p.pump()
    p.resp.refuse(now=NOW)
    check_tim(p.resp)


Feed = Callable[[SessionMachine, bytes], None]


@pytest.mark.parametrize(
    "feed",
    [
        lambda m, b: m.receive_tsdu(b, now=NOW),
        lambda m, b: m.receive_expedited(b, now=NOW),
    ],
)
def test_protocol_error_arms_tim_in_the_future(feed: Feed) -> None:
    p = pair()
    feed(p.resp, b"\xff\x00")  # an unknown SPDU: AB, STA16, TIM
    assert p.resp.state == "STA16"
    check_tim(p.resp)
