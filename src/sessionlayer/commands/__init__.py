"""The ``sessionlayer`` subcommands that run sessions: ``serve``, ``send``, ``status``.

Each module has ``add(subparsers)`` (its arguments) and ``run(ns, out, err) -> int``; the
dispatcher is :mod:`sessionlayer.cli`.  A mistake is one line on stderr and a non-zero exit
status (:class:`CommandError`), never a traceback.
"""

from __future__ import annotations

import argparse
import math

__all__ = ["CommandError", "DEFAULT_PORT", "parse_address", "port_number", "positive_seconds"]

#: Where ``sessionlayer serve`` listens, and ``send``/``status`` connect, by default (102,
#: ISO-TSAP, needs root).
DEFAULT_PORT = 10102


class CommandError(Exception):
    """A user mistake or an outcome to report in one line (exit status 1)."""


def port_number(text: str) -> int:
    """An argparse ``type``: a TCP port, 0 (a free one) to 65535; argparse reports anything
    else in one line, with the usage."""
    if not text.isdigit() or not 0 <= int(text) < 65536:
        raise argparse.ArgumentTypeError(f"not a port: {text!r} (0 to 65535)")
    return int(text)


def positive_seconds(text: str) -> float:
    """An argparse ``type``: a time in seconds, above 0 and finite."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"not a positive number of seconds: {text!r}")
    return value


def parse_address(text: str | None, default_host: str = "127.0.0.1",
                  default_port: int = DEFAULT_PORT) -> tuple[str, int]:  # fmt: skip
    """``HOST:PORT``, ``HOST``, ``:PORT`` or ``[v6]:PORT`` -> (host, port)."""
    if not text:
        return default_host, default_port
    host, port = text, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    host = host or default_host
    if not port:
        return host, default_port
    if not port.isdigit() or not 0 <= int(port) < 65536:
        raise CommandError(f"not a port: {port!r} (in {text!r})")
    return host, int(port)
