"""Every exception sessionlayer raises, and the wire reason codes they carry.

The whole hierarchy (this module imports nothing from the rest of the package)::

    SessionLayerError                 every error sessionlayer raises on purpose
    +-- LocalError                    the caller asked for something not allowed; nothing sent
    |   +-- EncodeError (ValueError)  an SPDU or TPDU that cannot be encoded
    |   +-- StateError                not allowed in the machine's X.225 state
    |   |   +-- TokenError            needs a token this side does not hold
    |   |   +-- FunctionalUnitError   its functional unit was not negotiated
    |   +-- ParameterError (ValueError)  an argument out of range
    +-- RemoteError                   the peer broke the protocol: .reason (AbortReason), .reflect
    |   +-- DecodeError (ValueError)  bytes that are not a valid TPKT, TPDU or SPDU: .offset
    +-- ConnectRefused                the responder sent RF: .reason (RefuseReason), .message
    +-- Refuse                        raised by a server's authenticate(): refuse with an RF
    +-- SessionAborted                S-U-ABORT or S-P-ABORT: .reason, .by_peer, .user_data
    |   +-- ResumeRefused             a lost session could not be resumed: .code (why)
    +-- SessionClosed                 released in order: no more data will come
    +-- ReleaseRefused                the peer answered FN with NF (negotiated release)
    +-- ResyncCollisionLost           our resync lost a collision; the session goes on
    +-- SyncPurged                    a resync or activity end purged our unconfirmed sync
    +-- SyncSuperseded                the peer's sync point settled our unconfirmed minor one
    +-- CheckpointRestored            (recovery) the peer went back to a checkpoint: .serial
    +-- StoreUnavailable              a session store cannot answer: .store, .why, .corrupt

Local errors are raised at once and change nothing; remote errors never reach a session
user (the binding turns them into an abort with their reason code, X.225 7.9).
"""

from __future__ import annotations

import enum

__all__ = [
    "AbortReason",
    "RefuseReason",
    "SessionLayerError",
    "LocalError",
    "EncodeError",
    "StateError",
    "TokenError",
    "FunctionalUnitError",
    "ParameterError",
    "RemoteError",
    "DecodeError",
    "ConnectRefused",
    "Refuse",
    "SessionAborted",
    "ResumeRefused",
    "SessionClosed",
    "ReleaseRefused",
    "ResyncCollisionLost",
    "SyncPurged",
    "SyncSuperseded",
    "CheckpointRestored",
    "StoreUnavailable",
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


class StateError(LocalError):
    """The primitive is not allowed in the machine's current X.225 state."""


class TokenError(StateError):
    """The primitive needs a token this user does not hold (or gives one it does not hold)."""


class FunctionalUnitError(StateError):
    """The primitive belongs to a functional unit that was not negotiated."""


class ParameterError(LocalError, ValueError):
    """An argument is invalid (serial number out of range, user data too long, ...)."""


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


class SyncPurged(SessionLayerError):
    """Our synchronization point was never confirmed: a resynchronization (either side's),
    or the interruption or discard of the activity, purged it first (X.215: the sync
    points not yet confirmed are abandoned).  Raised by the ``sync()`` that set it; the
    session goes on."""


class SyncSuperseded(SessionLayerError):
    """Our confirmed minor synchronization point will never be confirmed: the peer set a
    major sync point (MAP) or ended the activity (AE) before it answered ours, and that
    settles it (X.225 Table A-4: V(A) = V(M) on the MAP or AE, and [64] when it is
    answered; the peer has no S-SYNC-MINOR response while its own major point waits).
    Without symmetric synchronize the peer's own minor sync point does the same.  Unlike
    :class:`SyncPurged` nothing was thrown away: the data before the point goes on as
    sent, only its confirmation never comes.  Raised by the ``sync()`` that set it; the
    session goes on.

    ``serial`` is our minor sync point's serial number, ``major`` the serial number of the
    peer's major sync point or activity end that superseded it (None: the peer's minor sync
    point did), ``activity_end`` whether it was an activity end.
    """

    def __init__(self, message: str, *, serial: int, major: int | None,
                 activity_end: bool = False) -> None:  # fmt: skip
        super().__init__(message)
        self.serial = serial
        self.major = major
        self.activity_end = activity_end


class ConnectRefused(SessionLayerError):
    """The responder refused the session (an RF SPDU).

    ``reason`` is the RF reason code (:class:`RefuseReason` value); ``message`` the
    responder's text, when it gave one (``text``), else what the error says.
    """

    def __init__(self, message: str, reason: int, user_data: bytes | None = None, *,
                 text: str | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.reason = reason
        self.message = text if text else message
        self.user_data = user_data


class Refuse(SessionLayerError):
    """Raise from a server's ``authenticate`` to refuse a session with a reason."""

    def __init__(self, message: str, reason: int = RefuseReason.USER_DATA) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason


class SessionAborted(SessionLayerError):
    """The session was aborted (S-U-ABORT or S-P-ABORT).

    ``reason`` is the X.225 Transport Disconnect value (:class:`AbortReason`);
    ``by_peer`` says whether the peer's user asked for it.
    """

    def __init__(self, message: str, reason: int = 0, *, by_peer: bool = False,
                 user_data: bytes | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.reason = AbortReason(reason)
        self.by_peer = by_peer
        self.user_data = user_data


class ResumeRefused(SessionAborted):
    """A session whose transport connection was lost could not be resumed: it is over.

    ``code`` says why, one of :attr:`CODES`: ``unknown`` (no such session), ``expired``
    (it waited for its client longer than allowed), ``token_invalid`` (forged or
    malformed), ``token_replayed`` (an older token of a resumed session), ``wrong_identity``
    (another identity presented it), ``retention_overflow`` (more was left unconfirmed than
    the limit), ``ended`` (the server ended it while its client was away: the message
    says why), ``released`` (it ended in an orderly release whose last answer was lost with
    the connection: the client ends the session as released, it raises nothing),
    ``no_store`` (the server holds no such session and has no store that could),
    ``store_unavailable`` (the store did not answer: a server's refusal saying so is not
    final, the client tries again until it gives up), ``corrupt`` (the store holds the
    session's record but cannot read it: it will not heal, so this is final; the message
    names the record), ``gave_up`` (no server could be reached before
    ``Options.resume_give_up``), ``refused`` (the server refused it).
    """

    CODES = (
        "unknown", "expired", "token_invalid", "token_replayed", "wrong_identity",
        "retention_overflow", "ended", "released", "no_store", "store_unavailable", "corrupt",
        "gave_up", "refused",
    )  # fmt: skip

    def __init__(self, message: str, code: str = "refused") -> None:
        super().__init__(message, AbortReason.TRANSPORT_RELEASED | AbortReason.NO_REASON)
        self.code = code if code in self.CODES else "refused"


class SessionClosed(SessionLayerError):
    """The session ended by an orderly release; no more data will come."""


class ReleaseRefused(SessionLayerError):
    """The peer answered our FINISH with NOT FINISHED (negotiated release)."""


class CheckpointRestored(SessionLayerError):
    """(Recovery) The server lost the session's live state (a restart, the loss of its
    node) and the session was resumed from its last checkpoint: raised once by
    ``receive()`` (and ``async for``) after the data that came before the loss, and once
    by the next request of any kind (``send()``, ``sync()``, ``release()``, ...), so the
    application cannot miss it.  The session goes on.

    ``serial`` is the checkpoint's serial number (the last confirmed major sync point)
    and ``user_data`` its user data; None for both when no checkpoint was confirmed (back
    to the session's start).  What either side sent after it was dropped, the messages
    ``send()`` kept while the session was detached included (it returned for them): send
    it again from the state the checkpoint records.
    """

    def __init__(self, message: str, *, serial: int | None, user_data: bytes | None) -> None:
        super().__init__(message)
        self.serial = serial
        self.user_data = user_data


class StoreUnavailable(SessionLayerError):
    """A session store (:mod:`sessionlayer.stores`) cannot answer: its backend is down,
    unreachable, too slow, locked by another process, or the store was closed; or a
    record it holds cannot be read (corrupt).

    ``store`` is the store's name (``"sqlite:/var/lib/app/sessions.db"``,
    ``"redis://10.0.0.5:6379/0"``), ``why`` what went wrong.  ``corrupt`` is the id of
    the session whose record is corrupt when that is what went wrong (it will not heal:
    asking again gives the same), else None.  Nothing can be said about whether a write
    that raised it took effect.
    """

    def __init__(self, store: str, why: str, *, corrupt: str | None = None) -> None:
        super().__init__(f"session store {store} unavailable: {why}")
        self.store = store
        self.why = why
        self.corrupt = corrupt
