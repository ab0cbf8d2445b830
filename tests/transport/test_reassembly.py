"""TSDU segmenting into DT TPDUs and reassembly (ISO 8073 6.3)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessionlayer.errors import AbortReason, DecodeError, EncodeError
from sessionlayer.transport import (
    Data,
    TpktParser,
    TsduAssembler,
    decode_tpdu,
    encode_tpkt,
    segment_tsdu,
)


def _reassemble(tpdus: list[bytes], max_tsdu_size: int = 1 << 20) -> list[bytes]:
    assembler, out = TsduAssembler(max_tsdu_size), []
    for raw in tpdus:
        dt = decode_tpdu(raw)
        assert isinstance(dt, Data)
        tsdu = assembler.feed(dt)
        if tsdu is not None:
            out.append(tsdu)
    return out


def test_libiec61850_63456_octets_in_8192_octet_tpdus() -> None:
    """The shape a libiec61850 server sends: 8 DTs, 7 carrying 8,189 octets each."""
    tsdu = bytes(range(256)) * 247 + bytes(224)
    assert len(tsdu) == 63456
    tpdus = segment_tsdu(tsdu, 8192)
    assert len(tpdus) == 8
    assert [len(t) for t in tpdus[:7]] == [8192] * 7
    assert len(tpdus[7]) == 3 + 63456 - 7 * 8189
    assert all(t[:3] == b"\x02\xf0\x00" for t in tpdus[:7])
    assert tpdus[7][:3] == b"\x02\xf0\x80"
    assert _reassemble(tpdus) == [tsdu]
    framed = b"".join(encode_tpkt(t) for t in tpdus)
    assert framed[:4] == b"\x03\x00\x20\x04"  # TPKT length 8196
    assert TpktParser().feed(framed) == tpdus


def test_empty_tsdu_is_one_empty_dt() -> None:
    assert segment_tsdu(b"", 128) == [b"\x02\xf0\x80"]
    assert _reassemble(segment_tsdu(b"", 128)) == [b""]


def test_exact_multiple_has_no_empty_tail() -> None:
    tpdus = segment_tsdu(bytes(250), 128)
    assert [len(t) for t in tpdus] == [128, 128]


def test_tpdu_size_must_leave_room() -> None:
    with pytest.raises(EncodeError):
        segment_tsdu(b"x", 3)


def test_assembler_limit_is_an_implementation_restriction() -> None:
    assembler = TsduAssembler(max_tsdu_size=10)
    assert assembler.feed(Data(bytes(6), eot=False)) is None
    assert assembler.pending == 6
    with pytest.raises(DecodeError) as info:
        assembler.feed(Data(bytes(5), eot=False))
    assert info.value.reason & AbortReason.IMPLEMENTATION_RESTRICTION
    assert assembler.pending == 0
    assert assembler.feed(Data(bytes(10))) == bytes(10)


def test_assembler_rejects_nonpositive_limit() -> None:
    with pytest.raises(ValueError):
        TsduAssembler(0)


@given(st.binary(max_size=3000), st.integers(4, 600))
def test_segments_fit_and_reassemble(tsdu: bytes, size: int) -> None:
    tpdus = segment_tsdu(tsdu, size)
    assert all(len(t) <= size for t in tpdus)
    assert [t[2] & 0x80 for t in tpdus].count(0x80) == 1  # EOT on the last only
    assert tpdus[-1][2] == 0x80
    assert _reassemble(tpdus) == [tsdu]
