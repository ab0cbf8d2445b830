"""Hypothesis drives the fuzz targets (``targets.py``) with bounded examples.

Inputs start valid -- SPDUs and TSDUs from ``tests/spdu/strategies.py``, TPDU streams,
plain-data streams, hellos -- and are then mutated: bit flips, truncation, insertion,
deletion, duplication and length-field corruption.  The captured libiec61850 frames are
explicit examples.

The whole folder runs in well under 20 s on one core.  For a long run set
``SESSIONLAYER_FUZZ_EXAMPLES`` (examples per test, e.g. 200000); see docs/fuzzing.md.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from tests.fuzz import targets as T
from tests.spdu import strategies as S

from sessionlayer.agent.hello import Hello, Rejection, Welcome
from sessionlayer.errors import DecodeError
from sessionlayer.spdu import encode_tsdu
from sessionlayer.transport import (
    ConnectionConfirm,
    ConnectionRequest,
    Data,
    DisconnectRequest,
    Error,
    ExpeditedData,
    Parameter,
    encode_tpdu,
    encode_tpkt,
    frame_data,
    segment_tsdu,
)

Strategy = st.SearchStrategy[Any]


def _examples(default: int) -> int:
    """``default``, or SESSIONLAYER_FUZZ_EXAMPLES when set (a long run)."""
    value = os.environ.get("SESSIONLAYER_FUZZ_EXAMPLES")
    return int(value) if value else default


def fuzz_settings(default: int) -> settings:
    return settings(
        max_examples=_examples(default),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


SEEDS = T.seeds()


def with_seeds(test: Callable[..., None]) -> Callable[..., None]:
    """Every captured frame (and its SPDUs) as an explicit example of a one-input test."""
    for seed in SEEDS:
        test = example(seed)(test)
    return test


# ------------------------------------------------------------------ mutation

#: Values a corrupted length field takes: the edges of one- and two-octet lengths.
_LENGTHS = (0, 1, 2, 3, 6, 7, 0x7F, 0x80, 0xFE, 0xFF, 0x100, 0x1FF, 0xFFFE, 0xFFFF)


@st.composite
def _mutation(draw: st.DrawFn, data: bytes) -> bytes:
    n = len(data)
    kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "dup", "length"]))
    at = draw(st.integers(0, n))
    if kind == "flip" and n:
        i = min(at, n - 1)
        return data[:i] + bytes([data[i] ^ (1 << draw(st.integers(0, 7)))]) + data[i + 1 :]
    if kind == "truncate":
        return data[:at]
    if kind == "insert":
        return data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
    if kind == "delete":
        return data[:at] + data[at + draw(st.integers(1, 8)) :]
    if kind == "dup":
        size = draw(st.integers(1, 64))
        return data[:at] + data[at : at + size] + data[at:]
    value = draw(st.sampled_from(_LENGTHS))
    if draw(st.booleans()):  # a 16-bit big-endian field (TPKT length, SPDU 0xFF LI)
        return data[:at] + struct.pack(">H", value) + data[at + 2 :]
    return data[:at] + bytes([value & 0xFF]) + data[at + 1 :]


@st.composite
def mutated(draw: st.DrawFn, base: Strategy, most: int = 4) -> bytes:
    """Octets from ``base``, then 0..``most`` mutations."""
    data: bytes = draw(base)
    for _ in range(draw(st.integers(0, most))):
        data = draw(_mutation(data))
    return data


def fuzzed(base: Strategy) -> Strategy:
    """Mostly mutated valid input, some untouched, some plain random octets."""
    return st.one_of(mutated(base), base, st.binary(max_size=200))


# ------------------------------------------------------------------ valid inputs


@st.composite
def tsdu_octets(draw: st.DrawFn) -> bytes:
    """One valid TSDU, any version, basic or extended concatenation (small user data)."""
    version = draw(S.versions)
    extended = draw(st.booleans())
    spdus = draw(S.tsdu(version, extended=extended, small=True))
    return encode_tsdu(*spdus, version=version, extended=extended)


_small = st.binary(max_size=20)
_refs = st.integers(0, 0xFFFF)
_other = st.lists(
    st.builds(Parameter, st.sampled_from([0xC6, 0xC7, 0xC8, 0xE0]), _small), max_size=2
).map(tuple)


def _connect_tpdu(cls: type[ConnectionRequest | ConnectionConfirm]) -> Strategy:
    return st.builds(
        cls,
        dst_ref=_refs,
        src_ref=_refs,
        class_option=st.integers(0, 3),
        calling_tsap=st.none() | _small,
        called_tsap=st.none() | _small,
        tpdu_size=st.none() | st.integers(7, 13),
        preferred_max_tpdu_size=st.none() | st.integers(1, 511),
        other_params=_other,
    )


@st.composite
def tpdu_stream(draw: st.DrawFn, role: str, opened: bool) -> bytes:
    """A TPKT stream that a connection in this mode expects: the CR (responder) or CC
    (initiator) when not yet open, then TSDUs in DTs, and now and then an ED, a DR or an
    ER."""
    out: list[bytes] = []
    if not opened:
        cls = ConnectionRequest if role == "responder" else ConnectionConfirm
        out.append(encode_tpkt(encode_tpdu(draw(_connect_tpdu(cls)))))
    tpdu_size = draw(st.sampled_from([128, 256, 8192]))
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["tsdu", "tsdu", "tsdu", "raw", "ed", "dr", "er"]))
        if kind == "tsdu":
            tsdu = draw(st.one_of(tsdu_octets(), st.binary(max_size=400)))
            out += [encode_tpkt(dt) for dt in segment_tsdu(tsdu, tpdu_size)]
        elif kind == "raw":
            dt = Data(draw(st.binary(max_size=60)), eot=draw(st.booleans()))
            out.append(encode_tpkt(encode_tpdu(dt)))
        elif kind == "ed":
            ed = ExpeditedData(draw(st.binary(min_size=1, max_size=16)))
            out.append(encode_tpkt(encode_tpdu(ed)))
        elif kind == "dr":
            dr = DisconnectRequest(draw(_refs), draw(_refs), draw(st.integers(0, 255)))
            out.append(encode_tpkt(encode_tpdu(dr)))
        else:
            out.append(encode_tpkt(encode_tpdu(Error(draw(_refs), draw(st.integers(0, 3))))))
    return b"".join(out)


@st.composite
def plain_stream(draw: st.DrawFn) -> bytes:
    """Plain-data messages framed with ``frame_data``, with other TSDUs between them."""
    tpdu_size = draw(st.sampled_from(T.TPDU_SIZES))
    out: list[bytes] = []
    for _ in range(draw(st.integers(0, 5))):
        if draw(st.integers(0, 3)):
            out.append(frame_data(draw(S.blob(600)), tpdu_size))
        else:
            tsdu = draw(tsdu_octets())
            out += [encode_tpkt(dt) for dt in segment_tsdu(tsdu, min(tpdu_size, 8192))]
    return b"".join(out)


_names = st.text(max_size=8)
_hellos = st.one_of(
    st.builds(
        Hello,
        offers=st.dictionaries(_names, st.lists(_names, max_size=3), max_size=3),
        credentials=st.none() | st.dictionaries(_names, _names, max_size=2),
        resume=st.none() | _names,
        keepalive=st.booleans(),
        data=st.binary(max_size=20),
    ),
    st.builds(
        Welcome,
        chosen=st.dictionaries(_names, _names, max_size=3),
        keepalive=st.booleans(),
        data=st.binary(max_size=20),
    ),
    st.builds(Rejection, message=_names, code=_names),
).map(lambda h: h.encode())


@st.composite
def nested_json(draw: st.DrawFn) -> bytes:
    """A hello whose JSON nests: well below the interpreter's recursion limit (the deep
    case is its own test below)."""
    depth = draw(st.integers(1, 200))
    opener = draw(st.sampled_from(["[", '{"a":']))
    closer = "]" if opener == "[" else "}"
    return b"SLH1" + (opener * depth + "0" + closer * depth).encode()


# ------------------------------------------------------------------ (a) the codec


@fuzz_settings(400)
@given(fuzzed(tsdu_octets()))
@with_seeds
def test_codec(data: bytes) -> None:
    T.codec(data)


@fuzz_settings(100)
@given(st.binary(max_size=400))
def test_codec_random(data: bytes) -> None:
    T.codec(data)


# ------------------------------------------------------------------ (b) RFC 1006


@st.composite
def transport_case(draw: st.DrawFn) -> tuple[bytes, int, str, bool]:
    role, opened = draw(st.sampled_from(T.TRANSPORT_MODES))
    data = draw(fuzzed(tpdu_stream(role, opened)))
    return data, draw(st.integers(0, len(data))), role, opened


@fuzz_settings(150)
@given(transport_case())
def test_rfc1006(case: tuple[bytes, int, str, bool]) -> None:
    data, split, role, opened = case
    T.rfc1006(data, split, role=role, opened=opened)


_BAD_TPKT = b"\x02\x00\x00\x09\x02\xf0\x80\x01\x00"  # TPKT version 2
_DT = encode_tpkt(encode_tpdu(Data(b"\x01\x00\x01\x00hi")))
_DR = encode_tpkt(encode_tpdu(DisconnectRequest(1, 7, 0)))
_CR = encode_tpkt(encode_tpdu(ConnectionRequest(src_ref=7, tpdu_size=13)))
_BIG_DT = encode_tpkt(encode_tpdu(Data(b"\x01\x00\x01\x00" + b"x" * 400)))


# Found by this fuzz target: receive_data used to frame every TPKT of a read before handling
# any, so a bad header later in the read won over what came first.
@pytest.mark.parametrize(
    ("data", "split", "role", "opened"),
    [
        # What comes behind a CR (a DT, a bad TPKT header) is not read before the CR is
        # answered (fast connect), whether it came in the CR's read or in a later one.
        (_CR + _DT + _BAD_TPKT, len(_CR) + len(_DT), "responder", False),
        # After a DR nothing is read; fed at once, the bad header after it still raises.
        (_DR + _BAD_TPKT, len(_DR), "responder", True),
        # A TSDU over the limit (reason 0x11, implementation restriction) becomes a
        # protocol error (0x05) when a bad header follows in the same read.
        (_BIG_DT + _BAD_TPKT, len(_BIG_DT), "responder", True),
    ],
    ids=["behind-the-cr", "after-dr", "abort-reason"],
)
def test_rfc1006_error_does_not_depend_on_the_cut(
    data: bytes, split: int, role: str, opened: bool
) -> None:
    T.rfc1006(data, split, role=role, opened=opened)


@pytest.mark.parametrize("mode", T.TRANSPORT_MODES, ids=lambda m: f"{m}")
@pytest.mark.parametrize("seed", range(len(SEEDS)), ids=lambda i: f"seed{i}")
def test_rfc1006_seeds(seed: int, mode: tuple[str, bool]) -> None:
    data = SEEDS[seed]
    for split in (0, 1, 4, 5, len(data) // 2, len(data) - 1):
        T.rfc1006(data, split, role=mode[0], opened=mode[1])


@fuzz_settings(100)
@given(st.binary(max_size=300))
@with_seeds
def test_rfc1006_bytes(data: bytes) -> None:
    T.rfc1006_bytes(data)


# ------------------------------------------------------------------ (c) the fast path


@fuzz_settings(250)
@given(fuzzed(plain_stream()), st.sampled_from([T.SMALL_TSDU_LIMIT, 1 << 20]))
def test_plain_reader(data: bytes, limit: int) -> None:
    T.plain(data, limit)


@fuzz_settings(100)
@given(st.binary(max_size=300))
@with_seeds
def test_plain_reader_bytes(data: bytes) -> None:
    T.plain_bytes(data)


# ------------------------------------------------------------------ (d) hello


@fuzz_settings(300)
@given(st.one_of(fuzzed(_hellos), nested_json()))
@with_seeds
def test_hello(data: bytes) -> None:
    T.hello(data)


@pytest.mark.parametrize("decoder", [Hello, Welcome, Rejection], ids=lambda d: d.__name__)
@pytest.mark.parametrize("nest", [b"[", b"{\"a\":", b"[{\"x\":"])
def test_hello_deep_nesting(decoder: Any, nest: bytes) -> None:
    """Issue 13: ``SLH1`` + ``[`` x 9000 let RecursionError escape (and logged a traceback
    per CN); now a DecodeError, for each kind behind its own magic."""
    magic = decoder(**({"message": "m"} if decoder is Rejection else {})).encode()[:4]
    with pytest.raises(DecodeError, match="nested deeper"):
        decoder.decode(magic + nest * 9000)


# ------------------------------------------------------------------ (e) fast vs general


# The property test of ``paths`` (random messages, TPDU sizes and cuts) is in
# tests/transport/test_fastpath.py, with the other fast-vs-general checks; here the
# one-``bytes`` target the atheris run uses.


@fuzz_settings(100)
@given(st.binary(max_size=300))
def test_paths_bytes(data: bytes) -> None:
    T.paths_bytes(data)
