"""Durations a user may set are carried as set, or as much as their carrier takes: TCP
keepalive past what Linux takes (32,767 s) is clamped instead of refused by the kernel
(which left its two hours and no probe count); the reconnect backoff never overflows a
float, however many tries and however large its factor; serve()'s lease is finite."""

from __future__ import annotations

import asyncio
import math
import random
import socket

import pytest
from tests.tools import echo

import sessionlayer
from sessionlayer.aio.sockets import TCP_KEEPALIVE_MAX, tcp_keepalive
from sessionlayer.recovery import Backoff


def _keepalive_of(interval: float) -> tuple[int, int, int, int]:
    """SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT of a connected loopback TCP
    socket after tcp_keepalive(interval)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        with socket.create_connection(listener.getsockname()) as sock:
            tcp_keepalive(sock, interval)
            return (sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                    *(sock.getsockopt(socket.IPPROTO_TCP, getattr(socket, name))
                      for name in ("TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT")))  # fmt: skip


def test_tcp_keepalive_past_what_linux_takes_is_clamped() -> None:
    assert _keepalive_of(15.0) == (1, 15, 5, 3)
    assert _keepalive_of(TCP_KEEPALIVE_MAX) == (1, 32767, 10922, 3)
    for interval in (TCP_KEEPALIVE_MAX + 1, 1e9, 1e300):
        assert _keepalive_of(interval) == (1, 32767, 10922, 3)


@pytest.mark.parametrize("backoff", [
    Backoff(), Backoff(factor=1e10), Backoff(factor=1e300, cap=1e300),
    Backoff(first=1e-300, factor=1e10, cap=1e10),  # (cap / first overflows)
    Backoff(first=1e300, factor=1e300, cap=1e308, jitter=0), Backoff(factor=1.0),
    Backoff(first=0, factor=1e200, cap=1e200),
])  # fmt: skip
def test_the_backoff_never_overflows(backoff: Backoff) -> None:
    rng = random.Random(5)
    waits = [backoff.delay(n, rng) for n in (0, 1, 2, 40, 64, 65, 1000, 10**6, 10**400)]
    assert all(0 <= w <= backoff.cap and math.isfinite(w) for w in waits)
    if backoff.factor > 1 and backoff.jitter == 0:
        assert waits[-1] == backoff.cap


def test_the_backoff_still_grows_to_its_cap() -> None:
    backoff = Backoff(first=0.05, factor=2.0, cap=5.0, jitter=0)
    rng = random.Random(5)
    assert [backoff.delay(n, rng) for n in range(9)] == [
        0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]  # fmt: skip


@pytest.mark.parametrize("lease", [math.inf, math.nan, 0, -1.0, True, "5"])
def test_a_lease_that_is_not_finite_and_positive_is_refused(lease: object) -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match="lease must be a finite number"):
            await sessionlayer.serve(echo, lease=lease)  # type: ignore[arg-type]

    asyncio.run(main())
