"""Every exception sessionlayer raises, and the wire reason codes they carry.

Two kinds, as in h11 and aioquic:

* :class:`LocalError` -- the caller asked for something that is not allowed
  (an invalid SPDU to encode, a primitive in the wrong state, a token it does
  not hold).  Raised at once; nothing is sent.
* :class:`RemoteError` -- the peer broke the protocol (malformed bytes, an
  SPDU that is not valid in this state).  Each carries the X.225 reason the
  session must abort with, so the caller can put it on the wire unchanged.

:class:`ResyncCollisionLost` is neither: a request the protocol itself
overruled (the peer's colliding resynchronization won), the session goes on.

This module imports nothing from the rest of the package.
"""

from __future__ import annotations

import enum

__all__ = [
    "AbortReason",
    "RefuseReason",
    "SessionLayerError",
    "LocalError",
    "EncodeError",
    "RemoteError",
    "DecodeError",
    "ResyncCollisionLost",
]


class AbortReason(enum.IntFlag):
    """Transport Disconnect PV (PI 17) bits, X.225 8.3.9.

    Carried in AB (and in FN/RF for the transport-release bit).
    """

    TRANSPORT_RELEASED = 0x01  #: 1 = transport connection released, 0 = kept
    USER_ABORT = 0x02
    PROTOCOL_ERROR = 0x04
    NO_REASON = 0x08
    IMPLEMENTATION_RESTRICTION = 0x10


class RefuseReason(enum.IntEnum):
    """Reason Code PV (PI 50) in a REFUSE SPDU, X.225 8.3.5."""

    USER_NO_REASON = 0x00
    USER_CONGESTION = 0x01
    USER_DATA = 0x02  #: rejected by the called SS-user; user data follows
    SSEL_UNKNOWN = 0x81
    USER_NOT_ATTACHED = 0x82
    SPM_CONGESTION = 0x83
    VERSION_NOT_SUPPORTED = 0x84
    SPM_NO_REASON = 0x85
    IMPLEMENTATION_RESTRICTION = 0x86


class SessionLayerError(Exception):
    """Base class of every error sessionlayer raises on purpose."""


class LocalError(SessionLayerError):
    """The local user asked for something not allowed; nothing was sent."""


class EncodeError(LocalError, ValueError):
    """The encoder refused to build an invalid SPDU or TPDU."""


class RemoteError(SessionLayerError):
    """The peer broke the protocol.

    ``reason`` is the Transport Disconnect value the session aborts with
    (an :class:`AbortReason`); ``reflect`` up to 9 octets of the offending
    SPDU for the Reflect Parameter Values PI of the AB SPDU.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: AbortReason = AbortReason.TRANSPORT_RELEASED | AbortReason.PROTOCOL_ERROR,
        reflect: bytes = b"",
    ) -> None:
        super().__init__(message)
        self.reason = AbortReason(reason)
        self.reflect = bytes(reflect[:9])

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class DecodeError(RemoteError, ValueError):
    """Bytes from the peer are not a valid TPKT, TPDU or SPDU.

    This is the one exception every decoder in sessionlayer raises for bad
    input, whatever was wrong with it.  ``offset`` is the position in the
    input where the problem was found, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        offset: int | None = None,
        reason: AbortReason = AbortReason.TRANSPORT_RELEASED | AbortReason.PROTOCOL_ERROR,
        reflect: bytes = b"",
    ) -> None:
        super().__init__(message, reason=reason, reflect=reflect)
        self.offset = offset


class ResyncCollisionLost(SessionLayerError):
    """Our S-RESYNCHRONIZE request collided with the peer's, and the peer's won (X.225
    7.24): ours was dropped, the peer's was answered instead.  The session goes on.

    ``serial`` is the serial number the session was resynchronized to, ``tokens`` the
    tokens this side holds afterwards (:class:`~sessionlayer.Token` bits), ``type`` the
    winning request's resync type (:class:`~sessionlayer.ResyncType` value) and
    ``user_data`` its user data.
    """

    def __init__(
        self, message: str, *, serial: int, tokens: int, type: int, user_data: bytes | None
    ) -> None:
        super().__init__(message)
        self.serial = serial
        self.tokens = tokens
        self.type = type
        self.user_data = user_data
