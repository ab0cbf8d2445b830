"""What a resumable session tells its application about its transport connections.

They arrive on ``session.events()`` beside the X.215 indications (they are
:class:`~sessionlayer.machine.events.Event` too): one :class:`Interrupted` each time the
connection is lost, one :class:`Resumed` each time the session is back.  A session that
cannot be resumed ends with :class:`~sessionlayer.errors.ResumeRefused` instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..machine.events import Event

__all__ = ["Checkpoint", "Interrupted", "Resumed"]


@dataclass(frozen=True)
class Checkpoint:
    """A confirmed major synchronization point: where a session restarts after a server
    lost its state (X.225 resynchronize restart)."""

    serial: int
    user_data: bytes | None = None


@dataclass(frozen=True)
class Interrupted(Event):
    """The transport connection was lost; the session waits to be resumed (the client
    reconnects, the server waits for it).  ``send()`` meanwhile is kept for replay."""

    reason: str


@dataclass(frozen=True)
class Resumed(Event):
    """The session is back on a new transport connection.

    ``outcome`` is ``"resumed"`` (nothing lost: every message either side sent arrives
    exactly once, ``replayed_messages`` / ``replayed_bytes`` of ours were sent again) or
    ``"checkpoint"`` (the server had lost the session's live state: both sides went back
    to ``checkpoint``, or to the session's start when it is None; what either side sent
    after it was dropped, and the application must send it again).
    """

    outcome: str
    downtime: float  #: seconds from when the loss was detected to the resume
    replayed_messages: int = 0
    replayed_bytes: int = 0
    attempts: int = 1  #: connections tried (the client's count)
    checkpoint: Checkpoint | None = None
