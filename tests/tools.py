"""Small helpers shared by tests in several folders."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable
from typing import Any, NoReturn

import pytest


def require_tshark() -> str:
    """The path of Debian's tshark: a failure in CI (never a skip there), else a skip."""
    path = shutil.which("tshark")
    if path is None:
        unavailable("tshark is not installed (make sysdeps, or apt-get install tshark)")
    return path


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """``asyncio.Runner``'s loop factory for ``"asyncio"`` (None: its own) or ``"uvloop"``
    (in the test extra: missing, a failure in CI, else a skip)."""
    if name == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        unavailable("uvloop is not installed (the test extra has it)")
    return uvloop.new_event_loop


def unavailable(reason: str) -> NoReturn:
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


def tls_contexts() -> tuple[Any, Any]:
    """(server, client) TLS contexts for loopback: a throwaway CA (trustme) whose
    certificate names localhost and 127.0.0.1, which the client trusts."""
    import ssl

    import trustme

    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client
