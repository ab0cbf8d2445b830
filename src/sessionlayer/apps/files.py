"""Resumable file transfer over sessions: ``sessionlayer send`` and the server's file service.

One transfer is one activity (X.215 activity management):

* the request is in the CN's hello (``op``, ``name``, ``size``; the server refuses a bad
  name, a full disk or an unknown interrupted transfer with an RF that says why);
* S-ACTIVITY-START (a new transfer) or S-ACTIVITY-RESUME with linking information (the
  rerun of an interrupted one, on a new session) opens it;
* S-DATA carries the file in chunks;
* every ``checkpoint`` octets an S-SYNC-MAJOR point records the offset and a running
  SHA-256 digest of the file so far.  The receiver makes the data durable (fsync) and
  records its state before it confirms the point, so a confirmed checkpoint is a promise;
* a last point carries the whole file's SHA-256: the receiver checks it, renames the
  temporary file to its final name, and only then confirms;
* S-ACTIVITY-END closes it.

A lost connection is the session's business: recovery resumes in place.  A server that
lost the session (a restart) resumes it from the last checkpoint, and the sender goes on
from that offset.  A killed sender reruns the same command: its state file (under the
user's state directory) names the activity and the last confirmed checkpoint, and the new
session resumes the activity there.  The source file must not have changed (size, mtime
and the checkpointed digest are checked).  While it is sent, its stat (size, mtime, ctime,
inode) is taken again before each checkpoint and the last one: the digests are of the
octets sent, hashed as they are read, so only the stat shows a file rewritten meanwhile.
A sender killed after the last confirm reruns without sending: the server remembers
finished transfers (``FileService.remember_finished``) and answers at connect.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import logging
import mmap
import os
import secrets
import shutil
import ssl
import time
import unicodedata
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_ISDIR, S_ISREG
from typing import Any, NoReturn

from ..aio import ConnectRequest, Options, Refuse, Session, connect
from ..aio.sockets import host_port, unreachable
from ..errors import (
    CheckpointRestored,
    ConnectRefused,
    SessionAborted,
    SessionClosed,
    SessionLayerError,
)
from ..machine import SessionConfig
from ..machine import events as ev
from ..machine.sync import MAX_SERIAL
from ..recovery import Checkpoint
from ..spdu.codes import FunctionalUnit as FU
from ..spdu.types import ConnectionId
from .transfer_again import SessionLost, lost, run_again
from .transfer_state import (
    RunLock,
    StateError,
    TransferError,
    checked_entry,
    load_states,
    make_state_dir,
    read_json,
    state_file,
    update_states,
)
from .transfer_state import fsync_dir as _fsync_dir
from .transfer_state import write_json as _write_json

log = logging.getLogger("sessionlayer")

__all__ = ["FILES_CONFIG", "MIN_CHECKPOINT", "MAX_CHECKPOINTS", "too_many_checkpoints",
           "FileService", "TransferError", "send_file", "get_file", "SendResult",
           "chain_start", "not_replaceable"]  # fmt: skip

#: What a file transfer session proposes: duplex data inside activities, major sync points
#: (the checkpoints), symmetric synchronize (recovery's acknowledgements), typed data (the
#: receiver's error reports).
FILES_CONFIG = SessionConfig(
    functional_units=FU.DUPLEX | FU.ACTIVITY | FU.MAJOR_SYNC | FU.SYMMETRIC_SYNC | FU.RESYNC
    | FU.TYPED_DATA
)
#: Octets per S-DATA: the default max_tsdu_size (1 MiB) takes it whole with its header, and
#: it is whole 4 KiB blocks (the receiver's direct I/O).
CHUNK = 1020 * 1024
SERVICE = "files"  #: the application parameter ``service`` that selects this service


#: The smallest checkpoint interval a transfer takes, in octets (a request for less is
#: refused: a checkpoint is a confirmed round trip and an fsync).
MIN_CHECKPOINT = 4096


#: The most checkpoints one transfer makes: sync serial numbers end at 999999 (X.225
#: 8.3.20) for the whole activity, and the session's acknowledgement points take theirs
#: from the same count: half is left to them.
MAX_CHECKPOINTS = MAX_SERIAL // 2


def too_many_checkpoints(size: int, every: int) -> str | None:
    """Why a transfer of ``size`` octets cannot have a checkpoint every ``every`` (None: it
    can): more than :data:`MAX_CHECKPOINTS`, which it would find out near its end, and
    every rerun again ("condition 'sn_room' does not hold")."""
    if size // every + 1 <= MAX_CHECKPOINTS:
        return None
    least = -(-size * 1000 // ((MAX_CHECKPOINTS - 1) << 20)) / 1000  # (MiB, rounded up)
    return (f"a checkpoint every {every / (1 << 20):g} MiB makes {size // every + 1}"
            f" checkpoints of {size} octets, more than a transfer can have"
            f" ({MAX_CHECKPOINTS}): use --checkpoint {least:g} or more")


def _interval(every: int, left: int, serial: int) -> int:
    """The checkpoint interval for the ``left`` octets of a transfer resumed at sync serial
    number ``serial``: ``every``, or more where the serial numbers left would not last
    (half of them for the acknowledgement points, as in MAX_CHECKPOINTS); TransferError
    when too few are left for any."""
    room = (MAX_SERIAL - serial) // 2
    if room < 2:
        raise TransferError(f"this transfer has used up its sync serial numbers (at {serial}"
                            f" of {MAX_SERIAL}): start it again with --restart")
    return max(every, -(-left // (room - 1)))


def chain_start() -> bytes:
    """The running SHA-256 digest of nothing yet (a checkpoint's ``c`` is the SHA-256 of
    the file up to its offset: one hash pass serves the checkpoints and the whole file)."""
    return hashlib.sha256().digest()


def _json(data: bytes | None) -> dict[str, Any]:
    try:
        obj = read_json(bytes(data or b"{}"))
    except ValueError:
        return {}
    return obj if isinstance(obj, dict) else {}


#: What a server answers a rerun of a transfer that ended here (its last confirm lost):
#: ``'NAME' is already here, complete: SHA-256 <hex>`` (an RF: nothing is sent again).
ALREADY = "is already here, complete: SHA-256 "
_DONE = ".done"  #: a finished transfer's record, ``<activity>.done`` in the state directory
_DONE_KEEP = 1000  #: finished transfers remembered at most
_DONE_FOR = 7 * 86400.0  #: and for at most this many seconds

#: The longest path the server takes (Linux's PATH_MAX, with its terminating NUL).
_PATH_MAX = 4096
_PART = ".part"  #: a partial file's suffix: ``.NAME.<activity>.part``


def _name_max(directory: Path) -> int:
    """The longest file name (octets) ``directory``'s file system takes (255 if unknown)."""
    try:
        return int(os.pathconf(directory, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return 255


def _shown(name: str) -> str:
    """``name`` as a reason shows it: repr, a long one cut short."""
    return repr(name) if len(name) <= 64 else repr(name[:48]) + f"... ({len(name)} characters)"


def not_replaceable(path: str | os.PathLike[str]) -> str | None:
    """Why a transfer's file may not take ``path``'s place (None: it may): a regular file is
    replaced, and nothing is made; a FIFO, a device, a socket or a directory is never
    replaced by a file, nor is a symbolic link to one of them or to nothing."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "a symbolic link to nothing" if os.path.islink(path) else None
    except OSError as exc:
        return os.strerror(exc.errno or errno.EIO)
    if S_ISDIR(st.st_mode):
        return "a directory"
    if not S_ISREG(st.st_mode):
        return "not a regular file" + (" (a symbolic link to one)" if os.path.islink(path)
                                       else "")  # fmt: skip
    return None


def _temp_path(path: Path, activity: str) -> Path:
    """The partial file of ``path``'s transfer ``activity``: ``.NAME.<activity>.part``, NAME
    cut short where the whole would be longer than the file system takes (every valid
    final name has one; the activity keeps them apart)."""
    room = _name_max(path.parent) - len(f"..{activity}{_PART}")
    name = path.name
    while len(os.fsencode(name)) > room:  # (at most len(name) rounds)
        name = name[:-1]
    return path.with_name(f".{name}.{activity}{_PART}")


# ---------------------------------------------------------------------------- the server


@dataclass
class _Upload:
    """The receiver's state of one transfer (saved at each checkpoint)."""

    activity: str
    name: str
    size: int
    mtime: float
    checkpoints: list[tuple[int, str]] = field(default_factory=list)  # (offset, digest hex)

    def save(self, path: Path) -> None:
        _write_json(path, {"activity": self.activity, "name": self.name, "size": self.size,
                           "mtime": self.mtime, "checkpoints": self.checkpoints})  # fmt: skip

    @classmethod
    def load(cls, path: Path) -> _Upload | None:
        """The record at ``path``; None if there is none, or it does not load (see
        :meth:`problem`)."""
        try:
            return cls._read(path)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    @classmethod
    def problem(cls, path: Path) -> str | None:
        """What is wrong with the record at ``path`` (None: there is none, or it loads)."""
        try:
            cls._read(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            return f"cannot be read: {exc.strerror or exc}"
        except json.JSONDecodeError as exc:
            return f"not JSON: {exc}"
        except KeyError as exc:
            return f"no {exc} in it"
        except (ValueError, TypeError) as exc:
            return f"not a transfer record: {exc}"
        return None

    @classmethod
    def _read(cls, path: Path) -> _Upload:
        obj = read_json(path.read_text())
        return cls(obj["activity"], obj["name"], int(obj["size"]), float(obj["mtime"]),
                   [(int(o), str(c)) for o, c in obj["checkpoints"]])  # fmt: skip


#: Bidirectional controls: U+202E shows "gpj.exe" as "exe.jpg" (format characters that
#: join, such as U+200D in emoji, stay allowed).
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
#: Controls (C0, DEL, C1: 0x9B is a CSI), lone surrogates, line and paragraph separators.
_TRAPS = frozenset(("Cc", "Cs", "Zl", "Zp"))


def _text(name: str) -> bool:
    """Whether ``name`` is Unicode text (UTF-8 encodes it): a local path's stray octets
    are lone surrogates (os.fsdecode's), which no server's name can be."""
    try:
        name.encode()
    except UnicodeEncodeError:
        return False
    return True


def _trap(name: str) -> str | None:
    """The first character of ``name`` that is a trap in a file name, if any."""
    return next((c for c in name if c in _BIDI or unicodedata.category(c) in _TRAPS), None)


class FileService:
    """The server side: receives files into ``root``; its state in ``state_dir``.

    ``peer_names``: the names come from peers (the server), so a name with a character
    that is a trap for a terminal or a script is refused; False for a client's own local
    file (``get -o``), whose name is the user's."""

    def __init__(self, root: Path, state_dir: Path, *, peer_names: bool = True) -> None:
        self.peer_names = peer_names
        self.root = Path(root)
        self.state_dir = Path(state_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.holders: dict[str, Session] = {}  # activity -> the session receiving it
        self.remember = True  # record finished transfers (``remember_finished``)
        self.progress: dict[str, dict[str, Any]] = {}  # session id -> what it transfers

    # ------------------------------------------------------------ checking the request

    def target(self, name: Any) -> Path:
        """The path ``name`` stands for under ``root``; Refuse if it escapes it, or is not a
        file name the server's file system takes (an empty part, a trailing ``/``, a part
        of dots only, a part longer than NAME_MAX octets): at connect, before any data,
        and without the server's own path in the reason."""
        if not isinstance(name, str) or not name:
            raise Refuse("a file name is required")
        # A newline, an escape or a bidi override in a file name is a trap for the
        # operator's terminal and scripts, NUL ends it in the kernel; a lone surrogate is
        # not text (U+DC80..U+DCFF passed as raw octets 0x80..0xFF, 0x9B a CSI among them).
        trap = _trap(name) if self.peer_names else None
        if trap is not None and unicodedata.category(trap) == "Cs":
            raise Refuse(f"the name {_shown(name)} is not a name the server's file system"
                         f" takes (not Unicode text: U+{ord(trap):04X})")  # fmt: skip
        if trap is not None:
            raise Refuse(f"the name {_shown(name)} has a control character"
                         f" (U+{ord(trap):04X})")  # fmt: skip
        try:
            os.fsencode(name)
        except UnicodeEncodeError:
            raise Refuse(f"the name {_shown(name)} is not a name the server's file system"
                         " takes (not Unicode text)") from None  # fmt: skip
        if name.startswith("/") or os.path.isabs(name) or ".." in name.split("/"):
            raise Refuse(f"the name {_shown(name)} is outside the served directory")
        parts = name.split("/")
        if "" in parts or any(not part.strip(".") for part in parts):
            raise Refuse(f"the name {_shown(name)} is not a file name (an empty part, a"
                         " trailing '/' or a part of dots only)")  # fmt: skip
        root = self.root.resolve()
        most = _name_max(root)
        if any(len(os.fsencode(part)) > most for part in parts):
            raise Refuse(f"the name {_shown(name)} is too long: at most {most} octets"
                         " between slashes")  # fmt: skip
        if len(os.fsencode(root / name)) >= _PATH_MAX:
            raise Refuse(f"the name {_shown(name)} is too long for the server")
        path = (root / name).resolve()
        if path == root or root not in path.parents:
            raise Refuse(f"the name {_shown(name)} is outside the served directory (a link"
                         " out?)")  # fmt: skip
        return path

    def check(self, request: ConnectRequest) -> bool:
        """Refuse (RF with the reason) what cannot be done: called before the accept.  True
        otherwise, so that it can be an ``authenticate`` callback as it is.  What the file
        system answers (a symbolic link loop, a directory it may not search, a served
        directory gone) is a refusal that says so, without the server's path (it was an
        "authentication error", and an ERROR with a traceback's words in the log)."""
        obj = _json(request.data)
        try:
            return self._check(obj)
        except RecursionError:  # (a bug, not a link loop: JSON nested too deep is read_json's
            raise  # ValueError)
        except RuntimeError:  # (pathlib's resolve() of a symbolic link loop)
            why = os.strerror(errno.ELOOP)
        except OSError as exc:
            why = os.strerror(exc.errno or errno.EIO)
        raise Refuse(f"cannot use {_shown(str(obj.get('name')))} on the server: {why}")

    def _check(self, obj: dict[str, Any]) -> bool:
        if obj.get("op") == "get":
            source = self.target(obj.get("name"))
            if not source.is_file():
                raise Refuse(f"no file {obj.get('name')!r} here")
            every = obj.get("checkpoint")
            if every is not None and (type(every) is not int or every < MIN_CHECKPOINT):
                raise Refuse(f"the checkpoint interval must be at least {MIN_CHECKPOINT}"
                             " octets")  # fmt: skip
            why = too_many_checkpoints(source.stat().st_size, every or (64 << 20))
            if why is not None:
                raise Refuse(why)
            return True
        if obj.get("op") != "put":
            raise Refuse("unknown file operation (expected 'put' or 'get')")
        path = self.target(obj.get("name"))
        root = self.root.resolve()
        for place in (path, *path.parents):  # (what is there must be directories, and
            if place == root:  # the file itself a file, or nothing yet)
                break
            if place.exists() and not (place.is_file() if place == path else place.is_dir()):
                what = ("a directory" if place.is_dir() else "not a regular file") if (
                    place == path) else "not a directory"  # fmt: skip
                raise Refuse(f"{obj.get('name')!r} cannot be written on the server:"
                             f" {place.relative_to(root)} is {what}")  # fmt: skip
        size = obj.get("size")
        if type(size) is not int or size < 0:
            raise Refuse("the file size is missing")
        resume = obj.get("resume")
        have = 0
        if resume is not None:
            resume = resume if isinstance(resume, dict) else {}
            activity = str(resume.get("activity", ""))
            state = self.state(activity)
            offset: Any = resume.get("offset")
            if state is None and self._finished(activity, obj.get("name"), size,
                                                resume.get("sha256")):  # fmt: skip
                # (its last checkpoint was confirmed, the sender did not hear it: done)
                raise Refuse(f"{obj.get('name')!r} {ALREADY}{resume.get('sha256')}")
            if state is None and (why := self.damaged(activity)) is not None:
                raise Refuse(f"the server's record of this interrupted transfer is damaged"
                             f" ({why}): start it again with --restart")  # fmt: skip
            start = offset == 0 and resume.get("chain") == chain_start().hex()
            if not start and (state is None or state.name != obj.get("name") or not any(
                o == offset and c == resume.get("chain") for o, c in state.checkpoints
            )):  # (at 0: a send killed before its first checkpoint was confirmed)
                raise Refuse("no such interrupted transfer here (or its checkpoint is unknown):"
                             " start it again with --restart")  # fmt: skip
            have = int(offset)  # (one of the checkpoints': an int)
        free = shutil.disk_usage(path.parent if path.parent.exists() else self.root).free
        if size - have > free:
            raise Refuse(f"not enough space on the server for {obj.get('name')!r}: needs"
                         f" {size - have} octets, {free} free")  # fmt: skip
        return True

    def state_path(self, activity: str) -> Path:
        return self.state_dir / f"{activity}.json"

    def _finished(self, activity: str, name: Any, size: int, sha256: Any) -> bool:
        """Whether the transfer ``activity`` of ``name`` ended here with that SHA-256, and
        the file is still what it left (its size and modification time)."""
        done = self.finished(activity)
        return done is not None and (done["name"], done["size"], done["sha256"]) == (
            name, size, sha256)

    def finished(self, activity: str) -> dict[str, Any] | None:
        """The record of the transfer ``activity`` that ended here (its ``name``, ``size``
        and ``sha256``), while its file is still what it left (its size and modification
        time); None otherwise."""
        if not activity or not all(c in "0123456789abcdef" for c in activity):
            return None
        try:
            done = read_json((self.state_dir / f"{activity}{_DONE}").read_text())
            st = self.target(done["name"]).stat()
            if (isinstance(done["sha256"], str) and type(done["size"]) is int
                    and done["size"] == st.st_size and done["mtime_ns"] == st.st_mtime_ns):
                return {k: done[k] for k in ("name", "size", "sha256")}
        except (OSError, ValueError, KeyError, TypeError, Refuse):
            pass
        return None

    def remember_finished(self, upload: _Upload, sha256: str, path: Path) -> None:
        """Record that ``upload`` ended (a sender killed before it heard the last confirm
        reruns without sending anything: ``check``); keep the newest ``_DONE_KEEP``
        records, none older than ``_DONE_FOR`` seconds."""
        if not self.remember:
            return
        with contextlib.suppress(OSError):
            _write_json(self.state_dir / f"{upload.activity}{_DONE}", {
                "name": upload.name, "size": upload.size, "sha256": sha256,
                "mtime_ns": path.stat().st_mtime_ns})  # fmt: skip
        records: list[tuple[float, Path]] = []
        with contextlib.suppress(OSError):
            for record in self.state_dir.glob(f"*{_DONE}"):
                with contextlib.suppress(OSError):
                    records.append((record.stat().st_mtime, record))
        records.sort(reverse=True)
        old = time.time() - _DONE_FOR
        for i, (when, record) in enumerate(records):
            if i >= _DONE_KEEP or when < old:
                with contextlib.suppress(OSError):
                    record.unlink()

    def drop(self, activity: str, name: Any) -> None:
        """Remove the interrupted transfer ``activity`` of ``name`` (its partial file and
        state), if there is one: a ``--restart`` of the same file replaces it."""
        state = self.state(activity)
        if state is None and self.damaged(activity) is not None:
            state = _Upload(activity, str(name), 0, 0.0)  # (its name unknown: the request's)
        if state is None or state.name != name:
            return
        holder = self.holders.pop(activity, None)
        if holder is not None and not holder.closed:
            holder.abort()  # (a sender still at it: the restart took over)
        with contextlib.suppress(OSError, Refuse):
            _temp_path(self.target(name), activity).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.state_path(activity).unlink(missing_ok=True)

    def state(self, activity: str) -> _Upload | None:
        if not activity or not all(c in "0123456789abcdef" for c in activity):
            return None
        return _Upload.load(self.state_path(activity))

    def damaged(self, activity: str) -> str | None:
        """What is wrong with the record of the transfer ``activity``, when there is one
        that does not load (logged at WARNING, naming the file); None otherwise."""
        if not activity or not all(c in "0123456789abcdef" for c in activity):
            return None
        path = self.state_path(activity)
        why = _Upload.problem(path)
        if why is not None:
            log.warning("the transfer record %s is damaged: %s", path, why)
        return why

    # ------------------------------------------------------------ receiving

    async def handle(self, session: Session) -> None:
        """Receive the transfer the session's hello asked for (or resumes)."""
        request = _json(session.peer_data)
        restored = _json(session.restored.user_data) if session.restored else {}
        try:
            if request.get("op") == "get" or restored.get("op") == "get":
                await self._serve_get(session, request, restored)
            else:
                await _Receiver(self, session).run()
        finally:
            self.progress.pop(session.id, None)

    async def _serve_get(self, session: Session, request: dict[str, Any],
                         restored: dict[str, Any]) -> None:  # fmt: skip
        """Send a file (``sessionlayer get``): this side is the sender."""
        name = request.get("name") or restored.get("n")
        path = self.target(name)
        every = int(request.get("checkpoint") or restored.get("e") or (64 << 20))
        try:
            handle = open(path, "rb")  # noqa: SIM115
        except OSError as exc:
            await _stop(session, f"cannot read {name!r} on the server: {exc.strerror}")
        with handle:
            size = os.fstat(handle.fileno()).st_size
            resume = request.get("resume") or (
                {"activity": restored["a"], "offset": restored["o"], "chain": restored["c"],
                 "session": session.id} if restored.get("a") else None)  # fmt: skip
            offset, chain, whole = 0, chain_start(), hashlib.sha256()
            saved = None
            if resume is not None:
                offset = int(resume.get("offset", 0))
                chain, whole = await asyncio.to_thread(_rehash, handle, offset)
                if chain.hex() != resume.get("chain"):
                    await _stop(session, f"{name!r} changed on the server since the"
                                " interrupted transfer: fetch it again with --restart")
                saved = {"activity": resume["activity"], "session": resume.get("session") or
                         session.id, "serial": 0}  # fmt: skip
            sender = _Sender(session, handle, str(name), size, 0.0, every, None, "", None,
                             release=False, path=path)  # fmt: skip
            sender.op = "get"

            def report(state: dict[str, Any]) -> None:
                self.progress[session.id] = {k: state[k] for k in ("name", "size", "done")}

            sender.progress = report
            await sender.run(saved, offset, chain, whole)


async def _stop(session: Session, why: str) -> NoReturn:
    """Tell the peer ``why`` (typed data: its one line), abort the session, raise
    TransferError: an abort alone reached it as "aborted by the peer"."""
    with contextlib.suppress(SessionLayerError):
        await session.send_typed(json.dumps({"error": why}).encode())
    session.abort()
    raise TransferError(why)


#: Octets handed to a receiver's writer and hasher and not yet written and hashed: beyond
#: it the receiver stops reading (the peer's sends wait); what a checkpoint waits for.
_PENDING = 4 << 20
#: Direct I/O (O_DIRECT, where the file system has it): the receiver copies what comes into
#: an aligned buffer of this size and writes it out whole blocks at a time, past the page
#: cache (the kernel does not copy it again, the fsync finds nothing left to write).
_STAGE = 4 << 20
_ALIGN = 4096  #: what direct I/O's offsets, sizes and buffers are aligned to
#: Without direct I/O: the receiver starts the writeback (fdatasync, in a thread of its
#: own) every this many octets written, so that the fsync before a checkpoint's confirm
#: finds little left to write.
_FLUSH = 8 << 20


def _pwrite(fd: int, data: Any, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        if not n:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[n:]
        offset += n


class _Disk:
    """A receiver's writes and hash of what it receives, off the event loop: one thread
    writes the data to the file, another hashes it (both release the GIL, so they run
    beside the loop and each other).  ``put`` hands over a chunk (it waits while
    ``_PENDING`` octets are under way); ``settle`` waits until all of it is written (the
    page cache holds at most the last partial block) and hashed, and raises the write's
    OSError; ``sync`` makes it durable (fsync, in a third thread).

    The file is written with direct I/O where the file system allows it (a second
    descriptor with O_DIRECT, whole blocks from an aligned buffer); the partial block at
    a checkpoint (or the end) goes through ``fd`` and is written again, whole, with what
    follows it.  Elsewhere (or after an EINVAL) ``fd`` takes it all, and the writeback is
    started every ``_FLUSH`` octets."""

    def __init__(self, fd: int, path: Path, offset: int, whole: Any,
                 kept: bytes | None = None) -> None:  # fmt: skip
        self.fd = fd
        self.offset = offset  # where the next chunk goes
        self.whole = whole
        self.writer = ThreadPoolExecutor(1, "files-write")
        self.hasher = ThreadPoolExecutor(1, "files-hash")
        self.flusher = ThreadPoolExecutor(1, "files-flush")
        self.pending: deque[tuple[Future[Any], Future[Any], int]] = deque()
        self.closed = False
        # ``kept``: the file's first ``offset`` octets hash to it (checked in the hash thread
        # before anything that comes; the first ``put`` waits for the verdict)
        self.checking: Future[Any] | None = None
        if kept is not None and offset:
            self.checking = self.hasher.submit(self._check_kept, offset, kept)
        self.size = 0  # octets in ``pending``
        self.error: BaseException | None = None  # a write's
        # the writer thread's:
        self.unflushed = 0  # octets written (buffered) since the last fdatasync started
        self.flushing: Future[Any] | None = None
        self.direct = -1  # the O_DIRECT descriptor, -1 without
        self.base = offset - offset % _ALIGN  # the file offset of ``stage``'s first octet
        self.fill = offset - self.base  # octets in ``stage``
        self.stage: Any = None
        if hasattr(os, "O_DIRECT"):
            with contextlib.suppress(OSError):  # (no direct I/O here: fd takes it all)
                self.direct = os.open(path, os.O_WRONLY | os.O_DIRECT)
            if self.direct >= 0:
                try:
                    self.stage = mmap.mmap(-1, _STAGE)  # (page-aligned)
                    # the start of the block the offset is in (the file holds it: see _open)
                    self.stage[: self.fill] = os.pread(fd, self.fill, self.base)
                except BaseException:
                    os.close(self.direct)
                    raise

    def _check_kept(self, offset: int, kept: bytes) -> None:  # (the hash thread)
        _hash_prefix(self.fd, offset, self.whole, lambda: self.closed)
        if self.whole.digest() != kept:
            raise TransferError("what is kept of the file does not match its checkpoint:"
                                " start the transfer again with --restart")  # fmt: skip

    def _write(self, data: bytes, offset: int) -> None:  # (the writer thread)
        if self.direct < 0:
            _pwrite(self.fd, data, offset)
            self.unflushed += len(data)
            self._flushed()
            if self.unflushed >= _FLUSH and (self.flushing is None or self.flushing.done()):
                self.unflushed = 0
                self.flushing = self.flusher.submit(os.fdatasync, self.fd)
            return
        view = memoryview(data)
        while view:
            n = min(len(view), _STAGE - self.fill)
            self.stage[self.fill : self.fill + n] = view[:n]
            self.fill += n
            view = view[n:]
            if self.fill == _STAGE:
                self._blocks()
                if self.direct < 0:  # (direct I/O was refused: the rest as it comes)
                    self._write(bytes(view), offset + len(data) - len(view))
                    return

    def _flushed(self) -> None:
        """Raise the error of the last writeback started, if it is over and failed (the
        kernel reports a writeback error to a descriptor once: the fsync after it would
        succeed, and a checkpoint be confirmed that the disk does not hold)."""
        flushing = self.flushing
        if flushing is not None and flushing.done() and flushing.exception() is not None:
            raise flushing.exception()  # type: ignore[misc]

    def _blocks(self) -> None:
        """Write the whole blocks staged (direct I/O), keep the partial one."""
        whole = self.fill - self.fill % _ALIGN
        if not whole:
            return
        try:
            _pwrite(self.direct, memoryview(self.stage)[:whole], self.base)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            _pwrite(self.fd, memoryview(self.stage)[: self.fill], self.base)  # no direct I/O
            self.base += self.fill
            self.fill = 0
            os.close(self.direct)
            self.direct = -1
            return
        self.base += whole
        self.fill -= whole
        self.stage[: self.fill] = self.stage[whole : whole + self.fill]

    def _out(self) -> None:  # (the writer thread)
        """All of it to the file: the whole blocks, then the partial one through ``fd``."""
        if self.direct >= 0:
            self._blocks()
        if self.direct >= 0 and self.fill:
            _pwrite(self.fd, memoryview(self.stage)[: self.fill], self.base)

    async def _checked(self) -> None:
        """What was kept hashes to its checkpoint (else TransferError, from then on)."""
        if self.checking is not None:
            try:
                await asyncio.wrap_future(self.checking)
            except TransferError as exc:
                self.error = exc
            self.checking = None
        if self.error is not None:
            raise self.error

    async def put(self, data: bytes) -> None:
        if self.checking is not None:
            await self._checked()
        self.pending.append((self.writer.submit(self._write, data, self.offset),
                             self.hasher.submit(self.whole.update, data), len(data)))  # fmt: skip
        self.offset += len(data)
        self.size += len(data)
        self._reap()
        while self.size > _PENDING:
            await self._wait()

    async def settle(self) -> None:
        await self._checked()
        self.pending.append((self.writer.submit(self._out), self.hasher.submit(int), 0))
        while self.pending:
            await self._wait()
        if self.error is not None:
            raise self.error

    async def _wait(self) -> None:
        wrote, hashed, _ = self.pending[0]
        for future in (wrote, hashed):
            if not future.done():
                with contextlib.suppress(Exception):  # (taken from ``wrote`` by _reap: an
                    await asyncio.wrap_future(future)  # asyncio.wait would leave it unread)
        self._reap()

    def _reap(self) -> None:
        """Drop what is written and hashed from the head; raise the first write's OSError
        (then and from then on)."""
        pending = self.pending
        while pending and pending[0][0].done() and pending[0][1].done():
            wrote, _, n = pending.popleft()
            self.size -= n
            if self.error is None:
                self.error = wrote.exception()
        if self.error is not None:
            raise self.error

    async def sync(self) -> None:
        """(``flusher`` runs one call at a time: the writeback started last is over before
        the fsync starts, and its error is raised here.)"""
        await asyncio.wrap_future(self.flusher.submit(self._fsync))

    def _fsync(self) -> None:  # (the flush thread)
        self._flushed()
        os.fsync(self.fd)

    def close(self) -> None:
        """End the threads: what is queued is dropped (it follows the last checkpoint), as
        is what is staged.  Only a write already under way (one chunk at most) is waited
        for: the file may be opened again for a rerun, whose writes must not cross it.  An
        fdatasync under way holds the file itself, so the descriptors can go meanwhile (a
        check of what was kept stops at its next block)."""
        self.closed = True
        self.writer.shutdown(wait=True, cancel_futures=True)
        self.hasher.shutdown(wait=False, cancel_futures=True)
        self.flusher.shutdown(wait=False, cancel_futures=True)
        self.pending.clear()
        self.size = 0
        if self.direct >= 0:
            os.close(self.direct)
            self.direct = -1
        self.stage = None  # (not closed: a write's error may hold a view of it)


class _Receiver:
    """One session's side of one upload."""

    def __init__(self, service: FileService, session: Session,
                 request: dict[str, Any] | None = None,
                 progress: Callable[[dict[str, Any]], None] | None = None) -> None:  # fmt: skip
        self.service = service
        self.session = session
        self.report = progress
        self.request = request if request is not None else _json(session.peer_data)
        restored = session.restored
        self.back = _json(restored.user_data) if restored is not None else {}
        #: the record of the restored transfer when it ended here (``_ended_here``)
        self.ended: dict[str, Any] | None = None
        if restored is not None:  # (another process's session: the request is in its state)
            activity = str(self.back.get("a", ""))
            state = service.state(activity)
            self.ended = service.finished(activity) if state is None else None
            self.request = {} if state is None else {
                "op": "put", "name": state.name, "size": state.size, "mtime": state.mtime}
            if self.ended is not None:
                self.request = {"op": "put", "name": self.ended["name"],
                                "size": self.ended["size"]}  # fmt: skip
        self.path: Path | None = None
        self.size = 0
        if self.request.get("name") is not None:
            self.path = service.target(self.request.get("name"))
            self.size = int(self.request.get("size", 0))
        self.upload: _Upload | None = None
        self.file: Any = None
        self.disk: _Disk | None = None  # the writes and hash of what comes
        self.written = 0  # octets received (handed to ``disk``)
        self.received = 0  # octets that came in this run (again after a restore)
        self.restores = 0  # times the sender went back to a checkpoint (its server restarted)
        self.checkpoints = 0  # made durable and confirmed in this run (the last one too)
        self.chain = chain_start()
        self.whole = hashlib.sha256()
        self.advanced = asyncio.Event()
        self.done = False
        self.finished = False  # the whole file is under its final name
        self.confirmed: tuple[int, Any] = (-1, None)  # the last checkpoint made durable
        self.lock = asyncio.Lock()
        self.on_open: Callable[[str], None] | None = None  # told the activity's id
        self.peer_error: str | None = None  # the reason the peer gave (typed data)
        self.failed: str | None = None  # the reason this side stopped it (``_fail``)
        self.own = False  # its paths are this side's user's (a get): its reasons name them
        self.stopped = False  # it no longer receives (its file closed): nothing to confirm
        #: _events could not take the transfer (its file, its marker) and is telling the
        #: sender why: data that comes meanwhile waits for that error, not its own
        self.refusing = False

    @property
    def temp(self) -> Path:
        assert self.upload is not None and self.path is not None
        return _temp_path(self.path, self.upload.activity)

    def _open(self, activity: str, offset: int, chain: bytes,
              marker: dict[str, Any] | None = None) -> None:  # fmt: skip
        """Open the temporary file at ``offset`` (cut back to it), the chain at ``chain``;
        ``marker`` (the activity's user data) names the file if nothing else did."""
        service = self.service
        if marker and not self.size and isinstance(marker.get("size"), int):
            self.size = marker["size"]  # (a download learns the size from the sender)
        if self.path is None:
            if not marker or marker.get("name") is None:
                raise TransferError("a transfer without a file name")
            self.request = {"op": "put", "name": marker["name"], "size": marker.get("size", 0)}
            self.path = service.target(marker["name"])
            self.size = int(marker.get("size", 0))
        old = service.holders.get(activity)
        if old is not None and old is not self.session and not old.closed:
            old.abort()  # a rerun took the transfer over: the old session is over
        service.holders[activity] = self.session
        upload = service.state(activity)
        if upload is None:
            upload = _Upload(activity, str(self.request.get("name")), self.size,
                             float(self.request.get("mtime", 0.0)))  # fmt: skip
        upload.checkpoints = [(o, c) for o, c in upload.checkpoints if o <= offset]
        self.upload = upload
        self._close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.temp, "r+b" if self.temp.exists() else "w+b",  # noqa: SIM115
                         buffering=0)  # (written with os.pwrite only)
        self.file.truncate(offset)
        self.whole = hashlib.sha256()
        self.written = offset
        self.chain = chain
        self.confirmed = (offset, chain.hex())
        # (what is kept is hashed again in the disk's hash thread, ahead of what comes: a
        # long prefix would hold up the loop and every other session for seconds)
        self.disk = _Disk(self.file.fileno(), self.temp, offset, self.whole, chain)
        try:
            upload.save(self.service.state_path(activity))
        except OSError as exc:
            raise TransferError(self._unkept(exc)) from None
        if self.on_open is not None:
            self.on_open(activity)

    def _close(self) -> None:
        """The writes under way done (a rerun of the transfer or its end), the file closed."""
        if self.disk is not None:
            self.disk.close()
            self.disk = None
        if self.file is not None:
            self.file.close()
            self.file = None

    async def run(self) -> None:
        session = self.session
        session.on_checkpoint = self._checkpoint
        restored = session.restored
        if (restored is not None and restored.user_data and self.path is not None
                and self.ended is None):  # fmt: skip
            cp = _json(restored.user_data)  # back to a checkpoint (a restart, another node)
            self._open(str(cp.get("a", "")), int(cp.get("o", 0)), bytes.fromhex(cp.get("c", "")))
        events = asyncio.ensure_future(self._events())
        state: dict[str, Any] = {}  # what the server's status shows: updated in place
        try:
            while True:
                try:
                    data = await session.receive()
                except CheckpointRestored as exc:  # the sender's server went back (get)
                    self.restores += 1
                    back = _json(exc.user_data)
                    self._open(str(back.get("a", "")), int(back.get("o", 0)),
                               bytes.fromhex(str(back.get("c", ""))), back)  # fmt: skip
                    continue
                except SessionClosed:
                    break
                except SessionAborted:
                    if events.done() and not events.cancelled() and events.exception():
                        break  # (by _events, on an error: raised below)
                    raise
                disk = self.disk
                if disk is None:
                    if self.refusing:  # (the error _events raises, once the sender is told)
                        await asyncio.wait([events])
                        break
                    raise TransferError("data outside a transfer")
                self.written += len(data)
                self.received += len(data)
                try:
                    await disk.put(data)
                except OSError as exc:
                    await self._write_failed(exc)
                    return
                except TransferError as exc:  # what was kept did not hash to its checkpoint
                    await self._fail(str(exc))
                    raise
                if state.get("done") is None or state["name"] != self.request.get("name"):
                    state = {"name": self.request.get("name"), "size": self.size, "done": 0}
                    self.service.progress[session.id] = state
                state["done"] = self.written
                if self.report is not None:
                    self.report({**state, "sent": self.received, "checkpoints": len(
                        self.upload.checkpoints) if self.upload else 0,
                        "reconnects": session.resumes, "restores": self.restores})  # fmt: skip
                self.advanced.set()
        finally:
            self.stopped = True
            events.cancel()
            self._close()
            upload = self.upload
            if upload is not None and self.service.holders.get(upload.activity) is session:
                del self.service.holders[upload.activity]
            failed = None if events.cancelled() or not events.done() else events.exception()
        if failed is not None:  # (the session is aborted: the loop above ended)
            raise failed

    async def _events(self) -> None:
        try:
            async for event in self.session.events():
                if isinstance(event, ev.ActivityStartIndication):
                    activity = event.activity_id.hex()
                    replaces = self.request.get("replaces")  # (a --restart's)
                    if isinstance(replaces, str) and replaces != activity:
                        self.service.drop(replaces, self.request.get("name"))
                    self._open(activity, 0, chain_start(), _json(event.user_data))
                elif isinstance(event, ev.ActivityResumeIndication) and event.user_data:
                    # (a sender's resume says where: ours always carry the offset and chain)
                    marker = _json(event.user_data)
                    activity = event.activity_id.hex()
                    if self._ended_here(activity, marker):
                        continue  # (nothing to receive: its last point is confirmed again)
                    offset, chain = self._resumable(activity, marker)
                    self._open(activity, offset, chain, marker)
                elif isinstance(event, ev.ActivityEndIndication):
                    self.done = True
                elif isinstance(event, ev.TypedDataIndication):  # (the peer's reason)
                    self.peer_error = _json(event.data).get("error") or self.peer_error
        except Exception as exc:  # (a marker we cannot use, a file we cannot open)
            self.refusing = True
            why = str(exc) if isinstance(exc, SessionLayerError) else (
                f"cannot take the transfer: {os.strerror(exc.errno or errno.EIO)}"
                if isinstance(exc, OSError) else f"cannot take the transfer: {exc}")  # fmt: skip
            await self._fail(why)  # (an OSError's text names the server's path: not sent)
            if self.own and isinstance(exc, OSError):  # (a get: the path is this side's own)
                raise TransferError(f"cannot write {exc.filename or self.path}:"
                                    f" {os.strerror(exc.errno or errno.EIO)}") from None
            raise TransferError(why) from None

    def _ended_here(self, activity: str, marker: dict[str, Any]) -> bool:
        """Whether the restored transfer ``activity`` ended here already: the server was
        stopped once the whole file had its name (and its ``.done`` record), before the
        sender heard the last confirm.  Resumed at that last point (the store had it), there
        is nothing to receive: the sender makes the point again and ``_durable`` confirms
        it again.  Resumed at an earlier one (the stop came before the store had the last),
        TransferError: the file is here, complete (the sender knows its SHA-256)."""
        done, back = self.ended, self.back
        if done is None or back.get("a") != activity:
            return False
        if (marker.get("o") == back.get("o") == done["size"] and back.get("h") == done["sha256"]
                and marker.get("c") == back.get("c")):  # fmt: skip
            self.finished = True
            self.confirmed = (done["size"], back.get("c"))
            return True
        raise TransferError(f"{done['name']!r} {ALREADY}{done['sha256']}")

    def _resumable(self, activity: str, marker: dict[str, Any]) -> tuple[int, bytes]:
        """The offset and chain a peer's S-ACTIVITY-RESUME may go on from: the start, or a
        checkpoint this side confirmed (and recorded) of that transfer of that file; else
        TransferError, before anything is opened or made."""
        offset, chain = marker.get("o"), marker.get("c")
        if offset == 0 and chain == chain_start().hex():
            return 0, chain_start()
        state = self.service.state(activity)
        if state is None and (why := self.service.damaged(activity)) is not None:
            whose = "the local" if self.own else "the server's"
            raise TransferError(f"{whose} record of the transfer is damaged ({why}): start"
                                " it again with --restart")  # fmt: skip
        if (state is None or type(offset) is not int or state.name != self.request.get("name")
                or not 0 < offset <= state.size or (offset, chain) not in state.checkpoints):
            raise TransferError("the transfer was resumed at a checkpoint this side never"
                                " confirmed: start it again with --restart")  # fmt: skip
        return offset, bytes.fromhex(str(chain))

    async def _checkpoint(self, checkpoint: Checkpoint) -> None:
        """Before the MAA: everything up to the offset written, fsynced, recorded."""
        async with self.lock:  # (one made again after a lost connection waits for the first)
            try:
                await self._durable(checkpoint)
            except Exception:
                if self.stopped:  # (it stopped meanwhile, a get cancelled by Ctrl-C or
                    # SIGTERM: its file closed under this checkpoint, which is not made,
                    # and no error: it was "could not be made durable" and a traceback)
                    raise asyncio.CancelledError from None
                raise

    async def _durable(self, checkpoint: Checkpoint) -> None:
        cp = _json(checkpoint.user_data)
        offset = int(cp.get("o", -1))
        if (offset, cp.get("c")) == self.confirmed and (cp.get("h") is None or self.finished):
            return  # made again after a lost connection: it is durable already (an empty
            # file's last checkpoint is where it started: that one still has work to do)
        async with asyncio.timeout(60):
            while self.written < offset:  # (the data before the MAP is read first)
                self.advanced.clear()
                await self.advanced.wait()
        disk = self.disk
        if disk is None or self.upload is None or self.written != offset:
            raise TransferError(f"checkpoint at {offset}, {self.written} octets received")
        try:
            await disk.settle()  # all of it written and hashed
        except OSError as exc:
            await self._write_failed(exc)
            raise TransferError("the file could not be written") from None
        except TransferError as exc:  # what was kept did not hash to its checkpoint
            await self._fail(str(exc))
            raise
        self.chain = self.whole.digest()
        if self.chain.hex() != cp.get("c"):
            await self._fail("the data does not match the sender's checkpoint hash")
            raise TransferError("checkpoint hash mismatch")
        try:
            await disk.sync()
        except OSError as exc:  # (a writeback that failed: the disk does not hold it)
            await self._write_failed(exc)
            raise TransferError("the file could not be written") from None
        if cp.get("h") is not None:  # the last one: the whole file
            if self.whole.hexdigest() != cp["h"] or offset != self.size:
                await self._fail("the file's SHA-256 does not match the sender's")
                raise TransferError("SHA-256 mismatch")
            assert self.path is not None
            why = not_replaceable(self.path)  # (checked at the start: changed meanwhile?)
            if why is not None:
                shown = str(self.path) if self.own else repr(self.request.get("name"))
                await self._fail(f"{shown}: {why} now, not replaced by the file")
                raise TransferError(f"{shown}: {why}")
            os.replace(self.temp, self.path)
            _fsync_dir(self.path.parent)
            self.service.remember_finished(self.upload, cp["h"], self.path)
            with contextlib.suppress(OSError):
                self.service.state_path(self.upload.activity).unlink()
            self.confirmed = (offset, cp.get("c"))
            self.finished = True
            self.checkpoints += 1
            return
        self.upload.checkpoints.append((offset, self.chain.hex()))
        try:
            self.upload.save(self.service.state_path(self.upload.activity))
        except OSError as exc:  # (not confirmed: the point is not one a rerun can resume)
            why = self._unkept(exc)
            await self._fail(why, "the client cannot keep the transfer's state: "
                             + os.strerror(exc.errno or errno.EIO) if self.own else None)
            raise TransferError(why) from None
        self.confirmed = (offset, cp.get("c"))
        self.checkpoints += 1

    def _unkept(self, exc: OSError) -> str:
        """Why the transfer's state could not be recorded: on the server (its path not
        said), or for a get in this side's state directory, named (not the file's)."""
        why = os.strerror(exc.errno or errno.EIO)
        if self.own:
            return f"cannot keep the transfer's state in {self.service.state_dir}: {why}"
        return f"cannot keep the transfer's state on the server: {why}"

    async def _write_failed(self, exc: OSError) -> None:
        why = os.strerror(exc.errno or errno.EIO)
        if not self.own:
            await self._fail(f"cannot write {self.request.get('name')!r} on the server: {why}")
            return
        # (a get: this side's disk, not the server; the partial file and the last
        # checkpoint's record are kept, so that a rerun goes on from there)
        await self._fail(f"cannot write {self.temp}: {why} (a local write error: the partial"
                         " file and its last checkpoint are kept, rerun to resume)",
                         f"the client cannot write the file: {why}")  # fmt: skip

    async def _fail(self, message: str, told: str | None = None) -> None:
        """Tell the sender why (typed data: ``told``, else ``message``), then abort the
        session.  Not once it stopped (a get cancelled by Ctrl-C or SIGTERM closed its file
        under a checkpoint being made, whose EBADF is no write error to tell the sender):
        that checkpoint is cancelled, quietly, as in ``_checkpoint``."""
        if self.stopped:
            raise asyncio.CancelledError
        self.failed = self.failed or message
        with contextlib.suppress(SessionLayerError):
            await self.session.send_typed(json.dumps({"error": told or message}).encode())
        self.session.abort()


# ---------------------------------------------------------------------------- the client


@dataclass
class SendResult:
    name: str
    size: int
    sent: int  #: octets sent by this run (less than size when it resumed)
    resumed_from: int  #: the offset this run started at
    checkpoints: int  #: confirmed by the receiver in this run (the last one included)
    reconnects: int
    restores: int  #: times the server went back to a checkpoint
    sha256: str
    seconds: float


async def send_file(path: str | os.PathLike[str], host: str, port: int, *,
                    name: str | None = None, checkpoint: int = 64 << 20,
                    credentials: dict[str, str] | None = None, tls: Any = None,
                    server_hostname: str | None = None, state_dir: Path | None = None,
                    restart: bool = False, options: Options | None = None,
                    progress: Callable[[dict[str, Any]], None] | None = None,
                    trace: Callable[[str, bytes], None] | None = None,
                    ) -> SendResult:  # fmt: skip
    """Send the file at ``path`` to the file service at ``host:port`` as ``name``."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    source = Path(path)
    if checkpoint < MIN_CHECKPOINT:
        raise ValueError(f"checkpoint: at least {MIN_CHECKPOINT} octets")
    if not name and not _text(source.name):
        raise TransferError(f"the file name {_shown(source.name)} is not UTF-8 text, which"
                            " the server's names are: give it one with --name")  # fmt: skip
    name = name or source.name
    if not _text(name):
        raise ValueError(f"name: not UTF-8 text: {_shown(name)}")
    try:
        stat = source.stat()
        if not S_ISREG(stat.st_mode):  # (a FIFO would hang, a device never end)
            raise TransferError(f"cannot read {source}: not a regular file")
        handle = open(source, "rb")  # noqa: SIM115
        stat = os.fstat(handle.fileno())  # (the file opened: ``_Sender._unchanged``)
    except OSError as exc:
        why = os.strerror(exc.errno or errno.EIO)
        raise TransferError(f"cannot read {source}: {why}") from None
    if (many := too_many_checkpoints(stat.st_size, checkpoint)) is not None:
        handle.close()
        raise TransferError(many)
    states_path = state_file(state_dir)
    key = f"{host_port(host, port)}|{name}|{source.resolve()}"
    try:
        make_state_dir(states_path, state_dir)
        with RunLock(states_path.parent, f"send|{key}", f"sessionlayer send {source}"):
            job = _Job(source, handle, stat, name, key, states_path, checkpoint, progress)
            where = (host, port, tls, server_hostname, credentials, options, trace)
            result = await run_again(lambda again: _send(job, again, where), restart,
                                     (options or Options()).backoff.give_up)  # fmt: skip
    finally:
        handle.close()
    result.seconds = loop.time() - started
    return result


_SEND_FIELDS = ("activity", "offset", "chain", "size", "mtime", "session")


@dataclass
class _Job:
    """What ``send_file`` sends, and where its state is kept."""

    source: Path
    handle: Any
    stat: os.stat_result
    name: str
    key: str
    states_path: Path
    checkpoint: int
    progress: Callable[[dict[str, Any]], None] | None


async def _send(job: _Job, restart: bool, where: tuple[Any, ...]) -> SendResult:
    """``send_file`` once the run lock is held: the rerun's state checked against the file,
    the session opened (resuming the transfer), the file sent."""
    states_path, key, source, name, handle = (job.states_path, job.key, job.source, job.name,
                                              job.handle)  # fmt: skip
    size, mtime = job.stat.st_size, job.stat.st_mtime
    states = load_states(states_path)
    replaces = None  # (the interrupted transfer a --restart replaces: the server drops it)
    if restart:
        old = states.get(key)
        replaces, saved = (old.get("activity") if isinstance(old, dict) else None), None
    else:
        saved = checked_entry(states, key, states_path, _SEND_FIELDS)
    offset, chain, whole = 0, chain_start(), hashlib.sha256()
    finished = None  # the whole file's SHA-256, when its last checkpoint may have been had
    if saved is not None:
        if saved["size"] != size or saved["mtime"] != mtime:
            raise TransferError(f"{source} changed since the interrupted transfer (size or"
                                " modification time): rerun with --restart to send it anew")
        offset = saved["offset"]
        chain, whole, full = await asyncio.to_thread(_rehash_all, handle, offset,
                                                     size if saved.get("sha256") else None)
        if chain.hex() != saved["chain"] or full not in (None, saved.get("sha256")):
            raise TransferError(f"{source} changed since the interrupted transfer (its"
                                " checkpointed hash differs): rerun with --restart")
        finished = full
    request: dict[str, Any] = {"op": "put", "name": name, "size": size, "mtime": mtime}
    if saved is not None:
        request["resume"] = {"activity": saved["activity"], "offset": offset,
                             "chain": chain.hex()}  # fmt: skip
        if finished is not None:
            request["resume"]["sha256"] = finished
    if isinstance(replaces, str):
        request["replaces"] = replaces
    host, port, tls, server_hostname, credentials, options, trace = where
    try:
        session = await _connect(host, port, request, tls, server_hostname, credentials,
                                 options, trace)  # fmt: skip
    except TransferError as exc:
        if finished is not None and f"{ALREADY}{finished}" in str(exc):
            # the server had the last checkpoint (this side was killed before it heard the
            # confirm): the file is there, whole; nothing to send
            update_states(states_path, lambda states: states.pop(key, None) is not None)
            return SendResult(name, size, 0, size, 0, 0, 0, finished, 0.0)
        raise
    sender = _Sender(session, handle, name, size, mtime, job.checkpoint, states_path, key,
                     job.progress, path=source, opened=job.stat)  # fmt: skip
    return await sender.run(saved, offset, chain, whole)


async def _connect(host: str, port: int, request: dict[str, Any], tls: Any,
                   server_hostname: str | None, credentials: dict[str, str] | None,
                   options: Options | None,
                   trace: Callable[[str, bytes], None] | None = None) -> Session:  # fmt: skip
    """A session with the file service carrying ``request``; TransferError (one line) if
    there is none."""
    try:
        return await connect(
            host, port, tls=tls, server_hostname=server_hostname, credentials=credentials,
            offers={"service": [SERVICE]}, data=json.dumps(request).encode(),
            config=FILES_CONFIG, options=options or Options(tpdu_size=65408), trace=trace,
        )  # fmt: skip
    except ConnectRefused as exc:
        raise TransferError(f"the server refused: {exc.message}") from None
    except ssl.SSLError as exc:
        where = host_port(host, port)
        why = unreachable(exc).removeprefix("TLS: ")  # (a wrong CA: why it did not verify)
        raise TransferError(f"TLS with {where} failed: {why}") from None
    except (OSError, TimeoutError) as exc:
        where = host_port(host, port)
        raise TransferError(f"cannot reach {where}: {unreachable(exc)}") from None


def _rehash(handle: Any, offset: int) -> tuple[bytes, Any]:
    """(the SHA-256 digest, and the running hash) of the first ``offset`` octets of the open
    file ``handle``.  A sender runs it in a thread (``asyncio.to_thread``): a long prefix
    takes seconds, which the event loop and every other session would wait."""
    whole = hashlib.sha256()
    _hash_prefix(handle.fileno(), offset, whole)
    return whole.digest(), whole


def _rehash_all(handle: Any, offset: int,
                size: int | None) -> tuple[bytes, Any, str | None]:  # fmt: skip
    """``_rehash``, and with ``size`` the SHA-256 of the whole file too (one pass)."""
    chain, whole = _rehash(handle, offset)
    if size is None:
        return chain, whole, None
    rest = whole.copy()
    done = offset
    while done < size:  # (bounded: each round reads at least one octet, or raises)
        block = os.pread(handle.fileno(), min(size - done, 1 << 20), done)
        if not block:
            raise TransferError("the file is shorter than its checkpoint")
        rest.update(block)
        done += len(block)
    return chain, whole, rest.hexdigest()


def _hash_prefix(fd: int, offset: int, whole: Any,
                 stopped: Callable[[], bool] = bool) -> None:  # fmt: skip
    """``whole`` updated with the first ``offset`` octets of the file ``fd`` (until
    ``stopped()``: the file is being closed).  ``os.pread``: the file's position is nobody's
    business here (a reader or writer thread uses it)."""
    done = 0
    while done < offset and not stopped():
        block = os.pread(fd, min(offset - done, 1 << 20), done)
        if not block:
            raise TransferError("the file is shorter than its checkpoint")
        whole.update(block)
        done += len(block)




#: How many chunks a sender reads (and hashes) ahead of what it sends.
_AHEAD = 4


class _Reader:
    """A sender's reads and hash of its file, ahead of what it sends, in a thread of its
    own (``os.pread`` and hashlib release the GIL: the event loop only sends)."""

    def __init__(self, fd: int, offset: int) -> None:
        self.fd = fd
        self.executor = ThreadPoolExecutor(1, "files-read")
        self.ahead: deque[tuple[Future[bytes], int]] = deque()
        self.offset = offset  # where the reads asked for end

    def _read(self, offset: int, n: int, whole: Any) -> bytes:
        block = os.pread(self.fd, n, offset)
        whole.update(block)
        return block

    def fill(self, end: int, whole: Any) -> None:
        """Ask for up to ``_AHEAD`` chunks, none beyond ``end``, hashed into ``whole``."""
        while len(self.ahead) < _AHEAD and self.offset < end:
            n = min(CHUNK, end - self.offset)
            self.ahead.append((self.executor.submit(self._read, self.offset, n, whole), n))
            self.offset += n

    async def next(self) -> bytes:
        """The next chunk (b"" when the file ended before it: it shrank)."""
        future, n = self.ahead.popleft()
        block = future.result() if future.done() else await asyncio.wrap_future(future)
        return block if len(block) == n else b""

    def drop(self, offset: int) -> None:
        """Forget what was read ahead: the next read is at ``offset`` (a read under way
        hashes into the chain that is dropped with it, and comes before the next ones)."""
        for future, _ in self.ahead:
            future.cancel()
        self.ahead.clear()
        self.offset = offset

    def close(self) -> None:
        """End the thread without waiting (a read under way holds the file itself)."""
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.ahead.clear()


class _Sender:
    def __init__(self, session: Session, handle: Any, name: str, size: int, mtime: float,
                 every: int, states_path: Path | None, key: str,
                 progress: Callable[[dict[str, Any]], None] | None,
                 release: bool = True, path: Path | None = None,
                 opened: os.stat_result | None = None) -> None:  # fmt: skip
        self.release = release
        # what the file was when it was opened (``_unchanged``), and where it is
        self.opened = opened or os.fstat(handle.fileno())
        self.path = path
        self.op = "put"
        self.session = session
        self.handle = handle
        self.name = name
        self.size = size
        self.mtime = mtime
        self.every = every
        self.states_path = states_path
        self.key = key
        self.progress = progress
        self.checkpoints = 0
        self.restores = 0
        self.sent = 0
        self.sha256: str | None = None  # the whole file's, once it was all read (``_finish``)

    def _save(self, activity: str, offset: int, chain: bytes, serial: int) -> None:
        """Record the last confirmed checkpoint (StateError if it cannot be: ``run``
        aborts the session then, the transfer could not resume from it)."""
        if self.states_path is None:
            return
        entry = {"activity": activity, "offset": offset, "chain": chain.hex(),
                 "size": self.size, "mtime": self.mtime, "serial": serial,
                 "session": self.session.id}  # fmt: skip
        update_states(self.states_path, lambda states: states.update({self.key: entry}))

    def _finishing(self, sha256: str) -> None:
        """Record the whole file's SHA-256 before the last checkpoint is sent: a rerun after
        a kill that came once the receiver had it asks whether the file ended there."""
        if self.states_path is None:
            return

        def change(states: dict[str, Any]) -> bool:
            if not isinstance(states.get(self.key), dict):
                return False
            states[self.key]["sha256"] = sha256
            return True

        update_states(self.states_path, change)

    def _unchanged(self) -> None:
        """TransferError if the file is not what it was when it was opened (its size,
        modification or status change time, or another file under its name): what was
        sent may mix its old and new octets.  Its SHA-256 is of the octets sent (hashed as
        they are read), so the receiver's check of it cannot see such a change: this does
        (before each checkpoint and the last one)."""
        was = self.opened
        now = os.fstat(self.handle.fileno())
        what = ("size" if now.st_size != was.st_size or now.st_size != self.size else
                "modification time"
                if now.st_mtime_ns != was.st_mtime_ns else "status change time"
                if now.st_ctime_ns != was.st_ctime_ns else None)  # fmt: skip
        if what is None and self.path is not None:
            try:
                there = os.stat(self.path)
                if (there.st_ino, there.st_dev) != (was.st_ino, was.st_dev):
                    what = "file under its name"
            except OSError:
                what = "file under its name (it is gone)"
        if what is not None:
            again = "send it again" if self.op == "put" else "fetch it again"
            raise TransferError(f"{self.name} changed while it was sent (its {what}): {again}"
                                " once it no longer changes, with --restart")  # fmt: skip

    def _forget(self) -> None:
        if self.states_path is not None:
            update_states(self.states_path, lambda states: states.pop(self.key, None) is not None)

    def _report(self, offset: int) -> None:
        if self.progress is not None:
            self.progress({"name": self.name, "size": self.size, "done": offset,
                           "sent": self.sent, "checkpoints": self.checkpoints,
                           "reconnects": self.session.resumes, "restores": self.restores})

    async def run(self, saved: dict[str, Any] | None, offset: int, chain: bytes,
                  whole: Any) -> SendResult:  # fmt: skip
        session = self.session
        start = offset
        info = {"name": self.name, "size": self.size}
        try:  # (all of it: a state that cannot be kept aborts the session, as the rest)
            if saved is None:
                activity = secrets.token_bytes(6)
                await session.start_activity(activity, json.dumps(info).encode())
                self._save(activity.hex(), 0, chain, 0)
            else:
                activity = bytes.fromhex(saved["activity"])
                self.every = _interval(self.every, self.size - offset,
                                       int(saved.get("serial") or 0))  # fmt: skip
                old = ConnectionId(common_ref=bytes.fromhex(saved["session"]))
                marker = json.dumps({**info, "o": offset, "c": chain.hex()}).encode()
                await session.resume_activity(activity, activity,
                                              int(saved.get("serial") or 0),
                                              old_connection_id=old,
                                              user_data=marker)  # fmt: skip
            offset, chain, whole = await self._stream(activity, offset, chain, whole)
            await session.end_activity()
            self._forget()
            if self.release:
                await session.release()
        except SessionAborted as exc:
            why = self._why(exc)
            if lost(exc):  # (a new session goes on from the last checkpoint: run_again)
                raise SessionLost(why, SendResult(
                    self.name, self.size, self.sent, start, self.checkpoints, session.resumes,
                    self.restores, "", 0.0)) from None  # fmt: skip
            if self.sha256 is None or not why.endswith(f"{ALREADY}{self.sha256}"):
                raise TransferError(why) from None
            # (the server was stopped once it had the whole file, before this side heard
            # the last confirm, and went back to a checkpoint before it: the file is there)
            self._forget()
        except TransferError as exc:  # (the file changed, grew or shrank; this side's state
            # cannot be kept): the peer is told, and the session is over (not left detached,
            # waiting on the server for a rerun that would not find its checkpoint)
            told = ("the sender cannot keep its state of the transfer" if isinstance(
                exc, StateError) else str(exc))  # (not this side's paths)  # fmt: skip
            with contextlib.suppress(SessionLayerError):
                await session.send_typed(json.dumps({"error": told}).encode())
            session.abort()
            raise
        return SendResult(self.name, self.size, self.sent, start, self.checkpoints,
                          session.resumes, self.restores, self.sha256 or whole.hexdigest(),
                          0.0)  # fmt: skip

    def _why(self, exc: SessionAborted) -> str:
        """The receiver's reason (its typed data), else the abort's."""
        peer = "the server" if self.op == "put" else "the client"
        return _typed_error(self.session, peer) or f"the transfer was aborted: {exc}"

    async def _stream(self, activity: bytes, offset: int, chain: bytes,
                      whole: Any) -> tuple[int, bytes, Any]:  # fmt: skip
        session = self.session
        every = self.every
        mark = offset - offset % every  # (checkpoints fall on multiples of ``every``)
        reader = _Reader(self.handle.fileno(), offset)
        try:
            while True:
                try:
                    if offset >= self.size:
                        if os.pread(self.handle.fileno(), 1, offset):  # (/proc's say 0)
                            raise TransferError(f"{self.name}: the file grew while it was"
                                                " sent (or its size is not known)")  # fmt: skip
                        return await self._finish(activity, offset, whole)
                    end = min(self.size, mark + every)  # (reads stop at the checkpoint)
                    reader.fill(end, whole)
                    block = await reader.next()
                    if not block:
                        raise TransferError(f"{self.name}: the file shrank while it was sent")
                    point = offset + len(block) == end < self.size
                    if point:  # (read and hashed up to it, not beyond: the chain)
                        chain = whole.digest()
                        reader.fill(min(self.size, end + every), whole)  # (during the sync)
                    await session.send(block)
                    offset += len(block)
                    self.sent += len(block)
                    if point:
                        self._unchanged()
                        cp = {"a": activity.hex(), "o": offset, "c": chain.hex(), "op": self.op,
                              "n": self.name, "e": every}  # fmt: skip
                        serial = await session.sync(major=True,
                                                    user_data=json.dumps(cp).encode())
                        mark = offset
                        self.checkpoints += 1
                        self._save(activity.hex(), offset, chain, serial)
                    self._report(offset)
                except CheckpointRestored as exc:  # the server went back: so do we
                    self.restores += 1
                    back = _json(exc.user_data)
                    offset = int(back.get("o", 0))
                    reader.drop(offset)
                    chain, whole = await asyncio.to_thread(_rehash, self.handle, offset)
                    mark = offset
                    marker = json.dumps({"name": self.name, "size": self.size, "o": offset,
                                         "c": chain.hex()}).encode()  # fmt: skip
                    await session.resume_activity(activity, activity, exc.serial or 0,
                                                  old_connection_id=ConnectionId(
                                                      common_ref=bytes.fromhex(session.id)),
                                                  user_data=marker)  # fmt: skip
        finally:
            reader.close()

    async def _finish(self, activity: bytes, offset: int,
                      whole: Any) -> tuple[int, bytes, Any]:  # fmt: skip
        self._unchanged()  # (all of it read: what was sent is the file as it is)
        chain = whole.digest()
        cp = {"a": activity.hex(), "o": offset, "c": chain.hex(), "h": whole.hexdigest(),
              "op": self.op, "n": self.name, "e": self.every}  # fmt: skip
        self.sha256 = whole.hexdigest()
        self._finishing(self.sha256)
        await self.session.sync(major=True, user_data=json.dumps(cp).encode())
        self.checkpoints += 1
        self._report(offset)
        return offset, chain, whole


async def get_file(name: str, host: str, port: int, *, output: Path,
                   credentials: dict[str, str] | None = None, tls: Any = None,
                   server_hostname: str | None = None, state_dir: Path | None = None,
                   restart: bool = False, checkpoint: int = 64 << 20,
                   options: Options | None = None,
                   progress: Callable[[dict[str, Any]], None] | None = None,
                   ) -> SendResult:  # fmt: skip
    """Fetch ``name`` from the file service at ``host:port`` into ``output``: the server
    sends it as an activity with checkpoints; this side makes each durable before it
    confirms it, and a rerun after a kill resumes from the last one."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    output = Path(output)
    try:
        if output.is_dir():
            output = output / Path(name).name
        why = not_replaceable(output)  # (before anything is made: a FIFO stays a FIFO)
    except OSError as exc:  # (ENAMETOOLONG, EACCES: pathlib raises those)
        raise TransferError(f"cannot write {output}: {exc.strerror}") from None
    if checkpoint < MIN_CHECKPOINT:
        raise ValueError(f"checkpoint: at least {MIN_CHECKPOINT} octets")
    if not _text(name):
        raise ValueError(f"name: not UTF-8 text: {_shown(name)}")
    if why is not None:
        raise TransferError(f"cannot write {output}: {why}")
    downloads = state_file(state_dir).with_name("downloads")
    make_state_dir(downloads / "index.json", state_dir)
    try:
        local = FileService(output.parent, downloads, peer_names=False)
    except OSError as exc:
        raise TransferError(f"cannot write to {output.parent}: {exc.strerror}") from None
    try:  # (before any connection: it was found once the session was open, and left so)
        local.target(output.name)
    except Refuse as exc:
        raise TransferError(f"cannot write {output}: {exc}") from None
    local.remember = False  # (no rerun asks this side whether a download ended)
    key = f"{host_port(host, port)}|{name}|{output.resolve()}"
    where = (host, port, tls, server_hostname, credentials, options)
    with RunLock(downloads.parent, f"get|{key}", f"sessionlayer get {name} -o {output}"):
        result = await run_again(lambda again: _get(
            local, name, output, key, again, checkpoint, progress, where), restart,
            (options or Options()).backoff.give_up)  # fmt: skip
    result.seconds = loop.time() - started
    return result


async def _get(local: FileService, name: str, output: Path, key: str, restart: bool,
               checkpoint: int, progress: Callable[[dict[str, Any]], None] | None,
               where: tuple[Any, ...]) -> SendResult:  # fmt: skip
    """``get_file`` once the run lock is held."""
    index = local.state_dir / "index.json"
    states = load_states(index)
    known = None if restart else checked_entry(states, key, index, ("activity", "session"))
    request: dict[str, Any] = {"op": "get", "name": name, "checkpoint": checkpoint}
    state = local.state(known["activity"]) if known else None
    if known and state is None and local.state_path(known["activity"]).exists():
        raise StateError(f"the transfer state {local.state_path(known['activity'])} is"
                         " damaged: rerun with --restart to start the transfer again")
    if known and state is not None and state.checkpoints:
        offset, chain = state.checkpoints[-1]
        request["resume"] = {"activity": state.activity, "offset": offset, "chain": chain,
                             "session": known["session"]}  # fmt: skip
    host, port, tls, server_hostname, credentials, options = where
    session = await _connect(host, port, request, tls, server_hostname, credentials, options)
    receiver = _Receiver(local, session, {"op": "get", "name": output.name, "size": 0},
                         progress)  # fmt: skip
    start = int(request.get("resume", {}).get("offset", 0))
    old = states.get(key) if restart else None
    replaced = str(old.get("activity", "")) if isinstance(old, dict) else None
    first = known["session"] if known else session.id  # (the session a resume names)

    def remember(event: Any) -> None:  # the activity's id, for a rerun
        entry = {"activity": event, "session": first}
        update_states(index, lambda states: states.update({key: entry}))
        if replaced and replaced != event:  # (what the --restart replaces: its partial file)
            local.drop(replaced, output.name)

    receiver.on_open = remember
    receiver.own = True
    try:
        await receiver.run()
    except SessionAborted as exc:
        why = receiver.failed or (receiver.peer_error and
                                  f"the server stopped the transfer: {receiver.peer_error}")
        why = why or _typed_error(session) or f"the transfer was aborted: {exc}"
        if lost(exc) and not receiver.failed:  # (a new session goes on: run_again)
            raise SessionLost(why, SendResult(
                name, receiver.size, receiver.received, start, receiver.checkpoints,
                session.resumes, receiver.restores, "", 0.0)) from None  # fmt: skip
        raise TransferError(why) from None
    if receiver.failed:  # (this side stopped it: a local write error)
        raise TransferError(receiver.failed)
    if not receiver.finished:
        raise TransferError(f"the transfer of {name!r} ended before the whole file came")
    update_states(index, lambda states: states.pop(key, None) is not None)
    digest = hashlib.sha256()
    with open(output, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    # (checkpoints as the sender counts them: those of this run, the last one included;
    # the octets that came, as the sender counts those it sent: again after a restore)
    return SendResult(name, receiver.size, receiver.received, start, receiver.checkpoints,
                      session.resumes, receiver.restores, digest.hexdigest(), 0.0)  # fmt: skip


def _typed_error(session: Session, peer: str = "the server") -> str | None:
    """The reason ``peer`` gave (its typed data) for stopping the transfer, if it gave one."""
    while (event := session.next_event_nowait()) is not None:
        if isinstance(event, ev.TypedDataIndication):
            error = _json(event.data).get("error")
            if error:
                return f"{peer} stopped the transfer: {error}"
    return None
