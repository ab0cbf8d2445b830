"""``Options`` and ``Backoff`` refuse values that cannot work, at once and naming the field
(a zero keepalive would spin, a negative timeout would fire at once, a TPDU size COTP cannot
carry would only fail at the first connect)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from sessionlayer import Options
from sessionlayer.recovery import Backoff


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("connect_timeout", 0), ("handshake_timeout", -1.0), ("release_timeout", math.inf),
        ("resume_timeout", math.nan), ("ack_interval", 0.0), ("keepalive_interval", 0),
        ("idle_timeout", -5), ("connect_timeout", "10"), ("release_timeout", True),
        ("max_tsdu_size", 0), ("max_buffered_bytes", -1), ("max_queued_events", 1.5),
        ("write_buffer_high", 0), ("retention", 0), ("ack_bytes", -8),
        ("tpdu_size", 100), ("tpdu_size", 65536), ("tpdu_size", 8200), ("tpdu_size", 8192.0),
        ("retention_overflow", "drop"), ("backoff", 0.05),
        ("resume", "no"), ("resume", 0), ("fast_connect", None), ("fast_connect", 1),
    ],
)  # fmt: skip
def test_options_refuse_what_cannot_work(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=f"Options.{field}"):
        Options(**{field: value})
    with pytest.raises(ValueError, match=f"Options.{field}"):
        dataclasses.replace(Options(), **{field: value})


def test_options_take_what_can_work() -> None:
    Options()
    Options(keepalive_interval=None, idle_timeout=None, tpdu_size=128, connect_timeout=0.001)
    Options(tpdu_size=65408, retention_overflow="fail", ack_bytes=1, max_queued_events=1)
    Options(tpdu_size=1024, backoff=Backoff(first=0, jitter=0))
    Options(resume=False, fast_connect=False)


@pytest.mark.parametrize(
    ("field", "value"),
    [("first", -0.1), ("factor", 0.5), ("cap", 0), ("jitter", 1.5), ("give_up", 0),
     ("give_up", math.inf), ("first", math.nan), ("cap", "5")],
)  # fmt: skip
def test_backoff_refuses_what_cannot_work(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=f"Backoff.{field}"):
        Backoff(**{field: value})
