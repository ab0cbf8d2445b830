"""A receiver that cannot record the transfer's state (its state directory full) says so,
naming it: the server's reaches the sender as its reason (it was "aborted by the peer"), a
get's names the local state directory (it named the output file)."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

from sessionlayer.apps import files as files_app
from sessionlayer.apps.files import FileService, TransferError, get_file, send_file

from .helpers import pattern, run
from .test_files_refusals import server


def full_after(monkeypatch: pytest.MonkeyPatch, saves: int) -> None:
    """Every record of a receiver's state after the first ``saves`` fails: ENOSPC."""
    real_save = files_app._Upload.save
    done = 0

    def save(self: Any, path: Path) -> None:
        nonlocal done
        done += 1
        if done > saves:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_save(self, path)

    monkeypatch.setattr(files_app._Upload, "save", save)


def test_the_server_that_cannot_keep_the_state_at_a_checkpoint_tells_the_sender(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "a.bin"
    source.write_bytes(pattern(10, 3 << 20))
    (tmp_path / "st").mkdir()
    full_after(monkeypatch, 1)  # (the transfer's start recorded, its first checkpoint not)
    service = FileService(tmp_path / "files", tmp_path / "transfers")

    async def main() -> None:
        srv = await server(service)
        try:
            with pytest.raises(TransferError) as caught:
                await send_file(source, "127.0.0.1", srv.port, checkpoint=1 << 20,
                                state_dir=tmp_path / "st")  # fmt: skip
            assert str(caught.value) == (
                "the server stopped the transfer: cannot keep the transfer's state on the"
                " server: No space left on device")
        finally:
            srv.close()
            await srv.wait_closed()

    run(main())


@pytest.mark.parametrize("saves", [0, 1])  # (at its start, at its first checkpoint)
def test_a_get_that_cannot_keep_its_state_names_the_state_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, saves: int
) -> None:
    service = FileService(tmp_path / "files", tmp_path / "transfers")
    (tmp_path / "files" / "a.bin").write_bytes(pattern(11, 3 << 20))
    (tmp_path / "st").mkdir()
    (tmp_path / "out").mkdir()
    full_after(monkeypatch, saves)

    async def main() -> None:
        srv = await server(service)
        try:
            with pytest.raises(TransferError) as caught:
                await get_file("a.bin", "127.0.0.1", srv.port, output=tmp_path / "out",
                               checkpoint=1 << 20, state_dir=tmp_path / "st")  # fmt: skip
            assert str(caught.value) == (
                f"cannot keep the transfer's state in {tmp_path / 'st' / 'downloads'}: No"
                " space left on device")
        finally:
            srv.close()
            await srv.wait_closed()

    run(main())
