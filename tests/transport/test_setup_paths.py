"""The transport's connect-time shortcuts against the general code.

* ``_decode_connect`` (one pass over the CR/CC parameters) agrees with
  ``_decode_connect_general`` whenever that one decodes, and leaves every error to it;
* ``decode_tpdu`` answers a CR or CC it saw before with the same (immutable) TPDU;
* ``Rfc1006Connection.accept`` and ``connect`` give the same octets from their caches as
  when first computed, for the same CR and parameters;
* ``send_tsdu`` of a TSDU that fits one DT gives what segmenting gives.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessionlayer.errors import DecodeError
from sessionlayer.transport import cotp, decode_tpdu, encode_tpdu
from sessionlayer.transport.connection import (
    _CC_CACHE,
    _CR_CACHE,
    Rfc1006Connection,
    TransportConnected,
)
from sessionlayer.transport.reassembly import segment_tsdu
from sessionlayer.transport.tpkt import encode_tpkt

from .test_cotp import connect_tpdus


def _general(buf: bytes) -> object:
    try:
        return cotp._decode_connect_general(buf, buf[0])
    except DecodeError as exc:
        return ("error", exc.message)


def _fast(buf: bytes) -> object:
    try:
        return cotp._decode_connect(buf, buf[0])
    except DecodeError as exc:
        return ("error", exc.message)


def _same(buf: bytes) -> None:
    if len(buf) < 2 or buf[0] == 0xFF or buf[0] + 1 > len(buf) or buf[1] not in (0xE0, 0xD0):
        return
    general, fast = _general(buf), _fast(buf)
    assert fast == general
    if not isinstance(general, tuple):
        assert fast.param_order == general.param_order  # type: ignore[attr-defined]


@given(connect_tpdus(), st.data())
def test_one_pass_decode_agrees(tpdu: cotp.TPDU, data: st.DataObject) -> None:
    raw = encode_tpdu(tpdu)
    _same(raw)
    spot = data.draw(st.integers(0, len(raw) - 1))
    value = data.draw(st.integers(0, 255))
    bent = raw[:spot] + bytes([value]) + raw[spot + 1 :]
    _same(bent)
    _same(raw + raw[7 : data.draw(st.integers(7, len(raw)))])  # parameters repeated


@given(st.binary(min_size=2, max_size=40), st.sampled_from([0xE0, 0xD0]))
def test_one_pass_decode_of_random_headers(tail: bytes, code: int) -> None:
    buf = bytes([min(len(tail), 254), code]) + tail
    _same(buf)


def test_decode_tpdu_shares_a_connect_tpdu() -> None:
    raw = bytes.fromhex("10e00000000100c0010df00201ffc60101")
    first, second = decode_tpdu(raw), decode_tpdu(bytearray(raw))
    assert first is second
    assert first == cotp._decode_connect_general(raw, raw[0])


def _pair(size: int = 65408, *, expedited: bool = True) -> tuple[bytes, Rfc1006Connection]:
    client = Rfc1006Connection("initiator", max_tpdu_size=size, expedited=expedited)
    server = Rfc1006Connection("responder", max_tpdu_size=size, expedited=expedited)
    server.receive_data(client.connect(calling_tsap=b"\x00\x01"))
    return server.accept(), server


@pytest.mark.parametrize("size", [128, 8192, 65408])
@pytest.mark.parametrize("expedited", [False, True])
def test_cached_answers_are_the_computed_ones(size: int, expedited: bool) -> None:
    _CC_CACHE.clear()
    _CR_CACHE.clear()
    computed, first = _pair(size, expedited=expedited)
    cached, second = _pair(size, expedited=expedited)
    assert cached == computed
    assert (second.tpdu_size, second.expedited) == (first.tpdu_size, first.expedited)
    assert second.calling_tsap == b"\x00\x01" and second.state is first.state
    client = Rfc1006Connection("initiator", max_tpdu_size=size, expedited=expedited)
    cr = client.connect(calling_tsap=bytearray(b"\x00\x01"))  # not a cache key: computed
    assert cr == Rfc1006Connection("initiator", max_tpdu_size=size, expedited=expedited).connect(
        calling_tsap=b"\x00\x01"
    )
    (event,) = client.receive_data(computed)
    assert isinstance(event, TransportConnected) and event.tpdu_size == first.tpdu_size


@pytest.mark.parametrize("length", [0, 1, 90, 125, 126, 127, 300, 8189, 8190, 20000])
def test_one_dt_send_is_what_segmenting_gives(length: int) -> None:
    tsdu = bytes(range(256)) * (length // 256) + bytes(length % 256)
    for size in (128, 8192, 65408):
        _cc, server = _pair(size)
        expected = b"".join(encode_tpkt(dt) for dt in segment_tsdu(tsdu, size))
        assert server.send_tsdu(tsdu) == expected
        assert server.send_tsdu(bytearray(tsdu)) == expected
        pieces = segment_tsdu(tsdu, size)
        assert pieces == [encode_tpdu(decode_tpdu(p)) for p in pieces]
