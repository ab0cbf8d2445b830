"""Shared fixtures: where the capture vectors are, and the libiec61850 JSON."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

REPO = Path(__file__).resolve().parent.parent

# No per-example deadline: CI machines are slow and shared; the pytest timeout still applies.
settings.register_profile("sessionlayer", deadline=None)
settings.load_profile("sessionlayer")


def find_vectors_dir() -> Path:
    """`<repo>/../shared/vectors` when present, else the copy in tests/vectors."""
    shared = REPO.parent / "shared" / "vectors"
    if (shared / "libiec61850.json").is_file():
        return shared
    return REPO / "tests" / "vectors"


def load_libiec61850(vectors_dir: Path | None = None) -> list[dict[str, Any]]:
    """The captured libiec61850 frames: name, frame, dir, tpkt, cotp, session (hex)."""
    path = (vectors_dir or find_vectors_dir()) / "libiec61850.json"
    vectors: list[dict[str, Any]] = json.loads(path.read_text())
    return vectors


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    return find_vectors_dir()


@pytest.fixture(scope="session")
def libiec61850(vectors_dir: Path) -> list[dict[str, Any]]:
    return load_libiec61850(vectors_dir)


@pytest.fixture(autouse=True)
def _no_fast_connect_memory() -> None:
    """Each test starts with no address remembered as a fast-connect server's: ports come
    round again across tests, and what one learned must not change how another connects
    (a plain server on a port an earlier sessionlayer server held)."""
    from sessionlayer.aio import fast_connect

    fast_connect.forget_all()


@pytest.fixture(autouse=True)
def _loggers_kept() -> Iterator[None]:
    """The library's loggers as each test found them: a command run in process (``serve``,
    ``relay``) sets them up for its own output (a level, a handler), which must not leak
    into the tests after it (their log lines, and the calls they cost, would change)."""
    kept = []
    for name in ("sessionlayer", "sessionlayer.relay"):
        logger = logging.getLogger(name)
        kept.append((logger, logger.level, logger.handlers[:], logger.propagate))
    yield
    for logger, level, handlers, propagate in kept:
        logger.setLevel(level)
        logger.handlers[:] = handlers
        logger.propagate = propagate
