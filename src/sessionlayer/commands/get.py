"""``sessionlayer get NAME [HOST:PORT] [-o PATH]``: fetch a file from a session server's
file service, resumably (see apps/files.py): the server sends it as an activity with
checkpoints; a rerun after a kill resumes from the last confirmed one."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, TextIO

from ..apps.files import get_file, not_replaceable
from . import CommandError, parse_address, printable
from .send import (
    Progress,
    client_tls,
    credentials_of,
    remote_name,
    state_dir_of,
    transfer,
    transfer_arguments,
)

__all__ = ["add", "run"]


def add(sub: Any) -> None:
    p = sub.add_parser(
        "get", help="fetch a file from a session server (resumable)",
        description="Fetch NAME from the file service of a sessionlayer server into PATH"
        " (default: the current directory). Survives cuts and server restarts; rerun the"
        " same command after it was killed and it resumes from its last checkpoint.",
    )  # fmt: skip
    p.add_argument("name", type=remote_name)
    p.add_argument("address", nargs="?", metavar="HOST:PORT", help="(127.0.0.1:10102)")
    p.add_argument("-o", "--output", default=".", metavar="PATH",
                   help="a directory (the file keeps its name), or the file to write (a"
                        " regular file there is replaced); its directory must exist"
                        " (default: the current directory)")
    transfer_arguments(p)


def output_path(text: str, name: str) -> Path:
    """Where ``-o`` puts the file ``name``: into a directory that exists, or as the file
    named, in a directory that exists.  ``DIR/`` names a directory: it is not made a file.
    What is there already must be a regular file (replaced at the end) or nothing: a FIFO,
    a device, a directory, a symbolic link to one or to nothing is refused here, before
    anything is transferred or written."""
    path = Path(text)
    if path.is_dir():
        final = path / Path(name).name
        if Path(name).name in ("", ".", ".."):  # (not a file name: the server refuses it)
            return path
        why = not_replaceable(final)
        if why is not None:
            raise CommandError(f"-o {text}: {final}: {why}")
        return path
    if text.endswith(("/", os.sep)):
        raise CommandError(f"-o {text}: no such directory")
    if not path.parent.is_dir():
        raise CommandError(f"-o {text}: no such directory {path.parent}")
    why = not_replaceable(path)
    if why is not None:
        raise CommandError(f"-o {text}: {why}")
    return path


def run(ns: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    host, port = parse_address(ns.address)
    ns.output = output_path(ns.output, ns.name)
    state_dir = state_dir_of(ns)
    credentials = credentials_of(ns)
    progress = Progress(out, ns.json)
    result, _ = transfer(ns, out, progress, lambda: get_file(
        ns.name, host, port, output=ns.output, credentials=credentials,
        tls=client_tls(ns), server_hostname=host, state_dir=state_dir,
        restart=ns.restart, checkpoint=ns.checkpoint, progress=progress,
    ))  # fmt: skip
    if result is not None:
        out.write(f"got {printable(result.name)}: {result.size} octets (this run"
                  f" {result.sent}, from {result.resumed_from}), {result.checkpoints} checkpoints,"
                  f" {result.reconnects} reconnects, {result.restores} restores, SHA-256"
                  f" {result.sha256}\n")  # fmt: skip
    return 0
