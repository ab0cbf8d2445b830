"""The client's transfer index under concurrent runs (apps/transfer_state.py): each change
is read, made and written under the index's lock, so that transfers that save their
checkpoints at once keep each other's entries."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from sessionlayer.apps.transfer_state import load_states, update_states

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
