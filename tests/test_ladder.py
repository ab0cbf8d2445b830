"""The ladder diagram (sessionlayer.ladder): fed real octets -- SPDUs built by the codec in
real TPKT/COTP framing, and a real session over loopback -- it names each SPDU's X.215
service, collapses data runs, shows the notes, and its SVG parses with one arrow per SPDU.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.recovery.helpers import FAST, cut, next_of

import sessionlayer
from sessionlayer.agent.hello import Hello, Rejection, Welcome
from sessionlayer.dissect import StreamDissector
from sessionlayer.ladder import Arrow, Interleaved, Ladder, Note, TransportLine
from sessionlayer.recovery.journal import ACK_MARK
from sessionlayer.spdu import SPDU, Token, encode_tsdu
from sessionlayer.spdu import FunctionalUnit as FU
from sessionlayer.spdu import types as t
from sessionlayer.transport import (
    DT_EOT_HEADER,
    ConnectionConfirm,
    ConnectionRequest,
    DisconnectRequest,
    ExpeditedData,
    encode_tpdu,
    encode_tpkt,
    segment_tsdu,
)
from sessionlayer.transport import Error as TransportError

SVG = "{http://www.w3.org/2000/svg}"
SRC = str(Path(__file__).resolve().parents[1] / "src")
UNITS = FU.DUPLEX | FU.MAJOR_SYNC | FU.ACTIVITY | FU.RESYNC | FU.SYMMETRIC_SYNC | FU.EXPEDITED
GT = t.GiveTokens()
PT = t.PleaseTokens()
CID = t.ConnectionId(common_ref=bytes(range(16)))


# ------------------------------------------------------------------ octets on the wire


def tsdu(*spdus: SPDU, tpdu_size: int = 8192) -> bytes:
    """One TSDU in COTP DT TPDUs of at most ``tpdu_size`` octets, each in a TPKT."""
    raw = encode_tsdu(*spdus)
    return b"".join(encode_tpkt(tpdu) for tpdu in segment_tsdu(raw, tpdu_size))


def tpkt_dt(raw: bytes) -> bytes:
    """Raw octets as one TSDU in one DT (for malformed SPDUs)."""
    return encode_tpkt(DT_EOT_HEADER + raw)


def expedited(spdu: SPDU) -> bytes:
    return encode_tpkt(encode_tpdu(ExpeditedData(encode_tsdu(spdu))))


def cr() -> bytes:
    return encode_tpkt(encode_tpdu(ConnectionRequest(src_ref=1, tpdu_size=0x0D)))


def cc() -> bytes:
    return encode_tpkt(encode_tpdu(ConnectionConfirm(dst_ref=1, src_ref=2, tpdu_size=0x0D)))


def connect_spdu(hello: Hello) -> t.Connect:
    item = t.ConnectAcceptItem(protocol_options=0, version=3, initial_serial=0)
    return t.Connect(connection_id=CID, item=item, requirements=int(UNITS),
                     user_data=hello.encode())  # fmt: skip


def accept_spdu(welcome: Welcome) -> t.Accept:
    item = t.ConnectAcceptItem(protocol_options=0, version=2, initial_serial=0)
    return t.Accept(connection_id=CID, item=item, requirements=int(UNITS),
                    user_data=welcome.encode())  # fmt: skip


SID = "0f" * 16
TOKEN = f"{SID}.1.{'ab' * 16}"


class Script:
    """A scripted client/server exchange: (direction, octets, time) steps, and the notes."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, Any, float]] = []
        self.now = 100.0
        self.checkpoint = 0  #: the serial number of the last major sync point

    def send(self, direction: str, octets: bytes) -> None:
        self.now += 0.001
        self.steps.append((direction, octets, self.now))

    def note(self, text: str, kind: str) -> None:
        self.now += 0.001
        self.steps.append(("note", (text, kind), self.now))

    def new_connection(self, label: str) -> None:
        self.now += 0.001
        self.steps.append(("new", label, self.now))

    def octets(self, direction: str) -> list[bytes]:
        return [data for d, data, _ in self.steps if d == direction]

    def feed(self, ladder: Ladder, rng: random.Random | None = None) -> None:
        """Into the ladder, each step's octets cut at random points when ``rng`` is given."""
        for direction, data, at in self.steps:
            if direction == "note":
                ladder.note(data[0], at, kind=data[1])
            elif direction == "new":
                ladder.new_connection(at, data)
            else:
                for chunk in cuts(data, rng):
                    ladder.wire(direction, chunk, at)


def cuts(data: bytes, rng: random.Random | None) -> Iterator[bytes]:
    if rng is None:
        yield data
        return
    pos = 0
    while pos < len(data):
        step = rng.randint(1, 300)
        yield data[pos : pos + step]
        pos += step


def spdus_in(script: Script) -> int:
    """The SPDUs in the script's octets, counted by an independent dissector per stream."""
    total = 0
    streams: list[dict[str, bytearray]] = [{"out": bytearray(), "in": bytearray()}]
    for direction, data, _ in script.steps:
        if direction == "new":
            streams.append({"out": bytearray(), "in": bytearray()})
        elif direction != "note":
            streams[-1][direction] += data
    for stream in streams:
        for octets in stream.values():
            records = StreamDissector().feed(bytes(octets))
            assert not [r.error for r in records if r.error]
            total += sum(1 for r in records if r.spdu is not None)
    return total


def file_transfer(messages: int = 600, size: int = 60_000, ack_every: int = 17) -> Script:
    """Connect, an activity with checkpoints, a cut, a restart, a resume from the
    checkpoint, the end of the activity, release: what `make demo` shows."""
    s = Script()
    payload = bytes(size)
    s.new_connection("127.0.0.1:10102")
    s.send("out", cr())
    s.send("in", cc())
    s.send("out", tsdu(connect_spdu(Hello(offers={"codec": ["cbor", "json"]}, recovery=True))))
    s.send("in", tsdu(accept_spdu(Welcome(chosen={"codec": "json"}, session_id=SID,
                                          token=TOKEN))))  # fmt: skip
    s.send("in", tsdu(t.GiveTokens(tokens=Token.MAJOR_ACTIVITY)))
    s.send("out", tsdu(GT, t.ActivityStart(activity_id=b"file1")))
    serial = 0
    for n in range(messages):
        s.send("out", tsdu(GT, t.DataTransfer(user_data=payload)))
        if n % ack_every == ack_every - 1:
            serial += 1
            s.send("out", tsdu(GT, t.MinorSyncPoint(serial_number=serial, user_data=ACK_MARK)))
            s.send("in", tsdu(PT, t.MinorSyncAck(serial_number=serial)))
        if n == messages // 2:
            serial += 1
            s.send("out", tsdu(GT, t.MajorSyncPoint(serial_number=serial, user_data=b"300")))
            s.send("in", expedited(t.Prepare(prepare_type=1)))
            s.send("in", tsdu(PT, t.MajorSyncAck(serial_number=serial)))
            s.note(f"checkpoint {serial} confirmed", "checkpoint")
            s.checkpoint = serial
    s.note("connection cut", "fault")
    s.note("server killed and restarted", "fault")
    s.new_connection("reconnect")
    s.send("out", cr())
    s.send("in", cc())
    s.send("out", tsdu(connect_spdu(Hello(offers={"codec": ["cbor", "json"]}, recovery=True,
                                          resume=TOKEN, recv=12))))  # fmt: skip
    cp = s.checkpoint
    s.send("in", tsdu(accept_spdu(Welcome(chosen={"codec": "json"}, session_id=SID,
                                          token=TOKEN, resumed="checkpoint", recv=0,
                                          checkpoint=(cp, b"300")))))  # fmt: skip
    s.note(f"resumed from checkpoint {cp}: 12 messages replayed", "recovery")
    linking = t.LinkingInformation(common_ref=CID.common_ref, old_activity_id=b"file1",
                                   serial_number=cp)  # fmt: skip
    s.send("out", tsdu(GT, t.ActivityResume(linking=linking, activity_id=b"file2")))
    for _ in range(5):
        s.send("out", tsdu(GT, t.DataTransfer(user_data=b"rest")))
    s.send("out", tsdu(GT, t.ActivityEnd(serial_number=cp + 1)))
    s.send("in", tsdu(PT, t.MajorSyncAck(serial_number=cp + 1)))  # AEA on the wire
    s.send("out", tsdu(t.Finish()))
    s.send("in", tsdu(t.Disconnect()))
    return s


@pytest.fixture(scope="module")
def transfer() -> tuple[Script, Ladder]:
    script = file_transfer()
    ladder = Ladder()
    script.feed(ladder, random.Random(1006))
    return script, ladder


def arrows_of(svg: str) -> list[ET.Element]:
    root = ET.fromstring(svg)
    return [g for g in root.iter(f"{SVG}g") if g.get("class") == "arrow"]


# ------------------------------------------------------------------ the text


def test_the_text_names_each_spdu_by_its_x215_service(transfer: tuple[Script, Ladder]) -> None:
    script, ladder = transfer
    text = ladder.render_text(width=260)  # wide: no detail is wrapped
    cp = script.checkpoint
    for label in (
        "T-CONNECT request  (COTP CR, class 0 · TPDU size 8192)",
        "T-CONNECT response  (COTP CC, class 0 · TPDU size 8192)",
        "CN  S-CONNECT request",
        "AC  S-CONNECT response (accept)",
        "GT  S-TOKEN-GIVE",
        "AS  S-ACTIVITY-START",
        "MAP  S-SYNC-MAJOR request",
        "PR  prepare",
        "MAA  S-SYNC-MAJOR response",
        "AR  S-ACTIVITY-RESUME",
        "AE  S-ACTIVITY-END request",
        "AEA  S-ACTIVITY-END response",
        "FN  S-RELEASE request",
        "DN  S-RELEASE response (affirmative)",
    ):
        assert label in text, label
    assert re.search(r"MIP x \d+  S-SYNC-MINOR request", text), text
    assert re.search(r"MIA x \d+  S-SYNC-MINOR response", text), text
    # The negotiation: functional units, versions, the hello and the welcome.
    for detail in ("FU proposed: duplex, expedited, symmetric sync, major sync, resync,"
                   " activity", "FU selected: duplex", "v1+v2", "v2 ·",
                   "offers codec=cbor|json", "asks for recovery", "welcome: codec=json",
                   "resume token", "recv=12", f'resumed from checkpoint {cp} "300"',
                   "tokens major/activity", 'activity "file1"',
                   f'resumes "file1" at sync point {cp}', 'ends activity "file2"',
                   f"GT+MAP · sync point {cp} (checkpoint)", f"checkpoint {cp} confirmed",
                   "MAA follows"):  # fmt: skip
        assert detail in text, detail
    for note in (
        "connection cut",
        "server killed and restarted",
        f"resumed from checkpoint {cp}: 12 messages replayed",
        "TCP connection 1: 127.0.0.1:10102",
        "TCP connection 2: reconnect",
    ):
        assert note in text, note
    connections = [r for r in ladder.rows() if isinstance(r, Note) and r.kind == "connection"]
    assert len(connections) == 2  # new_connection() then its CR: not a third one
    # In order: connect, activity, checkpoint, the cut, the resume, the end, the release.
    order = ["CN  S-CONNECT", "AS  S-ACTIVITY-START", "MAP  S-SYNC-MAJOR", "connection cut",
             "server killed", "CN  S-CONNECT", "AR  S-ACTIVITY-RESUME", "AE  S-ACTIVITY-END",
             "AEA  S-ACTIVITY-END", "FN  S-RELEASE", "DN  S-RELEASE"]  # fmt: skip
    pos = 0
    for label in order:
        pos = text.index(label, pos) + 1


def test_data_runs_collapse_and_keep_their_count(transfer: tuple[Script, Ladder]) -> None:
    _, ladder = transfer
    data = [r for r in ladder.rows() if isinstance(r, Arrow) and r.kind == "DT"]
    assert sum(r.count for r in data) == 605
    assert sum(r.folded for r in data) == 605 and {r.carrier for r in data} == {"GT"}
    assert len(data) <= 4  # before and after the checkpoint, and after the resume
    big = max(data, key=lambda r: r.count)
    assert big.count >= 300 and big.label.startswith(f"DT x {big.count}  S-DATA (")
    assert f"DT x {big.count}  S-DATA ({big.octets / 1e6:.1f} MB)" in ladder.render_text()
    # The acknowledgement points between them were summarized as one arrow per kind.
    assert any(isinstance(r, Interleaved) for r in ladder.rows())
    acks = [r for r in ladder.rows() if isinstance(r, Arrow) and r.kind == "MIP"]
    assert all(r.role == "ack" and r.interleaved for r in acks)
    assert "acknowledgement points (SLK1)" in ladder.render_text()


def test_lines_fit_the_width_and_plain_text_has_no_escape_codes(
    transfer: tuple[Script, Ladder],
) -> None:
    _, ladder = transfer
    for width in (60, 80, 132):
        text = ladder.render_text(width=width)
        assert "\x1b" not in text
        assert max(len(line) for line in text.splitlines()) <= width
    coloured = ladder.render_text(color=True)
    assert "\x1b[" in coloured
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == ladder.render_text()
    plain = ladder.render_text(ascii=True)
    assert plain.isascii() and "CN  S-CONNECT request" in plain


def test_the_text_does_not_depend_on_how_the_stream_was_cut() -> None:
    script = file_transfer(messages=40, size=9000, ack_every=7)
    whole, chunked, bytewise = Ladder(), Ladder(), Ladder()
    script.feed(whole)
    script.feed(chunked, random.Random(8327))
    for direction, data, at in script.steps:
        if direction == "note":
            bytewise.note(data[0], at, kind=data[1])
        elif direction == "new":
            bytewise.new_connection(at, data)
        else:
            for i in range(len(data)):
                bytewise.wire(direction, data[i : i + 1], at)
    assert whole.render_text() == chunked.render_text() == bytewise.render_text()
    assert whole.spdus == chunked.spdus == bytewise.spdus == spdus_in(script)


# ------------------------------------------------------------------ the SVG


def test_the_svg_parses_and_holds_one_arrow_per_spdu(transfer: tuple[Script, Ladder]) -> None:
    script, ladder = transfer
    svg = ladder.render_svg(title="a file over a session")
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    arrows = arrows_of(svg)
    fed = spdus_in(script)
    assert sum(int(g.get("data-spdus", "0")) for g in arrows) == fed == ladder.spdus
    assert int(root.get("data-spdus", "0")) == fed
    assert int(root.get("data-arrows", "0")) == len(arrows)
    for g in arrows:  # every arrow: its SPDU, its count, its endpoints and a shaft + head
        count, folded = int(g.get("data-count", "0")), int(g.get("data-folded", "0"))
        assert count >= 1 and int(g.get("data-spdus", "0")) == count + folded
        assert g.get("data-spdu") and g.get("data-service")
        assert {g.get("data-from"), g.get("data-to")} == {"client", "server"}
        assert g.find(f"{SVG}line") is not None and g.find(f"{SVG}polygon") is not None
    counts: dict[str, int] = {}
    for g in arrows:
        kind = g.get("data-spdu", "")
        counts[kind] = counts.get(kind, 0) + int(g.get("data-count", "0"))
    assert counts["DT"] == 605 and counts["AEA"] == 1 and counts["MAA"] == 1
    assert counts["CN"] == counts["AC"] == 2 and counts["FN"] == counts["DN"] == 1
    # Self-contained: no external reference, the style inline; the notes are bands.
    assert "href" not in svg and "url(" not in svg and "<style>" in svg
    notes = [g for g in root.iter(f"{SVG}g") if g.get("class") == "note"]
    assert {g.get("data-kind") for g in notes} >= {"fault", "recovery", "checkpoint"}
    transport = [g for g in root.iter(f"{SVG}g") if g.get("class") == "transport"]
    assert [g.get("data-tpdu") for g in transport] == ["CR", "CC", "CR", "CC"]
    assert "a file over a session" in svg and "DT x " in svg


def test_an_empty_ladder_renders() -> None:
    ladder = Ladder()
    assert "client" in ladder.render_text() and "server" in ladder.render_text()
    root = ET.fromstring(ladder.render_svg())
    assert root.get("data-spdus") == "0" and arrows_of(ladder.render_svg()) == []


# ------------------------------------------------------------------ what each SPDU says


def feed(ladder: Ladder, *steps: tuple[str, bytes]) -> None:
    for n, (direction, data) in enumerate(steps):
        ladder.wire(direction, data, float(n))


def arrows(ladder: Ladder) -> list[Arrow]:
    return [r for r in ladder.rows() if isinstance(r, Arrow)]


def test_a_reconnect_is_found_by_its_cotp_cr() -> None:
    """Through one trace callback (a resumed session): the CR starts a new connection."""
    ladder = Ladder()
    hello = Hello(offers={}, recovery=True)
    feed(ladder, ("out", cr()), ("in", cc()), ("out", tsdu(connect_spdu(hello))),
         ("in", tsdu(GT, t.DataTransfer(user_data=b"abc"))),
         ("out", cr()), ("in", cc()), ("out", tsdu(connect_spdu(hello))))  # fmt: skip
    rows = ladder.rows()
    assert [r.tpdu for r in rows if isinstance(r, TransportLine)] == ["CR", "CC", "CR", "CC"]
    notes = [r for r in rows if isinstance(r, Note)]
    assert [n.kind for n in notes] == ["connection"] and "TCP connection 2" in notes[0].text
    assert [a.kind for a in arrows(ladder)] == ["CN", "DT", "CN"]
    assert arrows(ladder)[1].label == "DT  S-DATA (3 octets)"


def test_a_libiec61850_mms_session_from_its_capture(libiec61850: list[dict[str, Any]]) -> None:
    """Peers that speak only X.225: their CN/AC user data is octets, not a hello."""
    ladder = Ladder()
    for n, vector in enumerate(libiec61850[:11]):
        octets = bytes.fromhex(vector["tpkt"] + vector["cotp"] + vector["session"])
        ladder.wire("out" if vector["dir"] == "C->S" else "in", octets, n * 0.01)
    labels = [f"{a.kind}  {a.service}" for a in arrows(ladder)]
    assert labels == [
        "CN  S-CONNECT request", "AC  S-CONNECT response (accept)",
        "DT  S-DATA", "DT  S-DATA", "DT  S-DATA", "DT  S-DATA",
        "FN  S-RELEASE request", "DN  S-RELEASE response (affirmative)", "AB  S-U-ABORT",
    ]  # fmt: skip
    cn, ac = arrows(ladder)[:2]
    assert "hello" not in cn.detail and "user data 1" in cn.detail  # octets, counted
    assert "FU proposed: duplex" in cn.detail and "FU selected: duplex" in ac.detail
    assert "user abort" in arrows(ladder)[-1].detail
    svg_arrows = arrows_of(ladder.render_svg())
    assert sum(int(g.get("data-spdus", "0")) for g in svg_arrows) == ladder.spdus == 13


# ------------------------------------------------------------------ a real session


def test_a_real_session_over_loopback() -> None:
    """connect(trace=...) feeds the ladder; its arrows are the SPDUs that crossed."""
    units = FU.DUPLEX | FU.MINOR_SYNC | FU.MAJOR_SYNC | FU.RESYNC | FU.ACTIVITY
    config = sessionlayer.SessionConfig(functional_units=units)
    ladder = Ladder()
    chunks: list[tuple[str, bytes]] = []
    ticks = iter(range(1_000_000))

    def trace(direction: str, data: bytes) -> None:
        chunks.append((direction, bytes(data)))
        ladder.wire(direction, data, next(ticks) / 1000)

    async def handler(session: sessionlayer.Session) -> None:
        async for _ in session:
            pass

    async def main() -> None:
        async with await sessionlayer.serve(handler, "127.0.0.1", 0, config=config,
                                            supported={"codec": ["json"]}) as server:  # fmt: skip
            session = await sessionlayer.connect(
                "127.0.0.1",
                server.port,
                config=config,
                offers={"codec": ["cbor", "json"]},
                trace=trace,
            )
            async with session.activity(b"file"):
                for _ in range(30):
                    await session.send(b"x" * 1000)
                await session.sync(major=True)
                await session.sync()
            ladder.note("activity over", next(ticks) / 1000, kind="checkpoint")
            await session.release()

    asyncio.run(asyncio.wait_for(main(), 20))
    kinds = [a.kind for a in arrows(ladder)]
    for kind in ("CN", "AC", "AS", "DT", "MAP", "MAA", "MIP", "MIA", "AE", "AEA", "FN", "DN"):
        assert kind in kinds, (kind, kinds)
    assert kinds.index("AE") < kinds.index("AEA") < kinds.index("FN")
    data = [a for a in arrows(ladder) if a.kind == "DT"]
    assert sum(a.count for a in data) == 30 and len(data) < 30  # collapsed
    text = ladder.render_text()
    assert "welcome: codec=json" in text and "DT x " in text and "activity over" in text
    fed = 0
    for direction in ("out", "in"):
        stream = b"".join(d for w, d in chunks if w == direction)
        fed += sum(1 for r in StreamDissector().feed(stream) if r.spdu is not None)
    assert sum(int(g.get("data-spdus", "0")) for g in arrows_of(ladder.render_svg())) == fed


# ------------------------------------------------------------------ each SPDU's label

CASES: list[tuple[str, list[tuple[str, bytes]], str, str]] = [
    (
        "refused by the user",
        [
            (
                "in",
                tsdu(
                    t.Refuse(reason=2, user_data=Rejection("no common codec", "refused").encode())
                ),
            )
        ],
        "RF  S-CONNECT response (refuse)",
        "rejected by the called SS-user · refused: no common",
    ),
    (
        "refused by the provider",
        [("in", tsdu(t.Refuse(reason=0x84)))],
        "RF  S-CONNECT confirm (refused by the SS-provider)",
        "proposed versions not supported",
    ),
    (
        "provider abort",
        [("in", tsdu(t.Abort(transport_disconnect=0x05)))],
        "AB  S-P-ABORT",
        "protocol error · transport released",
    ),
    (
        "user abort",
        [("out", tsdu(t.Abort(transport_disconnect=0x02, user_data=b"bye")))],
        "AB  S-U-ABORT",
        'user abort · transport kept · user data "bye"',
    ),
    ("abort accept", [("in", tsdu(t.AbortAccept()))], "AA  abort accept (no X.215 primitive)", ""),
    (
        "minor sync",
        [("out", tsdu(GT, t.MinorSyncPoint(sync_type=1, serial_number=4, user_data=b"mark")))],
        "MIP  S-SYNC-MINOR request",
        "GT+MIP · sync point 4 · no confirmation wanted · user data",
    ),
    (
        "resync",
        [
            ("out", tsdu(GT, t.Resynchronize(resync_type=1, serial_number=5))),
            ("in", tsdu(PT, t.ResynchronizeAck(serial_number=5))),
        ],
        "RS  S-RESYNCHRONIZE request|RA  S-RESYNCHRONIZE response",
        "abandon, sync point 5",
    ),
    (
        "interrupt",
        [
            ("out", tsdu(GT, t.ActivityInterrupt(reason=5))),
            ("in", tsdu(PT, t.ActivityInterruptAck())),
        ],
        "AI  S-ACTIVITY-INTERRUPT request|AIA  S-ACTIVITY-INTERRUPT response",
        "local SS-user error",
    ),
    (
        "discard",
        [("out", tsdu(GT, t.ActivityDiscard(reason=0))), ("in", tsdu(PT, t.ActivityDiscardAck()))],
        "AD  S-ACTIVITY-DISCARD request|ADA  S-ACTIVITY-DISCARD response",
        "no specific reason",
    ),
    (
        "exception data",
        [("in", tsdu(PT, t.ExceptionData(reason=3)))],
        "ED  S-U-EXCEPTION-REPORT",
        "user sequence error",
    ),
    (
        "exception report",
        [("in", tsdu(PT, t.ExceptionReport(reflect=b"\x01\x02")))],
        "ER  S-P-EXCEPTION-REPORT",
        "reflects 2 octets",
    ),
    (
        "expedited",
        [("out", expedited(t.Expedited(user_data=b"hi")))],
        "EX  S-EXPEDITED-DATA (2 octets)",
        "",
    ),
    (
        "typed data",
        [("out", tsdu(t.TypedData(user_data=b"abc")))],
        "TD  S-TYPED-DATA (3 octets)",
        "",
    ),
    (
        "capability data",
        [
            ("out", tsdu(GT, t.CapabilityData(user_data=b"c"))),
            ("in", tsdu(PT, t.CapabilityDataAck())),
        ],
        "CD  S-CAPABILITY-DATA request|CDA  S-CAPABILITY-DATA response",
        'GT+CD · user data "c"',
    ),
    (
        "give control",
        [("out", tsdu(t.GiveTokensConfirm())), ("in", tsdu(t.GiveTokensAck()))],
        "GTC  S-CONTROL-GIVE|GTA  S-CONTROL-GIVE acknowledged (no X.215 primitive)",
        "",
    ),
    (
        "release refused",
        [("out", tsdu(t.Finish(transport_disconnect=0))), ("in", tsdu(t.NotFinished()))],
        "FN  S-RELEASE request|NF  S-RELEASE response (negative)",
        "keep the transport",
    ),
    (
        "please tokens",
        [("in", tsdu(t.PleaseTokens(tokens=Token.DATA | Token.RELEASE)))],
        "PT  S-TOKEN-PLEASE",
        "tokens data, release",
    ),
    (
        "give tokens with data",
        [("out", tsdu(t.GiveTokens(tokens=Token.DATA), t.DataTransfer(user_data=b"z")))],
        "GT  S-TOKEN-GIVE|DT  S-DATA (1 octet)",
        "tokens data",
    ),
    (
        "keepalive",
        [("out", tsdu(PT)), ("in", tsdu(GT))],
        "PT  S-TOKEN-PLEASE (no tokens)|GT  S-TOKEN-GIVE (no tokens)",
        "keepalive probe",
    ),
    (
        "segment",
        [("out", tsdu(GT, t.DataTransfer(enclosure=1, user_data=b"1")))],
        "DT  S-DATA (1 octet)",
        "GT+DT · first segment of an SSDU",
    ),
    (
        "default units, no hello",
        [("out", tsdu(t.Connect(user_data=b"\x01\x02")))],
        "CN  S-CONNECT request",
        "FU proposed (default): half-duplex, capability data, minor",
    ),
    (
        "malformed hello",
        [("out", tsdu(t.Connect(user_data=b"SLH1{nope")))],
        "CN  S-CONNECT request",
        "malformed sessionlayer hello (9 octets)",
    ),
    (
        "rejection without the magic",
        [("in", tsdu(t.Refuse(reason=2, user_data=b"no")))],
        "RF  S-CONNECT response (refuse)",
        "user data 2 octets",
    ),
    (
        "AC with a token request",
        [("in", tsdu(t.Accept(tokens=Token.RELEASE, user_data=b"SLW1[]")))],
        "AC  S-CONNECT response (accept)",
        "asks for tokens: tokens release · malformed",
    ),
]


@pytest.mark.parametrize(("steps", "labels", "detail"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_each_spdu_names_its_service(steps: list[tuple[str, bytes]], labels: str,
                                     detail: str) -> None:  # fmt: skip
    ladder = Ladder()
    feed(ladder, *steps)
    assert [a.label for a in arrows(ladder)] == labels.split("|")
    assert detail in " · ".join(a.describe() for a in arrows(ladder))
    assert not [r for r in ladder.rows() if isinstance(r, Note)]
    svg = arrows_of(ladder.render_svg())
    assert sum(int(g.get("data-spdus", "0")) for g in svg) == ladder.spdus


def test_transport_disconnect_and_error_are_transport_lines() -> None:
    ladder = Ladder()
    feed(
        ladder,
        ("out", cr()),
        ("in", encode_tpkt(encode_tpdu(DisconnectRequest(reason=128)))),
        ("in", encode_tpkt(encode_tpdu(TransportError(dst_ref=1, cause=2)))),
    )
    lines = [r for r in ladder.rows() if isinstance(r, TransportLine)]
    assert [(r.tpdu, r.service) for r in lines] == [
        ("CR", "T-CONNECT request"), ("DR", "T-DISCONNECT request"), ("ER", "TPDU error"),
    ]  # fmt: skip
    assert lines[1].detail == "reason: normal" and ladder.spdus == 0
    assert "T-DISCONNECT request  (COTP DR, reason: normal)" in ladder.render_text()


def test_broken_streams_become_notes() -> None:
    ladder = Ladder()
    ladder.wire("in", tsdu(GT, t.DataTransfer(user_data=b"ok")), 0.0)
    ladder.wire("in", tpkt_dt(b"\x01\x00\x2d"), 0.1)  # GT, then an AS cut short
    ladder.wire("out", b"\x05\x00\x00\x07\x02\xf0\x80", 0.2)  # TPKT version 5
    ladder.wire("out", tsdu(t.Finish()), 0.3)  # framing lost: ignored
    ladder.wire("in", tsdu(t.Finish())[:5], 0.4)
    ladder.finish(0.5)
    notes = [r for r in ladder.rows() if isinstance(r, Note)]
    assert [n.kind for n in notes] == ["error", "error", "info"]
    assert "malformed SPDU" in notes[0].text and "bad TPKT framing" in notes[1].text
    assert "from the server: stream ends inside a TPKT" in notes[2].text
    assert [a.kind for a in arrows(ladder)] == ["DT"] and ladder.spdus == 2  # GT+DT


def test_alternating_data_keeps_its_order_unless_it_alternates_too_often() -> None:
    steps = [("out", tsdu(GT, t.DataTransfer(user_data=b"ping"))),
             ("in", tsdu(GT, t.DataTransfer(user_data=b"PING")))] * 3  # fmt: skip
    ladder = Ladder()
    feed(ladder, *steps)
    assert [a.sender for a in arrows(ladder)] == ["client", "server"] * 3
    summarized = Ladder(max_runs=4)
    feed(summarized, *steps)
    rows = summarized.rows()
    assert isinstance(rows[0], Interleaved) and rows[0].spdus == 12
    assert [(a.sender, a.count) for a in arrows(summarized)] == [("client", 3), ("server", 3)]
    assert "interleaved: 12 SPDUs" in summarized.render_text()
    g = arrows_of(summarized.render_svg())
    assert [x.get("data-interleaved") for x in g] == ["1", "1"]
    assert sum(int(x.get("data-spdus", "0")) for x in g) == 12


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="direction"):
        Ladder().wire("sideways", b"", 0.0)
    with pytest.raises(ValueError, match="max_runs"):
        Ladder(max_runs=0)


def test_hostile_strings_stay_printable_and_the_svg_parses() -> None:
    hello = Hello(offers={"co\x00dec\x1b[31m": ["\ud800", "json\x07"]})
    ladder = Ladder(client="cli\x00ent")
    feed(ladder, ("out", tsdu(connect_spdu(hello))))
    ladder.note("cut <here> & \x01 there", 1.0, kind='fault" onload="x')
    text = ladder.render_text()
    assert not [c for c in text if not c.isprintable() and c != "\n"]
    root = ET.fromstring(ladder.render_svg(title="<a & b>"))
    notes = [g for g in root.iter(f"{SVG}g") if g.get("class") == "note"]
    assert notes[0].get("data-style") == "info"  # an unknown kind: drawn as info
    assert "cut <here> & ? there" in "".join(notes[0].itertext())


def test_the_ladder_is_sans_io() -> None:
    """Importing it loads no event loop and no socket (ruff bans them in ladder.py too)."""
    code = (
        "import sys, sessionlayer.ladder; print(sorted({'asyncio', 'socket'} & set(sys.modules)))"
    )
    # (without the coverage measurement of subprocesses, which loads modules of its own)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE")}
    env["PYTHONPATH"] = SRC
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=env,
    )
    assert done.stdout.strip() == "[]"


def test_a_real_resume_is_found_by_its_cotp_cr() -> None:
    """A resumable session whose connection is reset: the reconnect comes through the same
    trace callback, and the ladder starts the second connection at its CR by itself."""
    ladder = Ladder()
    streams: list[dict[str, bytearray]] = [{"out": bytearray(), "in": bytearray()}]
    ticks = iter(range(1_000_000))

    def trace(direction: str, data: bytes) -> None:
        streams[-1][direction] += data
        ladder.wire(direction, data, next(ticks) / 1000)

    async def main() -> None:
        got: list[bytes] = []

        async def handler(session: sessionlayer.Session) -> None:
            async for data in session:
                got.append(data)

        async with await sessionlayer.serve(handler, options=FAST) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port, options=FAST, trace=trace)
            for n in range(10):
                await client.send(b"m%d" % n)
            await client.sync(major=True)
            ladder.note("connection cut", next(ticks) / 1000, kind="fault")
            cut(client)
            streams.append({"out": bytearray(), "in": bytearray()})
            for n in range(10, 20):
                await client.send(b"m%d" % n)
            resumed = await next_of(client, sessionlayer.Resumed)
            ladder.note(f"resumed: {resumed.replayed_messages} messages replayed",
                        next(ticks) / 1000, kind="recovery")  # fmt: skip
            async with asyncio.timeout(20):
                while len(got) < 20:
                    await asyncio.sleep(0.01)
            await client.release()

    asyncio.run(asyncio.wait_for(main(), 60))
    rows = ladder.rows()
    connections = [r.text for r in rows if isinstance(r, Note) and r.kind == "connection"]
    assert connections == ["TCP connection 2: reconnect (COTP CR on a new TCP stream)"]
    cn = [a for a in arrows(ladder) if a.kind == "CN"]
    ac = [a for a in arrows(ladder) if a.kind == "AC"]
    assert len(cn) == len(ac) == 2
    assert "resume token" in cn[1].detail and "recv=0" in cn[1].detail
    assert "resumed in place" in ac[1].detail and "recv=" in ac[1].detail
    text = ladder.render_text(width=200)
    assert text.index("connection cut") < text.index("TCP connection 2") < text.index("resumed:")
    fed = sum(
        sum(1 for r in StreamDissector().feed(bytes(octets)) if r.spdu is not None)
        for stream in streams
        for octets in stream.values()
    )
    assert sum(int(g.get("data-spdus", "0")) for g in arrows_of(ladder.render_svg())) == fed
