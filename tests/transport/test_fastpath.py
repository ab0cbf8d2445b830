"""The data fast path (``sessionlayer.transport.fastpath``) against the general path.

The one suite that holds both paths to the same octets and the same errors:

* sending: ``frame_data`` / ``frame_pieces`` give exactly the octets of a
  :class:`SessionMachine` in plain state (``send_data``) and then
  ``Rfc1006Connection.send_tsdu``;
* receiving: ``PlainReader`` and ``Rfc1006Connection.receive_data`` + ``decode_tsdu`` give
  the same user data for the same stream, cut anywhere (``tests.fuzz.targets.paths``);
* over the TSDU limit: both raise a DecodeError with the same message and reason.

Then the reader's own contract: what is not plain data goes back untouched, held octets
are given back, buffers grow and are dropped.
"""

from __future__ import annotations

import functools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.fuzz import targets as T
from tests.machine.helpers import SessionPair

from sessionlayer.errors import AbortReason, DecodeError
from sessionlayer.machine import DATA_PREFIX, SessionConfig, SessionMachine
from sessionlayer.spdu import FunctionalUnit as FU
from sessionlayer.transport import (
    Data,
    PlainReader,
    Rfc1006Connection,
    TsduAssembler,
    TsduReceived,
    frame_data,
    frame_pieces,
    tsdu_too_large,
)

#: The TPDU sizes the suite frames with: the smallest, the classic largest, and one that only
#: the preferred-maximum-TPDU-size parameter reaches.
TPDU_SIZES = (128, 8192, 65408)
SIZES = st.sampled_from(TPDU_SIZES)


def open_pair(tpdu_size: int) -> tuple[Rfc1006Connection, Rfc1006Connection]:
    a = Rfc1006Connection("initiator", max_tpdu_size=tpdu_size, max_tsdu_size=1 << 22)
    b = Rfc1006Connection("responder", max_tpdu_size=tpdu_size, max_tsdu_size=1 << 22)
    b.receive_data(a.connect(tpdu_size=tpdu_size))
    a.receive_data(b.accept())
    assert a.tpdu_size == b.tpdu_size == tpdu_size
    return a, b


@functools.cache
def plain_machine() -> SessionMachine:
    """An initiator in data transfer with duplex only: ``plain_data`` holds, and sending
    S-DATA changes nothing in it (so one machine serves every example)."""
    pair = SessionPair(SessionConfig(functional_units=FU.DUPLEX))
    pair.connect()
    return pair.init


def general_path(data: bytes, tpdu_size: int) -> bytes:
    """The octets the general path sends for S-DATA ``data``: the machine, then RFC 1006."""
    machine = plain_machine()
    assert machine.plain_data
    machine.send_data(data)
    rfc, _ = open_pair(tpdu_size)
    return b"".join(rfc.send_tsdu(tsdu) for tsdu in machine.data_to_send())


def message_sizes(tpdu_size: int) -> list[int]:
    """0, 1, and the sizes either side of each TPDU boundary, up to several TPDUs."""
    room = tpdu_size - 3  # TSDU octets per DT TPDU
    first = room - len(DATA_PREFIX)  # user data in the first TPDU
    edges = [first, first + room, first + 3 * room]
    return sorted({0, 1, *(e + d for e in edges for d in (-1, 0, 1))})


CASES = [(size, n) for size in TPDU_SIZES for n in message_sizes(size)]


def message(n: int) -> bytes:
    return bytes(i % 251 for i in range(n))


# ------------------------------------------------------------------ sending: the same octets


@pytest.mark.parametrize(("tpdu_size", "n"), CASES)
def test_frame_data_and_pieces_are_what_the_general_path_sends(tpdu_size: int, n: int) -> None:
    data = message(n)
    expected = general_path(data, tpdu_size)
    assert frame_data(data, tpdu_size) == expected
    assert b"".join(frame_pieces(data, tpdu_size)) == expected


@given(st.binary(max_size=20_000), SIZES)
def test_frame_data_and_pieces_are_what_the_general_path_sends_any_data(
    data: bytes, tpdu_size: int
) -> None:
    expected = general_path(data, tpdu_size)
    assert frame_data(data, tpdu_size) == expected
    assert b"".join(frame_pieces(data, tpdu_size)) == expected


# ------------------------------------------------------------------ receiving: the same user data


@pytest.mark.parametrize("tpdu_size", TPDU_SIZES)
def test_both_readers_give_the_messages_cut_anywhere(tpdu_size: int) -> None:
    """Every message size of the suite in one stream, cut at each TPDU-header octet of a few
    TPDUs and at a prime step: fast and general path give the same user data."""
    messages = [message(n) for n in message_sizes(tpdu_size)]
    stream_size = sum(len(frame_data(m, tpdu_size)) for m in messages)
    for cut in (*range(12), tpdu_size - 1, tpdu_size, tpdu_size + 5, stream_size - 1):
        T.paths(messages, tpdu_size, [cut])
    T.paths(messages, tpdu_size, list(range(0, stream_size, 7919)))


@settings(max_examples=150)
@given(
    st.lists(st.binary(max_size=3000), max_size=6),
    SIZES,
    st.lists(st.integers(0, 30_000), max_size=8),
)
def test_both_readers_agree_whatever_the_messages_and_cuts(
    messages: list[bytes], tpdu_size: int, cuts: list[int]
) -> None:
    T.paths(messages, tpdu_size, cuts)


# ------------------------------------------------------------------ over the limit: the same error


Error = tuple[str, int]  # a DecodeError's message and reason


def over_limit_errors(stream: bytes, limit: int, cut: int) -> tuple[Error | None, Error]:
    """(fast path's error, general path's error), each (message, reason), for ``stream``
    read in two pieces."""
    chunks = [stream[:cut], stream[cut:]]
    fast = T._feed_reader(chunks, limit).error
    general = T._feed_transport(T._transport("responder", True, limit), chunks).error
    assert general is not None
    return fast, (general[0], general[2])


@pytest.mark.parametrize("tpdu_size", TPDU_SIZES)
@pytest.mark.parametrize("n", [4093, 5000, 3 * 8192])
def test_tsdu_over_the_limit_is_the_same_error_on_both_paths(tpdu_size: int, n: int) -> None:
    limit = 4096
    stream = frame_data(b"ok", tpdu_size) + frame_data(message(n), tpdu_size)
    for cut in (0, 9, len(stream) // 2, len(stream)):
        fast, general = over_limit_errors(stream, limit, cut)
        assert fast == general, (cut, fast, general)
    assert fast is not None
    text, reason = fast
    assert "exceeds the maximum 4096" in text
    assert reason == AbortReason.TRANSPORT_RELEASED | AbortReason.IMPLEMENTATION_RESTRICTION


@given(
    st.integers(1, 3000),
    st.integers(0, 4000),
    SIZES,
    st.integers(0, 1 << 16),
)
def test_tsdu_over_the_limit_any_size(limit: int, over: int, tpdu_size: int, cut: int) -> None:
    stream = frame_data(b"z" * (limit + over), tpdu_size)  # DATA_PREFIX: 4 more than limit
    fast, general = over_limit_errors(stream, limit, cut % (len(stream) + 1))
    assert fast == general


#: Plain data's first DT without EOT (GT+DT prefix, one octet), an empty DT without EOT,
#: and an empty DT with EOT.
FIRST_MORE = bytes.fromhex("0300000c 02f000 01000100 78")
EMPTY_MORE = bytes.fromhex("03000007 02f000")
EMPTY_EOT = bytes.fromhex("03000007 02f080")


@pytest.mark.parametrize("cut", [0, 12, 12 + 7 * 500, 12 + 7 * 1500])
def test_empty_dts_without_eot_count_against_the_limit_on_both_paths(cut: int) -> None:
    """A peer sending DTs with no user data and no EOT, without end: each counts as one
    octet (before: nothing counted, and both paths held every one, 2 million in 17 MiB)."""
    stream = FIRST_MORE + EMPTY_MORE * 2000
    fast, general = over_limit_errors(stream, 1000, cut)
    assert fast == general, (fast, general)
    assert fast is not None and "exceeds the maximum 1000" in fast[0]


def test_an_empty_last_dt_is_not_counted() -> None:
    """The TSDU's last DT may be empty (EOT alone): a TSDU of exactly the limit passes,
    on both paths."""
    limit = len(FIRST_MORE) - 7 + 20  # the first DT's 5 octets and 20 empty DTs
    stream = FIRST_MORE + EMPTY_MORE * 20 + EMPTY_EOT
    got: list[bytes] = []
    assert PlainReader(limit).feed(stream, got) == b"" and got == [b"x"]
    assembler = TsduAssembler(limit)
    assert [assembler.feed(Data(b"", eot=False)) for _ in range(limit)] == [None] * limit
    assert assembler.feed(Data(b"", eot=True)) == b""
    with pytest.raises(DecodeError):
        PlainReader(limit - 1).feed(stream, [])


def test_one_helper_makes_both_errors() -> None:
    expected = tsdu_too_large(5004, 4096)
    for raise_it in (
        lambda: PlainReader(4096).feed(frame_data(b"y" * 5000, 8192), []),
        lambda: TsduAssembler(4096).feed(Data(DATA_PREFIX + b"y" * 5000)),
    ):
        with pytest.raises(DecodeError) as info:
            raise_it()
        assert (info.value.message, info.value.reason) == (expected.message, expected.reason)


# ------------------------------------------------------------------ the reader's own contract


@given(st.binary(max_size=3000), st.integers(min_value=0, max_value=3000))
def test_anything_else_is_handed_back_untouched(data: bytes, cut: int) -> None:
    """A TPDU that is not plain data goes back to the general path; what followed it stays
    held, for the binding to go on with (``more``) or hand over too (``take``)."""
    other = bytes.fromhex("0300000902f080") + b"\x02\x00"  # PT alone (a keepalive probe)
    stream = frame_data(data, 1024) + other + frame_data(b"after", 1024)
    reader = PlainReader(1 << 22)
    got: list[bytes] = []
    cut = min(cut, len(stream))
    rest = reader.feed(stream[:cut], got)
    if not rest:
        rest = reader.feed(stream[cut:], got)
        assert rest.startswith(other)  # the TPDU that is not plain data: the general path's
        rest += reader.take() if reader.pending else b""  # (and what followed it, held)
    else:  # (what it handed back, what it held after it, and what was not read yet)
        rest += (reader.take() if reader.pending else b"") + stream[cut:]
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


def test_after_a_tpdu_for_the_general_path_the_reader_goes_on_with_the_rest() -> None:
    """An acknowledgement point in the middle of a bulk read: only its TPDU leaves the fast
    path; ``more`` parses what followed it (a read of 1 MiB is not all handed over)."""
    other = bytes.fromhex("0300000902f080") + b"\x02\x00"
    stream = frame_data(b"one", 1024) + other + frame_data(b"two", 1024) + frame_data(b"3", 1024)
    reader = PlainReader(1 << 22)
    got: list[bytes] = []
    assert reader.feed(stream, got) == other
    assert got == [b"one"] and reader.pending
    assert reader.more(got) == b""
    assert got == [b"one", b"two", b"3"] and not reader.pending
    assert reader.more(got) == b""
