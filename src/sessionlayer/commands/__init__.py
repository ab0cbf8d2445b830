"""The ``sessionlayer`` subcommands that run sessions: ``serve``, ``send``, ``status``.

Each module has ``add(subparsers)`` (its arguments) and ``run(ns, out, err) -> int``; the
dispatcher is :mod:`sessionlayer.cli`.  A mistake is one line on stderr and a non-zero exit
status (:class:`CommandError`), never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import signal
import stat

from ..aio.sockets import split_host_port

__all__ = ["AddressError", "CommandError", "DEFAULT_PORT", "STOP_SIGNALS", "Terminated",
           "UsageMistake", "at_least_one", "count", "debugging", "finite", "keepalive_seconds",
           "parse_address", "port_number", "positive_seconds", "readable_file",
           "seconds_or_never", "stop_on_signals", "stopped", "writable_file"]

#: Where ``sessionlayer serve`` listens, and ``send``/``status`` connect, by default (102,
#: ISO-TSAP, needs root).
DEFAULT_PORT = 10102


class CommandError(Exception):
    """A user mistake or an outcome to report in one line (exit status 1)."""


class UsageMistake(CommandError):
    """An argument not written as it must be (``MODULE:NAME``, a tunnel target): a usage
    mistake, one line, exit status 2."""


class Terminated(CommandError):
    """A command that does a job (``send``, ``get``) stopped by SIGTERM: one line, exit
    status 143 (128 + SIGTERM)."""


class AddressError(UsageMistake):
    """A malformed ``HOST:PORT``."""


def debugging() -> bool:
    """``SESSIONLAYER_DEBUG`` is set to something other than 0: a bug of ours shows its
    traceback."""
    return os.environ.get("SESSIONLAYER_DEBUG", "0").strip() not in ("", "0")


def port_number(text: str) -> int:
    """An argparse ``type``: a TCP port, 0 (a free one) to 65535; argparse reports anything
    else in one line, with the usage."""
    if not _digits(text) or not 0 <= int(text) < 65536:
        raise argparse.ArgumentTypeError(f"not a port: {text!r} (0 to 65535)")
    return int(text)


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()  # (not "٣": str.isdigit takes any script's)


def count(text: str) -> int:
    """An argparse ``type``: 0 or more, in ASCII digits."""
    if not _digits(text):
        raise argparse.ArgumentTypeError(f"not a count: {text!r} (0 or more)")
    return int(text)


def at_least_one(text: str) -> int:
    """An argparse ``type``: 1 or more, in ASCII digits."""
    if not _digits(text) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"not a count of at least 1: {text!r}")
    return int(text)


def finite(text: str) -> float:
    """``float(text)``, NaN for what is not a number (the types below refuse it)."""
    try:
        return float(text)
    except ValueError:
        return math.nan


def positive_seconds(text: str) -> float:
    """An argparse ``type``: a time in seconds, above 0 and finite."""
    value = finite(text)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"not a positive number of seconds: {text!r}")
    return value


def seconds_or_never(text: str) -> float:
    """An argparse ``type``: a time in seconds, finite, and above 0 or 0 for never."""
    value = finite(text)
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"not a number of seconds (0: never): {text!r}")
    return value


#: The shortest keepalive interval the command line takes (a shorter one probes a link
#: thousands of times a second and gives it up as often).
MIN_KEEPALIVE = 0.1


def keepalive_seconds(text: str) -> float:
    """An argparse ``type``: a keepalive interval, at least :data:`MIN_KEEPALIVE` s."""
    value = finite(text)
    if not MIN_KEEPALIVE <= value < math.inf:
        raise argparse.ArgumentTypeError(
            f"not a keepalive interval: {text!r} (seconds, at least {MIN_KEEPALIVE:g})")
    return value


def printable(text: str) -> str:
    """``text`` with every character a terminal would act on or hide (C0 and C1 controls,
    ESC, format characters such as U+202E, lone surrogates) written as its escape: what a
    peer or a server sent, safe to print."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def readable_file(path: str | os.PathLike[str], what: str) -> str:
    """``path`` if it is a regular file this process may read, else CommandError naming
    the option ``what`` (a FIFO would hang the read, a directory fail it obscurely)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CommandError(f"{what} {path}: no such file")
    if not os.path.isfile(path):
        raise CommandError(f"{what} {path}: not a regular file")
    if not os.access(path, os.R_OK):
        raise CommandError(f"{what} {path}: not readable")
    return path


def secret_file(path: str | os.PathLike[str], what: str) -> str:
    """:func:`readable_file` for a file that holds secrets (passwords, a private key): a
    WARNING when other users may read it too, as ``ssh`` has for keys (not refused: a
    server that started before goes on starting)."""
    path = readable_file(path, what)
    mode = os.stat(path).st_mode
    if mode & 0o044:
        logging.getLogger("sessionlayer").warning(
            "%s %s can be read by other users (mode %04o): chmod 600 it", what, path,
            stat.S_IMODE(mode))  # fmt: skip
    return path


#: The fewest characters an ``--admin-token`` file may hold (a guessable token is none).
MIN_TOKEN = 16


def token_file(path: str | os.PathLike[str], what: str) -> str:
    """The token in ``path`` (its first line, without the blanks around it): a
    :func:`secret_file`, CommandError naming ``what`` when it holds no usable token."""
    path = secret_file(path, what)
    try:
        with open(path, encoding="utf-8") as file:
            token = file.readline(4096).strip()
    except OSError as exc:
        raise CommandError(f"cannot read {what} {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CommandError(f"{what} {path}: not UTF-8 text") from None
    if len(token) < MIN_TOKEN or not token.isprintable() or not token.isascii():
        raise CommandError(f"{what} {path}: its first line must be a token of at least"
                           f" {MIN_TOKEN} printable ASCII characters (python -c 'import"
                           " secrets; print(secrets.token_urlsafe())' makes one)")  # fmt: skip
    return token


def writable_file(path: str | os.PathLike[str], what: str) -> str:
    """``path`` if it is a regular file or none yet (to be written), else CommandError
    naming the option ``what``: a FIFO would block the open (or be replaced by a file), a
    directory fail obscurely.  ``-`` (standard output) passes."""
    path = os.fspath(path)
    if path != "-" and os.path.exists(path) and not os.path.isfile(path):
        raise CommandError(f"{what} {path}: not a regular file")
    return path


def parse_address(text: str | None, default_host: str = "127.0.0.1",
                  default_port: int = DEFAULT_PORT, *, listen: bool = False) -> tuple[str, int]:
    """``HOST:PORT``, ``HOST``, ``:PORT``, ``PORT`` or ``[v6]:PORT`` -> (host, port); port 0
    (a free one) only for an address to ``listen`` on.  :class:`AddressError` otherwise.
    Digits alone are a port on ``default_host``: as a host, ``0`` was 0.0.0.0 (``serve
    --admin 0`` served the admin endpoint on every interface) and ``9000`` 0.0.35.40."""
    if not text:
        return default_host, default_port
    if _digits(text):
        low = 0 if listen else 1
        if not low <= int(text) < 65536:  # (said as typed: not "in ':0'")
            raise AddressError(f"not a port: {text!r} ({low} to 65535)")
        return default_host, int(text)
    try:
        host, port = split_host_port(text)
    except ValueError as exc:
        raise AddressError(str(exc)) from None
    host = host or default_host
    if not port:
        return host, default_port
    low = 0 if listen else 1
    if not _digits(port) or not low <= int(port) < 65536:
        raise AddressError(f"not a port: {port!r} (in {text!r}; {low} to 65535)")
    return host, int(port)


#: What stops a command that serves until stopped (``serve``, ``tunnel``, ``relay``).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def stop_on_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event, who: str) -> None:
    """SIGTERM or SIGINT sets ``stop``: the command stops in order.  Those that come after
    the first (a second Ctrl-C; ``timeout`` signals the process, then its group) are
    ignored while it does (said once, at INFO): each step of the stop has its own bound.
    :func:`stopped` once the stop is done."""
    said = False

    def on_signal(signum: int) -> None:
        nonlocal said
        if not stop.is_set():
            stop.set()
        elif not said:
            said = True
            logging.getLogger("sessionlayer").info(
                "sessionlayer %s: stopping already (%s ignored)", who,
                signal.Signals(signum).name)  # fmt: skip

    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, on_signal, signum)


def stopped(loop: asyncio.AbstractEventLoop) -> None:
    """The stop is done: SIGTERM and SIGINT are ignored from now on, up to the exit (the
    loop would put the default handlers back at its close, and a signal in the last
    milliseconds would end the process with 143 or 130 after all).  ``cli.main`` puts the
    caller's handlers back when it is not the program's last act."""
    for signum in STOP_SIGNALS:
        loop.remove_signal_handler(signum)
        signal.signal(signum, signal.SIG_IGN)
