"""Errors the protocol machine raises when its user asks for something not allowed.

All are :class:`sessionlayer.errors.LocalError`: raised at once, nothing is queued and the
machine's state is unchanged.  A peer that breaks the protocol never raises here: the machine
queues an ABORT SPDU and reports :class:`~sessionlayer.machine.events.ProviderAbortIndication`.
"""

from __future__ import annotations

from ..errors import LocalError

__all__ = ["StateError", "TokenError", "FunctionalUnitError", "ParameterError"]


class StateError(LocalError):
    """The primitive is not allowed in the machine's current X.225 state."""


class TokenError(StateError):
    """The primitive needs a token this user does not hold (or gives one it does not hold)."""


class FunctionalUnitError(StateError):
    """The primitive belongs to a functional unit that was not negotiated."""


class ParameterError(LocalError, ValueError):
    """An argument is invalid (serial number out of range, user data too long, ...)."""
