"""``sessionlayer serve --admin``: Prometheus ``/metrics`` and a JSON ``/sessions`` list,
served by aiohttp (the ``admin`` extra) on an address of its own, loopback by default."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from ..aio import Server
from . import CommandError

__all__ = ["start_admin", "sessions_json"]


def sessions_json(server: Server, progress: Callable[[str], dict[str, Any] | None]) -> Any:
    """What ``/sessions`` answers: one object per live session (detached ones too)."""
    rows = []
    for info in server.sessions:
        row = dataclasses.asdict(info)
        row["peer"] = f"{info.peer[0]}:{info.peer[1]}" if isinstance(info.peer, tuple) else None
        row["progress"] = progress(info.id)
        rows.append(row)
    stats = server.stats
    return {
        "sessions": rows,
        "stats": {
            "accepted": stats.accepted, "interrupted": stats.interrupted,
            "resumed": dict(stats.resumed), "expired": stats.expired,
            "refused": dict(stats.refused), "resume_refused": dict(stats.resume_refused),
        },
    }  # fmt: skip


async def start_admin(server: Server, host: str, port: int,
                      progress: Callable[[str], dict[str, Any] | None]) -> Any:  # fmt: skip
    """Serve the admin endpoints; returns the aiohttp runner (``await runner.cleanup()``)."""
    try:
        from aiohttp import web
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.exposition import CONTENT_TYPE_LATEST
    except ImportError:
        raise CommandError(
            "--admin needs the admin extra: pip install 'sessionlayer[admin]'"
        ) from None
    from ..metrics import register

    registry = CollectorRegistry()
    register(server, registry=registry)

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def sessions(_: web.Request) -> web.Response:
        return web.json_response(sessions_json(server, progress))

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/sessions", sessions)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise CommandError(f"cannot serve --admin on {host}:{port}: {exc.strerror}") from None
    return runner
