"""TPKT framing (RFC 1006 section 6): encoder, incremental parser, fuzzing."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessionlayer.errors import DecodeError, EncodeError
from sessionlayer.transport import MAX_TPKT_PAYLOAD, TpktParser, encode_tpkt


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def _feed_all(chunks: list[bytes]) -> tuple[list[bytes], DecodeError | None]:
    parser, out = TpktParser(), []
    try:
        for chunk in chunks:
            out += parser.feed(chunk)
    except DecodeError as exc:
        return out, exc
    return out, None


def test_encode_dt_header() -> None:
    assert encode_tpkt(bytes.fromhex("02f080")) == bytes.fromhex("0300000702f080")


def test_vectors_headers_match(libiec61850: list[dict[str, Any]]) -> None:
    for vector in libiec61850:
        payload = bytes.fromhex(vector["cotp"] + vector["session"])
        framed = encode_tpkt(payload)
        assert framed[:4].hex() == vector["tpkt"], vector["name"]
        assert TpktParser().feed(framed) == [payload]


@pytest.mark.parametrize("size", [0, 1, 2, MAX_TPKT_PAYLOAD + 1])
def test_encode_rejects_bad_sizes(size: int) -> None:
    with pytest.raises(EncodeError):
        encode_tpkt(bytes(size))


def test_largest_payload() -> None:
    framed = encode_tpkt(bytes(MAX_TPKT_PAYLOAD))
    assert framed[:4] == b"\x03\x00\xff\xff"
    assert TpktParser().feed(framed) == [bytes(MAX_TPKT_PAYLOAD)]


def test_partial_then_complete() -> None:
    parser = TpktParser()
    framed = encode_tpkt(b"\x02\xf0\x80abc")
    assert parser.feed(framed[:5]) == []
    assert parser.buffered == 5
    assert parser.feed(framed[5:] + framed[:2]) == [b"\x02\xf0\x80abc"]
    assert parser.buffered == 2
    assert parser.offset == len(framed)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("02000007", "version"),
        ("03010007", "reserved"),
        ("03000006", "minimum"),
        ("03000000", "minimum"),
    ],
)
def test_bad_headers(header: str, message: str) -> None:
    parser = TpktParser()
    good = encode_tpkt(b"\x02\xf0\x80")
    # The good TPKT before the bad header comes out first; the error follows at once.
    assert parser.feed(good + bytes.fromhex(header) + b"\x02\xf0\x80") == [b"\x02\xf0\x80"]
    assert parser.error is not None
    with pytest.raises(DecodeError, match=message) as info:
        parser.feed(b"")
    assert info.value.offset == len(good)
    with pytest.raises(DecodeError):  # the parser stays failed
        parser.feed(good)


@given(st.lists(st.binary(min_size=3, max_size=300), max_size=8), st.lists(st.integers(0, 5000)))
def test_any_cutting_gives_the_same_payloads(payloads: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(encode_tpkt(p) for p in payloads)
    assert _feed_all([stream]) == (payloads, None)
    assert _feed_all(_chunks(stream, cuts)) == (payloads, None)
    assert _feed_all([stream[i : i + 1] for i in range(len(stream))]) == (payloads, None)


@given(st.binary(max_size=200))
def test_random_bytes_whole_vs_bytewise(data: bytes) -> None:
    whole, whole_error = _feed_all([data])
    single, single_error = _feed_all([data[i : i + 1] for i in range(len(data))])
    assert (whole_error is None) == (single_error is None)
    if whole_error is None:
        assert whole == single
    else:
        assert single_error is not None
        assert whole_error.offset == single_error.offset
        assert whole == single[: len(whole)]
