"""``Backoff``: when a client tries to reconnect, sans I/O (the random source is passed in).

Exponential backoff with full jitter: try ``n`` waits a random time in
``[0, min(cap, first * factor**n)]`` scaled into ``[1 - jitter, 1]`` of that bound, so
that thousands of clients cut at once do not come back in step; ``first=0`` makes the
first retry immediate.  ``give_up`` bounds the whole outage.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True)
class Backoff:
    """Reconnect timing (seconds)."""

    first: float = 0.05
    """Wait before the first retry (0: retry at once)."""
    factor: float = 2.0
    cap: float = 5.0
    """Longest wait between two tries."""
    jitter: float = 0.5
    """Fraction of each wait that is random (0: none, 1: anywhere from 0 to the bound)."""
    give_up: float = 120.0
    """After this long without a resumed session, the session is over (``ResumeRefused``
    with code ``gave_up``)."""

    def __post_init__(self) -> None:
        for name in ("first", "factor", "cap", "jitter", "give_up"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not (
                0 <= value < math.inf
            ):
                raise ValueError(f"Backoff.{name} must be a finite number >= 0, not {value!r}")
        if self.factor < 1:
            raise ValueError(f"Backoff.factor must be at least 1, not {self.factor!r}")
        if self.jitter > 1:
            raise ValueError(f"Backoff.jitter must be from 0 to 1, not {self.jitter!r}")
        if self.cap <= 0 or self.give_up <= 0:
            raise ValueError("Backoff.cap and Backoff.give_up must be above 0")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """How long to wait before try number ``attempt`` (0 is the first retry)."""
        if self.first <= 0 and attempt == 0:
            return 0.0
        first = self.first if self.first > 0 else 0.01
        # first * factor**attempt, reaching cap after log(cap / first) / log(factor) tries:
        # compared in logarithms (a large factor's power overflows a float), never above cap.
        if first >= self.cap:
            bound = self.cap
        elif self.factor == 1:
            bound = first
        elif attempt >= (math.log(self.cap) - math.log(first)) / math.log(self.factor):
            bound = self.cap
        else:
            bound = min(self.cap, first * self.factor**attempt)
        return bound * (1.0 - self.jitter * rng.random())
