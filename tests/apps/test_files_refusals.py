"""What the server's file system answers while it checks a request (before the accept) is
a refusal that says so in one line, without the server's path: not "authentication error"
(the authenticate callback's exception) and an ERROR in its log."""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from sessionlayer.aio import Session, serve
from sessionlayer.apps import files as files_app
from sessionlayer.apps.files import FileService
from sessionlayer.commands.serve import SERVER_CONFIG

from .helpers import pattern, run


def refusal(service: FileService, request: dict[str, Any]) -> str:
    """The client's one line when it asks ``service`` for ``request``."""

    async def main() -> str:
        srv = await server(service)
        try:
            with pytest.raises(files_app.TransferError) as caught:
                await files_app._connect("127.0.0.1", srv.port, request, None, None, None,
                                         None)  # fmt: skip
            return str(caught.value)
        finally:
            srv.close()
            await srv.wait_closed()

    return str(run(main()))


@pytest.mark.parametrize("op", ["put", "get"])
def test_a_symbolic_link_loop_in_the_served_directory_is_refused_as_one(
    tmp_path: Path, op: str
) -> None:
    service = FileService(tmp_path / "files", tmp_path / "transfers")
    (tmp_path / "files" / "loop").symlink_to("loop")
    (tmp_path / "files" / "a").symlink_to("b")
    (tmp_path / "files" / "b").symlink_to("a")
    for name in ("loop", "a/x"):
        why = refusal(service, {"op": op, "name": name, "size": 3})
        assert why == (f"the server refused: cannot use {name!r} on the server:"
                       f" {os.strerror(errno.ELOOP)}")  # fmt: skip
        assert str(tmp_path) not in why


def test_a_directory_the_server_may_not_search_is_refused_as_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(As root, a mode does not stop the server: the EACCES is made here.)"""
    service = FileService(tmp_path / "files", tmp_path / "transfers")
    (tmp_path / "files" / "locked").mkdir()
    real_exists = Path.exists

    def exists(self: Path, **kw: Any) -> bool:
        if "locked" in self.parts and self.name != "locked":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return real_exists(self, **kw)

    monkeypatch.setattr(Path, "exists", exists)
    why = refusal(service, {"op": "put", "name": "locked/x", "size": 3})
    assert why == "the server refused: cannot use 'locked/x' on the server: Permission denied"


def test_a_served_directory_that_is_gone_is_refused_as_one(tmp_path: Path) -> None:
    service = FileService(tmp_path / "files", tmp_path / "transfers")
    shutil.rmtree(tmp_path / "files")
    why = refusal(service, {"op": "put", "name": "x", "size": 3})
    assert why == ("the server refused: cannot use 'x' on the server:"
                   f" {os.strerror(errno.ENOENT)}")  # fmt: skip


def server(service: FileService) -> Any:
    return serve(service.handle, "127.0.0.1", 0, authenticate=service.check,
                 supported={"service": ["files"]}, config=SERVER_CONFIG)  # fmt: skip


def test_a_file_the_server_cannot_read_reaches_the_get_as_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(As root, a mode does not stop the read: the EACCES of its open is made here.)"""
    service = FileService(tmp_path / "files", tmp_path / "transfers")
    served = tmp_path / "files" / "a.bin"
    served.write_bytes(b"x" * 10_000)
    real_open = open

    def fake_open(path: Any, *args: Any, **kw: Any) -> Any:
        if Path(path) == served.resolve():
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, *args, **kw)

    monkeypatch.setattr(files_app, "open", fake_open, raising=False)
    (tmp_path / "st").mkdir()

    async def main() -> None:
        srv = await server(service)
        try:
            with pytest.raises(files_app.TransferError) as caught:
                await files_app.get_file("a.bin", "127.0.0.1", srv.port, output=tmp_path,
                                         state_dir=tmp_path / "st")  # fmt: skip
            assert str(caught.value) == ("the server stopped the transfer: cannot read"
                                         " 'a.bin' on the server: Permission denied")
        finally:
            srv.close()
            await srv.wait_closed()

    run(main())


def test_a_file_changed_on_the_server_since_an_interrupted_get_says_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = FileService(tmp_path / "files", tmp_path / "transfers")
    served = tmp_path / "files" / "a.bin"
    served.write_bytes(pattern(9, 3 << 20))
    (tmp_path / "st").mkdir()
    (tmp_path / "out").mkdir()
    waiting = asyncio.Event()
    real_sync = Session.sync
    calls = 0

    async def sync(self: Session, **kw: Any) -> int:
        nonlocal calls
        calls += 1
        if calls == 2:  # (the first checkpoint confirmed: the get is stopped there)
            waiting.set()
            await asyncio.Event().wait()
        return await real_sync(self, **kw)

    monkeypatch.setattr(Session, "sync", sync)
    sessions: list[Session] = []  # (the client's)
    real_connect = files_app._connect

    async def connect(*args: Any, **kw: Any) -> Session:
        sessions.append(await real_connect(*args, **kw))
        return sessions[-1]

    monkeypatch.setattr(files_app, "_connect", connect)

    def fetch(*flags: str) -> Any:
        return files_app.get_file("a.bin", "127.0.0.1", srv.port, output=tmp_path / "out",
                                  checkpoint=1 << 20, state_dir=tmp_path / "st",
                                  restart="--restart" in flags)  # fmt: skip

    async def main() -> None:
        nonlocal srv
        srv = await server(service)
        try:
            task = asyncio.ensure_future(fetch())
            await asyncio.wait_for(waiting.wait(), 60)
            task.cancel()  # (Ctrl-C: its state kept)
            await asyncio.gather(task, return_exceptions=True)
            sessions[0].abort()  # (its connection gone with its process)
            with open(served, "r+b") as f:
                f.write(b"XXXX")
            with pytest.raises(files_app.TransferError) as caught:
                await fetch()
            assert str(caught.value) == (
                "the server stopped the transfer: 'a.bin' changed on the server since the"
                " interrupted transfer: fetch it again with --restart")
            await fetch("--restart")
            assert (tmp_path / "out" / "a.bin").read_bytes() == served.read_bytes()
        finally:
            srv.close()
            await srv.wait_closed()

    srv: Any = None
    run(main())
