"""Property tests of the SPDU codec (Hypothesis).

* decode(encode(x)) == x for every SPDU kind, versions 1 and 2, and for valid
  concatenations, basic and extended (ActivityEndAck comes back as
  MajorSyncAck: the two are encoded identically, X.225 8.3.23 / 8.3.36);
* bytes from a peer -- random, structured-random, or a valid TSDU mutated --
  raise nothing but DecodeError;
* the encoder, given an invalid value, raises only EncodeError;
* segment() then SegmentAssembler gives back the SPDU;
* a TPKT stream of many TSDUs gives the same SPDUs fed whole, in random
  pieces, or one octet at a time;
* the user-data size rules of X.225 (512 in v1, PGI 194 for 513..10240 in a
  v2 CN, 10241+ refused).
"""

from __future__ import annotations

import dataclasses
import random
import typing
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from sessionlayer.errors import AbortReason, DecodeError, EncodeError
from sessionlayer.spdu import (
    ALL_SPDUS,
    SPDU,
    Abort,
    Accept,
    ActivityEndAck,
    CapabilityData,
    CapabilityDataAck,
    Connect,
    ConnectAcceptItem,
    ConnectDataOverflow,
    ConnectionId,
    DataTransfer,
    Finish,
    GiveTokens,
    LinkingInformation,
    MajorSyncAck,
    PleaseTokens,
    Refuse,
    SegmentAssembler,
    codec,
    decode_tsdu,
    encode,
    encode_tsdu,
    segment,
)

from . import strategies as S
from .helpers import PROFILE, SLOW_PROFILE, split_tpkts, tpkt_dt

try:  # the transport package's sans-I/O TPKT parser and TSDU reassembly, when present
    from sessionlayer.transport.cotp import Data, decode_tpdu
    from sessionlayer.transport.reassembly import TsduAssembler, segment_tsdu
    from sessionlayer.transport.tpkt import TpktParser, encode_tpkt
except ImportError:  # pragma: no cover - before the transport package existed
    TpktParser = None  # type: ignore[assignment,misc]


def roundtrip(spdus: list[SPDU], version: int, extended: bool = False) -> tuple[SPDU, ...]:
    data = encode_tsdu(*spdus, version=version, extended=extended)
    return decode_tsdu(data, version=version, extended=extended)


def leader_for(spdu: SPDU) -> list[SPDU]:
    """The SPDUs that make *spdu* a valid TSDU on its own (category 2 needs GT/PT)."""
    if spdu.kind in S.AFTER_GT:
        return [GiveTokens(), spdu]
    if spdu.kind in S.AFTER_PT:
        return [PleaseTokens(), spdu]
    return [spdu]


# ------------------------------------------------------------------ round trips


def test_every_kind_has_a_strategy() -> None:
    assert set(S.BY_KIND) == {cls.kind for cls in ALL_SPDUS}
    assert set(S.CATEGORY_1) | set(S.AFTER_GT) | set(S.AFTER_PT) | {"GT", "PT"} == set(S.BY_KIND)


@pytest.mark.parametrize("kind", sorted(S.BY_KIND))
@PROFILE
@given(data=st.data())
def test_roundtrip_every_kind(kind: str, data: st.DataObject) -> None:
    version = 2 if kind in S.V2_ONLY else data.draw(S.versions, label="version")
    spdu = data.draw(S.spdu(kind, version), label="spdu")
    tsdu = leader_for(spdu)
    assert roundtrip(tsdu, version) == S.expected(tsdu)
    # encode() of the SPDU alone is the same octets as its place in the TSDU.
    assert encode_tsdu(*tsdu, version=version).endswith(encode(spdu, version=version))


@PROFILE
@given(version=S.versions, data=st.data())
def test_roundtrip_basic_concatenation(version: int, data: st.DataObject) -> None:
    spdus = data.draw(S.tsdu(version), label="tsdu")
    assert roundtrip(spdus, version) == S.expected(spdus)


@PROFILE
@given(version=S.versions, data=st.data())
def test_roundtrip_extended_concatenation(version: int, data: st.DataObject) -> None:
    spdus = data.draw(S.tsdu(version, extended=True), label="tsdu")
    assert roundtrip(spdus, version, extended=True) == S.expected(spdus)
    if len(spdus) > 2:
        # Toward a peer that did not offer extended concatenation: refused both ways.
        with pytest.raises(EncodeError):
            encode_tsdu(*spdus, version=version)
        with pytest.raises(DecodeError):
            decode_tsdu(encode_tsdu(*spdus, version=version, extended=True), version=version)


def test_activity_end_ack_decodes_as_major_sync_ack() -> None:
    aea = ActivityEndAck(serial_number=7, user_data=b"x")
    maa = MajorSyncAck(serial_number=7, user_data=b"x")
    assert encode(aea) == encode(maa)
    assert decode_tsdu(encode_tsdu(PleaseTokens(), aea)) == (PleaseTokens(), maa)


@PROFILE
@given(user_data=st.binary(max_size=600), version=S.versions, extended=st.booleans(),
       kind=st.sampled_from([bytes, bytearray, memoryview]))  # fmt: skip
def test_gt_dt_fast_path_matches_general_path(
    user_data: bytes, version: int, extended: bool, kind: type
) -> None:
    """decode_tsdu short-cuts `01 00 01 00` (GT + DT, no parameters): same result."""
    tsdu = b"\x01\x00\x01\x00" + user_data
    fast = decode_tsdu(kind(tsdu), version=version, extended=extended)
    general = codec._decode_tsdu(tsdu, version, extended)
    assert fast == general == (GiveTokens(), DataTransfer(user_data=user_data))
    assert type(fast[1].user_data) is bytes  # type: ignore[attr-defined]


# ------------------------------------------------------------------ only DecodeError


def _decode_all_ways(data: bytes) -> None:
    """Decode under every setting; anything but DecodeError escapes and fails the test.

    What does decode must re-encode and decode to the same SPDUs.
    """
    for version in (1, 2):
        for extended in (False, True):
            try:
                spdus = decode_tsdu(data, version=version, extended=extended)
            except DecodeError as exc:
                assert exc.message
                assert AbortReason.PROTOCOL_ERROR in exc.reason
                assert len(exc.reflect) <= 9
                continue
            again = encode_tsdu(*spdus, version=version, extended=extended)
            assert decode_tsdu(again, version=version, extended=extended) == spdus


@PROFILE
@given(st.binary(max_size=400))
def test_random_bytes_raise_only_decode_error(data: bytes) -> None:
    _decode_all_ways(data)


KNOWN_SI = [0, 1, 2, 5, 7, 8, 9, 10, 12, 13, 14, 15, 16, 21, 22, 25, 26, 29, 33, 34, 41, 42,
            45, 48, 49, 50, 53, 57, 58, 61, 62]  # fmt: skip
KNOWN_PI = [1, 5, 9, 10, 11, 12, 15, 16, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 33, 41, 42,
            46, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 60, 193, 194]  # fmt: skip


def _li(n: int, long_form: bool = False) -> bytes:
    return bytes((0xFF, n >> 8, n & 0xFF)) if n >= 255 or long_form else bytes((n,))


@st.composite
def unit_soup(draw: st.DrawFn, depth: int = 0) -> bytes:
    """A parameter field of plausible PI/PGI units, nested now and then."""
    out = b""
    for _ in range(draw(st.integers(0, 5))):
        code = draw(st.sampled_from(KNOWN_PI) | st.integers(0, 255))
        if depth < 1 and code in (1, 5, 33) and draw(st.booleans()):
            value = draw(unit_soup(depth + 1))
        elif code in (23, 42, 54, 55, 56):
            value = draw(st.text("0123456789", max_size=7)).encode()
        else:
            value = draw(st.binary(max_size=12) | st.builds(bytes, st.integers(500, 11000)))
        out += bytes((code,)) + _li(len(value), draw(st.booleans())) + value
    return out


@st.composite
def plausible_tsdu(draw: st.DrawFn) -> bytes:
    out = b""
    for _ in range(draw(st.integers(1, 4))):
        params = draw(unit_soup())
        out += bytes((draw(st.sampled_from(KNOWN_SI)),)) + _li(len(params)) + params
    return out + draw(st.binary(max_size=8))


@PROFILE
@given(plausible_tsdu())
def test_structured_random_raise_only_decode_error(data: bytes) -> None:
    _decode_all_ways(data)


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "dup"]))
        pos = draw(st.integers(0, max(len(buf) - 1, 0)))
        if op == "flip" and buf:
            buf[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and buf:
            buf[pos] = draw(st.sampled_from([0x00, 0xFF, 0x01, 0xC1, 0xC2, 0x2A, 0x30, 0x3A]))
        elif op == "insert":
            buf[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete":
            del buf[pos : pos + draw(st.integers(1, 4))]
        elif op == "truncate":
            del buf[pos:]
        elif op == "dup":
            buf[pos:pos] = buf[pos : pos + draw(st.integers(1, 8))]
    return bytes(buf)


@PROFILE
@given(version=S.versions, extended=st.booleans(), data=st.data())
def test_mutated_tsdus_raise_only_decode_error(
    version: int, extended: bool, data: st.DataObject
) -> None:
    spdus = data.draw(S.tsdu(version, extended=extended, small=True), label="tsdu")
    valid = encode_tsdu(*spdus, version=version, extended=extended)
    _decode_all_ways(data.draw(mutated(valid), label="mutated"))


# ------------------------------------------------------------------ only EncodeError

#: Largest octet strings, by field name (X.225 8.3 / the project's wire reference).
MAX_OCTETS = {
    "called_ref": 64, "calling_ref": 64, "common_ref": 64, "additional_ref": 4,
    "calling_ssel": 16, "called_ssel": 16, "responding_ssel": 16,
    "activity_id": 6, "old_activity_id": 6,
    "large_initial_serial": 64, "large_second_initial_serial": 64,
}  # fmt: skip
#: Required although typed Optional: CDO's user data, OA's version.
REQUIRED = {("CDO", "user_data"), ("OA", "version")}


def _field_kind(owner: Any, name: str) -> tuple[str, bool]:
    """('int' | 'bytes' | 'tuple' | 'group', optional?) from the field's annotation."""
    hint = typing.get_type_hints(type(owner))[name]
    args = typing.get_args(hint) or (hint,)
    optional = type(None) in args
    base = next(a for a in args if a is not type(None))
    if base is int:
        return "int", optional
    if base is bytes:
        return "bytes", optional
    if typing.get_origin(base) is tuple:
        return "tuple", optional
    return "group", optional


def _user_data_limit(spdu: SPDU, version: int) -> int | None:
    """The most user data this SPDU may carry in *version* (None: only the LI bounds it)."""
    kind = spdu.kind
    if kind == "EX":
        return 14
    if kind in ("DT", "TD", "CDO"):
        return None
    if kind == "CN":
        item = spdu.item  # type: ignore[attr-defined]
        proposed = item.version if item is not None else None
        return 512 if proposed is not None and not proposed & 2 else 10240
    if version == 1:
        return 0 if kind in ("GT", "AI", "AIA", "AD", "ADA") else 512
    return 10240 if kind == "AC" else None


@st.composite
def invalid_value(draw: st.DrawFn, owner: Any, name: str, version: int) -> Any:
    kind, optional = _field_kind(owner, name)
    choices: list[Any]
    if kind == "int":
        choices = ["1", 1.5, b"\x01", [1], -1, 1 << 40]
    elif kind == "bytes":
        choices = ["ab", 5, [1, 2], 1.5]
        if name in MAX_OCTETS:
            choices.append(b"\x00" * (MAX_OCTETS[name] + 1))
        if name == "user_data" and isinstance(owner, SPDU):
            limit = _user_data_limit(owner, version)
            if limit is not None:
                choices.append(b"u" * (limit + 1))
            elif not owner.user_info:
                choices.append(b"u" * 65536)  # no parameter field holds it
    elif kind == "tuple":
        choices = [(1,), (1, 2, 3), "ab", (-1, 0), (0, 65536), 5, ("a", "b")]
    else:
        choices = ["x", 5, b"", ConnectionId() if name != "connection_id" else LinkingInformation()]
        inner = getattr(owner, name)
        if inner is not None:
            inner_name = draw(st.sampled_from([f.name for f in dataclasses.fields(inner)]))
            bad = draw(invalid_value(inner, inner_name, version))
            choices.append(dataclasses.replace(inner, **{inner_name: bad}))
    required = not optional or (getattr(owner, "kind", None), name) in REQUIRED
    if required:
        choices.append(None)
    return draw(st.sampled_from(choices))


@PROFILE
@given(data=st.data())
def test_encoder_refuses_invalid_values(data: st.DataObject) -> None:
    spdu, version = data.draw(S.spdu_and_version(), label="valid")
    names = [f.name for f in dataclasses.fields(spdu)]  # type: ignore[arg-type]
    assume(names)
    name = data.draw(st.sampled_from(names), label="field")
    bad = data.draw(invalid_value(spdu, name, version), label="value")
    broken = dataclasses.replace(spdu, **{name: bad})  # type: ignore[type-var]
    with pytest.raises(EncodeError) as info:
        encode_tsdu(*leader_for(broken), version=version)
    assert str(info.value)


@pytest.mark.parametrize(("enclosure", "version"), [(1, 1), (4, 2), (0xFF, 2)])
def test_encoder_refuses_an_enclosure_item_a_peer_aborts_on(enclosure: int, version: int) -> None:
    with pytest.raises(EncodeError, match="Enclosure Item"):
        encode(Finish(enclosure=enclosure), version=version)


def test_encoder_refuses_rf_user_data_without_reason() -> None:
    with pytest.raises(EncodeError, match="needs reason"):
        encode(Refuse(user_data=b"why"))


@pytest.mark.parametrize(
    "spdus",
    [
        [],
        [DataTransfer(user_data=b"x")],  # category 2 alone
        [Finish(), Finish()],  # two category-1 SPDUs
        [Finish(), GiveTokens()],
        [GiveTokens(), GiveTokens()],
        [PleaseTokens(), DataTransfer()],  # DT follows GT, not PT
        [GiveTokens(), MajorSyncAck()],  # MAA follows PT, not GT
        [GiveTokens(), DataTransfer(), PleaseTokens()],  # three without extended
        ["not an SPDU"],
        [GiveTokens(), 5],
    ],
    ids=repr,
)
def test_encoder_refuses_invalid_concatenation(spdus: list[Any]) -> None:
    with pytest.raises(EncodeError):
        encode_tsdu(*spdus)


def test_encoder_refuses_user_information_before_the_end() -> None:
    with pytest.raises(EncodeError, match="must come last"):
        encode_tsdu(GiveTokens(), DataTransfer(), PleaseTokens(), extended=True)


@pytest.mark.parametrize("version", [0, 3, "2", None])
def test_encoder_refuses_unknown_version(version: Any) -> None:
    with pytest.raises(EncodeError):
        encode(Finish(), version=version)


def test_encoder_refuses_non_spdu() -> None:
    with pytest.raises(EncodeError):
        encode("FN")  # type: ignore[arg-type]


# ------------------------------------------------------------------ segmenting

SEGMENTABLE = tuple(
    kind
    for kind in S.BY_KIND
    # Each needs an Enclosure Item and user data of its own.  RF is left out:
    # its user data rides inside the Reason Code PI (see test below).
    if kind not in ("CN", "OA", "RF", "AA", "GTC", "GTA", "EX", "PR", "ER")
)


@PROFILE
@given(data=st.data())
def test_segment_then_reassemble(data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(SEGMENTABLE), label="kind")
    whole = data.draw(S.spdu(kind, 2), label="spdu")
    whole = dataclasses.replace(whole, enclosure=None)  # type: ignore[type-var]
    size = len(encode(whole))
    max_size = data.draw(st.integers(32, max(33, size + 16)), label="max_size")
    try:
        pieces = segment(whole, max_size)
    except EncodeError as exc:
        assert "no room" in str(exc)
        assume(False)
        return
    if size <= max_size:
        assert pieces == [whole]
    else:
        assert len(pieces) >= 2
    assembler = SegmentAssembler()
    out = []
    for index, piece in enumerate(pieces):
        octets = encode(piece)
        assert len(octets) <= max_size, f"segment {index} is {len(octets)} > {max_size}"
        # Through the wire: each segment in a TSDU of its own, decoded again.
        decoded = decode_tsdu(encode_tsdu(*leader_for(piece)))[-1]
        for entry in type(whole).SPEC:  # (a later segment states no value of its own)
            if getattr(entry, "required", False) and entry.name not in ("user_data",):
                assert getattr(decoded, entry.name) == getattr(whole, entry.name), entry.name
        result = assembler.feed(decoded)
        if result is not None:
            out.append(result)
    assert not assembler.pending
    assert out == list(S.expected([whole]))


def test_segment_refuses_a_size_without_room() -> None:
    with pytest.raises(EncodeError):
        segment(DataTransfer(user_data=b"x" * 100), 4)


def test_segmented_refuse_is_encode_error_or_reassembles() -> None:
    """RF's user data sits inside PI 50: segmenting it either works or says why."""
    rf = Refuse(reason=2, user_data=b"r" * 1000)
    try:
        pieces = segment(rf, 200)
    except EncodeError:
        return
    assembler = SegmentAssembler()
    results = [assembler.feed(decode_tsdu(encode_tsdu(p))[0]) for p in pieces]
    assert results[-1] == rf


def test_assembler_bounds_what_it_holds() -> None:
    assembler = SegmentAssembler(max_size=10)
    assert assembler.feed(DataTransfer(enclosure=1, user_data=b"x" * 8)) is None
    with pytest.raises(DecodeError):
        assembler.feed(DataTransfer(enclosure=2, user_data=b"x" * 8))



def test_empty_segments_count_against_the_bound() -> None:
    """Empty middle segments count as one octet each (before: none counted, and a peer
    could send them without end, each held); an empty last one does not."""
    assembler = SegmentAssembler(max_size=10)
    assert assembler.feed(DataTransfer(enclosure=1, user_data=b"x" * 5)) is None
    for _ in range(5):
        assert assembler.feed(DataTransfer(enclosure=0, user_data=b"")) is None
    assert assembler.feed(DataTransfer(enclosure=2, user_data=b"")) == DataTransfer(
        user_data=b"x" * 5)  # fmt: skip
    assembler.feed(DataTransfer(enclosure=1, user_data=b"x" * 5))
    with pytest.raises(DecodeError, match="exceeds the limit of 10"):
        for _ in range(6):
            assembler.feed(DataTransfer(enclosure=0, user_data=b""))

@pytest.mark.parametrize(
    "pieces",
    [
        [DataTransfer(enclosure=0, user_data=b"a")],  # middle without a beginning
        [DataTransfer(enclosure=2, user_data=b"a")],  # end without a beginning
        [DataTransfer(enclosure=1), DataTransfer(enclosure=1)],  # two beginnings
        [DataTransfer(enclosure=1), Finish(enclosure=2)],  # another kind inside
    ],
)
def test_assembler_refuses_bad_sequences(pieces: list[SPDU]) -> None:
    assembler = SegmentAssembler()
    with pytest.raises(DecodeError):
        for piece in pieces:
            assembler.feed(piece)


# ------------------------------------------------------------------ streaming


def _stream(tsdus: list[bytes], tpdu_size: int) -> bytes:
    if TpktParser is None:  # pragma: no cover
        return b"".join(tpkt_dt(t) for t in tsdus)
    return b"".join(encode_tpkt(tpdu) for t in tsdus for tpdu in segment_tsdu(t, tpdu_size))


def _receive(chunks: list[bytes], version: int, extended: bool) -> list[tuple[SPDU, ...]]:
    out: list[tuple[SPDU, ...]] = []
    if TpktParser is None:  # pragma: no cover
        for payload in split_tpkts(b"".join(chunks)):
            out.append(decode_tsdu(payload[3:], version=version, extended=extended))
        return out
    parser, assembler = TpktParser(), TsduAssembler()
    for chunk in chunks:
        for payload in parser.feed(chunk):
            tpdu = decode_tpdu(payload)
            assert isinstance(tpdu, Data)
            tsdu = assembler.feed(tpdu)
            if tsdu is not None:
                out.append(decode_tsdu(tsdu, version=version, extended=extended))
    assert parser.buffered == 0 and assembler.pending == 0
    return out


@SLOW_PROFILE
@given(
    version=S.versions,
    extended=st.booleans(),
    tpdu_size=st.sampled_from([128, 1024, 8192, 65531]),
    seed=st.integers(0, 2**32),
    data=st.data(),
)
def test_stream_whole_pieces_or_bytewise(
    version: int, extended: bool, tpdu_size: int, seed: int, data: st.DataObject
) -> None:
    tsdus_spdus = data.draw(
        st.lists(S.tsdu(version, extended=extended, small=True), min_size=1, max_size=8),
        label="tsdus",
    )
    tsdus = [encode_tsdu(*s, version=version, extended=extended) for s in tsdus_spdus]
    stream = _stream(tsdus, tpdu_size)
    want = [S.expected(s) for s in tsdus_spdus]

    whole = _receive([stream], version, extended)
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(stream)), min(len(stream) - 1, rng.randint(0, 20))))
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    in_pieces = _receive(pieces, version, extended)
    bytewise = _receive([stream[i : i + 1] for i in range(len(stream))], version, extended)
    assert whole == in_pieces == bytewise == want


def test_stream_of_big_tsdus() -> None:
    """A 64 KiB GT+DT and a 10240-octet CN, through 8192-octet TPDUs (8 DTs, as libiec61850)."""
    cn = Connect(item=ConnectAcceptItem(version=2), user_data=b"c" * 10240)
    gtdt = [GiveTokens(), DataTransfer(user_data=bytes(range(256)) * 256)]
    stream = _stream([encode_tsdu(cn), encode_tsdu(*gtdt)], 8192)
    assert _receive([stream], 2, False) == [(cn,), tuple(gtdt)]
    mid = len(stream) // 2
    assert _receive([stream[:mid], stream[mid:]], 2, False) == [(cn,), tuple(gtdt)]


# ------------------------------------------------------------------ X.225 user-data sizes


def _cn(size: int, version: int | None = 2) -> Connect:
    item = ConnectAcceptItem(version=version) if version is not None else None
    return Connect(item=item, user_data=bytes(size))


def test_v1_user_data_limit_is_512() -> None:
    ok = Finish(user_data=b"f" * 512)
    assert decode_tsdu(encode(ok, version=1), version=1) == (ok,)
    with pytest.raises(EncodeError, match="at most 512"):
        encode(Finish(user_data=b"f" * 513), version=1)
    # ... and on receipt: 513 octets from a version-1 peer is a protocol error.
    v2_octets = encode(Finish(user_data=b"f" * 513), version=2)
    with pytest.raises(DecodeError, match="at most 512") as info:
        decode_tsdu(v2_octets, version=1)
    assert AbortReason.PROTOCOL_ERROR in info.value.reason
    assert decode_tsdu(v2_octets, version=2) == (Finish(user_data=b"f" * 513),)


@pytest.mark.parametrize(
    "spdu",
    [
        Accept(user_data=b"a" * 513),
        Abort(user_data=b"a" * 513),
        PleaseTokens(user_data=b"a" * 513),
        Refuse(reason=2, user_data=b"a" * 513),
        GiveTokens(user_data=b"g"),  # GT carries user data only in version 2
    ],
    ids=lambda s: s.kind,
)
def test_v1_limits_other_spdus(spdu: SPDU) -> None:
    with pytest.raises(EncodeError):
        encode(spdu, version=1)
    assert roundtrip(leader_for(spdu), 2) == tuple(leader_for(spdu))


@pytest.mark.parametrize(
    "spdu", [CapabilityData(user_data=b"c" * 10240), CapabilityDataAck(user_data=b"c" * 10240)]
)
def test_capability_data_is_512_in_version_1_only(spdu: SPDU) -> None:
    with pytest.raises(EncodeError, match="at most 512 in version 1"):
        encode(spdu, version=1)
    # Version 2: as much as any SPDU's PGI 193 holds (ISODE: 512 below version 2 only).
    assert roundtrip(leader_for(spdu), 2) == tuple(leader_for(spdu))


@pytest.mark.parametrize("size", [0, 1, 254, 255, 512])
def test_cn_up_to_512_uses_pgi_193(size: int) -> None:
    octets = encode(_cn(size))
    li = bytes([size]) if size < 255 else b"\xff" + size.to_bytes(2, "big")
    assert octets.endswith(b"\xc1" + li + bytes(size))
    assert decode_tsdu(octets) == (_cn(size),)


@pytest.mark.parametrize("size", [513, 4096, 10240])
@pytest.mark.parametrize("version", [2, 3, None])
def test_v2_cn_513_to_10240_uses_pgi_194(size: int, version: int | None) -> None:
    cn = _cn(size, version)
    octets = encode(cn)
    assert octets.endswith(b"\xc2\xff" + size.to_bytes(2, "big") + bytes(size))
    assert decode_tsdu(octets) == (cn,)
    assert decode_tsdu(octets, version=1) == (cn,)  # a CN follows its own version


def test_v1_only_cn_refuses_more_than_512() -> None:
    with pytest.raises(EncodeError, match="at most 512"):
        encode(_cn(513, version=1))
    # A CN offering only version 1 but carrying PGI 194 is refused on receipt.
    params = b"\x05\x03\x16\x01\x01" + b"\xc2\xff" + (600).to_bytes(2, "big") + bytes(600)
    with pytest.raises(DecodeError, match="194"):
        decode_tsdu(b"\x0d" + _li(len(params)) + params)


def test_cn_pgi_194_refused_for_512_or_less() -> None:
    for size in (0, 1, 512):
        params = b"\xc2" + _li(size) + bytes(size)
        with pytest.raises(DecodeError, match="194") as info:
            decode_tsdu(b"\x0d" + _li(len(params)) + params)
        assert AbortReason.PROTOCOL_ERROR in info.value.reason


def test_cn_pgi_193_refused_over_512() -> None:
    params = b"\xc1\xff\x02\x01" + bytes(513)
    with pytest.raises(DecodeError, match="194"):
        decode_tsdu(b"\x0d" + _li(len(params)) + params)


def test_cn_10241_or_more_refused() -> None:
    with pytest.raises(EncodeError, match="10240"):
        encode(_cn(10241))
    with pytest.raises(EncodeError):
        encode(_cn(65000))
    params = b"\xc2\xff" + (10241).to_bytes(2, "big") + bytes(10241)
    with pytest.raises(DecodeError, match="10240") as info:
        decode_tsdu(b"\x0d" + _li(len(params)) + params)
    assert AbortReason.PROTOCOL_ERROR in info.value.reason


def test_pgi_194_only_in_cn() -> None:
    params = b"\xc2\xff" + (600).to_bytes(2, "big") + bytes(600)
    with pytest.raises(DecodeError, match="194"):
        decode_tsdu(b"\x0e" + _li(len(params)) + params)  # AC


def test_more_than_10240_goes_to_cdo() -> None:
    """Over 10240 octets: CN carries 10240 and Data Overflow; the rest follows in CDO."""
    cn = Connect(item=ConnectAcceptItem(version=2), data_overflow=1, user_data=b"a" * 10240)
    cdo = ConnectDataOverflow(enclosure=2, user_data=b"b" * 30000)
    assert decode_tsdu(encode(cn)) == (cn,)
    assert decode_tsdu(encode(cdo)) == (cdo,)
