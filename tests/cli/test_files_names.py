"""Local paths that are not UTF-8 (a file system's names are octets): ``send`` and ``get``
take them, keep their state and resume them; a name on the server must be text, so one
that is not is refused in one line, never an internal error."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from .files_helpers import MIB, Serve, get, make_file, result, send, sha

LATIN1 = os.fsdecode(b"caf\xe9.bin")  #: a name in Latin-1: not UTF-8
NOT_TEXT = os.fsdecode(b"x\xff")


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, 120))


def test_a_source_and_an_output_whose_paths_are_not_utf8_go_and_resume(tmp_path: Path) -> None:
    size = 16 * MIB
    src = make_file(tmp_path / LATIN1, size)
    (tmp_path / "state").mkdir()
    out_dir = tmp_path / os.fsdecode(b"d\xe9")
    out_dir.mkdir()

    async def main() -> None:
        server = await Serve(tmp_path / "srv").start()
        at = f"127.0.0.1:{server.port}"
        common = ["--state-dir", str(tmp_path / "state"), "--checkpoint", "1"]
        try:
            status, _, err = await send(str(src), at, "--name", "cafe.bin", *common,
                                        kill_after=size // 2)  # fmt: skip
            assert status == -9, err
            status, out, err = await send(str(src), at, "--name", "cafe.bin", "--json",
                                          *common)  # fmt: skip
            assert status == 0, err
            assert result(out)["resumed_from"] > 0  # its state was kept under that path
            assert sha(tmp_path / "srv" / "files" / "cafe.bin") == sha(src)
            status, _, err = await get("cafe.bin", at, "-o", str(out_dir), *common,
                                       kill_after=size // 2)  # fmt: skip
            assert status == -9, err
            status, out, err = await get("cafe.bin", at, "-o", str(out_dir), "--json",
                                         *common)  # fmt: skip
            assert status == 0, err
            assert result(out)["resumed_from"] > 0
            assert sha(out_dir / "cafe.bin") == sha(src)
        finally:
            await server.stop()

    run(main())


def test_a_name_for_the_server_that_is_not_utf8_is_refused_in_one_line(tmp_path: Path) -> None:
    src = tmp_path / LATIN1
    src.write_bytes(b"hello")
    (tmp_path / "plain.txt").write_bytes(b"hello")
    (tmp_path / "state").mkdir()

    async def main() -> None:
        server = await Serve(tmp_path / "srv").start()
        at = f"127.0.0.1:{server.port}"
        state = ["--state-dir", str(tmp_path / "state")]
        try:
            status, _, err = await send(str(src), at, *state)  # (its own name: not text)
            assert status == 1, err
            assert "is not UTF-8 text" in err and "--name" in err, err
            assert len(err.splitlines()) == 1, err
            for argv in (("send", str(tmp_path / "plain.txt"), at, "--name", NOT_TEXT),
                         ("get", NOT_TEXT, at, "-o", str(tmp_path))):  # fmt: skip
                runner = send if argv[0] == "send" else get
                status, _, err = await runner(*argv[1:], *state)
                assert status == 2, err  # a usage mistake
                assert "not UTF-8 text" in err and "internal error" not in err, err
            assert not list((tmp_path / "srv" / "files").iterdir())
        finally:
            await server.stop()

    run(main())
