"""What the machine reports to its user: one frozen dataclass per X.215 indication/confirm."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import AbortReason
from ..spdu.codes import FunctionalUnit, ResyncType, Token, TokenSetting
from ..spdu.types import ConnectionId, LinkingInformation

__all__ = [
    "Event",
    "ConnectIndication",
    "ConnectConfirm",
    "RefuseConfirm",
    "DataIndication",
    "TypedDataIndication",
    "ExpeditedDataIndication",
    "CapabilityDataIndication",
    "CapabilityDataConfirm",
    "TokenGiveIndication",
    "TokenPleaseIndication",
    "ControlGiveIndication",
    "MinorSyncIndication",
    "MinorSyncConfirm",
    "MinorSyncSuperseded",
    "MajorSyncIndication",
    "MajorSyncConfirm",
    "ResyncIndication",
    "ResyncConfirm",
    "UserExceptionReportIndication",
    "ProviderExceptionReportIndication",
    "ActivityStartIndication",
    "ActivityResumeIndication",
    "ActivityInterruptIndication",
    "ActivityInterruptConfirm",
    "ActivityDiscardIndication",
    "ActivityDiscardConfirm",
    "ActivityEndIndication",
    "ActivityEndConfirm",
    "ReleaseIndication",
    "ReleaseConfirm",
    "UserAbortIndication",
    "ProviderAbortIndication",
]


@dataclass(frozen=True)
class Event:
    """Base class of everything ``next_event()`` returns."""


@dataclass(frozen=True)
class ConnectIndication(Event):
    """S-CONNECT indication (CN received).  Answer with ``accept()`` or ``refuse()``."""

    user_data: bytes | None
    connection_id: ConnectionId | None
    calling_ssel: bytes | None
    called_ssel: bytes | None
    functional_units: FunctionalUnit  #: what the CN proposed
    versions: int  #: Version bits the CN offered
    token_setting: dict[Token, TokenSetting]  #: proposed placement of the available tokens
    initial_serial: int | None
    tsdu_max_size: tuple[int, int] | None  #: (initiator->responder, responder->initiator)
    second_initial_serial: int | None = None  #: PI 55 (symmetric synchronize)


@dataclass(frozen=True)
class ConnectConfirm(Event):
    """S-CONNECT confirm, accepted (AC received)."""

    user_data: bytes | None
    connection_id: ConnectionId | None
    responding_ssel: bytes | None
    functional_units: FunctionalUnit  #: negotiated
    version: int
    tokens: Token  #: tokens this end holds now
    initial_serial: int | None
    second_initial_serial: int | None = None  #: responder-to-initiator flow (symmetric sync)


@dataclass(frozen=True)
class RefuseConfirm(Event):
    """S-CONNECT confirm, rejected (RF received).  ``reason`` is the RF Reason Code."""

    reason: int | None
    user_data: bytes | None


@dataclass(frozen=True)
class DataIndication(Event):
    """S-DATA indication (DT, reassembled when segmented)."""

    data: bytes


@dataclass(frozen=True)
class TypedDataIndication(Event):
    """S-TYPED-DATA indication (TD)."""

    data: bytes


@dataclass(frozen=True)
class ExpeditedDataIndication(Event):
    """S-EXPEDITED-DATA indication (EX)."""

    data: bytes


@dataclass(frozen=True)
class CapabilityDataIndication(Event):
    """S-CAPABILITY-DATA indication (CD).  Answer with ``capability_data_response()``."""

    user_data: bytes | None


@dataclass(frozen=True)
class CapabilityDataConfirm(Event):
    """S-CAPABILITY-DATA confirm (CDA)."""

    user_data: bytes | None


@dataclass(frozen=True)
class TokenGiveIndication(Event):
    """S-TOKEN-GIVE indication: the peer gave these tokens (GT), with the GT's user data
    (version 2 only)."""

    tokens: Token
    user_data: bytes | None = None


@dataclass(frozen=True)
class TokenPleaseIndication(Event):
    """S-TOKEN-PLEASE indication: the peer asks for these tokens (PT)."""

    tokens: Token
    user_data: bytes | None


@dataclass(frozen=True)
class ControlGiveIndication(Event):
    """S-CONTROL-GIVE indication: every available token is now ours (GTC)."""


@dataclass(frozen=True)
class MinorSyncIndication(Event):
    """S-SYNC-MINOR indication (MIP).  With symmetric synchronize ``serial`` numbers the
    peer's sending flow; ``data_separation`` is set for a data-separation sync point."""

    serial: int
    confirm_required: bool
    user_data: bytes | None
    data_separation: bool = False


@dataclass(frozen=True)
class MinorSyncConfirm(Event):
    """S-SYNC-MINOR confirm (MIA): every point up to ``serial`` is confirmed."""

    serial: int
    user_data: bytes | None


@dataclass(frozen=True)
class MinorSyncSuperseded(Event):
    """Not an X.215 primitive: our confirmed minor sync point ``serial`` will get no MIA.
    The peer's major sync point or activity end (serial ``major``, ``activity_end``) came
    before it answered ours, and settles it (X.225 Table A-4: V(A) = V(M); with symmetric
    synchronize [64] once answered, and the peer has no S-SYNC-MINOR response while its
    point waits).  Without symmetric synchronize the peer's own minor sync point does the
    same (``major`` None).  Comes just before that indication."""

    serial: int
    major: int | None
    activity_end: bool = False


@dataclass(frozen=True)
class MajorSyncIndication(Event):
    """S-SYNC-MAJOR indication (MAP).  Answer with ``major_sync_response()``."""

    serial: int
    user_data: bytes | None


@dataclass(frozen=True)
class MajorSyncConfirm(Event):
    """S-SYNC-MAJOR confirm (MAA)."""

    serial: int
    user_data: bytes | None


@dataclass(frozen=True)
class ResyncIndication(Event):
    """S-RESYNCHRONIZE indication (RS).  Answer with ``resync_response()``.

    ``tokens`` is the proposed placement seen from the requestor: INITIATOR = the resync
    requestor's side, RESPONDER = this side, CALLED_CHOICE = this user's choice.  With
    symmetric synchronize ``type``/``serial`` concern this side's sending flow and
    ``second_type``/``second_serial`` its receiving flow (None otherwise).

    ``collision`` is True when this RS collided with this side's own S-RESYNCHRONIZE
    request and won (X.225 7.24): that request is dropped and gets no ResyncConfirm; the
    resynchronization that happens is this one, once answered.
    """

    type: ResyncType
    serial: int
    tokens: dict[Token, TokenSetting]
    user_data: bytes | None
    second_type: ResyncType | None = None
    second_serial: int | None = None
    collision: bool = False


@dataclass(frozen=True)
class ResyncConfirm(Event):
    """S-RESYNCHRONIZE confirm (RA).  With symmetric synchronize ``serial`` is this side's
    sending flow and ``second_serial`` its receiving flow."""

    serial: int
    tokens: Token  #: tokens this end holds after the resynchronization
    user_data: bytes | None
    second_serial: int | None = None


@dataclass(frozen=True)
class UserExceptionReportIndication(Event):
    """S-U-EXCEPTION-REPORT indication (ED).  Recover: resync, activity interrupt/discard,
    give the data token, or abort."""

    reason: int
    user_data: bytes | None


@dataclass(frozen=True)
class ProviderExceptionReportIndication(Event):
    """S-P-EXCEPTION-REPORT indication: ER received, or (``local``) this machine sent ER
    for the SPDU whose first octets ``reflect`` holds.  Recovery follows (X.225 7.27)."""

    reflect: bytes
    local: bool = False


@dataclass(frozen=True)
class ActivityStartIndication(Event):
    """S-ACTIVITY-START indication (AS)."""

    activity_id: bytes
    user_data: bytes | None


@dataclass(frozen=True)
class ActivityResumeIndication(Event):
    """S-ACTIVITY-RESUME indication (AR)."""

    activity_id: bytes
    old_activity_id: bytes
    serial: int
    linking: LinkingInformation
    user_data: bytes | None


@dataclass(frozen=True)
class ActivityInterruptIndication(Event):
    """S-ACTIVITY-INTERRUPT indication (AI).  Answer with ``activity_interrupt_response()``."""

    reason: int | None
    user_data: bytes | None


@dataclass(frozen=True)
class ActivityInterruptConfirm(Event):
    """S-ACTIVITY-INTERRUPT confirm (AIA)."""

    user_data: bytes | None


@dataclass(frozen=True)
class ActivityDiscardIndication(Event):
    """S-ACTIVITY-DISCARD indication (AD).  Answer with ``activity_discard_response()``."""

    reason: int | None
    user_data: bytes | None


@dataclass(frozen=True)
class ActivityDiscardConfirm(Event):
    """S-ACTIVITY-DISCARD confirm (ADA)."""

    user_data: bytes | None


@dataclass(frozen=True)
class ActivityEndIndication(Event):
    """S-ACTIVITY-END indication (AE).  Answer with ``activity_end_response()``."""

    serial: int
    user_data: bytes | None


@dataclass(frozen=True)
class ActivityEndConfirm(Event):
    """S-ACTIVITY-END confirm (AEA)."""

    serial: int
    user_data: bytes | None


@dataclass(frozen=True)
class ReleaseIndication(Event):
    """S-RELEASE indication (FN).  Answer with ``release_response()``."""

    user_data: bytes | None


@dataclass(frozen=True)
class ReleaseConfirm(Event):
    """S-RELEASE confirm: DN (``accepted``) or NF (not)."""

    accepted: bool
    user_data: bytes | None


@dataclass(frozen=True)
class UserAbortIndication(Event):
    """S-U-ABORT indication (AB from the peer's user)."""

    user_data: bytes | None


@dataclass(frozen=True)
class ProviderAbortIndication(Event):
    """S-P-ABORT indication: a protocol error (either side), or the transport went away.

    ``reason`` is the Transport Disconnect value: received in the peer's AB, or the one this
    machine sent.  ``local`` is True when this machine detected the error and sent the AB;
    ``lost`` when no AB came at all: the transport connection went away (T-DISCONNECT).
    ``silent`` (with ``local``) when this side found the error but sent no AB: the
    transport connection was dropped as it was (broken TPKT framing before the COTP CC, or
    no connection open to carry it).
    """

    reason: AbortReason
    message: str = ""
    local: bool = False
    lost: bool = False
    silent: bool = False
