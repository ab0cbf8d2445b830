"""A session setup stays as short as it was made, each side counted alone without sockets
(bench/setup_sides.py): Python calls per setup, counted by cProfile, not timed.  A change
that adds calls to every connect shows here, whatever the host does."""

from __future__ import annotations

import asyncio

import pytest
from bench import setup_sides

#: Calls per setup measured at stop 19 alone (client 497, server 445, both agents 584), with
#: about 2 % of room: what the tests run before leaves behind (the loggers' levels, the
#: codec's caches) moves a count by a few calls; a change to the setup path moves it more.
MOST = {"client": 507, "server": 454, "core": 596}


@pytest.mark.parametrize("side", sorted(MOST))
def test_a_setup_costs_what_it_did(side: str) -> None:
    # (The library's loggers as an application leaves them: tests/conftest.py puts back
    # what a command run in process set up, which would add its log lines' calls here.)
    got = asyncio.run(setup_sides.measure(side, 400, calls=True))
    assert got <= MOST[side], f"{side}: {got:.1f} calls per setup (was at most {MOST[side]})"
