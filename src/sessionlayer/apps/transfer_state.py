"""A client's state of its file transfers (``sessionlayer send`` and ``get``, apps/files.py).

* Where it is kept (:func:`state_file`): ``STATE-DIR/transfers.json`` for sends, and
  ``STATE-DIR/downloads/`` for gets (``index.json`` and a record per transfer).
* An index (``transfers.json``, ``downloads/index.json``) is shared by every transfer of
  the user: each change is read, made and written under an exclusive lock on
  ``INDEX.lock`` (:func:`update_states`), so that two transfers that end at once do not
  write away each other's entries.
* One run of a transfer at a time (:class:`RunLock`): ``STATE-DIR/running/<digest>.lock``,
  held (``fcntl.flock``) while it runs and let go by the kernel when its process dies; a
  second run is refused in one line that names the first one.
* What cannot be read as it was written (a truncated or edited index, an entry of the wrong
  shape) is a :class:`TransferError` that names the file, never a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import SessionLayerError

__all__ = ["TransferError", "StateError", "RunLock", "state_file", "make_state_dir",
           "load_states", "update_states", "checked_entry", "write_json", "fsync_dir",
           "read_json"]  # fmt: skip


class TransferError(SessionLayerError):
    """A transfer cannot go on; the message says why, in one line."""


class StateError(TransferError):
    """This side's own state of a transfer cannot be read or kept (not the peer's doing)."""


def _why(exc: OSError) -> str:
    return os.strerror(exc.errno or errno.EIO)


def read_json(text: str | bytes) -> Any:
    """``json.loads(text)``, with a text nested deeper than the decoder goes a ValueError
    ("JSON nested too deep") as any other text that is not JSON: the decoder's
    RecursionError is a RuntimeError, which a caller that catches ValueError let through
    (an internal error, exit 70, or "Too many levels of symbolic links" on the server)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deep") from None


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` to ``path`` atomically and durably, readable by its owner only (0600):
    a transfer's state (its activity, offsets and hash chain) is what resumes it, and was
    the umask's 0644 for any local user to read."""
    tmp = path.with_name(path.name + ".tmp")
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        os.fchmod(f.fileno(), 0o600)  # (a .tmp left by a killed run keeps its mode)
        json.dump(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def state_file(state_dir: Path | None = None) -> Path:
    """A client's state file: ``STATE-DIR/transfers.json`` (its downloads' state in
    ``STATE-DIR/downloads/``), STATE-DIR ``state_dir`` or by default
    ``$XDG_STATE_HOME/sessionlayer`` (``~/.local/state/sessionlayer``).  An explicit
    ``state_dir`` used to hold a ``sessionlayer/`` of its own: while nothing is at the new
    place and that one holds a state, it is still used (its interrupted transfers resume)."""
    if state_dir is None:
        base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local/state"
        return Path(base) / "sessionlayer" / "transfers.json"
    here, old = Path(state_dir), Path(state_dir) / "sessionlayer"
    if (not (here / "transfers.json").exists() and not (here / "downloads").exists()
            and ((old / "transfers.json").is_file() or (old / "downloads").is_dir())):
        return old / "transfers.json"
    return here / "transfers.json"


def make_state_dir(path: Path, state_dir: Path | None) -> None:
    """The directory of the state file ``path`` made now, before a session is opened (a
    transfer that could not record its checkpoints could not resume): an explicit
    ``state_dir`` is made if it is not there, never its parents; the default one with its
    parents."""
    try:
        if state_dir is not None:
            Path(state_dir).mkdir(exist_ok=True)
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        where = state_dir if state_dir is not None else path.parent
        raise StateError(f"cannot keep the transfer's state in {where}: {_why(exc)}"
                         " (--state-dir)") from None  # fmt: skip


def load_states(path: Path) -> dict[str, Any]:
    """The index at ``path`` ({} while there is none); StateError naming it if it cannot be
    read, or is not what this program writes (a JSON object)."""
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise StateError(f"cannot read the transfer state {path}: {_why(exc)}") from None
    try:
        obj = read_json(text)
    except ValueError:
        obj = None
    if not isinstance(obj, dict):
        raise StateError(f"the transfer state {path} is damaged (not a JSON object): move it"
                         " away to go on (the transfers it names then start again)")  # fmt: skip
    return obj


#: How long a change of an index waits for another process's change (they take a few
#: milliseconds): past it, the holder is taken to be stopped (Ctrl-Z) and StateError says so.
INDEX_LOCK_WAIT = 5.0


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """``path``'s index locked (``INDEX.lock``, exclusive): waited for, up to
    INDEX_LOCK_WAIT, in short steps (a blocking flock would hold the caller's event loop
    for as long as another process holds it: a stopped one, for ever)."""
    lock = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StateError(f"cannot keep the transfer state in {path.parent}:"
                         f" {_why(exc)}") from None  # fmt: skip
    try:
        deadline = time.monotonic() + INDEX_LOCK_WAIT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StateError(
                        f"the transfer state {path} has been locked by another process for"
                        f" {INDEX_LOCK_WAIT:g} s ({lock}): is a sessionlayer send or get"
                        " stopped (Ctrl-Z)? Let it go on, or end it") from None  # fmt: skip
                time.sleep(0.005)
            except OSError as exc:
                raise StateError(f"cannot lock {lock}: {_why(exc)}") from None
        yield
    finally:
        os.close(fd)  # (the lock goes with it)


def update_states(path: Path, change: Callable[[dict[str, Any]], bool | None]) -> None:
    """Read the index at ``path``, ``change`` it in place and write it back, all under its
    lock (``change`` returning False: nothing to write).  StateError naming it otherwise."""
    with _locked(path):
        states = load_states(path)
        if change(states) is False:
            return
        try:
            write_json(path, states)
        except OSError as exc:
            raise StateError(f"cannot keep the transfer state {path}: {_why(exc)}") from None


#: What a field of an index entry must be (bool is not an int here).
_KINDS: dict[str, Callable[[Any], bool]] = {
    "activity": lambda v: isinstance(v, str) and _hex(v),
    "session": lambda v: isinstance(v, str) and _hex(v),
    "chain": lambda v: isinstance(v, str) and _hex(v),
    "offset": lambda v: type(v) is int and v >= 0,
    "size": lambda v: type(v) is int and v >= 0,
    "serial": lambda v: v is None or (type(v) is int and v >= 0),
    "mtime": lambda v: type(v) in (int, float),
    "sha256": lambda v: isinstance(v, str) and _hex(v),
}


def _hex(text: str) -> bool:
    """Octets in hex as this program writes them (bytes.fromhex takes them back)."""
    return bool(text) and not len(text) % 2 and all(c in "0123456789abcdef" for c in text)


#: Fields checked when they are there (older versions did not write them all).
_OPTIONAL = ("sha256", "serial")


def checked_entry(states: dict[str, Any], key: str, path: Path,
                  fields: tuple[str, ...]) -> dict[str, Any] | None:  # fmt: skip
    """The entry ``key`` of the index at ``path`` (None if there is none), each of
    ``fields`` of the shape this program writes (and ``sha256`` and ``serial`` if they are
    there); StateError naming the file otherwise."""
    entry = states.get(key)
    if entry is None:
        return None
    wanted = fields + (tuple(f for f in _OPTIONAL if f in entry and f not in fields)
                       if isinstance(entry, dict) else ())  # fmt: skip
    if not isinstance(entry, dict) or not all(
            name in entry and _KINDS[name](entry[name]) for name in wanted):  # fmt: skip
        raise StateError(f"the transfer state {path} is damaged (this transfer's entry):"
                         " rerun with --restart to start it again")  # fmt: skip
    return entry


#: How many times a run lock is tried when the file keeps being removed under it.
_LOCK_TRIES = 10


class RunLock:
    """One run of a transfer at a time: ``running/<digest>.lock`` under ``root`` (the state
    directory), an exclusive ``flock`` held while the transfer runs.  The kernel lets go of
    it when the process ends however it ends, so a rerun after a kill takes over; a run
    while another one holds it is refused (StateError) naming that one (its pid, command
    and start, which it wrote into the file)."""

    def __init__(self, root: Path, key: str, command: str) -> None:
        # ("surrogatepass": a key names local paths, which need not be UTF-8: a name
        # from the file system holds its stray octets as lone surrogates, os.fsdecode's)
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        self.path = Path(root) / "running" / f"{digest}.lock"
        self.command = command
        self.fd = -1

    def acquire(self) -> None:
        for _ in range(_LOCK_TRIES):
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                raise StateError(f"this transfer is already running ({holder}): wait for it"
                                 " to end, or stop it and rerun to take it over") from None
            except OSError as exc:
                os.close(fd)
                raise StateError(f"cannot lock {self.path}: {_why(exc)}") from None
            # The run before may have removed the file between our open and our lock (see
            # release): a lock on a file no longer at the path locks nobody out.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except OSError:
                same = False
            if same:
                break
            os.close(fd)
        else:
            raise StateError(f"cannot lock {self.path}: it keeps being replaced")
        self.fd = fd
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
        with contextlib.suppress(OSError):  # (what the refusal of a second run shows)
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({"pid": os.getpid(), "command": self.command,
                                      "started": started}).encode(), 0)  # fmt: skip

    def _open(self) -> int:
        try:
            self.path.parent.mkdir(exist_ok=True)
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StateError(f"cannot keep the transfer state in {self.path.parent}:"
                             f" {_why(exc)}") from None  # fmt: skip

    def release(self) -> None:
        """Remove the file while still holding its lock (a run that opened it meanwhile
        sees, once it has the lock, that the path is no longer its file, and tries again),
        then let go: no lock file stays per transfer ever run."""
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


def _holder(fd: int) -> str:
    """Who holds a run lock, from what it wrote: ``pid 123, sessionlayer send ..., since
    ...`` (or less, if it had not written it yet)."""
    try:
        obj = read_json(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        obj = {}
    if not isinstance(obj, dict) or "pid" not in obj:
        return "by another process"
    return f"pid {obj.get('pid')}: {obj.get('command')}, since {obj.get('started')}"
