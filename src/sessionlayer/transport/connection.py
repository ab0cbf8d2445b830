"""A sans-I/O RFC 1006 transport connection (ISO 8073 class 0 over TCP).

Bytes from TCP go into :meth:`Rfc1006Connection.receive_data`, which returns
events; the methods that act (:meth:`~Rfc1006Connection.connect`,
:meth:`~Rfc1006Connection.accept`, :meth:`~Rfc1006Connection.send_tsdu`, ...)
return the bytes to write.  No sockets, no clocks: class 0 has no timers.

Malformed or unexpected input raises :class:`DecodeError` and leaves the
connection failed (every later :meth:`receive_data` raises it again); misuse
raises :class:`LocalError` (or :class:`EncodeError`) and sends nothing.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Literal, TypeAlias

from sessionlayer.errors import DecodeError, LocalError
from sessionlayer.transport.cotp import (
    DT_EOT_HEADER,
    DT_HEADER_SIZE,
    TPDU,
    ConnectionConfirm,
    ConnectionRequest,
    Data,
    DisconnectReason,
    DisconnectRequest,
    Error,
    ExpeditedData,
    Parameter,
    ParameterCode,
    decode_tpdu,
    encode_tpdu,
    tpdu_size_code,
)
from sessionlayer.transport.reassembly import DEFAULT_MAX_TSDU_SIZE, TsduAssembler, segment_tsdu
from sessionlayer.transport.tpkt import TPKT_HEADER_SIZE, TpktParser, encode_tpkt

__all__ = [
    "CONNECT_TSDU_MAX",
    "DEFAULT_TPDU_SIZE",
    "EARLY_DATA_MAX",
    "ConnectRequested",
    "ConnectionState",
    "ExpeditedReceived",
    "Rfc1006Connection",
    "TransportConnected",
    "TransportDisconnected",
    "TransportEvent",
    "TsduReceived",
    "check_tpdu_size",
]

DEFAULT_TPDU_SIZE = 8192  #: what libiec61850 proposes (code 0x0d)
CLASSIC_MAX_TPDU_SIZE = 8192  #: the largest the TPDU size parameter can say
#: The largest TPDU the preferred maximum TPDU size parameter can give that a TPKT holds.
MAX_TPDU_SIZE = (65535 - 4) // 128 * 128
CLASS0_DEFAULT_TPDU_SIZE = 128  #: ISO 8073 13.3.4 b: the size when none is given
#: (Responder) Octets a peer may send behind its CR before the CR is answered (a CN sent
#: right behind it, fast connect: 10,240 octets of connect data in 128-octet DTs fit);
#: more is a protocol error.  They are read once accept() answered the CR.
EARLY_DATA_MAX = 16384
#: The longest TSDU of the connect phase (CN, CDO, OA, AC, RF: each alone in its TSDU):
#: one SPDU, SI, a 3-octet LI and 65,535 octets of parameters.  What a receiver takes
#: until the session is set up, whatever its *max_tsdu_size*.
CONNECT_TSDU_MAX = 1 + 3 + 65535
_EXPEDITED_OPTION = 0x01  #: Additional Option Selection bit for expedited data
_EXPEDITED_PARAM = Parameter(ParameterCode.ADDITIONAL_OPTION_SELECTION, bytes([_EXPEDITED_OPTION]))


@dataclass(frozen=True)
class ConnectRequested:
    """(Responder) A CR arrived: answer with :meth:`Rfc1006Connection.accept` or ``refuse``."""

    cr: ConnectionRequest


@dataclass(frozen=True)
class TransportConnected:
    """(Initiator) The CC arrived: the connection is open."""

    tpdu_size: int  #: negotiated maximum TPDU size in octets
    calling_tsap: bytes | None
    called_tsap: bytes | None
    expedited: bool = False  #: expedited data was agreed


@dataclass(frozen=True)
class TsduReceived:
    """A whole TSDU (the user data of DTs up to the one with EOT)."""

    data: bytes


@dataclass(frozen=True)
class ExpeditedReceived:
    """The user data of one ED TPDU."""

    data: bytes


@dataclass(frozen=True)
class TransportDisconnected:
    """The connection ended: a DR or ER arrived, or TCP closed (``tpdu`` None)."""

    reason: int  #: a :class:`~sessionlayer.transport.cotp.DisconnectReason` value
    tpdu: DisconnectRequest | Error | None = None


TransportEvent: TypeAlias = (
    ConnectRequested | TransportConnected | TsduReceived | ExpeditedReceived | TransportDisconnected
)


class ConnectionState(enum.Enum):
    IDLE = "idle"
    AWAITING_CC = "awaiting CC"  #: initiator, CR sent
    AWAITING_ACCEPT = "awaiting accept"  #: responder, CR received, not yet answered
    OPEN = "open"
    CLOSED = "closed"
    FAILED = "failed"  #: the peer broke the protocol


Role: TypeAlias = Literal["initiator", "responder"]


class Rfc1006Connection:
    """One end of an RFC 1006 transport connection.

    *max_tpdu_size* (octets, a power of 2 from 128 to 8192) bounds what this
    side proposes or accepts; *max_tsdu_size* bounds a received TSDU once the session
    is set up (:meth:`session_open`; before, at least CONNECT_TSDU_MAX: a CN, CDO, OA, AC
    or RF within X.225's limits is never refused for it);
    *local_ref* is this side's source reference; *expedited* allows the
    RFC 1006 expedited-data option (Additional Option Selection 0x01).
    """

    __slots__ = (
        "_assembler",
        "_error",
        "_limit",
        "_max_tsdu",
        "_parser",
        "_request",
        "allow_expedited",
        "called_tsap",
        "calling_tsap",
        "expedited",
        "local_ref",
        "max_tpdu_size",
        "role",
        "state",
        "tpdu_size",
    )

    def __init__(
        self,
        role: Role = "initiator",
        *,
        max_tpdu_size: int = DEFAULT_TPDU_SIZE,
        max_tsdu_size: int = DEFAULT_MAX_TSDU_SIZE,
        local_ref: int = 1,
        expedited: bool = False,
    ) -> None:
        if role not in ("initiator", "responder"):
            raise LocalError(f"role must be 'initiator' or 'responder', not {role!r}")
        check_tpdu_size(max_tpdu_size)
        self.role: Role = role
        self.max_tpdu_size = max_tpdu_size
        self.local_ref = local_ref
        self.allow_expedited = expedited
        self.state = ConnectionState.IDLE
        self.tpdu_size: int | None = None  #: negotiated, once open
        self.expedited = False  #: expedited data agreed, once open
        self.calling_tsap: bytes | None = None
        self.called_tsap: bytes | None = None
        self._request: ConnectionRequest | None = None
        self._max_tsdu = max_tsdu_size
        # (the connect phase's; no max(): a call on every setup)
        self._limit = max_tsdu_size if max_tsdu_size > CONNECT_TSDU_MAX else CONNECT_TSDU_MAX
        # The readers of the stream: None after compact(), made again by the next read.
        self._parser: TpktParser | None = TpktParser()
        self._assembler: TsduAssembler | None = TsduAssembler(self._limit)
        self._error: DecodeError | None = None

    # ------------------------------------------------------------ sending

    def connect(
        self,
        calling_tsap: bytes | None = None,
        called_tsap: bytes | None = None,
        tpdu_size: int | None = None,
    ) -> bytes:
        """(Initiator) Return the TPKT-framed CR proposing *tpdu_size* octets."""
        self._require("initiator", ConnectionState.IDLE, "connect")
        size = self.max_tpdu_size if tpdu_size is None else tpdu_size
        key = (self.local_ref, calling_tsap, called_tsap, size, self.allow_expedited)
        plain = type(calling_tsap) in _KEYABLE and type(called_tsap) in _KEYABLE
        known = _CR_CACHE.get(key) if plain else None
        if known is not None:  # the same CR as an earlier connection's (immutable)
            cr, out = known
        else:
            check_tpdu_size(size)
            options = (_EXPEDITED_PARAM,)
            cr = ConnectionRequest(
                src_ref=self.local_ref,
                calling_tsap=calling_tsap,
                called_tsap=called_tsap,
                tpdu_size=tpdu_size_code(min(size, CLASSIC_MAX_TPDU_SIZE)),
                preferred_max_tpdu_size=size // 128 if size > CLASSIC_MAX_TPDU_SIZE else None,
                other_params=options if self.allow_expedited else (),
            )
            out = encode_tpkt(encode_tpdu(cr))
            if plain:
                if len(_CR_CACHE) >= _CC_CACHE_MAX:
                    _CR_CACHE.clear()
                _CR_CACHE[key] = (cr, out)
        self._request, self.calling_tsap, self.called_tsap = cr, calling_tsap, called_tsap
        self.state = ConnectionState.AWAITING_CC
        return out

    def accept(self, max_tpdu_size: int | None = None) -> bytes:
        """(Responder) Return the TPKT-framed CC answering the pending CR.

        The TPDU size is the smaller of the proposal (128 if none) and this
        side's maximum; the TSAPs and the parameter order are echoed.
        """
        cr = self._pending_request()
        ours = self.max_tpdu_size if max_tpdu_size is None else max_tpdu_size
        key = (id(cr), self.local_ref, ours, self.allow_expedited)
        known = _CC_CACHE.get(key)
        if known is not None and known[0] is cr:
            # The same CR (decode_tpdu shares one object per distinct CR) with the same
            # parameters: the same CC.
            out, size, expedited = known[1], known[2], known[3]
        else:
            out, size, expedited = self._confirm(cr, ours)
            if not cr.user_data:  # small: a CR with user data is not kept
                if len(_CC_CACHE) >= _CC_CACHE_MAX:
                    _CC_CACHE.clear()
                _CC_CACHE[key] = (cr, out, size, expedited)
        self.tpdu_size, self.expedited = size, expedited
        self.calling_tsap, self.called_tsap = cr.calling_tsap, cr.called_tsap
        self.state = ConnectionState.OPEN
        self._request = None
        return out

    def _confirm(self, cr: ConnectionRequest, ours: int) -> tuple[bytes, int, bool]:
        """The TPKT-framed CC answering *cr*, the TPDU size and whether expedited is agreed."""
        check_tpdu_size(ours)
        # (a CR may propose more than the TPDU size parameter of our CC can say: 0x0E..0x10)
        classic = min(cr.tpdu_size_octets or CLASS0_DEFAULT_TPDU_SIZE, ours, CLASSIC_MAX_TPDU_SIZE)
        preferred = cr.preferred_max_tpdu_octets
        size = code_size = classic
        if preferred is not None and ours > CLASSIC_MAX_TPDU_SIZE:
            size = max(classic, min(preferred, ours) // 128 * 128)
        if preferred is not None and 128 <= preferred < classic:
            # A preferred maximum below the TPDU size code: the initiator takes no more
            # than that, whichever of the two it reads first.  Our CC says it in both.
            size = preferred
            code_size = 1 << (size.bit_length() - 1)
        expedited = self.allow_expedited and _wants_expedited(cr)
        options = (_EXPEDITED_PARAM,)
        cc = ConnectionConfirm(
            dst_ref=cr.src_ref,
            src_ref=self.local_ref,
            calling_tsap=cr.calling_tsap,
            called_tsap=cr.called_tsap,
            tpdu_size=None if cr.tpdu_size is None else tpdu_size_code(code_size),
            preferred_max_tpdu_size=size // 128 if size != code_size else None,
            other_params=options if expedited else (),
            param_order=cr.param_order,
        )
        return encode_tpkt(encode_tpdu(cc)), size, expedited

    def refuse(self, reason: int = DisconnectReason.NOT_SPECIFIED) -> bytes:
        """(Responder) Return the TPKT-framed DR refusing the pending CR."""
        cr = self._pending_request()
        out = encode_tpkt(encode_tpdu(DisconnectRequest(cr.src_ref, self.local_ref, reason)))
        self.state = ConnectionState.CLOSED
        return out

    @property
    def idle(self) -> bool:
        """Open, with no partial TPKT or partial TSDU held: the byte stream is at a TPDU
        boundary and between TSDUs (a binding may then parse DTs itself)."""
        return (
            self.state is ConnectionState.OPEN
            and (self._parser is None or not self._parser.buffered)
            and (self._assembler is None or not self._assembler.pending)
        )

    def session_open(self) -> None:
        """The session is set up (AC sent or received): from now on a received TSDU is
        bounded by *max_tsdu_size* alone."""
        self._limit = self._max_tsdu
        if self._assembler is not None:
            self._assembler.max_tsdu_size = self._max_tsdu

    def compact(self) -> None:
        """Open and :attr:`idle`: drop the stream's readers (a binding whose own DT parser
        reads an idle session's stream keeps none of them); the next :meth:`receive_data`
        makes them again."""
        if self.idle and (self._parser is None or self._parser.error is None):
            self._parser = self._assembler = None

    def hand_over(self) -> bytes | None:
        """Between TSDUs (none partly reassembled), give up the octets of the partial TPDU
        held, so that a binding's own DT parser continues the stream from here; None when
        a TSDU is partly reassembled (then wait for its end)."""
        if self.state is not ConnectionState.OPEN:
            return None
        parser, assembler = self._parser, self._assembler
        if parser is None or assembler is None:
            return b""  # (compacted: nothing is held)
        if assembler.pending or parser.error is not None:
            return None
        return parser.take()

    def send_tsdu(self, tsdu: bytes) -> bytes:
        """Return *tsdu* as TPKT-framed DT TPDUs of at most the negotiated size."""
        self._require(self.role, ConnectionState.OPEN, "send a TSDU")
        assert self.tpdu_size is not None
        if len(tsdu) + DT_HEADER_SIZE <= self.tpdu_size:  # one DT: TPKT + DT header + TSDU
            return _TPKT_HEAD.pack(3, 0, len(tsdu) + _ONE_DT_OVERHEAD) + DT_EOT_HEADER + tsdu
        return b"".join(encode_tpkt(dt) for dt in segment_tsdu(tsdu, self.tpdu_size))

    def send_early(self, tsdu: bytes) -> bytes:
        """(Initiator, CR sent, CC not yet come) Return *tsdu* as TPKT-framed DT TPDUs of at
        most 128 octets, the size every class 0 responder takes: a CN sent right behind
        the CR, to a responder known to read it once it accepted the CR (fast connect,
        between sessionlayer peers; ISO 8073 itself waits for the CC)."""
        self._require("initiator", ConnectionState.AWAITING_CC, "send a TSDU before the CC")
        return b"".join(encode_tpkt(dt) for dt in segment_tsdu(tsdu, CLASS0_DEFAULT_TPDU_SIZE))

    def send_expedited(self, data: bytes) -> bytes:
        """Return *data* (1..16 octets) as one TPKT-framed ED TPDU."""
        self._require(self.role, ConnectionState.OPEN, "send expedited data")
        if not self.expedited:
            raise LocalError("expedited data was not agreed on this connection")
        return encode_tpkt(encode_tpdu(ExpeditedData(bytes(data))))

    # ------------------------------------------------------------ receiving

    def receive_data(self, data: bytes) -> list[TransportEvent]:
        """Feed bytes read from TCP; return the events they complete."""
        if self._error is not None:
            raise self._error
        events: list[TransportEvent] = []
        if self.state is ConnectionState.CLOSED:
            return events
        parser = self._parser
        if parser is None:  # (compacted)
            parser = self._parser = TpktParser()
            self._assembler = TsduAssembler(self._limit)
        try:
            if self.state is ConnectionState.AWAITING_ACCEPT:
                parser.hold(data)  # (read once the CR was answered)
                self._check_early()
                return events
            payloads = parser.feed(data)
            for i, payload in enumerate(payloads):
                events.extend(self._handle(decode_tpdu(payload)))
                if not events:
                    continue
                last = events[-1]
                if isinstance(last, TransportDisconnected):
                    return events  # what follows a DR or ER is not read
                if isinstance(last, ConnectRequested):
                    # What came behind the CR (a sessionlayer initiator's CN: fast
                    # connect) waits for accept(): the next receive_data reads it.
                    parser.unread(payloads[i + 1 :])
                    self._check_early()
                    return events
            if parser.error is not None:  # a bad TPKT header after those payloads
                raise parser.error
        except DecodeError as exc:
            self._error, self.state = exc, ConnectionState.FAILED
            raise
        return events

    def _check_early(self) -> None:
        if self._parser is not None and self._parser.buffered > EARLY_DATA_MAX:
            raise DecodeError(
                f"more than {EARLY_DATA_MAX} octets behind the CR before it was answered"
            )

    def connection_lost(self) -> list[TransportEvent]:
        """TCP closed: return the disconnect event, if the connection was not over."""
        if self.state in (ConnectionState.CLOSED, ConnectionState.FAILED):
            return []
        clean = self.idle
        self.state = ConnectionState.CLOSED
        reason = DisconnectReason.NORMAL if clean else DisconnectReason.NOT_SPECIFIED
        return [TransportDisconnected(reason)]

    def _handle(self, tpdu: TPDU) -> list[TransportEvent]:
        if isinstance(tpdu, DisconnectRequest | Error):
            return self._disconnected(tpdu)
        state = self.state
        if state is ConnectionState.OPEN and isinstance(tpdu, Data):
            assert self._assembler is not None  # (receive_data made it)
            tsdu = self._assembler.feed(tpdu)
            return [] if tsdu is None else [TsduReceived(tsdu)]
        if state is ConnectionState.OPEN and isinstance(tpdu, ExpeditedData):
            if not self.expedited:  # (RFC 1006 5: only where the CR and CC agreed it)
                raise DecodeError("ED TPDU, but expedited data was not agreed")
            return [ExpeditedReceived(tpdu.user_data)]
        if state is ConnectionState.AWAITING_CC and isinstance(tpdu, ConnectionConfirm):
            return [self._confirmed(tpdu)]
        if (
            state is ConnectionState.IDLE
            and self.role == "responder"
            and isinstance(tpdu, ConnectionRequest)
        ):
            if tpdu.protocol_class > 4:
                # ISO 8073 13.3.3: classes 0..4 only; another value in the class and option
                # parameter is a protocol error (a CR proposing 2..4 is answered in class 0).
                raise DecodeError(f"CR proposes protocol class {tpdu.protocol_class}, not 0..4")
            if tpdu.user_data and tpdu.protocol_class == 0:  # (ISO 8073 13.3.2)
                raise DecodeError("CR of class 0 with user data (class 0 has none)")
            self._request, self.state = tpdu, ConnectionState.AWAITING_ACCEPT
            return [ConnectRequested(tpdu)]
        raise DecodeError(f"unexpected {type(tpdu).__name__} TPDU in state {state.value}")

    def _confirmed(self, cc: ConnectionConfirm) -> TransportConnected:
        if cc.protocol_class != 0:
            raise DecodeError(f"CC selects protocol class {cc.protocol_class}, not 0")
        assert self._request is not None
        proposed = self._request.tpdu_size_octets or CLASS0_DEFAULT_TPDU_SIZE
        size = min(proposed, cc.tpdu_size_octets or CLASS0_DEFAULT_TPDU_SIZE)
        offered, chosen = self._request.preferred_max_tpdu_octets, cc.preferred_max_tpdu_octets
        if offered is not None and chosen is not None and chosen > offered:
            raise DecodeError(f"CC chose a TPDU size of {chosen}, above the {offered} offered")
        # A larger size than the code's where we offered one; a smaller one always (a
        # preferred maximum below the TPDU size code: the responder takes no more).
        if chosen is not None and chosen >= 128 and (chosen < size or offered is not None):
            size = chosen
        self.tpdu_size = size
        self.expedited = _wants_expedited(self._request) and _wants_expedited(cc)
        if cc.calling_tsap is not None:
            self.calling_tsap = cc.calling_tsap
        if cc.called_tsap is not None:
            self.called_tsap = cc.called_tsap
        self.state = ConnectionState.OPEN
        self._request = None  # negotiated: nothing of the CR is needed any more
        return TransportConnected(size, self.calling_tsap, self.called_tsap, self.expedited)

    def _disconnected(self, tpdu: DisconnectRequest | Error) -> list[TransportEvent]:
        if self.state is ConnectionState.IDLE and self.role == "responder":
            raise DecodeError(f"{type(tpdu).__name__} TPDU before any CR")
        self.state = ConnectionState.CLOSED
        if isinstance(tpdu, Error):
            return [TransportDisconnected(DisconnectReason.PROTOCOL_ERROR, tpdu)]
        return [TransportDisconnected(tpdu.reason, tpdu)]

    # ------------------------------------------------------------ helpers

    def _require(self, role: Role, state: ConnectionState, action: str) -> None:
        if self.role != role:
            raise LocalError(f"only the {role} can {action}")
        if self.state is not state:
            raise LocalError(f"cannot {action} in state {self.state.value}")

    def _pending_request(self) -> ConnectionRequest:
        self._require("responder", ConnectionState.AWAITING_ACCEPT, "answer a CR")
        assert self._request is not None
        return self._request


#: accept()'s answers: (id of the CR, local reference, TPDU size, expedited allowed) ->
#: (that CR, the CC, the TPDU size, expedited agreed).  The CR is held, so its id stays its own.
_CC_CACHE: dict[tuple[int, int, int, bool], tuple[ConnectionRequest, bytes, int, bool]] = {}
_KEYABLE = (bytes, type(None))  #: TSAP types that key _CR_CACHE (a bytearray does not)
_CC_CACHE_MAX = 64
#: connect()'s CRs: (local reference, calling TSAP, called TSAP, TPDU size, expedited) ->
#: (the CR, its octets).
_CR_CACHE: dict[
    tuple[int, bytes | None, bytes | None, int, bool], tuple[ConnectionRequest, bytes]
] = {}


_TPKT_HEAD = struct.Struct(">BBH")
_ONE_DT_OVERHEAD = TPKT_HEADER_SIZE + DT_HEADER_SIZE


def check_tpdu_size(octets: int) -> None:
    """A TPDU size this side may use: up to 8192 a power of 2 from 128 (the TPDU size
    parameter says only those; it is all that is sent); above 8192 a multiple of 128 up
    to 65408 (the preferred maximum TPDU size parameter, ISO 8073 13.3.4, sent beside a
    TPDU size of 8192; 65408 is the largest that fits a TPKT)."""
    if octets <= CLASSIC_MAX_TPDU_SIZE:
        tpdu_size_code(octets)
    elif octets % 128 or octets > MAX_TPDU_SIZE:
        raise LocalError(
            f"TPDU size {octets}: above 8192 it must be a multiple of 128 up to {MAX_TPDU_SIZE}"
        )


def _wants_expedited(tpdu: ConnectionRequest | ConnectionConfirm) -> bool:
    code = ParameterCode.ADDITIONAL_OPTION_SELECTION
    return any(
        p.code == code and bool(p.value) and bool(p.value[-1] & _EXPEDITED_OPTION)
        for p in tpdu.other_params
    )
