"""What each X.215 indication or confirm on one leg becomes on the other, sans I/O: one
function per service, ``(event, this leg's machine, the other leg's machine)``.

These are the services that need nothing but the two machines; the bridge keeps the ones
with state of its own (release, resynchronize) and connect and abort.  A function raises
the ``LocalError`` the other machine raises when the request is not allowed there (the
bridge then aborts both legs); a sync point's function returns ``(service, the serial on
this leg, the serial on the other)`` for the bridge to compare (both legs number alike).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

from ..errors import LocalError
from ..machine import SessionMachine
from ..machine import events as ev
from ..spdu.types import ConnectionId

__all__ = ["SERVICES", "Service", "Checked"]

#: None, or (the service, its serial number on this leg, the one the other leg gave it).
Checked: TypeAlias = tuple[str, int, int] | None
Service: TypeAlias = Callable[[Any, SessionMachine, SessionMachine], Checked]
M: TypeAlias = SessionMachine


def _data(event: ev.DataIndication, mine: M, other: M) -> Checked:
    other.send_data(event.data)
    return None


def _typed(event: ev.TypedDataIndication, mine: M, other: M) -> Checked:
    other.send_typed_data(event.data)
    return None


def _expedited(event: ev.ExpeditedDataIndication, mine: M, other: M) -> Checked:
    other.send_expedited(event.data)
    return None


def _give(event: ev.TokenGiveIndication, mine: M, other: M) -> Checked:
    other.give_tokens(event.tokens, event.user_data)
    return None


def _please(event: ev.TokenPleaseIndication, mine: M, other: M) -> Checked:
    other.please_tokens(event.tokens, event.user_data)
    return None


def _control(event: ev.ControlGiveIndication, mine: M, other: M) -> Checked:
    other.give_control()
    return None


def _minor(event: ev.MinorSyncIndication, mine: M, other: M) -> Checked:
    serial = other.minor_sync(confirm=event.confirm_required, user_data=event.user_data,
                              data_separation=event.data_separation)  # fmt: skip
    return "S-SYNC-MINOR", event.serial, serial


def _minor_confirm(event: ev.MinorSyncConfirm, mine: M, other: M) -> Checked:
    other.minor_sync_response(event.serial, event.user_data)
    return None


def _superseded(event: ev.MinorSyncSuperseded, mine: M, other: M) -> Checked:
    """Nothing to relay: the minor sync point this leg's peer superseded (its MAP or AE
    crossed it) was the other peer's, which sees the same MAP or AE relayed, behind its
    own point, and ends that point itself."""
    return None


def _major(event: ev.MajorSyncIndication, mine: M, other: M) -> Checked:
    serial = other.major_sync(event.user_data)
    return "S-SYNC-MAJOR", event.serial, serial


def _major_confirm(event: ev.MajorSyncConfirm, mine: M, other: M) -> Checked:
    other.major_sync_response(event.user_data)
    return None


def _exception(event: ev.UserExceptionReportIndication, mine: M, other: M) -> Checked:
    other.exception_report(event.reason, event.user_data)
    return None


def _provider_exception(event: ev.ProviderExceptionReportIndication, mine: M, other: M) -> Checked:
    raise LocalError("the peer reported a protocol exception (ER): not an X.215 service")


def _capability(event: ev.CapabilityDataIndication, mine: M, other: M) -> Checked:
    other.send_capability_data(event.user_data)
    return None


def _capability_confirm(event: ev.CapabilityDataConfirm, mine: M, other: M) -> Checked:
    other.capability_data_response(event.user_data)
    return None


def _activity_start(event: ev.ActivityStartIndication, mine: M, other: M) -> Checked:
    other.activity_start(event.activity_id, event.user_data)
    return None


def _activity_resume(event: ev.ActivityResumeIndication, mine: M, other: M) -> Checked:
    link = event.linking
    old = ConnectionId(called_ref=link.called_ref, calling_ref=link.calling_ref,
                       common_ref=link.common_ref, additional_ref=link.additional_ref)
    other.activity_resume(event.activity_id, event.old_activity_id, event.serial,
                          old_connection_id=old, user_data=event.user_data)  # fmt: skip
    return None


def _interrupt(event: ev.ActivityInterruptIndication, mine: M, other: M) -> Checked:
    other.activity_interrupt(event.reason or 0, event.user_data)
    return None


def _interrupt_confirm(event: ev.ActivityInterruptConfirm, mine: M, other: M) -> Checked:
    other.activity_interrupt_response(event.user_data)
    return None


def _discard(event: ev.ActivityDiscardIndication, mine: M, other: M) -> Checked:
    other.activity_discard(event.reason or 0, event.user_data)
    return None


def _discard_confirm(event: ev.ActivityDiscardConfirm, mine: M, other: M) -> Checked:
    other.activity_discard_response(event.user_data)
    return None


def _activity_end(event: ev.ActivityEndIndication, mine: M, other: M) -> Checked:
    serial = other.activity_end(event.user_data)
    return "S-ACTIVITY-END", event.serial, serial


def _activity_end_confirm(event: ev.ActivityEndConfirm, mine: M, other: M) -> Checked:
    other.activity_end_response(event.user_data)
    return None


#: What each indication or confirm becomes on the other leg.
SERVICES: dict[type, Service] = {
    ev.DataIndication: _data,
    ev.TypedDataIndication: _typed,
    ev.ExpeditedDataIndication: _expedited,
    ev.TokenGiveIndication: _give,
    ev.TokenPleaseIndication: _please,
    ev.ControlGiveIndication: _control,
    ev.MinorSyncIndication: _minor,
    ev.MinorSyncConfirm: _minor_confirm,
    ev.MinorSyncSuperseded: _superseded,
    ev.MajorSyncIndication: _major,
    ev.MajorSyncConfirm: _major_confirm,
    ev.UserExceptionReportIndication: _exception,
    ev.ProviderExceptionReportIndication: _provider_exception,
    ev.CapabilityDataIndication: _capability,
    ev.CapabilityDataConfirm: _capability_confirm,
    ev.ActivityStartIndication: _activity_start,
    ev.ActivityResumeIndication: _activity_resume,
    ev.ActivityInterruptIndication: _interrupt,
    ev.ActivityInterruptConfirm: _interrupt_confirm,
    ev.ActivityDiscardIndication: _discard,
    ev.ActivityDiscardConfirm: _discard_confirm,
    ev.ActivityEndIndication: _activity_end,
    ev.ActivityEndConfirm: _activity_end_confirm,
}


