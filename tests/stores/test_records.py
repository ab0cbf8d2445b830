"""The record and its JSON encoding (shared by the SQLite and Redis stores)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from tests.stores.helpers import make_record

from sessionlayer.stores import Checkpoint, SessionRecord
from sessionlayer.stores.records import decode, encode, from_fields, from_json, to_json


@pytest.mark.parametrize(
    "record",
    [
        make_record(),
        make_record(checkpoint=None, node=None, peer=None, expires_at=None, chosen={}),
        make_record(checkpoint=Checkpoint(serial=0, user_data=b"")),
        make_record(checkpoint=Checkpoint(serial=3, user_data=None), created=1.0),
        make_record(created=1727200000.123456789, expires_at=0.1 + 0.2),
        make_record(heard_at=0, generation=1),
        make_record(heard_at=3, detached=True, generation=4),
        make_record(heard_at=1, generation=4),
    ],
)
def test_round_trip(record: SessionRecord) -> None:
    assert decode(encode(record)) == record
    assert decode(encode(record).encode()) == record
    assert from_json(json.loads(json.dumps(to_json(record)))) == record


def test_the_encoding_is_plain_json_with_base64_user_data() -> None:
    record = make_record(checkpoint=Checkpoint(serial=5, user_data=b"\x00\x01\x02"))
    obj = json.loads(encode(record))
    assert obj["checkpoint"] == {"serial": 5, "user_data": "AAEC"}
    assert obj["generation"] == 0 and obj["id"] == record.id
    assert set(obj) == {"id", "generation", "identity", "chosen", "created", "expires_at",
                        "checkpoint", "node", "peer"}  # fmt: skip


def test_heard_at_is_there_only_while_set_and_absent_means_not() -> None:
    """A record an older version wrote (no ``previous_ok`` member) takes only its current
    token; one with ``heard_at`` set says so (with ``previous_ok``, which an older version
    reads), and nothing else changes in the encoding."""
    record = make_record(generation=3)
    assert "previous_ok" not in json.loads(encode(record))
    assert "heard_at" not in json.loads(encode(record))
    marked = json.loads(encode(replace(record, heard_at=1)))
    assert marked.pop("previous_ok") is True and marked.pop("heard_at") == 1
    assert marked == json.loads(encode(record))
    assert decode(encode(record)).heard_at is None
    with pytest.raises(ValueError, match="previous_ok is not true or false"):
        from_json({**to_json(record), "previous_ok": "yes"})


def test_an_older_versions_previous_ok_reads_as_heard_at_the_generation_before() -> None:
    """``previous_ok`` alone (an older version's record): the token before is taken; an
    older version that cleared it (``false``) cleared ``heard_at`` with it; ``heard_at``
    out of its range is not a record."""
    record = make_record(generation=3)
    assert from_json({**to_json(record), "previous_ok": True}).heard_at == 2
    assert from_json({**to_json(record), "previous_ok": True}).oldest == 2
    assert from_json({**to_json(record), "previous_ok": False, "heard_at": 0}).heard_at is None
    assert from_json({**to_json(record), "heard_at": 0}).heard_at is None
    zero = make_record(generation=0)
    assert from_json({**to_json(zero), "previous_ok": True}).heard_at is None
    for bad in (3, 4, -1, "1", True, 1.0):
        with pytest.raises(ValueError, match="heard_at"):
            from_json({**to_json(record), "previous_ok": True, "heard_at": bad})
    with pytest.raises(ValueError, match="heard_at"):
        replace(record, heard_at=3)


@pytest.mark.parametrize("text", [
    "[" * 100_000 + "]" * 100_000,
    '{"chosen": ' + "[" * 100_000 + "]" * 100_000 + "}",
    '{"id": ' + "1" * 5000 + "}",
])  # fmt: skip
def test_anything_that_is_not_a_record_is_a_value_error(text: str) -> None:
    """(Before: a deep one raised RecursionError, which the stores did not take for a
    corrupt record, and a server refused the resume as an authentication error.)"""
    with pytest.raises(ValueError):
        decode(text)
    with pytest.raises(ValueError):
        from_fields({"id": text})


@pytest.mark.parametrize("change", [
    {"checkpoint": {"serial": 1_000_000, "user_data": None}},
    {"checkpoint": {"serial": -1, "user_data": None}},
    {"checkpoint": {"serial": 1, "user_data": 5}},
    {"checkpoint": []},
    {"generation": 1_000_000_000},
    {"generation": -1},
    {"generation": 1.5},
    {"chosen": {"a": 1}},
    {"chosen": None},
    {"created": float("inf")},
    {"expires_at": "1"},
    {"id": "X" * 32},
    {"node": 3},
])  # fmt: skip
def test_members_of_the_wrong_type_or_out_of_range_are_a_value_error(
    change: dict[str, object],
) -> None:
    """A serial over 999999 (six digits, ISO 8327) or a generation over what a token
    spells (nine) is not a record's (before: taken, and the session resumed at a
    checkpoint its peer could not be told)."""
    obj = {**to_json(make_record()), **change}
    with pytest.raises(ValueError):
        from_json(obj)
    with pytest.raises(ValueError):
        decode(json.dumps(obj))


def test_members_it_does_not_know_are_ignored() -> None:
    record = make_record()
    obj = {**to_json(record), "from_a_newer_writer": [1, 2]}
    assert from_json(obj) == record


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"id": "XYZ"}, "32 lowercase hex"),
        ({"id": 7}, "id is not a string"),
        ({"generation": "1"}, "generation is not an integer"),
        ({"generation": True}, "generation is not an integer"),
        ({"identity": None}, "identity is not a string"),
        ({"chosen": {"a": 1}}, "chosen"),
        ({"chosen": []}, "chosen"),
        ({"created": "now"}, "created is not a number"),
        ({"expires_at": "soon"}, "expires_at is not a number"),
        ({"checkpoint": 5}, "checkpoint is not an object"),
        ({"checkpoint": {"serial": 1, "user_data": "!!"}}, "not base64"),
        ({"checkpoint": {"serial": 1, "user_data": 3}}, "not base64"),
        ({"checkpoint": {"user_data": None}}, "checkpoint serial"),
        ({"node": 1}, "node is not a string"),
        ({"peer": ["x"]}, "peer is not a string"),
    ],
)
def test_what_is_not_a_record_raises_value_error(change: dict[str, object], message: str) -> None:
    obj = {**to_json(make_record()), **change}
    with pytest.raises(ValueError, match=message):
        from_json(obj)


@pytest.mark.parametrize("text", ["", "[1]", "null", "{", b"\xff\xfe", '{"id": "00"}'])
def test_decode_raises_value_error_only(text: str | bytes) -> None:
    with pytest.raises(ValueError):
        decode(text)


def test_a_missing_member_is_named() -> None:
    obj = to_json(make_record())
    del obj["identity"]
    with pytest.raises(ValueError, match="'identity'"):
        from_json(obj)


def test_session_ids_are_checked() -> None:
    with pytest.raises(ValueError, match="32 lowercase hex"):
        make_record(id="A" * 32)
    with pytest.raises(ValueError):
        make_record(id="0" * 31)
    assert make_record(id="0f" * 16).id == "0f" * 16
