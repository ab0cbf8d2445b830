"""RFC 1006 framing, sans-I/O: TPKT, ISO 8073 class 0 TPDUs, TSDU segmenting,
a transport connection object, and the S-DATA fast path that short-cuts them
(:mod:`sessionlayer.transport.fastpath`).  Nothing here touches a socket or a clock.
"""

from __future__ import annotations

from sessionlayer.transport.connection import (
    DEFAULT_TPDU_SIZE,
    ConnectionState,
    ConnectRequested,
    ExpeditedReceived,
    Rfc1006Connection,
    TransportConnected,
    TransportDisconnected,
    TransportEvent,
    TsduReceived,
)
from sessionlayer.transport.cotp import (
    DT_EOT_HEADER,
    DT_HEADER_SIZE,
    DT_MORE_HEADER,
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
    RejectCause,
    TpduCode,
    decode_tpdu,
    encode_tpdu,
    tpdu_size_code,
)
from sessionlayer.transport.fastpath import PlainReader, frame_data, frame_pieces
from sessionlayer.transport.reassembly import (
    DEFAULT_MAX_TSDU_SIZE,
    TsduAssembler,
    segment_tsdu,
    tsdu_too_large,
)
from sessionlayer.transport.tpkt import (
    MAX_TPKT_PAYLOAD,
    TPKT_HEADER_SIZE,
    TPKT_VERSION,
    TpktParser,
    encode_tpkt,
)

__all__ = [
    "DEFAULT_MAX_TSDU_SIZE",
    "DEFAULT_TPDU_SIZE",
    "DT_EOT_HEADER",
    "DT_HEADER_SIZE",
    "DT_MORE_HEADER",
    "MAX_TPKT_PAYLOAD",
    "TPDU",
    "TPKT_HEADER_SIZE",
    "TPKT_VERSION",
    "ConnectRequested",
    "ConnectionConfirm",
    "ConnectionRequest",
    "ConnectionState",
    "Data",
    "DisconnectReason",
    "DisconnectRequest",
    "Error",
    "ExpeditedData",
    "ExpeditedReceived",
    "Parameter",
    "ParameterCode",
    "PlainReader",
    "RejectCause",
    "Rfc1006Connection",
    "TpduCode",
    "TpktParser",
    "TransportConnected",
    "TransportDisconnected",
    "TransportEvent",
    "TsduAssembler",
    "TsduReceived",
    "decode_tpdu",
    "encode_tpdu",
    "encode_tpkt",
    "frame_data",
    "frame_pieces",
    "segment_tsdu",
    "tpdu_size_code",
    "tsdu_too_large",
]
