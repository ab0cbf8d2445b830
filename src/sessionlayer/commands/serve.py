"""``sessionlayer serve``: a session server hosting the file service, and the tunnel
(``--allow-tunnel``) and RPC (``--rpc``) services (see commands/services.py).

Its embedded default store is SQLite in the data directory, so a server killed and
started again resumes its sessions from their checkpoints.  SIGTERM or SIGINT stops it
gracefully: resumable sessions lose their connections without an abort and stay in the
store (their clients resume them once it is back, or on another node).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path
from typing import Any, TextIO

from ..aio import ConnectRequest, Options, Session, check_passwords, serve
from ..aio.client import RESUMABLE_CONFIG
from ..aio.sockets import host_port, unreachable
from ..apps.files import FileService
from ..apps.transfer_state import read_json
from ..errors import SessionLayerError
from ..machine import SessionConfig
from ..spdu.codes import FunctionalUnit as FU
from . import (
    CommandError,
    UsageMistake,
    parse_address,
    port_number,
    positive_seconds,
    secret_file,
    stop_on_signals,
    stopped,
    token_file,
)
from .logs import setup_logging
from .services import Services, allowed_targets, load_registry
from .tls import server_context
from .tunnel import window_kib

__all__ = ["add", "run", "SERVER_CONFIG"]

#: What the server accepts: the resumable default units and activity management (a file
#: transfer is an activity; sessions that do not propose it do not get it).
SERVER_CONFIG = SessionConfig(functional_units=RESUMABLE_CONFIG.functional_units | FU.ACTIVITY)


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "sessionlayer"


def add(sub: Any) -> None:
    p = sub.add_parser(
        "serve", help="run a session server with the file, tunnel and RPC services",
        description="Run a session server: resumable sessions, the file service (sessionlayer"
        " send), the tunnel (sessionlayer tunnel; --allow-tunnel) and RPC (--rpc) services,"
        " a durable store, optional TLS, credentials and an admin endpoint.",
    )  # fmt: skip
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    p.add_argument("--port", type=port_number, default=None, help="port (10102; 0: a free one)")
    p.add_argument("--data-dir", type=Path, help="the server's directory (default:"
                   " $XDG_DATA_HOME/sessionlayer)")  # fmt: skip
    p.add_argument("--store", help="sqlite (the default, in the data directory), memory,"
                   " sqlite:PATH or redis://HOST:PORT/DB")  # fmt: skip
    p.add_argument("--files", type=Path, help="where received files go (DATA-DIR/files)")
    p.add_argument("--tls-cert", help="PEM certificate chain: serve over TLS")
    p.add_argument("--tls-key", help="PEM private key of --tls-cert")
    p.add_argument("--client-ca", help="PEM CA file: require client certificates (mutual TLS)")
    p.add_argument("--auth", type=Path, help="a JSON object of user names and passwords")
    p.add_argument("--admin", metavar="HOST:PORT", help="serve /metrics and /sessions here")
    p.add_argument("--admin-token", metavar="FILE", help="a file whose first line is the"
                   " bearer token --admin asks of every request")  # fmt: skip
    p.add_argument("--node", help="this server's name in a shared store")
    p.add_argument("--resume-timeout", type=positive_seconds, default=60.0, help="seconds a session"
                   " whose connection was lost waits for its client (60)")  # fmt: skip
    p.add_argument("--allow-tunnel", action="append", metavar="HOST:PORT,...", help="host"
                   " the tunnel service: the targets a sessionlayer tunnel may reach")
    p.add_argument("--tunnel-window", type=window_kib, default=1024, metavar="KIB",
                   help="the tunnel's window toward the targets, per connection, at first"
                   " (1024)")  # fmt: skip
    p.add_argument("--tunnel-max-window", type=window_kib, default=16384, metavar="KIB",
                   help="how far it may grow where the link needs it (16384; not above"
                   " --tunnel-window: no growth)")  # fmt: skip
    p.add_argument("--rpc", metavar="MODULE:NAME", help="host the RPC service: the"
                   " sessionlayer.apps.rpc.Registry MODULE.NAME")  # fmt: skip
    p.add_argument("--log-format", choices=("text", "json"), default="text")


def _services(ns: argparse.Namespace, files: FileService) -> Services:
    from ..apps.rpc import RpcServer
    from ..apps.tunnel import TunnelService

    targets = allowed_targets(ns.allow_tunnel)
    tunnel = TunnelService(targets, window=ns.tunnel_window * 1024,
                           max_window=ns.tunnel_max_window * 1024) if targets else None
    return Services(files, tunnel,
                    RpcServer(load_registry(ns.rpc)) if ns.rpc else None)  # fmt: skip


def _users(path: Path | None) -> dict[str, str] | None:
    if path is None:
        return None
    secret_file(path, "--auth")
    try:
        users = read_json(path.read_text())
    except OSError as exc:
        raise CommandError(f"cannot read --auth {path}: {exc.strerror}") from None
    except ValueError:
        users = None
    if not isinstance(users, dict) or not all(isinstance(v, str) for v in users.values()):
        raise CommandError(f"--auth {path}: not a JSON object of user names and passwords")
    return users


def _store(ns: argparse.Namespace, data_dir: Path) -> Any:
    from ..stores import open_store

    url = ns.store or "sqlite"
    if url == "sqlite":
        url = f"sqlite:{data_dir / 'sessions.db'}"
    try:
        return open_store(url)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def run(ns: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    return asyncio.run(_run(ns, out, err))


async def _run(ns: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    setup_logging(ns.log_format, err)
    admin_at = parse_address(ns.admin, "127.0.0.1", 0, listen=True) if ns.admin else None
    if ns.admin_token and not ns.admin:
        raise UsageMistake("--admin-token needs --admin")
    admin_token = token_file(ns.admin_token, "--admin-token") if ns.admin_token else None
    data_dir: Path = ns.data_dir or default_data_dir()
    for option, where in (("--data-dir", data_dir), ("--files", ns.files)):
        if where is not None and where.exists() and not where.is_dir():
            raise CommandError(f"{option} {where}: not a directory")
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        files = FileService(ns.files or data_dir / "files", data_dir / "transfers")
    except OSError as exc:  # (the directory it names: --data-dir's, or --files)
        raise CommandError(f"cannot use {exc.filename or data_dir}: {exc.strerror}") from None
    services = _services(ns, files)
    tls = server_context(ns)
    users = _users(ns.auth)
    password_check = check_passwords(users) if users is not None else None
    store = _store(ns, data_dir)

    def authenticate(request: ConnectRequest) -> bool:
        if password_check is not None and not password_check(request):
            return False
        if request.resuming:
            return True  # (what it asked for was checked when it was opened)
        services.check(request)  # (the service it asks for, and that service's checks)
        return True

    async def handler(session: Session) -> None:
        await services.handle(session)

    host = ns.host
    port = ns.port if ns.port is not None else parse_address(None)[1]
    options = Options(tpdu_size=65408, resume_timeout=ns.resume_timeout)
    try:
        server = await serve(
            handler, host, port, tls=tls, authenticate=authenticate,
            supported=services.supported, config=SERVER_CONFIG, options=options,
            store=store, node=ns.node,
        )  # fmt: skip
    except OSError as exc:
        await store.close()
        raise CommandError(f"cannot listen on {host_port(host, port)}: {unreachable(exc)}"
                           ) from None  # fmt: skip
    except SessionLayerError as exc:
        await store.close()
        raise CommandError(str(exc)) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    stop_on_signals(loop, stop, "serve")  # (before it says where: a stop may follow)
    admin = None
    if admin_at is not None:
        from .admin import start_admin

        try:
            admin = await start_admin(server, *admin_at, services.progress,
                                      services.collectors(), admin_token)  # fmt: skip
        except CommandError:
            server.close()
            await server.wait_closed()
            await store.close()
            raise
        bound = admin.addresses[0]
        url = f"http://{host_port(bound[0], bound[1])}"
        out.write(json.dumps({"admin": url, "port": bound[1]}) + "\n"
                  if ns.log_format == "json" else f"sessionlayer serve: admin on {url}\n")
    where = f"{'tls' if tls else 'tcp'}://{host_port(host, server.port)}"
    out.write(json.dumps({"listening": where, "port": server.port, "store": store.name,
                          "files": str(files.root), "node": server.node,
                          "services": services.names}) + "\n"
              if ns.log_format == "json" else
              f"sessionlayer serve: listening on {where} (store {store.name}, files"
              f" {files.root}, services {', '.join(services.names)})\n")  # fmt: skip
    out.flush()
    try:
        await stop.wait()
    finally:  # (the signals that come now are ignored: the stop goes on to its end)
        try:
            server.close(detach=True)
            await server.wait_closed()
            services.close()
            if admin is not None:
                await admin.cleanup()
            await store.close()
        finally:
            stopped(loop)
    kept = ("sessions kept in the store" if store.name != "memory" else
            "the memory store keeps nothing: its sessions are over")  # fmt: skip
    out.write(json.dumps({"stopped": where, "store": store.name,
                          "sessions_kept": store.name != "memory"}) + "\n"
              if ns.log_format == "json" else f"sessionlayer serve: stopped ({kept})\n")
    return 0
