"""Two machines, random valid requests on both sides, SPDUs crossing in flight (property).

Each side makes requests its own table allows (a refused one, a LocalError, changes
nothing) while the link carries TSDUs in each direction in order, except that a TSDU of the
transport expedited flow (PREPARE, EXPEDITED DATA) may overtake the normal flow sent before
it (X.225 7.26).  Whatever one correct SPM sends, the other must take (X.225 9.3 d): no
provider abort may come of it.  Whenever everything sent has arrived and both ends are in
data transfer (STA713), they agree on where the tokens are, on V(M) and on whether an
activity is in progress.

Not generated: S-U-ABORT (it ends the run at once and proves nothing about crossings);
EXPEDITED DATA overtaking other EXPEDITED DATA (the transport keeps its expedited flow in
order).  Everything else each machine accepts is.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessionlayer.errors import LocalError
from sessionlayer.machine import (
    ALL_FUNCTIONAL_UNITS,
    DEFAULT_FUNCTIONAL_UNITS,
    ProviderAbortIndication,
    SessionConfig,
    SessionMachine,
)
from sessionlayer.spdu import FunctionalUnit, ResyncType, Token, TokenSetting

from .helpers import BASIC, SessionPair

FU = FunctionalUnit
UNITS = {
    "basic": BASIC,
    "all": ALL_FUNCTIONAL_UNITS,
    "default": DEFAULT_FUNCTIONAL_UNITS,
    "half-duplex-sync": FU.HALF_DUPLEX | FU.MINOR_SYNC | FU.MAJOR_SYNC | FU.RESYNC | FU.EXPEDITED,
    "duplex-activity": FU.DUPLEX
    | FU.ACTIVITY
    | FU.MINOR_SYNC
    | FU.RESYNC
    | FU.NEGOTIATED_RELEASE
    | FU.EXPEDITED,
}
TOKENS = (Token.DATA, Token.MINOR_SYNC, Token.MAJOR_ACTIVITY, Token.RELEASE)
SETTINGS = (TokenSetting.INITIATOR, TokenSetting.RESPONDER, TokenSetting.CALLED_CHOICE)

Request = Callable[[SessionMachine, int], object]


def _tokens(n: int) -> Token:
    """A non-empty set of tokens from the bits of ``n``."""
    chosen = Token(0)
    for i, token in enumerate(TOKENS):
        if n >> i & 1:
            chosen |= token
    return chosen or TOKENS[n % 4]


def _setting(m: SessionMachine, n: int) -> dict[Token, TokenSetting] | None:
    if n & 1:
        return None  # today's placement
    return {
        t: SETTINGS[(n >> (2 * i + 1)) % 3] for i, t in enumerate(TOKENS) if m.tokens_available & t
    }


#: Every request and response, with its arguments drawn from one integer.
REQUESTS: tuple[Request, ...] = (
    lambda m, n: m.send_data(b"d"),
    lambda m, n: m.send_typed_data(b"t"),
    lambda m, n: m.send_expedited(b"e"),
    lambda m, n: m.minor_sync(confirm=bool(n & 1)),
    lambda m, n: m.minor_sync_response(max(m.va, m.vm - 1 - n % 3)),
    lambda m, n: m.major_sync(),
    lambda m, n: m.major_sync_response(),
    lambda m, n: m.give_tokens(_tokens(n)),
    lambda m, n: m.please_tokens(_tokens(n)),
    lambda m, n: m.give_control(),
    lambda m, n: m.resync(ResyncType.RESTART, m.vr + n % (m.vm - m.vr + 1), _setting(m, n)),
    lambda m, n: m.resync(ResyncType.ABANDON, None, _setting(m, n)),
    lambda m, n: m.resync(ResyncType.SET, n % 20, _setting(m, n)),
    lambda m, n: m.resync_response(tokens=_tokens(n) if n & 1 else None),
    lambda m, n: m.exception_report((0, 1, 3, 5, 6)[n % 5]),
    lambda m, n: m.activity_start(b"a"),
    lambda m, n: m.activity_resume(b"b", b"a", n % 6),
    lambda m, n: m.activity_interrupt(),
    lambda m, n: m.activity_interrupt_response(),
    lambda m, n: m.activity_discard(),
    lambda m, n: m.activity_discard_response(),
    lambda m, n: m.activity_end(),
    lambda m, n: m.activity_end_response(),
    lambda m, n: m.send_capability_data(b"c"),
    lambda m, n: m.capability_data_response(b"c"),
    lambda m, n: m.release(),
    lambda m, n: m.release_response(accept=n % 4 == 0, now=0.0),
)

#: A step: ("ask", side, request, argument) or ("carry", side, overtake).
steps = st.one_of(
    st.tuples(
        st.just("ask"), st.integers(0, 1), st.integers(0, len(REQUESTS) - 1), st.integers(0, 255)
    ),
    st.tuples(st.just("carry"), st.integers(0, 1), st.booleans()),
)


class Link:
    """The two machines and what each has sent that has not arrived: (expedited, TSDU)."""

    def __init__(self, units: FunctionalUnit, expedited: bool) -> None:
        self.pair = SessionPair(
            SessionConfig(functional_units=units, transport_expedited=expedited)
        )
        self.pair.connect()
        self.sides = (self.pair.init, self.pair.resp)
        self.queues: tuple[list[tuple[bool, bytes]], ...] = ([], [])

    def collect(self, side: int) -> None:
        m = self.sides[side]
        self.queues[side].extend(
            [(True, t) for t in m.expedited_to_send()] + [(False, t) for t in m.data_to_send()]
        )

    def carry(self, side: int, overtake: bool) -> None:
        queue = self.queues[side]
        if not queue:
            return
        index = next((i for i, (exp, _) in enumerate(queue) if exp), 0) if overtake else 0
        _, tsdu = queue.pop(index)
        dst = self.sides[1 - side]
        dst.receive_tsdu(tsdu, now=0.0)
        for event in dst.events():
            assert not isinstance(event, ProviderAbortIndication), (
                f"{dst.role} in {dst.state}: {event}"
            )
        self.collect(1 - side)

    def drain(self) -> None:
        while any(self.queues):
            for side in (0, 1):
                self.carry(side, overtake=False)

    def check_agreement(self) -> None:
        init, resp = self.sides
        if init.is_ending or resp.is_ending or not init.state == resp.state == "STA713":
            return
        assert init.tokens_owned == init.tokens_available & ~resp.tokens_owned
        assert init.vm == resp.vm
        assert init.activity_in_progress == resp.activity_in_progress


@pytest.mark.parametrize("expedited", [False, True], ids=["normal", "expedited"])
@pytest.mark.parametrize("units", list(UNITS), ids=list(UNITS))
@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(script=st.lists(steps, max_size=120))
def test_crossing_requests_never_abort(
    units: str, expedited: bool, script: list[tuple[object, ...]]
) -> None:
    link = Link(UNITS[units], expedited)
    for step in script:
        if step[0] == "ask":
            _, side, k, n = step
            assert isinstance(side, int) and isinstance(k, int) and isinstance(n, int)
            with contextlib.suppress(LocalError):  # (refused: nothing changed)
                REQUESTS[k](link.sides[side], n)
            link.collect(side)
        else:
            _, side, overtake = step
            assert isinstance(side, int)
            link.carry(side, bool(overtake))
            if not any(link.queues):
                link.check_agreement()
        if any(m.is_ending for m in link.sides):
            return
    link.drain()
    link.check_agreement()
