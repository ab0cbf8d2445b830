"""``sessionlayer send FILE [HOST:PORT]``: a resumable file transfer (see apps/files.py).

A progress bar on a terminal (rich: octets, rate, ETA, checkpoints, reconnects), plain
lines otherwise, one JSON object with ``--json``.  Rerunning the same command after a
killed transfer resumes it from its last confirmed checkpoint.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import ssl
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TextIO

from ..apps.files import MIN_CHECKPOINT, SendResult, TransferError, send_file
from ..errors import SessionLayerError
from . import CommandError, Terminated, finite, parse_address, printable, readable_file

__all__ = ["add", "run"]


def add(sub: Any) -> None:
    p = sub.add_parser(
        "send", help="send a file to a session server (resumable)",
        description="Send FILE to the file service of a sessionlayer server. The transfer"
        " survives network cuts and server restarts; rerun the same command after it was"
        " killed and it resumes from its last confirmed checkpoint.",
    )  # fmt: skip
    p.add_argument("file", type=Path)
    p.add_argument("address", nargs="?", metavar="HOST:PORT", help="(127.0.0.1:10102)")
    p.add_argument("--name", type=remote_name,
                   help="the name on the server (the file's own name)")
    transfer_arguments(p)


def remote_name(text: str) -> str:
    """An argparse ``type``: a name on the server, which is Unicode text (an argument's
    octets that are not UTF-8 come as lone surrogates, which no server name can hold)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError(f"not UTF-8 text: '{printable(text)}' (a name on"
                                         " the server is Unicode text)") from None
    return text


def checkpoint_mib(text: str) -> int:
    """An argparse ``type``: a checkpoint interval in MiB (a fraction is fine); octets."""
    value = finite(text)
    if not 0 < value < 1 << 30 or int(value * (1 << 20)) < MIN_CHECKPOINT:
        raise argparse.ArgumentTypeError(f"not a checkpoint interval: {text!r} (MiB, at"
                                         f" least {MIN_CHECKPOINT / (1 << 20):g})")  # fmt: skip
    return int(value * (1 << 20))


def transfer_arguments(p: Any) -> None:
    """The options ``send`` and ``get`` share."""
    p.add_argument("--checkpoint", type=checkpoint_mib, default=64 << 20, metavar="MIB",
                   help="a checkpoint every this many MiB (64)")  # fmt: skip
    p.add_argument("--user", help="user name (the password from $SESSIONLAYER_PASSWORD)")
    p.add_argument("--tls", action="store_true", help="connect over TLS")
    p.add_argument("--ca", help="PEM CA file to check the server's certificate")
    p.add_argument("--cert", help="PEM client certificate (mutual TLS); --key its key")
    p.add_argument("--key")
    p.add_argument("--restart", action="store_true",
                   help="start over, forgetting an interrupted transfer of this file")
    p.add_argument("--state-dir", type=Path, metavar="DIR", help="a directory that exists,"
                   " where the transfer's state is kept (DIR/transfers.json, DIR/downloads/;"
                   " default: $XDG_STATE_HOME/sessionlayer)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print one JSON object at the end")


def state_dir_of(ns: argparse.Namespace) -> Path | None:
    """``--state-dir``: a directory that exists (one line otherwise, before anything is
    made: it used to make a tree where a mistyped path pointed)."""
    where: Path | None = ns.state_dir
    if where is not None and not where.is_dir():
        raise CommandError(f"--state-dir {where}: "
                           + ("not a directory" if where.exists() else "no such directory"))
    return where


def credentials_of(ns: argparse.Namespace) -> dict[str, str] | None:
    if not ns.user:
        return None
    password = os.environ.get("SESSIONLAYER_PASSWORD")
    if password is None:  # (else the server's answer is a bare "authentication failed")
        raise CommandError(f"--user {ns.user}: the password comes from $SESSIONLAYER_PASSWORD,"
                           " which is not set")  # fmt: skip
    return {"user": ns.user, "password": password}


def client_tls(ns: argparse.Namespace) -> ssl.SSLContext | None:
    if not (ns.tls or ns.ca or ns.cert):
        if ns.key:
            raise CommandError("--key goes with --cert")
        return None
    ca = readable_file(ns.ca, "--ca") if ns.ca else None
    try:
        ctx = ssl.create_default_context(cafile=ca)
    except ssl.SSLError as exc:
        raise CommandError(f"--ca {ns.ca}: {exc.reason or exc}") from None
    if ns.cert:
        cert = readable_file(ns.cert, "--cert")
        key = readable_file(ns.key, "--key") if ns.key else None
        try:
            ctx.load_cert_chain(cert, key)
        except ssl.SSLError as exc:
            hint = "" if key else " (no --key: the file must hold the private key too)"
            raise CommandError(f"--cert {ns.cert}{f' / --key {ns.key}' if key else ''}:"
                               f" {exc.reason or exc}{hint}") from None  # fmt: skip
    return ctx


class Progress:
    """A rich progress bar on a terminal, a line per 10 % otherwise, nothing with --json."""

    def __init__(self, out: TextIO, quiet: bool) -> None:
        self.out = out
        self.quiet = quiet
        self.bar: Any = None
        self.task: Any = None
        self.step = -1
        self.extra = ""  # what the last line said after its octets
        if not quiet and out.isatty():
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,  # fmt: skip
                TransferSpeedColumn,
            )

            self.bar = Progress(
                TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                TransferSpeedColumn(), TimeRemainingColumn(),
                TextColumn("{task.fields[extra]}"),
            )  # fmt: skip
            self.bar.start()

    def __call__(self, state: dict[str, Any]) -> None:
        if self.quiet:
            return
        extra = (f"checkpoints {state['checkpoints']}  reconnects {state['reconnects']}"
                 f"{'  restores ' + str(state['restores']) if state['restores'] else ''}")
        if self.bar is not None:
            if self.task is None:
                self.task = self.bar.add_task(printable(state["name"]), total=state["size"],
                                              extra="")
            self.bar.update(self.task, completed=state["done"], extra=extra)
            return
        step = state["done"] * 10 // max(state["size"], 1)
        last = step == 10 and extra != self.extra  # (100 %, then its last checkpoint)
        if step != self.step or last:
            self.step, self.extra = step, extra
            try:
                self.out.write(f"{printable(state['name'])}: {state['done']}/{state['size']} octets"
                               f" ({step * 10} %), {extra}\n")  # fmt: skip
                self.out.flush()
            except BrokenPipeError:  # (a reader that went, `| head -1`: the transfer goes
                self.quiet = True  # on; it was stopped halfway and the exit status was 0)
                _drop_output(self.out)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _drop_output(out: TextIO) -> None:
    """What is still written to ``out``, whose reader went, goes nowhere (and Python's own
    flush at exit does not fail with "Exception ignored ... BrokenPipeError")."""
    try:
        fd = out.fileno()
    except (OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def transfer(ns: argparse.Namespace, out: TextIO, progress: Progress,
             start: Callable[[], Coroutine[Any, Any, SendResult]],
             ) -> tuple[SendResult | None, float]:  # fmt: skip
    """Run a transfer (``start()``, a send or a get); with ``--json`` print its result and
    return (None, seconds), else (the result, seconds) for a line of the caller's."""
    started = time.monotonic()
    try:
        result = asyncio.run(until_terminated(start))
    except (TransferError, SessionLayerError) as exc:
        raise CommandError(str(exc)) from None
    finally:
        progress.close()
    seconds = time.monotonic() - started
    if not ns.json:
        return result, seconds
    obj = dict(result.__dict__)
    obj["seconds"] = round(seconds, 3)
    out.write(json.dumps(obj) + "\n")
    return None, seconds


async def until_terminated(start: Callable[[], Coroutine[Any, Any, SendResult]],
                           ) -> SendResult:  # fmt: skip
    """``start()``, stopped by SIGTERM as Ctrl-C stops it (the transfer cancelled, its
    state kept for a rerun) and then :class:`Terminated`: SIGTERM used to end the process
    at once, status 143 and not a word."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    terminated = False

    def on_sigterm() -> None:
        nonlocal terminated
        terminated = True
        task.cancel()

    # Not where SIGTERM is ignored (nohup-like callers: it stays ignored), nor outside the
    # main thread (cli.main called from a thread: asyncio cannot take signals there).
    watching = signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN
    if watching:
        try:
            loop.add_signal_handler(signal.SIGTERM, on_sigterm)
        except (RuntimeError, ValueError, NotImplementedError):
            watching = False
    try:
        return await start()
    except asyncio.CancelledError:
        if terminated:
            raise Terminated("terminated (SIGTERM): run the same command again to resume"
                             " the transfer") from None  # fmt: skip
        raise
    finally:
        if watching:
            loop.remove_signal_handler(signal.SIGTERM)


def run(ns: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    host, port = parse_address(ns.address)
    state_dir = state_dir_of(ns)
    credentials = credentials_of(ns)
    progress = Progress(out, ns.json)
    result, seconds = transfer(ns, out, progress, lambda: send_file(
        ns.file, host, port, name=ns.name, checkpoint=ns.checkpoint,
        credentials=credentials, tls=client_tls(ns), server_hostname=host,
        state_dir=state_dir, restart=ns.restart, progress=progress,
    ))  # fmt: skip
    if result is None:
        return 0
    rate = result.sent / seconds / 1e6 if seconds else 0.0
    out.write(f"sent {printable(result.name)}: {result.size} octets (this run"
              f" {result.sent}, from {result.resumed_from}), {rate:.1f} MB/s,"
              f" {result.checkpoints} checkpoints,"
              f" {result.reconnects} reconnects, {result.restores} restores, SHA-256"
              f" {result.sha256} verified by the server\n")  # fmt: skip
    return 0
