"""ISO 8073 class 0 TPDU codec: golden vectors, errors, Hypothesis round trips."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from sessionlayer.errors import DecodeError, EncodeError
from sessionlayer.transport import (
    TPDU,
    ConnectionConfirm,
    ConnectionRequest,
    Data,
    DisconnectReason,
    DisconnectRequest,
    Error,
    ExpeditedData,
    Parameter,
    RejectCause,
    decode_tpdu,
    encode_tpdu,
    tpdu_size_code,
)

CAPTURED_CR = "11e00000000100c0010dc2020001c1020001"
CAPTURED_CC = "11d00001000100c0010dc2020001c1020001"
RUST_CC = "0dd00001000100c0010dc2020001"


@pytest.mark.parametrize("hexed", [CAPTURED_CR, CAPTURED_CC, RUST_CC, "02f080"])
def test_captured_tpdus_are_byte_identical(hexed: str) -> None:
    assert encode_tpdu(decode_tpdu(bytes.fromhex(hexed))).hex() == hexed


def test_captured_cr_fields() -> None:
    cr = decode_tpdu(bytes.fromhex(CAPTURED_CR))
    assert cr == ConnectionRequest(
        src_ref=1, calling_tsap=b"\x00\x01", called_tsap=b"\x00\x01", tpdu_size=0x0D
    )
    assert isinstance(cr, ConnectionRequest)
    assert cr.tpdu_size_octets == 8192
    assert cr.protocol_class == 0
    assert cr.param_order == (0xC0, 0xC2, 0xC1)


def test_rust_cc_omits_calling_tsap() -> None:
    cc = decode_tpdu(bytes.fromhex(RUST_CC))
    assert isinstance(cc, ConnectionConfirm)
    assert (cc.dst_ref, cc.src_ref) == (1, 1)
    assert cc.calling_tsap is None
    assert cc.called_tsap == b"\x00\x01"
    assert cc.tpdu_size_octets == 8192


def test_default_parameter_order_matches_libiec61850() -> None:
    cr = ConnectionRequest(src_ref=1, calling_tsap=b"\0\1", called_tsap=b"\0\1", tpdu_size=13)
    assert encode_tpdu(cr).hex() == CAPTURED_CR


def test_vectors_decode(libiec61850: list[dict[str, Any]]) -> None:
    for vector in libiec61850:
        raw = bytes.fromhex(vector["cotp"] + vector["session"])
        tpdu = decode_tpdu(raw)
        assert encode_tpdu(tpdu) == raw, vector["name"]
        if vector["session"]:
            assert tpdu == Data(bytes.fromhex(vector["session"]), eot=True), vector["name"]


def test_param_order_is_kept_but_not_compared() -> None:
    base = ConnectionRequest(calling_tsap=b"a", called_tsap=b"b", tpdu_size=7)
    ordered = ConnectionRequest(
        calling_tsap=b"a", called_tsap=b"b", tpdu_size=7, param_order=(0xC1, 0xC2, 0xC0)
    )
    assert base == ordered
    assert encode_tpdu(ordered)[7:].hex() == "c10161c20162c00107"
    assert encode_tpdu(base)[7:].hex() == "c00107c20162c10161"


def test_other_params_keep_their_place() -> None:
    raw = bytes.fromhex("0fe00000000100c60101c00109c30101")
    cr = decode_tpdu(raw)
    assert isinstance(cr, ConnectionRequest)
    assert cr.other_params == (Parameter(0xC6, b"\x01"), Parameter(0xC3, b"\x01"))
    assert cr.tpdu_size_octets == 512
    assert encode_tpdu(cr) == raw


def test_preferred_max_tpdu_size() -> None:
    cr = ConnectionRequest(preferred_max_tpdu_size=0x200)
    assert cr.preferred_max_tpdu_octets == 65536
    raw = encode_tpdu(cr)
    assert raw.endswith(bytes.fromhex("f0020200"))
    assert decode_tpdu(raw) == cr


def test_dr_er_ed_round_trip() -> None:
    dr = DisconnectRequest(1, 2, DisconnectReason.SESSION_ENTITY_NOT_ATTACHED)
    assert encode_tpdu(dr).hex() == "06800001000202"
    er = Error(7, RejectCause.INVALID_TPDU_TYPE, (Parameter(0xC1, b"\x02\x60"),))
    assert encode_tpdu(er).hex() == "087000070" + "2c1020260"
    assert er.invalid_tpdu == b"\x02\x60"
    ed = ExpeditedData(b"urgent")
    assert encode_tpdu(ed).hex() == "0210" + "80" + b"urgent".hex()
    for tpdu in (dr, er, ed):
        assert decode_tpdu(encode_tpdu(tpdu)) == tpdu


def test_tpdu_size_code() -> None:
    assert [tpdu_size_code(1 << n) for n in range(7, 14)] == list(range(7, 14))
    for bad in (0, 64, 100, 16384, 65531):
        with pytest.raises(EncodeError):
            tpdu_size_code(bad)


@pytest.mark.parametrize(
    ("code", "octets"), [(0x0E, 16384), (0x0F, 32768), (0x10, 65531)]
)
def test_rfc1006_tpdu_size_codes_above_8192_decode(code: int, octets: int) -> None:
    # RFC 1006 stacks (Tandem OSI/TS among them) propose 16384, 32768 and 65531 with
    # codes 0x0E..0x10; libiec61850 takes any code.  Refusing the CR broke the connection.
    wire = bytes.fromhex("09e00000000100c001") + bytes([code])
    cr = decode_tpdu(wire)
    assert isinstance(cr, ConnectionRequest)
    assert cr.tpdu_size == code and cr.tpdu_size_octets == octets
    assert encode_tpdu(cr) == wire


@pytest.mark.parametrize(
    "tpdu",
    [
        ConnectionRequest(class_option=0x20),
        ConnectionConfirm(class_option=0x40),
        ConnectionRequest(tpdu_size=17),
        ConnectionRequest(tpdu_size=6),
        ConnectionRequest(src_ref=0x10000),
        ConnectionRequest(other_params=(Parameter(0xC0, b"\x0d"),)),
        ConnectionRequest(calling_tsap=bytes(256)),
        ConnectionRequest(calling_tsap=bytes(200), called_tsap=bytes(60)),
        ConnectionRequest(preferred_max_tpdu_size=1 << 32),
        DisconnectRequest(reason=256),
        Data(tpdu_nr=128),
        ExpeditedData(b""),
        ExpeditedData(bytes(17)),
        Error(cause=-1),
    ],
)
def test_encode_rejects(tpdu: TPDU) -> None:
    with pytest.raises(EncodeError):
        encode_tpdu(tpdu)


def test_encode_rejects_dt_over_tpdu_size() -> None:
    assert len(encode_tpdu(Data(bytes(8189)), max_size=8192)) == 8192
    with pytest.raises(EncodeError, match="exceeds"):
        encode_tpdu(Data(bytes(8190)), max_size=8192)


@pytest.mark.parametrize(
    "hexed",
    [
        "",  # empty
        "02",  # no code
        "00f0",  # LI 0
        "fff080",  # LI 255
        "05f080",  # LI past the end
        "026080",  # AK: not class 0
        "06e1000000010000",  # CR with credit
        "05e00000000100",  # CR header too short
        "0ae00000000100c0010dc001",  # parameter runs past the header
        "0de00000000100c0010dc0010d",  # duplicate TPDU size
        "0ae00000000100c00114",  # TPDU size code 0x14
        "09e00000000100c00111",  # TPDU size code 0x11: past the 65531 of code 0x10
        "09e00000000100c00106",  # TPDU size code 0x06: below class 0's 128 octets
        "0be00000000100c0020d0d",  # TPDU size of 2 octets
        "0ce00000000100f0050000000001",  # preferred size of 5 octets
        "03f08000",  # DT LI 3
        "021080",  # ED without data
        "0210800102030405060708090a0b0c0d0e0f1011",  # ED with 17 octets
        "047000000000",  # ER with user data
        "03700000",  # ER header too short
        "0580000100",  # DR header too short
    ],
)
def test_decode_rejects(hexed: str) -> None:
    with pytest.raises(DecodeError):
        decode_tpdu(bytes.fromhex(hexed))


# ------------------------------------------------------------------ Hypothesis

refs = st.integers(0, 0xFFFF)
octet = st.integers(0, 0xFF)
nrs = st.integers(0, 127)
small = st.binary(max_size=20)
other_codes = octet.filter(lambda c: c not in (0xC0, 0xC1, 0xC2, 0xF0))
other_params = st.lists(st.builds(Parameter, other_codes, small), max_size=3).map(tuple)


@st.composite
def connect_tpdus(draw: st.DrawFn) -> TPDU:
    cls = draw(st.sampled_from([ConnectionRequest, ConnectionConfirm]))
    named: dict[str, Any] = {
        "calling_tsap": draw(st.none() | small),
        "called_tsap": draw(st.none() | small),
        "tpdu_size": draw(st.none() | st.integers(7, 16)),
        "preferred_max_tpdu_size": draw(st.none() | st.integers(0, 0xFFFFFFFF)),
    }
    order = draw(st.none() | st.permutations([0xC0, 0xC1, 0xC2, 0xF0]).map(tuple))
    tpdu: TPDU = cls(
        dst_ref=draw(refs),
        src_ref=draw(refs),
        class_option=draw(st.integers(0, 15)),
        other_params=draw(other_params),
        user_data=draw(small),
        param_order=order,
        **named,
    )
    return tpdu


tpdus = st.one_of(
    connect_tpdus(),
    st.builds(DisconnectRequest, refs, refs, octet, other_params, small),
    st.builds(Data, st.binary(max_size=100), st.booleans(), nrs),
    st.builds(ExpeditedData, st.binary(min_size=1, max_size=16), st.booleans(), nrs),
    st.builds(Error, refs, octet, other_params),
)


@given(tpdus)
def test_encode_decode_identity(tpdu: TPDU) -> None:
    raw = encode_tpdu(tpdu)
    decoded = decode_tpdu(raw)
    assert decoded == tpdu
    assert encode_tpdu(decoded) == raw


@given(st.binary(max_size=64))
def test_random_bytes_raise_only_decode_error(data: bytes) -> None:
    try:
        tpdu = decode_tpdu(data)
    except DecodeError:
        return
    _check_reencodes(tpdu)


@given(tpdus, st.integers(0, 200), st.integers(0, 255), st.integers(0, 200))
def test_mutated_tpdus_raise_only_decode_error(
    tpdu: TPDU, position: int, value: int, cut: int
) -> None:
    raw = bytearray(encode_tpdu(tpdu))
    assume(raw)
    raw[position % len(raw)] = value
    try:
        decoded = decode_tpdu(bytes(raw[: len(raw) - cut % len(raw)]))
    except DecodeError:
        return
    _check_reencodes(decoded)


def _check_reencodes(tpdu: TPDU) -> None:
    if isinstance(tpdu, ConnectionRequest | ConnectionConfirm) and tpdu.protocol_class:
        with pytest.raises(EncodeError):
            encode_tpdu(tpdu)
        return
    assert decode_tpdu(encode_tpdu(tpdu)) == tpdu
