"""Malformed SPDUs, one defect at a time: each raises DecodeError that says what was wrong.

Every case checks three things: the exception is :class:`DecodeError` (never
IndexError, struct.error, UnicodeDecodeError, ...), its message names the
problem (the ``match`` pattern), and its ``reason`` -- the Transport
Disconnect value the session aborts with (X.225 8.3.9) -- has the
protocol-error bit.  Octets are written out by hand from X.225 8.2/8.3.
"""

from __future__ import annotations

import pytest

from sessionlayer.errors import AbortReason, DecodeError, RemoteError
from sessionlayer.spdu import decode_tsdu


def h(text: str) -> bytes:
    return bytes.fromhex(text)


# (id, TSDU octets, decode keyword arguments, pattern the message must match)
CASES: list[tuple[str, bytes, dict[str, object], str]] = [
    # ---- length indicators (8.2.5)
    ("empty TSDU", b"", {}, "empty"),
    ("SI without LI", h("0d"), {}, "length indicator missing"),
    ("3-octet LI cut short", h("0dff01"), {}, "three-octet length indicator cut short"),
    ("3-octet SPDU LI under 255", h("09ff0003c10100"), {}, "must use one octet"),
    ("3-octet PI LI under 255", h("0905c1ff000100"), {}, "FN: .*must use one octet"),
    ("SPDU LI beyond the TSDU", h("0905c100"), {}, "claims 5 parameter octets, only 2 remain"),
    # ---- PI/PGI units
    ("PI overruns its SPDU", h("0903c10541"), {}, "FN: parameter 193 claims 5 octets"),
    ("PI of GT overruns into DT", h("01031005010100"), {}, "GT: parameter 16 claims 5 octets"),
    ("PI overruns its PGI", h("0d050503160501c100"), {}, "CN: parameter 22 claims 5 octets"),
    ("unknown PI", h("0903630100"), {}, "parameter 99 is not allowed in FN"),
    ("PI not allowed in this SPDU", h("0903100101"), {}, "parameter 16 is not allowed in FN"),
    ("PGI inside a PGI", h("0d050103050100"), {}, "parameter 5 is not allowed in CN PGI 1"),
    ("duplicate PI", h("0906110101110101"), {}, "parameter 17 appears twice in FN"),
    ("duplicate PI in a PGI", h("0d080506160102160102"), {}, "parameter 22 appears twice"),
    ("PGI 193 twice", h("0d04c100c100"), {}, "parameter 193 appears twice in CN"),
    ("PGI 193 and 194 together", h("0d05c100c20141"), {}, "parameters 193 and 194 both appear"),
    (
        "PGI 194 and 193 together",
        h("0dff0207c2ff0201") + bytes(513) + h("c100"),
        {},
        "parameters 194 and 193 both appear",
    ),
    # ---- mandatory parameters
    ("PR without Prepare Type", h("0700"), {}, "mandatory parameter 24 missing from PR"),
    ("MIP without Serial Number", h("01003100"), {}, "mandatory parameter 42 missing from MIP"),
    ("OA without Version Number", h("1000"), {}, "mandatory parameter 22 missing from OA"),
    (
        "AR Linking Information without old activity id",
        h("0100 1d09 2104 2a023132 290101"),
        {},
        "mandatory parameter 41 missing from AR PGI 33",
    ),
    ("AR without Linking Information", h("0100 1d03 290101"), {}, "mandatory parameter 33"),
    ("ER without Reflect Parameter", h("0200 0000"), {}, "mandatory parameter 49 missing from ER"),
    # ---- concatenation (6.3.7)
    ("category-2 MIP alone", h("31032a0131"), {}, "MIP .*must follow GIVE TOKENS or PLEASE TOKENS"),
    ("category-2 ER alone", h("0003310100"), {}, "ER .*must follow GIVE TOKENS or PLEASE TOKENS"),
    ("two category-1 SPDUs", h("09000a00"), {}, "SI 10 may not follow FN"),
    ("category 1 after GT", h("01000900"), {}, "SI 9 may not follow GT"),
    ("MIA after GT (it follows PT)", h("010032032a0131"), {}, "SI 50 may not follow GT"),
    ("DT after PT (it follows GT)", h("02000100"), {}, "SI 1 may not follow PT"),
    ("three SPDUs, basic concatenation", h("010031032a01310200"), {}, "basic concatenation"),
    ("unknown SI", h("6300"), {}, "SI 99"),
    # ---- value formats
    ("serial number with a letter", h("010031032a0141"), {}, "serial number must be 1..6 ASCII"),
    ("empty serial number", h("010031022a00"), {}, "serial number must be 1..6 ASCII"),
    ("serial number of 7 digits", h("010031092a0731323334353637"), {}, "1..6 ASCII digits"),
    ("serial number with a sign", h("010031042a022b31"), {}, "1..6 ASCII digits"),
    ("EX with 15 octets", h("0500") + b"e" * 15, {}, "EX: 15 octets of user data, at most 14"),
    ("Token Item of 2 octets", h("010410020101"), {}, "parameter 16: expected 1 octet"),
    ("Requirements of 1 octet", h("0d03140102"), {}, "parameter 20: expected 2 octet"),
    ("TSDU Maximum Size of 3 octets", h("0d0705051503000000"), {}, "needs 4 octets, got 3"),
    ("activity id of 7 octets", h("01002d09290701020304050607"), {}, "41: 7 octets"),
    ("empty activity id", h("01002d022900"), {}, "41: 0 octets"),
    ("empty RF Reason Code", h("0c023200"), {}, "reason code is empty"),
    ("calling reference of 65 octets", h("0d4501430a41") + b"r" * 65, {}, "10: 65 octets"),
    ("session selector of 17 octets", h("0d133311") + b"s" * 17, {}, "51: 17 octets"),
    # ---- user-data sizes (8.3.1.19)
    ("GT user data in version 1", h("0103c10100"), {"version": 1}, "not allowed in GT"),
    ("AI user data in version 1", h("0100 1903c10100"), {"version": 1}, "not allowed in AI"),
    (
        "513 octets of user data in version 1",
        h("09ff0205c1ff0201") + bytes(513),
        {"version": 1},
        "513 octets of user data, at most 512",
    ),
    ("PGI 194 of 512 octets", h("0dff0204c2ff0200") + bytes(512), {}, "194.*at most 512"),
    ("PGI 194 outside CN", h("0eff025dc2ff0259") + bytes(601), {}, "parameter 194"),
    ("PGI 193 over 512 in CN", h("0dff0205c1ff0201") + bytes(513), {}, "more than 512 need"),
    ("CN over 10240", h("0dff2805c2ff2801") + bytes(10241), {}, "at most 10240"),
    (
        "CD over 512 in version 1",
        h("0100 3dff0205c1ff0201") + bytes(513),
        {"version": 1},
        "CD: 513 octets of user data, at most 512 in version 1",
    ),
    # ---- Enclosure Item (PI 25): segmenting is version 2's, two bits defined
    ("enclosure in version 1", h("0903190101"), {"version": 1}, "Enclosure Item .* version 1"),
    ("enclosure with undefined bits", h("09031901ff"), {}, "0xff: only bits 0x01 and 0x02"),
]


@pytest.mark.parametrize(
    ("data", "kwargs", "pattern"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_malformed(data: bytes, kwargs: dict[str, object], pattern: str) -> None:
    with pytest.raises(DecodeError, match=pattern) as info:
        decode_tsdu(data, **kwargs)  # type: ignore[arg-type]
    exc = info.value
    assert isinstance(exc, RemoteError) and isinstance(exc, ValueError)
    assert AbortReason.PROTOCOL_ERROR in exc.reason
    assert exc.reason == AbortReason.TRANSPORT_RELEASED | AbortReason.PROTOCOL_ERROR
    assert exc.offset is None or 0 <= exc.offset <= len(data)
    assert len(exc.reflect) <= 9  # fits the AB's Reflect Parameter Values (PI 49)


def test_reflect_holds_the_offending_spdu() -> None:
    """The first octets of the bad SPDU, for the ABORT's Reflect Parameter Values."""
    with pytest.raises(DecodeError) as info:
        decode_tsdu(h("0100 31032a0141"))
    assert info.value.reflect == h("31032a0141")
    assert info.value.offset == 2


def test_same_octets_decode_when_valid() -> None:
    """Controls: the corrected forms of a few cases above decode."""
    assert decode_tsdu(h("0903c10141"))
    assert decode_tsdu(h("010031032a0131"))
    assert decode_tsdu(h("0200 32032a0131"))
    assert decode_tsdu(h("0100 1d0c 2107 2901052a023132 290101"))
    assert decode_tsdu(h("09ff0205c1ff0201") + bytes(513), version=2)
    assert decode_tsdu(h("0dff0205c2ff0201") + bytes(513))
    assert decode_tsdu(h("0500") + b"e" * 14)
