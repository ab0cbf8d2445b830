"""Small helpers shared by tests in several folders."""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest


def require_tshark() -> str:
    """The path of Debian's tshark: a failure in CI (never a skip there), else a skip."""
    path = shutil.which("tshark")
    if path is None:
        unavailable("tshark is not installed (make sysdeps, or apt-get install tshark)")
    return path


def unavailable(reason: str) -> None:
    """Skip the calling test, or fail it in CI (CI set, as `.ci/run` does): never returns."""
    if os.environ.get("CI"):
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


async def echo(session: Any) -> None:
    """A server handler that sends back each S-DATA until the session ends, however it ends
    (a release, an abort, a refused resume: none of them is the handler's failure)."""
    from sessionlayer import SessionLayerError

    try:
        async for data in session:
            await session.send(data)
    except SessionLayerError:
        pass
