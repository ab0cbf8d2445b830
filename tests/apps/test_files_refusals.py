"""What the server's file system answers while it checks a request (before the accept) is
a refusal that says so in one line, without the server's path: not "authentication error"
(the authenticate callback's exception) and an ERROR in its log."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from sessionlayer.aio import serve
from sessionlayer.apps import files as files_app
from sessionlayer.apps.files import FileService
from sessionlayer.commands.serve import SERVER_CONFIG

from .helpers import run


def refusal(service: FileService, request: dict[str, Any]) -> str:
    """The client's one line when it asks ``service`` for ``request``."""

    async def main() -> str:
        server = await serve(service.handle, "127.0.0.1", 0, authenticate=service.check,
                             supported={"service": ["files"]}, config=SERVER_CONFIG)
        try:
            with pytest.raises(files_app.TransferError) as caught:
                await files_app._connect("127.0.0.1", server.port, request, None, None, None,
                                         None)  # fmt: skip
            return str(caught.value)
        finally:
            server.close()
            await server.wait_closed()

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
