"""The hello's caches (agent/hello.py) give what the plain encoding and decoding give."""

from __future__ import annotations

import json

import pytest

from sessionlayer.agent import hello as H
from sessionlayer.agent.hello import Hello, Welcome
from sessionlayer.errors import DecodeError


def test_cached_hello_is_the_decoded_one() -> None:
    H._HELLOS.clear()
    raw = Hello(offers={"codec": ["a", "b"]}, resume="r", data=b"\x01").encode()
    first, second = Hello.decode(raw), Hello.decode(raw)
    assert first == second == Hello(offers={"codec": ["a", "b"]}, resume="r", data=b"\x01")
    assert first.offers is not second.offers
    assert first.offers["codec"] is not second.offers["codec"]
    assert Hello.decode(bytearray(raw)) == first  # type: ignore[arg-type]


def test_a_hello_with_credentials_is_not_kept() -> None:
    secret = Hello(credentials={"user": "u", "password": "p"}).encode()
    assert Hello.decode(secret).credentials == {"user": "u", "password": "p"}
    assert Hello.decode(secret).credentials == {"user": "u", "password": "p"}
    assert secret not in H._HELLOS


def _expected(chosen: object, keepalive: object, data: bytes, session_id: str | None) -> bytes:
    obj: dict[str, object] = {"v": 1, "chosen": chosen, "ka": keepalive}
    if data:
        obj["data"] = data.hex()
    if session_id is not None:
        obj["id"] = session_id
    return H.WELCOME_MAGIC + json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def test_cached_welcome_is_the_encoded_one() -> None:
    H._WELCOMES.clear()
    sid, other = "0123456789abcdef" * 2, "fedcba9876543210" * 2
    cases: list[tuple[dict[str, object], object, bytes]] = [
        ({}, True, b""),
        ({"codec": "a", "x": "y"}, False, b"\x02"),
        ({"id": '","id":"'}, True, b""),
        ({"n": 1}, True, b""),  # not plain strings: encoded each time
        ({"n": True}, True, b""),
        ({}, 1, b""),  # keepalive=1 writes 1, not true
    ]
    for chosen, keepalive, data in cases:
        for session_id in (sid, other, None, "not-an-id", sid):
            w = Welcome(chosen=chosen, keepalive=keepalive, data=data, session_id=session_id)  # type: ignore[arg-type]
            expected = _expected(chosen, keepalive, data, session_id)
            assert w.encode() == expected
            assert w.encode() == expected
            if session_id != "not-an-id" and chosen.get("n") is None:
                assert Welcome.decode(expected).session_id == session_id


def test_cached_hello_octets_are_the_encoded_ones() -> None:
    H._HELLO_OCTETS.clear()
    cases: list[Hello] = [
        Hello(),
        Hello(offers={"codec": ["a", "b"], "z": []}, keepalive=False, data=b"\x05"),
        Hello(offers={"codec": ["a"]}, resume="tok"),
        Hello(offers={"n": [1]}),  # type: ignore[list-item]
        Hello(offers={"n": [True]}),  # type: ignore[list-item]
        Hello(keepalive=1),  # type: ignore[arg-type]
        Hello(credentials={"user": "u"}),
    ]
    for hello in cases + cases:
        obj: dict[str, object] = {"v": 1, "offers": hello.offers, "ka": hello.keepalive}
        if hello.credentials is not None:
            obj["auth"] = hello.credentials
        if hello.resume is not None:
            obj["resume"] = hello.resume
        if hello.data:
            obj["data"] = hello.data.hex()
        expected = H.MAGIC + json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()
        assert hello.encode() == expected
    assert all(b'"auth"' not in v for v in H._HELLO_OCTETS.values())


def test_cached_welcome_decode_is_the_full_decode() -> None:
    """Welcomes alike but for their id and token decode from the cache: each one gives what
    the full decode gives, whatever its choices hold (a nested "id", quotes, a token key in
    a value), and what the cache cannot tell apart is decoded in full."""
    H._WELCOME_SHAPES.clear()
    ids = ["0123456789abcdef" * 2, "fedcba9876543210" * 2, "00" * 16]
    tokens = [None, "1.ab.cd", "2.ef01.99", "3." + "a" * 64]
    chosens: list[dict[str, str]] = [
        {}, {"codec": "json"}, {"id": "0123456789abcdef" * 2}, {"x": '","id":"'},
        {"tk": "1.ab.cd"}, {"a": ',"tk":"9.9'},
    ]  # fmt: skip
    for chosen in chosens:
        for fast in (False, True):
            for token in tokens:
                for sid in ids + ids:
                    for max_tsdu in (None, 1 << 20, 4096):
                        w = Welcome(chosen=chosen, session_id=sid, token=token, fast=fast,
                                    max_tsdu=max_tsdu)  # fmt: skip
                        raw = w.encode()
                        assert Welcome.decode(raw) == Welcome._decode(raw) == w
    # Nested objects with the keys: their own shapes, never taken for the top level's.
    raw = H.WELCOME_MAGIC + json.dumps(
        {"chosen": {}, "id": ids[0], "ka": True, "v": 1, "x": {"a": "b", "id": ids[1]}},
        separators=(",", ":"),
    ).encode()
    for _ in range(2):
        assert Welcome.decode(raw).session_id == ids[0]
    assert any(H._WELCOME_SHAPES)  # (the cache was used)


def test_the_largest_tsdu_a_peer_takes_is_in_its_hello_and_welcome() -> None:
    """``max_tsdu`` ("mt") goes through each cache as through the plain coding; a hello or
    welcome whose "mt" is not a positive int is malformed."""
    H._HELLOS.clear()
    H._HELLO_OCTETS.clear()
    for max_tsdu in (None, 4096, 1 << 20, 4096):
        hello = Hello(offers={"codec": ["a"]}, max_tsdu=max_tsdu)
        raw = hello.encode()
        assert (b'"mt":' in raw) is (max_tsdu is not None)
        assert Hello.decode(raw) == Hello.decode(raw) == Hello._decode(raw) == hello
    H._WELCOMES.clear()
    sid = "0123456789abcdef" * 2
    assert Welcome(session_id=sid, max_tsdu=4096).encode() != Welcome(session_id=sid).encode()
    for bad in ("0", "-1", "1.5", '"4096"', "true", "[]"):
        for magic, kind in ((H.MAGIC, Hello), (H.WELCOME_MAGIC, Welcome)):
            raw = magic + b'{"v":1,"mt":' + bad.encode() + b"}"
            with pytest.raises(DecodeError, match="size"):
                kind.decode(raw)


def test_a_relay_caps_the_largest_tsdu_and_keeps_every_other_key() -> None:
    hello = H.MAGIC + b'{"future":{"x":[1]},"ka":true,"mt":1048576,"offers":{},"v":1}'
    capped = H.cap_max_tsdu(hello, 4096)
    assert json.loads(capped[4:]) == {"future": {"x": [1]}, "ka": True, "mt": 4096,
                                      "offers": {}, "v": 1}  # fmt: skip
    assert Hello.decode(capped).max_tsdu == 4096
    assert H.cap_max_tsdu(capped, 8192) == capped  # (lower already: as it is)
    older = H.WELCOME_MAGIC + b'{"chosen":{},"ka":true,"v":1}'  # (said nothing: put in)
    assert Welcome.decode(H.cap_max_tsdu(older, 4096)).max_tsdu == 4096
    for other in (b"", b"\x01\x02", H.MAGIC + b"{broken", H.REJECTION_MAGIC + b"{}"):
        assert H.cap_max_tsdu(other, 4096) == other
