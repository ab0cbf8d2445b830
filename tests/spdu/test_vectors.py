"""Golden vectors: real libiec61850 / iec61850-rust frames decode right and re-encode exactly.

The frames are in ``libiec61850.json`` (looked for in ``<repo>/../shared/vectors``
first, then ``tests/vectors``).  Each session-layer frame is checked three ways:
the SPDU kinds, the key field values (what a reader of the capture would see
in Wireshark), and ``encode_tsdu(*decode_tsdu(x)) == x`` byte for byte.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from sessionlayer.errors import AbortReason
from sessionlayer.spdu import (
    SPDU,
    Abort,
    Accept,
    Connect,
    DataTransfer,
    Disconnect,
    Finish,
    GiveTokens,
    decode_tsdu,
    encode_tsdu,
)

from .helpers import vectors_dir

VECTORS: list[dict[str, Any]] = json.loads((vectors_dir() / "libiec61850.json").read_text())
SESSION_FRAMES = [v for v in VECTORS if v["session"]]


def _connect(spdus: tuple[SPDU, ...]) -> None:
    (cn,) = spdus
    assert isinstance(cn, Connect)
    assert cn.connection_id is None
    assert cn.item is not None
    assert cn.item.protocol_options == 0  # no extended concatenation
    assert cn.item.version == 2
    assert cn.item.tsdu_max_size is None and cn.item.initial_serial is None
    assert cn.requirements == 2  # duplex only
    assert cn.calling_ssel == b"\x00\x01"
    assert cn.called_ssel == b"\x00\x01"
    assert cn.data_overflow is None
    assert cn.user_data is not None and len(cn.user_data) == 156  # in PGI 193 (<= 512)
    assert cn.user_data[:3] == bytes.fromhex("318199")  # presentation CP-type, SET


def _accept(spdus: tuple[SPDU, ...]) -> None:
    (ac,) = spdus
    assert isinstance(ac, Accept)
    assert ac.connection_id is None
    assert ac.item is not None
    assert ac.item.protocol_options == 0
    assert ac.item.version == 2
    assert ac.tokens is None and ac.enclosure is None
    assert ac.requirements == 2
    assert ac.calling_ssel is None
    assert ac.responding_ssel == b"\x00\x01"
    assert ac.user_data is not None and len(ac.user_data) == 116
    assert ac.user_data[:2] == bytes.fromhex("3172")  # presentation CPA-type


def _gt_dt(length: int, tail: bytes = b"") -> Callable[[tuple[SPDU, ...]], None]:
    def check(spdus: tuple[SPDU, ...]) -> None:
        gt, dt = spdus
        # MMS profile: GT with LI 0 (no Token Item), then DT with LI 0 and the PDU.
        assert gt == GiveTokens()
        assert isinstance(dt, DataTransfer)
        assert dt.enclosure is None
        assert len(dt.user_data) == length
        assert dt.user_data[:1] == b"\x61"  # presentation user data, fully encoded
        assert dt.user_data.endswith(tail)

    return check


def _finish(length: int) -> Callable[[tuple[SPDU, ...]], None]:
    def check(spdus: tuple[SPDU, ...]) -> None:
        (fn,) = spdus
        assert isinstance(fn, Finish)
        assert fn.transport_disconnect is None and fn.enclosure is None
        assert fn.user_data is not None and len(fn.user_data) == length

    return check


def _disconnect(length: int) -> Callable[[tuple[SPDU, ...]], None]:
    def check(spdus: tuple[SPDU, ...]) -> None:
        (dn,) = spdus
        assert isinstance(dn, Disconnect)
        assert dn.enclosure is None
        assert dn.user_data is not None and len(dn.user_data) == length

    return check


def _abort(spdus: tuple[SPDU, ...]) -> None:
    (ab,) = spdus
    assert isinstance(ab, Abort)
    assert ab.transport_disconnect == 0x0B
    assert AbortReason(ab.transport_disconnect) == (
        AbortReason.TRANSPORT_RELEASED | AbortReason.USER_ABORT | AbortReason.NO_REASON
    )
    assert ab.reflect is None and ab.enclosure is None
    assert ab.user_data is not None and len(ab.user_data) == 16  # `c1 10`
    assert ab.user_data[:1] == b"\xa0"  # presentation ARU-PPDU


#: name prefix -> check of the decoded SPDUs
EXPECTED: dict[str, Callable[[tuple[SPDU, ...]], None]] = {
    "CN SPDU": _connect,
    "AC SPDU": _accept,
    "GT+DT carrying MMS read request": _gt_dt(66),
    "GT+DT carrying MMS read response": _gt_dt(25, bytes.fromhex("08422a0000")),  # 42.5
    "GT+DT MMS conclude-request": _gt_dt(11, b"\x8b\x00"),
    "GT+DT MMS conclude-response": _gt_dt(11, b"\x8c\x00"),
    "FN SPDU": _finish(14),
    "DN SPDU": _disconnect(11),
    "AB SPDU": _abort,
    "FN sent BY the iec61850-rust server": _finish(0),  # `09 02 c1 00`: empty PGI 193
    "DN from iec61850-rust server": _disconnect(0),
}


def _check_for(name: str) -> Callable[[tuple[SPDU, ...]], None]:
    matches = [check for prefix, check in EXPECTED.items() if name.startswith(prefix)]
    assert len(matches) == 1, f"no single expectation for vector {name!r}"
    return matches[0]


def test_vectors_present() -> None:
    assert len(VECTORS) >= 14
    assert len(SESSION_FRAMES) == len(EXPECTED)


@pytest.mark.parametrize("vector", SESSION_FRAMES, ids=lambda v: f"{v['frame']}-{v['name'][:30]}")
def test_vector_decodes_and_reencodes(vector: dict[str, Any]) -> None:
    data = bytes.fromhex(vector["session"])
    spdus = decode_tsdu(data)
    _check_for(vector["name"])(spdus)
    assert encode_tsdu(*spdus) == data
    # The frames were sent under version 2; decoding with version-1 limits
    # must give the same SPDUs (none of them exceeds 512 octets of user data).
    assert decode_tsdu(data, version=1) == spdus


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: f"{v['frame']}-{v['name'][:30]}")
def test_vector_framing(vector: dict[str, Any]) -> None:
    """TPKT length and COTP: the TPKT covers header + TPDU; session frames ride in DT/EOT."""
    tpkt = bytes.fromhex(vector["tpkt"])
    cotp = bytes.fromhex(vector["cotp"])
    session = bytes.fromhex(vector["session"])
    assert tpkt[:2] == b"\x03\x00"
    assert int.from_bytes(tpkt[2:4], "big") == 4 + len(cotp) + len(session)
    if session:
        assert cotp == b"\x02\xf0\x80"
    from sessionlayer.transport import cotp as transport  # (ours: a plain import, no skip)
    tpdu = transport.decode_tpdu(cotp + session)
    assert transport.encode_tpdu(tpdu) == cotp + session
    if session:
        assert isinstance(tpdu, transport.Data) and tpdu.eot
        assert tpdu.user_data == session


@pytest.mark.parametrize("name", ["libiec61850-read.pcapng", "libiec61850-abort.pcapng"])
def test_captures_decode(name: str) -> None:
    """Every TSDU in the two captures decodes, and re-encodes to the captured octets."""
    from sessionlayer import capture
    from sessionlayer.transport import cotp, tpkt
    kinds: list[str] = []
    for stream in capture.read_tcp_streams(vectors_dir() / name):
        for payload in tpkt.TpktParser().feed(stream.data):
            tpdu = cotp.decode_tpdu(payload)
            if not isinstance(tpdu, cotp.Data) or not tpdu.user_data:
                continue
            assert tpdu.eot  # these peers never split a TSDU over DTs this small
            spdus = decode_tsdu(tpdu.user_data)
            assert encode_tsdu(*spdus) == tpdu.user_data
            kinds.append("+".join(s.kind for s in spdus))
    assert kinds.count("CN") == 1 and kinds.count("AC") == 1
    assert "GT+DT" in kinds
    assert ("AB" in kinds) == (name == "libiec61850-abort.pcapng")
