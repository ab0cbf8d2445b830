"""A ladder (sequence) diagram of a session's SPDUs, as terminal text and as SVG.

Feed it what a client's ``connect(trace=...)`` callback sees -- ``("out" | "in", bytes)``
chunks of the TCP stream, cut anywhere -- and the events that are not SPDUs (a cut, a
server restart, a resume), each with the time it happened::

    ladder = Ladder()
    session = await connect(host, port, trace=lambda d, b: ladder.wire(d, b, loop.time()))
    ...
    ladder.note("connection cut", loop.time(), kind="fault")
    ...
    print(ladder.render_text(color=sys.stdout.isatty()))
    path.write_text(ladder.render_svg())

Pure: no sockets, no files, no clock (every time is passed in, in seconds; the diagram
shows them relative to the first one).  "out" is client -> server, "in" server -> client.

What becomes what
-----------------
* Each SPDU is an arrow between the two lifelines, labelled with its X.225 abbreviation
  and the X.215 service it carries, with the primitive for the confirmed services
  (``CN  S-CONNECT request``, ``AC  S-CONNECT response (accept)``, ``MAP  S-SYNC-MAJOR
  request``, ``DT  S-DATA (5 octets)``), and a short detail line: functional units,
  versions and the sessionlayer hello / welcome (codec, resume token, ``recv=N``) of a
  CN/AC, serial numbers, activity ids, tokens, reasons, user data sizes.
* An empty GIVE TOKENS or PLEASE TOKENS that only carries a category-2 SPDU in the same
  TSDU (basic concatenation: GT+DT, GT+MAP, PT+MAA) is shown as part of that SPDU's
  arrow (``GT+DT`` in the detail), not as an arrow of its own.
* SI 42 is both MAA and AEA on the wire: after an AE it is shown as AEA.
* COTP CR/CC/DR/ER are thin transport lines (``T-CONNECT request``), not session arrows;
  COTP DT/ED only carry SPDUs and are not shown.
* Runs are collapsed so that a transfer stays readable: consecutive S-DATA from one side
  become one arrow ``DT x 512  S-DATA (33.5 MB)``; so do the acknowledgement points of a
  resumable session (MIP ``SLK1`` and their MIA) and keepalive probes.  When such a data
  phase (nothing else between its SPDUs: no other SPDU, note or transport line) still
  alternates more than ``max_runs`` times, it is summarized as one arrow per kind and
  direction under an "interleaved" row.
* A new TCP connection starts fresh stream dissectors: :meth:`Ladder.new_connection`, or
  by itself when the client writes a COTP CR on a connection that already carried data
  (a resumed session reconnecting through the same trace callback).

The SVG, for checking
---------------------
:meth:`Ladder.render_svg` is one self-contained ``<svg>`` (inline style, no external
resource) that :mod:`xml.etree.ElementTree` parses.  Every SPDU arrow is one element
``<g class="arrow" ...>`` with these attributes:

``data-spdu``
    the SPDU's abbreviation (``"DT"``, ``"MAP"``, ``"AEA"``);
``data-count``
    how many SPDUs of that kind the arrow stands for (1, or N for a collapsed run);
``data-folded``
    how many empty GT/PT were shown as part of it (see above; 0 when none);
``data-spdus``
    ``data-count + data-folded``: every SPDU decoded is counted by exactly one arrow, so
    the sum of ``data-spdus`` over the arrows is the number of SPDUs fed (also on the root
    element as ``data-spdus``, and :attr:`Ladder.spdus`);
``data-from`` / ``data-to``
    ``"client"`` / ``"server"``; ``data-service``: the X.215 label.

Transport lines are ``<g class="transport" data-tpdu="CR">``, notes ``<g class="note"
data-kind="fault">``.
"""

from __future__ import annotations

import dataclasses
import html
import textwrap
from dataclasses import dataclass
from typing import Literal, TypeAlias

from .agent.hello import Hello, Rejection, Welcome, is_hello, is_rejection, is_welcome
from .dissect import Record, StreamDissector
from .errors import DecodeError
from .recovery.journal import ACK_MARK
from .spdu import types as t
from .spdu.codes import DEFAULT_REQUIREMENTS, FunctionalUnit, PrepareType, Token
from .transport import (
    DEFAULT_MAX_TSDU_SIZE,
    ConnectionConfirm,
    ConnectionRequest,
    Data,
    DisconnectReason,
    DisconnectRequest,
    ExpeditedData,
)
from .transport import Error as TransportError

__all__ = ["Ladder", "Arrow", "TransportLine", "Note", "Interleaved", "Row", "NOTE_KINDS"]

Direction: TypeAlias = Literal["out", "in"]
Side: TypeAlias = Literal["client", "server"]

#: The note kinds with a style of their own (any other string is drawn as "info").
NOTE_KINDS = ("info", "fault", "recovery", "checkpoint", "connection", "error")

#: The roles of the SPDUs that runs collapse (every other SPDU has the role "").
_BACKGROUND = frozenset({"data", "ack", "ack-reply", "keepalive"})


# ------------------------------------------------------------------ rows


@dataclass
class Arrow:
    """One SPDU arrow, or a collapsed run of SPDUs of one kind from one side."""

    at: float  #: time of the first SPDU
    sender: Side
    kind: str  #: X.225 abbreviation: "DT", "MAP", "AEA"
    service: str  #: X.215 service and primitive: "S-SYNC-MAJOR request"
    detail: str = ""  #: for one SPDU; a run describes itself (:meth:`describe`)
    count: int = 1  #: SPDUs of this kind it stands for
    folded: int = 0  #: empty GT/PT shown as part of it (basic concatenation)
    carrier: str = ""  #: the kind of those ("GT", "PT")
    octets: int = 0  #: user information / user data octets, in all
    smallest: int = 0
    largest: int = 0
    until: float = 0.0  #: time of the last SPDU
    connection: int = 1
    role: str = ""  #: "data", "ack", "ack-reply", "keepalive": what runs collapse
    serials: tuple[int, int] | None = None  #: first and last serial number
    interleaved: bool = False  #: summarized from an interleaved data phase
    sized: bool = False  #: the label shows the size (DT, TD, EX)

    @property
    def receiver(self) -> Side:
        return "server" if self.sender == "client" else "client"

    @property
    def spdus(self) -> int:
        """Every SPDU this arrow accounts for: ``count + folded``."""
        return self.count + self.folded

    @property
    def label(self) -> str:
        """``DT x 512  S-DATA (33.5 MB)``, ``MAP  S-SYNC-MAJOR request``."""
        name = self.kind if self.count == 1 else f"{self.kind} x {self.count}"
        size = f" ({_size(self.octets)})" if self.sized else ""
        return f"{name}  {self.service}{size}"

    def describe(self) -> str:
        """The detail line: the SPDU's own, or what the run adds up to."""
        if self.count == 1:
            return self.detail
        parts: list[str] = []
        if self.carrier:
            parts.append(f"each {self.carrier}+{self.kind}")
        if self.role == "ack":
            parts.append("acknowledgement points (SLK1)")
        elif self.role == "ack-reply":
            parts.append("confirm the acknowledgement points")
        elif self.role == "keepalive":
            parts.append(self.detail)
        if self.serials is not None:
            first, last = self.serials
            parts.append(f"sync points {first}..{last}" if first != last else f"sync point {first}")
        if self.sized:
            if self.smallest == self.largest:
                parts.append(f"{_octets(self.smallest)} each")
            else:
                parts.append(f"{_octets(self.smallest)} to {_octets(self.largest)}")
        parts.append(f"over {self.until - self.at:.3f} s")
        return " · ".join(p for p in parts if p)


def _key(arrow: Arrow) -> tuple[str, str, str]:
    """What a run collapses by: the sender, the SPDU and its role."""
    return (arrow.sender, arrow.kind, arrow.role)


def _absorb(run: Arrow, other: Arrow) -> None:
    """Add ``other`` (later) to the run ``run``."""
    run.count += other.count
    run.folded += other.folded
    run.carrier = run.carrier or other.carrier
    run.octets += other.octets
    run.smallest = min(run.smallest, other.smallest)
    run.largest = max(run.largest, other.largest)
    run.until = other.until
    if other.serials is not None:
        first = run.serials[0] if run.serials is not None else other.serials[0]
        run.serials = (first, other.serials[1])


@dataclass
class TransportLine:
    """A COTP connection TPDU (CR, CC, DR, ER): a thin line, not a session arrow."""

    at: float
    sender: Side
    tpdu: str  #: "CR", "CC", "DR", "ER"
    service: str  #: "T-CONNECT request"
    detail: str
    connection: int

    @property
    def label(self) -> str:
        return f"{self.service}  (COTP {self.tpdu})"


@dataclass
class Note:
    """An event that is not an SPDU: a full-width band."""

    at: float
    text: str
    kind: str = "info"
    connection: int = 0


@dataclass
class Interleaved:
    """Heads the arrows summarized from a data phase whose runs alternated."""

    at: float
    until: float
    spdus: int
    connection: int

    @property
    def text(self) -> str:
        return f"interleaved: {self.spdus} SPDUs in {self.until - self.at:.3f} s, by kind"


Row: TypeAlias = Arrow | TransportLine | Note | Interleaved


class _Phase:
    """Consecutive background SPDUs (data, acknowledgement points, keepalive)."""

    def __init__(self, max_runs: int) -> None:
        self.max_runs = max_runs
        self.runs: list[Arrow] | None = []  #: None once there are too many: groups only
        self.groups: dict[tuple[str, str, str], Arrow] = {}
        self.spdus = 0
        self.at = 0.0
        self.until = 0.0

    def add(self, arrow: Arrow) -> None:
        if not self.spdus:
            self.at = arrow.at
        self.spdus += arrow.spdus
        self.until = arrow.until
        key = _key(arrow)
        group = self.groups.get(key)
        if group is None:
            self.groups[key] = dataclasses.replace(arrow, interleaved=True)
        else:
            _absorb(group, arrow)
        if self.runs is not None:
            if self.runs and _key(self.runs[-1]) == key:
                _absorb(self.runs[-1], arrow)
            elif len(self.runs) < self.max_runs:
                self.runs.append(dataclasses.replace(arrow))
            else:
                self.runs = None

    def rows(self) -> list[Row]:
        if self.runs is not None:
            return list(self.runs)
        first = next(iter(self.groups.values()))
        head = Interleaved(self.at, self.until, self.spdus, first.connection)
        return [head, *self.groups.values()]


class _Connection:
    """One TCP connection: a dissector per direction and what the SPDUs left pending."""

    def __init__(self, number: int, max_tsdu_size: int) -> None:
        self.number = number
        self.dissectors = {
            "out": StreamDissector(max_tsdu_size),
            "in": StreamDissector(max_tsdu_size),
        }
        self.fed = {"out": 0, "in": 0}
        self.ending: set[str] = set()  #: senders of an AE not yet acknowledged
        self.acks: dict[str, set[int]] = {"client": set(), "server": set()}  #: SLK1 MIPs
        self.activity: bytes | None = None


# ------------------------------------------------------------------ the ladder


class Ladder:
    """Collects a session's SPDUs and events; renders them as text or SVG."""

    def __init__(
        self,
        *,
        client: str = "client",
        server: str = "server",
        start: float | None = None,
        max_runs: int = 8,
        max_tsdu_size: int = DEFAULT_MAX_TSDU_SIZE,
    ) -> None:
        """``client``/``server`` name the lifelines; ``start`` is time zero (default: the
        first time given); a data phase alternating more than ``max_runs`` times is
        summarized; ``max_tsdu_size`` bounds the TSDUs the dissectors reassemble."""
        if max_runs < 1:
            raise ValueError("max_runs must be at least 1")
        self.client = _clean(client, 30)
        self.server = _clean(server, 30)
        self.start = start
        self.max_runs = max_runs
        self.max_tsdu_size = max_tsdu_size
        self.spdus = 0  #: SPDUs decoded so far (folded ones included)
        self._entries: list[Arrow | TransportLine | Note | _Phase] = []
        self._phase: _Phase | None = None
        self._conn: _Connection | None = None
        self._connections = 0

    # -------------------------------------------------------------- input

    def new_connection(self, at: float, label: str | None = None) -> int:
        """A new TCP connection begins (it starts with COTP CR): fresh dissectors.

        Returns its number (1, 2, ...).  A band names it, with ``label`` when given.
        """
        self._time(at)
        self.finish(at)
        self._connections += 1
        self._conn = _Connection(self._connections, self.max_tsdu_size)
        text = f"TCP connection {self._connections}"
        text = _clean(f"{text}: {label}" if label else text, 1000)
        self._add(Note(at, text, "connection", self._connections))
        return self._connections

    def wire(self, direction: str, data: bytes | bytearray | memoryview, at: float) -> None:
        """Bytes of the TCP stream as the client saw them: ``"out"`` it wrote, ``"in"`` it
        read.  Chunks may be cut anywhere."""
        if direction not in ("out", "in"):
            raise ValueError(f"direction is 'out' or 'in', not {direction!r}")
        self._time(at)
        data = bytes(data)
        conn = self._conn
        if conn is None:  # the first connection, not announced
            self._connections += 1
            conn = self._conn = _Connection(self._connections, self.max_tsdu_size)
        elif direction == "out" and conn.fed["out"] and _starts_with_cr(data):
            out = conn.dissectors["out"]
            if out.pending == 0 or out.failed is not None:  # a CR at a TPKT boundary
                self.new_connection(at, "reconnect (COTP CR on a new TCP stream)")
                conn = self._conn
                assert conn is not None
        conn.fed[direction] += len(data)
        sender: Side = "client" if direction == "out" else "server"
        self._records(conn, sender, conn.dissectors[direction].feed(data), at)

    def note(self, text: str, at: float, kind: str = "info") -> None:
        """An event that is not an SPDU, as a full-width band.  ``kind`` picks its style:
        ``"info"``, ``"fault"`` (a cut, a kill), ``"recovery"`` (a resume),
        ``"checkpoint"``, ``"connection"``, ``"error"`` (see :data:`NOTE_KINDS`)."""
        self._time(at)
        number = self._conn.number if self._conn is not None else 0
        self._add(Note(at, _clean(text, 1000), kind, number))

    def finish(self, at: float) -> None:
        """The current connection is over: report what its streams left unfinished."""
        conn = self._conn
        if conn is None:
            return
        for direction, sender in (("out", "client"), ("in", "server")):
            for record in conn.dissectors[direction].finish():
                text = f"connection {conn.number}, from the {sender}: {record.error}"
                self._add(Note(at, text, "info", conn.number))
            conn.dissectors[direction] = StreamDissector(self.max_tsdu_size)

    # -------------------------------------------------------------- output

    def rows(self) -> list[Row]:
        """What the diagram shows, top to bottom."""
        out: list[Row] = []
        for entry in self._entries:
            if isinstance(entry, _Phase):
                out += entry.rows()
            else:
                out.append(entry)
        return out

    def render_text(self, width: int = 100, color: bool = False, ascii: bool = False) -> str:
        """Two lifelines, ``──►`` / ``◄──`` arrows with their labels, notes as bands.

        ``color`` adds ANSI colours; ``ascii`` draws with ASCII only.  Lines are at most
        ``width`` columns (60 at least)."""
        return _TextRenderer(self, max(width, 60), color, ascii).render()

    def render_svg(self, title: str | None = None) -> str:
        """The same ladder as one self-contained SVG document (see the module docs)."""
        return _SvgRenderer(self, title).render()

    # -------------------------------------------------------------- internals

    def _time(self, at: float) -> None:
        if self.start is None:
            self.start = at

    def _add(self, entry: Arrow | TransportLine | Note) -> None:
        if isinstance(entry, Arrow) and entry.role in _BACKGROUND:
            if self._phase is None:
                self._phase = _Phase(self.max_runs)
                self._entries.append(self._phase)
            self._phase.add(entry)
            return
        self._phase = None
        self._entries.append(entry)

    def _records(self, conn: _Connection, sender: Side, records: list[Record], at: float) -> None:
        i = 0
        while i < len(records):
            record = records[i]
            i += 1
            if record.error is not None:
                self._add(Note(at, f"{sender}: {record.error}", "error", conn.number))
                continue
            if record.spdu is None:
                assert record.tpdu is not None
                if not isinstance(record.tpdu, Data | ExpeditedData):
                    self._add(_transport(record.tpdu, sender, at, conn.number))
                continue
            spdu = record.spdu
            self.spdus += 1
            carrier = ""
            nxt = records[i] if i < len(records) else None
            if (
                isinstance(spdu, t.GiveTokens | t.PleaseTokens)
                and not spdu.fields()
                and nxt is not None
                and nxt.spdu is not None
                and nxt.tsdu_index == record.tsdu_index
                and nxt.spdu.category == 2
            ):
                carrier = spdu.kind
                spdu = nxt.spdu
                self.spdus += 1
                i += 1
            alone = nxt is None or nxt.tsdu_index != record.tsdu_index or nxt.spdu is None
            arrow = _arrow(conn, sender, spdu, at, alone and not carrier)
            if carrier:
                arrow.folded, arrow.carrier = 1, carrier
                arrow.detail = " · ".join(x for x in (f"{carrier}+{arrow.kind}", arrow.detail) if x)
            self._add(arrow)


def _starts_with_cr(data: bytes) -> bool:
    """A TPKT (version 3, reserved 0) whose TPDU is a COTP CR (code 0xE0)."""
    return len(data) >= 6 and data[0] == 3 and data[1] == 0 and data[5] & 0xF0 == 0xE0


# ------------------------------------------------------------------ what each SPDU says

_FU_NAMES = (
    (FunctionalUnit.HALF_DUPLEX, "half-duplex"),
    (FunctionalUnit.DUPLEX, "duplex"),
    (FunctionalUnit.EXPEDITED, "expedited"),
    (FunctionalUnit.TYPED_DATA, "typed data"),
    (FunctionalUnit.CAPABILITY_DATA, "capability data"),
    (FunctionalUnit.MINOR_SYNC, "minor sync"),
    (FunctionalUnit.SYMMETRIC_SYNC, "symmetric sync"),
    (FunctionalUnit.DATA_SEPARATION, "data separation"),
    (FunctionalUnit.MAJOR_SYNC, "major sync"),
    (FunctionalUnit.RESYNC, "resync"),
    (FunctionalUnit.EXCEPTIONS, "exceptions"),
    (FunctionalUnit.ACTIVITY, "activity"),
    (FunctionalUnit.NEGOTIATED_RELEASE, "negotiated release"),
)

_TOKEN_NAMES = (
    (Token.DATA, "data"),
    (Token.MINOR_SYNC, "minor sync"),
    (Token.MAJOR_ACTIVITY, "major/activity"),
    (Token.RELEASE, "release"),
)

#: Which functional unit makes each token exist (X.215 7.2): (token, FU bits, shift in PI 26).
_TOKEN_UNITS = (
    ("data", FunctionalUnit.HALF_DUPLEX, 0),
    ("minor sync", FunctionalUnit.MINOR_SYNC, 2),
    ("major/activity", FunctionalUnit.MAJOR_SYNC | FunctionalUnit.ACTIVITY, 4),
    ("release", FunctionalUnit.NEGOTIATED_RELEASE, 6),
)

_REFUSE_REASONS = {
    0: "rejected by the called SS-user",
    1: "called SS-user congested",
    2: "rejected by the called SS-user",
    0x81: "session selector unknown",
    0x82: "SS-user not attached to the SSAP",
    0x83: "SPM congestion at connect time",
    0x84: "proposed versions not supported",
    0x85: "rejected by the SPM, no reason given",
    0x86: "rejected by the SPM: implementation restriction",
}

_EXCEPTION_REASONS = {
    0: "no specific reason",
    1: "receiving ability jeopardized",
    3: "user sequence error",
    5: "local SS-user error",
    6: "unrecoverable procedural error",
    128: "demand data token",
}

_ABORT_BITS = (
    (0x02, "user abort"),
    (0x04, "protocol error"),
    (0x08, "no reason"),
    (0x10, "implementation restriction"),
)

_RESYNC_TYPES = {0: "restart", 1: "abandon", 2: "set"}

#: kind -> X.215 service (with the primitive for the confirmed services).
_SERVICES = {
    "CN": "S-CONNECT request",
    "AC": "S-CONNECT response (accept)",
    "RF": "S-CONNECT response (refuse)",
    "CDO": "S-CONNECT request (connect data overflow)",
    "OA": "S-CONNECT (overflow accept)",
    "FN": "S-RELEASE request",
    "DN": "S-RELEASE response (affirmative)",
    "NF": "S-RELEASE response (negative)",
    "AB": "S-U-ABORT",
    "AA": "abort accept (no X.215 primitive)",
    "DT": "S-DATA",
    "EX": "S-EXPEDITED-DATA",
    "TD": "S-TYPED-DATA",
    "CD": "S-CAPABILITY-DATA request",
    "CDA": "S-CAPABILITY-DATA response",
    "GT": "S-TOKEN-GIVE",
    "PT": "S-TOKEN-PLEASE",
    "GTC": "S-CONTROL-GIVE",
    "GTA": "S-CONTROL-GIVE acknowledged (no X.215 primitive)",
    "MIP": "S-SYNC-MINOR request",
    "MIA": "S-SYNC-MINOR response",
    "MAP": "S-SYNC-MAJOR request",
    "MAA": "S-SYNC-MAJOR response",
    "RS": "S-RESYNCHRONIZE request",
    "RA": "S-RESYNCHRONIZE response",
    "PR": "prepare (no X.215 primitive)",
    "ER": "S-P-EXCEPTION-REPORT",
    "ED": "S-U-EXCEPTION-REPORT",
    "AS": "S-ACTIVITY-START",
    "AR": "S-ACTIVITY-RESUME",
    "AI": "S-ACTIVITY-INTERRUPT request",
    "AIA": "S-ACTIVITY-INTERRUPT response",
    "AD": "S-ACTIVITY-DISCARD request",
    "ADA": "S-ACTIVITY-DISCARD response",
    "AE": "S-ACTIVITY-END request",
    "AEA": "S-ACTIVITY-END response",
}


def _arrow(conn: _Connection, sender: Side, spdu: t.SPDU, at: float, alone: bool) -> Arrow:
    """The arrow of one SPDU (``alone``: the only SPDU of its TSDU)."""
    other = "server" if sender == "client" else "client"
    if isinstance(spdu, t.MajorSyncAck) and other in conn.ending:
        spdu = t.ActivityEndAck(spdu.serial_number, spdu.enclosure, spdu.user_data)
    kind = spdu.kind
    arrow = Arrow(at, sender, kind, _SERVICES.get(kind, spdu.name), until=at,
                  connection=conn.number)  # fmt: skip
    parts: list[str] = []
    data = getattr(spdu, "user_data", None)
    if isinstance(spdu, t.DataTransfer | t.TypedData | t.Expedited):
        arrow.sized = True
        arrow.octets = arrow.smallest = arrow.largest = len(spdu.user_data)
        if isinstance(spdu, t.DataTransfer):
            arrow.role = "data"
        if getattr(spdu, "enclosure", None) not in (None, 3):
            parts.append(_enclosure(getattr(spdu, "enclosure", 0)))
        data = None
    elif isinstance(spdu, t.Connect):
        parts += _connect(spdu.item, spdu.requirements, "proposed")
        parts += _hello(spdu.user_data)
        data = None
    elif isinstance(spdu, t.Accept):
        parts += _connect(spdu.item, spdu.requirements, "selected")
        if spdu.tokens:
            parts.append("asks for tokens: " + _tokens(spdu.tokens))
        parts += _welcome(spdu.user_data)
        data = None
    elif isinstance(spdu, t.Refuse):
        reason = spdu.reason if spdu.reason is not None else 0
        if reason >= 0x80:
            arrow.service = "S-CONNECT confirm (refused by the SS-provider)"
        parts.append(_REFUSE_REASONS.get(reason, f"reason {reason:#04x}"))
        parts += _rejection(spdu.user_data)
        data = None
    elif isinstance(spdu, t.Abort):
        bits = spdu.transport_disconnect
        if bits is not None and not bits & 0x02:
            arrow.service = "S-P-ABORT"
        if bits is not None:
            parts += [name for bit, name in _ABORT_BITS if bits & bit]
            parts.append("transport released" if bits & 0x01 else "transport kept")
    elif isinstance(spdu, t.Finish):
        if spdu.transport_disconnect is not None:
            kept = not spdu.transport_disconnect & 0x01
            parts.append("keep the transport" if kept else "release the transport")
    elif isinstance(spdu, t.GiveTokens | t.PleaseTokens):
        if spdu.tokens:
            parts.append(_tokens(spdu.tokens))
        elif alone and spdu.user_data is None:
            arrow.service += " (no tokens)"
            arrow.role = "keepalive"
            what = "probe" if isinstance(spdu, t.PleaseTokens) else "answer"
            arrow.detail = f"keepalive {what}"
    elif isinstance(spdu, t.MinorSyncPoint):
        parts.append(f"sync point {spdu.serial_number}")
        if spdu.sync_type is not None and spdu.sync_type & 0x01:
            parts.append("no confirmation wanted")
        if spdu.user_data == ACK_MARK:
            parts.append("acknowledgement point (SLK1)")
            arrow.role = "ack"
            conn.acks[sender].add(spdu.serial_number)
            data = None
        arrow.serials = (spdu.serial_number, spdu.serial_number)
    elif isinstance(spdu, t.MinorSyncAck):
        parts.append(f"confirms sync point {spdu.serial_number}")
        if spdu.serial_number in conn.acks[other]:
            conn.acks[other].discard(spdu.serial_number)
            arrow.role = "ack-reply"
        arrow.serials = (spdu.serial_number, spdu.serial_number)
    elif isinstance(spdu, t.MajorSyncPoint):
        parts.append(f"sync point {spdu.serial_number} (checkpoint)")
    elif isinstance(spdu, t.MajorSyncAck):
        parts.append(f"checkpoint {spdu.serial_number} confirmed")
    elif isinstance(spdu, t.Resynchronize):
        kind_name = _RESYNC_TYPES.get(spdu.resync_type, str(spdu.resync_type))
        parts.append(f"{kind_name}, sync point {spdu.serial_number}")
    elif isinstance(spdu, t.ResynchronizeAck):
        parts.append(f"sync point {spdu.serial_number}")
    elif isinstance(spdu, t.Prepare):
        try:
            follows = PrepareType(spdu.prepare_type).name
        except ValueError:
            follows = str(spdu.prepare_type)
        parts.append(f"{follows} follows (sent as expedited data)")
    elif isinstance(spdu, t.ExceptionData | t.ActivityInterrupt | t.ActivityDiscard):
        if spdu.reason is not None:
            parts.append(_EXCEPTION_REASONS.get(spdu.reason, f"reason {spdu.reason}"))
        if not isinstance(spdu, t.ExceptionData):
            conn.activity = None
    elif isinstance(spdu, t.ExceptionReport):
        parts.append(f"reflects {len(spdu.reflect)} octets")
    elif isinstance(spdu, t.ActivityStart):
        conn.activity = spdu.activity_id
        parts.append(f"activity {_text(spdu.activity_id)}")
    elif isinstance(spdu, t.ActivityResume):
        conn.activity = spdu.activity_id
        link = spdu.linking
        parts.append(f"activity {_text(spdu.activity_id)}")
        parts.append(f"resumes {_text(link.old_activity_id)} at sync point {link.serial_number}")
        if link.common_ref is not None:
            parts.append(f"begun on connection {_short_hex(link.common_ref)}")
    elif isinstance(spdu, t.ActivityEnd):
        conn.ending.add(sender)
        parts.append(f"sync point {spdu.serial_number}")
        if conn.activity is not None:
            parts.append(f"ends activity {_text(conn.activity)}")
    elif isinstance(spdu, t.ActivityEndAck):
        conn.ending.discard(other)
        parts.append(f"confirms sync point {spdu.serial_number}")
        if conn.activity is not None:
            parts.append(f"activity {_text(conn.activity)} ended")
        conn.activity = None
    if data is not None:
        parts.append(f"user data {_text(data)}")
    if not arrow.detail:
        arrow.detail = " · ".join(parts)
    return arrow


def _connect(item: t.ConnectAcceptItem | None, requirements: int | None, verb: str) -> list[str]:
    parts: list[str] = []
    units = DEFAULT_REQUIREMENTS if requirements is None else requirements
    if item is not None and item.version is not None:
        versions = [f"v{n}" for n in (1, 2) if item.version & n]
        parts.append("+".join(versions) or f"version {item.version:#04x}")
    names = [name for bit, name in _FU_NAMES if units & bit]
    default = " (default)" if requirements is None else ""
    parts.append(f"FU {verb}{default}: " + (", ".join(names) or "kernel only"))
    if item is not None:
        if item.protocol_options:
            parts.append("extended concatenation")
        if item.tsdu_max_size is not None and any(item.tsdu_max_size):
            parts.append("TSDU max {}/{}".format(*item.tsdu_max_size))
        if item.token_setting is not None:
            owners = _token_setting(item.token_setting, units)
            if owners:
                parts.append(owners)
        if item.initial_serial is not None:
            parts.append(f"initial serial {item.initial_serial}")
        if item.second_initial_serial is not None:
            parts.append(f"second initial serial {item.second_initial_serial}")
    return parts


def _token_setting(value: int, units: int) -> str:
    owners = {0: "initiator", 1: "responder", 2: "responder's choice", 3: "reserved"}
    found = [
        f"{name}: {owners[(value >> shift) & 3]}"
        for name, unit, shift in _TOKEN_UNITS
        if units & unit
    ]
    return "tokens " + ", ".join(found) if found else ""


def _tokens(value: int) -> str:
    names = [name for bit, name in _TOKEN_NAMES if value & bit]
    return "tokens " + (", ".join(names) if names else f"{value:#04x}")


def _hello(user_data: bytes | None) -> list[str]:
    if user_data is None:
        return []
    if not is_hello(user_data):
        return [f"user data {_octets(len(user_data))}"]
    try:
        hello = Hello.decode(bytes(user_data))
    except DecodeError:
        return [f"malformed sessionlayer hello ({_octets(len(user_data))})"]
    parts = [_clean(f"offers {k}={'|'.join(v)}") for k, v in hello.offers.items()]
    if hello.recovery:
        parts.append("asks for recovery")
    if hello.resume is not None:
        parts.append("resume token")
    if hello.recv is not None:
        parts.append(f"recv={hello.recv}")
    if hello.credentials is not None:
        parts.append("credentials")
    if hello.data:
        parts.append(f"data {_octets(len(hello.data))}")
    return ["hello: " + (", ".join(parts) or "nothing offered")]


def _welcome(user_data: bytes | None) -> list[str]:
    if user_data is None:
        return []
    if not is_welcome(user_data):
        return [f"user data {_octets(len(user_data))}"]
    try:
        welcome = Welcome.decode(bytes(user_data))
    except DecodeError:
        return [f"malformed sessionlayer welcome ({_octets(len(user_data))})"]
    parts = [_clean(f"{k}={v}") for k, v in welcome.chosen.items()]
    if welcome.session_id is not None:
        parts.append(f"session {welcome.session_id[:8]}…")
    if welcome.token is not None:
        parts.append("resume token")
    if welcome.resumed == "resumed":
        parts.append("resumed in place (the server kept its state)")
    elif welcome.resumed == "checkpoint":
        if welcome.checkpoint is not None:
            serial, cp_data = welcome.checkpoint
            cp = f" {_text(cp_data)}" if cp_data else ""
            parts.append(f"resumed from checkpoint {serial}{cp}")
        else:
            parts.append("resumed from the start (no checkpoint)")
    if welcome.recv is not None:
        parts.append(f"recv={welcome.recv} (messages it has received)")
    if welcome.data:
        parts.append(f"data {_octets(len(welcome.data))}")
    return ["welcome: " + (", ".join(parts) or "nothing chosen")]


def _rejection(user_data: bytes | None) -> list[str]:
    if not user_data:
        return []
    if not is_rejection(user_data):
        return [f"user data {_octets(len(user_data))}"]
    try:
        rejection = Rejection.decode(bytes(user_data))
    except DecodeError:
        return [f"malformed sessionlayer rejection ({_octets(len(user_data))})"]
    return [f"{rejection.code}: {_clean(rejection.message)}"]


def _enclosure(value: int) -> str:
    if value & 1:
        return "first segment of an SSDU"
    if value & 2:
        return "last segment of an SSDU"
    return "middle segment of an SSDU"


def _transport(tpdu: object, sender: Side, at: float, number: int) -> TransportLine:
    if isinstance(tpdu, ConnectionRequest | ConnectionConfirm):
        request = isinstance(tpdu, ConnectionRequest)
        parts = [f"class {tpdu.protocol_class}"]
        if tpdu.tpdu_size_octets is not None:
            parts.append(f"TPDU size {tpdu.tpdu_size_octets}")
        if tpdu.preferred_max_tpdu_octets is not None:
            parts.append(f"preferred TPDU size {tpdu.preferred_max_tpdu_octets}")
        for name, tsap in (("calling", tpdu.calling_tsap), ("called", tpdu.called_tsap)):
            if tsap is not None:
                parts.append(f"{name} TSAP {tsap.hex()}")
        service = "T-CONNECT request" if request else "T-CONNECT response"
        return TransportLine(at, sender, "CR" if request else "CC", service,
                             " · ".join(parts), number)  # fmt: skip
    if isinstance(tpdu, DisconnectRequest):
        try:
            reason = DisconnectReason(tpdu.reason).name.lower().replace("_", " ")
        except ValueError:
            reason = str(tpdu.reason)
        return TransportLine(at, sender, "DR", "T-DISCONNECT request", f"reason: {reason}",
                             number)  # fmt: skip
    assert isinstance(tpdu, TransportError)
    return TransportLine(at, sender, "ER", "TPDU error", f"cause {tpdu.cause}", number)


def _size(octets: int) -> str:
    if octets < 1000:
        return _octets(octets)
    for unit, scale in (("kB", 1e3), ("MB", 1e6), ("GB", 1e9)):
        if octets < scale * 1000 or unit == "GB":
            return f"{octets / scale:.1f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def _octets(n: int) -> str:
    return "1 octet" if n == 1 else f"{n:,} octets"


def _clean(text: str, limit: int = 80) -> str:
    """Printable, XML-safe and short."""
    out = "".join(c if c.isprintable() else "?" for c in text)
    return out if len(out) <= limit else out[: limit - 1] + "…"


def _text(value: bytes | None) -> str:
    """Short printable octets as a quoted string, others as hex or a size."""
    if value is None:
        return "-"
    raw = bytes(value)
    if raw and len(raw) <= 24 and all(0x20 <= b < 0x7F for b in raw):
        return '"' + raw.decode("ascii") + '"'
    if len(raw) <= 8:
        return raw.hex() or '""'
    return _octets(len(raw))


def _xml(text: str, limit: int = 10_000) -> str:
    """Text for an SVG element: printable (no character XML forbids), escaped."""
    return html.escape(_clean(text, limit), quote=True)


def _attr(text: str) -> str:
    """A quoted attribute value (xml.sax.saxutils would import urllib, and sockets)."""
    return f'"{_xml(text, 200)}"'


def _short_hex(value: bytes) -> str:
    raw = bytes(value).hex()
    return raw if len(raw) <= 12 else raw[:8] + "…"


def _detail_lines(row: Arrow) -> int:
    """How many lines an arrow's detail may take: more for the negotiation."""
    return 5 if row.kind in ("CN", "AC", "RF") else 3


def _pack(text: str, room: int, most: int) -> list[str]:
    """``text`` in at most ``most`` lines of ``room`` columns, broken between its `` · ``
    parts where it can (inside a part when it is wider than a line, or would leave a short
    line behind); the last line is shortened with ``…``."""
    if not text:
        return []
    lines: list[str] = []

    def put(sep: str, item: str) -> None:
        if lines and len(lines[-1]) + len(sep) + len(item) <= room:
            lines[-1] += sep + item
        else:
            lines.extend(item[i : i + room] for i in range(0, max(len(item), 1), room))

    for n, part in enumerate(text.split(" · ")):
        sep = " · " if n else ""
        short_line = bool(lines) and len(lines[-1]) < room // 3
        if len(part) <= room and not short_line:
            put(sep, part)  # whole, on this line or the next
        else:  # wider than a line, or the line so far is short: fill it word by word
            words = part.split(" ")
            put(sep, words[0])
            for word in words[1:]:
                put(" ", word)
    if len(lines) > most:
        rest = " ".join(lines[most - 1 :])
        lines = [*lines[: most - 1], rest[: room - 1] + "…"]
    return lines


# ------------------------------------------------------------------ text


_ASCII = str.maketrans({
    "─": "-", "═": "=", "┄": ".", "►": ">", "◄": "<", "│": "|", "║": "|", "╠": "+",
    "╣": "+", "╟": "+", "╢": "+", "┆": ":", "·": "-", "…": "~",
})  # fmt: skip

_RESET = "\x1b[0m"
_STYLE = {
    "client": "\x1b[36m",  # arrows from the client: cyan
    "server": "\x1b[33m",  # from the server: yellow
    "label": "\x1b[1m",
    "detail": "\x1b[2m",
    "transport": "\x1b[2m",
    "time": "\x1b[2m",
    "info": "\x1b[2m",
    "fault": "\x1b[1;31m",
    "recovery": "\x1b[1;32m",
    "checkpoint": "\x1b[1;34m",
    "connection": "\x1b[1;35m",
    "error": "\x1b[1;31m",
}


class _TextRenderer:
    TIME = 9  #: the time column; the client's lifeline is the next column

    def __init__(self, ladder: Ladder, width: int, color: bool, ascii: bool) -> None:
        self.ladder = ladder
        self.width = width
        self.color = color
        self.ascii = ascii
        self.inner = width - self.TIME - 2  #: columns between the lifelines

    def paint(self, text: str, style: str) -> str:
        if not self.color or not text:
            return text
        return f"{_STYLE.get(style, _STYLE['info'])}{text}{_RESET}"

    def when(self, at: float | None) -> str:
        if at is None:
            return " " * self.TIME
        start = self.ladder.start or 0.0
        return self.paint(f"{f'+{at - start:.3f}':>{self.TIME - 1}}", "time") + " "

    def lane(self, content: str) -> str:
        bar = "│"
        return f"{bar}{content}{bar}"

    def render(self) -> str:
        ladder = self.ladder
        names = ladder.client.ljust(self.inner + 2 - len(ladder.server)) + ladder.server
        lines = ["time (s)".ljust(self.TIME) + names, " " * self.TIME + self.lane(" " * self.inner)]
        for row in ladder.rows():
            if isinstance(row, Arrow):
                lines += self.arrow(row)
            elif isinstance(row, TransportLine):
                lines += self.transport(row)
            elif isinstance(row, Note):
                lines += self.note(row)
            else:
                lines += self.interleaved(row)
        lines.append(" " * self.TIME + self.lane(" " * self.inner))
        legend = "── SPDU (X.215 service)   ══ collapsed run   ┄┄ transport (COTP)"
        if len(legend) > self.inner + 2:
            legend = "── SPDU   ══ collapsed run   ┄┄ COTP"
        lines.append(" " * self.TIME + legend)
        text = "\n".join(line.rstrip() for line in lines) + "\n"
        return text.translate(_ASCII) if self.ascii else text

    def _line(self, at: float | None, label: str, sender: Side, rule: str, style: str,
              label_style: str) -> str:  # fmt: skip
        room = self.inner - 5
        label = label if len(label) <= room else label[: room - 1] + "…"
        fill = rule * (self.inner - 5 - len(label))
        text = self.paint(label, label_style)
        if sender == "client":
            body = self.paint(rule * 2, style) + f" {text} " + self.paint(fill + "►", style)
        else:
            body = self.paint("◄" + fill, style) + f" {text} " + self.paint(rule * 2, style)
        return self.when(at) + self.lane(body)

    def _details(self, text: str, sender: Side, most: int = 3, style: str = "detail"
                 ) -> list[str]:  # fmt: skip
        if not text:
            return []
        room = self.inner - 6
        wrapped = _pack(text, room, most)
        out = []
        for part in wrapped:
            cell = part.ljust(room) if sender == "client" else part.rjust(room)
            out.append(" " * self.TIME + self.lane("   " + self.paint(cell, style) + "   "))
        return out

    def arrow(self, row: Arrow) -> list[str]:
        rule = "═" if row.count > 1 else "─"
        head = self._line(row.at, row.label, row.sender, rule, row.sender, "label")
        return [head, *self._details(row.describe(), row.sender, _detail_lines(row))]

    def transport(self, row: TransportLine) -> list[str]:
        label = f"{row.label[:-1]}, {row.detail})" if row.detail else row.label
        return [self._line(row.at, label, row.sender, "┄", "transport", "transport")]

    def note(self, row: Note) -> list[str]:
        style = row.kind if row.kind in NOTE_KINDS else "info"
        strong = style not in ("info",)
        rule, left, right = ("═", "╠", "╣") if strong else ("─", "╟", "╢")
        room = self.inner - 6
        wrapped = textwrap.wrap(row.text, room) or [""]
        out = []
        for n, part in enumerate(wrapped):
            if n == 0:
                fill = rule * (self.inner - 3 - len(part))
                body = f"{left}{rule} " + self.paint(part, style) + f" {fill}{right}"
                out.append(self.when(row.at) + body)
            else:
                body = "║  " + self.paint(part.ljust(self.inner - 2), style) + "║"
                out.append(" " * self.TIME + body)
        return out

    def interleaved(self, row: Interleaved) -> list[str]:
        room = self.inner - 4
        text = textwrap.shorten(row.text, room, placeholder="…")
        return [self.when(row.at) + self.lane(" ┆ " + self.paint(text.ljust(room), "info") + " ")]


# ------------------------------------------------------------------ SVG


_SVG_STYLE = """
svg { background: #ffffff; }
text { font-family: ui-monospace, 'DejaVu Sans Mono', Menlo, Consolas, monospace; }
.head rect { fill: #f4f6fa; stroke: #44546a; stroke-width: 1.2; }
.head text { font-size: 15px; font-weight: bold; fill: #1d2733; text-anchor: middle; }
.lifeline { stroke: #8796a8; stroke-width: 1.5; stroke-dasharray: 6 4; }
.arrow .label { font-size: 13px; font-weight: bold; text-anchor: middle; }
.arrow .detail { font-size: 11px; fill: #55606e; text-anchor: middle; }
.arrow line { stroke-width: 1.6; }
.arrow[data-from="client"] line { stroke: #1f77b4; }
.arrow[data-from="client"] polygon { fill: #1f77b4; }
.arrow[data-from="client"] .label { fill: #15527f; }
.arrow[data-from="server"] line { stroke: #c2570c; }
.arrow[data-from="server"] polygon { fill: #c2570c; }
.arrow[data-from="server"] .label { fill: #8f3e06; }
.transport line { stroke: #9aa5b1; stroke-width: 1; stroke-dasharray: 3 3; }
.transport polygon { fill: #9aa5b1; }
.transport text { font-size: 11px; fill: #7a8694; text-anchor: middle; }
.note rect { stroke-width: 1; fill: #f3f4f6; stroke: #a0a7b1; }
.note text { font-size: 12px; font-weight: bold; text-anchor: middle; fill: #4b5563; }
.note[data-style="fault"] rect { fill: #fde8e8; stroke: #d64545; }
.note[data-style="fault"] text { fill: #9b1c1c; }
.note[data-style="recovery"] rect { fill: #e6f6ea; stroke: #2f9e55; }
.note[data-style="recovery"] text { fill: #17663a; }
.note[data-style="checkpoint"] rect { fill: #e7eefc; stroke: #3b6fd8; }
.note[data-style="checkpoint"] text { fill: #1e429f; }
.note[data-style="connection"] rect { fill: #f1eafb; stroke: #8a5cd0; }
.note[data-style="connection"] text { fill: #5b2ca0; }
.note[data-style="error"] rect { fill: #fff4d6; stroke: #d49b00; }
.note[data-style="error"] text { fill: #8a5a00; }
.interleaved text { font-size: 11px; font-style: italic; fill: #6b7280; text-anchor: middle; }
.legend text { font-size: 11px; fill: #6b7280; }
text.time { text-anchor: start; font-size: 11px; font-weight: normal; fill: #7a8694; }
"""


_DEFAULT_TITLE = "ladder diagram of a session: its SPDUs and X.215 services"


class _SvgRenderer:
    WIDTH = 1000
    CLIENT_X = 190
    SERVER_X = 890
    CHAR = 6.7  #: average advance of an 11px monospace character
    LABEL_CHAR = 7.9  #: of a 13px one

    def __init__(self, ladder: Ladder, title: str | None) -> None:
        self.ladder = ladder
        self.title = title
        self.parts: list[str] = []
        self.y = 0.0

    def when(self, at: float) -> str:
        start = self.ladder.start or 0.0
        return f"+{at - start:.3f}"

    def wrap(self, text: str, char: float, lines: int = 3) -> list[str]:
        return _pack(text, int((self.SERVER_X - self.CLIENT_X - 30) / char), lines)

    def render(self) -> str:
        ladder = self.ladder
        rows = ladder.rows()
        self.y = 70.0
        body: list[str] = []
        arrows = 0
        for row in rows:
            if isinstance(row, Arrow):
                arrows += 1
                body.append(self.arrow(row))
            elif isinstance(row, TransportLine):
                body.append(self.transport(row))
            elif isinstance(row, Note):
                body.append(self.note(row))
            else:
                body.append(self.interleaved(row))
        bottom = self.y + 10
        height = bottom + 70
        w = self.WIDTH
        out = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height:.0f}"'
            f' viewBox="0 0 {w} {height:.0f}" data-spdus="{ladder.spdus}"'
            f' data-arrows="{arrows}">',
            f"<title>{_xml(self.title or _DEFAULT_TITLE)}</title>",
            f"<style>{_SVG_STYLE}</style>",
            f'<rect x="0" y="0" width="{w}" height="{height:.0f}" fill="#ffffff"/>',
        ]
        for x in (self.CLIENT_X, self.SERVER_X):
            out.append(f'<line class="lifeline" x1="{x}" y1="52" x2="{x}" y2="{bottom:.1f}"/>')
        out.append(self.heads(18))
        out += body
        out.append(self.heads(bottom))
        legend_y = bottom + 50
        out.append(
            f'<g class="legend"><text x="20" y="{legend_y:.1f}">'
            "solid: an SPDU with its X.215 service · double: a collapsed run (data-count) ·"
            " dashed: transport (ISO 8073 COTP) · bands: events</text></g>"
        )
        out.append("</svg>")
        return "\n".join(out) + "\n"

    def heads(self, y: float) -> str:
        items = []
        for x, name in ((self.CLIENT_X, self.ladder.client), (self.SERVER_X, self.ladder.server)):
            items.append(
                f'<rect x="{x - 70}" y="{y:.1f}" width="140" height="32" rx="4"/>'
                f'<text x="{x}" y="{y + 21:.1f}">{_xml(name, 18)}</text>'
            )
        return '<g class="head">' + "".join(items) + "</g>"

    def _shaft(self, sender: Side, y: float, double: bool, head: float = 10) -> str:
        x1, x2 = (self.CLIENT_X, self.SERVER_X) if sender == "client" else (
            self.SERVER_X, self.CLIENT_X)  # fmt: skip
        tip = x2 - head if sender == "client" else x2 + head
        shafts = [y - 2.0, y + 2.0] if double else [y]
        lines = "".join(f'<line x1="{x1}" y1="{s:.1f}" x2="{tip}" y2="{s:.1f}"/>' for s in shafts)
        spread = 6 if double else 5
        arrowhead = (
            f'<polygon points="{x2},{y:.1f} {tip},{y - spread:.1f} {tip},{y + spread:.1f}"/>'
        )
        return lines + arrowhead

    def arrow(self, row: Arrow) -> str:
        mid = (self.CLIENT_X + self.SERVER_X) / 2
        label = self.wrap(row.label, self.LABEL_CHAR, 1)
        details = self.wrap(row.describe(), self.CHAR, _detail_lines(row))
        top = self.y
        line_y = top + 22
        attrs = (
            f'class="arrow" data-spdu={_attr(row.kind)}'
            f' data-count="{row.count}" data-folded="{row.folded}" data-spdus="{row.spdus}"'
            f' data-from="{row.sender}" data-to="{row.receiver}"'
            f" data-service={_attr(row.service)}"
            + (' data-interleaved="1"' if row.interleaved else "")
        )
        title = _xml(f"{row.label} — {row.describe()}", 400)
        texts = [
            f'<text class="time" x="20" y="{line_y + 4:.1f}">{self.when(row.at)}</text>',
            f'<text class="label" x="{mid}" y="{top + 15:.1f}">{_xml(label[0])}</text>',
        ]
        for n, part in enumerate(details):
            texts.append(
                f'<text class="detail" x="{mid}" y="{line_y + 17 + 13 * n:.1f}">{_xml(part)}</text>'
            )
        self.y = line_y + 10 + 13 * len(details) + 6
        return (
            f"<g {attrs}><title>{title}</title>"
            + self._shaft(row.sender, line_y, row.count > 1)
            + "".join(texts)
            + "</g>"
        )

    def transport(self, row: TransportLine) -> str:
        mid = (self.CLIENT_X + self.SERVER_X) / 2
        top = self.y
        line_y = top + 16
        label = f"{row.label[:-1]}, {row.detail})" if row.detail else row.label
        text = self.wrap(label, self.CHAR, 1)
        self.y = line_y + 12
        return (
            f'<g class="transport" data-tpdu="{row.tpdu}" data-from="{row.sender}">'
            f'<text class="time" x="20" y="{line_y + 4:.1f}">{self.when(row.at)}</text>'
            f'<text x="{mid}" y="{top + 11:.1f}">{_xml(text[0])}</text>'
            + self._shaft(row.sender, line_y, False, 7)
            + "</g>"
        )

    def note(self, row: Note) -> str:
        kind = row.kind if row.kind in NOTE_KINDS else "info"
        lines = self.wrap(row.text, 7.3, 4) or [""]
        top = self.y + 4
        height = 10 + 16 * len(lines)
        mid = self.WIDTH / 2
        texts = "".join(
            f'<text x="{mid}" y="{top + 17 + 16 * n:.1f}">{_xml(part, 200)}</text>'
            for n, part in enumerate(lines)
        )
        self.y = top + height + 6
        return (
            f'<g class="note" data-kind={_attr(row.kind)} data-style="{kind}">'
            f'<rect x="90" y="{top:.1f}" width="{self.WIDTH - 110}" height="{height}" rx="3"/>'
            f'<text class="time" x="20" y="{top + 17:.1f}">{self.when(row.at)}</text>'
            f"{texts}</g>"
        )

    def interleaved(self, row: Interleaved) -> str:
        mid = (self.CLIENT_X + self.SERVER_X) / 2
        top = self.y
        self.y = top + 20
        return (
            f'<g class="interleaved" data-spdus="{row.spdus}">'
            f'<text x="{mid}" y="{top + 14:.1f}">{_xml(row.text)}</text></g>'
        )
