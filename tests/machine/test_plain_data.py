"""``plain_data``: when it holds, S-DATA is DATA_PREFIX + data both ways and nothing else.

The asyncio binding frames and deframes data itself while ``plain_data`` holds; these
tests pin the contract it relies on to what the state table does.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from tests.machine.helpers import SessionPair

from sessionlayer.machine import DATA_PREFIX, DataIndication, SessionConfig
from sessionlayer.spdu import FunctionalUnit as FU

DUPLEX = SessionConfig(functional_units=FU.DUPLEX | FU.MINOR_SYNC | FU.MAJOR_SYNC | FU.RESYNC)


def test_plain_data_holds_only_in_data_transfer_with_duplex() -> None:
    pair = SessionPair(DUPLEX)
    assert not pair.init.plain_data
    pair.connect()
    assert pair.init.plain_data and pair.resp.plain_data
    pair.init.release()
    assert not pair.init.plain_data  # STA03: the machine decides


def test_half_duplex_segmenting_or_activities_take_the_machine() -> None:
    """(With activities: until one starts.)"""
    for config in (
        SessionConfig(functional_units=FU.HALF_DUPLEX),
        SessionConfig(functional_units=FU.DUPLEX, tsdu_max_send=1024, tsdu_max_receive=1024),
        SessionConfig(functional_units=FU.DUPLEX | FU.ACTIVITY | FU.MAJOR_SYNC),
    ):
        pair = SessionPair(config)
        pair.connect()
        assert not pair.init.plain_data, config
        assert not pair.resp.plain_data, config


def test_with_activities_data_is_plain_only_inside_one() -> None:
    pair = SessionPair(SessionConfig(functional_units=FU.DUPLEX | FU.ACTIVITY | FU.MAJOR_SYNC))
    pair.connect()
    assert not pair.init.plain_data
    pair.init.activity_start(b"a1")
    pair.resp.receive_tsdu(pair.init.data_to_send()[0], now=0.0)
    assert pair.init.plain_data and pair.resp.plain_data
    pair.init.send_data(b"x")
    assert pair.init.data_to_send() == [DATA_PREFIX + b"x"]
    pair.init.activity_end()
    assert not pair.init.plain_data  # (STA09: waiting for the end's confirm)


@given(st.binary(max_size=2000))
def test_send_and_receive_are_prefix_and_indication(data: bytes) -> None:
    pair = SessionPair(DUPLEX)
    pair.connect()
    before = (pair.init.state, pair.init.tokens_owned, pair.init.vm, pair.init.va)
    pair.init.send_data(data)
    assert pair.init.data_to_send() == [DATA_PREFIX + data]
    pair.resp.receive_tsdu(DATA_PREFIX + data, now=0.0)
    assert pair.resp.events() == [DataIndication(data)]
    assert pair.resp.data_to_send() == []
    assert (pair.init.state, pair.init.tokens_owned, pair.init.vm, pair.init.va) == before
    assert pair.resp.plain_data and pair.init.plain_data
