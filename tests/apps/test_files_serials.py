"""Sync serial numbers end at 999999 for a whole transfer (its activity): a checkpoint
interval that would need more checkpoints is refused at the start, in one line that says
what would do; a transfer resumed near the end of them takes fewer (a longer interval)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from sessionlayer.aio import Session
from sessionlayer.apps import files as files_app
from sessionlayer.apps.files import MAX_CHECKPOINTS, FileService, TransferError, send_file
from sessionlayer.stores.memory import MemoryStore

from .helpers import pattern, run
from .test_files_refusals import refusal
from .test_files_restore import start

GIB3 = 3 << 30  #: a sparse file's size: 786433 checkpoints of 4 KiB


def test_a_send_that_would_need_too_many_checkpoints_is_refused_at_the_start(
    tmp_path: Path,
) -> None:
    source = tmp_path / "big.bin"
    with open(source, "wb") as f:
        f.truncate(GIB3)

    async def main() -> None:
        with pytest.raises(TransferError) as caught:  # (no server: nothing is asked of it)
            await send_file(source, "127.0.0.1", 1, checkpoint=4096,
                            state_dir=tmp_path)  # fmt: skip
        why = str(caught.value)
        assert why == (f"a checkpoint every 0.00390625 MiB makes 786433 checkpoints of {GIB3}"
                       f" octets, more than a transfer can have ({MAX_CHECKPOINTS}): use"
                       " --checkpoint 0.007 or more")  # fmt: skip
        assert files_app.too_many_checkpoints(GIB3, int(0.007 * (1 << 20))) is None

    run(main())


def test_a_get_that_would_need_too_many_checkpoints_is_refused_by_the_server(
    tmp_path: Path,
) -> None:
    service = FileService(tmp_path / "files", tmp_path / "transfers")
    with open(tmp_path / "files" / "big.bin", "wb") as f:
        f.truncate(GIB3)
    why = refusal(service, {"op": "get", "name": "big.bin", "checkpoint": 4096})
    assert why.startswith("the server refused: a checkpoint every 0.00390625 MiB makes"), why
    assert "--checkpoint 0.007 or more" in why


@pytest.mark.parametrize("serial", [999_990, 999_998])
def test_a_send_resumed_near_the_last_serial_number_takes_fewer_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, serial: int
) -> None:
    """Its state says the transfer's serial numbers are at ``serial`` (a long transfer of
    small checkpoints): the rerun lengthens the interval to what is left, or, with none
    left, says to --restart (it failed at its next checkpoint, every rerun again:
    "SSYNMreq refused in state STA713: condition 'sn_room' does not hold")."""
    data = pattern(8, 200_000)
    source = tmp_path / "a.bin"
    source.write_bytes(data)
    (tmp_path / "st").mkdir()
    waiting = asyncio.Event()
    real_sync = Session.sync
    calls = 0

    async def sync(self: Session, **kw: Any) -> int:
        nonlocal calls
        calls += 1
        if calls == 3:  # (two checkpoints confirmed and recorded: stopped there)
            waiting.set()
            await asyncio.Event().wait()
        return await real_sync(self, **kw)

    monkeypatch.setattr(Session, "sync", sync)

    async def main() -> None:
        server = await start(tmp_path, MemoryStore())
        try:
            task = asyncio.ensure_future(send_file(source, "127.0.0.1", server.port,
                                                   checkpoint=4096, state_dir=tmp_path / "st"))
            await asyncio.wait_for(waiting.wait(), 60)
            task.cancel()  # (Ctrl-C: its state kept)
            await asyncio.gather(task, return_exceptions=True)
            index = tmp_path / "st" / "transfers.json"
            states = json.loads(index.read_text())
            for entry in states.values():
                entry["serial"] = serial
            index.write_text(json.dumps(states))
            going = send_file(source, "127.0.0.1", server.port, checkpoint=4096,
                              state_dir=tmp_path / "st")  # fmt: skip
            if serial == 999_998:
                with pytest.raises(TransferError, match=r"used up its sync serial numbers.*"
                                   r" start it again with --restart"):  # fmt: skip
                    await going
                return
            result = await going
            assert result.resumed_from == 8192 and result.checkpoints <= 4, result
            assert (tmp_path / "files" / "a.bin").read_bytes() == data
        finally:
            server.close()
            await server.wait_closed()

    run(main())
