"""The data fast path produces and accepts exactly what the general path does."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessionlayer.errors import DecodeError
from sessionlayer.machine import DATA_PREFIX
from sessionlayer.transport import Rfc1006Connection, TsduReceived
from sessionlayer.transport.fastpath import PlainReader, frame_data, frame_pieces

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


@given(st.binary(max_size=20_000), SIZES)
def test_frame_pieces_join_to_the_frame(data: bytes, size: int) -> None:
    assert b"".join(frame_pieces(data, size)) == frame_data(data, size)


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


def read_into(reader: PlainReader, data: bytes) -> int:
    """What asyncio does for a BufferedProtocol: copy a read into get_buffer()."""
    view = reader.get_buffer(-1)
    n = min(len(view), len(data))
    view[:n] = data[:n]
    return n


def test_large_tsdus_across_many_reads_grow_and_compact_the_own_buffer() -> None:
    """TSDUs larger than the reader's buffer, read as asyncio would (get_buffer, then
    parse), come out whole; the buffer is dropped once nothing is held."""
    messages = [bytes([i]) * size for i, size in enumerate((3_000_000, 10, 700_000, 65_536))]
    stream = b"".join(frame_data(m, 8192) for m in messages)
    reader = PlainReader(1 << 22)
    got: list[bytes] = []
    pos = 0
    while pos < len(stream):
        n = read_into(reader, stream[pos : pos + 100_000])
        assert reader.parse(n, got) == b""
        pos += n
    assert got == messages
    assert not reader.pending


def test_a_read_of_exactly_one_message_is_single() -> None:
    reader = PlainReader(1 << 20)
    frame = frame_data(b"request", 8192)
    assert reader.single(read_into(reader, frame)) == b"request"
    n = read_into(reader, frame + frame[:3])  # more than one message: parse() it is
    assert reader.single(n) is None
    got: list[bytes] = []
    assert reader.parse(n, got) == b"" and got == [b"request"] and reader.pending
    assert reader.single(read_into(reader, frame[3:])) is None  # something is held
    assert reader.take(len(frame) - 3) == frame and not reader.pending
