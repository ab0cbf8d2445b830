"""The services one ``sessionlayer serve`` hosts, chosen per session by the ``service``
application parameter the client offers: ``files`` (always), ``tunnel`` (with
``--allow-tunnel``), ``rpc`` (with ``--rpc MODULE:REGISTRY``)."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from ..aio import ConnectRequest, Refuse, Session
from ..apps import files as files_app
from ..apps import rpc as rpc_app
from ..apps import tunnel as tunnel_app
from . import CommandError, UsageMistake

__all__ = ["Services", "load_registry", "allowed_targets"]


def load_registry(spec: str) -> rpc_app.Registry:
    """``MODULE:NAME`` -> the :class:`~sessionlayer.apps.rpc.Registry` it names (the
    module is looked for on the import path, the current directory first)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UsageMistake(f"--rpc {spec!r}: expected MODULE:NAME (a Registry)")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # (an import error, or the module's own)
        raise CommandError(f"--rpc: cannot import {module_name}: {exc}") from None
    except BaseException as exc:  # (sys.exit() at import: the exit status was the module's)
        raise CommandError(f"--rpc {spec}: importing {module_name} raised {exc!r}") from None
    registry = getattr(module, attr, None)
    if not isinstance(registry, rpc_app.Registry):
        raise CommandError(f"--rpc: {spec} is not a sessionlayer.apps.rpc.Registry")
    return registry


def allowed_targets(lists: list[str] | None) -> list[tuple[str, int]]:
    """The ``--allow-tunnel`` lists (each ``HOST:PORT,...``), as (host, port) pairs."""
    targets: list[tuple[str, int]] = []
    for text in lists or []:
        try:
            targets += tunnel_app.parse_targets(text)
        except ValueError as exc:
            raise UsageMistake(f"--allow-tunnel: {exc}") from None
    return targets


class Services:
    """Which service serves a session, its checks at connect, and what the admin
    endpoint shows of it."""

    def __init__(self, files: files_app.FileService,
                 tunnel: tunnel_app.TunnelService | None = None,
                 rpc: rpc_app.RpcServer | None = None) -> None:  # fmt: skip
        self.files = files
        self.tunnel = tunnel
        self.rpc = rpc
        self.names = [files_app.SERVICE]
        if tunnel is not None:
            self.names.append(tunnel_app.SERVICE)
        if rpc is not None:
            self.names.append(rpc_app.SERVICE)

    @property
    def supported(self) -> dict[str, list[str]]:
        """``serve(supported=...)``: the services, the tunnel's growing windows, and the
        RPC codecs."""
        supported = {"service": list(self.names)}
        if self.tunnel is not None:
            supported[tunnel_app.FLOW] = [tunnel_app.AUTO]
        if self.rpc is not None:
            supported.update({rpc_app.CODEC: rpc_app.codecs()})
        return supported

    def check(self, request: ConnectRequest) -> None:
        """Refuse a session no hosted service can take (before the accept)."""
        offered = request.offers.get("service", [])
        service = next((s for s in offered if s in self.names), None)
        if service is None:
            raise Refuse(f"this server offers the {', '.join(map(repr, self.names))}"
                         " services only")  # fmt: skip
        if service == files_app.SERVICE:
            self.files.check(request)
        elif service == tunnel_app.SERVICE and self.tunnel is not None:
            self.tunnel.check(request)

    async def handle(self, session: Session) -> None:
        service = session.chosen.get("service")
        if service == tunnel_app.SERVICE and self.tunnel is not None:
            await self.tunnel.handle(session)
        elif service == rpc_app.SERVICE and self.rpc is not None:
            await self.rpc.handle(session)
        else:
            await self.files.handle(session)

    def progress(self, session_id: str) -> dict[str, Any] | None:
        """What ``/sessions`` shows of a session's service (None: nothing)."""
        found = self.files.progress.get(session_id)
        if found is None and self.tunnel is not None:
            found = self.tunnel.progress(session_id)
        if found is None and self.rpc is not None:
            found = self.rpc.progress(session_id)
        return found

    def close(self) -> None:
        """(Once the server is closed) The RPC service's worker threads go."""
        if self.rpc is not None:
            self.rpc.close()

    def collectors(self) -> list[Any]:
        """Prometheus collectors of the tunnel and RPC services (see metrics.py)."""
        from ..metrics import AppCollector

        if self.tunnel is None and self.rpc is None:
            return []
        return [AppCollector(tunnel=self.tunnel, rpc=self.rpc)]
