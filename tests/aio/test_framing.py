"""The data fast path produces and accepts exactly what the general path does."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessionlayer.aio.framing import PlainReader, frame_data
from sessionlayer.errors import DecodeError
from sessionlayer.machine import DATA_PREFIX
from sessionlayer.transport import Rfc1006Connection, TsduReceived

SIZES = st.sampled_from([128, 256, 1024, 8192, 65408])


def open_pair(tpdu_size: int) -> tuple[Rfc1006Connection, Rfc1006Connection]:
    a = Rfc1006Connection("initiator", max_tpdu_size=tpdu_size, max_tsdu_size=1 << 22)
    b = Rfc1006Connection("responder", max_tpdu_size=tpdu_size, max_tsdu_size=1 << 22)
    b.receive_data(a.connect(tpdu_size=tpdu_size))
    a.receive_data(b.accept())
    return a, b


@given(st.binary(max_size=20_000), SIZES)
def test_frame_data_is_what_the_general_path_sends(data: bytes, size: int) -> None:
    a, _ = open_pair(size)
    assert frame_data(data, size) == a.send_tsdu(DATA_PREFIX + data)


def chunked(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    return [stream[x:y] for x, y in itertools.pairwise(points)]


@settings(max_examples=200)
@given(
    st.lists(st.binary(max_size=3000), max_size=8),
    SIZES,
    st.lists(st.integers(min_value=0, max_value=1 << 20), max_size=12),
)
def test_reader_gives_the_messages_whatever_the_chunks(
    messages: list[bytes], size: int, cuts: list[int]
) -> None:
    stream = b"".join(frame_data(m, size) for m in messages)
    reader = PlainReader(1 << 22)
    got: list[bytes] = []
    for chunk in chunked(stream, cuts):
        assert reader.feed(chunk, got) == b""
    assert got == messages
    assert not reader.pending


@given(st.binary(max_size=3000), st.integers(min_value=0, max_value=3000))
def test_anything_else_is_handed_back_untouched(data: bytes, cut: int) -> None:
    """A TPDU that is not plain data goes back, with what was held, to the general path."""
    other = bytes.fromhex("0300000902f080") + b"\x02\x00"  # PT alone (a keepalive probe)
    stream = frame_data(data, 1024) + other + frame_data(b"after", 1024)
    reader = PlainReader(1 << 22)
    got: list[bytes] = []
    cut = min(cut, len(stream))
    rest = reader.feed(stream[:cut], got)
    if not rest:
        rest = reader.feed(stream[cut:], got)
    else:
        rest += stream[cut:]
    assert got == [data]
    assert rest == other + frame_data(b"after", 1024)
    _a, b = open_pair(1024)
    events = b.receive_data(rest)
    assert [e.data for e in events if isinstance(e, TsduReceived)] == [
        b"\x02\x00",
        DATA_PREFIX + b"after",
    ]


def test_held_octets_are_given_back_when_the_general_path_takes_over() -> None:
    stream = frame_data(b"x" * 5000, 1024)
    reader = PlainReader(1 << 22)
    assert reader.feed(stream[:2500], []) == b""
    assert reader.pending
    assert reader.take() + stream[2500:] == stream
    assert not reader.pending


@pytest.mark.parametrize("tpdu_size", [1024, 8192, 65408])
def test_tsdu_over_the_limit_is_an_implementation_restriction(tpdu_size: int) -> None:
    reader = PlainReader(4096)
    with pytest.raises(DecodeError) as info:
        reader.feed(frame_data(b"y" * 5000, tpdu_size), [])
    assert "exceeds the maximum 4096" in str(info.value)
    assert info.value.reason & 0x10
