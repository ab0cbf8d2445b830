"""A file that a long-running process appends to, bounded on disk: at ``max_bytes`` it is
renamed ``FILE.1`` (``FILE.1`` to ``FILE.2``, and so on: ``keep`` old files at most, the
oldest removed) and a new ``FILE`` is started; :meth:`RotatingFile.reopen` starts a new
one under the same name after another program (logrotate) moved it away.

``sessionlayer relay --log`` and ``--pcap`` write through it (``--rotate-size``,
``--rotate-keep``; SIGHUP reopens).  The writer says what a new file must begin with
(``on_new``: a pcap file's header, and a handshake for each connection still open).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Callable
from typing import BinaryIO

__all__ = ["MIN_SIZE", "RotatingFile", "parse_size"]

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
#: The smallest rotation size (a smaller one would rotate on every record or so).
MIN_SIZE = 4 << 10


def parse_size(text: str) -> int:
    """``"4096"``, ``"64k"``, ``"100M"``, ``"1g"``: octets, at least :data:`MIN_SIZE`
    (ValueError if not one)."""
    found = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]?)(?:i?[bB])?\s*", text)
    if found is None or not found[1].isascii():
        raise ValueError(f"not a size: {text!r} (octets, or with k, M or G)")
    size = int(found[1]) * _UNITS[found[2].lower()]
    if size < MIN_SIZE:
        raise ValueError(f"not a size: {text!r} (at least {MIN_SIZE >> 10}k)")
    return size


class RotatingFile:
    """Binary appends to ``path``; at ``max_bytes`` (None: never) the file is rotated after
    the write that reached it (a write is never split between two files)."""

    def __init__(self, path: str | os.PathLike[str], *, append: bool = True,
                 max_bytes: int | None = None, keep: int = 5, what: str = "") -> None:  # fmt: skip
        if keep < 0:
            raise ValueError("keep must be 0 or more")
        self.path = os.fspath(path)
        self.what = what  #: the option that names it (``--log``), in what is said of it
        self.max_bytes = max_bytes
        self.keep = keep
        self.rotations = 0
        self.on_new: Callable[[], None] | None = None  # (called with the new file open)
        self._file: BinaryIO | None = None
        self.size = 0
        self.preamble = 0  # what ``on_new`` wrote at the head (not counted toward max_bytes)
        self._open(append)

    def _open(self, append: bool) -> None:
        """A new file is its owner's only (0600, whatever the umask): a relay's capture
        holds every octet of its sessions, the credentials in their connect requests too
        (in the clear where the relay ends TLS).  One that exists keeps its mode."""
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
        fd = os.open(self.path, flags, 0o600)
        self._file = os.fdopen(fd, "ab" if append else "wb")
        self.size = self._file.tell()

    @property
    def closed(self) -> bool:
        return self._file is None

    def write(self, data: bytes) -> int:
        if self._file is None:
            return 0
        try:
            n = self._file.write(data)
        except OSError as exc:
            self._cannot_write(exc)
            return 0
        self.size += n
        return n

    def flush(self) -> None:
        if self._file is not None:
            try:
                self._file.flush()
            except OSError as exc:
                self._cannot_write(exc)

    def _cannot_write(self, exc: OSError) -> None:
        """A write that failed (the disk is full): said once, as a warning, and the file is
        closed, not written from now on (:meth:`reopen`, SIGHUP, opens it again).  Its
        writer goes on: a log must not take down what it logs."""
        file, self._file = self._file, None
        if file is not None:
            with contextlib.suppress(OSError):  # (what is still buffered is lost)
                file.close()
        logging.getLogger("sessionlayer").warning(
            "%s: cannot write: %s; not written from now on (SIGHUP opens it again)",
            f"{self.what} {self.path}".strip(), exc.strerror or exc)

    @property
    def full(self) -> bool:
        return self.max_bytes is not None and self.size - self.preamble >= self.max_bytes

    def rotate_if_full(self, what: str) -> None:
        """:meth:`rotate` if full; a rotation that fails (the directory is read-only) is
        said once, as a warning of ``what``, and not tried again: the file grows."""
        if self._file is None or not self.full:
            return  # (closed after a failed write: not opened again until reopen())
        try:
            self.rotate()
        except OSError as exc:
            self.max_bytes = None
            fate = "it grows from now on" if not self.closed else "not written from now on"
            logging.getLogger("sessionlayer").warning(
                "%s %s: cannot rotate: %s; %s", what, self.path, exc.strerror or exc, fate)

    def rotate(self) -> None:
        """``FILE`` becomes ``FILE.1`` (the older ones move up, past ``keep`` they go); a new
        ``FILE`` starts."""
        self.close()
        try:
            self._shift()
        except OSError:
            self._open(append=True)  # (the same file goes on: the caller says why)
            raise
        self.rotations += 1
        self._started(append=False)

    def _shift(self) -> None:
        if self.keep == 0:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{self.path}.{self.keep}")
        for n in range(self.keep - 1, 0, -1):
            with contextlib.suppress(FileNotFoundError):
                os.replace(f"{self.path}.{n}", f"{self.path}.{n + 1}")
        os.replace(self.path, f"{self.path}.1")

    def reopen(self) -> None:
        """``FILE`` again (another program may have moved it: a new one is started then)."""
        self.close()
        self._started(append=True)

    def _started(self, append: bool) -> None:
        self._open(append)
        self.preamble = 0
        if self.size == 0 and self.on_new is not None:
            self.on_new()
            self.flush()
            self.preamble = self.size  # (a pcap header, a handshake per open connection)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
