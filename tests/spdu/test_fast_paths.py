"""The codec's fast paths against its general code (spdu/codec.py).

``_encode_fast``, ``_decode_fast`` and ``_connect_version_fast`` handle well-formed values
only and answer None for anything else, which sends the caller to the general code.  Here:
whenever a fast path answers, it agrees with the general code; and whenever the general code
raises, the fast path did not answer (so every error stays the general code's own).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessionlayer.errors import DecodeError, EncodeError
from sessionlayer.spdu import ALL_SPDUS, SPDU, Connect, ConnectAcceptItem, codec, encode

from . import strategies as S
from .helpers import PROFILE
from .test_properties import mutated


def _general_encode(spdu: SPDU, version: int) -> bytes | None:
    try:
        return codec._encode_entries(spdu, spdu.SPEC, version, spdu.kind)
    except EncodeError:
        return None


def _check_encode(spdu: SPDU, version: int) -> None:
    fast = codec._encode_fast(spdu, codec._plan(spdu.SPEC), version)
    general = _general_encode(spdu, version)
    if general is None:
        assert fast is None
    elif fast is not None:
        assert bytes(fast) == general


def _check_decode(cls: type[SPDU], field: bytes, version: int) -> None:
    try:
        general: dict[str, Any] | None = codec._decode_entries(
            field, 0, len(field), cls.SPEC, version, cls.kind
        )
    except DecodeError:
        general = None
    fast = codec._decode_fast(field, 0, len(field), codec._compiled(cls.SPEC), version)
    if general is None:
        assert fast is None
    elif fast is not None:
        assert fast == general
        assert {k: type(v) for k, v in fast.items()} == {k: type(v) for k, v in general.items()}


def _check_connect_version(field: bytes) -> None:
    fast = codec._connect_version_fast(field, 0, len(field))
    try:
        general: int | None = codec._connect_version(field, 0, len(field))
    except DecodeError:
        general = None
    if general is None:
        assert fast is None
    elif fast is not None:
        assert fast == general


def _field(spdu: SPDU, version: int) -> bytes:
    """The parameter field of ``spdu`` as the encoder writes it."""
    raw = encode(spdu, version=version)
    at = 4 if raw[1] == 0xFF else 2
    size = (raw[2] << 8 | raw[3]) if raw[1] == 0xFF else raw[1]
    return raw[at : at + size]


@PROFILE
@given(S.spdu_and_version())
def test_fast_encode_agrees(case: tuple[SPDU, int]) -> None:
    spdu, version = case
    _check_encode(spdu, version)
    _check_encode(spdu, 3 - version)  # the other version's limits too


@PROFILE
@given(S.spdu_and_version(), st.sampled_from(["", "big", "str", "neg", "sub"]))
def test_fast_encode_declines_what_the_general_code_refuses(
    case: tuple[SPDU, int], how: str
) -> None:
    spdu, version = case
    names = [f.name for f in dataclasses.fields(spdu)]  # type: ignore[arg-type]
    for name in names:
        bad: Any = {"": None, "big": 1 << 20, "str": "x", "neg": -1, "sub": True}[how]
        _check_encode(dataclasses.replace(spdu, **{name: bad}), version)  # type: ignore[type-var]


@PROFILE
@given(S.spdu_and_version(), st.data())
def test_fast_decode_agrees(case: tuple[SPDU, int], data: st.DataObject) -> None:
    spdu, version = case
    field = _field(spdu, version)
    _check_decode(type(spdu), field, version)
    _check_decode(type(spdu), field, 3 - version)
    bent = data.draw(mutated(field), label="mutated")
    _check_decode(type(spdu), bent, version)
    _check_connect_version(field)
    _check_connect_version(bent)


@PROFILE
@given(st.sampled_from(ALL_SPDUS), st.binary(max_size=64), S.versions)
def test_fast_decode_of_random_fields(cls: type[SPDU], field: bytes, version: int) -> None:
    _check_decode(cls, field, version)
    _check_connect_version(field)


def test_fast_paths_take_the_usual_connect() -> None:
    cn = Connect(
        item=ConnectAcceptItem(protocol_options=0, version=3, initial_serial=0, token_setting=0),
        requirements=0x043E,
        user_data=b"x" * 300,  # a three-octet length indicator
    )
    field = _field(cn, 2)
    assert codec._decode_fast(field, 0, len(field), codec._compiled(Connect.SPEC), 2) is not None
    assert codec._connect_version_fast(field, 0, len(field)) == 2
    assert codec._encode_fast(cn, codec._plan(Connect.SPEC), 2) is not None


def test_group_caches_share_values_and_octets() -> None:
    item = ConnectAcceptItem(protocol_options=0, version=2, initial_serial=1, token_setting=0)
    cn = Connect(item=item, requirements=0x043E, user_data=b"hello")
    raw = codec.encode_tsdu(cn)
    (first,), (second,) = codec.decode_tsdu(raw), codec.decode_tsdu(bytearray(raw))
    assert first == second == cn and first.item is second.item  # type: ignore[attr-defined]
    assert codec.encode_tsdu(first) == codec.encode_tsdu(second) == raw
    # An equal item of another type of value is encoded (and refused) on its own.
    bent = dataclasses.replace(item, initial_serial=True)
    assert bent == item
    with pytest.raises(EncodeError):
        codec.encode_tsdu(dataclasses.replace(cn, item=bent))
    for _ in range(3 * codec._GROUP_OCTETS_MAX):  # bounded
        codec.encode_tsdu(dataclasses.replace(cn, item=dataclasses.replace(item, version=3)))
    assert all(len(t) <= codec._GROUP_OCTETS_MAX for t in codec._GROUP_OCTETS.values())
