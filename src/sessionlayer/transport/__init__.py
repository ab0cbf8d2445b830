"""RFC 1006 framing, sans-I/O: TPKT, ISO 8073 class 0 TPDUs, TSDU segmenting,
and a transport connection object.  Nothing here touches a socket or a clock.
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
from sessionlayer.transport.reassembly import (
    DEFAULT_MAX_TSDU_SIZE,
    DT_HEADER_SIZE,
    TsduAssembler,
    segment_tsdu,
)
from sessionlayer.transport.tpkt import MAX_TPKT_PAYLOAD, TPKT_HEADER_SIZE, TpktParser, encode_tpkt

__all__ = [
    "DEFAULT_MAX_TSDU_SIZE",
    "DEFAULT_TPDU_SIZE",
    "DT_HEADER_SIZE",
    "MAX_TPKT_PAYLOAD",
    "TPDU",
    "TPKT_HEADER_SIZE",
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
    "segment_tsdu",
    "tpdu_size_code",
]
