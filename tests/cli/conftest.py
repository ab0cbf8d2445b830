"""Fixtures of the command-line tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture
def logger_kept() -> Iterator[None]:
    """``serve`` run in this process sets the ``sessionlayer`` logger up: put back after."""
    logger = logging.getLogger("sessionlayer")
    kept = logger.handlers[:], logger.level, logger.propagate
    yield
    logger.handlers[:], logger.propagate = kept[0], kept[2]
    logger.setLevel(kept[1])
