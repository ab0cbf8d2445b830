"""A transfer whose session the server no longer knows goes on in a new one (apps/files.py).

A server down longer than its ``--resume-timeout``, or one whose store keeps nothing
(``--store memory``) and was restarted, refuses the resume of the session as unknown or
expired: the session is over, the transfer is not.  Its state (this side's, and the
receiver's partial file and checkpoints) is what a rerun of the same command resumes
from, so :func:`run_again` does that rerun itself: a new session that resumes the
transfer at its last confirmed checkpoint.  It gives up once the sessions lost one after
the other, none confirming a checkpoint, have taken longer than the give-up time; its
line then says to rerun the same command.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ..errors import ResumeRefused, SessionAborted
from .transfer_state import TransferError

__all__ = ["SessionLost", "lost", "run_again"]

log = logging.getLogger("sessionlayer")

#: The refusals of a resume after which a new session resumes the transfer: the server
#: does not know the session (any more), or has no store that could.
AGAIN = frozenset({"unknown", "expired", "no_store"})

R = TypeVar("R")


class SessionLost(TransferError):
    """The server no longer knows the transfer's session (see :data:`AGAIN`); ``done`` is
    what this run did before (its counts: ``sent``, ``checkpoints``, ``reconnects``,
    ``restores``, ``resumed_from``)."""

    def __init__(self, message: str, done: Any) -> None:
        super().__init__(message)
        self.done = done


def lost(exc: SessionAborted) -> bool:
    """Whether ``exc`` ended the session because the server no longer knows it."""
    return isinstance(exc, ResumeRefused) and exc.code in AGAIN


async def run_again(attempt: Callable[[bool], Awaitable[R]], restart: bool,
                    give_up: float) -> R:  # fmt: skip
    """``attempt(restart)``, and while it ends in :class:`SessionLost` ``attempt(False)``
    (a rerun: the state it kept resumes it), until the losses in a row without a
    checkpoint confirmed between them span ``give_up`` seconds.  The result counts what
    every session did: one that went on from a checkpoint is a reconnect and a restore."""
    loop = asyncio.get_running_loop()
    since: float | None = None  # the first of the losses in a row
    before: list[Any] = []
    while True:
        try:
            result = await attempt(restart)
        except SessionLost as exc:
            now = loop.time()
            since = now if since is None or exc.done.checkpoints else since
            if now - since >= give_up:
                raise TransferError(f"{exc}: rerun the same command to resume") from None
            log.info("%s: the transfer goes on in a new session", exc)
            before.append(exc.done)
            restart = False
            continue
        break
    if before:
        result.resumed_from = before[0].resumed_from  # type: ignore[attr-defined]
        for done in before:
            for counted in ("sent", "checkpoints", "reconnects", "restores"):
                setattr(result, counted, getattr(result, counted) + getattr(done, counted))
        result.reconnects += len(before)  # type: ignore[attr-defined]
        result.restores += len(before)  # type: ignore[attr-defined]
    return result
