"""``sessionlayer tunnel --listen [HOST:]PORT --via HOST:PORT [--to HOST:PORT]``: carry the
TCP connections made to a local address over one resumable session to a
``sessionlayer serve --allow-tunnel ...``, which connects them on to the target (see
apps/tunnel.py and docs/tunnel.md).  Runs until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any, TextIO

from ..aio import Options
from ..aio.sockets import host_port, unreachable
from ..apps.tunnel import (
    INITIAL_WINDOW,
    MAX_AUTO_WINDOW,
    MAX_STREAMS,
    MAX_WINDOW,
    WINDOW,
    TunnelClient,
    TunnelError,
    parse_target,
)
from ..recovery import Backoff
from . import (
    AddressError,
    CommandError,
    UsageMistake,
    at_least_one,
    keepalive_seconds,
    parse_address,
    positive_seconds,
    stop_on_signals,
    stopped,
)
from .logs import setup_logging
from .send import client_tls, credentials_of

__all__ = ["add", "run"]

_MIN_KIB, _MAX_KIB = INITIAL_WINDOW // 1024, MAX_WINDOW // 1024


def window_kib(text: str) -> int:
    """An argparse ``type``: a ``--window`` in KiB, from INITIAL_WINDOW to MAX_WINDOW."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not _MIN_KIB <= value <= _MAX_KIB:
        raise argparse.ArgumentTypeError(
            f"not a window: {text!r} (KiB, {_MIN_KIB} to {_MAX_KIB})")
    return value


def add(sub: Any) -> None:
    p = sub.add_parser(
        "tunnel", help="carry local TCP connections over a session (survives drops)",
        description="Listen on --listen; every TCP connection made there is carried over a"
        " resumable session to the sessionlayer server at --via, which connects it to --to"
        " (one of its --allow-tunnel targets). Network drops, a silent network and a new"
        " client address do not break the tunnelled connections.",
    )  # fmt: skip
    p.add_argument("--listen", required=True, metavar="[HOST:]PORT",
                   help="the local address to listen on (host 127.0.0.1 by default)")
    p.add_argument("--via", required=True, metavar="HOST:PORT",
                   help="the sessionlayer server (sessionlayer serve --allow-tunnel)")
    p.add_argument("--to", metavar="HOST:PORT", help="the target, as the server's"
                   " --allow-tunnel names it (default: the server's only target)")
    p.add_argument("--user", help="user name (the password from $SESSIONLAYER_PASSWORD)")
    p.add_argument("--tls", action="store_true", help="connect over TLS")
    p.add_argument("--ca", help="PEM CA file to check the server's certificate")
    p.add_argument("--cert", help="PEM client certificate (mutual TLS); --key its key")
    p.add_argument("--key")
    p.add_argument("--per-connection", action="store_true",
                   help="a session per tunnelled connection (default: one for all)")
    p.add_argument("--window", type=window_kib, default=WINDOW // 1024, metavar="KIB",
                   help=f"flow-control window of each connection's data toward the"
                   f" application, at first ({WINDOW // 1024} KiB; {_MIN_KIB} to {_MAX_KIB})")
    p.add_argument("--max-window", type=window_kib, default=MAX_AUTO_WINDOW // 1024,
                   metavar="KIB", help="how far a window may grow where the link needs it"
                   f" ({MAX_AUTO_WINDOW // 1024} KiB; not above --window: no growth)")
    p.add_argument("--max-streams", type=at_least_one, default=MAX_STREAMS,
                   help=f"tunnelled connections at once ({MAX_STREAMS})")
    p.add_argument("--keepalive", type=keepalive_seconds, default=15.0, metavar="S",
                   help="probe the server after S seconds of silence; a link silent for"
                   " 3*S is given up and the session resumed on a new one (15)")
    p.add_argument("--give-up", type=positive_seconds, default=120.0, metavar="S",
                   help="end the session (and reset its connections) after S seconds"
                   " without a working link (120)")
    p.add_argument("--log-format", choices=("text", "json"), default="text")


def run(ns: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    return asyncio.run(_run(ns, out, err))


def _options(ns: argparse.Namespace) -> Options:
    return Options(tpdu_size=65408, keepalive_interval=ns.keepalive,
                   idle_timeout=3 * ns.keepalive,
                   backoff=Backoff(first=0, give_up=ns.give_up))  # fmt: skip


async def _run(ns: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    setup_logging(ns.log_format, err)
    try:  # ([HOST:]PORT: a PORT alone listens on 127.0.0.1)
        listen_host, listen_port = parse_address(
            ns.listen if ":" in ns.listen else f":{ns.listen}", "127.0.0.1", 0, listen=True)
    except AddressError:
        raise AddressError(f"--listen {ns.listen!r}: expected [HOST:]PORT, PORT 0 to 65535"
                           ) from None  # fmt: skip
    host, port = parse_address(ns.via)
    if ns.to:
        try:
            parse_target(ns.to)
        except ValueError as exc:
            raise UsageMistake(f"--to: {exc}") from None
    credentials = credentials_of(ns)
    client = TunnelClient(
        host, port, ns.to, tls=client_tls(ns), server_hostname=host, credentials=credentials,
        options=_options(ns), window=ns.window * 1024, max_window=ns.max_window * 1024,
        max_streams=ns.max_streams,
        shared=not ns.per_connection,
    )  # fmt: skip
    try:
        await client.start(listen_host, listen_port)
    except TunnelError as exc:
        await client.close()
        raise CommandError(str(exc)) from None
    except OSError as exc:
        await client.close()
        raise CommandError(f"cannot listen on {host_port(listen_host, listen_port)}:"
                           f" {unreachable(exc)}") from None  # fmt: skip
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    stop_on_signals(loop, stop, "tunnel")  # (before it says where: a stop may follow)
    where = host_port(listen_host, client.listen_port)
    to = ns.to or "the server's target"
    if ns.log_format == "json":
        out.write(json.dumps({"listening": where, "port": client.listen_port,
                              "via": host_port(host, port), "to": ns.to}) + "\n")  # fmt: skip
    else:
        via = host_port(host, port)
        out.write(f"sessionlayer tunnel: listening on {where}, via {via} to {to}\n")
    out.flush()
    try:
        await stop.wait()
    finally:  # (the signals that come now are ignored: the stop goes on to its end)
        stats = client.stats
        try:
            await client.close()
        finally:
            stopped(loop)
    if ns.log_format == "json":
        out.write(json.dumps({"stopped": where, "connections": stats.opened,
                              "sent": stats.bytes_sent, "received": stats.bytes_received,
                              "interruptions": stats.interruptions}) + "\n")  # fmt: skip
    else:
        out.write(f"sessionlayer tunnel: stopped ({stats.opened} connections carried,"
                  f" {stats.bytes_sent} octets sent, {stats.bytes_received} received,"
                  f" {stats.interruptions} interruptions)\n")  # fmt: skip
    return 0
