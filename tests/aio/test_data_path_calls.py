"""The plain data path stays as short as it was made: Python calls per S-DATA, counted by
cProfile (sender and receiver in one process), not timed (bench/calls.py, bench/NOTES.md).
A change that adds a call per message on this path shows here, whatever the host does."""

from __future__ import annotations

import asyncio

from bench import calls


def test_one_way_s_data_costs_twelve_python_calls() -> None:
    assert asyncio.run(calls.one_way_calls(5_000)) <= 12.5  # (12.0: one call more fails)


def test_a_round_trip_costs_113_python_calls() -> None:
    assert asyncio.run(calls.round_trip_calls(2_000)) <= 114.0  # (113.0 measured)
