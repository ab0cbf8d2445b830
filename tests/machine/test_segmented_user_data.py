"""FN, DN, NF, GT, PT and AB with more user data than an agreed TSDU maximum size holds.

X.225 version 2 gives each of them an Enclosure Item (ISODE's SPDU table; a version-2 PICS
proforma lists it, "if segmentation", for every SPDU with user data, and "segmentation of
unlimited user data" as a mechanism of its own), so once a size is agreed they are sent as
several SPDUs of the same kind, as DT already was: no TSDU over the agreed size, and the
peer indicates the whole SSDU once.  Two machines against each other, and one capture read
by Debian's tshark.
"""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.machine.helpers import BASIC, SessionPair, decode
from tests.spdu.helpers import tpkt_dt
from tests.tools import require_tshark

from sessionlayer.capture import Direction, write_pcap
from sessionlayer.errors import AbortReason
from sessionlayer.machine import (
    DataIndication,
    Event,
    ProviderAbortIndication,
    ReleaseConfirm,
    ReleaseIndication,
    SessionConfig,
    TokenGiveIndication,
    TokenPleaseIndication,
    UserAbortIndication,
)
from sessionlayer.spdu import (
    Abort,
    DataTransfer,
    GiveTokens,
    Token,
    encode_tsdu,
)

LIMIT = 256
WARNING = 6291456  # _ws.expert.severity of "Warning"
CONFIG = SessionConfig(functional_units=BASIC, tsdu_max_send=LIMIT, tsdu_max_receive=LIMIT)
BIG = bytes(range(256)) * 4  # 1024 octets: five segments of at most 256


def pair() -> SessionPair:
    p = SessionPair(CONFIG)
    p.connect()
    assert p.init.tsdu_max_send == p.resp.tsdu_max_send == LIMIT
    p.wire.clear()
    return p


def fn(p: SessionPair, data: bytes) -> None:
    p.init.release(data)


def released(p: SessionPair) -> None:
    p.init.release()
    p.pump()
    p.wire.clear()


def dn(p: SessionPair, data: bytes) -> None:
    released(p)
    p.resp.release_response(True, data, now=0.0)


def nf(p: SessionPair, data: bytes) -> None:
    released(p)
    p.resp.release_response(False, data, now=0.0)


def gt(p: SessionPair, data: bytes) -> None:
    p.init.give_tokens(Token.DATA, data)


def pt(p: SessionPair, data: bytes) -> None:
    p.resp.please_tokens(Token.DATA, data)


def ab(p: SessionPair, data: bytes) -> None:
    p.init.abort(data, now=0.0)


#: name: (the request, the side that sends it, what the other side indicates for ``data``)
CASES: dict[str, tuple[Callable[[SessionPair, bytes], None], str, Callable[[bytes], Event]]] = {
    "FN": (fn, "i->r", ReleaseIndication),
    "DN": (dn, "r->i", lambda data: ReleaseConfirm(True, data)),
    "NF": (nf, "r->i", lambda data: ReleaseConfirm(False, data)),
    "GT": (gt, "i->r", lambda data: TokenGiveIndication(Token.DATA, data)),
    "PT": (pt, "r->i", lambda data: TokenPleaseIndication(Token.DATA, data)),
    "AB": (ab, "i->r", UserAbortIndication),
}


def sent_by(p: SessionPair, name: str, data: bytes) -> tuple[list[bytes], list[Event]]:
    """Make the ``name`` request with ``data``: the TSDUs it put on the wire, and what the
    other side indicated."""
    request, direction, _ = CASES[name]
    request(p, data)
    events = p.pump()
    receiver = "resp" if direction == "i->r" else "init"
    return [tsdu for d, tsdu in p.wire if d == direction], events[receiver]


@pytest.mark.parametrize("name", list(CASES))
def test_user_data_over_the_agreed_size_is_segmented(name: str) -> None:
    sent, indicated = sent_by(pair(), name, BIG)
    assert len(sent) == 5, [len(t) for t in sent]
    assert all(len(tsdu) <= LIMIT for tsdu in sent), [len(t) for t in sent]
    spdus = [decode(tsdu) for tsdu in sent]
    assert all(len(s) == 1 and s[0].kind == name for s in spdus), spdus
    assert [getattr(s[0], "enclosure", None) for s in spdus] == [1, 0, 0, 0, 2]
    assert b"".join(getattr(s[0], "user_data", b"") for s in spdus) == BIG
    assert indicated == [CASES[name][2](BIG)]


@pytest.mark.parametrize("name", list(CASES))
def test_user_data_that_fits_goes_unsegmented(name: str) -> None:
    sent, indicated = sent_by(pair(), name, b"u" * 200)
    ((spdu,),) = [decode(tsdu) for tsdu in sent]
    assert spdu.kind == name and getattr(spdu, "enclosure", None) is None
    assert indicated == [CASES[name][2](b"u" * 200)]


def test_the_first_gt_segment_carries_the_token_item_the_others_none() -> None:
    p = pair()
    p.init.give_tokens(Token.DATA | Token.MINOR_SYNC, BIG)
    segments = [decode(tsdu)[0] for tsdu in p.init.data_to_send()]
    assert [s.tokens for s in segments] == [int(Token.DATA | Token.MINOR_SYNC)] + [None] * 4
    for tsdu in (encode_tsdu(s, version=2) for s in segments):
        p.resp.receive_tsdu(tsdu, now=0.0)
    assert p.resp.events() == [TokenGiveIndication(Token.DATA | Token.MINOR_SYNC, BIG)]
    assert p.resp.tokens_owned & Token.DATA


def test_a_segmented_gt_without_a_token_item_is_still_a_protocol_error() -> None:
    p = pair()
    first = GiveTokens(enclosure=1, user_data=b"a" * 100)
    last = GiveTokens(enclosure=2, user_data=b"b" * 100)
    for spdu in (first, last):
        p.resp.receive_tsdu(encode_tsdu(spdu, version=2), now=0.0)
    (event,) = p.resp.events()
    assert isinstance(event, ProviderAbortIndication)
    assert "no Token Item" in event.message
    assert p.resp.state == "STA16"


def test_a_segmented_abort_cuts_a_segmented_ssdu_short() -> None:
    p = pair()
    dt = DataTransfer(enclosure=1, user_data=b"d" * 100)
    p.resp.receive_tsdu(encode_tsdu(GiveTokens(), dt, version=2), now=0.0)
    reason = int(AbortReason.TRANSPORT_RELEASED | AbortReason.USER_ABORT)
    for enclosure, data in ((1, b"x" * 100), (2, b"y" * 100)):
        abort = Abort(transport_disconnect=reason if enclosure == 1 else None,
                      enclosure=enclosure, user_data=data)  # fmt: skip
        p.resp.receive_tsdu(encode_tsdu(abort, version=2), now=0.0)
    assert p.resp.events() == [UserAbortIndication(b"x" * 100 + b"y" * 100)]
    assert p.resp.is_closed


def test_data_after_a_segmented_token_give_still_flows() -> None:
    p = pair()
    p.init.give_tokens(Token.DATA, BIG)
    p.pump()
    p.resp.send_data(BIG)
    assert p.pump()["init"] == [DataIndication(BIG)]


def test_tshark_reads_the_segmented_spdus(tmp_path: Path) -> None:
    tshark = require_tshark()
    wire: list[tuple[Direction, bytes]] = []
    expected: list[int] = []
    for name in CASES:
        sent, _ = sent_by(pair(), name, BIG)
        direction: Direction = "C->S" if CASES[name][1] == "i->r" else "S->C"
        wire += [(direction, tpkt_dt(tsdu)) for tsdu in sent]
        expected += [decode(tsdu)[0].si for tsdu in sent]
    path = tmp_path / "segmented.pcap"
    write_pcap(path, wire)
    command = [tshark, "-n", "-r", str(path), "-d", "tcp.port==102,tpkt", "-T", "pdml",
               "--disable-protocol", "pres", "-o", "ses.desegment:FALSE"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    seen: list[int] = []
    for packet in ET.fromstring(done.stdout).iter("packet"):
        names = [proto.get("name") for proto in packet.iter("proto")]
        assert "_ws.malformed" not in names, names
        severities = [int(f.get("show", "0")) for f in packet.iter("field")
                      if f.get("name") == "_ws.expert.severity"]  # fmt: skip
        assert max(severities, default=0) < WARNING, names
        seen += [int(f.get("show", "-1")) for f in packet.iter("field")
                 if f.get("name") == "ses.type"]  # fmt: skip
    assert seen == expected
