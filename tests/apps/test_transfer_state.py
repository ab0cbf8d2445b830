"""The client's transfer index under concurrent runs (apps/transfer_state.py): each change
is read, made and written under the index's lock, so that transfers that save their
checkpoints at once keep each other's entries; a change waits for another process's, but
not for ever (a process stopped while it holds the lock, Ctrl-Z, would otherwise hold
every other transfer's event loop as long as it is stopped: a real second process holds
it here, no sleeps); a damaged field is told before it is used."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from sessionlayer.apps import transfer_state
from sessionlayer.apps.transfer_state import (
    RunLock,
    StateError,
    checked_entry,
    load_states,
    update_states,
)

WRITERS = 4
EACH = 40


def _writer(path: str, who: int, start: object) -> None:
    start.wait()  # type: ignore[attr-defined]
    for i in range(EACH):
        update_states(Path(path), lambda states, i=i: states.update({f"{who}/{i}": i}))


def test_concurrent_updates_of_the_index_keep_every_entry(tmp_path: Path) -> None:
    index = tmp_path / "transfers.json"
    context = multiprocessing.get_context("fork")
    start = context.Event()
    workers = [context.Process(target=_writer, args=(str(index), who, start))
               for who in range(WRITERS)]  # fmt: skip
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    states = load_states(index)
    assert len(states) == WRITERS * EACH, sorted(states)

_HOLD = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()  # (until the test closes it: then the lock goes with the process)
"""


def _holder(lock: Path) -> subprocess.Popen[str]:
    child = subprocess.Popen([sys.executable, "-c", _HOLD, str(lock)], text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
    assert child.stdout is not None and child.stdout.readline() == "held\n"
    return child


def _add(states: dict[str, Any]) -> None:
    states["k"] = {"n": len(states)}


def test_a_lock_held_past_the_wait_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = tmp_path / "transfers.json"
    monkeypatch.setattr(transfer_state, "INDEX_LOCK_WAIT", 0.2)
    child = _holder(tmp_path / "transfers.json.lock")
    try:
        with pytest.raises(StateError, match=r"locked by another process for 0.2 s"):
            update_states(index, _add)
        assert not index.exists()
    finally:
        child.communicate("")
    update_states(index, _add)  # (its holder gone: the change goes through)
    assert index.exists()


def test_a_lock_held_briefly_is_waited_for(tmp_path: Path) -> None:
    index = tmp_path / "transfers.json"
    child = _holder(tmp_path / "transfers.json.lock")
    failed: list[BaseException] = []

    def change() -> None:
        try:
            update_states(index, _add)
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=change)
    thread.start()
    child.communicate("")  # (lets go, whether or not the change waits already)
    thread.join(10)
    assert not thread.is_alive() and failed == [] and index.exists()


@pytest.mark.parametrize("field, value", [("session", "abc"), ("serial", "x"),
                                          ("chain", "0"), ("serial", -1)])  # fmt: skip
def test_a_damaged_field_is_told_before_it_is_used(tmp_path: Path, field: str,
                                                   value: Any) -> None:  # fmt: skip
    """An odd-length hex field or a bad serial passed the check and raised later
    (bytes.fromhex, int()), once the server had accepted the resume: "internal error"."""
    entry = {"activity": "0011", "session": "ab" * 16, "chain": "00" * 32, "serial": 3}
    entry[field] = value
    with pytest.raises(StateError, match="is damaged"):
        checked_entry({"k": entry}, "k", tmp_path / "transfers.json",
                      ("activity", "session", "chain"))  # fmt: skip
    entry[field] = {"session": "ab", "serial": None, "chain": "00"}[field]
    assert checked_entry({"k": entry}, "k", tmp_path / "t.json", ("activity", "session"))


def test_a_run_lock_leaves_no_file_and_still_keeps_a_second_run_out(tmp_path: Path) -> None:
    """One ``running/<digest>.lock`` per transfer ever run stayed for good; now the run
    removes it, holding the lock, and a run that opened the removed file meanwhile locks
    the one at the path instead (its lock on the old one would keep nobody out)."""
    first = RunLock(tmp_path, "send|k", "sessionlayer send a")
    first.acquire()
    with pytest.raises(StateError, match=r"already running \(pid \d+: sessionlayer send a"):
        RunLock(tmp_path, "send|k", "sessionlayer send b").acquire()
    late = os.open(first.path, os.O_RDWR)  # (a run that opened the file, not locked yet)
    try:
        first.release()
        assert list((tmp_path / "running").iterdir()) == []
        fcntl.flock(late, fcntl.LOCK_EX | fcntl.LOCK_NB)  # (the removed file: anybody's)
        with RunLock(tmp_path, "send|k", "sessionlayer send c") as second:
            assert os.fstat(second.fd).st_ino == os.stat(second.path).st_ino
            with pytest.raises(StateError, match="sessionlayer send c"):
                RunLock(tmp_path, "send|k", "sessionlayer send d").acquire()
    finally:
        os.close(late)
    assert list((tmp_path / "running").iterdir()) == []
