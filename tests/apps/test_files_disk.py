"""The file service's receiver off the event loop (apps/files.py ``_Disk``, ``_Reader``): what
it writes (direct I/O or not, from an aligned offset or not, cut at any point) is what it was
given; a write error or a file system without direct I/O is handled; and end to end, a
checkpoint is confirmed only once the data before it is in the file and fsynced."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import random
from pathlib import Path
from typing import Any

import pytest
from tests.tools import unavailable

from sessionlayer import Options
from sessionlayer.aio import Session, serve
from sessionlayer.apps import files as files_app
from sessionlayer.apps.files import FileService, send_file
from sessionlayer.commands.serve import SERVER_CONFIG

from .helpers import pattern, run


def _disk(path: Path, offset: int) -> tuple[Any, Any]:
    """A _Disk on ``path`` (holding ``offset`` octets already), as _Receiver._open makes it."""
    handle = open(path, "r+b", buffering=0)  # noqa: SIM115
    whole = hashlib.sha256(path.read_bytes()[:offset])
    return handle, files_app._Disk(handle.fileno(), path, offset, whole)


@pytest.mark.parametrize("direct", [True, False])
@pytest.mark.parametrize("start", [0, 4096, 5000])
def test_the_file_holds_what_was_put_at_every_settle(
    tmp_path: Path, direct: bool, start: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not direct:
        monkeypatch.delattr(os, "O_DIRECT", raising=False)
    monkeypatch.setattr(files_app, "_STAGE", 64 * 1024)  # (many direct writes, small data)
    monkeypatch.setattr(files_app, "_FLUSH", 100_000)
    monkeypatch.setattr(files_app, "_PENDING", 200_000)
    path = tmp_path / "f.part"
    head = pattern(1, start)
    path.write_bytes(head)
    rng = random.Random(start)

    async def main() -> None:
        handle, disk = _disk(path, start)
        assert disk.direct >= 0 or not direct or os.environ.get("CI") is None
        if not direct:
            assert disk.direct == -1
        expected = bytearray(head)
        try:
            for i in range(60):
                data = pattern(100 + i, rng.choice([1, 511, 4096, 10_000, 70_000, 150_000]))
                await disk.put(data)
                expected += data
                if rng.random() < 0.25:
                    await disk.settle()
                    await disk.sync()
                    assert path.read_bytes() == expected  # all of it, not past it
                    assert disk.whole.digest() == hashlib.sha256(expected).digest()
            await disk.settle()
            assert path.read_bytes() == expected
        finally:
            disk.close()
            handle.close()

    run(main())


def test_direct_io_refused_falls_back_to_the_page_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not hasattr(os, "O_DIRECT"):
        unavailable("no O_DIRECT here")
    monkeypatch.setattr(files_app, "_STAGE", 64 * 1024)
    path = tmp_path / "f.part"
    path.write_bytes(b"")
    real = os.pwrite
    direct: list[int] = []

    def pwrite(fd: int, data: Any, offset: int) -> int:
        if direct and fd == direct[0]:
            raise OSError(errno.EINVAL, "no direct I/O")
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)

    async def main() -> None:
        handle, disk = _disk(path, 0)
        direct.append(disk.direct)
        data = pattern(2, 300_000)
        try:
            await disk.put(data[:100_000])
            await disk.put(data[100_000:])
            await disk.settle()
            assert disk.direct == -1  # it gave direct I/O up
            assert path.read_bytes() == data
        finally:
            disk.close()
            handle.close()

    run(main())


def test_a_write_error_surfaces_at_the_next_put_or_settle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int, data: Any, offset: int) -> int:
        raise OSError(errno.ENOSPC, "full")

    monkeypatch.setattr(os, "pwrite", full)
    path = tmp_path / "f.part"
    path.write_bytes(b"")

    async def main() -> None:
        handle, disk = _disk(path, 0)
        try:
            with pytest.raises(OSError) as caught:
                for _ in range(20):
                    await disk.put(b"x" * 600_000)
                await disk.settle()
            assert caught.value.errno == errno.ENOSPC
        finally:
            disk.close()
            handle.close()

    run(main())


@pytest.mark.parametrize("spoiled", [False, True])
def test_what_was_kept_is_checked_in_the_hash_thread_before_what_comes(
    tmp_path: Path, spoiled: bool
) -> None:
    """A rerun's receiver hands the prefix check to the disk's hash thread (the loop goes
    on); the first put waits for its verdict: the running hash then covers prefix + data,
    or (a prefix that changed) put and settle raise TransferError, and nothing is written."""
    kept = pattern(3, 3_000_123)
    path = tmp_path / "f.part"
    path.write_bytes(kept if not spoiled else b"\0" + kept[1:])
    chain = hashlib.sha256(kept).digest()

    async def main() -> None:
        handle = open(path, "r+b", buffering=0)  # noqa: SIM115
        disk = files_app._Disk(handle.fileno(), path, len(kept), hashlib.sha256(), chain)
        try:
            data = pattern(4, 100_000)
            if spoiled:
                for step in (disk.put(data), disk.settle()):
                    with pytest.raises(files_app.TransferError, match="--restart"):
                        await step
                assert path.stat().st_size == len(kept)
                return
            await disk.put(data)
            await disk.settle()
            assert disk.whole.digest() == hashlib.sha256(kept + data).digest()
            assert path.read_bytes() == kept + data
        finally:
            disk.close()
            handle.close()

    run(main())


def test_a_failed_writeback_fails_the_next_write_and_the_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel reports a writeback error to a descriptor once: the fdatasync started
    in the background got it, so the fsync of a checkpoint would succeed without it."""
    monkeypatch.delattr(os, "O_DIRECT", raising=False)  # (the page cache path)
    monkeypatch.setattr(files_app, "_FLUSH", 100_000)

    def failing(fd: int) -> None:
        raise OSError(errno.EIO, "writeback failed")

    monkeypatch.setattr(os, "fdatasync", failing)
    path = tmp_path / "f.part"
    path.write_bytes(b"")

    async def main() -> None:
        handle, disk = _disk(path, 0)
        with contextlib.closing(handle), contextlib.closing(disk):
            await disk.put(pattern(5, 150_000))  # (starts a writeback)
            await disk.settle()
            with pytest.raises(OSError) as caught:
                await disk.sync()
            assert caught.value.errno == errno.EIO
            with pytest.raises(OSError):
                for _ in range(3):
                    await disk.put(pattern(6, 10_000))
                await disk.settle()

    run(main())


@pytest.mark.parametrize("every", [1 << 20, 1_000_003])  # (aligned and not: partial blocks)
def test_a_checkpoint_is_confirmed_only_after_its_data_is_in_the_file_and_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, every: int
) -> None:
    size = 5 * every + 12_345
    source = tmp_path / "src.bin"
    source.write_bytes(pattern(3, size))
    data = source.read_bytes()
    log: list[tuple[str, Any]] = []  # fsyncs (what the file held) and confirms, in order
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        real_fsync(fd)
        with open(f"/proc/self/fd/{fd}", "rb") as f:  # what the file holds, after it
            log.append(("fsync", hashlib.sha256(f.read()).hexdigest()))

    monkeypatch.setattr(os, "fsync", fsync)
    real_sync = Session.sync

    async def sync(self: Session, **kw: Any) -> int:
        serial = await real_sync(self, **kw)
        log.append(("confirmed", kw.get("user_data")))
        return serial

    monkeypatch.setattr(Session, "sync", sync)
    service = FileService(tmp_path / "files", tmp_path / "transfers")

    async def main() -> None:
        server = await serve(service.handle, "127.0.0.1", 0, authenticate=lambda r: (
            service.check(r), True)[1], supported={"service": ["files"]},
            config=SERVER_CONFIG, options=Options(tpdu_size=65408))  # fmt: skip
        try:
            await send_file(source, "127.0.0.1", server.port, checkpoint=every,
                            state_dir=tmp_path / "state")  # fmt: skip
        finally:
            server.close()
            await server.wait_closed()

    run(main())
    assert (tmp_path / "files" / "src.bin").read_bytes() == data
    confirms = [i for i, (kind, _) in enumerate(log) if kind == "confirmed"]
    assert len(confirms) == 6
    for i in confirms:
        offset = int(files_app._json(log[i][1])["o"])
        want = hashlib.sha256(data[:offset]).hexdigest()
        assert ("fsync", want) in log[:i], f"checkpoint at {offset} confirmed before its fsync"


def test_the_prefix_hash_reads_by_offset_and_leaves_the_file_where_it_was(
    tmp_path: Path,
) -> None:
    """``_rehash`` (run in a thread when a transfer resumes) hashes exactly the prefix, reads
    by offset (the read-ahead thread may use the file at once) and refuses a short file."""
    data = random.Random(3).randbytes(3 << 20)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    with open(path, "rb") as handle:
        handle.seek(12345)
        for offset in (0, 1, (1 << 20) - 1, 1 << 20, (2 << 20) + 7, len(data)):
            digest, whole = files_app._rehash(handle, offset)
            assert digest == hashlib.sha256(data[:offset]).digest() == whole.digest()
            assert handle.tell() == 12345
        with pytest.raises(files_app.TransferError, match="shorter"):
            files_app._rehash(handle, len(data) + 1)


@pytest.mark.parametrize("every", [-5, 0, 4095, "64", 1.5])
def test_a_get_with_a_checkpoint_interval_it_cannot_use_is_refused(
    tmp_path: Path, every: Any
) -> None:
    """A peer's request (not only our CLI's) is checked before the accept: a checkpoint
    interval under MIN_CHECKPOINT, or not an integer, is an RF with the reason."""
    service = FileService(tmp_path / "files", tmp_path / "transfers")
    (tmp_path / "files" / "f.bin").write_bytes(b"x" * 10_000)

    async def main() -> None:
        server = await serve(service.handle, "127.0.0.1", 0, authenticate=lambda r: (
            service.check(r), True)[1], supported={"service": ["files"]},
            config=SERVER_CONFIG)  # fmt: skip
        try:
            request = {"op": "get", "name": "f.bin", "checkpoint": every}
            with pytest.raises(files_app.TransferError, match="checkpoint interval"):
                await files_app._connect("127.0.0.1", server.port, request, None, None, None,
                                         None)  # fmt: skip
        finally:
            server.close()
            await server.wait_closed()

    run(main())
