"""What may stop ``send`` or ``get`` halfway: SIGTERM is one line and status 143, the state
kept, so that the same command run again resumes the transfer (it used to end the process
at once: 143 and not a word); a reader of its output that goes does not stop it."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import stat
import threading
from pathlib import Path

import pytest

from sessionlayer import cli as cli_module

from .files_helpers import ENV, LIMIT, MIB, Serve, cli, make_file, result, sha, transfer


def layout(tmp_path: Path, command: str, size: int) -> tuple[Path, Path, Path]:
    """The server's files directory, the file to transfer (there for a ``get``) and the
    ``get``'s output directory."""
    files = tmp_path / "srv" / "files"
    files.mkdir(parents=True)
    src = make_file((files if command == "get" else tmp_path) / "t.bin", size)
    out = tmp_path / "out"
    out.mkdir()
    return files, src, out


def arguments(command: str, src: Path, where: str, out: Path) -> list[str]:
    return [str(src), where] if command == "send" else ["t.bin", where, "-o", str(out)]


@pytest.mark.parametrize("command", ["send", "get"])
def test_sigterm_mid_transfer_is_one_line_and_a_rerun_resumes(tmp_path: Path,
                                                              command: str) -> None:  # fmt: skip
    size = 24 * MIB
    files, src, out = layout(tmp_path, command, size)
    state = tmp_path / "state"
    state.mkdir()

    async def main() -> None:
        server = await Serve(tmp_path / "srv").start()
        try:
            where = f"127.0.0.1:{server.port}"
            args = arguments(command, src, where, out)
            args += ["--checkpoint", "1", "--state-dir", str(state)]
            status, _, err = await transfer(command, *args, kill_after=size // 3,
                                            signum=signal.SIGTERM)  # fmt: skip
            assert status == 143, err
            assert err == (f"sessionlayer {command}: terminated (SIGTERM): run the same"
                           " command again to resume the transfer\n"), err
            status, stdout, err = await transfer(command, *args, "--json")
            assert status == 0, err
            done = result(stdout)
            assert 0 < done["resumed_from"] < size and done["sent"] < size, done
        finally:
            await server.stop()

    asyncio.run(main())
    assert sha(files / "t.bin" if command == "send" else out / "t.bin") == sha(src)


@pytest.mark.parametrize("command", ["send", "get"])
def test_a_reader_of_its_output_that_goes_does_not_stop_the_transfer(
    tmp_path: Path, command: str
) -> None:
    """``sessionlayer send big.iso | head -1``: the transfer goes on to its end, without a
    word on stderr (its progress line raised BrokenPipeError, which stopped it halfway
    with exit status 0)."""
    size = 24 * MIB
    files, src, out = layout(tmp_path, command, size)

    async def main() -> None:
        server = await Serve(tmp_path / "srv").start()
        try:
            where = f"127.0.0.1:{server.port}"
            args = arguments(command, src, where, out)
            reader, writer = os.pipe()
            proc = await asyncio.create_subprocess_exec(
                *cli(command, *args, "--checkpoint", "1", "--state-dir", str(tmp_path)),
                env=ENV, stdout=writer, stderr=asyncio.subprocess.PIPE)
            os.close(writer)
            assert proc.stderr is not None
            with open(reader, "rb") as stdout:
                line = await asyncio.to_thread(stdout.readline)
            assert b"octets (0 %)" in line, line  # (and the reader is gone)
            async with asyncio.timeout(LIMIT):
                err = (await proc.stderr.read()).decode()
                assert await proc.wait() == 0, err
            assert err == ""
        finally:
            await server.stop()

    asyncio.run(main())
    assert sha(files / "t.bin" if command == "send" else out / "t.bin") == sha(src)


def test_the_state_a_killed_transfer_keeps_is_its_owners_only(tmp_path: Path) -> None:
    """The sender's ``transfers.json`` and the server's ``transfers/<activity>.json`` (the
    activity, offsets and hash chain that resume it) were the umask's 0644."""
    size = 24 * MIB
    src = make_file(tmp_path / "t.bin", size)
    state = tmp_path / "state"
    state.mkdir()

    async def main() -> None:
        server = await Serve(tmp_path / "srv").start()
        try:
            status, _, err = await transfer(
                "send", str(src), f"127.0.0.1:{server.port}", "--checkpoint", "1",
                "--state-dir", str(state), kill_after=size // 3)  # fmt: skip
            assert status == -signal.SIGKILL, err
        finally:
            await server.stop()

    old = os.umask(0o022)
    try:
        asyncio.run(main())
    finally:
        os.umask(old)
    kept = [state / "transfers.json", *(tmp_path / "srv" / "transfers").glob("*.json")]
    assert len(kept) == 2, kept
    for path in kept:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def ignore_sigterm() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def test_a_send_that_ignores_sigterm_goes_on_to_its_end(tmp_path: Path) -> None:
    """Started with SIGTERM ignored (as ``nohup``-like callers do), a send is not stopped
    by one: before, its own SIGTERM handler replaced SIG_IGN, and the transfer stopped."""
    size = 24 * MIB
    files, src, out = layout(tmp_path, "send", size)

    async def main() -> None:
        server = await Serve(tmp_path / "srv").start()
        try:
            where = f"127.0.0.1:{server.port}"
            status, stdout, err = await transfer(
                "send", *arguments("send", src, where, out), "--checkpoint", "1",
                "--state-dir", str(tmp_path), kill_after=size // 3,
                signum=signal.SIGTERM, preexec=ignore_sigterm)  # fmt: skip
            assert "octets" in stdout  # (the SIGTERM went once a third was sent)
            assert (status, err) == (0, ""), err
        finally:
            await server.stop()

    asyncio.run(main())
    assert sha(files / "t.bin") == sha(src)


def test_send_runs_outside_the_main_thread(tmp_path: Path) -> None:
    """``cli.main`` called from a thread: asyncio takes no signal handler there, and the
    send said "internal error: RuntimeError: set_wakeup_fd only works in main thread"."""
    files, src, _ = layout(tmp_path, "send", MIB)
    got: dict[str, object] = {}

    async def main() -> None:
        server = await Serve(tmp_path / "srv").start()
        try:
            argv = ["send", str(src), f"127.0.0.1:{server.port}", "--state-dir", str(tmp_path)]

            def run() -> None:
                err = io.StringIO()
                got["status"] = cli_module.main(argv, stdout=io.StringIO(), stderr=err)
                got["err"] = err.getvalue()

            thread = threading.Thread(target=run)
            thread.start()
            await asyncio.to_thread(thread.join, LIMIT)
        finally:
            await server.stop()

    asyncio.run(main())
    assert got == {"status": 0, "err": ""}
    assert sha(files / "t.bin") == sha(src)
