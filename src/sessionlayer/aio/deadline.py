"""``Deadline``: the time limits of a connect, on one timer and without a Timeout object."""

from __future__ import annotations

import asyncio

__all__ = ["Deadline"]


class Deadline:
    """A connect's two time limits on one timer (``connect()``'s, and each resume try's):
    ``connect_timeout`` for TCP (and TLS), then ``handshake_timeout`` for COTP CR/CC and
    CN/AC.  As two ``asyncio.timeout`` blocks would, it cancels the task when the time is
    up, and the end of the phase's await turns that cancellation into TimeoutError; but with
    one TimerHandle: the handshake's deadline moves the timer only when it comes earlier,
    and a timer that fires before the deadline re-arms itself for the rest (a connect costs
    one timer, not two, and no Timeout)."""

    __slots__ = ("_armed", "_cancelling", "_delay", "_expired", "_handle", "_handshake",
                 "_loop", "_task", "_when")

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._loop = loop
        self._task = task
        self._cancelling = task.cancelling()
        self._delay = delay  # (the phase's, and which phase: the TimeoutError says them)
        self._handshake = False
        self._when = self._armed = loop.time() + delay
        self._handle: asyncio.TimerHandle | None = loop.call_at(self._armed, self._fire)
        self._expired = False

    def then(self, delay: float) -> None:
        """The next phase: its time runs out ``delay`` seconds from now."""
        self._cancelling = self._task.cancelling()
        self._delay, self._handshake = delay, True
        self._when = when = self._loop.time() + delay
        if self._handle is not None and self._armed > when:
            self._handle.cancel()
            self._armed = when
            self._handle = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        if self._armed < self._when:  # the deadline moved on: the rest of the time
            self._armed = self._when
            self._handle = self._loop.call_at(self._when, self._fire)
            return
        self._handle = None
        self._expired = True
        self._task.cancel()

    def ended(self, exc: BaseException | None) -> None:
        """A phase's await ended (raising ``exc``): raise TimeoutError when it was cancelled
        because the time ran out (as ``asyncio.timeout``'s ``__aexit__`` does)."""
        if self._expired:
            self._expired = False
            if self._task.uncancel() <= self._cancelling and isinstance(
                exc, asyncio.CancelledError
            ):
                raise TimeoutError(
                    f"no answer to the connect request within handshake_timeout"
                    f" ({self._delay:g} s): is it a session server?" if self._handshake else
                    f"no TCP connection within connect_timeout ({self._delay:g} s)"
                ) from exc

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
