"""What arrives after a PREPARE of a resync, with data separation (X.225 7.24, 7.26).

STA15B (the peer's PR-RS came ahead of its RS) and STA15C (its PR-RA came ahead of the RA
answering our RS) discard the DT, TD and PT still ahead of the RS or RA, as STA05A does
while our RS is outstanding, unless a data separation point this end sent is unconfirmed:
then they are delivered (the version-2 table's p185: Discard-rcv-flow and not p81).  The
same SPDU is thus delivered or discarded alike whether the PREPARE overtook it or not.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sessionlayer.machine import (
    SYMMETRIC_FUNCTIONAL_UNITS,
    DataIndication,
    Event,
    SessionConfig,
    TokenPleaseIndication,
    TypedDataIndication,
)
from sessionlayer.spdu import (
    DataTransfer,
    GiveTokens,
    PleaseTokens,
    ResyncType,
    Token,
    TypedData,
    encode_tsdu,
)

from .helpers import SessionPair

MAJOR = Token.MAJOR_ACTIVITY

#: What the peer sent before its RS or RA, and what it is when delivered.
SENT: dict[str, tuple[Callable[[], bytes], Event]] = {
    "DT": (lambda: encode_tsdu(GiveTokens(), DataTransfer(user_data=b"d")), DataIndication(b"d")),
    "TD": (lambda: encode_tsdu(TypedData(user_data=b"t")), TypedDataIndication(b"t")),
    "PT": (lambda: encode_tsdu(PleaseTokens(tokens=int(MAJOR))),
           TokenPleaseIndication(MAJOR, None)),
}  # fmt: skip


def pair(separation: bool) -> SessionPair:
    """Symmetric synchronize with data separation; with ``separation`` the initiator sent a
    separation point the responder has not confirmed."""
    config = SessionConfig(
        functional_units=SYMMETRIC_FUNCTIONAL_UNITS,
        transport_expedited=True,
        initial_serial=5,
        second_initial_serial=50,
    )
    p = SessionPair(config)
    p.connect()
    if separation:
        p.init.minor_sync(data_separation=True)
        p.pump()
        p.resp.events()
    return p


def sta15b(p: SessionPair) -> bytes:
    """The responder resynchronizes; its PR-RS reaches the initiator first.  Returns the RS."""
    p.resp.resync(ResyncType.ABANDON)
    (pr,) = p.resp.expedited_to_send()
    (rs,) = p.resp.data_to_send()
    p.init.receive_expedited(pr, now=0.0)
    return rs


def sta15c(p: SessionPair) -> bytes:
    """The initiator resynchronizes; the responder's PR-RA reaches it ahead of the RA
    (returned)."""
    p.init.resync(ResyncType.ABANDON)
    for tsdu in p.init.expedited_to_send() + p.init.data_to_send():
        p.resp.receive_tsdu(tsdu, now=0.0)
    assert p.resp.state == "STA11A"
    p.resp.events()
    p.resp.resync_response()
    (pr,) = p.resp.expedited_to_send()
    (ra,) = p.resp.data_to_send()
    p.init.receive_expedited(pr, now=0.0)
    return ra


STATES: dict[str, Callable[[SessionPair], bytes]] = {"STA15B": sta15b, "STA15C": sta15c}


@pytest.mark.parametrize("separation", [True, False], ids=["separation", "none"])
@pytest.mark.parametrize("kind", SENT, ids=list(SENT))
@pytest.mark.parametrize("state", STATES, ids=list(STATES))
def test_after_a_prepare_data_is_kept_behind_our_separation_point(
    state: str, kind: str, separation: bool
) -> None:
    p = pair(separation)
    last = STATES[state](p)
    assert p.init.state == state
    p.init.events()
    make, delivered = SENT[kind]
    p.init.receive_tsdu(make(), now=0.0)
    assert p.init.state == state and p.init.data_to_send() == []  # no AB
    assert p.init.events() == ([delivered] if separation else [])  # (discarded before)
    p.init.receive_tsdu(last, now=0.0)
    if state == "STA15B":
        assert p.init.state == "STA11A"
        p.init.resync_response()
    p.pump()
    assert p.init.state == p.resp.state == "STA713"


def test_sta15c_and_sta05a_agree() -> None:
    """The same DT is kept behind our separation point in STA05A (no PREPARE overtook it)
    and in STA15C (one did)."""
    seen: list[list[Event]] = []
    for prepared in (False, True):
        p = pair(True)
        if prepared:
            ra = sta15c(p)
            assert p.init.state == "STA15C"
        else:
            p.init.resync(ResyncType.ABANDON)
            p.init.data_to_send()
            assert p.init.state == "STA05A"
        p.init.events()
        p.init.receive_tsdu(SENT["DT"][0](), now=0.0)
        seen.append(p.init.events())
        if prepared:
            p.init.receive_tsdu(ra, now=0.0)
            assert p.init.state == "STA713"
    assert seen[0] == seen[1] == [DataIndication(b"d")]
