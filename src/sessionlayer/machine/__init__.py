"""The X.225 session protocol machine, sans I/O.

``SessionMachine`` takes S-primitives (method calls), TSDUs and transport events, and gives
back indications/confirms (``next_event()``) and TSDUs (``data_to_send()``).  It opens no
socket, imports no event loop and reads no clock.  See docs/machine.md.
"""

from __future__ import annotations

from ..errors import FunctionalUnitError, ParameterError, StateError, TokenError
from .config import (
    ALL_FUNCTIONAL_UNITS,
    DEFAULT_FUNCTIONAL_UNITS,
    SYMMETRIC_FUNCTIONAL_UNITS,
    SessionConfig,
    tokens_for,
)
from .events import *  # noqa: F403
from .events import __all__ as _events_all
from .machine import DATA_PREFIX, SessionMachine
from .table import ROWS, STATES, TABLE, Row

__all__ = [
    "SessionMachine",
    "DATA_PREFIX",
    "SessionConfig",
    "DEFAULT_FUNCTIONAL_UNITS",
    "ALL_FUNCTIONAL_UNITS",
    "SYMMETRIC_FUNCTIONAL_UNITS",
    "tokens_for",
    "StateError",
    "TokenError",
    "FunctionalUnitError",
    "ParameterError",
    "Row",
    "ROWS",
    "STATES",
    "TABLE",
    *_events_all,
]
